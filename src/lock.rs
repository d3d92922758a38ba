//! File locks between kinfra commands: the registry's short lock around each
//! read-modify-write, and the per-instance lock a command holds from start to end.
//!
//! Both are `flock` locks (`std::fs::File::lock`), so they are released when the guard
//! is dropped and also when the process dies, however it dies: a lock is never stale.
//!
//! Lock order, to rule out deadlock: a command takes its **instance lock first** and the
//! registry lock only inside it, for each short registry update; it never waits for an
//! instance lock while holding the registry lock. One command holds at most one
//! instance lock at a time, and does not take the same one twice (a second `flock` on a
//! new descriptor would wait for the first, even in the same process).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::report::Reporter;

/// How long a command waits for another kinfra command's lock by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variable overriding [`DEFAULT_TIMEOUT`], in (fractional) seconds.
pub const TIMEOUT_ENV: &str = "KINFRA_LOCK_TIMEOUT";

/// After this long a waiting command says what it is waiting for.
const ANNOUNCE_AFTER: Duration = Duration::from_secs(1);

const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot lock `{}`: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("another kinfra command held `{}` for more than {}s", .path.display(), .waited.as_secs())]
    Timeout { path: PathBuf, waited: Duration },
    #[error("{holder} holds `{instance}`; gave up after {}", seconds(*.waited))]
    Held {
        instance: String,
        /// Who holds it, as [`Holder::describe`] puts it.
        holder: String,
        waited: Duration,
    },
    #[error("instance id `{0}` cannot name a lock file")]
    BadId(String),
    #[error("interrupted while waiting for `{}`", .0.display())]
    Interrupted(PathBuf),
}

impl crate::error::Diagnostic for LockError {
    fn exit(&self) -> crate::error::Exit {
        use crate::error::Exit;
        match self {
            LockError::Timeout { .. } | LockError::Held { .. } => Exit::Conflict,
            LockError::BadId(_) => Exit::Usage,
            LockError::Io { .. } => Exit::Failure,
            LockError::Interrupted(_) => Exit::Interrupted,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            LockError::Timeout { .. } => Some(format!(
                "wait for the other command to finish, or raise {TIMEOUT_ENV} (seconds)"
            )),
            LockError::Held { .. } => Some(format!(
                "wait for that command to finish (or stop it) and run this again; {TIMEOUT_ENV} sets how long to wait (seconds)"
            )),
            _ => None,
        }
    }
}

/// "0.3s", "12s".
fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// The wait limit: `KINFRA_LOCK_TIMEOUT` seconds when it is a non-negative number,
/// else [`DEFAULT_TIMEOUT`].
pub fn timeout_from_env() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|s| parse_timeout(&s))
        .unwrap_or(DEFAULT_TIMEOUT)
}

fn parse_timeout(text: &str) -> Option<Duration> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// An exclusive lock on a file, released on drop (or when the process dies).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// Take the exclusive lock on `path` (created with its directory if missing), telling
/// `reporter` when it takes more than a second, giving up after `timeout`.
pub fn exclusive(
    path: &Path,
    timeout: Duration,
    reporter: &dyn Reporter,
) -> Result<FileLock, LockError> {
    let file = open_lock_file(path)?;
    let announce = || {
        reporter.note(&format!(
            "waiting for another kinfra command to release `{}`",
            path.display()
        ))
    };
    match acquire(&file, path, timeout, announce)? {
        Ok(()) => Ok(FileLock { _file: file }),
        Err(waited) => Err(LockError::Timeout {
            path: path.to_owned(),
            waited,
        }),
    }
}

/// Who holds an instance lock, as written into its lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The command after `kinfra`, e.g. `sandbox up`.
    pub command: String,
    pub since: String,
}

impl Holder {
    /// "`kinfra sandbox up` (pid 123)".
    pub fn describe(&self) -> String {
        format!("`kinfra {}` (pid {})", self.command, self.pid)
    }

    /// The holder recorded in a lock file's text; `None` when it is empty or not ours
    /// (the holder may be between taking the lock and writing its name).
    pub fn parse(text: &str) -> Option<Holder> {
        serde_json::from_str(text.trim()).ok()
    }
}

/// A command's exclusive hold on one instance, released on drop or process death.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Clear the holder's name while still holding the lock, so the file never
        // names a command that has finished. (If the process dies instead, the next
        // holder overwrites it.)
        let _ = self.file.set_len(0);
    }
}

/// `<state_dir>/locks/<instance_id>.lock`.
pub fn instance_lock_path(state_dir: &Path, instance_id: &str) -> Result<PathBuf, LockError> {
    let usable = !instance_id.is_empty()
        && instance_id != "."
        && instance_id != ".."
        && !instance_id.contains(['/', '\0'])
        && !instance_id.chars().any(char::is_control);
    if !usable {
        return Err(LockError::BadId(instance_id.to_owned()));
    }
    Ok(state_dir.join("locks").join(format!("{instance_id}.lock")))
}

