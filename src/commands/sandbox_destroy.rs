//! `kinfra sandbox destroy [NAME] [--keep-worktree] [--rescue] [--force] [--dry-run]
//! [--yes]` and `kinfra sandbox destroy --all`.

use crate::context::Ctx;
use crate::destroy::{self, DestroyError, Options, Plan, Removal};
use crate::error::Result;
use crate::instance::{self, Kind};
use crate::output;
use crate::registry::{Entry, canonical};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox destroy                      # the sandbox you are in (asks first)
  kinfra sandbox destroy my-feature --dry-run # what would be stopped, removed, unregistered
  kinfra sandbox destroy my-feature --yes     # no prompt; refuses uncommitted work
  kinfra sandbox destroy my-feature --rescue  # save uncommitted work as a rescue, then destroy
  kinfra sandbox destroy --all --yes
  kinfra sandbox destroy my-feature --yes --delete-branch   # its branch too, if merged
  kinfra sandbox destroy my-feature --yes --no-hooks        # without the pre_destroy hooks
  kinfra sandbox destroy my-feature --yes --snapshot        # snapshot its volumes first")]
pub struct Args {
    /// Sandbox to destroy, by instance id or name (default: the one you are in).
    /// Taken from the registry, never from the directory name.
    #[arg(conflicts_with = "all", add = clap_complete::ArgValueCandidates::new(super::completions::instance_names))]
    pub name: Option<String>,
    /// Destroy every registered sandbox of this project (never local-prod).
    #[arg(long)]
    pub all: bool,
    /// Unregister and stop containers, but leave the worktree on disk.
    #[arg(long)]
    pub keep_worktree: bool,
    /// Save uncommitted work as a rescue commit and go on, instead of refusing.
    #[arg(long)]
    pub rescue: bool,
    /// `--yes` and `--rescue`, and go on when Docker cannot confirm the stop.
    #[arg(long)]
    pub force: bool,
    /// Print what would be stopped, removed and unregistered, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the prompt only; refusals still apply.
    #[arg(short, long)]
    pub yes: bool,
    /// Also delete the sandbox's branch when kinfra created it and the main branch has
    /// all of its commits (otherwise it is kept, and destroy says why).
    #[arg(long)]
    pub delete_branch: bool,
    #[command(flatten)]
    pub hooks: super::hooks::NoHooks,
    /// Snapshot the sandbox's volumes first (`kinfra snapshot restore` puts them back).
    #[arg(long)]
    pub snapshot: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let registry = ctx.registry()?;
    let targets: Vec<Entry> = if args.all {
        // Only this project's sandboxes: a registry can be shared by several clones
        // (ktrdr's is per user), and --all must not reach into another one.
        let main = canonical(&ctx.require_repo()?.main_root);
        let (mine, others): (Vec<Entry>, Vec<Entry>) =
            registry.instances.iter().cloned().partition(|e| {
                e.parent_repo
                    .as_deref()
                    .is_some_and(|p| canonical(std::path::Path::new(p)) == main)
                    || canonical(e.path()) == main
            });
        if !others.is_empty() {
            output::note(&format!(
                "leaving {} sandbox(es) of other checkouts alone: {}",
                others.len(),
                others
                    .iter()
                    .map(|e| format!("`{}`", e.instance_id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        // Sandboxes on other hosts are destroyed by name, one at a time, never by --all.
        let remote: Vec<String> = crate::remote::RemoteIndex::load()
            .map(|index| {
                index
                    .instances
                    .values()
                    .filter(|e| canonical(std::path::Path::new(&e.local_repo)) == main)
                    .map(|e| format!("`{}` on `{}`", e.instance_id, e.host))
                    .collect()
            })
            .unwrap_or_default();
        if !remote.is_empty() {
            output::note(&format!(
                "leaving {} sandbox(es) on other hosts alone: {}; destroy each by name",
                remote.len(),
                remote.join(", ")
            ));
        }
        mine
    } else if let Some(name) = &args.name {
        vec![
            instance::lookup_sandbox(&ctx.config, &registry, name)
                .cloned()
                .ok_or_else(|| DestroyError::NoSuchSandbox {
                    name: name.clone(),
                    is_local_prod: registry
                        .local_prod
                        .as_ref()
                        .is_some_and(|lp| &lp.instance_id == name),
                })?,
        ]
    } else {
        vec![instance::current(ctx, &registry, Some(Kind::Sandbox))?.entry]
    };
    if targets.is_empty() {
        output::note("no sandboxes are registered");
        return Ok(0);
    }
    let mut plans = Vec::new();
    for entry in &targets {
        let mut plan = destroy::plan(&ctx.config, entry, Kind::Sandbox, args.keep_worktree)?;
        if args.snapshot
            && plan
                .docker
                .as_ref()
                .is_ok_and(|res| !res.volumes.is_empty())
        {
            plan.snapshot = Some(crate::snapshot::default_name(&entry.instance_id));
        }
        plans.push(plan);
    }
    let opts = Options {
        rescue: args.rescue || args.force,
        force: args.force,
        delete_branch: args.delete_branch,
        keep_volumes: false,
    };
    let refusals: Vec<DestroyError> = if opts.rescue {
        Vec::new()
    } else {
        plans.iter().filter_map(Plan::dirty_refusal).collect()
    };
    if args.dry_run {
        for plan in &plans {
            super::print_lines(&plan.describe());
        }
        for r in &refusals {
            output::warn(&format!("would refuse: {r}"));
        }
        return Ok(0);
    }
    if let Some(first) = refusals.into_iter().next() {
        return Err(first.into());
    }
    for plan in &plans {
        for line in plan.describe() {
            output::note(&line);
        }
    }
    let what = match plans.as_slice() {
        [one] => format!(
            "destroy sandbox `{}` at `{}`",
            one.entry.instance_id,
            one.path.display()
        ),
        many => format!("destroy these {} sandboxes", many.len()),
    };
    confirm(args.yes || args.force, &what)?;
    let reporter = output::Term::new();
    let mut failed = 0;
    let mut left_cwd = None;
    for plan in &plans {
        // A failing pre_destroy hook stops this instance's destroy before it changes
        // anything; then the snapshot (`--snapshot`), unless destroy will refuse anyway.
        let destroyed =
            super::hooks::pre_destroy(ctx, plan, args.hooks, &reporter).and_then(|()| {
                let refused = plan
                    .foreign_refusal()
                    .or_else(|| plan.dirty_refusal().filter(|_| !opts.rescue));
                match refused {
                    Some(_) => destroy::execute(&ctx.config, plan, opts, &reporter),
                    None => super::snapshot::before_destroy(ctx, plan)
                        .and_then(|_| destroy::execute(&ctx.config, plan, opts, &reporter)),
                }
            });
        match destroyed {
            Ok(outcome) => {
                output::done(&format!("destroyed sandbox `{}`", plan.entry.instance_id));
                match &outcome.branch {
                    Some(destroy::BranchFate::Deleted(b)) => {
                        output::done(&format!("deleted branch `{b}`"))
                    }
                    Some(destroy::BranchFate::Kept(b, why)) => {
                        output::note(&format!("kept branch `{b}`: {why}"))
                    }
                    None => {}
                }
                if let Some(rescue) = &outcome.rescue {
                    output::note(&format!("unsaved work kept as rescue `{}`", rescue.name()));
                    if let Some(r) = &rescue.refname {
                        output::note(&format!("  ref:       {r}"));
                    }
                    if let Some(d) = &rescue.dir {
                        output::note(&format!("  directory: {}", d.display()));
                    }
                    output::hint(&format!(
                        "restore it with: {}",
                        destroy::restore_hint(rescue)
                    ));
                }
                if let Removal::Worktree { main } = &plan.removal
                    && canonical(&ctx.cwd).starts_with(canonical(&plan.path))
                {
                    left_cwd = Some(main.clone());
                }
            }
            Err(e) if plans.len() == 1 => return Err(e),
            Err(e) => {
                failed += 1;
                output::error(&format!("`{}`: {}", plan.entry.instance_id, e.message));
                if let Some(h) = &e.hint {
                    output::hint(h);
                }
            }
        }
    }
    if let Some(main) = left_cwd {
        output::hint(&format!(
            "your shell is in a directory that is gone: cd {}",
            crate::process::shell_quote(&main.display().to_string())
        ));
    }
    if failed > 0 {
        return Err(DestroyError::Some {
            failed,
            total: plans.len(),
        }
        .into());
    }
    Ok(0)
}

/// Ask on a terminal; refuse without one unless the prompt is skipped.
pub fn confirm(skip: bool, what: &str) -> Result<(), DestroyError> {
    if skip {
        return Ok(());
    }
    if !output::interactive() {
        return Err(DestroyError::NoTerminal {
            what: what.to_string(),
        });
    }
    if output::confirm(&format!("{what}?")) {
        Ok(())
    } else {
        Err(DestroyError::Cancelled)
    }
}
