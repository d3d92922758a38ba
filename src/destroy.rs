//! Destroying an instance, safely (SPEC section 6): containers stop before any file is
//! touched; only a registered linked worktree is ever deleted, and only through
//! `git worktree remove` from its main repository; uncommitted work is refused, or with
//! `--force` kept as a rescue commit first; every step can be re-run after a crash.

use std::path::{Path, PathBuf};

use crate::compose::{self, Project};
use crate::config::Config;
use crate::docker::{self, ProjectResources};
use crate::envfile::EnvFile;
use crate::error::{Diagnostic, Exit, Result};
use crate::git;
use crate::instance::Kind;
use crate::registry::{self, Entry, canonical};
use crate::report::Reporter;
use crate::rescue::{self, KinfraFile, RescueRecord, UnsavedWork, WorkOptions};

#[derive(Debug, thiserror::Error)]
pub enum DestroyError {
    #[error(
        "the registry entry of `{0}` is a worktree without `parent_repo`; refusing to delete it"
    )]
    NoParentRepo(String),
    #[error("refusing to delete `{}`: {why}", .path.display())]
    NotDeletable {
        path: PathBuf,
        why: String,
        id: String,
    },
    #[error("`{}` has work that would be lost: {}{}", .path.display(), .items.iter().take(5).cloned().collect::<Vec<_>>().join("; "), more(.items.len()))]
    Dirty { path: PathBuf, items: Vec<String> },
    #[error("Docker project `{id}` holds what is not this instance's: {}", .what.join(", "))]
    Foreign { id: String, what: Vec<String> },
    #[error("cannot confirm that `{id}`'s containers are stopped: {reason}")]
    StopUnconfirmed { id: String, reason: String },
    #[error("cannot remove `{}`: {source}", .path.display())]
    RemoveEnvFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to {what} without confirmation: no terminal to ask on")]
    NoTerminal { what: String },
    #[error("cancelled; nothing was changed")]
    Cancelled,
    #[error("no registered sandbox is called `{name}`")]
    NoSuchSandbox { name: String, is_local_prod: bool },
    #[error("no local-prod is registered; nothing to destroy")]
    NoLocalProd,
    #[error("{failed} of {total} sandboxes were not destroyed")]
    Some { failed: usize, total: usize },
}

fn more(n: usize) -> String {
    if n > 5 {
        format!(" and {} more", n - 5)
    } else {
        String::new()
    }
}

impl Diagnostic for DestroyError {
    fn exit(&self) -> Exit {
        match self {
            DestroyError::NoParentRepo(_)
            | DestroyError::NotDeletable { .. }
            | DestroyError::Dirty { .. }
            | DestroyError::NoTerminal { .. }
            | DestroyError::Cancelled => Exit::Refused,
            DestroyError::StopUnconfirmed { .. } => Exit::External,
            DestroyError::Foreign { .. } => Exit::Refused,
            DestroyError::RemoveEnvFile { .. } | DestroyError::Some { .. } => Exit::Failure,
            DestroyError::NoSuchSandbox { .. } | DestroyError::NoLocalProd => Exit::NotFound,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            DestroyError::NoParentRepo(_) => {
                "pass --keep-worktree to unregister it and keep the directory".into()
            }
            DestroyError::NotDeletable { id, .. } => format!(
                "pass --keep-worktree to unregister `{id}` and leave the directory alone"
            ),
            DestroyError::Dirty { .. } => "commit or stash it; or --rescue (keeps all of it as a rescue, then destroys; `kinfra rescue restore` puts it back); or --keep-worktree".into(),
            DestroyError::StopUnconfirmed { .. } => "nothing was changed; start Docker and retry, or pass --force to destroy without confirming the stop".into(),
            DestroyError::NoTerminal { .. } => "pass --yes to confirm (refusals still apply), or --dry-run to see the plan".into(),
            DestroyError::NoSuchSandbox {
                is_local_prod: true, ..
            } => "that is local-prod; use `kinfra local-prod destroy`".into(),
            DestroyError::NoSuchSandbox { .. } => {
                "`kinfra sandbox list` shows the registered sandboxes".into()
            }
            DestroyError::NoLocalProd => "`kinfra sandbox list` shows what is registered".into(),
            DestroyError::Foreign { .. } => "nothing was changed; kinfra never removes what this instance did not start: if those are really this instance's (it moved), remove them by hand (`docker ps -a`, `docker volume ls`) and run destroy again".into(),
            DestroyError::RemoveEnvFile { .. } | DestroyError::Cancelled | DestroyError::Some { .. } => {
                return None;
            }
        })
    }
}

