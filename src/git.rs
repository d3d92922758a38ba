//! Git, run hermetically: inherited `GIT_*` location variables cleared, porcelain and
//! `-z` output parsed by the pure functions at the bottom of this file.

use std::path::{Path, PathBuf};

use crate::process::{Cmd, ProcessError};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("cannot create `{}`: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unexpected output from `{command}`: `{output}`")]
    Unexpected { command: String, output: String },
}

/// Variables that would point git somewhere other than the directory we name.
const LOCATION_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
];

/// `git -C <dir> …` with the location variables cleared.
pub fn git(dir: &Path) -> Cmd {
    let mut cmd = Cmd::new("git").arg("-C").arg(dir);
    for var in LOCATION_VARS {
        cmd = cmd.env_remove(var);
    }
    cmd
}

/// Where a checkout sits: its top level, and whether it is a linked worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    /// Top of the checkout the directory is in.
    pub toplevel: PathBuf,
    /// Top of the main repository (the one holding the common `.git`).
    pub main_root: PathBuf,
    /// A linked worktree (made by `git worktree add`), not the main checkout.
    pub is_linked_worktree: bool,
}

/// The checkout containing `dir`, or `None` when `dir` is not in a git work tree.
pub fn repo_info(dir: &Path) -> Result<Option<RepoInfo>, GitError> {
    let cmd = git(dir).args([
        "rev-parse",
        "--path-format=absolute",
        "--show-toplevel",
        "--git-dir",
        "--git-common-dir",
    ]);
    let out = cmd.output()?;
    if !out.success() {
        return Ok(None);
    }
    parse_repo_info(&out.stdout)
        .map(Some)
        .ok_or_else(|| GitError::Unexpected {
            command: cmd.display(),
            output: out.stdout.trim().to_string(),
        })
}

/// `origin`'s URL, if there is an origin.
pub fn origin_url(dir: &Path) -> Result<Option<String>, GitError> {
    let out = git(dir).args(["remote", "get-url", "origin"]).output()?;
    Ok(out
        .success()
        .then(|| out.stdout.trim().to_string())
        .filter(|s| !s.is_empty()))
}

/// Whether `refs/heads/<branch>` exists.
pub fn local_branch_exists(repo: &Path, branch: &str) -> Result<bool, GitError> {
    ref_exists(repo, &format!("refs/heads/{branch}"))
}

pub fn ref_exists(repo: &Path, refname: &str) -> Result<bool, GitError> {
    let out = git(repo)
        .args(["show-ref", "--verify", "--quiet", refname])
        .output()?;
    Ok(out.success())
}

/// The commit `HEAD` points at, or `None` in a repository without commits.
pub fn head_commit(dir: &Path) -> Result<Option<String>, GitError> {
    let out = git(dir)
        .args(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
        .output()?;
    Ok(out.success().then(|| out.stdout.trim().to_string()))
}

/// Whether `name` is acceptable as a branch name.
pub fn is_valid_branch_name(repo: &Path, name: &str) -> Result<bool, GitError> {
    let out = git(repo)
        .args(["check-ref-format", "--branch", name])
        .output()?;
    Ok(out.success())
}

/// The branch a fresh clone should check out: origin's default branch when known, else
/// `main`, else `master`, else whatever the main repository has checked out.
pub fn default_branch(repo: &Path) -> Result<Option<String>, GitError> {
    let out = git(repo)
        .args([
            "symbolic-ref",
            "--quiet",
            "--short",
            "refs/remotes/origin/HEAD",
        ])
        .output()?;
    let origin_head = out
        .success()
        .then(|| {
            out.stdout
                .trim()
                .strip_prefix("origin/")
                .map(str::to_string)
        })
        .flatten();
    if let Some(name) = origin_head
        && local_branch_exists(repo, &name)?
    {
        return Ok(Some(name));
    }
    for name in ["main", "master"] {
        if local_branch_exists(repo, name)? {
            return Ok(Some(name.to_string()));
        }
    }
    let out = git(repo)
        .args(["symbolic-ref", "--quiet", "--short", "HEAD"])
        .output()?;
    Ok(out
        .success()
        .then(|| out.stdout.trim().to_string())
        .filter(|s| !s.is_empty()))
}

/// How `worktree_add` should get its branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchSource {
    /// Check out an existing branch (local, or one `git worktree add` can track from a
    /// remote).
    Existing(String),
    /// Create `branch` at `start`.
    New { branch: String, start: String },
}

