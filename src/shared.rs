//! The shared data directories every instance mounts (`init-shared`). Never deletes
//! data: a copy is staged beside its target and swapped in, and an existing non-empty
//! directory is first moved aside as a timestamped backup that is kept.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Diagnostic, Exit, Result};
use crate::fsutil::fs_err;
use crate::process::Cmd;
use crate::registry::canonical;
use crate::report::Reporter;

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("`{}` is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("`{}` and the shared directory `{}` overlap (one is inside the other); refusing to copy", .from.display(), .shared.display())]
    Overlap { from: PathBuf, shared: PathBuf },
    #[error("copying `{}` failed; `{}` is unchanged: {reason}", .from.display(), .dest.display())]
    Copy {
        from: PathBuf,
        dest: PathBuf,
        reason: String,
    },
}

impl Diagnostic for SharedError {
    fn exit(&self) -> Exit {
        match self {
            SharedError::NotADirectory(_) | SharedError::Overlap { .. } => Exit::Usage,
            SharedError::Copy { .. } => Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            SharedError::NotADirectory(_) => {
                Some("give a checkout that has the shared subdirectories".into())
            }
            SharedError::Overlap { .. } => {
                Some("copy from a checkout outside the shared directory".into())
            }
            SharedError::Copy { .. } => None,
        }
    }
}

/// Size of a directory tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    pub bytes: u64,
    pub files: u64,
}

impl Size {
    pub fn of(path: &Path) -> Size {
        let mut size = Size::default();
        let mut stack = vec![path.to_owned()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    Ok(_) => {
                        size.files += 1;
                        size.bytes += e.metadata().map_or(0, |m| m.len());
                    }
                    Err(_) => {}
                }
            }
        }
        size
    }

    pub fn describe(&self) -> String {
        format!(
            "{} in {} file(s)",
            crate::rescue::human_size(self.bytes),
            self.files
        )
    }
}

/// One shared subdirectory's part of the plan.
#[derive(Debug, Clone)]
pub struct Sub {
    pub name: String,
    pub dest: PathBuf,
    /// Copied from here (`--from`), with its size.
    pub source: Option<(PathBuf, Size)>,
    /// What is there now.
    pub existing: Option<Size>,
}

/// What `init-shared` will do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dir: PathBuf,
    pub subs: Vec<Sub>,
}

/// `from`: copy the subdirectories from this checkout; `None`: create them empty.
pub fn plan(config: &Config, from: Option<&Path>) -> Result<Plan> {
    let dir = config.shared_dir.clone();
    let src_root = match from {
        None => None,
        Some(f) if !f.is_dir() => return Err(SharedError::NotADirectory(f.to_owned()).into()),
        Some(f) => {
            let src = canonical(f);
            let shared = canonical(&dir);
            if src.starts_with(&shared) || shared.starts_with(&src) {
                return Err(SharedError::Overlap { from: src, shared }.into());
            }
            Some(src)
        }
    };
    let subs = config
        .shared_subdirs
        .iter()
        .map(|s| {
            let dest = dir.join(&s.name);
            let source = src_root
                .as_ref()
                .map(|r| r.join(&s.name))
                .filter(|p| p.is_dir())
                .map(|p| {
                    let size = Size::of(&p);
                    (p, size)
                });
            Sub {
                name: s.name.clone(),
                existing: dest.is_dir().then(|| Size::of(&dest)),
                dest,
                source,
            }
        })
        .collect();
    Ok(Plan { dir, subs })
}

impl Plan {
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!("shared data under `{}`", self.dir.display())];
        for s in &self.subs {
            let now = match s.existing {
                Some(size) if size.files > 0 => format!("has {}", size.describe()),
                Some(_) => "exists, empty".into(),
                None => "missing".into(),
            };
            match &s.source {
                Some((src, size)) => {
                    lines.push(format!(
                        "  {}: copy `{}` ({}); now {now}{}",
                        s.name,
                        src.display(),
                        size.describe(),
                        if s.existing.is_some_and(|e| e.files > 0) {
                            " (moved aside as a backup first, kept)"
                        } else {
                            ""
                        }
                    ));
                }
                None => lines.push(format!(
                    "  {}: {}",
                    s.name,
                    if s.existing.is_some() {
                        format!("keep as it is ({now})")
                    } else {
                        "create empty".into()
                    }
                )),
            }
        }
        lines
    }
}

/// What `execute` did that the user should know.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Directories moved aside, kept.
    pub backups: Vec<PathBuf>,
}

pub fn execute(plan: &Plan, reporter: &dyn Reporter) -> Result<Outcome> {
    std::fs::create_dir_all(&plan.dir).map_err(fs_err("create", &plan.dir))?;
    let mut outcome = Outcome::default();
    for s in &plan.subs {
        match &s.source {
            None => {
                std::fs::create_dir_all(&s.dest).map_err(fs_err("create", &s.dest))?;
            }
            Some((src, _)) => {
                if let Some(backup) = swap_in_copy(src, &s.dest)? {
                    reporter.note(&format!(
                        "kept the previous `{}` as `{}`",
                        s.name,
                        backup.display()
                    ));
                    outcome.backups.push(backup);
                }
                reporter.done(&format!(
                    "copied `{}` → `{}`",
                    src.display(),
                    s.dest.display()
                ));
            }
        }
    }
    Ok(outcome)
}

