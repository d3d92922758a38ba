//! Work that removing a worktree would lose, and rescues that keep it.
//!
//! [`unsaved_work`] finds every kind: uncommitted and untracked files, staged versions
//! that differ from the working file, edits hidden by `skip-worktree` or
//! `assume-unchanged`, commits on no branch (a detached `HEAD`, an in-progress rebase,
//! merge, cherry-pick, revert or bisect), nested repositories, and ignored files.
//!
//! [`save`] keeps it: a rescue commit under `refs/kinfra/rescue/<instance>/<stamp>` in
//! the main repository (working tree, with the staged tree and the operation's state as
//! extra parents), and a directory `<state dir>/rescue/<instance>/<stamp>/` holding the
//! moved nested repositories and precious ignored files (`files/`), the worktree's own
//! git state (`git-state/`: its index, the operation's files) and `rescue.json`, written
//! last. [`restore`] puts all of it back; [`list`] and [`prune`] manage rescues.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Diagnostic, Exit};
use crate::fsutil::{FsError, fs_err};
use crate::git::{self, GitError, IndexEntry, ScratchDir, StatusEntry, git};
use crate::process::Cmd;

#[derive(Debug, thiserror::Error)]
pub enum RescueError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("no rescue named `{name}`")]
    NotFound { name: String },
    #[error("cannot restore into `{}`: it exists and is not empty", .path.display())]
    TargetExists { path: PathBuf },
    #[error("rescue `{name}` has no commit left to restore from")]
    NoCommit { name: String, dir: Option<PathBuf> },
    #[error("rescue `{name}` does not record where its worktree was")]
    NoPath { name: String },
    #[error("rescue `{name}` is of a worktree without commits; it cannot be checked out")]
    Unborn { name: String },
    #[error("cannot move `{}` to `{}`: {source}", .from.display(), .to.display())]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("`{}` is not a rescue manifest: {reason}", .path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("no free rescue name for `{instance}` at `{stamp}`")]
    NoFreeName { instance: String, stamp: String },
}

impl From<crate::process::ProcessError> for RescueError {
    fn from(e: crate::process::ProcessError) -> Self {
        RescueError::Git(GitError::Process(e))
    }
}

impl Diagnostic for RescueError {
    fn exit(&self) -> Exit {
        match self {
            RescueError::Git(e) => e.exit(),
            RescueError::NotFound { .. } | RescueError::NoCommit { .. } => Exit::NotFound,
            RescueError::TargetExists { .. } => Exit::Conflict,
            RescueError::NoPath { .. } => Exit::Usage,
            RescueError::Fs(_)
            | RescueError::Unborn { .. }
            | RescueError::Move { .. }
            | RescueError::Manifest { .. }
            | RescueError::NoFreeName { .. } => Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RescueError::NotFound { .. } => Some(
                "name a rescue as `<instance>/<stamp>`, or by its instance for the latest".into(),
            ),
            RescueError::TargetExists { .. } => {
                Some("move it away, or restore to another path".into())
            }
            RescueError::NoCommit { dir: Some(dir), .. } => Some(format!(
                "its moved files, if any, are in `{}`",
                dir.join("files").display()
            )),
            RescueError::NoPath { .. } => Some("give the path to restore to".into()),
            _ => None,
        }
    }
}

/// Ignored directories deleted with a worktree without asking, matched against each
/// component of an ignored path. Only caches and environments that a command recreates;
/// `build`, `dist` and `target` are left out: they are also common names for
/// hand-made directories, and keeping one costs only a rename.
pub const DEFAULT_DISPOSABLE: &[&str] = &[
    ".venv",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
];

/// A file kinfra wrote into the worktree, with the bytes it wrote: while it still holds
/// them it is kinfra's, not the user's, and is neither reported nor rescued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinfraFile {
    /// Relative to the worktree, `/`-separated.
    pub path: String,
    pub content: Vec<u8>,
}

/// What [`unsaved_work`] leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkOptions {
    pub kinfra_files: Vec<KinfraFile>,
    /// Names of ignored directories that are deleted without asking.
    pub disposable: Vec<String>,
}

impl Default for WorkOptions {
    fn default() -> Self {
        WorkOptions {
            kinfra_files: Vec::new(),
            disposable: DEFAULT_DISPOSABLE.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// An operation a worktree is in the middle of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    Rebase,
    /// `git am`.
    Am,
    Merge,
    CherryPick,
    Revert,
    Bisect,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Rebase => "rebase",
            Operation::Am => "am",
            Operation::Merge => "merge",
            Operation::CherryPick => "cherry-pick",
            Operation::Revert => "revert",
            Operation::Bisect => "bisect",
        }
    }

    pub fn parse(name: &str) -> Option<Operation> {
        [
            Operation::Rebase,
            Operation::Am,
            Operation::Merge,
            Operation::CherryPick,
            Operation::Revert,
            Operation::Bisect,
        ]
        .into_iter()
        .find(|op| op.name() == name)
    }
}

/// A git repository inside the worktree that the worktree does not track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedRepo {
    /// Relative to the worktree, ending in `/`.
    pub path: String,
    /// Changed or untracked files.
    pub dirty: bool,
    /// Commits (or stashes) that no remote-tracking branch contains.
    pub unpushed: bool,
}

/// An ignored file or directory (a directory ends in `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredPath {
    pub path: String,
    pub bytes: u64,
    pub files: u64,
    /// Deleted with the worktree without asking (see [`WorkOptions::disposable`]).
    pub disposable: bool,
}

/// Everything in a worktree that removing it would lose. Paths are relative to the
/// worktree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsavedWork {
    pub head: Option<String>,
    /// The branch `HEAD` is on; `None` when detached.
    pub branch: Option<String>,
    pub operation: Option<Operation>,
    /// Commits reachable from `HEAD`, from the operation's state or from the worktree's
    /// own refs, that no branch, tag or remote-tracking branch contains; newest first.
    pub detached_commits: Vec<String>,
    /// Tracked paths with staged or unstaged changes, and conflicts.
    pub uncommitted: Vec<String>,
    pub untracked: Vec<String>,
    /// Paths whose staged version differs from both `HEAD` and the working file.
    pub staged_differs: Vec<String>,
    /// `skip-worktree` or `assume-unchanged` files whose working content differs from
    /// the index (`git status` does not show them).
    pub hidden: Vec<String>,
    pub nested_repos: Vec<NestedRepo>,
    pub ignored: Vec<IgnoredPath>,
    /// Files kinfra wrote, found as it wrote them: left out of rescues.
    pub kinfra_unchanged: Vec<String>,
}

impl UnsavedWork {
    /// Nothing would be lost (disposable ignored paths do not count).
    pub fn is_clean(&self) -> bool {
        self.operation.is_none()
            && self.detached_commits.is_empty()
            && self.uncommitted.is_empty()
            && self.untracked.is_empty()
            && self.staged_differs.is_empty()
            && self.hidden.is_empty()
            && self.nested_repos.is_empty()
            && self.ignored.iter().all(|i| i.disposable)
    }

    /// One line per item, for plans and refusals.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(op) = self.operation {
            lines.push(format!("{} in progress", op.name()));
        }
        for c in &self.detached_commits {
            lines.push(format!(
                "commit {} is on no branch, tag or remote-tracking branch",
                short(c)
            ));
        }
        for p in &self.uncommitted {
            lines.push(format!("uncommitted change: {}", shown(p)));
        }
        for p in &self.staged_differs {
            lines.push(format!(
                "staged version differs from the working file: {}",
                shown(p)
            ));
        }
        for p in &self.hidden {
            lines.push(format!(
                "edit hidden by skip-worktree or assume-unchanged: {}",
                shown(p)
            ));
        }
        for p in &self.untracked {
            lines.push(format!("untracked: {}", shown(p)));
        }
        for n in &self.nested_repos {
            let mut what = Vec::new();
            if n.dirty {
                what.push("uncommitted changes");
            }
            if n.unpushed {
                what.push("unpushed commits");
            }
            let what = if what.is_empty() {
                String::new()
            } else {
                format!(" ({})", what.join(", "))
            };
            lines.push(format!("nested repository: {}{what}", shown(&n.path)));
        }
        for i in &self.ignored {
            let size = format!("{} in {} file(s)", human_size(i.bytes), i.files);
            if i.disposable {
                lines.push(format!(
                    "ignored, disposable (deleted): {} ({size})",
                    shown(&i.path)
                ));
            } else {
                lines.push(format!("ignored: {} ({size})", shown(&i.path)));
            }
        }
        lines
    }
}

/// A point in time, UTC, to the second: rescue names and ages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(jiff::Timestamp);

impl Stamp {
    pub fn now() -> Stamp {
        Stamp(jiff::Timestamp::now())
    }

    pub fn from_unix(secs: i64) -> Option<Stamp> {
        jiff::Timestamp::from_second(secs).ok().map(Stamp)
    }

    pub fn unix(self) -> i64 {
        self.0.as_second()
    }

    /// `20260120T162914Z`: sortable, and valid in a ref name and a file name.
    pub fn compact(self) -> String {
        self.0.strftime("%Y%m%dT%H%M%SZ").to_string()
    }

    /// The stamp a rescue name starts with (a `-N` suffix for a second rescue in the
    /// same second is ignored).
    pub fn parse_compact(s: &str) -> Option<Stamp> {
        let base = s.split_once('-').map_or(s, |(b, _)| b);
        let digits = base.strip_suffix('Z')?;
        jiff::Timestamp::strptime("%Y%m%dT%H%M%S%z", format!("{digits}+0000"))
            .ok()
            .map(Stamp)
    }