/// How far destroy may go.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Save uncommitted work as a rescue commit and go on (instead of refusing).
    pub rescue: bool,
    /// Also go on when Docker cannot confirm the stop.
    pub force: bool,
    /// Delete the sandbox's branch too, when kinfra created it and the main branch has
    /// every commit of it.
    pub delete_branch: bool,
    /// Leave the project's volumes on the engine (a later `local-prod create` adopts
    /// them).
    pub keep_volumes: bool,
}

/// What happens to the instance's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// `git worktree remove` from `main` (or `git worktree prune` if already gone).
    Worktree { main: PathBuf },
    /// The directory stays; only the env file goes.
    EnvFileOnly,
}

/// Everything destroy will do, worked out before anything changes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub entry: Entry,
    pub kind: Kind,
    pub path: PathBuf,
    pub exists: bool,
    pub removal: Removal,
    pub env_file: PathBuf,
    /// What Docker holds for the project, or why that could not be found out.
    pub docker: std::result::Result<ProjectResources, String>,
    pub compose: Option<Project>,
    /// What deleting the worktree would lose (`None` when no worktree is deleted).
    pub work: Option<UnsavedWork>,
    /// The branch kinfra created for the sandbox, if it did.
    pub created_branch: Option<String>,
    /// Sizes of the project's volumes, as far as the engine measured them.
    pub volume_sizes: std::collections::BTreeMap<String, u64>,
    /// The volumes stay (`--keep-volumes`).
    pub keep_volumes: bool,
    /// A snapshot of the volumes is taken first, under this name.
    pub snapshot: Option<String>,
    /// Volumes the instance adopted from an earlier one (its own, although older).
    pub adopted: Vec<String>,
}

/// Work out the plan for `entry`. Refuses (before anything changes) to delete anything
/// that is not provably a linked worktree of its registered main repository.
pub fn plan(config: &Config, entry: &Entry, kind: Kind, keep_worktree: bool) -> Result<Plan> {
    let is_local_prod = kind == Kind::LocalProd;
    let path = PathBuf::from(&entry.path);
    let exists = std::fs::symlink_metadata(&path).is_ok();
    let env_file = path.join(&config.env_file);
    let removal = if is_local_prod || !entry.is_worktree || keep_worktree {
        Removal::EnvFileOnly
    } else {
        let main = entry
            .parent_repo
            .as_deref()
            .map(PathBuf::from)
            .ok_or_else(|| DestroyError::NoParentRepo(entry.instance_id.clone()))?;
        if exists {
            check_is_linked_worktree(&path, &main, &entry.instance_id)?;
        }
        Removal::Worktree { main }
    };
    let work = match (&removal, exists) {
        (Removal::Worktree { .. }, true) => Some(unsaved_work(config, &path)?),
        _ => None,
    };
    let compose = compose::find_file(&path, &config.compose_files).map(|file| Project {
        name: entry.instance_id.clone(),
        files: vec![file],
        profile: is_local_prod.then(|| config.local_prod_profile.clone()),
        env: EnvFile::load(&env_file)
            .map(|e| e.to_map())
            .unwrap_or_default(),
    });
    let docker = docker::project_resources(&entry.instance_id).map_err(|e| e.to_string());
    let volume_sizes = match &docker {
        Ok(res) if !res.volumes.is_empty() => crate::snapshot::volume_sizes(&res.volumes),
        _ => Default::default(),
    };
    Ok(Plan {
        volume_sizes,
        keep_volumes: false,
        snapshot: None,
        adopted: crate::lifecycle::adopted_volumes(config, &entry.instance_id),
        entry: entry.clone(),
        kind,
        path,
        exists,
        removal,
        env_file,
        docker,
        compose,
        work,
        created_branch: crate::registry::load_with_state(&config.registry_paths())
            .ok()
            .and_then(|(_, st)| st.instance(&entry.instance_id)?.created_branch.clone())
            .map(|b| b.name),
    })
}

