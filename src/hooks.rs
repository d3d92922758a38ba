//! Lifecycle hooks (`[hooks]` in kinfra.toml) and the user's approvals of them.
//!
//! A hook is a shell command (`sh -c`) a repository's config asks kinfra to run in an
//! instance's directory at one point of its life. A repository is untrusted input, so a
//! hook runs only once the user approved that exact command for that repository: the
//! approvals live in one per-user file whose place only the user's environment decides
//! (`$XDG_CONFIG_HOME/kinfra/approved-hooks.toml`, else
//! `~/.config/kinfra/approved-hooks.toml`), never a path any config names. An approval
//! is keyed by the repository (main repository path and origin URL), the stage and the
//! SHA-256 of the command, so a changed command needs approval again.
//!
//! A failing or timed-out `pre_*` hook stops the command before it changes anything; a
//! failing `post_*` hook is a warning (what it follows already happened).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::HooksLayer;
use crate::error::{Diagnostic, Exit};
use crate::process::{Cmd, ProcessError};
use crate::report::Reporter;

/// Seconds a hook command may run unless `[hooks] timeout` says otherwise.
pub const DEFAULT_TIMEOUT: u64 = 300;

/// The approvals file's format version.
pub const APPROVALS_VERSION: u64 = 1;

/// Where in an instance's life a hook runs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// After `create` made the instance (its directory and env file exist).
    PostCreate,
    /// Before `up` starts anything.
    PreUp,
    /// After `up` started the stack (and its gate passed, unless `--no-wait`).
    PostUp,
    /// Before `down` stops anything.
    PreDown,
    /// Before `destroy` stops or removes anything.
    PreDestroy,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::PostCreate,
        Stage::PreUp,
        Stage::PostUp,
        Stage::PreDown,
        Stage::PreDestroy,
    ];

    /// The key in `[hooks]`.
    pub fn key(self) -> &'static str {
        match self {
            Stage::PostCreate => "post_create",
            Stage::PreUp => "pre_up",
            Stage::PostUp => "post_up",
            Stage::PreDown => "pre_down",
            Stage::PreDestroy => "pre_destroy",
        }
    }

    /// A `pre_*` hook guards the command: its failure stops it.
    pub fn is_pre(self) -> bool {
        matches!(self, Stage::PreUp | Stage::PreDown | Stage::PreDestroy)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// The hooks of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    pub commands: BTreeMap<Stage, Vec<String>>,
    pub timeout: Duration,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            commands: BTreeMap::new(),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT),
        }
    }
}

impl Hooks {
    /// Resolve `[hooks]`; the message says what is wrong.
    pub fn from_layer(layer: HooksLayer) -> Result<Hooks, String> {
        let timeout = layer.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if !(1..=86_400).contains(&timeout) {
            return Err(format!(
                "`hooks.timeout` is {timeout}, outside 1..=86400 seconds"
            ));
        }
        let mut commands = BTreeMap::new();
        let stages = [
            (Stage::PostCreate, layer.post_create),
            (Stage::PreUp, layer.pre_up),
            (Stage::PostUp, layer.post_up),
            (Stage::PreDown, layer.pre_down),
            (Stage::PreDestroy, layer.pre_destroy),
        ];
        for (stage, list) in stages {
            let list = list.unwrap_or_default();
            for c in &list {
                if c.trim().is_empty() {
                    return Err(format!("`hooks.{stage}` has an empty command"));
                }
                if c.contains('\0') {
                    return Err(format!("`hooks.{stage}` has a command with a NUL byte"));
                }
            }
            if !list.is_empty() {
                commands.insert(stage, list);
            }
        }
        Ok(Hooks {
            commands,
            timeout: Duration::from_secs(timeout),
        })
    }

