//! Git, run hermetically: inherited `GIT_*` location variables cleared, porcelain and
//! `-z` output parsed by the pure functions at the bottom of this file.

use std::path::{Path, PathBuf};

use crate::gitfiles::{self, Dirs};
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
    #[error("cannot read `{}`: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
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
    // Queries answer in seconds; commands that write many files ask for longer.
    let mut cmd = Cmd::new("git")
        .arg("-C")
        .arg(dir)
        .timeout_kind(crate::process::TimeoutKind::Read);
    for var in LOCATION_VARS {
        cmd = cmd.env_remove(var);
    }
    hermetic(cmd)
}

/// Unit tests run git without the user's or the system's config and with a fixed
/// identity, so a developer's settings cannot change what the tests see.
#[cfg(test)]
fn hermetic(cmd: Cmd) -> Cmd {
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
}

#[cfg(not(test))]
fn hermetic(cmd: Cmd) -> Cmd {
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
///
/// Every command asks this first, so the common layouts (a main checkout with a `.git`
/// directory, a linked worktree whose `.git` file names its git dir) are read from the
/// files git itself reads; anything else (environment overrides, `core.worktree`, bare
/// or odd layouts) asks git.
pub fn repo_info(dir: &Path) -> Result<Option<RepoInfo>, GitError> {
    if let Some(info) = repo_info_from_files(dir) {
        return Ok(Some(info));
    }
    repo_info_from_git(dir)
}

/// The fast path of [`repo_info`]: `None` means "ask git", never "not a repository".
fn repo_info_from_files(dir: &Path) -> Option<RepoInfo> {
    let Dirs {
        top,
        git_dir,
        common,
        linked_file,
        config,
    } = Dirs::discover(dir)?;
    // A work tree configured elsewhere, or a bare repository: git knows best.
    if config.contains("worktree") || config.contains("bare = true") {
        return None;
    }
    if git_dir.join("config.worktree").exists() {
        return None;
    }
    let is_linked_worktree = git_dir != common;
    let main_root = if common.file_name().is_some_and(|n| n == ".git") {
        common.parent()?.to_owned()
    } else if is_linked_worktree || linked_file {
        // A separate git dir: git's own answer names the main checkout.
        return None;
    } else {
        top.clone()
    };
    Some(RepoInfo {
        toplevel: top,
        main_root,
        is_linked_worktree,
    })
}

fn repo_info_from_git(dir: &Path) -> Result<Option<RepoInfo>, GitError> {
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
    let unexpected = |why: &str| GitError::Unexpected {
        command: cmd.display(),
        output: format!("{why}: {}", out.stdout.trim().escape_debug()),
    };
    // A path holding a line break would shift the lines onto other paths (and make
    // kinfra act on another repository): refuse it.
    if out.stdout.trim_end_matches('\n').lines().count() != 3
        || out.stdout.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(unexpected("a path with a control character"));
    }
    let mut info = parse_repo_info(&out.stdout).ok_or_else(|| unexpected("three paths"))?;
    let here = crate::registry::canonical(dir);
    if !here.starts_with(crate::registry::canonical(&info.toplevel)) {
        return Err(unexpected("the top level does not contain the directory"));
    }
    // A repository whose git dir is not named `.git` (`--separate-git-dir`): its main
    // checkout is the first one `git worktree list` names.
    if info.is_linked_worktree
        && info.main_root == info.toplevel
        && let Some(first) = worktree_list(dir)?.into_iter().next()
    {
        info.main_root = first.path;
    }
    Ok(Some(info))
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
    if let Some(found) = Dirs::discover(repo).and_then(|d| gitfiles::resolve(&d, refname)) {
        return Ok(found.is_some());
    }
    let out = git(repo)
        .args(["show-ref", "--verify", "--quiet", refname])
        .output()?;
    Ok(out.success())
}