/// `git worktree add` run from the main repository.
pub fn worktree_add(main: &Path, path: &Path, source: &BranchSource) -> Result<(), GitError> {
    let cmd = git(main).args(["worktree", "add", "--quiet"]);
    let cmd = match source {
        BranchSource::Existing(branch) => cmd.arg("--").arg(path).arg(branch),
        BranchSource::New { branch, start } => {
            cmd.arg("-b").arg(branch).arg("--").arg(path).arg(start)
        }
    };
    cmd.run()?;
    Ok(())
}

/// `git worktree remove --force` from the main repository. The caller has already
/// refused or rescued uncommitted work; `--force` is what lets git remove the
/// untracked env file.
pub fn worktree_remove(main: &Path, path: &Path) -> Result<(), GitError> {
    git(main)
        .args(["worktree", "remove", "--force", "--"])
        .arg(path)
        .run()?;
    Ok(())
}

/// Forget worktrees whose directories are gone.
pub fn worktree_prune(main: &Path) -> Result<(), GitError> {
    git(main).args(["worktree", "prune"]).run()?;
    Ok(())
}

/// All worktrees of the repository (the main one first).
pub fn worktree_list(main: &Path) -> Result<Vec<Worktree>, GitError> {
    let out = git(main)
        .args(["worktree", "list", "--porcelain", "-z"])
        .run()?;
    Ok(parse_worktree_list(&out))
}

/// Tracked changes and untracked files (ignored files excluded), as paths relative to
/// the work tree.
pub fn uncommitted(dir: &Path) -> Result<Vec<String>, GitError> {
    let out = git(dir)
        .args([
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--ignore-submodules=none",
        ])
        .run()?;
    Ok(parse_status_paths(&out))
}

/// `git clone` of a local repository, then `origin` set to `origin_url`.
pub fn clone(
    src: &Path,
    dest: &Path,
    branch: Option<&str>,
    origin: Option<&str>,
) -> Result<(), GitError> {
    let parent = dest.parent().unwrap_or_else(|| Path::new("."));
    let mut cmd = git(parent).args(["clone", "--quiet", "--no-local"]);
    if let Some(b) = branch {
        cmd = cmd.arg("--branch").arg(b);
    }
    cmd.arg("--").arg(src).arg(dest).run()?;
    if let Some(url) = origin {
        git(dest).args(["remote", "set-url", "origin", url]).run()?;
    }
    Ok(())
}

/// A rescue commit holding a worktree's full state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescue {
    pub refname: String,
    pub commit: String,
}

