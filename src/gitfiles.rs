//! Git state read from the files git itself reads (`HEAD`, loose refs, `packed-refs`,
//! the index, a worktree's `gitdir` link), for the layouts git has used for years: a
//! main checkout with a `.git` directory and linked worktrees beside it.
//!
//! Each reader answers `None` for "ask git": another ref storage (reftable), a
//! symbolic ref other than `HEAD`, a split index, an index version or a file it does
//! not know. It never guesses; the tests compare every answer with git's own.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Variables that change where git looks or what its config says: with any set, ask git.
const ENV_THAT_MOVES_GIT: [&str; 8] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_REF_PARANOIA",
];

/// Whether a variable that moves git or its config is set (then git is asked).
fn env_moves_git() -> bool {
    ENV_THAT_MOVES_GIT
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Where one checkout's git state lives, and the repository's config (read once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// The checkout's top level (the directory holding `.git`).
    pub top: PathBuf,
    /// Its own git dir: `<top>/.git`, or `<common>/worktrees/<name>` for a linked
    /// worktree (its `HEAD`, index and per-worktree refs).
    pub git_dir: PathBuf,
    /// The repository's common dir (shared refs, `packed-refs`, config, objects).
    pub common: PathBuf,
    /// `.git` is a `gitdir:` file, not a directory.
    pub linked_file: bool,
    /// The repository's config as text ("" when unreadable).
    pub config: String,
}

impl Dirs {
    /// The checkout `dir` is in, found the way git finds it (walking up to the first
    /// `.git`), or `None` for anything but the plain layouts.
    pub fn discover(dir: &Path) -> Option<Dirs> {
        if env_moves_git() {
            return None;
        }
        let start = std::fs::canonicalize(dir).ok()?;
        let mut top = start.as_path();
        let dot_git = loop {
            let candidate = top.join(".git");
            if std::fs::symlink_metadata(&candidate).is_ok() {
                break candidate;
            }
            top = top.parent()?;
        };
        let meta = std::fs::symlink_metadata(&dot_git).ok()?;
        let (git_dir, linked_file) = if meta.is_dir() {
            (dot_git.clone(), false)
        } else if meta.is_file() {
            let target = link_in(&dot_git, "gitdir: ")?;
            (std::fs::canonicalize(top.join(target)).ok()?, true)
        } else {
            return None;
        };
        if !git_dir.join("HEAD").is_file() {
            return None;
        }
        let common = match std::fs::read_to_string(git_dir.join("commondir")) {
            Ok(text) => {
                let rel = text.trim_end_matches(['\n', '\r']);
                std::fs::canonicalize(git_dir.join(rel)).ok()?
            }
            Err(e) if e.kind() == ErrorKind::NotFound => git_dir.clone(),
            Err(_) => return None,
        };
        let config = std::fs::read_to_string(common.join("config")).unwrap_or_default();
        Some(Dirs {
            top: top.to_owned(),
            git_dir,
            common,
            linked_file,
            config,
        })
    }

    /// Whether the config says `key` (lowercase, as git compares keys) at all.
    fn config_mentions(&self, key: &str) -> bool {
        self.config.to_ascii_lowercase().contains(key)
    }

    /// Refs kept as files (not reftable), so that they can be read here.
    fn refs_are_files(&self) -> bool {
        !self.config_mentions("refstorage") && !self.common.join("reftable").exists()
    }

    /// Where a ref's loose file is: per-worktree refs in the checkout's own git dir,
    /// the rest in the common dir.
    fn loose_path(&self, refname: &str) -> PathBuf {
        let per_worktree = refname == "HEAD"
            || ["refs/bisect/", "refs/worktree/", "refs/rewritten/"]
                .iter()
                .any(|p| refname.starts_with(p));
        let base = if per_worktree {
            &self.git_dir
        } else {
            &self.common
        };
        base.join(refname)
    }
}

/// The one path a link file holds after `prefix`: a linked worktree's `.git`
/// (`gitdir: <path>`), or a repository's `worktrees/<name>/gitdir` (no prefix).
fn link_in(file: &Path, prefix: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(file).ok()?;
    let target = text.strip_prefix(prefix)?.trim_end_matches(['\n', '\r']);
    (!target.is_empty() && !target.contains('\n')).then(|| PathBuf::from(target))
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What a ref names: `Some(Some(id))`, `Some(None)` when it does not exist, `None` to
/// ask git. `HEAD` is followed to the branch it names.
pub fn resolve(dirs: &Dirs, refname: &str) -> Option<Option<String>> {
    resolve_depth(dirs, refname, 0)
}

fn resolve_depth(dirs: &Dirs, refname: &str, depth: u8) -> Option<Option<String>> {
    if depth > 4 || !dirs.refs_are_files() {
        return None;
    }
    match std::fs::read_to_string(dirs.loose_path(refname)) {
        Ok(text) => {
            let value = text.trim_end_matches('\n');
            if is_object_id(value) {
                return Some(Some(value.to_string()));
            }
            // Only `HEAD` is followed; another symbolic ref is left to git.
            let target = value.strip_prefix("ref: ").filter(|_| refname == "HEAD")?;
            if !target.starts_with("refs/") {
                return None;
            }
            resolve_depth(dirs, target, depth + 1)
        }
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::IsADirectory) => {
            packed(dirs, refname)
        }
        Err(_) => None,
    }
}

/// `refname` in `packed-refs`: `Some(None)` when the file or the line is not there.
fn packed(dirs: &Dirs, refname: &str) -> Option<Option<String>> {
    let text = match std::fs::read_to_string(dirs.common.join("packed-refs")) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Some(None),
        Err(_) => return None,
    };
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with('^') {
            continue;
        }
        let (id, name) = line.split_once(' ')?;
        if name == refname {
            return is_object_id(id).then(|| Some(id.to_string()));
        }
    }
    Some(None)
}