/// What removing the worktree at `path` would lose, with kinfra's own unchanged files
/// (the env file, unchanged `copy_files` copies) and the disposable ignored paths left
/// out.
pub fn unsaved_work(config: &Config, path: &Path) -> Result<UnsavedWork> {
    let mut kinfra_files = Vec::new();
    if let Some(content) = env_file_as_written(config, path) {
        kinfra_files.push(KinfraFile {
            path: config.env_file.clone(),
            content,
        });
    }
    // `.mcp.json` as `sandbox create --mcp` wrote it.
    let mcp = path.join(crate::mcp::CONFIG_FILE);
    if crate::mcp::is_ours(&mcp)
        && let Ok(content) = std::fs::read(&mcp)
    {
        kinfra_files.push(KinfraFile {
            path: crate::mcp::CONFIG_FILE.into(),
            content,
        });
    }
    for f in &config.copy_files {
        if let Ok(content) = std::fs::read(path.join(&f.from)) {
            kinfra_files.push(KinfraFile {
                path: f.to.clone(),
                content,
            });
        }
    }
    let opts = WorkOptions {
        kinfra_files,
        disposable: config.disposable.clone(),
    };
    Ok(rescue::unsaved_work(path, &opts)?)
}

/// The env file's bytes as kinfra would write its keys now: equal to the file on disk
/// unless someone added a key, a comment or a blank line of their own.
fn env_file_as_written(config: &Config, root: &Path) -> Option<Vec<u8>> {
    let env = EnvFile::load(&root.join(&config.env_file)).ok()?;
    let layout = config.layout_keys();
    let ours = |k: &str, v: &str| {
        layout.iter().any(|l| l == k)
            || crate::config::RESERVED_KEYS.contains(&k)
            || v.parse::<u16>().is_ok()
    };
    let vars: std::collections::BTreeMap<String, String> = env
        .to_map()
        .into_iter()
        .filter(|(k, v)| ours(k, v))
        .collect();
    Some(crate::envfile::render(&vars).into_bytes())
}

/// The directory must be a real (non-symlink) directory that the registered main
/// repository lists as a linked worktree (its `.git` file and the repository's
/// `worktrees/<name>/gitdir` name each other; otherwise `git worktree list` decides), and
/// not the main repository itself.
fn check_is_linked_worktree(path: &Path, main: &Path, id: &str) -> Result<()> {
    let refuse = |why: String| DestroyError::NotDeletable {
        path: path.to_owned(),
        why,
        id: id.to_string(),
    };
    let meta = std::fs::symlink_metadata(path).map_err(crate::fsutil::fs_err("inspect", path))?;
    if meta.file_type().is_symlink() {
        return Err(refuse("the registered path is now a symlink".into()).into());
    }
    let here = canonical(path);
    if here != path {
        return Err(refuse(format!(
            "it now resolves to `{}`, not the registered path",
            here.display()
        ))
        .into());
    }
    if here == canonical(main) {
        return Err(refuse("it is the main repository".into()).into());
    }
    // Read from the files both ways when they say so; else git lists the worktrees.
    if crate::gitfiles::is_linked_worktree_of(&here, main) == Some(true) {
        return Ok(());
    }
    let listed = git::worktree_list(main).map_err(|e| {
        refuse(format!(
            "cannot list worktrees of `{}`: {e}",
            main.display()
        ))
    })?;
    if !listed.iter().skip(1).any(|w| canonical(&w.path) == here) {
        return Err(refuse(format!(
            "it is not a linked worktree of `{}`",
            main.display()
        ))
        .into());
    }
    Ok(())
}