/// The commit `HEAD` points at, or `None` in a repository without commits.
pub fn head_commit(dir: &Path) -> Result<Option<String>, GitError> {
    if let Some(head) = Dirs::discover(dir).and_then(|d| gitfiles::head(&d)) {
        return Ok(head.commit);
    }
    let out = git(dir)
        .args(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
        .output()?;
    Ok(out.success().then(|| out.stdout.trim().to_string()))
}

/// The commit a branch or remote-tracking ref names, if it exists (a branch names a
/// commit; read from the ref files when they can be).
pub fn ref_commit(repo: &Path, refname: &str) -> Result<Option<String>, GitError> {
    if let Some(found) = Dirs::discover(repo).and_then(|d| gitfiles::resolve(&d, refname)) {
        return Ok(found);
    }
    let out = git(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{refname}^{{commit}}"))
        .output()?;
    Ok(out.success().then(|| out.stdout.trim().to_string()))
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
    let cmd = git(main)
        .timeout_kind(crate::process::TimeoutKind::Git)
        .args(["worktree", "add", "--quiet"]);
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
    let mut cmd = git(parent)
        .timeout_kind(crate::process::TimeoutKind::Git)
        .args(["clone", "--quiet", "--no-local"]);
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
    let scratch = ScratchDir::new()?;
    let index = scratch.path().join("index");
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
    drop(scratch);
    result
}

/// A private directory for temporary index files, outside every work tree (so `git
/// add` never sees it), removed when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new() -> Result<ScratchDir, GitError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        // Unique per process, per call and per moment: concurrent rescues (and tests)
        // never share an index.
        let path = std::env::temp_dir().join(format!(
            "kinfra-git-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(|source| GitError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(ScratchDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
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

// ---- building blocks for rescues ----

/// The checkout's own git directory, absolute (for a linked worktree,
/// `<common dir>/worktrees/<name>`: where its index, `HEAD` and in-progress operation
/// state live).
pub fn absolute_git_dir(dir: &Path) -> Result<PathBuf, GitError> {
    if let Some(dirs) = Dirs::discover(dir) {
        return Ok(dirs.git_dir);
    }
    let cmd = git(dir).args(["rev-parse", "--absolute-git-dir"]);
    let out = cmd.run()?;
    non_empty_line(&cmd, &out).map(PathBuf::from)
}

/// `rev-parse --git-path <name>`, absolute: where git keeps `name` for this checkout.
pub fn git_path(dir: &Path, name: &str) -> Result<PathBuf, GitError> {
    let cmd = git(dir).args(["rev-parse", "--path-format=absolute", "--git-path", name]);
    let out = cmd.run()?;
    non_empty_line(&cmd, &out).map(PathBuf::from)
}

fn non_empty_line(cmd: &Cmd, out: &str) -> Result<String, GitError> {
    let line = out.strip_suffix('\n').unwrap_or(out);
    if line.is_empty() || line.contains('\n') {
        return Err(GitError::Unexpected {
            command: cmd.display(),
            output: out.trim().to_string(),
        });
    }
    Ok(line.to_string())
}

/// A checkout's `HEAD` (commit and branch) and its own git dir, read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadState {
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub git_dir: PathBuf,
}

/// [`head_commit`], [`current_branch`] and [`absolute_git_dir`] in one look at the
/// files (git answers when they cannot).
pub fn head_state(dir: &Path) -> Result<HeadState, GitError> {
    if let Some(dirs) = Dirs::discover(dir)
        && let Some(head) = gitfiles::head(&dirs)
    {
        return Ok(HeadState {
            commit: head.commit,
            branch: head.branch,
            git_dir: dirs.git_dir,
        });
    }
    Ok(HeadState {
        commit: head_commit(dir)?,
        branch: current_branch(dir)?,
        git_dir: absolute_git_dir(dir)?,
    })
}

/// The branch `HEAD` is on, or `None` when it is detached.
pub fn current_branch(dir: &Path) -> Result<Option<String>, GitError> {
    if let Some(head) = Dirs::discover(dir).and_then(|d| gitfiles::head(&d)) {
        return Ok(head.branch);
    }
    let out = git(dir)
        .args(["symbolic-ref", "--quiet", "HEAD"])
        .output()?;
    Ok(out
        .success()
        .then(|| out.stdout.trim_end_matches('\n').to_string())
        .and_then(|r| r.strip_prefix("refs/heads/").map(str::to_string)))
}

/// The commit a branch points at, if the branch exists.
pub fn branch_commit(repo: &Path, branch: &str) -> Result<Option<String>, GitError> {
    let out = git(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}^{{commit}}"))
        .output()?;
    Ok(out.success().then(|| out.stdout.trim().to_string()))
}

/// Whether `rev` names a commit in `repo`.
pub fn commit_exists(repo: &Path, rev: &str) -> Result<bool, GitError> {
    let out = git(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{rev}^{{commit}}"))
        .output()?;
    Ok(out.success())
}

/// Every entry of `git status --porcelain=v2 -z --ignored=matching
/// --untracked-files=all`: changes, conflicts, untracked and ignored paths.
pub fn status_entries(dir: &Path) -> Result<Vec<StatusEntry>, GitError> {
    // No optional locks: looking must not rewrite the index (a refresh would).
    let out = git(dir)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .args([
            "status",
            "--porcelain=v2",
            "-z",
            "--ignored=matching",
            "--untracked-files=all",
            "--ignore-submodules=none",
        ])
        .run()?;
    Ok(parse_status_v2(&out))
}

/// The index's entries with their flags (`ls-files -v --stage -z`), from the checkout's
/// own index or from `index_file`.
pub fn index_entries(dir: &Path, index_file: Option<&Path>) -> Result<Vec<IndexEntry>, GitError> {
    let mut cmd = git(dir).args(["ls-files", "-v", "--stage", "-z"]);
    if let Some(file) = index_file {
        cmd = cmd.env("GIT_INDEX_FILE", file);
    }
    Ok(parse_index_entries(&cmd.run()?))
}

/// Those of the untracked `paths` that `.gitignore` rules ignore (a directory as
/// `dir/`, as `status` names it).
pub fn ignored_among(dir: &Path, paths: &[String]) -> Result<Vec<String>, GitError> {
    let mut ignored = Vec::new();
    for chunk in paths.chunks(500) {
        let out = git(dir)
            .args([
                "ls-files",
                "-z",
                "--others",
                "--ignored",
                "--exclude-standard",
                "--directory",
                "--",
            ])
            .args(chunk.iter().map(|p| format!(":(literal){p}")))
            .run()?;
        ignored.extend(
            out.split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_string),
        );
    }
    Ok(ignored)
}

/// Blob ids of the working files `paths` as `git add` would store them (clean filters
/// applied), in the same order.
pub fn hash_files(dir: &Path, paths: &[String]) -> Result<Vec<String>, GitError> {
    let mut out = Vec::with_capacity(paths.len());
    // Chunks keep the command line well under the system's limit.
    for chunk in paths.chunks(500) {
        let cmd = git(dir).args(["hash-object", "--"]).args(chunk);
        let stdout = cmd.run()?;
        let ids: Vec<String> = stdout.lines().map(str::to_string).collect();
        if ids.len() != chunk.len() {
            return Err(GitError::Unexpected {
                command: cmd.display(),
                output: stdout.trim().to_string(),
            });
        }
        out.extend(ids);
    }
    Ok(out)
}

/// The content of a blob (for comparing symlink targets).
pub fn blob_text(dir: &Path, id: &str) -> Result<String, GitError> {
    Ok(git(dir).args(["cat-file", "blob", id]).run()?)
}

/// Commits reachable from `tips` that no branch, tag or remote-tracking branch
/// contains, newest first. Names that do not resolve are skipped.
pub fn commits_on_no_ref(dir: &Path, tips: &[String]) -> Result<Vec<String>, GitError> {
    if tips.is_empty() {
        return Ok(Vec::new());
    }
    let out = git(dir)
        .args(["rev-list", "--ignore-missing"])
        .args(peeled(tips))
        .args(["--not", "--branches", "--tags", "--remotes"])
        .run()?;
    Ok(out.lines().map(str::to_string).collect())
}

/// `rev^{commit}` for each: a name of something else is skipped like a missing one.
fn peeled(revs: &[String]) -> Vec<String> {
    revs.iter().map(|r| format!("{r}^{{commit}}")).collect()
}

/// The commits `revs` name (no walk); names that do not resolve are skipped.
pub fn resolve_commits(dir: &Path, revs: &[String]) -> Result<Vec<String>, GitError> {
    if revs.is_empty() {
        return Ok(Vec::new());
    }
    let out = git(dir)
        .args(["rev-list", "--ignore-missing", "--no-walk"])
        .args(peeled(revs))
        .run()?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Refs that belong to one worktree and go with it (`refs/bisect/`, `refs/worktree/`,
/// `refs/rewritten/`), as `(refname, commit)`.
pub fn worktree_refs(dir: &Path) -> Result<Vec<(String, String)>, GitError> {
    if let Some(refs) = Dirs::discover(dir).and_then(|d| gitfiles::worktree_refs(&d)) {
        return Ok(refs);
    }
    let out = git(dir)
        .args([
            "for-each-ref",
            "--format=%(refname)%00%(objectname)",
            "refs/bisect/",
            "refs/worktree/",
            "refs/rewritten/",
        ])
        .run()?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let (name, id) = l.split_once('\0')?;
            Some((name.to_string(), id.to_string()))
        })
        .collect())
}

/// `git commit-tree`, with a fallback identity when the user has none.
pub fn commit_tree(
    dir: &Path,
    tree: &str,
    parents: &[String],
    message: &str,
) -> Result<String, GitError> {
    let mut cmd = identity(git(dir))?.args(["commit-tree", tree]);
    for p in parents {
        cmd = cmd.arg("-p").arg(p);
    }
    let cmd = cmd.arg("-m").arg(message);
    let out = cmd.run()?;
    non_empty_line(&cmd, &out)
}

/// Create `refname` at `commit` only if it does not exist yet; `false` when it does.
pub fn create_ref(repo: &Path, refname: &str, commit: &str) -> Result<bool, GitError> {
    // The empty old value makes update-ref create-only.
    let out = git(repo)
        .args(["update-ref", "--no-deref", refname, commit, ""])
        .output()?;
    if out.success() {
        return Ok(true);
    }
    if ref_exists(repo, refname)? {
        return Ok(false);
    }
    Err(GitError::Unexpected {
        command: format!("git update-ref {refname} {commit}"),
        output: out.stderr.trim().to_string(),
    })
}

/// Delete `refname` if it still points at `commit`.
pub fn delete_ref(repo: &Path, refname: &str, commit: &str) -> Result<(), GitError> {
    git(repo)
        .args(["update-ref", "--no-deref", "-d", refname, commit])
        .run()?;
    Ok(())
}

/// Refs under `prefix` as `(refname, commit)`.
pub fn refs_under(repo: &Path, prefix: &str) -> Result<Vec<(String, String)>, GitError> {
    let out = git(repo)
        .args([
            "for-each-ref",
            "--format=%(refname)%00%(objectname)",
            prefix,
        ])
        .run()?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let (name, id) = l.split_once('\0')?;
            Some((name.to_string(), id.to_string()))
        })
        .collect())
}