/// Store `worktree`'s whole working tree (tracked changes and untracked, non-ignored
/// files, less `exclude`) as a commit under `refs/kinfra/rescue/<instance_id>/<stamp>` in `main`,
/// without touching the worktree's index or files.
pub fn rescue(
    main: &Path,
    worktree: &Path,
    instance_id: &str,
    stamp: &str,
    exclude: &[&str],
) -> Result<Rescue, GitError> {
    let index_dir = tempfile_dir(worktree)?;
    let index = index_dir.join("index");
    let with_index = |cmd: Cmd| cmd.env("GIT_INDEX_FILE", &index);
    let head = head_commit(worktree)?;
    let result = (|| {
        if head.is_some() {
            with_index(git(worktree).args(["read-tree", "HEAD"])).run()?;
        }
        with_index(git(worktree).args(["add", "--all", "--", "."])).run()?;
        if !exclude.is_empty() {
            let rm = ["rm", "--cached", "--quiet", "--ignore-unmatch", "--"];
            with_index(git(worktree).args(rm).args(exclude)).run()?;
        }
        let tree = with_index(git(worktree).args(["write-tree"])).run()?;
        let mut commit = identity(git(worktree))?.args(["commit-tree", tree.trim()]);
        if let Some(h) = &head {
            commit = commit.args(["-p", h]);
        }
        let sha = commit
            .args(["-m", &format!("kinfra rescue of {instance_id} at {stamp}")])
            .run()?;
        let sha = sha.trim().to_string();
        // Never overwrite an earlier rescue: the empty old value makes update-ref
        // create-only, and a rescue in the same second gets a suffix.
        let mut refname = format!("refs/kinfra/rescue/{instance_id}/{stamp}");
        for n in 2.. {
            let created = git(main)
                .args(["update-ref", &refname, &sha, ""])
                .output()?
                .success();
            if created || n > 100 {
                break;
            }
            refname = format!("refs/kinfra/rescue/{instance_id}/{stamp}-{n}");
        }
        if !ref_exists(main, &refname)? {
            return Err(GitError::Unexpected {
                command: format!("git update-ref {refname}"),
                output: "could not create a rescue ref".into(),
            });
        }
        Ok(Rescue {
            refname,
            commit: sha,
        })
    })();
    let _ = std::fs::remove_dir_all(&index_dir);
    result
}

/// A private temp directory for an index file (outside the work tree, so `git add`
/// never sees it).
fn tempfile_dir(worktree: &Path) -> Result<PathBuf, GitError> {
    let base = std::env::temp_dir().join(format!(
        "kinfra-rescue-{}-{}",
        std::process::id(),
        worktree
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&base).map_err(|source| GitError::Io {
        path: base.clone(),
        source,
    })?;
    Ok(base)
}

/// The user's identity when git has one, else a fixed one, so a rescue never fails
/// for want of `user.name`.
fn identity(cmd: Cmd) -> Result<Cmd, GitError> {
    let probe = git(Path::new("."))
        .args(["var", "GIT_COMMITTER_IDENT"])
        .output()?;
    if probe.success() {
        return Ok(cmd);
    }
    Ok(cmd
        .env("GIT_AUTHOR_NAME", "kinfra")
        .env("GIT_AUTHOR_EMAIL", "kinfra@localhost")
        .env("GIT_COMMITTER_NAME", "kinfra")
        .env("GIT_COMMITTER_EMAIL", "kinfra@localhost"))
}

/// Rescue refs, `(refname, committer unix time)`.
pub fn rescue_refs(main: &Path) -> Result<Vec<(String, i64)>, GitError> {
    let out = git(main)
        .args([
            "for-each-ref",
            "--format=%(refname) %(committerdate:unix)",
            "refs/kinfra/rescue/",
        ])
        .run()?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let (r, t) = l.rsplit_once(' ')?;
            Some((r.to_string(), t.parse().ok()?))
        })
        .collect())
}

// ---- pure parsers ----

/// Three absolute paths from `rev-parse --show-toplevel --git-dir --git-common-dir`.
pub fn parse_repo_info(stdout: &str) -> Option<RepoInfo> {
    let mut lines = stdout.lines();
    let toplevel = PathBuf::from(lines.next()?);
    let git_dir = PathBuf::from(lines.next()?);
    let common = PathBuf::from(lines.next()?);
    if toplevel.as_os_str().is_empty() {
        return None;
    }
    let main_root = if common.file_name().is_some_and(|n| n == ".git") {
        common.parent()?.to_owned()
    } else {
        // A repository whose git dir is not named `.git`: treat the checkout as main.
        toplevel.clone()
    };
    Some(RepoInfo {
        is_linked_worktree: git_dir != common,
        toplevel,
        main_root,
    })
}

/// One record of `git worktree list --porcelain -z`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Worktree {
    pub path: PathBuf,
    pub head: Option<String>,
    pub branch: Option<String>,
    pub bare: bool,
    pub detached: bool,
    pub locked: bool,
    pub prunable: bool,
}