impl Plan {
    /// Human-readable steps, exactly what `execute` will do.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let kind = self.kind.label();
        lines.push(format!(
            "destroy {kind} `{}` (slot {}) at `{}`",
            self.entry.instance_id,
            self.entry.slot,
            self.path.display()
        ));
        match &self.docker {
            Ok(res) if res.is_empty() => lines.push("  docker: nothing to stop".into()),
            Ok(res)
                if !res
                    .foreign_except(&self.path, &self.entry.created_at, &self.adopted)
                    .is_empty() =>
            {
                lines.push(format!(
                    "  refuse: Docker project `{}` holds what is not this instance's: {}",
                    self.entry.instance_id,
                    res.foreign_except(&self.path, &self.entry.created_at, &self.adopted)
                        .join(", ")
                ))
            }
            Ok(res) => {
                if let Some(name) = &self.snapshot
                    && !res.volumes.is_empty()
                {
                    lines.push(format!(
                        "  snapshot the volumes first into snapshot `{name}` (`kinfra snapshot restore {name}` puts them back)"
                    ));
                }
                let flags = if self.keep_volumes { "" } else { " --volumes" };
                let how = match &self.compose {
                    Some(p) => format!(
                        "`compose -p {}{} down{flags}`",
                        p.name,
                        p.profile
                            .as_ref()
                            .map(|pr| format!(" --profile {pr}"))
                            .unwrap_or_default()
                    ),
                    None => "`docker rm`/`docker volume rm` by project label".into(),
                };
                lines.push(format!("  stop and remove {} with {how}", res.summary()));
                for c in &res.containers {
                    lines.push(format!("    container {c}"));
                }
                for v in &res.volumes {
                    let size = self
                        .volume_sizes
                        .get(v)
                        .map(|b| format!(" ({})", crate::snapshot::human_size(*b)))
                        .unwrap_or_else(|| " (size unknown)".into());
                    let fate = if self.keep_volumes {
                        ": kept (a later `local-prod create` adopts it)"
                    } else {
                        ""
                    };
                    lines.push(format!("    volume {v}{size}{fate}"));
                }
                for n in &res.networks {
                    lines.push(format!("    network {n}"));
                }
            }
            Err(e) => lines.push(format!("  docker: cannot tell what is running ({e})")),
        }
        if let Some(work) = &self.work {
            let items = work.describe();
            if !work.is_clean() {
                lines.push(format!(
                    "  unsaved work (refused without --rescue; with it, kept under refs/kinfra/rescue/{}/ and the rescue directory):",
                    self.entry.instance_id
                ));
            }
            for item in items {
                lines.push(format!("    {item}"));
            }
        }
        match (&self.removal, self.exists) {
            (Removal::Worktree { main }, true) => lines.push(format!(
                "  remove worktree `{}` with `git -C {} worktree remove` (branch kept)",
                self.path.display(),
                main.display()
            )),
            (Removal::Worktree { main }, false) => lines.push(format!(
                "  directory already gone; `git -C {} worktree prune`",
                main.display()
            )),
            (Removal::EnvFileOnly, true) => lines.push(format!(
                "  keep the directory; remove `{}`",
                self.env_file.display()
            )),
            (Removal::EnvFileOnly, false) => lines.push("  directory already gone".into()),
        }
        lines.push(format!("  unregister `{}`", self.entry.instance_id));
        lines
    }

    /// The refusal for Docker objects of this project name that are not this instance's.
    pub fn foreign_refusal(&self) -> Option<DestroyError> {
        let res = self.docker.as_ref().ok()?;
        let what = res.foreign_except(&self.path, &self.entry.created_at, &self.adopted);
        (!what.is_empty()).then(|| DestroyError::Foreign {
            id: self.entry.instance_id.clone(),
            what,
        })
    }

    /// The refusal for unsaved work (SPEC 6.5), if any.
    pub fn dirty_refusal(&self) -> Option<DestroyError> {
        let work = self.work.as_ref()?;
        (!work.is_clean()).then(|| unsaved_error(&self.path, work))
    }
}

