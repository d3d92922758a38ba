//! Human output on stderr (progress, warnings, hints) and data on stdout. Colour only
//! when stderr is a terminal and `NO_COLOR` is unset; every line reads the same without.
//! [`Term`] is the reporter the command layer hands to domain code: the one place where
//! progress reaches the terminal (live check lines on a terminal, plain lines otherwise).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::report::{CheckProgress, Reporter};

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
    matches!(ask(&format!("{question} [y/N]")).as_str(), "y" | "yes")
}

/// Ask on the terminal; the answer trimmed and in lower case (empty when unreadable).
pub fn ask(question: &str) -> String {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} ");
    let _ = err.flush();
    drop(err);
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return String::new();
    }
    answer.trim().to_lowercase()
}

/// Whether a prompt can be answered.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// The terminal reporter.
pub struct Term {
    tty: bool,
    checks: Mutex<ChecksView>,
}

#[derive(Default)]
struct ChecksView {
    drawn: usize,
    reported: Vec<bool>,
    frame: usize,
}

impl Term {
    pub fn new() -> Term {
        Term {
            tty: std::io::stderr().is_terminal(),
            checks: Mutex::new(ChecksView::default()),
        }
    }

    fn check_line(name: &str, state: &CheckProgress, spinner: char) -> String {
        match state {
            CheckProgress::Blocked => format!("  · {name}: waiting for its dependencies"),
            CheckProgress::Trying(None) => format!("  {spinner} {name}"),
            CheckProgress::Trying(Some(e)) => format!("  {spinner} {name}: {e}"),
            CheckProgress::Passed(after) => {
                format!(
                    "  {} {name} ({:.2}s)",
                    paint("32", "✓"),
                    after.as_secs_f64()
                )
            }
            CheckProgress::Failed(e) => format!("  {} {name}: {e}", paint("31", "✗")),
        }
    }
}

impl Default for Term {
    fn default() -> Self {
        Term::new()
    }
}

impl Reporter for Term {
    fn note(&self, text: &str) {
        note(text);
    }
    fn done(&self, text: &str) {
        done(text);
    }
    fn warn(&self, text: &str) {
        warn(text);
    }
    fn verbose(&self, text: &str) {
        verbose(text);
    }

    fn checks(&self, names: &[String], states: &[CheckProgress], finished: bool) {
        let Ok(mut view) = self.checks.lock() else {
            return;
        };
        let mut err = std::io::stderr().lock();
        if self.tty {
            // Redraw the block of check lines in place, a spinner on the ones in progress.
            const SPIN: [char; 4] = ['|', '/', '-', '\\'];
            view.frame += 1;
            let spinner = SPIN[(view.frame / 5) % SPIN.len()];
            if view.drawn > 0 {
                let _ = write!(err, "\x1b[{}A", view.drawn);
            }
            for (name, state) in names.iter().zip(states) {
                let mut text = Self::check_line(name, state, spinner);
                text.truncate(text.char_indices().nth(120).map_or(text.len(), |(i, _)| i));
                let _ = writeln!(err, "\x1b[2K{text}");
            }
            view.drawn = if finished { 0 } else { names.len() };
        } else {
            // Plain lines: each check once, when it passes (or at the end).
            view.reported.resize(names.len(), false);
            for (i, (name, state)) in names.iter().zip(states).enumerate() {
                let report = match state {
                    CheckProgress::Passed(_) => true,
                    _ => finished,
                };
                if report && !view.reported[i] {
                    let _ = writeln!(err, "{}", Self::check_line(name, state, ' '));
                    view.reported[i] = true;
                }
            }
        }
    }
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