    /// `2026-01-20T16:29:14Z`.
    pub fn iso(self) -> String {
        self.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

// ---- finding unsaved work ----

/// Everything in `worktree` that removing it would lose.
pub fn unsaved_work(worktree: &Path, opts: &WorkOptions) -> Result<UnsavedWork, RescueError> {
    let git::HeadState {
        commit: head,
        branch,
        git_dir,
    } = git::head_state(worktree)?;
    let operation = detect_operation(&git_dir);
    let mut tips: Vec<String> = head.iter().cloned().collect();
    tips.extend(operation_tips(&git_dir, operation));
    tips.extend(git::worktree_refs(worktree)?.into_iter().map(|(_, id)| id));
    // On a branch with nothing else to walk from, every commit is on that branch.
    let on_branch_only = branch.is_some() && head.is_some() && tips.len() == 1;
    let detached_commits = if on_branch_only {
        Vec::new()
    } else {
        git::commits_on_no_ref(worktree, &tips)?
    };
    let mut work = UnsavedWork {
        head,
        branch,
        operation,
        detached_commits,
        ..UnsavedWork::default()
    };
    let is_kinfra_unchanged = |path: &str| {
        opts.kinfra_files.iter().any(|k| {
            k.path == path
                && std::fs::read(worktree.join(path)).is_ok_and(|bytes| bytes == k.content)
        })
    };
    let mut nested = Vec::new();
    for entry in git::status_entries(worktree)? {
        match entry {
            StatusEntry::Changed {
                index,
                worktree: in_tree,
                path,
                ..
            } => {
                if index != '.' && in_tree != '.' {
                    work.staged_differs.push(path.clone());
                }
                work.uncommitted.push(path);
            }
            StatusEntry::Unmerged { path } => work.uncommitted.push(path),
            StatusEntry::Untracked { path } => {
                if is_repo_dir(worktree, &path) {
                    nested.push(path);
                } else if is_kinfra_unchanged(&path) {
                    work.kinfra_unchanged.push(path);
                } else {
                    work.untracked.push(path);
                }
            }
            StatusEntry::Ignored { path } => {
                let disposable = is_disposable(&path, &opts.disposable);
                if is_kinfra_unchanged(&path) {
                    work.kinfra_unchanged.push(path);
                } else if !disposable && is_repo_dir(worktree, &path) {
                    nested.push(path);
                } else {
                    let (bytes, files) = disk_usage(&worktree.join(&path))?;
                    work.ignored.push(IgnoredPath {
                        path,
                        bytes,
                        files,
                        disposable,
                    });
                }
            }
        }
    }
    for path in nested {
        let dir = worktree.join(&path);
        work.nested_repos.push(NestedRepo {
            dirty: is_dirty(&dir)?,
            unpushed: has_unpushed(&dir)?,
            path,
        });
    }
    work.hidden = hidden_edits(worktree)?;
    Ok(work)
}

/// A directory holding a repository of its own (`.git` directory or file).
fn is_repo_dir(worktree: &Path, path: &str) -> bool {
    path.ends_with('/') && std::fs::symlink_metadata(worktree.join(path).join(".git")).is_ok()
}

/// Whether any component of `path` is one of the disposable `names`.
pub fn is_disposable(path: &str, names: &[String]) -> bool {
    path.split('/')
        .filter(|c| !c.is_empty())
        .any(|c| names.iter().any(|n| n == c))
}

/// Changed or untracked files in a repository (looked at without rewriting its index).
fn is_dirty(repo: &Path) -> Result<bool, RescueError> {
    let out = git(repo)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .args([
            "status",
            "--porcelain",
            "-z",
            "--untracked-files=all",
            "--ignore-submodules=none",
        ])
        .run()?;
    Ok(!out.is_empty())
}

/// Commits or stashes in a repository that no remote-tracking branch contains.
fn has_unpushed(repo: &Path) -> Result<bool, RescueError> {
    let out = git(repo)
        .args(["rev-list", "-n1", "--all", "--not", "--remotes"])
        .run()?;
    Ok(!out.trim().is_empty())
}

/// `(bytes, files)` under `path`, symlinks not followed.
fn disk_usage(path: &Path) -> Result<(u64, u64), RescueError> {
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).map_err(fs_err("read", &p))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&p).map_err(fs_err("read", &p))? {
                stack.push(entry.map_err(fs_err("read", &p))?.path());
            }
        } else {
            bytes += meta.len();
            files += 1;
        }
    }
    Ok((bytes, files))
}

/// Flagged (`skip-worktree`, `assume-unchanged`) files whose working content differs
/// from the index. A missing `skip-worktree` file is a sparse checkout, not an edit.
fn hidden_edits(worktree: &Path) -> Result<Vec<String>, RescueError> {
    // Most indexes mark no entry at all: nothing to compare.
    let dirs = crate::gitfiles::Dirs::discover(worktree);
    if dirs.and_then(|d| crate::gitfiles::index_has_hidden_flags(&d)) == Some(false) {
        return Ok(Vec::new());
    }
    let entries = git::index_entries(worktree, None)?;
    let mut hidden = Vec::new();
    let mut to_hash: Vec<&IndexEntry> = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e.stage == 0 && (e.skip_worktree || e.assume_unchanged))
    {
        let full = worktree.join(&e.path);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                if !e.skip_worktree {
                    hidden.push(e.path.clone());
                }
                continue;
            }
            Err(err) => return Err(fs_err("read", &full)(err).into()),
        };
        let is_link = e.mode == "120000";
        if meta.file_type().is_symlink() && is_link {
            let target = std::fs::read_link(&full).map_err(fs_err("read", &full))?;
            if target.as_os_str().as_encoded_bytes() != git::blob_text(worktree, &e.id)?.as_bytes()
            {
                hidden.push(e.path.clone());
            }
        } else if meta.is_file() && !is_link && e.mode != "160000" {
            to_hash.push(e);
        } else if e.mode != "160000" {
            hidden.push(e.path.clone());
        }
    }
    let paths: Vec<String> = to_hash.iter().map(|e| e.path.clone()).collect();
    let ids = git::hash_files(worktree, &paths)?;
    for (e, id) in to_hash.iter().zip(ids) {
        if e.id != id {
            hidden.push(e.path.clone());
        }
    }
    hidden.sort();
    Ok(hidden)
}

/// The operation `git_dir` (a checkout's own git directory) is in the middle of.
fn detect_operation(git_dir: &Path) -> Option<Operation> {
    let has = |name: &str| std::fs::symlink_metadata(git_dir.join(name)).is_ok();
    if has("rebase-merge") {
        return Some(Operation::Rebase);
    }
    if has("rebase-apply") {
        return Some(if has("rebase-apply/applying") {
            Operation::Am
        } else {
            Operation::Rebase
        });
    }
    if has("MERGE_HEAD") {
        return Some(Operation::Merge);
    }
    if has("CHERRY_PICK_HEAD") {
        return Some(Operation::CherryPick);
    }
    if has("REVERT_HEAD") {
        return Some(Operation::Revert);
    }
    if let Ok(todo) = std::fs::read_to_string(git_dir.join("sequencer/todo")) {
        let first = todo
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        return Some(if first.starts_with("revert") {
            Operation::Revert
        } else {
            Operation::CherryPick
        });
    }
    if has("BISECT_LOG") || has("BISECT_START") {
        return Some(Operation::Bisect);
    }
    None
}

/// Files of an in-progress operation that name commits.
const TIP_FILES: &[&str] = &[
    "ORIG_HEAD",
    "MERGE_HEAD",
    "CHERRY_PICK_HEAD",
    "REVERT_HEAD",
    "BISECT_START",
    "BISECT_EXPECTED_REV",
    "rebase-merge/orig-head",
    "rebase-merge/onto",
    "rebase-merge/stopped-sha",
    "rebase-merge/amend",
    "rebase-merge/git-rebase-todo",
    "rebase-merge/done",
    "rebase-apply/orig-head",
    "rebase-apply/onto",
    "rebase-apply/abort-safety",
    "sequencer/head",
    "sequencer/abort-safety",
    "sequencer/todo",
    "sequencer/done",
];

/// Commit names in the operation's state files (`ORIG_HEAD` only counts while an
/// operation is in progress: after one finishes it names the rewritten commits on
/// purpose).
fn operation_tips(git_dir: &Path, operation: Option<Operation>) -> Vec<String> {
    if operation.is_none() {
        return Vec::new();
    }
    let mut tips = Vec::new();
    for name in TIP_FILES {
        if let Ok(text) = std::fs::read_to_string(git_dir.join(name)) {
            tips.extend(commit_names(&text));
        }
    }
    tips.sort();
    tips.dedup();
    tips
}

