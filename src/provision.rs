//! Making an instance: a sandbox as a new linked worktree (`sandbox create`), local-prod
//! as an independent clone (`local-prod create`), or the current checkout as either
//! (`init`). Each is a [`Plan`] worked out from disk, git and Docker before anything
//! changes (printable with `--dry-run`), then [`execute`]d: slot choice, the checkout,
//! the env file and the registry entry happen under the registry lock, and a failure
//! half-way removes what this command made. Re-running a create or init that was
//! killed half-way adopts what it left.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::context::Ctx;
use crate::docker;
use crate::envfile;
use crate::error::{Diagnostic, Error, Exit, Result};
use crate::git::{self, BranchSource, GitError};
use crate::instance::Kind;
use crate::layout;
use crate::ports::SlotPort;
use crate::registry::{self, Entry, Registry, canonical};
use crate::report::Reporter;
use crate::slots::{self, Choice};
use crate::slug;
use crate::stack::{self, Stack, StackError};
use crate::timefmt;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("`{0}` has no letters or digits to make a sandbox name from")]
    EmptyName(String),
    #[error(
        "`{id}` is not a valid compose project name (a-z, 0-9, `-`, `_`, starting with a letter or digit, at most {} characters)",
        slug::MAX_PROJECT_NAME
    )]
    InvalidId { id: String, suggestion: String },
    #[error("`{0}` is not a valid branch name")]
    InvalidBranch(String),
    #[error("branch `{branch}` does not exist in `{}`", .main.display())]
    NoSuchBranch { branch: String, main: PathBuf },
    #[error("cannot tell the repository's default branch")]
    NoDefaultBranch,
    #[error("the repository has no commits yet")]
    NoCommits,
    #[error("`{}` already exists", .0.display())]
    Exists(PathBuf),
    #[error("`{}` already exists", .0.display())]
    LocalProdDirExists(PathBuf),
    #[error("`{id}` is already registered (slot {slot}, `{path}`)")]
    AlreadyRegistered { id: String, slot: u32, path: String },
    #[error("`{}` is already registered as `{id}`", .root.display())]
    PathRegistered { root: PathBuf, id: String },
    #[error("instance id `{0}` is taken")]
    IdTaken(String),
    #[error("`{}` is already initialized (`{env_file}` exists)", .root.display())]
    AlreadyInitialized { root: PathBuf, env_file: String },
    #[error("local-prod is already registered: `{id}` at `{path}`")]
    LocalProdExists { id: String, path: String },
    #[error("`{}` is a linked git worktree; local-prod must be an independent clone", .0.display())]
    LinkedWorktree(PathBuf),
    #[error("Docker still holds {summary} of an earlier `{project}`")]
    Leftovers {
        project: String,
        summary: String,
        cleanup: String,
    },
    #[error(
        "cannot ask Docker whether an earlier `{project}` left containers or volumes: {reason}"
    )]
    LeftoversUnknown { project: String, reason: String },
    #[error("git could not create the worktree: {0}")]
    WorktreeAdd(GitError),
    #[error("git could not clone: {0}")]
    Clone(GitError),
    #[error("cannot write `{}`: {source}", .path.display())]
    EnvWrite {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Diagnostic for ProvisionError {
    fn exit(&self) -> Exit {
        use ProvisionError::*;
        match self {
            EmptyName(_)
            | InvalidId { .. }
            | InvalidBranch(_)
            | NoSuchBranch { .. }
            | NoDefaultBranch
            | NoCommits => Exit::Usage,
            Exists(_)
            | LocalProdDirExists(_)
            | AlreadyRegistered { .. }
            | PathRegistered { .. }
            | IdTaken(_)
            | AlreadyInitialized { .. }
            | LocalProdExists { .. }
            | Leftovers { .. } => Exit::Conflict,
            LinkedWorktree(_) => Exit::Refused,
            LeftoversUnknown { .. } | WorktreeAdd(_) | Clone(_) => Exit::External,
            EnvWrite { .. } => Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        use ProvisionError::*;
        Some(match self {
            EmptyName(_) => "use a name like `my-feature`".into(),
            InvalidId { suggestion, .. } => format!("choose an id like `{suggestion}` (`--name`), or a shorter name"),
            InvalidBranch(_) => "pick a name git accepts (`git check-ref-format --branch NAME`)".into(),
            NoSuchBranch { .. } => "`git branch --list` shows the branches".into(),
            NoDefaultBranch => "pass --branch".into(),
            NoCommits => "commit something first: a worktree needs a commit to check out".into(),
            Exists(_) => "choose another name, or remove that directory if it is left over".into(),
            LocalProdDirExists(_) => "if it is a clone of the project, run `kinfra local-prod init` inside it; otherwise move it away".into(),
            AlreadyRegistered { id, .. } => format!("`kinfra sandbox destroy {id}` removes the old entry"),
            PathRegistered { .. } => "see `kinfra sandbox list`".into(),
            IdTaken(_) => "choose another with `--name NAME`".into(),
            AlreadyInitialized { .. } => "see `kinfra sandbox list`; `kinfra doctor` explains a stray env file".into(),
            LocalProdExists { .. } => "there is only one local-prod; `kinfra local-prod destroy` it first".into(),
            LinkedWorktree(_) => "use `kinfra local-prod create` to make one".into(),
            Leftovers { project, cleanup, .. } => format!("if that data is no longer needed, remove it with `{cleanup}`; its label is {}={project}", docker::PROJECT_LABEL),
            LeftoversUnknown { .. } => "start Docker (or check DOCKER_HOST) and retry: a new instance must not inherit an old one's volumes".into(),
            WorktreeAdd(_) => "is the branch already checked out in another worktree? (`git worktree list`)".into(),
            Clone(_) => "the git output above says why".into(),
            EnvWrite { .. } => return None,
        })
    }
}

/// Where the instance's checkout comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkout {
    /// A new linked worktree of `main` (sandbox create).
    Worktree { main: PathBuf, branch: BranchPlan },
    /// A new independent clone of `main` (local-prod create).
    Clone {
        main: PathBuf,
        branch: String,
        origin: Option<String>,
    },
    /// The checkout that is already there (init).
    Existing {
        is_linked_worktree: bool,
        main: PathBuf,
    },
}

/// The branch a new worktree gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchPlan {
    /// An existing branch (local, or one git can track from origin) is checked out.
    Reuse {
        branch: String,
        commit: Option<String>,
    },
    /// A new branch is created at `start`.
    New { branch: String, start: String },
}

