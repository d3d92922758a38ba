//! `kinfra sandbox down [--volumes]` / `kinfra local-prod down [--volumes]` — for
//! local-prod always with its profile, so profile-only services stop too.

use crate::context::Ctx;
use crate::error::Result;
use crate::instance::Kind;
use crate::lifecycle;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox down              # stop the containers, keep the data
  kinfra sandbox down my-feature   # by name, from any directory
  kinfra sandbox down --volumes    # also remove the instance's volumes
  kinfra local-prod down --dry-run
  kinfra sandbox down --no-hooks   # without the pre_down hooks of kinfra.toml")]
pub struct Args {
    /// The instance (id or the name given to create), from any directory; default: the
    /// one you are in (local-prod: the registered one).
    #[arg(add = clap_complete::ArgValueCandidates::new(super::completions::instance_names))]
    pub name: Option<String>,
    #[command(flatten)]
    pub instance: super::InstanceArg,
    /// Also remove the instance's volumes (its data).
    #[arg(long)]
    pub volumes: bool,
    /// Print the compose command that would run, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub hooks: super::hooks::NoHooks,
}

pub fn run(ctx: &Ctx, args: &Args, kind: Kind) -> Result<u8> {
    let sel = super::selector(&args.instance, args.name.as_deref())?;
    let target = lifecycle::resolve(ctx, kind, &sel)?;
    super::snapshot::warn_interrupted(&target);
    let ctx = &target.ctx;
    if args.dry_run {
        super::print_lines(&[
            format!("stop {} `{}`", target.inst.kind, target.id()),
            format!(
                "  `{}`",
                target
                    .project
                    .command(target.flavor, &lifecycle::down_args(args.volumes))
                    .display()
            ),
        ]);
        return Ok(0);
    }
    let reporter = output::Term::new();
    let _lock = target.lock(&ctx.config, &format!("{} down", kind.label()), &reporter)?;
    super::hooks::run_stage(
        ctx,
        crate::hooks::Stage::PreDown,
        &super::hooks::site_of(&target.inst),
        super::hooks::policy(args.hooks),
        &reporter,
    )?;
    lifecycle::down(&ctx.config, &target, args.volumes, &reporter)?;
    output::done(&format!(
        "`{}` stopped{}",
        target.id(),
        if args.volumes {
            " and its volumes removed"
        } else {
            ""
        }
    ));
    Ok(0)
}