    /// The commands of `stage` (empty when it has none).
    pub fn of(&self, stage: Stage) -> &[String] {
        self.commands.get(&stage).map_or(&[], Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Every (stage, command), in stage order.
    pub fn all(&self) -> impl Iterator<Item = (Stage, &str)> {
        self.commands
            .iter()
            .flat_map(|(s, cs)| cs.iter().map(move |c| (*s, c.as_str())))
    }
}

/// `sha256:<hex>` of a command's text.
pub fn digest(command: &str) -> String {
    let hash = Sha256::digest(command.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{stage} hook `{command}` failed ({status})")]
    Failed {
        stage: Stage,
        command: String,
        status: String,
    },
    #[error("{stage} hook `{command}` did not finish within {}s and was stopped", .timeout.as_secs())]
    TimedOut {
        stage: Stage,
        command: String,
        timeout: Duration,
    },
    #[error("{stage} hook `{command}` could not run: {reason}")]
    Spawn {
        stage: Stage,
        command: String,
        reason: String,
    },
    #[error("{stage} hook `{command}` was stopped because kinfra was interrupted")]
    Interrupted { stage: Stage, command: String },
    #[error(
        "neither `XDG_CONFIG_HOME` nor `HOME` is an absolute path, so kinfra cannot tell where hook approvals are kept"
    )]
    NoHome,
    #[error("cannot read the hook approvals `{}`: {reason}", .path.display())]
    Read { path: PathBuf, reason: String },
    #[error("the hook approvals `{}` are corrupt: {problem}", .path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("the hook approvals `{}` were written by a newer kinfra (version {version})", .path.display())]
    Newer { path: PathBuf, version: u64 },
    #[error("cannot write the hook approvals `{}`: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("hooks of `{}` cannot be approved: it is not inside a git repository", .0.display())]
    NoRepo(PathBuf),
}

impl Diagnostic for HookError {
    fn exit(&self) -> Exit {
        match self {
            // A guard that said no (or could not say yes) stops the command.
            HookError::Failed { .. } | HookError::TimedOut { .. } | HookError::Spawn { .. } => {
                Exit::Refused
            }
            HookError::Interrupted { .. } => Exit::Interrupted,
            HookError::NoHome | HookError::NoRepo(_) => Exit::Usage,
            HookError::Newer { .. } => Exit::Refused,
            HookError::Lock(e) => e.exit(),
            _ => Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            HookError::Failed { .. } | HookError::Spawn { .. } => Some(
                "nothing was changed; fix the hook (its output is above), or run once without hooks: --no-hooks".into(),
            ),
            HookError::TimedOut { .. } => Some(
                "nothing was changed; raise `[hooks] timeout` in kinfra.toml, or run once without hooks: --no-hooks"
                    .into(),
            ),
            HookError::NoHome => Some("set `HOME` to your home directory".into()),
            HookError::Corrupt { path, .. } => Some(format!(
                "fix `{}` by hand or move it aside (every hook then needs approval again)",
                path.display()
            )),
            HookError::Newer { .. } => Some("upgrade kinfra".into()),
            HookError::Lock(e) => e.hint(),
            HookError::NoRepo(_) => Some("run this in a checkout of the project".into()),
            _ => None,
        }
    }
}

/// The repository hooks are approved for: its main repository and its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RepoKey {
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl RepoKey {
    /// The key of the checkout `repo` (a worktree counts as its main repository).
    pub fn of(repo: &crate::git::RepoInfo) -> RepoKey {
        RepoKey {
            path: crate::registry::canonical(&repo.main_root),
            origin: crate::git::origin_url(&repo.main_root).ok().flatten(),
        }
    }
}

/// One approved command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub stage: Stage,
    pub sha256: String,
    /// The command as approved (for the user reading the file).
    pub command: String,
    pub approved_at: String,
}

/// The approvals of one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoApprovals {
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default)]
    pub hooks: Vec<Approval>,
}

/// The whole approvals file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approvals {
    pub version: u64,
    #[serde(default)]
    pub repositories: Vec<RepoApprovals>,
}

impl Default for Approvals {
    fn default() -> Self {
        Approvals {
            version: APPROVALS_VERSION,
            repositories: Vec::new(),
        }
    }
}

impl Approvals {
    fn repo(&self, key: &RepoKey) -> Option<&RepoApprovals> {
        self.repositories
            .iter()
            .find(|r| r.path == key.path && r.origin == key.origin)
    }

    /// Whether `command` is approved for `stage` in the repository `key`.
    pub fn is_approved(&self, key: &RepoKey, stage: Stage, command: &str) -> bool {
        let sha = digest(command);
        self.repo(key)
            .is_some_and(|r| r.hooks.iter().any(|a| a.stage == stage && a.sha256 == sha))
    }

