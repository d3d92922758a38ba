//! `kinfra sandbox destroy [NAME] [--keep-worktree] [--force] [--dry-run] [--yes]`
//! and `kinfra sandbox destroy --all`.

use crate::context::{self, Ctx, Want};
use crate::destroy::{self, Plan, Removal};
use crate::error::{Error, Result};
use crate::output;
use crate::registry::Entry;
use crate::slug;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sandbox to destroy, by instance id or name (default: the one you are in).
    /// Taken from the registry, never from the directory name.
    #[arg(conflicts_with = "all")]
    pub name: Option<String>,
    /// Destroy every registered sandbox (never local-prod).
    #[arg(long)]
    pub all: bool,
    /// Unregister and stop containers, but leave the worktree on disk.
    #[arg(long)]
    pub keep_worktree: bool,
    /// Skip the prompt; destroy even with uncommitted changes (kept as a rescue commit)
    /// or when Docker cannot confirm the stop.
    #[arg(long)]
    pub force: bool,
    /// Print what would be stopped, removed and unregistered, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the prompt only; refusals still apply.
    #[arg(short, long)]
    pub yes: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let registry = ctx.registry()?;
    let targets: Vec<Entry> = if args.all {
        registry.instances.clone()
    } else if let Some(name) = &args.name {
        vec![lookup(ctx, &registry, name)?]
    } else {
        vec![context::current_instance(ctx, &registry, Want::Sandbox)?.entry]
    };
    if targets.is_empty() {
        output::note("no sandboxes are registered");
        return Ok(0);
    }
    let mut plans = Vec::new();
    for entry in &targets {
        plans.push(destroy::plan(
            &ctx.config,
            entry,
            false,
            args.keep_worktree,
        )?);
    }
    let refusals: Vec<Error> = if args.force {
        Vec::new()
    } else {
        plans.iter().filter_map(Plan::dirty_refusal).collect()
    };
    if args.dry_run {
        for plan in &plans {
            for line in plan.describe() {
                output::data(&line);
            }
        }
        for r in &refusals {
            output::warn(&format!("would refuse: {}", r.message));
        }
        return Ok(0);
    }
    if let Some(first) = refusals.into_iter().next() {
        return Err(first);
    }
    for plan in &plans {
        for line in plan.describe() {
            output::note(&line);
        }
    }
    confirm(args, &plans)?;
    let mut failed = 0;
    for plan in &plans {
        match destroy::execute(&ctx.config, plan, args.force) {
            Ok(outcome) => {
                output::done(&format!("destroyed sandbox `{}`", plan.entry.instance_id));
                if let (Some(rescue), Removal::Worktree { main }) = (&outcome.rescue, &plan.removal)
                {
                    output::note(&format!(
                        "uncommitted work saved as `{}` ({})",
                        rescue.refname, rescue.commit
                    ));
                    output::hint(&format!(
                        "restore it with: {}",
                        destroy::restore_hint(main, &plan.path, rescue)
                    ));
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
    if failed > 0 {
        return Err(Error::failure(format!(
            "{failed} of {} sandboxes were not destroyed",
            plans.len()
        )));
    }
    Ok(0)
}

/// A registered sandbox by instance id, or by the name it was created with.
fn lookup(ctx: &Ctx, registry: &crate::registry::Registry, name: &str) -> Result<Entry> {
    let by_slug = format!("{}{}", ctx.config.sandbox_prefix, slug::slugify(name));
    registry
        .sandbox(name)
        .or_else(|| registry.sandbox(&by_slug))
        .cloned()
        .ok_or_else(|| {
            let hint = if registry
                .local_prod
                .as_ref()
                .is_some_and(|lp| lp.instance_id == name)
            {
                "that is local-prod; use `kinfra local-prod destroy`".to_string()
            } else {
                "`kinfra sandbox list` shows the registered sandboxes".to_string()
            };
            Error::failure(format!("no registered sandbox is called `{name}`")).hint(hint)
        })
}

/// Ask on a terminal; refuse without one unless --yes or --force.
pub fn confirm_destroy(yes: bool, force: bool, what: &str) -> Result<()> {
    if yes || force {
        return Ok(());
    }
    if !output::interactive() {
        return Err(Error::failure(format!(
            "refusing to {what} without confirmation: no terminal to ask on"
        ))
        .hint("pass --yes to confirm (refusals still apply), or --dry-run to see the plan"));
    }
    if output::confirm(&format!("{what}?")) {
        Ok(())
    } else {
        Err(Error::failure("cancelled; nothing was changed"))
    }
}

fn confirm(args: &Args, plans: &[Plan]) -> Result<()> {
    let what = match plans {
        [one] => format!(
            "destroy sandbox `{}` at `{}`",
            one.entry.instance_id,
            one.path.display()
        ),
        many => format!("destroy these {} sandboxes", many.len()),
    };
    confirm_destroy(args.yes, args.force, &what)
}