/// Where `HEAD` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The branch `HEAD` names (`refs/heads/` stripped), `None` when detached.
    pub branch: Option<String>,
    /// The commit, `None` on a branch without commits yet.
    pub commit: Option<String>,
}

/// The checkout's `HEAD`, or `None` to ask git.
pub fn head(dirs: &Dirs) -> Option<Head> {
    let text = std::fs::read_to_string(dirs.git_dir.join("HEAD")).ok()?;
    let value = text.trim_end_matches('\n');
    if is_object_id(value) {
        return Some(Head {
            branch: None,
            commit: Some(value.to_string()),
        });
    }
    let target = value
        .strip_prefix("ref: ")
        .filter(|t| t.starts_with("refs/"))?;
    Some(Head {
        branch: target.strip_prefix("refs/heads/").map(str::to_string),
        commit: resolve(dirs, target)?,
    })
}

/// The refs that belong to a linked worktree alone (`refs/bisect/`, `refs/worktree/`,
/// `refs/rewritten/`) as `(refname, id)`, sorted by name like `for-each-ref`; `None` to
/// ask git (the main checkout, whose such refs an old git may have packed).
pub fn worktree_refs(dirs: &Dirs) -> Option<Vec<(String, String)>> {
    if dirs.git_dir == dirs.common || !dirs.refs_are_files() {
        return None;
    }
    let mut refs = Vec::new();
    for prefix in ["refs/bisect", "refs/worktree", "refs/rewritten"] {
        collect_loose(&dirs.git_dir.join(prefix), prefix, &mut refs)?;
    }
    refs.sort();
    Some(refs)
}

fn collect_loose(dir: &Path, name: &str, into: &mut Vec<(String, String)>) -> Option<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Some(()),
        Err(_) => return None,
    };
    for entry in entries {
        let entry = entry.ok()?;
        let file_name = entry.file_name().into_string().ok()?;
        let child = format!("{name}/{file_name}");
        let kind = entry.file_type().ok()?;
        if kind.is_dir() {
            collect_loose(&entry.path(), &child, into)?;
        } else if kind.is_file() {
            let text = std::fs::read_to_string(entry.path()).ok()?;
            let value = text.trim_end_matches('\n');
            // A lock file, a symbolic ref or anything odd: git knows what it means.
            if !is_object_id(value) || !is_valid_refname(&child) {
                return None;
            }
            into.push((child, value.to_string()));
        } else {
            return None;
        }
    }
    Some(())
}