impl BranchPlan {
    pub fn name(&self) -> &str {
        match self {
            BranchPlan::Reuse { branch, .. } | BranchPlan::New { branch, .. } => branch,
        }
    }

    /// "new branch `x` from abc1234" / "existing branch `x` (at abc1234)".
    pub fn describe(&self) -> String {
        let short = |c: &str| c.chars().take(12).collect::<String>();
        match self {
            BranchPlan::New { branch, start } => {
                format!("new branch `{branch}` from {}", short(start))
            }
            BranchPlan::Reuse {
                branch,
                commit: Some(c),
            } => format!("existing branch `{branch}` (at {})", short(c)),
            BranchPlan::Reuse {
                branch,
                commit: None,
            } => format!("existing branch `{branch}`"),
        }
    }
}

/// Everything a create or init will do, worked out before anything changes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: Kind,
    pub id: String,
    pub path: PathBuf,
    pub checkout: Checkout,
    /// Adopt what a create or init killed half-way left instead of making it again.
    pub resume: bool,
    /// `--slot`, checked.
    pub wanted_slot: Option<u32>,
    /// The slot it would get if it ran now (the real choice is made under the lock).
    pub preview: Option<Choice>,
    /// The compose file the new instance will run, read from the commit it starts
    /// from (or from disk for `init`); `None` when the checkout has none yet.
    pub stack: Option<Stack>,
    /// The name given to `create` (recorded so commands can find it by that name).
    pub name: Option<String>,
    /// The user named the branch (`--branch`): kinfra never deletes it.
    pub branch_named: bool,
    /// Volumes an earlier local-prod left with `destroy --keep-volumes`, taken over.
    pub adopt_volumes: Vec<String>,
}

/// `kinfra sandbox create NAME [--branch B] [--slot N]`.
pub fn plan_sandbox_create(
    ctx: &Ctx,
    name: &str,
    branch: Option<&str>,
    slot: Option<i64>,
) -> Result<Plan> {
    let config = &ctx.config;
    let slug = slug::slugify(name);
    if slug.is_empty() {
        return Err(ProvisionError::EmptyName(name.to_string()).into());
    }
    let id = format!("{}{slug}", config.sandbox_prefix);
    check_id(&id)?;
    let wanted_slot = slot
        .map(|s| slots::sandbox_slot(s, config.slot_count))
        .transpose()?;
    let repo = ctx.require_repo()?;
    ctx.check_origin(repo)?;
    let main = repo.main_root.clone();
    let path = config.sandbox_dir(&main, &slug);
    let branch_flag_given = branch.is_some();
    let branch = branch.map_or_else(|| id.clone(), str::to_string);
    if !crate::gitfiles::is_valid_branch_name(&branch) {
        return Err(ProvisionError::InvalidBranch(branch).into());
    }
    let registry = ctx.registry()?;
    if let Some(e) = registry.sandbox(&id) {
        return Err(already_registered(e).into());
    }
    let registered = registry.at_path(&path).is_some();
    let resume =
        path.exists() && !registered && is_orphan_worktree(config, &main, &path, &id, &branch)?;
    if path.exists() && !resume {
        return Err(ProvisionError::Exists(path).into());
    }
    if !resume {
        check_no_leftovers(&id)?;
    }
    let branch = branch_plan(&main, &repo.toplevel, &branch)?;
    let stack = if resume {
        stack_on_disk(config, &path, Kind::Sandbox)?
    } else {
        let commit = match &branch {
            BranchPlan::New { start, .. } => Some(start.clone()),
            BranchPlan::Reuse { commit, .. } => commit.clone(),
        };
        match commit {
            Some(c) => stack_at_commit(config, &main, &c, Kind::Sandbox)?,
            None => None,
        }
    };
    let preview = preview_slot(config, &registry, wanted_slot, stack.as_ref());
    Ok(Plan {
        kind: Kind::Sandbox,
        id,
        path,
        checkout: Checkout::Worktree { main, branch },
        resume,
        wanted_slot,
        preview,
        stack,
        name: Some(name.to_string()),
        branch_named: branch_flag_given,
        adopt_volumes: Vec::new(),
    })
}