/// Words in `text` that look like (abbreviated) object names; todo-list comments are
/// skipped.
pub fn commit_names(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .filter(|w| (7..=64).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .collect()
}

// ---- saving ----

/// Files in a checkout's own git directory that make up an in-progress operation;
/// copied into the rescue and back on restore.
const OPERATION_STATE: &[&str] = &[
    "rebase-merge",
    "rebase-apply",
    "MERGE_HEAD",
    "MERGE_MSG",
    "MERGE_MODE",
    "MERGE_AUTOSTASH",
    "MERGE_RR",
    "CHERRY_PICK_HEAD",
    "REVERT_HEAD",
    "sequencer",
    "ORIG_HEAD",
    "SQUASH_MSG",
    "BISECT_LOG",
    "BISECT_START",
    "BISECT_TERMS",
    "BISECT_EXPECTED_REV",
    "BISECT_ANCESTORS_OK",
    "BISECT_NAMES",
    "BISECT_RUN",
    "BISECT_FIRST_PARENT",
    "BISECT_HEAD",
];

const MANIFEST: &str = "rescue.json";

/// What `rescue.json` records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub instance: String,
    pub worktree: PathBuf,
    pub main: PathBuf,
    pub branch: Option<String>,
    pub head: Option<String>,
    pub operation: Option<Operation>,
    #[serde(rename = "ref")]
    pub refname: String,
    /// The rescue commit: the working tree; parents `HEAD`, `index_commit`,
    /// `state_commit`.
    pub commit: String,
    /// The staged tree (conflicted paths left out).
    pub index_commit: String,
    /// The sides of conflicts as `<stage>/<path>`; parents the commits the operation
    /// and the worktree's own refs hold that nothing else keeps.
    pub state_commit: String,
    /// Moved into `files/`.
    pub moved: Vec<MovedPath>,
    /// The worktree's own refs (`refs/bisect/…`, `refs/worktree/…`).
    pub worktree_refs: Vec<WorktreeRef>,
    /// Copied into `git-state/`.
    pub git_state: Vec<String>,
    pub time: String,
    pub kinfra_version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MovedKind {
    NestedRepo,
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MovedPath {
    pub path: String,
    pub kind: MovedKind,
    pub bytes: u64,
    pub files: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorktreeRef {
    pub name: String,
    pub commit: String,
}

/// One rescue: its ref, its directory, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescueRecord {
    pub instance: String,
    /// The name's second part: a [`Stamp::compact`], with `-N` for a second rescue in
    /// the same second.
    pub stamp: String,
    /// The repository holding the ref.
    pub main: Option<PathBuf>,
    /// The ref, when it exists.
    pub refname: Option<String>,
    pub commit: Option<String>,
    /// `<state dir>/rescue/<instance>/<stamp>`, when it exists.
    pub dir: Option<PathBuf>,
    pub manifest: Option<Manifest>,
    /// Why the manifest could not be read.
    pub problem: Option<String>,
}

impl RescueRecord {
    /// `<instance>/<stamp>`, the name users give.
    pub fn name(&self) -> String {
        format!("{}/{}", self.instance, self.stamp)
    }

    /// A directory without a manifest: a rescue cut short (its ref, if any, holds the
    /// committed part; `files/` may hold some moved paths).
    pub fn is_partial(&self) -> bool {
        self.dir.is_some() && self.manifest.is_none()
    }

    pub fn time(&self) -> Option<Stamp> {
        Stamp::parse_compact(&self.stamp)
    }

    /// One line for listings.
    pub fn summary(&self) -> String {
        let mut parts = vec![self.name()];
        if let Some(m) = &self.manifest {
            match &m.branch {
                Some(b) => parts.push(format!("branch {b}")),
                None => parts.push("detached".into()),
            }
            if let Some(op) = m.operation {
                parts.push(format!("{} in progress", op.name()));
            }
            if !m.moved.is_empty() {
                let bytes: u64 = m.moved.iter().map(|p| p.bytes).sum();
                parts.push(format!(
                    "{} moved path(s), {}",
                    m.moved.len(),
                    human_size(bytes)
                ));
            }
        }
        if self.refname.is_none() {
            parts.push("no ref".into());
        }
        if self.is_partial() {
            parts.push("incomplete (no manifest)".into());
        }
        if let Some(p) = &self.problem {
            parts.push(p.clone());
        }
        parts.join(", ")
    }
}

/// Keep `worktree`'s unsaved work (found by [`unsaved_work`] just before): a rescue
/// commit in `main`, nested repositories and precious ignored paths moved into the
/// rescue directory under `state_dir`. Nothing in the worktree changes except those
/// moves; disposable ignored paths and unchanged kinfra files stay for the caller to
/// delete with the worktree.
pub fn save(
    main: &Path,
    worktree: &Path,
    instance: &str,
    state_dir: &Path,
    work: &UnsavedWork,
    now: &Stamp,
) -> Result<RescueRecord, RescueError> {
    let scratch = ScratchDir::new()?;
    let git::HeadState {
        commit: head,
        branch,
        git_dir,
    } = git::head_state(worktree)?;
    let operation = detect_operation(&git_dir);
    let head_parent: Vec<String> = head.iter().cloned().collect();

    // The whole index as one self-contained file (a split index joined): the base of
    // the trees below, and what restore puts back byte for byte.
    let full_index = scratch.path().join("index");
    let real_index = git::git_path(worktree, "index")?;
    if real_index.exists() {
        copy_index(&real_index, &full_index)?;
    }
    with_index(
        &full_index,
        git(worktree).args(["update-index", "--no-split-index"]),
    )
    .run()?;
    if real_index.exists() {
        keep_mtime(&real_index, &full_index)?;
    }

    let entries = git::index_entries(worktree, Some(&full_index))?;

    // 1. The staged tree; conflicted paths have no staged version and are left out.
    let staged_index = scratch.path().join("staged");
    copy_index(&full_index, &staged_index)?;
    let mut conflicted: Vec<&str> = entries
        .iter()
        .filter(|e| e.stage != 0)
        .map(|e| e.path.as_str())
        .collect();
    conflicted.dedup();
    for chunk in conflicted.chunks(500) {
        with_index(
            &staged_index,
            git(worktree).args(["update-index", "--force-remove", "--"]),
        )
        .args(chunk)
        .run()?;
    }
    let index_tree = write_tree(worktree, &staged_index)?;
    let index_commit = git::commit_tree(
        worktree,
        &index_tree,
        &head_parent,
        &format!("kinfra rescue of {instance}: index"),
    )?;

    // 2. The operation's state: conflict sides kept as `<stage>/<path>`, and every
    //    commit the operation or the worktree's own refs hold that nothing else keeps.
    let state_index = scratch.path().join("state");
    let sides: Vec<String> = entries
        .iter()
        .filter(|e| e.stage != 0)
        .map(|e| format!("{},{},{}/{}", e.mode, e.id, e.stage, e.path))
        .collect();
    for chunk in sides.chunks(300) {
        let mut cmd = with_index(&state_index, git(worktree).args(["update-index", "--add"]));
        for side in chunk {
            cmd = cmd.arg("--cacheinfo").arg(side);
        }
        cmd.run()?;
    }
    let state_tree = write_tree(worktree, &state_index)?;
    let worktree_refs = git::worktree_refs(worktree)?;
    let mut tips = operation_tips(&git_dir, operation);
    tips.extend(worktree_refs.iter().map(|(_, id)| id.clone()));
    let resolved = git::resolve_commits(worktree, &tips)?;
    let loose: HashSet<String> = git::commits_on_no_ref(worktree, &resolved)?
        .into_iter()
        .collect();
    let state_parents: Vec<String> = resolved
        .into_iter()
        .filter(|c| loose.contains(c) && Some(c) != head.as_ref())
        .collect();
    let state_commit = git::commit_tree(
        worktree,
        &state_tree,
        &state_parents,
        &format!("kinfra rescue of {instance}: operation state"),
    )?;

    // 3. The working tree: every file as it is on disk, hidden edits included (flags
    //    cleared in the copy), nested repositories and kinfra's own files left out.
    let work_index = scratch.path().join("work");
    copy_index(&full_index, &work_index)?;
    let present = |e: &&IndexEntry| std::fs::symlink_metadata(worktree.join(&e.path)).is_ok();
    let skipped: Vec<String> = entries
        .iter()
        .filter(|e| e.stage == 0 && e.skip_worktree)
        .filter(present)
        .map(|e| e.path.clone())
        .collect();
    let assumed: Vec<String> = entries
        .iter()
        .filter(|e| e.stage == 0 && e.assume_unchanged)
        .map(|e| e.path.clone())
        .collect();
    for (flag, paths) in [
        ("--no-skip-worktree", &skipped),
        ("--no-assume-unchanged", &assumed),
    ] {
        for chunk in paths.chunks(500) {
            with_index(
                &work_index,
                git(worktree).args(["update-index", flag, "--"]),
            )
            .args(chunk)
            .run()?;
        }
    }
    // Ignored paths need no excluding (and `git add` refuses to be given one).
    let candidates: Vec<String> = work
        .nested_repos
        .iter()
        .map(|n| n.path.clone())
        .chain(work.kinfra_unchanged.iter().cloned())
        .collect();
    let ignored = git::ignored_among(worktree, &candidates)?;
    let excluded = candidates
        .iter()
        .filter(|p| !ignored.contains(*p))
        .map(|p| format!(":(exclude,literal){p}"));
    with_index(&work_index, git(worktree).args(["add", "--all", "--", "."]))
        .args(excluded)
        .run()?;
    // A skip-worktree file absent from disk is a sparse checkout: keep its index version.
    let sparse: Vec<String> = entries
        .iter()
        .filter(|e| e.stage == 0 && e.skip_worktree)
        .filter(|e| !present(e))
        .map(|e| format!("{},{},{}", e.mode, e.id, e.path))
        .collect();
    for chunk in sparse.chunks(300) {
        let mut cmd = with_index(&work_index, git(worktree).args(["update-index", "--add"]));
        for entry in chunk {
            cmd = cmd.arg("--cacheinfo").arg(entry);
        }
        cmd.run()?;
    }
    let work_tree = write_tree(worktree, &work_index)?;
    let meta = CommitMeta {
        instance: Some(instance.to_string()),
        worktree: Some(worktree.to_path_buf()),
        branch: branch.clone(),
        head: head.clone(),
        operation,
        index: Some(index_commit.clone()),
        state: Some(state_commit.clone()),
    };
    let mut parents = head_parent.clone();
    parents.push(index_commit.clone());
    parents.push(state_commit.clone());
    let commit = git::commit_tree(
        worktree,
        &work_tree,
        &parents,
        &meta.message(&format!("kinfra rescue of {instance} at {}", now.compact())),
    )?;

    // 4. A name nobody has: a new directory and a new ref.
    let root = state_dir.join("rescue");
    create_private_dir(&root)?;
    let instance_dir = root.join(instance);
    std::fs::create_dir_all(&instance_dir).map_err(fs_err("create", &instance_dir))?;
    let (stamp, dir, refname) = claim_name(main, &instance_dir, instance, now, &commit)?;

    // 5. The worktree's own git state, copied (it goes with the worktree).
    let mut git_state = Vec::new();
    let state_dir_path = dir.join("git-state");
    std::fs::create_dir(&state_dir_path).map_err(fs_err("create", &state_dir_path))?;
    let saved_index = state_dir_path.join("index");
    std::fs::copy(&full_index, &saved_index).map_err(fs_err("copy", &full_index))?;
    git_state.push("index".to_string());
    if operation.is_some() {
        for name in OPERATION_STATE {
            let from = git_dir.join(name);
            if std::fs::symlink_metadata(&from).is_ok() {
                let to = state_dir_path.join(name);
                copy_tree(&from, &to).map_err(|source| RescueError::Move {
                    from: from.clone(),
                    to: to.clone(),
                    source,
                })?;
                git_state.push(name.to_string());
            }
        }
    }

    // 6. Nested repositories and precious ignored paths, moved (never copied and
    //    deleted when a rename can do it).
    let files = dir.join("files");
    let to_move: Vec<MovedPath> = work
        .nested_repos
        .iter()
        .map(|n| {
            let (bytes, files) = disk_usage(&worktree.join(&n.path)).unwrap_or((0, 0));
            MovedPath {
                path: n.path.clone(),
                kind: MovedKind::NestedRepo,
                bytes,
                files,
            }
        })
        .chain(
            work.ignored
                .iter()
                .filter(|i| !i.disposable)
                .map(|i| MovedPath {
                    path: i.path.clone(),
                    kind: MovedKind::Ignored,
                    bytes: i.bytes,
                    files: i.files,
                }),
        )
        .collect();
    let mut manifest = Manifest {
        schema_version: 1,
        instance: instance.to_string(),
        worktree: worktree.to_path_buf(),
        main: main.to_path_buf(),
        branch,
        head,
        operation,
        refname: refname.clone(),
        commit: commit.clone(),
        index_commit,
        state_commit,
        moved: Vec::new(),
        worktree_refs: worktree_refs
            .into_iter()
            .map(|(name, commit)| WorktreeRef { name, commit })
            .collect(),
        git_state,
        time: now.iso(),
        kinfra_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let mut failure = None;
    for m in to_move {
        let from = worktree.join(m.path.trim_end_matches('/'));
        let to = files.join(m.path.trim_end_matches('/'));
        if std::fs::symlink_metadata(&from).is_err() {
            // Gone since it was found: nothing left to lose.
            continue;
        }
        match move_path(&from, &to) {
            Ok(()) => manifest.moved.push(m),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failure {
        // Put back what was moved, so the worktree is as it was; whatever cannot go
        // back stays recorded in the manifest.
        let mut left = Vec::new();
        for m in manifest.moved.drain(..).rev() {
            let from = files.join(m.path.trim_end_matches('/'));
            let to = worktree.join(m.path.trim_end_matches('/'));
            if move_path(&from, &to).is_err() {
                left.push(m);
            }
        }
        manifest.moved = left;
        save_manifest(&dir, &manifest)?;
        return Err(e);
    }

    // 7. The manifest, last: a directory without one is a rescue cut short.
    crate::crashpoint::hit("rescue:before-manifest");
    save_manifest(&dir, &manifest)?;
    Ok(RescueRecord {
        instance: instance.to_string(),
        stamp,
        main: Some(main.to_path_buf()),
        refname: Some(refname),
        commit: Some(commit),
        dir: Some(dir),
        manifest: Some(manifest),
        problem: None,
    })
}

/// Copy an index file with its modification time: git trusts an entry's stat data
/// only when the file is older than the index, so a copy with a newer time would hide
/// an edit made in the same second as the last index write.
fn copy_index(from: &Path, to: &Path) -> Result<(), RescueError> {
    std::fs::copy(from, to).map_err(fs_err("copy", from))?;
    keep_mtime(from, to)
}

fn keep_mtime(from: &Path, to: &Path) -> Result<(), RescueError> {
    let modified = std::fs::metadata(from)
        .and_then(|m| m.modified())
        .map_err(fs_err("read", from))?;
    std::fs::File::options()
        .write(true)
        .open(to)
        .and_then(|f| f.set_modified(modified))
        .map_err(fs_err("write", to))?;
    Ok(())
}

fn with_index(index: &Path, cmd: Cmd) -> Cmd {
    cmd.env("GIT_INDEX_FILE", index)
}

fn write_tree(worktree: &Path, index: &Path) -> Result<String, RescueError> {
    let out = with_index(index, git(worktree).args(["write-tree"])).run()?;
    Ok(out.trim().to_string())
}

/// The rescue root holds users' secrets (ignored `.env` files): owner only.
fn create_private_dir(path: &Path) -> Result<(), RescueError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(fs_err("create", path))?;
    Ok(())
}

/// A stamp whose directory and ref are both new: the directory is created first (it is
/// the lock between two kinfra processes), then the ref, create-only.
fn claim_name(
    main: &Path,
    instance_dir: &Path,
    instance: &str,
    now: &Stamp,
    commit: &str,
) -> Result<(String, PathBuf, String), RescueError> {
    let base = now.compact();
    for n in 1..=100 {
        let stamp = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = instance_dir.join(&stamp);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(fs_err("create", &dir)(e).into()),
        }
        let refname = format!("refs/kinfra/rescue/{instance}/{stamp}");
        match git::create_ref(main, &refname, commit) {
            Ok(true) => return Ok((stamp, dir, refname)),
            Ok(false) => {
                let _ = std::fs::remove_dir(&dir);
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e.into());
            }
        }
    }
    Err(RescueError::NoFreeName {
        instance: instance.to_string(),
        stamp: base,
    })
}

fn save_manifest(dir: &Path, manifest: &Manifest) -> Result<(), RescueError> {
    let path = dir.join(MANIFEST);
    let mut text = serde_json::to_string_pretty(manifest).map_err(|e| RescueError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    crate::fsutil::write_atomically(&path, text.as_bytes()).map_err(fs_err("write", &path))?;
    Ok(())
}

/// The manifest in `dir`, `None` when there is none.
pub fn load_manifest(dir: &Path) -> Result<Option<Manifest>, RescueError> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fs_err("read", &path)(e).into()),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| RescueError::Manifest {
            path,
            reason: e.to_string(),
        })
}