/// Whether any entry of the checkout's index is marked assume-unchanged or
/// skip-worktree (edits git status does not show); `None` to ask git.
pub fn index_has_hidden_flags(dirs: &Dirs) -> Option<bool> {
    let bytes = match std::fs::read(dirs.git_dir.join("index")) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    let sha256 = dirs.config_mentions("objectformat") && dirs.config_mentions("sha256");
    let hash_len = if sha256 { 32 } else { 20 };
    index_flags_in(&bytes, hash_len)
}

/// The parse behind [`index_has_hidden_flags`] (git's `Documentation/gitformat-index`).
fn index_flags_in(bytes: &[u8], hash_len: usize) -> Option<bool> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    };
    if bytes.get(0..4)? != b"DIRC" {
        return None;
    }
    let version = u32_at(4)?;
    if !(2..=4).contains(&version) {
        return None;
    }
    let count = u32_at(8)?;
    let end = bytes.len().checked_sub(hash_len)?;
    let mut at = 12;
    let mut flagged = false;
    for _ in 0..count {
        let fixed = at + 40 + hash_len;
        let flags = u16_at(fixed)?;
        let extended = flags & 0x4000 != 0;
        if extended && version < 3 {
            return None;
        }
        let mut name_at = fixed + 2;
        if flags & 0x8000 != 0 {
            flagged = true;
        }
        if extended {
            if u16_at(name_at)? & 0x4000 != 0 {
                flagged = true;
            }
            name_at += 2;
        }
        if version == 4 {
            // A varint (how much of the previous name to drop), then the rest, NUL-ended.
            let mut i = name_at;
            while *bytes.get(i)? & 0x80 != 0 {
                i += 1;
            }
            let nul = bytes.get(i + 1..end)?.iter().position(|&b| b == 0)?;
            at = i + 1 + nul + 1;
        } else {
            let len = match usize::from(flags & 0x0fff) {
                0x0fff => bytes.get(name_at..end)?.iter().position(|&b| b == 0)?,
                len => len,
            };
            at += (name_at - at + len + 8) & !7;
        }
        if at > end {
            return None;
        }
    }
    // Extensions: a split index keeps entries in another file; read those with git.
    while at < end {
        let signature = bytes.get(at..at + 4)?;
        if signature == b"link" {
            return None;
        }
        let size = usize::try_from(u32_at(at + 4)?).ok()?;
        at = at.checked_add(8 + size)?;
    }
    (at == end).then_some(flagged)
}

/// Whether `path` is a linked worktree of the repository whose main checkout is
/// `main`, read both ways (its `.git` file names a git dir under `main`'s
/// `worktrees/`, whose `gitdir` names it back): `Some(true)`, or `None` to ask git.
pub fn is_linked_worktree_of(path: &Path, main: &Path) -> Option<bool> {
    if env_moves_git() {
        return None;
    }
    let dot_git = path.join(".git");
    if !std::fs::symlink_metadata(&dot_git).ok()?.is_file() {
        return None;
    }
    let git_dir = std::fs::canonicalize(path.join(link_in(&dot_git, "gitdir: ")?)).ok()?;
    let worktrees = std::fs::canonicalize(main.join(".git/worktrees")).ok()?;
    if git_dir.parent()? != worktrees {
        return None;
    }
    let back = link_in(&git_dir.join("gitdir"), "")?;
    let back = std::fs::canonicalize(git_dir.join(back)).ok()?;
    (back == std::fs::canonicalize(&dot_git).ok()?).then_some(true)
}

/// Whether `name` is acceptable as a branch name: git's `check-ref-format --branch`
/// rules, and refused where that command would expand it (`@`, `@{-1}`) or where
/// `git branch` refuses it (a leading `-`, `HEAD`).
pub fn is_valid_branch_name(name: &str) -> bool {
    !name.starts_with('-')
        && name != "HEAD"
        && name != "@"
        && is_valid_refname(&format!("refs/heads/{name}"))
}

