//! How domain code tells the user what it is doing without printing: it calls a
//! [`Reporter`], which the command layer owns (the terminal reporter in `output`, a
//! silent or capturing one for the MCP server and for tests).

use std::sync::Mutex;
use std::time::Duration;

/// Where one gate check stands, for live progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckProgress {
    /// Waiting for the checks it depends on.
    Blocked,
    /// Being tried; the last error so far.
    Trying(Option<String>),
    Passed(Duration),
    Failed(String),
}

/// Receives progress from domain code. Every method has a default that drops the
/// message, so a reporter implements only what it shows.
pub trait Reporter: Sync {
    /// A step in progress or a fact worth a line ("cloning …").
    fn note(&self, _text: &str) {}
    /// A step that finished.
    fn done(&self, _text: &str) {}
    /// Something the user should know that does not stop the command.
    fn warn(&self, _text: &str) {}
    /// Only shown with `--verbose`.
    fn verbose(&self, _text: &str) {}
    /// Live state of the gate's checks (called often; a terminal redraws in place).
    fn checks(&self, _names: &[String], _states: &[CheckProgress], _finished: bool) {}
}

/// Drops everything.
pub struct Silent;

impl Reporter for Silent {}

/// Keeps every line, prefixed with its kind (`note:`, `done:`, `warn:`), for tests.
#[derive(Default)]
pub struct Capture {
    pub lines: Mutex<Vec<String>>,
}

impl Capture {
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn push(&self, kind: &str, text: &str) {
        if let Ok(mut l) = self.lines.lock() {
            l.push(format!("{kind}: {text}"));
        }
    }
}

impl Reporter for Capture {
    fn note(&self, text: &str) {
        self.push("note", text);
    }
    fn done(&self, text: &str) {
        self.push("done", text);
    }
    fn warn(&self, text: &str) {
        self.push("warn", text);
    }
    fn verbose(&self, text: &str) {
        self.push("verbose", text);
    }
}
