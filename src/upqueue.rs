//! A cap on concurrent `up`s (`budget.max_concurrent_ups`): an `up` takes one of N
//! places (a file lock each, released when the command ends or dies); when all are
//! taken it waits in the queue — marked in kinfra's state file, so `list` shows it
//! queued — instead of failing.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::error::{Diagnostic, Exit, Result};
use crate::report::Reporter;

const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot use the queue of `up`s in `{}`: {source}", .dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("interrupted while `{0}` waited for its turn to start")]
    Interrupted(String),
}

impl Diagnostic for QueueError {
    fn exit(&self) -> Exit {
        match self {
            QueueError::Io { .. } => Exit::Failure,
            QueueError::Interrupted(_) => Exit::Interrupted,
        }
    }
}

/// A place among the concurrent `up`s; given back when dropped.
pub struct Place {
    _file: File,
}

/// Where the places are: one directory per user, shared by every project.
fn dir() -> Result<PathBuf> {
    Ok(crate::index::state_root()?.join("up-places"))
}

/// Take a place among `max` (0: no cap, nothing taken), waiting in the queue while all
/// are taken.
pub fn take_place(
    config: &Config,
    id: &str,
    max: u32,
    reporter: &dyn Reporter,
) -> Result<Option<Place>> {
    if max == 0 {
        return Ok(None);
    }
    let dir = dir()?;
    let io = |source| QueueError::Io {
        dir: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut queued = false;
    loop {
        for k in 0..max {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{k}.lock")))
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {
                    if queued {
                        mark(config, id, false, reporter);
                        reporter.note(&format!("`{id}`'s turn to start"));
                    }
                    return Ok(Some(Place { _file: file }));
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(io(e).into()),
            }
        }
        if !queued {
            queued = true;
            mark(config, id, true, reporter);
            reporter.note(&format!(
                "queued: {max} `up`s are running already (`budget.max_concurrent_ups`); `{id}` waits for its turn"
            ));
        }
        if crate::interrupt::requested() {
            mark(config, id, false, reporter);
            return Err(QueueError::Interrupted(id.to_string()).into());
        }
        std::thread::sleep(POLL);
    }
}

/// Mark (or unmark) the instance as queued in kinfra's state file.
fn mark(config: &Config, id: &str, queued: bool, reporter: &dyn Reporter) {
    let now = crate::timefmt::now_iso();
    let _ = crate::registry::update_with_state(
        &config.registry_paths(),
        reporter,
        |reg, state| -> std::result::Result<(), crate::registry::RegistryError> {
            if reg.contains(id) {
                state.instance_mut(id).queued = queued.then(|| crate::state::Queued {
                    since: now.clone(),
                    pid: std::process::id(),
                });
            }
            Ok(())
        },
    );
}

/// Whether a queued mark is live: its waiter is still running.
pub fn is_waiting(q: &crate::state::Queued) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(q.pid as i32), None).is_ok()
}
