//! Small filesystem helpers: atomic writes and their leftovers, reading a file that must
//! be a regular file, and the error of a file operation that names what was being done
//! to which path.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A filesystem operation that failed, with the path it failed on.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot {action} `{}`: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Something other than a file sits where a file is expected; reading a FIFO would
    /// block for ever and a device could be anything.
    #[error("`{}` is {kind}, not a regular file", .path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("`{}` is larger than {max} bytes", .path.display())]
    TooLarge { path: PathBuf, max: u64 },
}

impl crate::error::Diagnostic for FsError {
    fn exit(&self) -> crate::error::Exit {
        crate::error::Exit::Failure
    }

    fn hint(&self) -> Option<String> {
        match self {
            FsError::NotRegular { path, .. } => Some(format!(
                "move `{}` out of the way; kinfra expects a file there",
                path.display()
            )),
            _ => None,
        }
    }
}

/// `map_err` helper: `fs::create_dir_all(&p).map_err(fs_err("create", &p))?`.
pub fn fs_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FsError {
    let path = path.to_owned();
    move |source| FsError::Io {
        action,
        path,
        source,
    }
}

/// Write `bytes` to `path` via a temp file in the same directory, fsync, rename, so a
/// reader sees either the old or the new content, never a torn file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The writer's pid in the name tells a leftover from a write in progress.
    let tmp = dir.join(temp_name(&name, std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        crate::crashpoint::hit(&format!("write:{name}:before-rename"));
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The name of the temp file `write_atomically` uses for `path`, for the writer `pid`.
fn temp_name(name: &str, pid: u32) -> String {
    format!(".{name}.tmp.{pid}")
}

/// Temp files `write_atomically` left beside `path` when it was killed before renaming.
/// A temp file whose writer is still running (another kinfra, mid-write) is not one.
pub fn leftover_temp_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .filter(|p| !writer_alive(p))
        .collect()
}

/// The writer's pid from a temp file name (`.<name>.tmp.<pid>`).
fn writer_pid(temp_path: &Path) -> Option<i32> {
    let name = temp_path.file_name()?.to_str()?;
    let (_, pid) = name.rsplit_once(".tmp.")?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

/// Whether the process that is writing `temp_path` (pid from its name) still runs, so
/// its temp file must be left alone. A name without a pid has no live writer.
pub fn writer_alive(temp_path: &Path) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let Some(pid) = writer_pid(temp_path) else {
        return false;
    };
    // Signal 0 only asks whether the process exists (EPERM: it does, as another user).
    // Unlike `/proc/<pid>`, this works where there is no procfs (macOS).
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// The contents of `path`, at most `max_bytes`, when it is a regular file (or a symlink
/// to one); `None` when nothing is there. A FIFO, socket, device or directory is an
/// error and is never read: a FIFO would block for ever waiting for a writer.
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, FsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fs_err("inspect", path)(e)),
    };
    check_regular(path, &meta.file_type())?;
    // The check above and the open below race with whoever can write the directory: open
    // without blocking (a FIFO swapped in since would block in `open` itself), and no
    // controlling terminal, then check what was actually opened.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fs_err("open", path)(e)),
    };
    let meta = file.metadata().map_err(fs_err("inspect", path))?;
    check_regular(path, &meta.file_type())?;
    if meta.len() > max_bytes {
        return Err(FsError::TooLarge {
            path: path.to_owned(),
            max: max_bytes,
        });
    }
    let mut bytes = Vec::new();
    // One byte more than allowed tells a file that grew since the check.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(fs_err("read", path))?;
    if bytes.len() as u64 > max_bytes {
        return Err(FsError::TooLarge {
            path: path.to_owned(),
            max: max_bytes,
        });
    }
    Ok(Some(bytes))
}

fn check_regular(path: &Path, file_type: &std::fs::FileType) -> Result<(), FsError> {
    match kind_of(file_type) {
        None => Ok(()),
        Some(kind) => Err(FsError::NotRegular {
            path: path.to_owned(),
            kind,
        }),
    }
}

/// What a non-regular file is, with its article, for messages; `None` for a file.
fn kind_of(file_type: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        None
    } else if file_type.is_fifo() {
        Some("a FIFO")
    } else if file_type.is_socket() {
        Some("a socket")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else if file_type.is_dir() {
        Some("a directory")
    } else {
        Some("not a file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        // nix's `mkfifo` needs its `fs` feature; the program does the same.
        let ok = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo {}", path.display());
    }

    #[test]
    fn reads_a_regular_file_and_none_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(read_regular(&path, 10).unwrap(), None);
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(read_regular(&path, 10).unwrap(), Some(b"hello".to_vec()));
        // Through a symlink too.
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read_regular(&link, 10).unwrap(), Some(b"hello".to_vec()));
    }

    #[test]
    fn refuses_a_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instances.json");
        mkfifo(&path);
        let started = std::time::Instant::now();
        let err = read_regular(&path, 1 << 20).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(
            err.to_string(),
            format!("`{}` is a FIFO, not a regular file", path.display())
        );
        // A symlink to the FIFO is refused the same way.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            read_regular(&link, 10),
            Err(FsError::NotRegular { kind: "a FIFO", .. })
        ));
    }

    #[test]
    fn refuses_devices_sockets_and_directories() {
        assert!(matches!(
            read_regular(Path::new("/dev/null"), 10),
            Err(FsError::NotRegular {
                kind: "a character device",
                ..
            })
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_regular(dir.path(), 10),
            Err(FsError::NotRegular {
                kind: "a directory",
                ..
            })
        ));
        let sock = dir.path().join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(matches!(
            read_regular(&sock, 10),
            Err(FsError::NotRegular {
                kind: "a socket",
                ..
            })
        ));
    }

    #[test]
    fn refuses_a_file_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, [b'x'; 11]).unwrap();
        assert!(matches!(
            read_regular(&path, 10),
            Err(FsError::TooLarge { max: 10, .. })
        ));
        assert_eq!(read_regular(&path, 11).unwrap().map(|b| b.len()), Some(11));
    }

    #[test]
    fn writer_alive_follows_the_pid_in_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let me = dir
            .path()
            .join(temp_name("instances.json", std::process::id()));
        assert!(writer_alive(&me));
        // A child that has exited and been reaped is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let dead = dir.path().join(temp_name("instances.json", gone));
        assert!(!writer_alive(&dead));
        assert!(!writer_alive(&dir.path().join(".instances.json.tmp.x1")));
        assert!(!writer_alive(&dir.path().join(".instances.json.tmp.")));
        assert!(!writer_alive(&dir.path().join(".instances.json.tmp.0")));
    }

    #[test]
    fn leftovers_skip_temp_files_of_live_writers() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("instances.json");
        let mine = dir
            .path()
            .join(temp_name("instances.json", std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let stale = dir.path().join(temp_name("instances.json", gone));
        std::fs::write(&mine, b"{}").unwrap();
        std::fs::write(&stale, b"{}").unwrap();
        std::fs::write(dir.path().join(".other.tmp.1"), b"").unwrap();
        assert_eq!(leftover_temp_files(&target), vec![stale]);
    }

    #[test]
    fn writes_atomically_without_leaving_a_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.json");
        write_atomically(&target, b"one").unwrap();
        write_atomically(&target, b"two").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