    /// Approve these commands (already approved ones stay as they are).
    pub fn approve<'a>(
        &mut self,
        key: &RepoKey,
        commands: impl IntoIterator<Item = (Stage, &'a str)>,
    ) {
        let at = crate::timefmt::now_iso();
        let idx = match self
            .repositories
            .iter()
            .position(|r| r.path == key.path && r.origin == key.origin)
        {
            Some(i) => i,
            None => {
                self.repositories.push(RepoApprovals {
                    path: key.path.clone(),
                    origin: key.origin.clone(),
                    hooks: Vec::new(),
                });
                self.repositories.len() - 1
            }
        };
        for (stage, command) in commands {
            let sha = digest(command);
            let repo = &mut self.repositories[idx];
            if !repo
                .hooks
                .iter()
                .any(|a| a.stage == stage && a.sha256 == sha)
            {
                repo.hooks.push(Approval {
                    stage,
                    sha256: sha,
                    command: command.to_string(),
                    approved_at: at.clone(),
                });
            }
        }
    }

    /// Forget every approval of the repository `key`; how many there were.
    pub fn revoke(&mut self, key: &RepoKey) -> usize {
        let mut n = 0;
        self.repositories.retain(|r| {
            let mine = r.path == key.path && r.origin == key.origin;
            if mine {
                n += r.hooks.len();
            }
            !mine
        });
        n
    }

    fn parse(path: &Path, text: &str) -> Result<Approvals, HookError> {
        #[derive(Deserialize)]
        struct Head {
            version: Option<u64>,
        }
        let corrupt = |e: toml::de::Error| HookError::Corrupt {
            path: path.to_owned(),
            problem: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
        };
        let head: Head = toml::from_str(text).map_err(corrupt)?;
        match head.version {
            Some(v) if v > APPROVALS_VERSION => Err(HookError::Newer {
                path: path.to_owned(),
                version: v,
            }),
            _ => toml::from_str(text).map_err(corrupt),
        }
    }
}

/// `$XDG_CONFIG_HOME/kinfra/approved-hooks.toml` when that is absolute, else
/// `$HOME/.config/kinfra/approved-hooks.toml`. Only the environment decides: no
/// configuration can move it.
pub fn approvals_path() -> Result<PathBuf, HookError> {
    approvals_path_from(
        std::env::var_os("HOME").as_deref(),
        std::env::var_os("XDG_CONFIG_HOME").as_deref(),
    )
}

/// [`approvals_path`] from the two variables' values.
pub fn approvals_path_from(
    home: Option<&OsStr>,
    xdg: Option<&OsStr>,
) -> Result<PathBuf, HookError> {
    if let Some(xdg) = xdg.map(Path::new).filter(|p| p.is_absolute()) {
        return Ok(xdg.join("kinfra/approved-hooks.toml"));
    }
    match home.map(Path::new) {
        Some(h) if h.is_absolute() => Ok(h.join(".config/kinfra/approved-hooks.toml")),
        _ => Err(HookError::NoHome),
    }
}

/// Whether `dir` (where a config has kinfra write) is the approvals file's directory
/// or inside it: a repository's config must not be able to write there.
pub fn inside_approvals_dir(dir: &Path) -> bool {
    let Some(approvals) = approvals_path().ok().and_then(|p| p.parent().map(resolved)) else {
        return false;
    };
    resolved(dir).starts_with(approvals)
}

/// `path` with `.` and `..` taken out and the symlinks of its longest existing ancestor
/// followed (what a write under it would reach).
fn resolved(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut lexical = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            c => lexical.push(c),
        }
    }
    let mut rest = Vec::new();
    let mut base = lexical.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(base) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                base = parent;
            }
            _ => return lexical,
        }
    }
}

/// Read the approvals; a missing file approves nothing.
pub fn load_approvals(path: &Path) -> Result<Approvals, HookError> {
    let bytes = crate::fsutil::read_regular(path, 4 << 20).map_err(|e| HookError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    match bytes {
        None => Ok(Approvals::default()),
        Some(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| HookError::Corrupt {
                path: path.to_owned(),
                problem: "not UTF-8 text".into(),
            })?;
            Approvals::parse(path, &text)
        }
    }
}