/// Hold `instance_id` for the whole of `command` (the words after `kinfra`, e.g.
/// `sandbox up`), waiting up to `KINFRA_LOCK_TIMEOUT` for another command holding it.
/// Take it before any registry lock (see the module doc).
pub fn instance(
    state_dir: &Path,
    instance_id: &str,
    command: &str,
    reporter: &dyn Reporter,
) -> Result<InstanceLock, LockError> {
    instance_within(
        state_dir,
        instance_id,
        command,
        timeout_from_env(),
        reporter,
    )
}

/// [`instance`] with an explicit wait limit.
pub fn instance_within(
    state_dir: &Path,
    instance_id: &str,
    command: &str,
    timeout: Duration,
    reporter: &dyn Reporter,
) -> Result<InstanceLock, LockError> {
    let path = instance_lock_path(state_dir, instance_id)?;
    let file = open_lock_file(&path)?;
    let holder_text =
        || load_holder(&path).map_or_else(|| "another kinfra command".to_owned(), |h| h.describe());
    let announce = || {
        reporter.note(&format!(
            "waiting for {} to release `{instance_id}`",
            holder_text()
        ))
    };
    match acquire(&file, &path, timeout, announce)? {
        Ok(()) => {}
        Err(waited) => {
            return Err(LockError::Held {
                instance: instance_id.to_owned(),
                holder: holder_text(),
                waited,
            });
        }
    }
    let me = Holder {
        pid: std::process::id(),
        command: command.to_owned(),
        since: crate::timefmt::now_iso(),
    };
    let mut lock = InstanceLock { file, path };
    write_holder(&mut lock.file, &me).map_err(|source| LockError::Io {
        path: lock.path.clone(),
        source,
    })?;
    Ok(lock)
}

