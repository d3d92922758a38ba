//! `kinfra sandbox init-shared [--from PATH] [--minimal]` — the shared data directories
//! every instance mounts. A copy is staged beside the target and swapped in, so a failed
//! copy never loses the data already there.

use std::path::{Path, PathBuf};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::output;
use crate::process::Cmd;
use crate::registry::canonical;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Copy the subdirectories (data, models, strategies) from this checkout.
    #[arg(long, value_name = "PATH")]
    pub from: Option<PathBuf>,
    /// With --from: copy only the last subdirectory (strategies for ktrdr) and leave the
    /// large ones empty.
    #[arg(long, requires = "from")]
    pub minimal: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let config = &ctx.config;
    let shared = &config.shared_dir;
    std::fs::create_dir_all(shared)
        .map_err(|e| Error::failure(format!("cannot create `{}`: {e}", shared.display())))?;
    let Some(from) = &args.from else {
        for sub in &config.shared_subdirs {
            let dir = shared.join(&sub.name);
            std::fs::create_dir_all(&dir).map_err(crate::fsutil::fs_err("create", &dir))?;
        }
        output::done(&format!(
            "shared directories ready under `{}`",
            shared.display()
        ));
        output::data(&shared.display().to_string());
        return Ok(0);
    };
    if !from.is_dir() {
        return Err(Error::usage(format!(
            "`{}` is not a directory",
            from.display()
        )));
    }
    let src_root = canonical(from);
    let dest_root = canonical(shared);
    if src_root.starts_with(&dest_root) {
        return Err(Error::usage(format!(
            "`{}` is inside the shared directory `{}`; refusing to copy it into itself",
            src_root.display(),
            dest_root.display()
        )));
    }
    let last = config.shared_subdirs.len().saturating_sub(1);
    for (i, sub) in config.shared_subdirs.iter().enumerate() {
        let dest = shared.join(&sub.name);
        let src = src_root.join(&sub.name);
        if (args.minimal && i != last) || !src.is_dir() {
            std::fs::create_dir_all(&dest).map_err(crate::fsutil::fs_err("create", &dest))?;
            continue;
        }
        swap_in_copy(&src, &dest)?;
        output::done(&format!(
            "copied `{}` → `{}`",
            src.display(),
            dest.display()
        ));
    }
    output::data(&shared.display().to_string());
    Ok(0)
}

/// Copy `src` to a staging directory beside `dest`, then swap it in; the old `dest`
/// is removed only after the new one is in place.
fn swap_in_copy(src: &Path, dest: &Path) -> Result<()> {
    let parent = dest.parent().unwrap_or_else(|| Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid = std::process::id();
    let staging = parent.join(format!(".{name}.staging-{pid}"));
    let old = parent.join(format!(".{name}.old-{pid}"));
    let _ = std::fs::remove_dir_all(&staging);
    // Copying a data directory takes as long as it takes; Ctrl-C still stops it.
    let copy = Cmd::new("cp")
        .arg("-a")
        .arg("--")
        .arg(src)
        .arg(&staging)
        .no_timeout()
        .run();
    if let Err(e) = copy {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(Error::failure(format!(
            "copying `{}` failed; `{}` is unchanged: {e}",
            src.display(),
            dest.display()
        )));
    }
    let had_old = dest.exists();
    if had_old {
        std::fs::rename(dest, &old).map_err(crate::fsutil::fs_err("move aside", dest))?;
    }
    if let Err(e) = std::fs::rename(&staging, dest) {
        if had_old {
            let _ = std::fs::rename(&old, dest);
        }
        return Err(Error::failure(format!(
            "cannot move the copy into place: {e}"
        )));
    }
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}