/// Rename, or copy and delete across filesystems. The parent of `to` is created.
fn move_path(from: &Path, to: &Path) -> Result<(), RescueError> {
    let err = |source| RescueError::Move {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    };
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(fs_err("create", parent))?;
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(err(io::Error::from(io::ErrorKind::AlreadyExists)));
    }
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            if let Err(e) = copy_tree(from, to) {
                let _ = remove_tree(to);
                return Err(err(e));
            }
            remove_tree(from).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// Copy a file, symlink or directory tree (symlinks copied as links, permissions kept;
/// sockets and fifos, which hold no data, skipped).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else if kind.is_dir() {
        std::fs::create_dir(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        std::fs::set_permissions(to, meta.permissions())
    } else if kind.is_file() {
        std::fs::copy(from, to).map(|_| ())
    } else {
        Ok(())
    }
}

fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

// ---- the rescue commit's own record ----

/// What a rescue commit's message records, so a rescue whose directory is gone can
/// still be restored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitMeta {
    pub instance: Option<String>,
    pub worktree: Option<PathBuf>,
    pub branch: Option<String>,
    pub head: Option<String>,
    pub operation: Option<Operation>,
    pub index: Option<String>,
    pub state: Option<String>,
}

impl CommitMeta {
    /// `subject`, a blank line, and one `Kinfra-…:` trailer per field (`-` for none;
    /// the path as a JSON string, so any path fits on one line).
    pub fn message(&self, subject: &str) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let path = self
            .worktree
            .as_ref()
            .and_then(|p| serde_json::to_string(&p.to_string_lossy()).ok())
            .unwrap_or_else(|| "-".into());
        format!(
            "{subject}\n\nKinfra-Instance: {}\nKinfra-Worktree: {path}\nKinfra-Branch: {}\nKinfra-Head: {}\nKinfra-Operation: {}\nKinfra-Index: {}\nKinfra-State: {}\n",
            opt(&self.instance),
            opt(&self.branch),
            opt(&self.head),
            self.operation.map_or("-", Operation::name),
            opt(&self.index),
            opt(&self.state),
        )
    }

    /// The trailers of [`CommitMeta::message`]; `None` for a message without them (a
    /// rescue made before they existed).
    pub fn parse(message: &str) -> Option<CommitMeta> {
        let mut meta = CommitMeta::default();
        let mut seen = false;
        for line in message.lines() {
            let Some((key, value)) = line.split_once(": ") else {
                continue;
            };
            let value = value.trim();
            let some = (value != "-").then(|| value.to_string());
            seen |= key.starts_with("Kinfra-");
            match key {
                "Kinfra-Instance" => meta.instance = some,
                "Kinfra-Worktree" => {
                    meta.worktree = some
                        .and_then(|v| serde_json::from_str::<String>(&v).ok())
                        .map(PathBuf::from)
                }
                "Kinfra-Branch" => meta.branch = some,
                "Kinfra-Head" => meta.head = some,
                "Kinfra-Operation" => meta.operation = some.as_deref().and_then(Operation::parse),
                "Kinfra-Index" => meta.index = some,
                "Kinfra-State" => meta.state = some,
                _ => {}
            }
        }
        seen.then_some(meta)
    }
}

// ---- listing, restoring, pruning ----

/// Every rescue: refs under `refs/kinfra/rescue/` of each of `mains`, and directories
/// under `<state_dir>/rescue/`, joined by name. A ref without a directory (a rescue
/// from before directories existed) and a directory without a ref are listed too.
pub fn list(state_dir: &Path, mains: &[PathBuf]) -> Vec<RescueRecord> {
    let mut records: Vec<RescueRecord> = Vec::new();
    let root = state_dir.join("rescue");
    for instance_dir in sorted_dirs(&root) {
        let instance = file_name(&instance_dir);
        for dir in sorted_dirs(&instance_dir) {
            let (manifest, problem) = match load_manifest(&dir) {
                Ok(m) => (m, None),
                Err(e) => (None, Some(e.to_string())),
            };
            records.push(RescueRecord {
                instance: instance.clone(),
                stamp: file_name(&dir),
                main: manifest.as_ref().map(|m| m.main.clone()),
                refname: None,
                commit: None,
                dir: Some(dir),
                manifest,
                problem,
            });
        }
    }
    for main in mains {
        let Ok(refs) = git::refs_under(main, "refs/kinfra/rescue/") else {
            continue;
        };
        for (refname, commit) in refs {
            let Some((instance, stamp)) = refname
                .strip_prefix("refs/kinfra/rescue/")
                .and_then(|rest| rest.rsplit_once('/'))
            else {
                continue;
            };
            let same = |r: &RescueRecord| {
                r.refname.is_none()
                    && r.instance == instance
                    && r.stamp == stamp
                    && r.main.as_ref().is_none_or(|m| same_path(m, main))
            };
            if let Some(r) = records.iter_mut().find(|r| same(r)) {
                r.main = Some(main.clone());
                r.refname = Some(refname.clone());
                r.commit = Some(commit);
            } else {
                records.push(RescueRecord {
                    instance: instance.to_string(),
                    stamp: stamp.to_string(),
                    main: Some(main.clone()),
                    refname: Some(refname.clone()),
                    commit: Some(commit),
                    dir: None,
                    manifest: None,
                    problem: None,
                });
            }
        }
    }
    records.sort_by(|a, b| (&a.instance, &a.stamp).cmp(&(&b.instance, &b.stamp)));
    records
}