/// A commit's full message.
pub fn commit_message(repo: &Path, commit: &str) -> Result<String, GitError> {
    Ok(git(repo)
        .args(["log", "-1", "--format=%B", commit, "--"])
        .run()?)
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

/// One entry of `git status --porcelain=v2 -z`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusEntry {
    /// A tracked path that changed: `index` is the staged change against `HEAD`,
    /// `worktree` the working file's change against the index (`.` for none).
    Changed {
        index: char,
        worktree: char,
        path: String,
        /// The path it was renamed or copied from.
        from: Option<String>,
    },
    /// A path with merge conflicts.
    Unmerged { path: String },
    /// Untracked (a directory, such as a nested repository, ends in `/`).
    Untracked { path: String },
    /// Ignored (a directory ends in `/`).
    Ignored { path: String },
}

fn xy(code: &str) -> (char, char) {
    let mut c = code.chars();
    (c.next().unwrap_or('.'), c.next().unwrap_or('.'))
}

pub fn parse_status_v2(stdout: &str) -> Vec<StatusEntry> {
    let mut out = Vec::new();
    let mut fields = stdout.split('\0');
    while let Some(entry) = fields.next() {
        match entry.get(..2) {
            Some("1 ") => {
                // `1 XY sub mH mI mW hH hI path`
                let parts: Vec<&str> = entry.splitn(9, ' ').collect();
                if let [_, code, .., path] = parts.as_slice()
                    && parts.len() == 9
                {
                    let (index, worktree) = xy(code);
                    out.push(StatusEntry::Changed {
                        index,
                        worktree,
                        path: path.to_string(),
                        from: None,
                    });
                }
            }
            Some("2 ") => {
                // `2 XY sub mH mI mW hH hI Xscore path`, then the original path.
                let parts: Vec<&str> = entry.splitn(10, ' ').collect();
                let from = fields.next().map(str::to_string);
                if let [_, code, .., path] = parts.as_slice()
                    && parts.len() == 10
                {
                    let (index, worktree) = xy(code);
                    out.push(StatusEntry::Changed {
                        index,
                        worktree,
                        path: path.to_string(),
                        from,
                    });
                }
            }
            Some("u ") => {
                // `u XY sub m1 m2 m3 mW h1 h2 h3 path`
                let parts: Vec<&str> = entry.splitn(11, ' ').collect();
                if parts.len() == 11
                    && let Some(path) = parts.last()
                {
                    out.push(StatusEntry::Unmerged {
                        path: path.to_string(),
                    });
                }
            }
            Some("? ") => out.push(StatusEntry::Untracked {
                path: entry[2..].to_string(),
            }),
            Some("! ") => out.push(StatusEntry::Ignored {
                path: entry[2..].to_string(),
            }),
            _ => {}
        }
    }
    out
}

