//! Human output on stderr (progress, warnings, hints) and data on stdout. Colour only
//! when stderr is a terminal and `NO_COLOR` is unset; every line reads the same without.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static VERBOSE: AtomicBool = AtomicBool::new(false);

pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

fn paint(code: &str, text: &str) -> String {
    if colour() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// A progress or informational line.
pub fn note(text: &str) {
    line(text);
}

/// A step that finished.
pub fn done(text: &str) {
    line(&format!("{} {text}", paint("32", "✓")));
}

pub fn warn(text: &str) {
    line(&format!("{} {text}", paint("33;1", "warning:")));
}

pub fn error(text: &str) {
    line(&format!("{} {text}", paint("31;1", "error:")));
}

pub fn hint(text: &str) {
    line(&format!("{} {text}", paint("36", "hint:")));
}

/// Only with `--verbose`.
pub fn verbose(text: &str) {
    if VERBOSE.load(Ordering::Relaxed) {
        line(&paint("2", text));
    }
}

/// Data for scripts.
pub fn data(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Render rows as left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let fmt_row = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = fmt_row(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push('\n');
        out.push_str(&fmt_row(row.clone()));
    }
    out
}

/// Ask a yes/no question on the terminal; anything but y/yes is no.
pub fn confirm(question: &str) -> bool {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    drop(err);
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

/// Whether a prompt can be answered.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["ID", "SLOT"],
            &[
                vec!["a".into(), "1".into()],
                vec!["longer".into(), "10".into()],
            ],
        );
        assert_eq!(t, "ID      SLOT\na       1\nlonger  10");
    }
}