/// The rescue `name`: `<instance>/<stamp>`, its ref name, or an instance (its latest
/// rescue).
pub fn find(state_dir: &Path, mains: &[PathBuf], name: &str) -> Result<RescueRecord, RescueError> {
    let records = list(state_dir, mains);
    let exact = records
        .iter()
        .find(|r| r.name() == name || r.refname.as_deref() == Some(name));
    exact
        .or_else(|| records.iter().rev().find(|r| r.instance == name))
        .cloned()
        .ok_or_else(|| RescueError::NotFound {
            name: name.to_string(),
        })
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOutcome {
    pub path: PathBuf,
    /// The branch checked out, if any.
    pub branch: Option<String>,
    pub head: String,
    /// The rescued branch was not checked out because it has moved on (or is checked
    /// out elsewhere): `HEAD` is detached at the rescued commit instead.
    pub branch_moved: Option<String>,
    /// The rescued branch no longer existed and was created again at the rescued commit.
    pub branch_created: bool,
    pub operation: Option<Operation>,
    /// Paths moved back from the rescue directory.
    pub moved_back: Vec<String>,
    /// Paths left in the rescue directory because something is in their place.
    pub left_behind: Vec<String>,
    /// Paths the manifest lists as moved that are no longer in the rescue directory
    /// (restored before, or removed by hand).
    pub missing: Vec<String>,
}

impl RestoreOutcome {
    /// Lines for the user.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![match &self.branch {
            Some(b) => format!(
                "restored `{}` on branch {b} at {}",
                self.path.display(),
                short(&self.head)
            ),
            None => format!(
                "restored `{}` detached at {}",
                self.path.display(),
                short(&self.head)
            ),
        }];
        if let Some(b) = &self.branch_moved {
            lines.push(format!(
                "branch {b} has moved on since the rescue (or is checked out elsewhere); it was left as it is"
            ));
        }
        if self.branch_created {
            lines.push("the branch no longer existed and was created again".into());
        }
        if let Some(op) = self.operation {
            lines.push(format!("the {} in progress is back in progress", op.name()));
        }
        for p in &self.left_behind {
            lines.push(format!(
                "left in the rescue directory (something is in its place): {}",
                shown(p)
            ));
        }
        for p in &self.missing {
            lines.push(format!("no longer in the rescue directory: {}", shown(p)));
        }
        lines
    }
}

/// Put the rescued work back: a worktree at the original path (or `path`) on the
/// rescued branch when it still points at the rescued commit (never moved), else
/// detached at that commit; the index as it was (conflicts and flags included); the
/// working files as they were; the in-progress operation, the worktree's own refs, and
/// the moved paths back in place. Refuses a target that exists and is not empty.
pub fn restore(record: &RescueRecord, path: Option<&Path>) -> Result<RestoreOutcome, RescueError> {
    let name = record.name();
    let no_commit = || RescueError::NoCommit {
        name: name.clone(),
        dir: record.dir.clone(),
    };
    let manifest = record.manifest.as_ref();
    let main = record
        .main
        .clone()
        .or_else(|| manifest.map(|m| m.main.clone()))
        .ok_or_else(no_commit)?;
    let commit = match (&record.commit, manifest) {
        (Some(c), _) => c.clone(),
        (None, Some(m)) if git::commit_exists(&main, &m.commit)? => m.commit.clone(),
        _ => return Err(no_commit()),
    };
    let meta = match CommitMeta::parse(&git::commit_message(&main, &commit)?) {
        Some(meta) => meta,
        // A rescue from before the trailers: its only parent is HEAD.
        None => CommitMeta {
            head: first_parent(&main, &commit)?,
            ..CommitMeta::default()
        },
    };
    let target = path
        .map(Path::to_path_buf)
        .or_else(|| manifest.map(|m| m.worktree.clone()))
        .or_else(|| meta.worktree.clone())
        .ok_or_else(|| RescueError::NoPath { name: name.clone() })?;
    let target = std::path::absolute(&target).map_err(fs_err("resolve", &target))?;
    match std::fs::read_dir(&target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(RescueError::TargetExists { path: target });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => return Err(RescueError::TargetExists { path: target }),
    }
    let head = meta
        .head
        .clone()
        .ok_or_else(|| RescueError::Unborn { name: name.clone() })?;
    let branch = manifest.map_or(meta.branch.clone(), |m| m.branch.clone());

    // The checkout: files are written below, from the rescue commit.
    let add = git(&main).args(["worktree", "add", "--quiet", "--no-checkout"]);
    let mut outcome = RestoreOutcome {
        path: target.clone(),
        branch: None,
        head: head.clone(),
        branch_moved: None,
        branch_created: false,
        operation: manifest.map_or(meta.operation, |m| m.operation),
        moved_back: Vec::new(),
        left_behind: Vec::new(),
        missing: Vec::new(),
    };
    match &branch {
        Some(b) => match git::branch_commit(&main, b)? {
            None => {
                add.arg("-b")
                    .arg(b)
                    .arg("--")
                    .arg(&target)
                    .arg(&head)
                    .run()?;
                outcome.branch = Some(b.clone());
                outcome.branch_created = true;
            }
            Some(tip) if tip == head && !checked_out_elsewhere(&main, b)? => {
                add.arg("--").arg(&target).arg(b).run()?;
                outcome.branch = Some(b.clone());
            }
            Some(_) => {
                add.args(["--detach", "--"]).arg(&target).arg(&head).run()?;
                outcome.branch_moved = Some(b.clone());
            }
        },
        None => {
            add.args(["--detach", "--"]).arg(&target).arg(&head).run()?;
        }
    }

    // Working files: the rescue commit's tree, through a scratch index.
    let scratch = ScratchDir::new()?;
    let files_index = scratch.path().join("files");
    with_index(&files_index, git(&target).arg("read-tree"))
        .arg(format!("{commit}^{{tree}}"))
        .run()?;
    with_index(
        &files_index,
        git(&target).args(["checkout-index", "--all", "--force"]),
    )
    .run()?;

    // The index: byte for byte when the rescue directory has it, else the staged tree.
    let state = record.dir.as_ref().map(|d| d.join("git-state"));
    let saved_index = state
        .as_ref()
        .map(|s| s.join("index"))
        .filter(|p| p.exists());
    match saved_index {
        Some(saved) => {
            let index = git::git_path(&target, "index")?;
            std::fs::copy(&saved, &index).map_err(fs_err("copy", &saved))?;
        }
        None => {
            let tree = meta.index.clone().unwrap_or_else(|| head.clone());
            git(&target)
                .arg("read-tree")
                .arg(format!("{tree}^{{tree}}"))
                .run()?;
        }
    }
    // Fresh stat data; a non-zero exit only says that files differ from the index.
    git(&target)
        .args(["update-index", "-q", "--refresh"])
        .output()?;

    // The operation's state and the worktree's own refs.
    let git_dir = git::absolute_git_dir(&target)?;
    if let Some(state) = &state
        && let Ok(entries) = std::fs::read_dir(state)
    {
        for entry in entries.flatten() {
            if entry.file_name() == "index" {
                continue;
            }
            let to = git_dir.join(entry.file_name());
            let _ = remove_tree(&to);
            copy_tree(&entry.path(), &to).map_err(|source| RescueError::Move {
                from: entry.path(),
                to: to.clone(),
                source,
            })?;
        }
    }
    for r in manifest.map(|m| m.worktree_refs.as_slice()).unwrap_or(&[]) {
        git(&target)
            .args(["update-ref", &r.name, &r.commit])
            .run()?;
    }

    // Moved paths, back in place.
    if let Some(files) = record.dir.as_ref().map(|d| d.join("files"))
        && files.exists()
    {
        move_back(&files, &target, Path::new(""), &mut outcome)?;
        remove_empty_dirs(&files);
    }
    if let Some(m) = manifest {
        for moved in &m.moved {
            let rel = moved.path.trim_end_matches('/');
            let back = outcome.moved_back.iter().any(|p| {
                p == rel || rel.starts_with(&format!("{p}/")) || p.starts_with(&format!("{rel}/"))
            });
            let left = outcome.left_behind.iter().any(|p| p.starts_with(rel));
            if !back && !left {
                outcome.missing.push(moved.path.clone());
            }
        }
    }
    Ok(outcome)
}

fn first_parent(main: &Path, commit: &str) -> Result<Option<String>, RescueError> {
    let out = git(main)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{commit}^1"))
        .output()?;
    Ok(out.success().then(|| out.stdout.trim().to_string()))
}

fn checked_out_elsewhere(main: &Path, branch: &str) -> Result<bool, RescueError> {
    Ok(git::worktree_list(main)?
        .iter()
        .any(|w| w.branch.as_deref() == Some(branch)))
}

/// Move everything under `src/rel` to `dst/rel`, merging into directories that exist
/// (checked-out files may share a directory with moved ones).
fn move_back(
    src: &Path,
    dst: &Path,
    rel: &Path,
    outcome: &mut RestoreOutcome,
) -> Result<(), RescueError> {
    let dir = src.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(fs_err("read", &dir))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    entries.sort();
    for name in entries {
        let rel = rel.join(&name);
        let from = src.join(&rel);
        let to = dst.join(&rel);
        let shown_rel = rel.to_string_lossy().into_owned();
        match std::fs::symlink_metadata(&to) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                move_path(&from, &to)?;
                outcome.moved_back.push(shown_rel);
            }
            Ok(m) if m.is_dir() && std::fs::symlink_metadata(&from).is_ok_and(|f| f.is_dir()) => {
                move_back(src, dst, &rel, outcome)?;
            }
            _ => outcome.left_behind.push(shown_rel),
        }
    }
    Ok(())
}

fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    // Fails, as it should, when something is left inside.
    let _ = std::fs::remove_dir(dir);
}

