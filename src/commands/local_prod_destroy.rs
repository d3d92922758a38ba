//! `kinfra local-prod destroy [--force] [--dry-run] [--yes] [--no-snapshot]
//! [--keep-volumes]` — the target comes only from the registry's `local_prod` entry,
//! never from the current directory. Its volumes are snapshotted first unless told.

use crate::context::Ctx;
use crate::destroy::{self, DestroyError, Options};
use crate::error::Result;
use crate::instance::Kind;
use crate::output;
use crate::registry::canonical;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra local-prod destroy --dry-run   # from anywhere: shows the registered local-prod's plan
  kinfra local-prod destroy --yes
  kinfra local-prod destroy --yes --no-hooks   # without the pre_destroy hooks
  kinfra local-prod destroy --yes                  # snapshots its volumes first
  kinfra local-prod destroy --yes --no-snapshot
  kinfra local-prod destroy --yes --keep-volumes   # a later `local-prod create` adopts them")]
pub struct Args {
    /// `--yes`, and go on when Docker cannot confirm the stop.
    #[arg(long)]
    pub force: bool,
    /// Print what would be stopped, removed and unregistered, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the prompt only.
    #[arg(short, long)]
    pub yes: bool,
    #[command(flatten)]
    pub hooks: super::hooks::NoHooks,
    /// Do not snapshot the volumes first.
    #[arg(long)]
    pub no_snapshot: bool,
    /// Leave the volumes on the engine (a later `local-prod create` adopts them).
    #[arg(long)]
    pub keep_volumes: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let registry = ctx.registry()?;
    let entry = registry
        .local_prod
        .clone()
        .ok_or(DestroyError::NoLocalProd)?;
    let mut plan = destroy::plan(&ctx.config, &entry, Kind::LocalProd, true)?;
    plan.keep_volumes = args.keep_volumes;
    if !args.no_snapshot
        && plan
            .docker
            .as_ref()
            .is_ok_and(|res| !res.volumes.is_empty())
    {
        plan.snapshot = Some(crate::snapshot::default_name(&entry.instance_id));
    }
    if args.dry_run {
        super::print_lines(&plan.describe());
        return Ok(0);
    }
    let target = canonical(&plan.path);
    if !canonical(&ctx.cwd).starts_with(&target) {
        output::note(&format!(
            "destroying the registered local-prod at `{}` (not the current directory)",
            plan.path.display()
        ));
    }
    for line in plan.describe() {
        output::note(&line);
    }
    super::sandbox_destroy::confirm(
        args.yes || args.force,
        &format!(
            "destroy local-prod `{}` at `{}`",
            entry.instance_id,
            plan.path.display()
        ),
    )?;
    let opts = Options {
        rescue: false,
        force: args.force,
        delete_branch: false,
        keep_volumes: args.keep_volumes,
    };
    let reporter = output::Term::new();
    super::hooks::pre_destroy(ctx, &plan, args.hooks, &reporter)?;
    if plan.foreign_refusal().is_none() {
        super::snapshot::before_destroy(ctx, &plan)
            .map_err(|e| e.hint("pass --no-snapshot to destroy without taking one"))?;
    }
    destroy::execute(&ctx.config, &plan, opts, &reporter)?;
    output::done(&format!(
        "destroyed local-prod `{}`; the clone at `{}` was kept (only its `{}` was removed)",
        entry.instance_id,
        plan.path.display(),
        ctx.config.env_file
    ));
    Ok(0)
}
