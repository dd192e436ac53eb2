//! One experiment's outcome: the lines it printed, its table of measured wall times, the
//! sentence saying what it shows, and every figure as JSON.

use std::fmt::Write;

use serde_json::{Value, json};

/// One side (Rust or Python) of a table row: a measured wall time and what came out.
pub(crate) struct Cell {
    pub secs: f64,
    /// What the run produced beside its time (a total, a count), or empty.
    pub note: String,
}

impl Cell {
    pub(crate) fn new(secs: f64) -> Cell {
        Cell {
            secs,
            note: String::new(),
        }
    }

    pub(crate) fn with(secs: f64, note: impl Into<String>) -> Cell {
        Cell {
            secs,
            note: note.into(),
        }
    }
}

/// A row of the table: one way of running the work, in both languages.
pub(crate) struct Row {
    pub what: String,
    pub rust: Option<Cell>,
    pub python: Option<Cell>,
    /// The row (index) whose time this row's speed-up is relative to.
    pub base: Option<usize>,
}

impl Row {
    pub(crate) fn new(what: impl Into<String>, rust: Option<Cell>, python: Option<Cell>) -> Row {
        Row {
            what: what.into(),
            rust,
            python,
            base: None,
        }
    }

    pub(crate) fn vs(mut self, base: usize) -> Row {
        self.base = Some(base);
        self
    }
}

/// Serial / threads / processes wall times, for the chart.
pub(crate) struct Bars {
    pub label: String,
    pub rust: [f64; 3],
    pub python: Option<[f64; 3]>,
}

pub(crate) struct Experiment {
    pub id: u32,
    pub title: String,
    /// One sentence: what this experiment shows.
    pub lesson: String,
    /// What the experiment printed as it ran (names, pids, timestamps).
    pub lines: Vec<String>,
    pub rows: Vec<Row>,
    pub bars: Option<Bars>,
    /// Every Rust figure.
    pub rust: Value,
    /// The Python original's own JSON, as it printed it.
    pub python: Option<Value>,
}

/// Seconds, three decimals: "1.234 s".
pub(super) fn secs(s: f64) -> String {
    format!("{s:.3} s")
}

/// 100000000 → "100,000,000".
pub(super) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn cell_text(rows: &[Row], row: &Row, side: impl Fn(&Row) -> Option<&Cell>) -> String {
    let Some(c) = side(row) else {
        return "-".into();
    };
    let mut s = secs(c.secs);
    if let Some(base) = row.base.and_then(|b| rows.get(b)).and_then(&side) {
        let _ = write!(s, " {:>6.2}x", base.secs / c.secs);
    }
    if !c.note.is_empty() {
        let _ = write!(s, "  {}", c.note);
    }
    s
}

impl Experiment {
    /// The text a reader sees: title, printed lines, table, lesson.
    pub(crate) fn render(&self, python: Option<&str>) -> String {
        let mut s = format!("{}. {}\n", self.id, self.title);
        for l in &self.lines {
            let _ = writeln!(s, "   {l}");
        }
        if !self.rows.is_empty() {
            let rust: Vec<String> = self
                .rows
                .iter()
                .map(|r| cell_text(&self.rows, r, |r| r.rust.as_ref()))
                .collect();
            let py: Vec<String> = self
                .rows
                .iter()
                .map(|r| cell_text(&self.rows, r, |r| r.python.as_ref()))
                .collect();
            let w0 = self
                .rows
                .iter()
                .map(|r| r.what.len())
                .max()
                .unwrap_or(0)
                .max(4);
            let w1 = rust.iter().map(|c| c.len()).max().unwrap_or(0).max(20);
            let py_head = match python {
                Some(v) => format!("Python {v}"),
                None => "Python (not run)".into(),
            };
            let _ = writeln!(
                s,
                "   {:<w0$}   {:<w1$}   {py_head}",
                "", "Rust (multiproc)"
            );
            let _ = writeln!(s, "   {}", "-".repeat(w0 + w1 + 6 + py_head.len().max(20)));
            for ((r, rc), pc) in self.rows.iter().zip(&rust).zip(&py) {
                let _ = writeln!(s, "   {:<w0$}   {rc:<w1$}   {pc}", r.what);
            }
        }
        let _ = write!(s, "{}", wrap(&self.lesson, "   => ", "      ", 92));
        s
    }

    /// One JSON object: every figure, both sides.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "title": self.title,
            "lesson": self.lesson,
            "rust": self.rust,
            "python": self.python,
        })
    }
}

/// `v[key]` as f64, where the Python side printed it.
pub(super) fn f(v: &Option<Value>, path: &[&str]) -> Option<f64> {
    let mut cur = v.as_ref()?;
    for k in path {
        cur = cur.get(k)?;
    }
    cur.as_f64()
}

/// The table and chart bars of an experiment measured three ways: `serial_s`, `threads_s`
/// and `processes_s` in both sides' JSON, speed-ups relative to serial.
pub(super) fn three_ways(
    label: &str,
    workers: &str,
    rust: &Value,
    py: &Option<Value>,
) -> (Vec<Row>, Bars) {
    let keys = ["serial_s", "threads_s", "processes_s"];
    let names = [
        "serial".to_string(),
        format!("{workers} threads"),
        format!("{workers} processes"),
    ];
    let rows = keys
        .iter()
        .zip(names)
        .enumerate()
        .map(|(i, (k, name))| {
            let r = Row::new(
                name,
                rust[k].as_f64().map(Cell::new),
                f(py, &[k]).map(Cell::new),
            );
            if i == 0 { r } else { r.vs(0) }
        })
        .collect();
    let get = |v: &Value| -> Option<[f64; 3]> {
        Some([
            v[keys[0]].as_f64()?,
            v[keys[1]].as_f64()?,
            v[keys[2]].as_f64()?,
        ])
    };
    let bars = Bars {
        label: label.to_string(),
        rust: get(rust).unwrap_or_default(),
        python: py.as_ref().and_then(get),
    };
    (rows, bars)
}

/// `text` in lines of at most `width` characters, the first after `first`, the rest after
/// `rest`.
fn wrap(text: &str, first: &str, rest: &str, width: usize) -> String {
    let mut out = String::from(first);
    let mut line_len = first.len();
    for word in text.split_whitespace() {
        if line_len > rest.len().max(first.len()) && line_len + 1 + word.len() > width {
            out.push('\n');
            out.push_str(rest);
            line_len = rest.len();
        } else if line_len > first.len() || !out.ends_with(' ') {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out.push('\n');
    out
}