/// Copy `src` to a staging directory beside `dest`, then swap it in. A non-empty
/// `dest` is moved aside to a timestamped backup first (and kept); nothing is removed
/// recursively.
fn swap_in_copy(src: &Path, dest: &Path) -> Result<Option<PathBuf>> {
    let parent = dest.parent().unwrap_or_else(|| Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = parent.join(format!(".{name}.staging-{}", std::process::id()));
    if staging.exists() {
        return Err(SharedError::Copy {
            from: src.to_owned(),
            dest: dest.to_owned(),
            reason: format!("`{}` is in the way", staging.display()),
        }
        .into());
    }
    // A big data directory may take a long time: no time limit.
    let copy = Cmd::new("cp")
        .arg("-a")
        .arg("--")
        .arg(src)
        .arg(&staging)
        .no_timeout()
        .run();
    if let Err(e) = copy {
        return Err(SharedError::Copy {
            from: src.to_owned(),
            dest: dest.to_owned(),
            reason: format!("{e} (the partial copy is left at `{}`)", staging.display()),
        }
        .into());
    }
    let mut backup = None;
    if dest.exists() {
        let empty = std::fs::read_dir(dest).is_ok_and(|mut d| d.next().is_none());
        if empty {
            std::fs::remove_dir(dest).map_err(fs_err("replace", dest))?;
        } else {
            let aside = parent.join(format!("{name}.backup-{}", crate::timefmt::now_compact()));
            std::fs::rename(dest, &aside).map_err(fs_err("move aside", dest))?;
            backup = Some(aside);
        }
    }
    if let Err(e) = std::fs::rename(&staging, dest) {
        if let Some(b) = &backup {
            let _ = std::fs::rename(b, dest);
        }
        return Err(crate::fsutil::fs_err("move the copy into place at", dest)(e).into());
    }
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Silent;
    use std::os::unix::fs::symlink;

    fn config_with_shared(dir: &Path) -> Config {
        let mut config = Config::builtin();
        config.shared_dir = dir.to_owned();
        config
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A source that is, contains, or lies inside the shared directory (also through
    /// a symlink) is refused before anything is touched.
    #[test]
    fn a_source_that_resolves_to_the_shared_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir_all(shared.join("data")).unwrap();
        std::fs::write(shared.join("data/prices.csv"), "1,2,3").unwrap();
        symlink(&shared, dir.path().join("link")).unwrap();
        let config = config_with_shared(&shared);
        for from in [
            shared.clone(),
            dir.path().join("link"),
            shared.join("data"),
            dir.path().to_owned(),
        ] {
            let err = plan(&config, Some(&from)).expect_err(&from.display().to_string());
            assert!(err.to_string().contains("overlap"), "{err}");
        }
        assert_eq!(names(&shared), ["data"]);
        assert_eq!(names(&shared.join("data")), ["prices.csv"]);
    }

    /// Existing shared data is moved aside as a timestamped backup and kept; the plan
    /// shows sizes and file counts; without `--from` existing data is left as it is.
    #[test]
    fn existing_data_is_kept_as_a_backup_and_the_plan_shows_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, from) = (dir.path().join("shared"), dir.path().join("checkout"));
        std::fs::create_dir_all(shared.join("data")).unwrap();
        std::fs::write(shared.join("data/old.csv"), "old data").unwrap();
        std::fs::create_dir_all(from.join("data")).unwrap();
        std::fs::write(from.join("data/new.csv"), "new").unwrap();
        let config = config_with_shared(&shared);

        let kept = plan(&config, None).unwrap();
        let text = kept.describe().join("\n");
        assert!(
            text.contains("keep as it is (has 8 B in 1 file(s))"),
            "{text}"
        );
        execute(&kept, &Silent).unwrap();
        assert_eq!(names(&shared.join("data")), ["old.csv"]);

        let copy = plan(&config, Some(&from)).unwrap();
        let text = copy.describe().join("\n");
        assert!(text.contains("3 B in 1 file(s)"), "{text}");
        assert!(
            text.contains("now has 8 B in 1 file(s) (moved aside"),
            "{text}"
        );
        let outcome = execute(&copy, &Silent).unwrap();
        assert_eq!(names(&shared.join("data")), ["new.csv"]);
        assert_eq!(outcome.backups.len(), 1);
        let backup = &outcome.backups[0];
        assert!(
            backup
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("data.backup-"),
            "{}",
            backup.display()
        );
        assert_eq!(
            std::fs::read_to_string(backup.join("old.csv")).unwrap(),
            "old data"
        );
        assert_eq!(
            std::fs::read_to_string(from.join("data/new.csv")).unwrap(),
            "new"
        );
    }
}