/// One line of `git ls-files -v --stage -z`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub mode: String,
    pub id: String,
    /// 0, or 1–3 for the sides of a conflict.
    pub stage: u8,
    pub path: String,
    pub skip_worktree: bool,
    pub assume_unchanged: bool,
}

pub fn parse_index_entries(stdout: &str) -> Vec<IndexEntry> {
    stdout
        .split('\0')
        .filter_map(|record| {
            // `T MODE ID STAGE\tPATH`; the tag is lowercase for assume-unchanged.
            let (head, path) = record.split_once('\t')?;
            let mut parts = head.split(' ');
            let tag = parts.next()?.chars().next()?;
            let mode = parts.next()?.to_string();
            let id = parts.next()?.to_string();
            let stage = parts.next()?.parse().ok()?;
            Some(IndexEntry {
                mode,
                id,
                stage,
                path: path.to_string(),
                skip_worktree: tag.eq_ignore_ascii_case(&'S'),
                assume_unchanged: tag.is_ascii_lowercase(),
            })
        })
        .collect()
}

impl crate::error::Diagnostic for GitError {
    fn exit(&self) -> crate::error::Exit {
        match self {
            GitError::Process(ProcessError::TimedOut { .. }) => crate::error::Exit::TimedOut,
            GitError::Process(ProcessError::Interrupted { .. }) => crate::error::Exit::Interrupted,
            GitError::Io { .. } | GitError::Read { .. } => crate::error::Exit::Failure,
            _ => crate::error::Exit::External,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file-read answer is git's answer, in every layout the fast path accepts, and
    /// it steps aside (None) for the layouts it does not read itself.
    #[test]
    fn repo_info_read_from_files_is_what_git_says() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let sh = |dir: &Path, script: &str| {
            let out = hermetic(Cmd::new("sh").args(["-c", script]).cwd(dir))
                .output()
                .unwrap();
            assert!(out.success(), "{script}: {}", out.stderr);
        };
        sh(
            &root,
            "git init -q -b main repo && cd repo && mkdir -p a/b && touch a/b/f && git add . \
             && git commit -qm one && git worktree add -q ../repo--x -b x \
             && git worktree add -q --detach ../repo--d \
             && git init -q --separate-git-dir ../sep.git ../sepwt \
             && git init -q ../sub && cd ../sub && touch f && git add f && git commit -qm s",
        );
        let same = |dir: &Path| {
            let fast = repo_info_from_files(dir);
            let slow = repo_info_from_git(dir).unwrap();
            assert!(fast.is_some(), "{} is read from files", dir.display());
            assert_eq!(fast, slow, "{}", dir.display());
        };
        same(&root.join("repo"));
        same(&root.join("repo/a/b"));
        same(&root.join("repo--x"));
        same(&root.join("repo--d"));
        // Outside any repository the files do not answer; git says "not a repository".
        assert_eq!(repo_info_from_files(&root), None);
        // A separate git dir is left to git.
        assert_eq!(repo_info_from_files(&root.join("sepwt")), None);
        assert!(repo_info(&root.join("sepwt")).unwrap().is_some());
    }

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
    fn status_v2_entries() {
        let out = "1 MM N... 100644 100644 100644 aaaa bbbb a b.txt\0\
                   2 R. N... 100644 100644 100644 aaaa aaaa R100 new name\0old name\0\
                   u UU N... 100644 100644 100644 100644 aaaa bbbb cccc con flict\0\
                   ? nested/\0? line\nbreak\0! data/\0! .env\0";
        assert_eq!(
            parse_status_v2(out),
            vec![
                StatusEntry::Changed {
                    index: 'M',
                    worktree: 'M',
                    path: "a b.txt".into(),
                    from: None
                },
                StatusEntry::Changed {
                    index: 'R',
                    worktree: '.',
                    path: "new name".into(),
                    from: Some("old name".into())
                },
                StatusEntry::Unmerged {
                    path: "con flict".into()
                },
                StatusEntry::Untracked {
                    path: "nested/".into()
                },
                StatusEntry::Untracked {
                    path: "line\nbreak".into()
                },
                StatusEntry::Ignored {
                    path: "data/".into()
                },
                StatusEntry::Ignored {
                    path: ".env".into()
                },
            ]
        );
        assert!(parse_status_v2("").is_empty());
    }

    #[test]
    fn index_entries_with_flags_and_stages() {
        let out = "H 100644 aaaa 0\tplain\0S 100644 bbbb 0\tskipped file\0\
                   h 100644 cccc 0\tassumed\0s 100644 dddd 0\tboth\0\
                   M 100644 eeee 2\tcon\tflict\0";
        let entries = parse_index_entries(out);
        let flags: Vec<(&str, u8, bool, bool)> = entries
            .iter()
            .map(|e| {
                (
                    e.path.as_str(),
                    e.stage,
                    e.skip_worktree,
                    e.assume_unchanged,
                )
            })
            .collect();
        assert_eq!(
            flags,
            vec![
                ("plain", 0, false, false),
                ("skipped file", 0, true, false),
                ("assumed", 0, false, true),
                ("both", 0, true, true),
                ("con\tflict", 2, false, false),
            ]
        );
        assert_eq!(entries[1].id, "bbbb");
        assert_eq!(entries[1].mode, "100644");
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
