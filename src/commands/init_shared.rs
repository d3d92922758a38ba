//! `kinfra sandbox init-shared [--minimal | --from DIR] [--dry-run]` — the shared data
//! directories every instance mounts; existing data is never deleted.

use std::path::PathBuf;

use crate::context::Ctx;
use crate::error::Result;
use crate::output;
use crate::shared;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox init-shared --minimal            # the empty structure, nothing copied
  kinfra sandbox init-shared --from ~/dev/ktrdr    # copy data, models, strategies from a checkout
  kinfra sandbox init-shared --from ../ktrdr --dry-run")]
pub struct Args {
    /// Copy the subdirectories (data, models, strategies for ktrdr) from this directory.
    /// A non-empty target is moved aside as a timestamped backup first (kept).
    #[arg(short = 'f', long, value_name = "DIR", conflicts_with = "minimal")]
    pub from: Option<PathBuf>,
    /// Create the empty structure and copy nothing (ktrdr's `--minimal`).
    #[arg(short = 'm', long)]
    pub minimal: bool,
    /// Print what would be created and copied (with sizes), and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let plan = shared::plan(&ctx.config, args.from.as_deref())?;
    if args.dry_run {
        super::print_lines(&plan.describe());
        return Ok(0);
    }
    for line in plan.describe() {
        output::note(&line);
    }
    shared::execute(&plan, &output::Term::new())?;
    output::done(&format!(
        "shared directories ready under `{}`",
        plan.dir.display()
    ));
    output::data(&plan.dir.display().to_string());
    Ok(0)
}
