//! `kinfra local-prod init [--dry-run]` — make the current clone local-prod.

use crate::context::Ctx;
use crate::error::Result;
use crate::output;
use crate::provision;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  cd ~/dev/ktrdr-prod && kinfra local-prod init")]
pub struct Args {
    /// Print what would be done, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let plan = provision::plan_local_prod_init(ctx)?;
    if args.dry_run {
        super::print_lines(&plan.describe(&ctx.config));
        return Ok(0);
    }
    let created = provision::execute(&ctx.config, &plan, &output::Term::new())?;
    super::print_created(&ctx.config, "initialized local-prod", &created);
    output::hint("kinfra local-prod up");
    output::data(&created.path.display().to_string());
    Ok(0)
}
