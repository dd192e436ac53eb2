//! `--chart FILE.svg`: the serial / threads / processes wall times of the experiments that
//! have them, one panel each, Rust beside Python.

use std::path::Path;

use multiproc::{Error, Result};
use plotters::prelude::*;

use super::Experiment;

const RUST: RGBColor = RGBColor(0xb7, 0x41, 0x0e);
const PYTHON: RGBColor = RGBColor(0x30, 0x69, 0x98);

/// Fails before the tour runs, rather than after, on a file the chart cannot be.
pub(super) fn check_path(path: &Path) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => Ok(()),
        _ => Err(Error::InvalidArgument(format!(
            "--chart {}: the chart is an SVG file (name it *.svg); PNG output is not built in",
            path.display()
        ))),
    }
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
    let root = SVGBackend::new(path, (420 * panels.len() as u32, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    for (area, bars) in root.split_evenly((1, panels.len())).iter().zip(panels) {
        let top = bars
            .rust
            .iter()
            .chain(bars.python.iter().flatten())
            .cloned()
            .fold(0.0, f64::max)
            * 1.15;
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
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}
