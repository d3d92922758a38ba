//! Errors as the user sees them: one line of message, a hint that says what to do next,
//! and an exit code from the one table below (also in the README).
//!
//! Every domain module has its own `thiserror` enum and implements [`Diagnostic`] for
//! it, so each variant carries its own exit code and hint; the command layer turns any
//! of them into an [`Error`] with `?`.

use std::fmt;

/// kinfra's exit codes. The same condition has the same code in every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum Exit {
    /// Everything worked.
    Ok = 0,
    /// A failure with no more specific code: a bad config or compose file, a file that
    /// cannot be read or written, an inconsistent registry.
    Failure = 1,
    /// The command line is wrong, or the command was run in the wrong kind of place
    /// (not a checkout of the project).
    Usage = 2,
    /// Something else holds what the command needs: a port, a slot, a directory, an
    /// instance name, a lock held by another kinfra command.
    Conflict = 3,
    /// A safety rule refused: work would be lost, the target is not what it should be,
    /// or a confirmation could not be asked for.
    Refused = 4,
    /// The named instance, snapshot, rescue or host does not exist.
    NotFound = 5,
    /// A program kinfra relies on failed or is missing: git, Docker, Compose, ssh.
    External = 6,
    /// The startability gate failed: a check failed or a service exited or turned
    /// unhealthy.
    GateFailed = 7,
    /// A deadline passed: the gate's, `wait`'s, or an outside command's.
    TimedOut = 8,
    /// The instance is not running (`wait` on a stopped instance).
    NotRunning = 9,
    /// Interrupted by Ctrl-C or SIGTERM (128 + SIGINT).
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Every code, in table order (for the README and its test).
    pub const ALL: [Exit; 11] = [
        Exit::Ok,
        Exit::Failure,
        Exit::Usage,
        Exit::Conflict,
        Exit::Refused,
        Exit::NotFound,
        Exit::External,
        Exit::GateFailed,
        Exit::TimedOut,
        Exit::NotRunning,
        Exit::Interrupted,
    ];

    /// One line for the exit-code table.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "success",
            Exit::Failure => "failure (bad config or compose file, unreadable or unwritable file)",
            Exit::Usage => "usage error (bad arguments, not a checkout of the project)",
            Exit::Conflict => {
                "conflict: a port, slot, directory, name or lock is held by something else"
            }
            Exit::Refused => {
                "refused by a safety rule (work would be lost, wrong target, no confirmation)"
            }
            Exit::NotFound => "not found (instance, snapshot, rescue, host)",
            Exit::External => "an outside program failed or is missing (git, Docker, Compose, ssh)",
            Exit::GateFailed => {
                "the startability gate failed (a check, or a service exited or is unhealthy)"
            }
            Exit::TimedOut => "timed out (gate, wait, or an outside command)",
            Exit::NotRunning => "the instance is not running",
            Exit::Interrupted => "interrupted (Ctrl-C or SIGTERM)",
        }
    }
}

/// What every domain error tells the user besides its message.
pub trait Diagnostic: std::error::Error {
    /// The exit code this error ends the command with.
    fn exit(&self) -> Exit;
    /// What to do next, if there is something useful to say.
    fn hint(&self) -> Option<String> {
        None
    }
}

/// The error a command ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The exit code as a number.
    pub fn code(&self) -> u8 {
        self.exit.code()
    }

    /// Replace the hint (for a caller that knows better what to do next).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }
}

// Transitional constructors, removed once every command returns typed errors.
impl Error {
    pub fn failure(message: impl Into<String>) -> Error {
        Error {
            exit: Exit::Failure,
            message: one_line(&message.into()),
            hint: None,
        }
    }

    pub fn with_exit(mut self, exit: Exit) -> Error {
        self.exit = exit;
        self
    }

    pub fn hint(self, hint: impl Into<String>) -> Error {
        self.with_hint(hint)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: Diagnostic> From<E> for Error {
    fn from(e: E) -> Error {
        Error {
            exit: e.exit(),
            // Messages quote user strings and child stderr; the error stays one line.
            message: one_line(&e.to_string()),
            hint: e.hint(),
        }
    }
}

/// Collapse line breaks (and the blanks around them) so a message stays one line.
pub fn one_line(text: &str) -> String {
    if !text.contains(['\n', '\r']) {
        return text.to_string();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("slot {0} is taken\nby someone")]
    struct Taken(u32);

    impl Diagnostic for Taken {
        fn exit(&self) -> Exit {
            Exit::Conflict
        }
        fn hint(&self) -> Option<String> {
            Some("pick another".into())
        }
    }

    #[test]
    fn a_diagnostic_becomes_a_one_line_error_with_its_code_and_hint() {
        let e: Error = Taken(3).into();
        assert_eq!(e.code(), 3);
        assert_eq!(e.message, "slot 3 is taken | by someone");
        assert_eq!(e.hint.as_deref(), Some("pick another"));
    }

    #[test]
    fn the_readme_has_the_exit_code_table() {
        let readme = include_str!("../README.md");
        for exit in Exit::ALL {
            let row = format!("| {} | {} |", exit.code(), exit.meaning());
            assert!(readme.contains(&row), "README lacks the row `{row}`");
        }
    }

    #[test]
    fn codes_are_distinct_and_keep_the_spec_ones() {
        let mut codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(&codes[..3], &[0, 1, 2]);
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Exit::ALL.len());
    }
}
