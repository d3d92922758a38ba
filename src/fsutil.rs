//! Small filesystem helpers: atomic writes, and the error of a file operation that
//! names what was being done to which path.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A filesystem operation that failed, with the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{}`: {source}", .path.display())]
pub struct FsError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl crate::error::Diagnostic for FsError {
    fn exit(&self) -> crate::error::Exit {
        crate::error::Exit::Failure
    }
}

/// `map_err` helper: `fs::create_dir_all(&p).map_err(fs_err("create", &p))?`.
pub fn fs_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FsError {
    let path = path.to_owned();
    move |source| FsError {
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
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
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

/// Temp files `write_atomically` left beside `path` when it was killed before renaming.
pub fn leftover_temp_files(path: &Path) -> Vec<std::path::PathBuf> {
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
        .collect()
}
