//! `kinfra sandbox init [--slot N] [--name NAME] [--dry-run]`

use crate::context::Ctx;
use crate::error::Result;
use crate::output;
use crate::provision;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox init                  # this checkout, named after its directory
  kinfra sandbox init --name my-clone  # a different instance id
  kinfra sandbox init --slot 4")]
pub struct Args {
    /// Use this slot instead of the lowest free one whose ports are free.
    #[arg(long, allow_negative_numbers = true)]
    pub slot: Option<i64>,
    /// Instance id (a compose project name); default: the directory's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Print what would be done, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let plan = provision::plan_sandbox_init(ctx, args.name.as_deref(), args.slot)?;
    if args.dry_run {
        super::print_lines(&plan.describe(&ctx.config));
        return Ok(0);
    }
    let created = provision::execute(&ctx.config, &plan, &output::Term::new())?;
    super::print_created(&ctx.config, "initialized sandbox", &created);
    output::hint("kinfra sandbox up");
    output::data(&created.path.display().to_string());
    Ok(0)
}