pub fn parse_worktree_list(stdout: &str) -> Vec<Worktree> {
    let mut out = Vec::new();
    let mut cur: Option<Worktree> = None;
    for field in stdout.split('\0') {
        if field.is_empty() {
            if let Some(w) = cur.take() {
                out.push(w);
            }
            continue;
        }
        let (name, value) = field.split_once(' ').unwrap_or((field, ""));
        if name == "worktree" {
            if let Some(w) = cur.take() {
                out.push(w);
            }
            cur = Some(Worktree {
                path: PathBuf::from(value),
                ..Worktree::default()
            });
            continue;
        }
        let Some(w) = cur.as_mut() else { continue };
        match name {
            "HEAD" => w.head = Some(value.to_string()),
            "branch" => {
                w.branch = Some(
                    value
                        .strip_prefix("refs/heads/")
                        .unwrap_or(value)
                        .to_string(),
                )
            }
            "bare" => w.bare = true,
            "detached" => w.detached = true,
            "locked" => w.locked = true,
            "prunable" => w.prunable = true,
            _ => {}
        }
    }
    if let Some(w) = cur {
        out.push(w);
    }
    out
}

/// Paths from `git status --porcelain=v1 -z`; a rename contributes its new path.
pub fn parse_status_paths(stdout: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fields = stdout.split('\0');
    while let Some(entry) = fields.next() {
        // `XY PATH`: two status letters and a space, then the path.
        let (Some(xy), Some(path)) = (entry.get(..3), entry.get(3..)) else {
            continue;
        };
        if path.is_empty() {
            continue;
        }
        out.push(path.to_string());
        // Renames and copies are followed by the original path.
        if xy.contains('R') || xy.contains('C') {
            fields.next();
        }
    }
    out
}

impl crate::error::Diagnostic for GitError {
    fn exit(&self) -> crate::error::Exit {
        match self {
            GitError::Process(ProcessError::TimedOut { .. }) => crate::error::Exit::TimedOut,
            GitError::Io { .. } => crate::error::Exit::Failure,
            _ => crate::error::Exit::External,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_info_of_main_checkout_and_linked_worktree() {
        let main = parse_repo_info("/d/repo\n/d/repo/.git\n/d/repo/.git\n").unwrap();
        assert_eq!(main.main_root, PathBuf::from("/d/repo"));
        assert!(!main.is_linked_worktree);
        let linked =
            parse_repo_info("/d/repo--x\n/d/repo/.git/worktrees/repo--x\n/d/repo/.git\n").unwrap();
        assert_eq!(linked.toplevel, PathBuf::from("/d/repo--x"));
        assert_eq!(linked.main_root, PathBuf::from("/d/repo"));
        assert!(linked.is_linked_worktree);
        assert_eq!(parse_repo_info(""), None);
    }

    #[test]
    fn worktree_list_records() {
        let out = "worktree /d/repo\0HEAD 1111\0branch refs/heads/main\0\0\
                   worktree /d/my tree\0HEAD 2222\0detached\0locked reason\0\0\
                   worktree /d/gone\0HEAD 3333\0branch refs/heads/feat/x\0prunable gitdir file points to non-existent location\0\0";
        let list = parse_worktree_list(out);
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].branch.as_deref(), Some("main"));
        assert_eq!(list[1].path, PathBuf::from("/d/my tree"));
        assert!(list[1].detached && list[1].locked);
        assert_eq!(list[2].branch.as_deref(), Some("feat/x"));
        assert!(list[2].prunable);
    }

    #[test]
    fn status_paths_handle_renames_and_spaces() {
        let out = " M src/a.rs\0?? new file.txt\0R  new.rs\0old.rs\0?? -dash\0";
        assert_eq!(
            parse_status_paths(out),
            vec!["src/a.rs", "new file.txt", "new.rs", "-dash"]
        );
        assert!(parse_status_paths("").is_empty());
    }
}