/// Delete rescues (ref and directory) older than `older_than` at `now`; with
/// `dry_run`, only say which. Rescues whose time cannot be told are kept.
pub fn prune(
    state_dir: &Path,
    mains: &[PathBuf],
    older_than: Duration,
    now: &Stamp,
    dry_run: bool,
) -> Result<Vec<RescueRecord>, RescueError> {
    let limit = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
    let old: Vec<RescueRecord> = list(state_dir, mains)
        .into_iter()
        .filter(|r| {
            r.time()
                .is_some_and(|t| now.unix().saturating_sub(t.unix()) > limit)
        })
        .collect();
    if dry_run {
        return Ok(old);
    }
    for r in &old {
        if let (Some(main), Some(refname), Some(commit)) = (&r.main, &r.refname, &r.commit) {
            git::delete_ref(main, refname, commit)?;
        }
        if let Some(dir) = &r.dir {
            remove_tree(dir).map_err(fs_err("remove", dir))?;
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
    Ok(old)
}

// ---- display ----

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// A path in backticks, control characters escaped so it stays on one line.
pub fn shown(path: &str) -> String {
    let mut out = String::from("`");
    for c in path.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('`');
    out
}

/// `512 B`, `1.5 KiB`, `3.2 GiB`.
/// `3h 20m`, `45s`, `2d 1h`.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// `git` in `dir` (hermetic in tests, see `git::git`); panics on failure.
    fn g(dir: &Path, args: &[&str]) -> String {
        git(dir).args(args).run().unwrap()
    }

    /// `git` in `dir` that may fail (a conflict stops a rebase with a non-zero exit).
    fn g_may_fail(dir: &Path, args: &[&str]) {
        let _ = git(dir)
            .args(args)
            .env("GIT_EDITOR", "true")
            .output()
            .unwrap();
    }

    fn write(dir: &Path, rel: &str, content: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn commit_all(dir: &Path, message: &str) -> String {
        g(dir, &["add", "--all"]);
        g(dir, &["commit", "--quiet", "-m", message]);
        g(dir, &["rev-parse", "HEAD"]).trim().to_string()
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        main: PathBuf,
        wt: PathBuf,
        state: PathBuf,
    }

    const INSTANCE: &str = "ktrdr--feat";

    /// A main repository with one commit and a linked worktree `wt` on branch `feat`.
    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let main = tmp.path().join("repo");
        std::fs::create_dir(&main).unwrap();
        g(&main, &["init", "--quiet", "-b", "main"]);
        write(
            &main,
            ".gitignore",
            ".env\n.env.sandbox\ndata/\nmodels/\nnode_modules/\n*.log\n",
        );
        write(&main, "f.txt", "base\n");
        write(&main, "g.txt", "g\n");
        commit_all(&main, "base");
        let wt = tmp.path().join("repo--feat");
        g(
            &main,
            &[
                "worktree",
                "add",
                "--quiet",
                "-b",
                "feat",
                wt.to_str().unwrap(),
            ],
        );
        let state = tmp.path().join("state");
        Fixture {
            _tmp: tmp,
            main,
            wt,
            state,
        }
    }

    fn stamp() -> Stamp {
        Stamp::from_unix(1_768_926_554).unwrap()
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Node {
        File(Vec<u8>, u32),
        Link(PathBuf),
        Dir,
    }

    /// Everything observable about a worktree: files byte for byte (nested repositories
    /// included), index, status, `HEAD`, branch, operation.
    #[derive(Debug, PartialEq, Eq)]
    struct Snapshot {
        files: BTreeMap<PathBuf, Node>,
        index: String,
        cached_diff: String,
        status: String,
        head: String,
        branch: Option<String>,
        operation: Option<Operation>,
    }

    fn snapshot(wt: &Path) -> Snapshot {
        use std::os::unix::fs::PermissionsExt;
        let mut files = BTreeMap::new();
        let mut stack = vec![wt.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(wt).unwrap().to_path_buf();
                if rel == Path::new(".git") {
                    continue;
                }
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let node = if meta.file_type().is_symlink() {
                    Node::Link(std::fs::read_link(&path).unwrap())
                } else if meta.is_dir() {
                    stack.push(path.clone());
                    Node::Dir
                } else {
                    Node::File(
                        std::fs::read(&path).unwrap(),
                        meta.permissions().mode() & 0o111,
                    )
                };
                files.insert(rel, node);
            }
        }
        let git_dir = git::absolute_git_dir(wt).unwrap();
        Snapshot {
            files,
            index: g(wt, &["ls-files", "-v", "--stage", "-z"]),
            cached_diff: g(wt, &["diff", "--cached"]),
            status: g(
                wt,
                &[
                    "status",
                    "--porcelain=v2",
                    "-z",
                    "--ignored=matching",
                    "--untracked-files=all",
                ],
            ),
            head: g(wt, &["rev-parse", "HEAD"]),
            branch: git::current_branch(wt).unwrap(),
            operation: detect_operation(&git_dir),
        }
    }

    /// Equal snapshots; on a difference, name the paths that differ.
    fn assert_same(before: &Snapshot, after: &Snapshot) {
        let keys: std::collections::BTreeSet<&PathBuf> =
            before.files.keys().chain(after.files.keys()).collect();
        let differ: Vec<&&PathBuf> = keys
            .iter()
            .filter(|k| before.files.get(**k) != after.files.get(**k))
            .collect();
        assert!(differ.is_empty(), "files differ: {differ:?}");
        assert_eq!(before.index, after.index);
        assert_eq!(before.cached_diff, after.cached_diff);
        assert_eq!(before.status, after.status);
        assert_eq!(before.head, after.head);
        assert_eq!(before.branch, after.branch);
        assert_eq!(before.operation, after.operation);
    }

    /// Save, remove the worktree as destroy does, restore; the worktree must come back
    /// exactly as it was, and be found to hold the same unsaved work.
    fn round_trip(fx: &Fixture, opts: &WorkOptions) -> (UnsavedWork, RescueRecord, RestoreOutcome) {
        let before = snapshot(&fx.wt);
        let index = git::git_path(&fx.wt, "index").unwrap();
        let index_bytes = std::fs::read(&index).unwrap();
        let work = unsaved_work(&fx.wt, opts).unwrap();
        let record = save(&fx.main, &fx.wt, INSTANCE, &fx.state, &work, &stamp()).unwrap();
        assert_eq!(
            std::fs::read(&index).unwrap(),
            index_bytes,
            "the worktree's index is not touched"
        );
        g(
            &fx.main,
            &["worktree", "remove", "--force", fx.wt.to_str().unwrap()],
        );
        assert!(!fx.wt.exists());
        let outcome = restore(&record, None).unwrap();
        assert_eq!(outcome.path, fx.wt);
        assert_same(&before, &snapshot(&fx.wt));
        assert_eq!(unsaved_work(&fx.wt, opts).unwrap(), work);
        (work, record, outcome)
    }

    #[test]
    fn a_clean_worktree_is_clean() {
        let fx = fixture();
        let work = unsaved_work(&fx.wt, &WorkOptions::default()).unwrap();
        assert!(work.is_clean(), "{:?}", work.describe());
        assert_eq!(work.branch.as_deref(), Some("feat"));
        assert!(work.describe().is_empty());
    }

    #[test]
    fn commits_on_a_detached_head() {
        let fx = fixture();
        g(&fx.wt, &["checkout", "--quiet", "--detach"]);
        let on_branch = unsaved_work(&fx.wt, &WorkOptions::default()).unwrap();
        assert!(
            on_branch.is_clean(),
            "detached on a branch commit loses nothing"
        );
        write(&fx.wt, "new.txt", "detached work\n");
        let d = commit_all(&fx.wt, "detached");
        let (work, record, outcome) = round_trip(&fx, &WorkOptions::default());
        assert_eq!(work.detached_commits, vec![d.clone()]);
        assert_eq!(work.branch, None);
        assert!(!work.is_clean());
        assert_eq!(outcome.branch, None);
        assert_eq!(outcome.head, d);
        let rescue_ref = record.refname.unwrap();
        g(&fx.main, &["merge-base", "--is-ancestor", &d, &rescue_ref]);
    }

    #[test]
    fn a_rebase_stopped_at_a_conflict() {
        let fx = fixture();
        write(&fx.wt, "g.txt", "feat g\n");
        let c1 = commit_all(&fx.wt, "c1");
        write(&fx.wt, "f.txt", "feat\n");
        let c2 = commit_all(&fx.wt, "c2");
        write(&fx.main, "f.txt", "main\n");
        commit_all(&fx.main, "main moves");
        g_may_fail(&fx.wt, &["rebase", "main"]);
        let rebased_c1 = g(&fx.wt, &["rev-parse", "HEAD"]).trim().to_string();
        assert_ne!(rebased_c1, c1);
        let (work, _, outcome) = round_trip(&fx, &WorkOptions::default());
        assert_eq!(work.operation, Some(Operation::Rebase));
        assert_eq!(work.detached_commits, vec![rebased_c1.clone()]);
        assert_eq!(work.uncommitted, vec!["f.txt"]);
        assert_eq!(outcome.operation, Some(Operation::Rebase));
        assert_eq!(outcome.head, rebased_c1);
        // The rebase itself came back: aborting it returns to the branch.
        g(&fx.wt, &["rebase", "--abort"]);
        assert_eq!(g(&fx.wt, &["rev-parse", "HEAD"]).trim(), c2);
        assert_eq!(
            git::current_branch(&fx.wt).unwrap().as_deref(),
            Some("feat")
        );
    }

    #[test]
    fn a_merge_of_a_commit_on_no_branch() {
        let fx = fixture();
        write(&fx.wt, "f.txt", "feat\n");
        commit_all(&fx.wt, "feat");
        // A commit nothing but the merge knows.
        g(&fx.main, &["checkout", "--quiet", "--detach"]);
        write(&fx.main, "f.txt", "other\n");
        let x = commit_all(&fx.main, "other");
        g(&fx.main, &["checkout", "--quiet", "main"]);
        g_may_fail(&fx.wt, &["merge", &x]);
        let (work, record, _) = round_trip(&fx, &WorkOptions::default());
        assert_eq!(work.operation, Some(Operation::Merge));
        assert_eq!(work.detached_commits, vec![x.clone()]);
        assert_eq!(work.uncommitted, vec!["f.txt"]);
        assert_eq!(g(&fx.wt, &["rev-parse", "MERGE_HEAD"]).trim(), x);
        let rescue_ref = record.refname.unwrap();
        g(&fx.main, &["merge-base", "--is-ancestor", &x, &rescue_ref]);
    }

    #[test]
    fn a_cherry_pick_and_a_revert_stopped_at_conflicts() {
        let fx = fixture();
        write(&fx.main, "f.txt", "main\n");
        let m = commit_all(&fx.main, "main");
        write(&fx.wt, "f.txt", "feat\n");
        commit_all(&fx.wt, "feat");
        g_may_fail(&fx.wt, &["cherry-pick", &m]);
        let (work, _, _) = round_trip(&fx, &WorkOptions::default());
        assert_eq!(work.operation, Some(Operation::CherryPick));
        assert_eq!(work.uncommitted, vec!["f.txt"]);
        g(&fx.wt, &["cherry-pick", "--abort"]);

        write(&fx.wt, "f.txt", "feat 2\n");
        let c = commit_all(&fx.wt, "feat 2");
        write(&fx.wt, "f.txt", "feat 3\n");
        commit_all(&fx.wt, "feat 3");
        g_may_fail(&fx.wt, &["revert", "--no-edit", &c]);
        std::fs::remove_dir_all(fx.state.join("rescue")).unwrap();
        let (work, _, _) = round_trip(&fx, &WorkOptions::default());
        assert_eq!(work.operation, Some(Operation::Revert));
    }

    #[test]
    fn a_bisect_in_progress() {
        let fx = fixture();
        let mut commits = Vec::new();
        for n in 0..4 {
            write(&fx.wt, "f.txt", &format!("{n}\n"));
            commits.push(commit_all(&fx.wt, &format!("c{n}")));
        }
        g(&fx.wt, &["bisect", "start", &commits[3], &commits[0]]);
        let log = g(&fx.wt, &["bisect", "log"]);
        let (work, _, outcome) = round_trip(&fx, &WorkOptions::default());
        assert_eq!(work.operation, Some(Operation::Bisect));
        assert!(work.detached_commits.is_empty());
        assert!(!work.is_clean());
        assert_eq!(outcome.operation, Some(Operation::Bisect));
        assert_eq!(g(&fx.wt, &["bisect", "log"]), log);
        g(&fx.wt, &["bisect", "reset"]);
        assert_eq!(
            git::current_branch(&fx.wt).unwrap().as_deref(),
            Some("feat")
        );
    }

    #[test]
    fn edits_hidden_by_skip_worktree_and_assume_unchanged() {
        let fx = fixture();
        g(&fx.wt, &["update-index", "--skip-worktree", "f.txt"]);
        g(&fx.wt, &["update-index", "--assume-unchanged", "g.txt"]);
        let flagged = unsaved_work(&fx.wt, &WorkOptions::default()).unwrap();
        assert!(flagged.is_clean(), "flags alone lose nothing");
        write(&fx.wt, "f.txt", "hidden edit\n");
        write(&fx.wt, "g.txt", "assumed edit\n");
        assert!(
            git::uncommitted(&fx.wt).unwrap().is_empty(),
            "git status shows nothing"
        );
        let (work, record, _) = round_trip(&fx, &WorkOptions::default());
        assert_eq!(work.hidden, vec!["f.txt", "g.txt"]);
        assert!(!work.is_clean());
        let commit = record.commit.unwrap();
        assert_eq!(
            g(&fx.main, &["show", &format!("{commit}:f.txt")]),
            "hidden edit\n"
        );
        assert_eq!(
            std::fs::read_to_string(fx.wt.join("g.txt")).unwrap(),
            "assumed edit\n"
        );
    }

    #[test]
    fn an_edit_in_the_same_second_as_the_index_write_is_kept() {
        let fx = fixture();
        // Stat data that only a racy-git check can see through: same size, same time.
        g(&fx.wt, &["config", "core.trustctime", "false"]);
        g(&fx.wt, &["config", "core.checkStat", "minimal"]);
        let file = fx.wt.join("f.txt");
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::write(&file, "mine\n").unwrap();
        let set = |p: &Path| {
            let f = std::fs::File::options().write(true).open(p).unwrap();
            f.set_modified(mtime).unwrap();
        };
        set(&file);
        set(&git::git_path(&fx.wt, "index").unwrap());
        // A copy of the index made now would be a second younger than the edit.
        std::thread::sleep(Duration::from_millis(1100));
        let work = unsaved_work(&fx.wt, &WorkOptions::default()).unwrap();
        assert_eq!(work.uncommitted, vec!["f.txt"]);
        let record = save(&fx.main, &fx.wt, INSTANCE, &fx.state, &work, &stamp()).unwrap();
        let commit = record.commit.unwrap();
        assert_eq!(g(&fx.main, &["show", &format!("{commit}:f.txt")]), "mine\n");
    }

    #[test]
    fn nested_repositories_with_commits_and_edits() {
        let fx = fixture();
        let nested = fx.wt.join("tools/scratch");
        std::fs::create_dir_all(&nested).unwrap();
        g(&nested, &["init", "--quiet", "-b", "main"]);
        write(&nested, "n.txt", "one\n");
        let n1 = commit_all(&nested, "n1");
        write(&nested, "n.txt", "two\n");
        write(&nested, "new.txt", "untracked in nested\n");
        // A clean clone whose commits are all pushed.
        let bare = fx._tmp.path().join("lib.git");
        g(
            &fx.main,
            &["clone", "--quiet", "--bare", ".", bare.to_str().unwrap()],
        );
        let clone = fx.wt.join("vendor/lib");
        g(
            &fx.main,
            &[
                "clone",
                "--quiet",
                bare.to_str().unwrap(),
                clone.to_str().unwrap(),
            ],
        );
        let (work, record, _) = round_trip(&fx, &WorkOptions::default());
        assert_eq!(
            work.nested_repos,
            vec![
                NestedRepo {
                    path: "tools/scratch/".into(),
                    dirty: true,
                    unpushed: true
                },
                NestedRepo {
                    path: "vendor/lib/".into(),
                    dirty: false,
                    unpushed: false
                },
            ]
        );
        assert!(work.untracked.is_empty(), "{:?}", work.untracked);
        assert_eq!(g(&nested, &["rev-parse", "HEAD"]).trim(), n1);
        let commit = record.commit.unwrap();
        let tree = g(&fx.main, &["ls-tree", "-r", "--name-only", &commit]);
        assert!(!tree.contains("tools/scratch"), "{tree}");
    }

    #[test]
    fn a_staged_version_that_differs_from_the_working_file() {
        let fx = fixture();
        write(&fx.wt, "f.txt", "staged\n");
        g(&fx.wt, &["add", "f.txt"]);
        write(&fx.wt, "f.txt", "working\n");
        write(&fx.wt, "g.txt", "only working\n");
        let (work, record, _) = round_trip(&fx, &WorkOptions::default());
        assert_eq!(work.staged_differs, vec!["f.txt"]);
        assert_eq!(work.uncommitted, vec!["f.txt", "g.txt"]);
        let index = record.manifest.unwrap().index_commit;
        assert_eq!(
            g(&fx.main, &["show", &format!("{index}:f.txt")]),
            "staged\n"
        );
        assert_eq!(
            std::fs::read_to_string(fx.wt.join("f.txt")).unwrap(),
            "working\n"
        );
    }

    #[test]
    fn precious_ignored_files_are_moved_and_disposable_ones_left() {
        let fx = fixture();
        write(&fx.wt, ".env", "SECRET=1\n");
        write(&fx.wt, "data/prices/a.csv", "1,2,3\n");
        write(&fx.wt, "data/b.csv", "4\n");
        write(&fx.wt, "node_modules/pkg/index.js", "x\n");
        let work = unsaved_work(&fx.wt, &WorkOptions::default()).unwrap();
        let ignored: Vec<(&str, u64, u64, bool)> = work
            .ignored
            .iter()
            .map(|i| (i.path.as_str(), i.bytes, i.files, i.disposable))
            .collect();
        assert_eq!(
            ignored,
            vec![
                (".env", 9, 1, false),
                ("data/", 8, 2, false),
                ("node_modules/", 2, 1, true)
            ]
        );
        assert!(!work.is_clean());
        let record = save(&fx.main, &fx.wt, INSTANCE, &fx.state, &work, &stamp()).unwrap();
        let dir = record.dir.clone().unwrap();
        assert!(!fx.wt.join(".env").exists() && !fx.wt.join("data").exists());
        assert_eq!(
            std::fs::read(dir.join("files/.env")).unwrap(),
            b"SECRET=1\n"
        );
        assert!(
            fx.wt.join("node_modules/pkg/index.js").exists(),
            "disposable: not moved"
        );
        let commit = record.commit.clone().unwrap();
        let tree = g(&fx.main, &["ls-tree", "-r", "--name-only", &commit]);
        assert!(!tree.contains(".env"), "secrets stay out of git: {tree}");
        g(
            &fx.main,
            &["worktree", "remove", "--force", fx.wt.to_str().unwrap()],
        );
        let outcome = restore(&record, None).unwrap();
        assert_eq!(outcome.moved_back, vec![".env", "data"]);
        assert_eq!(
            std::fs::read_to_string(fx.wt.join("data/prices/a.csv")).unwrap(),
            "1,2,3\n"
        );
        assert!(!fx.wt.join("node_modules").exists());
        assert!(!dir.join("files/data").exists());
    }

    #[test]
    fn only_disposable_ignored_paths_are_clean() {
        let fx = fixture();
        write(&fx.wt, "web/node_modules/pkg/index.js", "x\n");
        write(&fx.wt, "pkg/__pycache__/m.pyc", "x\n");
        let opts = WorkOptions {
            disposable: vec!["node_modules".into(), "__pycache__".into()],
            ..WorkOptions::default()
        };
        std::fs::write(
            fx.wt.join(".gitignore"),
            ".env\n__pycache__/\nnode_modules/\n",
        )
        .unwrap();
        g(&fx.wt, &["commit", "--quiet", "-am", "ignore"]);
        let work = unsaved_work(&fx.wt, &opts).unwrap();
        assert!(
            work.ignored.iter().all(|i| i.disposable),
            "{:?}",
            work.ignored
        );
        assert_eq!(work.ignored.len(), 2);
        assert!(work.is_clean(), "{:?}", work.describe());
        let strict = WorkOptions {
            disposable: Vec::new(),
            ..WorkOptions::default()
        };
        assert!(!unsaved_work(&fx.wt, &strict).unwrap().is_clean());
    }

    #[test]
    fn kinfra_files_count_only_when_changed() {
        let fx = fixture();
        let written = b"KTRDR_API_PORT=8001\n".to_vec();
        std::fs::write(fx.wt.join(".env.sandbox"), &written).unwrap();
        std::fs::write(fx.wt.join(".env.kinfra"), &written).unwrap();
        let opts = WorkOptions {
            kinfra_files: vec![
                // Ignored, like ktrdr's env file.
                KinfraFile {
                    path: ".env.sandbox".into(),
                    content: written.clone(),
                },
                // Not ignored.
                KinfraFile {
                    path: ".env.kinfra".into(),
                    content: written.clone(),
                },
            ],
            ..WorkOptions::default()
        };
        let work = unsaved_work(&fx.wt, &opts).unwrap();
        assert!(work.is_clean(), "{:?}", work.describe());
        assert_eq!(work.kinfra_unchanged, vec![".env.kinfra", ".env.sandbox"]);
        let record = save(&fx.main, &fx.wt, INSTANCE, &fx.state, &work, &stamp()).unwrap();
        let tree = g(
            &fx.main,
            &["ls-tree", "-r", "--name-only", &record.commit.unwrap()],
        );
        assert!(!tree.contains(".env.kinfra"), "{tree}");
        assert!(fx.wt.join(".env.sandbox").exists(), "left for the caller");

        std::fs::write(fx.wt.join(".env.sandbox"), b"KTRDR_API_PORT=8001\nMINE=1\n").unwrap();
        std::fs::write(fx.wt.join(".env.kinfra"), b"edited\n").unwrap();
        let work = unsaved_work(&fx.wt, &opts).unwrap();
        assert_eq!(work.untracked, vec![".env.kinfra"]);
        assert_eq!(work.ignored.len(), 1);
        assert_eq!(work.ignored[0].path, ".env.sandbox");
        assert!(!work.ignored[0].disposable);
    }

    #[test]
    fn paths_with_spaces_quotes_and_newlines() {
        let fx = fixture();
        let odd = "we ird \"q'uote\"\nline.txt";
        write(&fx.wt, odd, "tracked\n");
        write(&fx.wt, "sp ace/x y.txt", "tracked 2\n");
        commit_all(&fx.wt, "odd names");
        write(&fx.wt, odd, "changed\n");
        write(&fx.wt, "new\nline/un \"tracked\".txt", "new\n");
        write(&fx.wt, "sp ace/run log.log", "ignored\n");
        write(&fx.wt, "sp ace/x y.txt", "staged\n");
        g(&fx.wt, &["add", "sp ace/x y.txt"]);
        write(&fx.wt, "sp ace/x y.txt", "working\n");
        let nested = fx.wt.join("ne sted\n\"repo\"");
        std::fs::create_dir_all(&nested).unwrap();
        g(&nested, &["init", "--quiet", "-b", "main"]);
        write(&nested, "n", "n\n");
        commit_all(&nested, "n");
        let (work, _, outcome) = round_trip(&fx, &WorkOptions::default());
        assert_eq!(work.uncommitted, vec!["sp ace/x y.txt", odd]);
        assert_eq!(work.staged_differs, vec!["sp ace/x y.txt"]);
        assert_eq!(work.untracked, vec!["new\nline/un \"tracked\".txt"]);
        assert_eq!(work.ignored[0].path, "sp ace/run log.log");
        assert_eq!(work.nested_repos[0].path, "ne sted\n\"repo\"/");
        assert!(work.describe().iter().all(|l| !l.contains('\n')));
        assert_eq!(outcome.branch.as_deref(), Some("feat"));
    }

    #[test]
    fn restore_leaves_a_branch_that_moved_on_and_recreates_a_deleted_one() {
        let fx = fixture();
        write(&fx.wt, "f.txt", "mine\n");
        let head = g(&fx.wt, &["rev-parse", "HEAD"]).trim().to_string();
        let work = unsaved_work(&fx.wt, &WorkOptions::default()).unwrap();
        let record = save(&fx.main, &fx.wt, INSTANCE, &fx.state, &work, &stamp()).unwrap();
        g(
            &fx.main,
            &["worktree", "remove", "--force", fx.wt.to_str().unwrap()],
        );
        write(&fx.main, "h.txt", "h\n");
        let moved = commit_all(&fx.main, "elsewhere");
        g(&fx.main, &["branch", "--force", "feat", &moved]);
        let outcome = restore(&record, None).unwrap();
        assert_eq!(outcome.branch, None);
        assert_eq!(outcome.branch_moved.as_deref(), Some("feat"));
        assert_eq!(outcome.head, head);
        assert_eq!(g(&fx.wt, &["rev-parse", "HEAD"]).trim(), head);
        assert_eq!(
            g(&fx.main, &["rev-parse", "feat"]).trim(),
            moved,
            "never moved back"
        );
        assert_eq!(
            std::fs::read_to_string(fx.wt.join("f.txt")).unwrap(),
            "mine\n"
        );

        g(
            &fx.main,
            &["worktree", "remove", "--force", fx.wt.to_str().unwrap()],
        );
        g(&fx.main, &["branch", "-D", "feat"]);
        let outcome = restore(&record, None).unwrap();
        assert!(outcome.branch_created);
        assert_eq!(
            git::current_branch(&fx.wt).unwrap().as_deref(),
            Some("feat")
        );
        assert_eq!(g(&fx.wt, &["rev-parse", "HEAD"]).trim(), head);
    }

    #[test]
    fn restore_refuses_a_target_that_is_not_empty() {
        let fx = fixture();
        write(&fx.wt, "f.txt", "mine\n");
        let work = unsaved_work(&fx.wt, &WorkOptions::default()).unwrap();
        let record = save(&fx.main, &fx.wt, INSTANCE, &fx.state, &work, &stamp()).unwrap();
        let err = restore(&record, None).unwrap_err();
        assert!(matches!(err, RescueError::TargetExists { .. }), "{err}");
        assert_eq!(err.exit(), Exit::Conflict);
        // Another, empty, path is fine.
        let other = fx._tmp.path().join("elsewhere");
        std::fs::create_dir(&other).unwrap();
        g(
            &fx.main,
            &["worktree", "remove", "--force", fx.wt.to_str().unwrap()],
        );
        let outcome = restore(&record, Some(&other)).unwrap();
        assert_eq!(outcome.path, other);
        assert_eq!(
            std::fs::read_to_string(other.join("f.txt")).unwrap(),
            "mine\n"
        );
    }

    #[test]
    fn list_joins_refs_and_directories_and_prune_removes_old_ones() {
        let fx = fixture();
        write(&fx.wt, "f.txt", "mine\n");
        let work = unsaved_work(&fx.wt, &WorkOptions::default()).unwrap();
        let old = save(&fx.main, &fx.wt, INSTANCE, &fx.state, &work, &stamp()).unwrap();
        let again = save(&fx.main, &fx.wt, INSTANCE, &fx.state, &work, &stamp()).unwrap();
        assert_eq!(
            again.stamp,
            format!("{}-2", stamp().compact()),
            "never overwritten"
        );
        let later = Stamp::from_unix(stamp().unix() + 30 * 86_400).unwrap();
        let new = save(&fx.main, &fx.wt, INSTANCE, &fx.state, &work, &later).unwrap();
        // A rescue made before manifests existed: a ref only.
        let legacy = git::rescue(&fx.main, &fx.wt, "ktrdr--old", "20250101T000000Z", &[]).unwrap();
        // A rescue cut short: a directory without a manifest or a ref.
        let partial = fx
            .state
            .join("rescue")
            .join(INSTANCE)
            .join("20260301T000000Z");
        std::fs::create_dir_all(partial.join("files")).unwrap();

        let mains = vec![fx.main.clone()];
        let records = list(&fx.state, &mains);
        let names: Vec<String> = records.iter().map(RescueRecord::name).collect();
        assert_eq!(
            names,
            vec![
                old.name(),
                again.name(),
                new.name(),
                format!("{INSTANCE}/20260301T000000Z"),
                "ktrdr--old/20250101T000000Z".to_string(),
            ]
        );
        assert_eq!(records[0], old);
        assert!(records[3].is_partial() && records[3].refname.is_none());
        assert_eq!(records[4].commit.as_deref(), Some(legacy.commit.as_str()));
        assert!(records[4].dir.is_none());
        assert_eq!(find(&fx.state, &mains, &new.name()).unwrap(), new);
        assert_eq!(
            find(&fx.state, &mains, INSTANCE).unwrap().name(),
            records[3].name()
        );
        let err = find(&fx.state, &mains, "nope/1").unwrap_err();
        assert_eq!(err.exit(), Exit::NotFound);

        // A legacy rescue restores from its ref alone.
        g(
            &fx.main,
            &["worktree", "remove", "--force", fx.wt.to_str().unwrap()],
        );
        let target = fx._tmp.path().join("legacy");
        restore(&records[4], Some(&target)).unwrap();
        assert_eq!(
            std::fs::read_to_string(target.join("f.txt")).unwrap(),
            "mine\n"
        );

        let now = Stamp::from_unix(later.unix() + 86_400).unwrap();
        let week = Duration::from_secs(7 * 86_400);
        let dry = prune(&fx.state, &mains, week, &now, true).unwrap();
        let dry_names: Vec<String> = dry.iter().map(RescueRecord::name).collect();
        assert_eq!(
            dry_names,
            vec![
                old.name(),
                again.name(),
                "ktrdr--old/20250101T000000Z".to_string()
            ]
        );
        assert_eq!(
            list(&fx.state, &mains).len(),
            5,
            "a dry run deletes nothing"
        );
        prune(&fx.state, &mains, week, &now, false).unwrap();
        let left: Vec<String> = list(&fx.state, &mains)
            .iter()
            .map(RescueRecord::name)
            .collect();
        assert_eq!(
            left,
            vec![new.name(), format!("{INSTANCE}/20260301T000000Z")]
        );
        assert!(!git::ref_exists(&fx.main, old.refname.as_deref().unwrap()).unwrap());
        assert!(!old.dir.unwrap().exists());
    }

    #[test]
    fn copy_tree_keeps_links_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src, "a/run.sh", "#!/bin/sh\n");
        std::fs::set_permissions(src.join("a/run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("a/run.sh", src.join("link")).unwrap();
        let dst = tmp.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        let mode = std::fs::metadata(dst.join("a/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("a/run.sh")
        );
        assert_eq!(std::fs::read(dst.join("a/run.sh")).unwrap(), b"#!/bin/sh\n");
    }

    #[test]
    fn trailers_round_trip() {
        let meta = CommitMeta {
            instance: Some("ktrdr--x".into()),
            worktree: Some(PathBuf::from("/d/we ird\n\"path\"")),
            branch: None,
            head: Some("abc".into()),
            operation: Some(Operation::CherryPick),
            index: Some("def".into()),
            state: Some("123".into()),
        };
        let message = meta.message("kinfra rescue of ktrdr--x");
        assert_eq!(CommitMeta::parse(&message), Some(meta));
        assert_eq!(CommitMeta::parse("kinfra rescue of x at y\n"), None);
    }

    #[test]
    fn stamps_names_and_sizes() {
        let s = stamp();
        assert_eq!(s.compact(), "20260120T162914Z");
        assert_eq!(s.iso(), "2026-01-20T16:29:14Z");
        assert_eq!(Stamp::parse_compact("20260120T162914Z"), Some(s));
        assert_eq!(Stamp::parse_compact("20260120T162914Z-3"), Some(s));
        assert_eq!(Stamp::parse_compact("garbage"), None);
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(shown("a\nb\tc"), "`a\\nb\\tc`");
        let names: Vec<String> = DEFAULT_DISPOSABLE.iter().map(|s| s.to_string()).collect();
        assert!(is_disposable("web/node_modules/", &names));
        assert!(is_disposable("pkg/__pycache__/m.pyc", &names));
        assert!(!is_disposable("data/", &names));
        assert!(!is_disposable("my_node_modules_notes.txt", &names));
        assert_eq!(
            commit_names(
                "pick 1234abcd subject\n# pick deadbeef0\nexec make\nmerge -C abcdef0123 x\n"
            ),
            vec!["1234abcd", "abcdef0123"]
        );
    }
}