/// `kinfra sandbox init [--slot N] [--name NAME]`.
pub fn plan_sandbox_init(ctx: &Ctx, name: Option<&str>, slot: Option<i64>) -> Result<Plan> {
    let config = &ctx.config;
    let repo = ctx.require_repo()?;
    ctx.check_origin(repo)?;
    let root = canonical(&repo.toplevel);
    let id = match name {
        Some(name) => name.to_string(),
        None => root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    check_id(&id)?;
    let wanted_slot = slot
        .map(|s| slots::sandbox_slot(s, config.slot_count))
        .transpose()?;
    let registry = ctx.registry()?;
    let resume = is_interrupted_init(config, &registry, &root, &id);
    check_init_target(config, &registry, &root, &id, resume)?;
    if !resume {
        check_no_leftovers(&id)?;
    }
    let stack = stack_on_disk(config, &root, Kind::Sandbox)?;
    let preview = preview_slot(config, &registry, wanted_slot, stack.as_ref());
    Ok(Plan {
        kind: Kind::Sandbox,
        id,
        path: root,
        checkout: Checkout::Existing {
            is_linked_worktree: repo.is_linked_worktree,
            main: repo.main_root.clone(),
        },
        resume,
        wanted_slot,
        preview,
        stack,
        name: name.map(str::to_string),
        branch_named: false,
        adopt_volumes: Vec::new(),
    })
}

/// `kinfra local-prod create [--branch B]`.
pub fn plan_local_prod_create(ctx: &Ctx, branch: Option<&str>) -> Result<Plan> {
    let config = &ctx.config;
    let repo = ctx.require_repo()?;
    ctx.check_origin(repo)?;
    let main = repo.main_root.clone();
    let path = config.local_prod_path(&main);
    let id = config.local_prod_id.clone();
    let registry = ctx.registry()?;
    if let Some(lp) = &registry.local_prod {
        return Err(local_prod_exists(lp).into());
    }
    let origin = git::origin_url(&main)?;
    let resume = path.exists() && is_orphan_clone(config, &main, &path, origin.as_deref())?;
    if path.exists() && !resume {
        return Err(ProvisionError::LocalProdDirExists(path).into());
    }
    let branch = match branch {
        Some(b) if !git::local_branch_exists(&main, b)? => {
            return Err(ProvisionError::NoSuchBranch {
                branch: b.to_string(),
                main,
            }
            .into());
        }
        Some(b) => b.to_string(),
        None => git::default_branch(&main)?.ok_or(ProvisionError::NoDefaultBranch)?,
    };
    let stack = if resume {
        stack_on_disk(config, &path, Kind::LocalProd)?
    } else {
        match commit_of(&main, &format!("refs/heads/{branch}"))? {
            Some(c) => stack_at_commit(config, &main, &c, Kind::LocalProd)?,
            None => None,
        }
    };
    // Resuming (the clone is there: destroy keeps it) refuses no leftovers, but still
    // adopts kept volumes.
    let adopt_volumes = kept_volumes(&id, stack.as_ref(), !resume)?;
    Ok(Plan {
        kind: Kind::LocalProd,
        id,
        path,
        checkout: Checkout::Clone {
            main,
            branch,
            origin,
        },
        resume,
        wanted_slot: Some(0),
        preview: Some(Choice {
            slot: 0,
            skipped: Vec::new(),
        }),
        stack,
        name: None,
        branch_named: false,
        adopt_volumes,
    })
}

/// `kinfra local-prod init`.
pub fn plan_local_prod_init(ctx: &Ctx) -> Result<Plan> {
    let config = &ctx.config;
    let repo = ctx.require_repo()?;
    if repo.is_linked_worktree {
        return Err(ProvisionError::LinkedWorktree(repo.toplevel.clone()).into());
    }
    ctx.check_origin(repo)?;
    let root = canonical(&repo.toplevel);
    let id = config.local_prod_id.clone();
    let registry = ctx.registry()?;
    if let Some(lp) = &registry.local_prod {
        return Err(local_prod_exists(lp).into());
    }
    let resume = is_interrupted_init(config, &registry, &root, &id);
    check_init_target(config, &registry, &root, &id, resume)?;
    if !resume {
        check_no_leftovers(&id)?;
    }
    let stack = stack_on_disk(config, &root, Kind::LocalProd)?;
    Ok(Plan {
        kind: Kind::LocalProd,
        id,
        path: root,
        checkout: Checkout::Existing {
            is_linked_worktree: false,
            main: repo.main_root.clone(),
        },
        resume,
        wanted_slot: Some(0),
        preview: Some(Choice {
            slot: 0,
            skipped: Vec::new(),
        }),
        stack,
        name: None,
        branch_named: false,
        adopt_volumes: Vec::new(),
    })
}

impl Plan {
    /// Human-readable steps, what [`execute`] will do.
    pub fn describe(&self, config: &Config) -> Vec<String> {
        let mut lines = vec![format!(
            "{} {} `{}` at `{}`",
            if matches!(self.checkout, Checkout::Existing { .. }) {
                "initialize"
            } else {
                "create"
            },
            self.kind,
            self.id,
            self.path.display()
        )];
        if !self.adopt_volumes.is_empty() {
            lines.push(format!(
                "  adopt the volumes an earlier local-prod kept (`destroy --keep-volumes`): {}",
                self.adopt_volumes.join(", ")
            ));
        }
        if self.resume {
            lines.push("  resume an interrupted run: adopt what it left".into());
        }
        match &self.checkout {
            Checkout::Worktree { main, branch } if !self.resume => lines.push(format!(
                "  `git -C {} worktree add` on {}",
                main.display(),
                branch.describe()
            )),
            Checkout::Clone { main, branch, .. } if !self.resume => lines.push(format!(
                "  `git clone` of `{}` on branch `{branch}` (origin kept)",
                main.display()
            )),
            _ => {}
        }
        match &self.preview {
            Some(choice) => {
                for (slot, conflicts) in &choice.skipped {
                    lines.push(format!(
                        "  skip slot {slot}: {}",
                        conflicts
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ));
                }
                let ports = env_ports(config, self.stack.as_ref(), choice.slot)
                    .map(|ps| {
                        ps.iter()
                            .map(|(k, p)| format!("{k}={p}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                lines.push(format!("  slot {}: {ports}", choice.slot));
            }
            None => lines.push("  no slot is free now (it would be refused)".into()),
        }
        lines.push(format!("  write `{}`", config.env_file));
        lines.push(format!("  register `{}`", self.id));
        lines
    }
}

/// What [`execute`] made.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub path: PathBuf,
    pub slot: u32,
    /// The port keys the compose file publishes (`None`: no compose file yet).
    pub published: Option<Vec<String>>,
    pub skipped: Vec<(u32, Vec<slots::PortConflict>)>,
}

/// Carry out `plan`. Everything from slot choice to registration happens under the
/// registry lock; a failure removes what this command made (never what was there).
pub fn execute(config: &Config, plan: &Plan, reporter: &dyn Reporter) -> Result<Created> {
    if plan.resume {
        reporter.note(&format!(
            "resuming an interrupted {}: adopting `{}`",
            if matches!(plan.checkout, Checkout::Existing { .. }) {
                "init"
            } else {
                "create"
            },
            plan.path.display()
        ));
    }
    // No `up`, `down` or `destroy` of an instance of this id runs meanwhile.
    let _lock = crate::lock::instance(
        &config.state_dir,
        &plan.id,
        &format!("{} create", plan.kind.label()),
        reporter,
    )?;
    let mut made: Option<Made> = None;
    let result = registry::update_with_state(
        &config.registry_paths(),
        reporter,
        |reg, state| -> Result<Created> {
            recheck_under_lock(config, plan, reg)?;
            let stack = plan.stack.as_ref();
            let choice = match plan.kind {
                Kind::LocalProd => {
                    let ports = published_ports(config, stack, 0)?;
                    let conflicts = slots::port_conflicts(&ports, None, reg);
                    if !conflicts.is_empty() {
                        return Err(slots::SlotError::PortsBusy { slot: 0, conflicts }.into());
                    }
                    Choice {
                        slot: 0,
                        skipped: Vec::new(),
                    }
                }
                Kind::Sandbox => slots::choose(reg, config, plan.wanted_slot, |slot| {
                    published_ports(config, stack, slot)
                        .map(|ports| slots::port_conflicts(&ports, None, reg))
                        .unwrap_or_default()
                })?,
            };
            for (slot, conflicts) in &choice.skipped {
                reporter.note(&format!(
                    "slot {slot} is free but {}; taking slot {} instead",
                    conflicts
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                    choice.slot
                ));
            }
            if !plan.resume {
                made = make_checkout(plan, reporter)?;
            } else if let Checkout::Clone {
                origin: Some(url), ..
            } = &plan.checkout
            {
                // A clone killed before kinfra re-pointed its origin still names the
                // main repository.
                git::git(&plan.path)
                    .args(["remote", "set-url", "origin", url])
                    .run()
                    .map_err(GitError::from)?;
            }
            copy_files(config, &plan.path, reporter);
            let created_at = timefmt::now_iso();
            if let Checkout::Existing { .. } = plan.checkout {
                made = Some(Made::EnvFile(plan.path.join(&config.env_file)));
            }
            let auto = match stack {
                Some(st) => stack::assign_auto_ports(
                    config,
                    choice.slot,
                    &st.port_vars(),
                    &BTreeMap::new(),
                )?,
                None => Vec::new(),
            };
            write_env_file(
                config,
                &plan.path,
                &plan.id,
                choice.slot,
                &created_at,
                &auto,
            )?;
            crate::crashpoint::hit(match plan.kind {
                Kind::Sandbox if matches!(plan.checkout, Checkout::Existing { .. }) => {
                    "init:after-env-file"
                }
                Kind::Sandbox => "create:after-env-file",
                Kind::LocalProd => "local-prod-create:after-env-file",
            });
            let entry = Entry {
                instance_id: plan.id.clone(),
                slot: choice.slot,
                path: plan.path.display().to_string(),
                created_at,
                is_worktree: match &plan.checkout {
                    Checkout::Worktree { .. } => true,
                    Checkout::Clone { .. } => false,
                    Checkout::Existing {
                        is_linked_worktree, ..
                    } => *is_linked_worktree,
                },
                parent_repo: match &plan.checkout {
                    Checkout::Worktree { main, .. } | Checkout::Clone { main, .. } => {
                        Some(main.display().to_string())
                    }
                    Checkout::Existing {
                        is_linked_worktree: true,
                        main,
                    } => Some(main.display().to_string()),
                    Checkout::Existing { .. } => None,
                },
            };
            match plan.kind {
                Kind::Sandbox => reg.insert_sandbox(entry),
                Kind::LocalProd => reg.local_prod = Some(entry),
            }
            // What kinfra must remember beyond ktrdr's six fields.
            let mine = state.instance_mut(&plan.id);
            *mine = crate::state::InstanceState {
                name: plan.name.clone(),
                created_branch: match &plan.checkout {
                    Checkout::Worktree {
                        branch: BranchPlan::New { branch, start },
                        ..
                    } if !plan.resume && !plan.branch_named => Some(crate::state::CreatedBranch {
                        name: branch.clone(),
                        start_commit: start.clone(),
                        ..Default::default()
                    }),
                    _ => None,
                },
                last_touched: Some(timefmt::now_iso()),
                ports: auto.iter().cloned().collect(),
                adopted_volumes: plan.adopt_volumes.clone(),
                ..Default::default()
            };
            Ok(Created {
                id: plan.id.clone(),
                path: plan.path.clone(),
                slot: choice.slot,
                published: stack.map(|st| st.port_vars().into_iter().map(|v| v.name).collect()),
                skipped: choice.skipped,
            })
        },
    );
    if result.is_err()
        && let Some(made) = made
    {
        undo(made, reporter);
    }
    let created = result?.value;
    if !plan.adopt_volumes.is_empty() {
        reporter.note(&format!(
            "adopted the volumes an earlier local-prod kept: {}",
            plan.adopt_volumes.join(", ")
        ));
    }
    record_project(config, plan, reporter);
    Ok(created)
}

/// Add the project to the per-user index (so commands by name and `list --all` find
/// it). Losing this only costs discoverability: a failure is a warning.
fn record_project(config: &Config, plan: &Plan, reporter: &dyn Reporter) {
    let main = match &plan.checkout {
        Checkout::Worktree { main, .. }
        | Checkout::Clone { main, .. }
        | Checkout::Existing { main, .. } => main.clone(),
    };
    let ports_base = (config.base == crate::config::Base::Compose)
        .then(|| u16::try_from(config.auto_ports.base).ok())
        .flatten();
    let project = crate::index::Project {
        name: config.project_name.clone(),
        registry: config.registry_path.clone(),
        state_dir: config.state_dir.clone(),
        main_repos: vec![main],
        config: match &config.source {
            crate::config::Source::File { path, .. } => Some(path.clone()),
            _ => None,
        },
        last_used: timefmt::now_iso(),
        ports_base,
        other: Default::default(),
    };
    if let Err(e) = crate::index::record(project, reporter) {
        reporter.warn(&format!(
            "could not record the project in kinfra's index: {e}"
        ));
    }
}

/// What this command made, so a failure can take it back.
enum Made {
    Worktree { main: PathBuf, path: PathBuf },
    Clone(PathBuf),
    EnvFile(PathBuf),
}

fn undo(made: Made, reporter: &dyn Reporter) {
    match made {
        Made::Worktree { main, path } => {
            if let Err(e) = git::worktree_remove(&main, &path) {
                reporter.warn(&format!(
                    "could not remove the new worktree `{}` again: {e}",
                    path.display()
                ));
            }
        }
        // The directory did not exist before this command: removing our own partial
        // clone loses nothing.
        Made::Clone(path) => {
            let _ = std::fs::remove_dir_all(path);
        }
        Made::EnvFile(path) => {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn make_checkout(plan: &Plan, reporter: &dyn Reporter) -> Result<Option<Made>> {
    match &plan.checkout {
        Checkout::Worktree { main, branch } => {
            let source = match branch {
                BranchPlan::Reuse { branch, .. } => BranchSource::Existing(branch.clone()),
                BranchPlan::New { branch, start } => BranchSource::New {
                    branch: branch.clone(),
                    start: start.clone(),
                },
            };
            git::worktree_add(main, &plan.path, &source).map_err(ProvisionError::WorktreeAdd)?;
            crate::crashpoint::hit("create:after-worktree");
            Ok(Some(Made::Worktree {
                main: main.clone(),
                path: plan.path.clone(),
            }))
        }
        Checkout::Clone {
            main,
            branch,
            origin,
        } => {
            reporter.note(&format!(
                "cloning `{}` ({branch}) to `{}`",
                main.display(),
                plan.path.display()
            ));
            let made = Made::Clone(plan.path.clone());
            if let Err(e) = git::clone(main, &plan.path, Some(branch), origin.as_deref()) {
                undo(made, reporter);
                return Err(ProvisionError::Clone(e).into());
            }
            crate::crashpoint::hit("local-prod-create:after-clone");
            Ok(Some(made))
        }
        Checkout::Existing { .. } => Ok(None),
    }
}

/// The plan was made without the lock; what it relied on is checked again under it.
fn recheck_under_lock(config: &Config, plan: &Plan, reg: &Registry) -> Result<()> {
    match plan.kind {
        Kind::LocalProd => {
            if let Some(lp) = &reg.local_prod {
                return Err(local_prod_exists(lp).into());
            }
        }
        Kind::Sandbox => {
            if let Some(e) = reg.sandbox(&plan.id) {
                return Err(already_registered(e).into());
            }
        }
    }
    if let Some(e) = reg.at_path(&plan.path) {
        return Err(match plan.checkout {
            Checkout::Existing { .. } => ProvisionError::PathRegistered {
                root: plan.path.clone(),
                id: e.instance_id.clone(),
            },
            _ => ProvisionError::Exists(plan.path.clone()),
        }
        .into());
    }
    if reg.all().any(|e| e.instance_id == plan.id) {
        return Err(ProvisionError::IdTaken(plan.id.clone()).into());
    }
    let exists = plan.path.exists();
    match plan.checkout {
        Checkout::Worktree { .. } if exists && !plan.resume => {
            Err(ProvisionError::Exists(plan.path.clone()).into())
        }
        Checkout::Clone { .. } if exists && !plan.resume => {
            Err(ProvisionError::LocalProdDirExists(plan.path.clone()).into())
        }
        Checkout::Existing { .. } if !plan.resume && plan.path.join(&config.env_file).exists() => {
            Err(ProvisionError::AlreadyInitialized {
                root: plan.path.clone(),
                env_file: config.env_file.clone(),
            }
            .into())
        }
        _ => Ok(()),
    }
}

pub fn check_id(id: &str) -> Result<(), ProvisionError> {
    if slug::is_valid_project_name(id) {
        return Ok(());
    }
    let s = slug::slugify(id);
    Err(ProvisionError::InvalidId {
        id: id.to_string(),
        suggestion: if s.is_empty() {
            "my-sandbox".into()
        } else {
            s.chars().take(slug::MAX_PROJECT_NAME).collect()
        },
    })
}

fn check_init_target(
    config: &Config,
    registry: &Registry,
    root: &Path,
    id: &str,
    resume: bool,
) -> Result<(), ProvisionError> {
    if !resume && root.join(&config.env_file).exists() {
        return Err(ProvisionError::AlreadyInitialized {
            root: root.to_owned(),
            env_file: config.env_file.clone(),
        });
    }
    if let Some(e) = registry.at_path(root) {
        return Err(ProvisionError::PathRegistered {
            root: root.to_owned(),
            id: e.instance_id.clone(),
        });
    }
    if registry.all().any(|e| e.instance_id == id) {
        return Err(ProvisionError::IdTaken(id.to_string()));
    }
    Ok(())
}

fn preview_slot(
    config: &Config,
    registry: &Registry,
    wanted: Option<u32>,
    stack: Option<&Stack>,
) -> Option<Choice> {
    slots::choose(registry, config, wanted, |slot| {
        published_ports(config, stack, slot)
            .map(|ports| slots::port_conflicts(&ports, None, registry))
            .unwrap_or_default()
    })
    .ok()
}

/// Every port key an instance on `slot` gets in its env file: the layout's, then the
/// automatic ports of the compose file's other port variables.
pub fn env_ports(config: &Config, stack: Option<&Stack>, slot: u32) -> Result<Vec<(String, u16)>> {
    let mut out: Vec<(String, u16)> = config
        .ports
        .for_slot(slot)
        .map_err(config_error)?
        .into_iter()
        .map(|p| (p.key, p.port))
        .collect();
    if let Some(st) = stack {
        out.extend(stack::assign_auto_ports(
            config,
            slot,
            &st.port_vars(),
            &BTreeMap::new(),
        )?);
    }
    Ok(out)
}

/// The env file an instance on `slot` would get (id `sample`): for working out its
/// gate without creating it.
pub fn sample_env(config: &Config, stack: &Stack, slot: u32) -> Result<BTreeMap<String, String>> {
    let mut env = layout::env_vars(config, "sample", slot, "").map_err(config_error)?;
    for (k, v) in env_ports(config, Some(stack), slot)? {
        env.insert(k, v.to_string());
    }
    Ok(env)
}

/// The host ports an instance on `slot` publishes: with a compose file, only the ports
/// its services publish (a layout key nothing publishes never blocks a slot); without
/// one yet, every layout port.
pub fn published_ports(config: &Config, stack: Option<&Stack>, slot: u32) -> Result<Vec<SlotPort>> {
    let Some(st) = stack else {
        return config.ports.for_slot(slot).map_err(config_error);
    };
    let published: Vec<String> = st.port_vars().into_iter().map(|v| v.name).collect();
    Ok(env_ports(config, stack, slot)?
        .into_iter()
        .filter(|(k, _)| published.contains(k))
        .map(|(key, port)| SlotPort {
            group: key.clone(),
            key,
            port,
        })
        .collect())
}

/// The compose stack in a checkout on disk (`init`, a resumed create).
fn stack_on_disk(config: &Config, root: &Path, kind: Kind) -> Result<Option<Stack>> {
    let Some(file) = crate::compose::find_file(root, &config.compose_files) else {
        return Ok(None);
    };
    let stack = Stack::load(&[file], &|_| None, profiles(config, kind))?;
    check_stack(&stack, kind)?;
    Ok(Some(stack))
}

/// The compose stack a new checkout of `commit` will have, read from git.
fn stack_at_commit(
    config: &Config,
    repo: &Path,
    commit: &str,
    kind: Kind,
) -> Result<Option<Stack>> {
    for name in &config.compose_files {
        let out = git::git(repo)
            .args(["cat-file", "-p"])
            .arg(format!("{commit}:{name}"))
            .output()
            .map_err(GitError::from)?;
        if !out.success() {
            continue;
        }
        // Messages name the file in the repository it was read from (the new
        // checkout does not exist yet); relative paths in it do not matter here.
        let stack = Stack::parse(
            &repo.join(name),
            &out.stdout,
            &|_| None,
            profiles(config, kind),
        )?;
        check_stack(&stack, kind)?;
        return Ok(Some(stack));
    }
    Ok(None)
}

fn profiles(config: &Config, kind: Kind) -> Vec<String> {
    match kind {
        Kind::LocalProd => vec![config.local_prod_profile.clone()],
        Kind::Sandbox => Vec::new(),
    }
}

/// A compose file two instances of which cannot run side by side is refused before
/// anything is created: one publishing a host port twice, and (for sandboxes, of
/// which there are many) one publishing a literal host port.
fn check_stack(stack: &Stack, kind: Kind) -> Result<()> {
    if let Some(d) = stack.duplicates().into_iter().next() {
        return Err(StackError::Duplicate(d.to_string()).into());
    }
    if kind == Kind::Sandbox
        && let Some(lit) = stack.literal_ports().into_iter().next()
    {
        return Err(lit.into());
    }
    Ok(())
}

fn already_registered(e: &Entry) -> ProvisionError {
    ProvisionError::AlreadyRegistered {
        id: e.instance_id.clone(),
        slot: e.slot,
        path: e.path.clone(),
    }
}

fn local_prod_exists(lp: &Entry) -> ProvisionError {
    ProvisionError::LocalProdExists {
        id: lp.instance_id.clone(),
        path: lp.path.clone(),
    }
}

fn config_error(e: crate::ports::PortError) -> Error {
    crate::config::ConfigError::from(e).into()
}

/// Reuse `branch` if it exists (locally or on origin), else plan it new from the
/// current HEAD.
fn branch_plan(main: &Path, toplevel: &Path, branch: &str) -> Result<BranchPlan> {
    if git::local_branch_exists(main, branch)? {
        let commit = commit_of(main, &format!("refs/heads/{branch}"))?;
        return Ok(BranchPlan::Reuse {
            branch: branch.to_string(),
            commit,
        });
    }
    let remote = format!("refs/remotes/origin/{branch}");
    if git::ref_exists(main, &remote)? {
        let commit = commit_of(main, &remote)?;
        return Ok(BranchPlan::Reuse {
            branch: branch.to_string(),
            commit,
        });
    }
    let start = git::head_commit(toplevel)?.ok_or(ProvisionError::NoCommits)?;
    Ok(BranchPlan::New {
        branch: branch.to_string(),
        start,
    })
}

fn commit_of(repo: &Path, refname: &str) -> Result<Option<String>> {
    Ok(git::ref_commit(repo, refname)?)
}

/// Refuse when Docker still holds containers or volumes of `project` (a new instance
/// must not inherit an old one's database volume), and when Docker cannot be asked.
/// What an earlier local-prod destroyed with `--keep-volumes` left: only volumes, each
/// one of the compose file's own (`<id>_<key>`, found by compose's project label).
/// Anything else is refused like any leftover when `refuse_others`.
fn kept_volumes(
    id: &str,
    stack: Option<&Stack>,
    refuse_others: bool,
) -> Result<Vec<String>, ProvisionError> {
    let own: Vec<String> = stack
        .map(|st| {
            st.model
                .project_volumes(id)
                .into_iter()
                .map(|v| v.name)
                .collect()
        })
        .unwrap_or_default();
    if let Ok(res) = docker::project_resources(id)
        && res.containers.is_empty()
        && !res.volumes.is_empty()
        && res.volumes.iter().all(|v| own.contains(v))
    {
        return Ok(res.volumes);
    }
    if refuse_others {
        check_no_leftovers(id)?;
    }
    Ok(Vec::new())
}

pub fn check_no_leftovers(project: &str) -> Result<(), ProvisionError> {
    match docker::project_resources(project) {
        Ok(res) if res.containers.is_empty() && res.volumes.is_empty() => Ok(()),
        Ok(res) => Err(ProvisionError::Leftovers {
            project: project.to_string(),
            summary: res.summary(),
            cleanup: cleanup_command(&res),
        }),
        Err(e) => Err(ProvisionError::LeftoversUnknown {
            project: project.to_string(),
            reason: e.to_string(),
        }),
    }
}

fn cleanup_command(res: &docker::ProjectResources) -> String {
    let mut parts = Vec::new();
    if !res.containers.is_empty() {
        parts.push(format!("docker rm -f {}", res.containers.join(" ")));
    }
    if !res.volumes.is_empty() {
        parts.push(format!("docker volume rm {}", res.volumes.join(" ")));
    }
    parts.join(" && ")
}

/// Copy the configured files (e.g. an example settings file) into a new checkout when
/// the target is missing. The paths come from the repository's own config, so they are
/// untrusted: a path with a symlink anywhere on it (which could lead out of the
/// checkout) is skipped with a warning.
pub fn copy_files(config: &Config, root: &Path, reporter: &dyn Reporter) {
    for f in &config.copy_files {
        let (from, to) = (root.join(&f.from), root.join(&f.to));
        let from_ok = no_symlink_on_the_way(root, &f.from)
            && std::fs::symlink_metadata(&from).is_ok_and(|m| m.is_file());
        if !from_ok {
            continue;
        }
        if std::fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        if !no_symlink_on_the_way(root, &f.to) {
            reporter.warn(&format!(
                "not copying `{}` to `{}`: a symlink is on the way",
                f.from, f.to
            ));
            continue;
        }
        let copied = to
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::copy(&from, &to).map(|_| ()));
        if let Err(e) = copied {
            reporter.warn(&format!("could not copy `{}` to `{}`: {e}", f.from, f.to));
        }
    }
}

/// Whether no existing component of `root/rel` (below `root`) is a symlink.
fn no_symlink_on_the_way(root: &Path, rel: &str) -> bool {
    let mut at = root.to_owned();
    for part in Path::new(rel).components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return false,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    true
}

/// Write the env file of an instance: the layout's keys and the automatic ports.
pub fn write_env_file(
    config: &Config,
    root: &Path,
    instance_id: &str,
    slot: u32,
    created_at: &str,
    auto: &[(String, u16)],
) -> Result<()> {
    let mut vars = layout::env_vars(config, instance_id, slot, created_at).map_err(config_error)?;
    for (k, v) in auto {
        vars.insert(k.clone(), v.to_string());
    }
    let path = root.join(&config.env_file);
    // Temp files of an earlier write that was killed before its rename.
    for stale in crate::fsutil::leftover_temp_files(&path) {
        let _ = std::fs::remove_file(stale);
    }
    envfile::save(&path, &vars).map_err(|source| ProvisionError::EnvWrite { path, source })?;
    Ok(())
}

/// Whether `path` is what a create killed half-way leaves: a linked worktree of `main`
/// on `branch`, with no env file or one naming `id`, and nothing uncommitted but the
/// files kinfra itself writes. Such a worktree is safe to adopt.
pub fn is_orphan_worktree(
    config: &Config,
    main: &Path,
    path: &Path,
    id: &str,
    branch: &str,
) -> Result<bool> {
    let is_real_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if !is_real_dir {
        return Ok(false);
    }
    let here = canonical(path);
    let listed = git::worktree_list(main)?;
    let Some(wt) = listed.iter().skip(1).find(|w| canonical(&w.path) == here) else {
        return Ok(false);
    };
    if wt.branch.as_deref() != Some(branch) {
        return Ok(false);
    }
    let env_path = path.join(&config.env_file);
    if env_path.exists() {
        match envfile::EnvFile::load(&env_path) {
            Ok(env) if env.get("INSTANCE_ID") == Some(id) => {}
            _ => return Ok(false),
        }
    }
    let ours: Vec<&str> = std::iter::once(config.env_file.as_str())
        .chain(config.copy_files.iter().map(|f| f.to.as_str()))
        .collect();
    let env_tmp = format!(".{}.tmp.", config.env_file);
    Ok(git::uncommitted(path)?
        .iter()
        .all(|f| ours.contains(&f.as_str()) || f.starts_with(&env_tmp)))
}

/// Whether `root` holds what an `init` killed half-way leaves: an env file naming `id`
/// while nothing is registered at `root` or under `id`.
pub fn is_interrupted_init(config: &Config, registry: &Registry, root: &Path, id: &str) -> bool {
    let env_path = root.join(&config.env_file);
    if !env_path.is_file() {
        return false;
    }
    let names_id =
        envfile::EnvFile::load(&env_path).is_ok_and(|e| e.get("INSTANCE_ID") == Some(id));
    let known = registry.at_path(root).is_some() || registry.all().any(|e| e.instance_id == id);
    names_id && !known
}

/// Whether `path` is what a local-prod create killed half-way leaves: an independent
/// clone (not a linked worktree) with the main repository's origin, and no env file or
/// one naming local-prod's id.
fn is_orphan_clone(
    config: &Config,
    main: &Path,
    path: &Path,
    origin: Option<&str>,
) -> Result<bool> {
    let is_real_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if !is_real_dir {
        return Ok(false);
    }
    let Some(info) = git::repo_info(path)? else {
        return Ok(false);
    };
    if info.is_linked_worktree || canonical(&info.toplevel) != canonical(path) {
        return Ok(false);
    }
    // `git clone` points origin at the main repository until kinfra re-points it.
    let main_path = main.display().to_string();
    let found = git::origin_url(path)?;
    if found.as_deref() != origin && found.as_deref() != Some(main_path.as_str()) {
        return Ok(false);
    }
    let env_path = path.join(&config.env_file);
    Ok(!env_path.exists()
        || envfile::EnvFile::load(&env_path)
            .is_ok_and(|e| e.get("INSTANCE_ID") == Some(config.local_prod_id.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CopyFile;
    use crate::report::Capture;
    use std::os::unix::fs::symlink;

    fn config_copying(pairs: &[(&str, &str)]) -> Config {
        let mut config = Config::builtin();
        config.copy_files = pairs
            .iter()
            .map(|(from, to)| CopyFile {
                from: (*from).into(),
                to: (*to).into(),
            })
            .collect();
        config
    }

    /// `copy_files` comes from the repository's config: a symlink on the way of its
    /// source or its target (which could lead out of the checkout) is never followed.
    #[test]
    fn copy_files_never_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("checkout"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "outside data").unwrap();
        std::fs::write(root.join("sub/settings.example"), "example").unwrap();
        // A source that is a symlink to a file outside; a source under a symlinked
        // directory; a target under a symlinked directory; a target that is a symlink.
        symlink(outside.join("secret"), root.join("linked-source")).unwrap();
        symlink(&outside, root.join("out")).unwrap();
        symlink(outside.join("victim"), root.join("dangling-target")).unwrap();
        let config = config_copying(&[
            ("linked-source", "copied-secret"),
            ("out/secret", "copied-through-dir"),
            ("sub/settings.example", "out/planted"),
            ("sub/settings.example", "dangling-target"),
            ("sub/settings.example", "sub/settings"),
        ]);
        let reporter = Capture::default();
        copy_files(&config, &root, &reporter);

        assert!(!root.join("copied-secret").exists());
        assert!(!root.join("copied-through-dir").exists());
        assert!(!outside.join("planted").exists());
        assert!(!outside.join("victim").exists());
        let mut left: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["secret"]);
        assert_eq!(
            std::fs::read_to_string(root.join("sub/settings")).unwrap(),
            "example"
        );
        let lines = reporter.lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("out/planted") && l.contains("symlink")),
            "{lines:?}"
        );
    }
}