/// What destroy did that the user must know about.
#[derive(Debug, Default)]
pub struct Outcome {
    pub rescue: Option<RescueRecord>,
    /// `--delete-branch`: what happened to the branch.
    pub branch: Option<BranchFate>,
}

/// What `--delete-branch` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchFate {
    Deleted(String),
    /// Kept, and why.
    Kept(String, String),
}

fn unsaved_error(path: &Path, work: &UnsavedWork) -> DestroyError {
    DestroyError::Dirty {
        path: path.to_owned(),
        items: work
            .describe()
            .into_iter()
            .filter(|l| !l.starts_with("ignored, disposable"))
            .collect(),
    }
}

/// Carry out `plan`. With `rescue`, uncommitted work does not stop it (the work is
/// rescued first); with `force`, neither does a stop Docker cannot confirm; nothing
/// else is ever bypassed.
pub fn execute(
    config: &Config,
    plan: &Plan,
    opts: Options,
    reporter: &dyn Reporter,
) -> Result<Outcome> {
    if let (false, Some(refusal)) = (opts.rescue, plan.dirty_refusal()) {
        return Err(refusal.into());
    }
    // Never past this, not even with --force: stopping another checkout's stack (or
    // deleting an earlier instance's data) is hitting the wrong target.
    if let Some(refusal) = plan.foreign_refusal() {
        return Err(refusal.into());
    }
    // No `up`, `down` or second `destroy` of this instance runs meanwhile.
    let _lock = crate::lock::instance(
        &config.state_dir,
        &plan.entry.instance_id,
        &format!("{} destroy", plan.kind.label()),
        reporter,
    )?;
    // 1. Containers first, before any file is touched.
    if let Err(e) = stop_containers(plan, opts.keep_volumes, reporter) {
        if !opts.force {
            return Err(e.into());
        }
        reporter.warn(&format!("{e}; continuing because of --force"));
    }
    crate::crashpoint::hit("destroy:after-stop");
    // 2. Keep unsaved work before the worktree goes. Looked at again now, after the
    //    prompt and the stop, so nothing written meanwhile is lost.
    let mut outcome = Outcome::default();
    if let (Removal::Worktree { main }, true) = (&plan.removal, plan.exists) {
        let work = unsaved_work(config, &plan.path)?;
        if !work.is_clean() {
            if !opts.rescue {
                return Err(unsaved_error(&plan.path, &work).into());
            }
            let record = rescue::save(
                main,
                &plan.path,
                &plan.entry.instance_id,
                &config.state_dir,
                &work,
                &rescue::Stamp::now(),
            )?;
            outcome.rescue = Some(record);
            crate::crashpoint::hit("destroy:after-rescue");
        }
    }
    // 3. Files. (The branch checked out is read first: the worktree is gone after.)
    let checked_out = if opts.delete_branch {
        crate::listing::branch_of(&plan.path)
    } else {
        None
    };
    match (&plan.removal, plan.exists) {
        (Removal::Worktree { main }, true) => git::worktree_remove(main, &plan.path)?,
        (Removal::Worktree { main }, false) => git::worktree_prune(main)?,
        (Removal::EnvFileOnly, _) => match std::fs::remove_file(&plan.env_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DestroyError::RemoveEnvFile {
                    path: plan.env_file.clone(),
                    source,
                }
                .into());
            }
        },
    }
    crate::crashpoint::hit("destroy:after-files");
    if opts.delete_branch
        && let Removal::Worktree { main } = &plan.removal
    {
        outcome.branch = Some(delete_branch(plan, main, checked_out));
    }
    // 4. Registry last, so a crash before here leaves an entry a re-run can finish.
    let id = plan.entry.instance_id.clone();
    let is_local_prod = plan.kind == Kind::LocalProd;
    registry::update_with_state(&config.registry_paths(), reporter, |reg, _| -> Result<()> {
        if is_local_prod {
            if reg
                .local_prod
                .as_ref()
                .is_some_and(|lp| lp.instance_id == id)
            {
                reg.local_prod = None;
            }
        } else {
            reg.remove_sandbox(&id);
        }
        Ok(())
    })?;
    Ok(outcome)
}

