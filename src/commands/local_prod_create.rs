//! `kinfra local-prod create [--branch B] [--dry-run]` — an independent clone next to
//! the main repository, on slot 0.

use crate::context::Ctx;
use crate::error::Result;
use crate::output;
use crate::provision::{self, Checkout};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra local-prod create                # ../<project>-prod on the default branch
  kinfra local-prod create --branch main
  kinfra local-prod create --dry-run
  kinfra local-prod create --no-hooks     # without the post_create hooks of kinfra.toml")]
pub struct Args {
    /// Branch to check out (default: the repository's default branch).
    #[arg(long)]
    pub branch: Option<String>,
    /// Print what would be created, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub hooks: super::hooks::NoHooks,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let plan = provision::plan_local_prod_create(ctx, args.branch.as_deref())?;
    if args.dry_run {
        super::print_lines(&plan.describe(&ctx.config));
        return Ok(0);
    }
    let reporter = output::Term::new();
    let created = provision::execute(&ctx.config, &plan, &reporter)?;
    super::print_created(&ctx.config, "created local-prod", &created);
    if let Checkout::Clone { branch, .. } = &plan.checkout {
        output::note(&format!("  {:<12}{branch}", "Branch:"));
    }
    super::hooks::post_create(
        ctx,
        &created,
        crate::instance::Kind::LocalProd,
        args.hooks,
        &reporter,
    )?;
    output::hint(&format!(
        "cd {} && kinfra local-prod up",
        crate::process::shell_quote(&created.path.display().to_string())
    ));
    output::data(&created.path.display().to_string());
    Ok(0)
}
