//! `kinfra local-prod destroy [--force] [--dry-run] [--yes]` — the target comes only
//! from the registry's `local_prod` entry, never from the current directory.

use crate::context::Ctx;
use crate::destroy;
use crate::error::{Error, Result};
use crate::output;
use crate::registry::canonical;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skip the prompt; go on when Docker cannot confirm the stop.
    #[arg(long)]
    pub force: bool,
    /// Print what would be stopped, removed and unregistered, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the prompt only.
    #[arg(short, long)]
    pub yes: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let registry = ctx.registry()?;
    let Some(entry) = registry.local_prod.clone() else {
        return Err(
            Error::failure("no local-prod is registered; nothing to destroy")
                .hint("`kinfra sandbox list` shows what is registered"),
        );
    };
    let plan = destroy::plan(&ctx.config, &entry, true, true)?;
    if args.dry_run {
        for line in plan.describe() {
            output::data(&line);
        }
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
    super::sandbox_destroy::confirm_destroy(
        args.yes,
        args.force,
        &format!(
            "destroy local-prod `{}` at `{}`",
            entry.instance_id,
            plan.path.display()
        ),
    )?;
    destroy::execute(&ctx.config, &plan, args.force)?;
    output::done(&format!(
        "destroyed local-prod `{}`; the clone at `{}` was kept (only its `{}` was removed)",
        entry.instance_id,
        plan.path.display(),
        ctx.config.env_file
    ));
    Ok(0)
}