fn stop_containers(
    plan: &Plan,
    keep_volumes: bool,
    reporter: &dyn Reporter,
) -> Result<(), DestroyError> {
    let id = &plan.entry.instance_id;
    let unconfirmed = |reason: String| DestroyError::StopUnconfirmed {
        id: id.clone(),
        reason,
    };
    // With --keep-volumes the volumes are not part of what must go.
    let resources = || {
        docker::project_resources(id)
            .map(|mut r| {
                if keep_volumes {
                    r.volumes.clear();
                }
                r
            })
            .map_err(|e| unconfirmed(e.to_string()))
    };
    let before = resources()?;
    if before.is_empty() {
        return Ok(());
    }
    if !before.volumes.is_empty() {
        // A snapshot or copy killed half-way leaves a helper container holding the volume.
        crate::snapshot::remove_dead_helpers_if_any();
    }
    if let Some(Err(e)) = plan.compose.as_ref().map(|p| p.down(!keep_volumes)) {
        reporter.warn(&format!(
            "compose down failed ({e}); removing by label instead"
        ));
    }
    let left = resources()?;
    if !left.is_empty() {
        docker::remove_resources(&left).map_err(|e| unconfirmed(e.to_string()))?;
    }
    let after = resources()?;
    if !after.is_empty() {
        return Err(unconfirmed(format!("still present: {}", after.summary())));
    }
    Ok(())
}

/// Delete the sandbox's branch if kinfra created it and the main branch has all of it;
/// otherwise say why it is kept.
fn delete_branch(plan: &Plan, main: &Path, checked_out: Option<String>) -> BranchFate {
    let Some(branch) = plan.created_branch.clone() else {
        let name = checked_out.unwrap_or_else(|| plan.entry.instance_id.clone());
        return BranchFate::Kept(
            name,
            "kinfra did not create it (it was named with --branch or existed)".into(),
        );
    };
    let default = git::default_branch(main).ok().flatten();
    if default.as_deref() == Some(branch.as_str()) {
        return BranchFate::Kept(branch, "it is the default branch".into());
    }
    let Some(default) = default else {
        return BranchFate::Kept(branch, "the main branch cannot be told".into());
    };
    let unmerged = git::git(main)
        .args(["rev-list", "--count"])
        .arg(format!("refs/heads/{default}..refs/heads/{branch}"))
        .run()
        .map(|out| out.trim() != "0")
        .unwrap_or(true);
    if unmerged {
        return BranchFate::Kept(branch, format!("it has commits `{default}` lacks"));
    }
    match git::git(main).args(["branch", "-d", "--", &branch]).run() {
        Ok(_) => BranchFate::Deleted(branch),
        Err(e) => BranchFate::Kept(branch, e.to_string()),
    }
}

/// How to get rescued work back.
pub fn restore_hint(rescue: &RescueRecord) -> String {
    format!("kinfra rescue restore {}", rescue.name())
}