/// Change the approvals under their lock and write them atomically.
pub fn update_approvals<T>(
    path: &Path,
    reporter: &dyn Reporter,
    change: impl FnOnce(&mut Approvals) -> T,
) -> Result<T, HookError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let _guard = crate::lock::exclusive(
        Path::new(&lock_path),
        crate::lock::timeout_from_env(),
        reporter,
    )?;
    let mut approvals = load_approvals(path)?;
    let out = change(&mut approvals);
    let write_err = |source| HookError::Write {
        path: path.to_owned(),
        source,
    };
    let text = toml::to_string_pretty(&approvals)
        .map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
    let text = format!(
        "# Hook commands you approved, per repository (`kinfra hooks list` shows them).\n{text}"
    );
    crate::fsutil::write_atomically(path, text.as_bytes()).map_err(write_err)?;
    Ok(out)
}

/// Where and for which instance a hook runs.
#[derive(Debug, Clone)]
pub struct Site {
    pub id: String,
    pub kind: crate::instance::Kind,
    pub slot: u32,
    pub dir: PathBuf,
    /// The instance's env file.
    pub env: BTreeMap<String, String>,
}

impl Site {
    /// The environment of a hook: the env file's variables, then kinfra's own.
    fn env(&self, stage: Stage) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("KINFRA_INSTANCE".into(), self.id.clone()));
        env.push(("KINFRA_SLOT".into(), self.slot.to_string()));
        env.push(("KINFRA_KIND".into(), self.kind.label().into()));
        env.push(("KINFRA_HOOK".into(), stage.key().into()));
        env.push(("KINFRA_INSTANCE_DIR".into(), self.dir.display().to_string()));
        env
    }
}

/// What the user said to hooks that are not approved yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    No,
    /// Run them this time.
    Once,
    /// Approve them and run them.
    Always,
}

/// Asks the user about a stage's unapproved commands (which would run in the directory).
pub type Ask = dyn Fn(Stage, &Path, &[&str]) -> Answer;

/// How a command treats hooks.
#[derive(Clone, Copy)]
pub struct Policy<'a> {
    /// `--no-hooks`.
    pub skip: bool,
    /// Asks about unapproved commands; `None` when nobody can answer (they are skipped).
    pub ask: Option<&'a Ask>,
}

impl Policy<'_> {
    /// Hooks off (`--no-hooks`).
    pub const OFF: Policy<'static> = Policy {
        skip: true,
        ask: None,
    };
}

/// What happened to a stage's hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The stage has no hooks.
    None,
    Ran(usize),
    /// `--no-hooks`.
    SkippedByFlag,
    /// Not approved (and not confirmed).
    SkippedUnapproved(Vec<String>),
    /// A `post_*` hook failed (a warning said so).
    PostFailed,
}

/// Run the hooks of `stage` for `site`, if approved. A stage's commands are one set:
/// if any of them is not approved and the user does not confirm, none runs (with a
/// warning). The commands run one after another; the first failure ends the set.
/// A `pre_*` failure is an error; a `post_*` failure is a warning (`Ok`), except an
/// interruption, which always ends the command.
pub fn run(
    hooks: &Hooks,
    repo: Option<&RepoKey>,
    stage: Stage,
    site: &Site,
    policy: Policy<'_>,
    reporter: &dyn Reporter,
) -> Result<Outcome, HookError> {
    let commands = hooks.of(stage);
    if commands.is_empty() {
        return Ok(Outcome::None);
    }
    if policy.skip {
        reporter.note(&format!(
            "skipping {} {stage} hook(s) (--no-hooks)",
            commands.len()
        ));
        return Ok(Outcome::SkippedByFlag);
    }
    let result = approve_and_run(hooks, repo, stage, site, policy, reporter);
    match result {
        Err(e) if !stage.is_pre() && !matches!(e, HookError::Interrupted { .. }) => {
            reporter.warn(&format!("{e}"));
            Ok(Outcome::PostFailed)
        }
        other => other,
    }
}