/// git's `check_refname_format` with no flags.
pub fn is_valid_refname(refname: &str) -> bool {
    if refname.is_empty() || refname == "@" || refname.ends_with('.') {
        return false;
    }
    if refname.contains("..") || refname.contains("@{") {
        return false;
    }
    if refname.bytes().any(|b| {
        b < 0x20 || b == 0x7f || matches!(b, b' ' | b'~' | b'^' | b':' | b'?' | b'*' | b'[' | b'\\')
    }) {
        return false;
    }
    refname
        .split('/')
        .all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Cmd;

    fn sh(dir: &Path, script: &str) -> String {
        let out = Cmd::new("sh")
            .args(["-c", script])
            .cwd(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "T")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "T")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .unwrap();
        assert!(out.success(), "{script}: {}", out.stderr);
        out.stdout
    }

    /// What git says a ref names (`None`: no such ref).
    fn git_says(dir: &Path, refname: &str) -> Option<String> {
        let out = sh(
            dir,
            &format!("git rev-parse --verify --quiet '{refname}' || true"),
        );
        let out = out.trim();
        (!out.is_empty()).then(|| out.to_string())
    }

    fn repo() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        sh(
            &root,
            "git init -q -b main repo && cd repo && echo a > a && git add a && git commit -qm one \
             && git branch packed && git tag v1 && git pack-refs --all \
             && echo b > b && git add b && git commit -qm two && git branch loose \
             && git worktree add -q ../wt -b feat && git worktree add -q --detach ../det",
        );
        (tmp, root)
    }

    #[test]
    fn refs_and_head_read_from_files_are_what_git_says() {
        let (_tmp, root) = repo();
        let main = root.join("repo");
        let dirs = Dirs::discover(&main).unwrap();
        for name in [
            "refs/heads/main",
            "refs/heads/packed",
            "refs/heads/loose",
            "refs/heads/feat",
            "refs/heads/missing",
            "refs/tags/v1",
            "refs/remotes/origin/main",
            "HEAD",
        ] {
            assert_eq!(resolve(&dirs, name), Some(git_says(&main, name)), "{name}");
        }
        // A branch both packed and loose: the loose file wins, as in git.
        sh(
            &main,
            "git pack-refs --all && git update-ref refs/heads/packed HEAD",
        );
        assert_eq!(
            resolve(&dirs, "refs/heads/packed"),
            Some(git_says(&main, "refs/heads/packed"))
        );
        for (dir, branch) in [
            (main.clone(), Some("main")),
            (root.join("wt"), Some("feat")),
            (root.join("det"), None),
        ] {
            let dirs = Dirs::discover(&dir).unwrap();
            let head = head(&dirs).unwrap();
            assert_eq!(head.commit, git_says(&dir, "HEAD"), "{}", dir.display());
            assert_eq!(head.branch.as_deref(), branch, "{}", dir.display());
        }
        // A branch without commits yet.
        sh(&root.join("wt"), "git checkout -q --orphan fresh");
        let head = head(&Dirs::discover(&root.join("wt")).unwrap()).unwrap();
        assert_eq!((head.branch.as_deref(), head.commit), (Some("fresh"), None));
        // Another symbolic ref, or reftable: git answers.
        sh(&main, "git symbolic-ref refs/heads/alias refs/heads/main");
        assert_eq!(resolve(&dirs, "refs/heads/alias"), None);
        std::fs::create_dir(dirs.common.join("reftable")).unwrap();
        assert_eq!(resolve(&dirs, "refs/heads/main"), None);
    }

    #[test]
    fn worktree_refs_are_what_for_each_ref_says() {
        let (_tmp, root) = repo();
        let wt = root.join("wt");
        let dirs = Dirs::discover(&wt).unwrap();
        assert_eq!(worktree_refs(&dirs), Some(vec![]));
        sh(
            &wt,
            "git update-ref refs/worktree/keep HEAD && git update-ref refs/bisect/bad HEAD~1 \
             && git update-ref refs/worktree/a/b HEAD~1",
        );
        let git: Vec<(String, String)> = sh(
            &wt,
            "git for-each-ref --format='%(refname) %(objectname)' refs/bisect/ refs/worktree/ refs/rewritten/",
        )
        .lines()
        .map(|l| {
            let (n, i) = l.split_once(' ').unwrap();
            (n.to_string(), i.to_string())
        })
        .collect();
        assert_eq!(git.len(), 3);
        assert_eq!(worktree_refs(&dirs), Some(git));
        // The main checkout's are left to git.
        assert_eq!(
            worktree_refs(&Dirs::discover(&root.join("repo")).unwrap()),
            None
        );
    }

    #[test]
    fn index_flags_match_ls_files_in_every_index_version() {
        let (_tmp, root) = repo();
        let wt = root.join("wt");
        let dirs = Dirs::discover(&wt).unwrap();
        // A name of 0xfff bytes or more is stored NUL-ended (only the index needs it).
        let long = "d".repeat(250).repeat(17);
        let long = long
            .as_bytes()
            .chunks(250)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("/");
        sh(
            &wt,
            &format!("git update-index --add --cacheinfo 100644,$(git rev-parse HEAD:a),{long}"),
        );
        for version in [2, 3, 4] {
            sh(&wt, &format!("git update-index --index-version {version}"));
            assert_eq!(index_has_hidden_flags(&dirs), Some(false), "v{version}");
            // skip-worktree needs the extended flags (version 3 and up).
            for (flag, file) in [("assume-unchanged", "a"), ("skip-worktree", "b")] {
                sh(&wt, &format!("git update-index --{flag} {file}"));
                assert_eq!(
                    index_has_hidden_flags(&dirs),
                    Some(true),
                    "v{version} {flag}"
                );
                sh(&wt, &format!("git update-index --no-{flag} {file}"));
                assert_eq!(
                    index_has_hidden_flags(&dirs),
                    Some(false),
                    "v{version} no {flag}"
                );
            }
        }
        // A split index keeps entries elsewhere: git answers.
        sh(&wt, "git update-index --split-index");
        assert_eq!(index_has_hidden_flags(&dirs), None);
        // A truncated or foreign file: git answers.
        sh(&wt, "git update-index --no-split-index");
        let index = dirs.git_dir.join("index");
        let bytes = std::fs::read(&index).unwrap();
        assert_eq!(index_flags_in(&bytes[..bytes.len() / 2], 20), None);
        assert_eq!(index_flags_in(b"not an index at all, no", 20), None);
    }

    #[test]
    fn linked_worktree_read_both_ways() {
        let (_tmp, root) = repo();
        let main = root.join("repo");
        assert_eq!(is_linked_worktree_of(&root.join("wt"), &main), Some(true));
        assert_eq!(is_linked_worktree_of(&root.join("det"), &main), Some(true));
        // The main checkout, a plain directory, another repository's worktree: git answers.
        assert_eq!(is_linked_worktree_of(&main, &main), None);
        sh(
            &root,
            "mkdir plain && git init -q other && cd other && git commit -q --allow-empty -m o && git worktree add -q ../owt",
        );
        assert_eq!(is_linked_worktree_of(&root.join("plain"), &main), None);
        assert_eq!(is_linked_worktree_of(&root.join("owt"), &main), None);
        // A `.git` file copied into another directory names a git dir that names back
        // to the original: not this one.
        sh(&root, "mkdir fake && cp wt/.git fake/.git");
        assert_eq!(is_linked_worktree_of(&root.join("fake"), &main), None);
    }

    #[test]
    fn branch_names_are_judged_as_git_judges_them() {
        let (_tmp, root) = repo();
        let main = root.join("repo");
        for name in [
            "feat",
            "feat/x",
            "a.b",
            "x-1",
            "日本",
            "a@b",
            "-x",
            "HEAD",
            "@",
            "a..b",
            ".a",
            "a/.b",
            "a.lock",
            "a/b.lock/c",
            "a/",
            "/a",
            "a//b",
            "a.",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            "a@{1}",
            "a\x7f",
            "a\tb",
            "refs/heads/x",
            "x.lock.y",
            "@x",
        ] {
            let git = Cmd::new("git")
                .args(["check-ref-format", "--branch", name])
                .cwd(&main)
                .output()
                .unwrap()
                .success();
            // `@` alone expands to the current branch in git; kinfra refuses it.
            let expect = git && name != "@";
            assert_eq!(is_valid_branch_name(name), expect, "{name:?}");
        }
    }
}