/// The holder named in an instance's lock file, if any.
pub fn load_holder(lock_path: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(lock_path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .ok()?;
    Holder::parse(&text)
}

fn write_holder(file: &mut File, holder: &Holder) -> io::Result<()> {
    let text = serde_json::to_string(holder).map_err(io::Error::other)?;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}

fn open_lock_file(path: &Path) -> Result<File, LockError> {
    let err = |source| LockError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(err)
}

/// Poll for the lock until `timeout`; `Ok(Err(waited))` when it never came free.
fn acquire(
    file: &File,
    path: &Path,
    timeout: Duration,
    announce: impl Fn(),
) -> Result<Result<(), Duration>, LockError> {
    let started = Instant::now();
    let mut announced = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Ok(())),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(source)) => {
                return Err(LockError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Ok(Err(waited));
        }
        if crate::interrupt::requested() {
            return Err(LockError::Interrupted(path.to_owned()));
        }
        if !announced && waited >= ANNOUNCE_AFTER {
            announce();
            announced = true;
        }
        std::thread::sleep(POLL.min(timeout - waited));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Diagnostic, Exit};
    use crate::report::{Capture, Silent};
    use std::sync::mpsc;

    #[test]
    fn timeout_parsing() {
        assert_eq!(parse_timeout("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_timeout("0"), Some(Duration::ZERO));
        for bad in ["", "-1", "NaN", "inf", "1e400", "soon"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn instance_ids_that_cannot_name_a_file_are_refused() {
        let dir = Path::new("/state");
        assert_eq!(
            instance_lock_path(dir, "ktrdr--x").unwrap(),
            Path::new("/state/locks/ktrdr--x.lock")
        );
        for bad in ["", ".", "..", "a/b", "../x", "a\nb"] {
            let err = instance_lock_path(dir, bad).unwrap_err();
            assert_eq!(err.exit(), Exit::Usage, "{bad:?}");
        }
    }

    #[test]
    fn holder_text_round_trips_and_garbage_is_nobody() {
        let h = Holder {
            pid: 123,
            command: "sandbox up".into(),
            since: "t".into(),
        };
        let text = serde_json::to_string(&h).unwrap();
        assert_eq!(Holder::parse(&text), Some(h.clone()));
        assert_eq!(h.describe(), "`kinfra sandbox up` (pid 123)");
        assert_eq!(Holder::parse(""), None);
        assert_eq!(Holder::parse("{\"pid\": 1"), None);
    }

    #[test]
    fn an_instance_lock_excludes_a_second_holder_and_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_owned();
        let first =
            instance_within(&state, "ktrdr--x", "sandbox up", DEFAULT_TIMEOUT, &Silent).unwrap();
        let holder = load_holder(first.path()).unwrap();
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.command, "sandbox up");

        // Another thread (its own descriptor, so its own flock) cannot take it.
        let s = state.clone();
        let err = std::thread::spawn(move || {
            instance_within(
                &s,
                "ktrdr--x",
                "sandbox down",
                Duration::from_millis(300),
                &Silent,
            )
            .unwrap_err()
        })
        .join()
        .unwrap();
        assert_eq!(err.exit(), Exit::Conflict);
        let msg = err.to_string();
        assert_eq!(
            msg,
            format!(
                "`kinfra sandbox up` (pid {}) holds `ktrdr--x`; gave up after 0.3s",
                std::process::id()
            )
        );
        assert!(err.hint().unwrap().contains(TIMEOUT_ENV));

        // Another instance is independent.
        let other = instance_within(&state, "ktrdr--y", "sandbox up", Duration::ZERO, &Silent);
        assert!(other.is_ok());

        // Released on drop; the file no longer names anyone.
        let path = first.path().to_owned();
        drop(first);
        assert_eq!(load_holder(&path), None);
        let again =
            instance_within(&state, "ktrdr--x", "sandbox down", Duration::ZERO, &Silent).unwrap();
        assert_eq!(load_holder(again.path()).unwrap().command, "sandbox down");
    }

    #[test]
    fn a_waiter_gets_the_lock_once_released_and_says_whom_it_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_owned();
        let first =
            instance_within(&state, "ktrdr--x", "snapshot", DEFAULT_TIMEOUT, &Silent).unwrap();
        let (tx, rx) = mpsc::channel();
        let s = state.clone();
        let waiter = std::thread::spawn(move || {
            let capture = Capture::default();
            tx.send(()).unwrap();
            let lock = instance_within(&s, "ktrdr--x", "sandbox up", DEFAULT_TIMEOUT, &capture);
            (lock.map(|l| load_holder(l.path())), capture.lines())
        });
        rx.recv().unwrap();
        std::thread::sleep(ANNOUNCE_AFTER + Duration::from_millis(300));
        drop(first);
        let (holder, lines) = waiter.join().unwrap();
        assert_eq!(holder.unwrap().unwrap().command, "sandbox up");
        assert_eq!(
            lines,
            vec![format!(
                "note: waiting for `kinfra snapshot` (pid {}) to release `ktrdr--x`",
                std::process::id()
            )]
        );
    }

    /// Run by [`a_lock_dies_with_its_process`] in a child process: take the lock, say
    /// so, and wait to be killed.
    #[test]
    #[ignore = "run as a child by a_lock_dies_with_its_process"]
    fn child_holds_an_instance_lock() {
        let Some(dir) = std::env::var_os("KINFRA_LOCK_TEST_DIR") else {
            return;
        };
        let _lock = instance_within(
            Path::new(&dir),
            "ktrdr--x",
            "sandbox destroy",
            Duration::ZERO,
            &Silent,
        )
        .unwrap();
        // The harness may print the test name on the same line first.
        println!("[child-locked]");
        std::thread::sleep(Duration::from_secs(30));
    }

    #[test]
    fn a_lock_dies_with_its_process() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "lock::tests::child_holds_an_instance_lock",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KINFRA_LOCK_TEST_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = io::BufReader::new(child.stdout.take().unwrap());
        let mut saw_locked = false;
        for line in stdout.lines() {
            if line.unwrap().contains("[child-locked]") {
                saw_locked = true;
                break;
            }
        }
        assert!(saw_locked, "the child never took the lock");

        let err = instance_within(
            dir.path(),
            "ktrdr--x",
            "sandbox up",
            Duration::from_millis(200),
            &Silent,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "`kinfra sandbox destroy` (pid {}) holds `ktrdr--x`",
                child.id()
            )),
            "{err}"
        );

        // SIGKILL: no destructor runs, yet the kernel drops the flock.
        child.kill().unwrap();
        child.wait().unwrap();
        let lock = instance_within(
            dir.path(),
            "ktrdr--x",
            "sandbox up",
            Duration::from_secs(5),
            &Silent,
        )
        .unwrap();
        assert_eq!(load_holder(lock.path()).unwrap().pid, std::process::id());
    }

    #[test]
    fn the_file_lock_times_out_with_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/instances.json.lock");
        let held = exclusive(&path, Duration::ZERO, &Silent).unwrap();
        let p = path.clone();
        let err = std::thread::spawn(move || {
            exclusive(&p, Duration::from_millis(100), &Silent).unwrap_err()
        })
        .join()
        .unwrap();
        assert_eq!(err.exit(), Exit::Conflict);
        assert!(err.to_string().starts_with("another kinfra command held `"));
        drop(held);
        assert!(exclusive(&path, Duration::ZERO, &Silent).is_ok());
    }
}