fn approve_and_run(
    hooks: &Hooks,
    repo: Option<&RepoKey>,
    stage: Stage,
    site: &Site,
    policy: Policy<'_>,
    reporter: &dyn Reporter,
) -> Result<Outcome, HookError> {
    let commands = hooks.of(stage);
    let path = approvals_path()?;
    let approvals = load_approvals(&path)?;
    let unapproved: Vec<&str> = commands
        .iter()
        .map(String::as_str)
        .filter(|c| repo.is_none_or(|k| !approvals.is_approved(k, stage, c)))
        .collect();
    if !unapproved.is_empty() {
        let answer = match policy.ask {
            Some(ask) => ask(stage, &site.dir, &unapproved),
            None => Answer::No,
        };
        match (answer, repo) {
            (Answer::No, _) => {
                reporter.warn(&format!(
                    "skipping the {stage} hooks of `{}`: not approved: {}",
                    site.id,
                    unapproved
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                reporter.note(
                    "  review and approve them with `kinfra hooks approve` (in the repository)",
                );
                return Ok(Outcome::SkippedUnapproved(
                    unapproved.into_iter().map(str::to_string).collect(),
                ));
            }
            (Answer::Always, Some(key)) => {
                update_approvals(&path, reporter, |a| {
                    a.approve(key, unapproved.iter().map(|c| (stage, *c)));
                })?;
                reporter.done(&format!("approved {} {stage} hook(s)", unapproved.len()));
            }
            _ => {}
        }
    }
    for command in commands {
        run_one(hooks.timeout, stage, command, site, reporter)?;
    }
    Ok(Outcome::Ran(commands.len()))
}

/// `sh -c COMMAND` in the instance's directory with its environment, output through
/// the reporter, bounded by `timeout` (the whole process group is stopped).
fn run_one(
    timeout: Duration,
    stage: Stage,
    command: &str,
    site: &Site,
    reporter: &dyn Reporter,
) -> Result<(), HookError> {
    reporter.note(&format!("{stage} hook: {command}"));
    let mut cmd = Cmd::new("sh")
        .arg("-c")
        .arg(command)
        .cwd(&site.dir)
        .timeout(timeout);
    for (k, v) in site.env(stage) {
        cmd = cmd.env(k, v);
    }
    let status = cmd
        .output_lines(&|line| reporter.note(&format!("  {line}")))
        .map_err(|e| match e {
            ProcessError::TimedOut { timeout, .. } => HookError::TimedOut {
                stage,
                command: command.to_string(),
                timeout,
            },
            ProcessError::Interrupted { .. } => HookError::Interrupted {
                stage,
                command: command.to_string(),
            },
            e => HookError::Spawn {
                stage,
                command: command.to_string(),
                reason: e.to_string(),
            },
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(HookError::Failed {
            stage,
            command: command.to_string(),
            status: crate::process::describe_status(status),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RepoKey {
        RepoKey {
            path: "/dev/app".into(),
            origin: Some("git@example.com:app.git".into()),
        }
    }

    #[test]
    fn an_approval_holds_for_that_command_stage_and_repository_only() {
        let mut a = Approvals::default();
        a.approve(&key(), [(Stage::PreUp, "make deps")]);
        assert!(a.is_approved(&key(), Stage::PreUp, "make deps"));
        assert!(!a.is_approved(&key(), Stage::PreUp, "make deps "));
        assert!(!a.is_approved(&key(), Stage::PostUp, "make deps"));
        let other_origin = RepoKey {
            origin: Some("git@evil.example:app.git".into()),
            ..key()
        };
        assert!(!a.is_approved(&other_origin, Stage::PreUp, "make deps"));
        assert_eq!(a.revoke(&key()), 1);
        assert!(!a.is_approved(&key(), Stage::PreUp, "make deps"));
    }

    #[test]
    fn approvals_survive_a_round_trip_and_approving_twice_adds_nothing() {
        let mut a = Approvals::default();
        a.approve(&key(), [(Stage::PostCreate, "echo \"hi\"\nls")]);
        a.approve(&key(), [(Stage::PostCreate, "echo \"hi\"\nls")]);
        let text = toml::to_string_pretty(&a).unwrap();
        let back = Approvals::parse(Path::new("x"), &text).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.repositories[0].hooks.len(), 1);
    }

    #[test]
    fn a_newer_or_corrupt_file_is_an_error_never_empty() {
        let newer = Approvals::parse(Path::new("x"), "version = 9\n");
        assert!(matches!(newer, Err(HookError::Newer { .. })));
        let bad = Approvals::parse(Path::new("x"), "version = \"one\"\n");
        assert!(matches!(bad, Err(HookError::Corrupt { .. })));
    }

    #[test]
    fn the_approvals_path_comes_from_the_environment_only() {
        let p = approvals_path_from(Some(OsStr::new("/home/u")), None).unwrap();
        assert_eq!(p, Path::new("/home/u/.config/kinfra/approved-hooks.toml"));
        let p = approvals_path_from(Some(OsStr::new("/home/u")), Some(OsStr::new("/x"))).unwrap();
        assert_eq!(p, Path::new("/x/kinfra/approved-hooks.toml"));
        // A relative XDG_CONFIG_HOME is ignored, as the XDG spec says.
        let p = approvals_path_from(Some(OsStr::new("/home/u")), Some(OsStr::new("rel"))).unwrap();
        assert_eq!(p, Path::new("/home/u/.config/kinfra/approved-hooks.toml"));
        assert!(approvals_path_from(Some(OsStr::new("rel")), None).is_err());
        assert!(approvals_path_from(None, None).is_err());
    }

    #[test]
    fn hooks_resolve_and_refuse_bad_values() {
        let layer = HooksLayer {
            pre_up: Some(vec!["true".into()]),
            ..HooksLayer::default()
        };
        let h = Hooks::from_layer(layer).unwrap();
        assert_eq!(h.of(Stage::PreUp), ["true".to_string()]);
        assert!(h.of(Stage::PostUp).is_empty());
        assert_eq!(h.timeout, Duration::from_secs(DEFAULT_TIMEOUT));
        let empty = HooksLayer {
            post_up: Some(vec!["  ".into()]),
            ..HooksLayer::default()
        };
        assert!(Hooks::from_layer(empty).is_err());
        let zero = HooksLayer {
            timeout: Some(0),
            ..HooksLayer::default()
        };
        assert!(Hooks::from_layer(zero).is_err());
    }

    #[test]
    fn the_readme_example_is_valid() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("```toml\n[hooks]")
            .expect("README has the example")
            + 8;
        let len = readme[start..].find("```").expect("closed");
        let layer =
            crate::config::parse_layer(Path::new("README"), &readme[start..start + len]).unwrap();
        let hooks = Hooks::from_layer(layer.hooks.unwrap()).unwrap();
        assert_eq!(hooks.all().count(), 6);
    }

    #[test]
    fn resolved_paths_follow_dot_dots_and_symlinks() {
        assert_eq!(
            resolved(Path::new("/nonexistent-kinfra/a/../b/./c")),
            Path::new("/nonexistent-kinfra/b/c")
        );
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("link")).unwrap();
        assert_eq!(
            resolved(&dir.path().join("link/new/deeper")),
            std::fs::canonicalize(&target).unwrap().join("new/deeper")
        );
    }

    #[test]
    fn digest_is_sha256_of_the_text() {
        assert_eq!(
            digest("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn site(dir: &Path) -> Site {
        Site {
            id: "app--x".into(),
            kind: crate::instance::Kind::Sandbox,
            slot: 3,
            dir: dir.to_owned(),
            env: BTreeMap::from([("API_PORT".to_string(), "8003".to_string())]),
        }
    }

    #[test]
    fn a_hook_runs_in_the_instance_directory_with_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let rep = crate::report::Capture::default();
        run_one(
            Duration::from_secs(10),
            Stage::PostCreate,
            "echo \"$KINFRA_INSTANCE $KINFRA_SLOT $API_PORT $KINFRA_HOOK\" > out; pwd; echo err >&2",
            &site(dir.path()),
            &rep,
        )
        .unwrap();
        let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
        assert_eq!(out, "app--x 3 8003 post_create\n");
        let lines = rep.lines();
        assert!(lines.iter().any(|l| l == "note:   err"), "{lines:?}");
    }

    #[test]
    fn a_slow_hook_is_stopped_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let rep = crate::report::Silent;
        let started = std::time::Instant::now();
        let e = run_one(
            Duration::from_millis(300),
            Stage::PreUp,
            "sleep 30 & sleep 30; echo late > late",
            &site(dir.path()),
            &rep,
        )
        .unwrap_err();
        assert!(matches!(e, HookError::TimedOut { .. }), "{e}");
        assert_eq!(e.exit(), Exit::Refused);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!dir.path().join("late").exists());
    }

    #[test]
    fn a_failing_hook_says_which_and_how() {
        let dir = tempfile::tempdir().unwrap();
        let e = run_one(
            Duration::from_secs(10),
            Stage::PreDown,
            "exit 3",
            &site(dir.path()),
            &crate::report::Silent,
        )
        .unwrap_err();
        assert!(e.to_string().contains("exit code 3"), "{e}");
        assert!(e.to_string().contains("pre_down"), "{e}");
    }
}
