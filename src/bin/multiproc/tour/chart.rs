//! `--chart FILE`: the serial / threads / processes wall times of the experiments that
//! have them, one panel each, Rust beside Python. PNG when FILE ends in `.png` (plotters'
//! bitmap backend and `image`'s encoder), SVG otherwise.
//!
//! Text goes through ab_glyph, which loads no system font by itself: a TrueType font of
//! this machine is found (`MULTIPROC_CHART_FONT`, well-known paths, then `fc-match`) and
//! registered once, before the tour runs, so a machine without one fails at once, not
//! after the experiments.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use multiproc::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::Experiment;

const RUST: RGBColor = RGBColor(0xb7, 0x41, 0x0e);
const PYTHON: RGBColor = RGBColor(0x30, 0x69, 0x98);

/// Where fonts usually are (Debian/Ubuntu, Fedora, Arch, macOS).
const FONTS: [&str; 7] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// A TrueType/OpenType font of this machine, registered as plotters' "sans-serif" (once).
fn register_font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let found = DONE.get_or_init(|| {
        let fc_match = || {
            let out = std::process::Command::new("fc-match")
                .args(["-f", "%{file}", "sans-serif"])
                .output()
                .ok()?;
            Some(PathBuf::from(String::from_utf8(out.stdout).ok()?))
        };
        let candidates = std::env::var_os("MULTIPROC_CHART_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONTS.iter().map(PathBuf::from))
            .chain(fc_match());
        for path in candidates {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            // Kept for the life of the program: plotters holds fonts as `&'static`.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Ok(path);
            }
        }
        Err(
            "--chart needs a TrueType font for its text, and none was found (looked at \
             $MULTIPROC_CHART_FONT, DejaVu Sans and Liberation Sans in the usual places, \
             and `fc-match sans-serif`); install fonts-dejavu-core or set \
             MULTIPROC_CHART_FONT=/path/to/font.ttf"
                .to_string(),
        )
    });
    found
        .as_ref()
        .map(|_| ())
        .map_err(|e| Error::InvalidArgument(e.clone()))
}

/// Whether `path` names a PNG chart (otherwise SVG).
fn is_png(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

/// Fails before the tour runs, rather than after: no font for the text, or a folder that
/// does not exist.
pub(super) fn check_path(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.is_dir()
    {
        return Err(Error::InvalidArgument(format!(
            "--chart {}: the folder {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    register_font()
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("drawing the chart: {e}"))
}

pub(super) fn draw(path: &Path, done: &[Experiment]) -> Result<()> {
    let panels: Vec<_> = done.iter().filter_map(|e| e.bars.as_ref()).collect();
    if panels.is_empty() {
        return Err(Error::InvalidArgument(
            "--chart: none of the experiments run has serial / threads / processes times \
             (3, 4 and 8 do)"
                .into(),
        ));
    }
    register_font()?;
    let size = (420 * panels.len() as u32, 360);
    if is_png(path) {
        panels_on(BitMapBackend::new(path, size).into_drawing_area(), &panels)
    } else {
        panels_on(SVGBackend::new(path, size).into_drawing_area(), &panels)
    }
}

fn panels_on<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    panels: &[&super::report::Bars],
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    for (area, &bars) in root.split_evenly((1, panels.len())).iter().zip(panels) {
        let top = bars
            .rust
            .iter()
            .chain(bars.python.iter().flatten())
            .cloned()
            .fold(0.0, f64::max)
            // Headroom above the tallest bar for the legend, so it never hides a bar.
            * 1.4;
        let mut chart = ChartBuilder::on(area)
            .caption(&bars.label, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..3.0, 0.0..top.max(0.001))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            // Ticks every half unit; only the middles (0.5, 1.5, 2.5) are named.
            .x_labels(7)
            .x_label_formatter(&|x: &f64| match (x * 2.0).round() as i64 {
                1 => "serial".into(),
                3 => "threads".into(),
                5 => "processes".into(),
                _ => String::new(),
            })
            .y_desc("wall time (s)")
            .draw()
            .map_err(plot_err)?;
        let sides = [
            (Some(bars.rust), RUST, "Rust", 0.1),
            (bars.python, PYTHON, "Python", 0.5),
        ];
        for (values, color, name, offset) in sides {
            let Some(values) = values else { continue };
            chart
                .draw_series(values.iter().enumerate().map(|(i, &v)| {
                    let x = i as f64 + offset;
                    Rectangle::new([(x, 0.0), (x + 0.38, v)], color.filled())
                }))
                .map_err(plot_err)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}
