//! `kinfra sandbox shell [SERVICE]` (and for local-prod): bash in the service's
//! container, else sh; the shell's own exit code is returned.

use std::io::IsTerminal;

use crate::context::Ctx;
use crate::error::Result;
use crate::instance::Kind;
use crate::lifecycle;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox shell              # a shell in `backend`
  kinfra sandbox shell db
  echo 'ls /data' | kinfra sandbox shell backend
  kinfra sandbox shell my-feature db    # another instance, from anywhere")]
pub struct Args {
    /// `[NAME] [SERVICE]`: the instance (default: the one you are in) and the service
    /// (default: `backend`). With one word, it is the instance when one has that name.
    #[arg(value_name = "NAME|SERVICE")]
    pub first: Option<String>,
    /// Service to enter (default: `backend`).
    #[arg(value_name = "SERVICE")]
    pub second: Option<String>,
    #[command(flatten)]
    pub instance: super::InstanceArg,
}

const PICK_SHELL: &str = "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi";

pub fn run(ctx: &Ctx, args: &Args, kind: Kind) -> Result<u8> {
    let (sel, service) = super::name_and_arg(
        ctx,
        kind,
        &args.instance,
        args.first.as_deref(),
        args.second.as_deref(),
        &lifecycle::has_service,
    )?;
    let service = service.unwrap_or_else(|| "backend".into());
    let target = lifecycle::resolve(ctx, kind, &sel)?;
    let ctx = &target.ctx;
    lifecycle::check_shell(&target, &service)?;
    let mut sub = vec!["exec"];
    if !std::io::stdin().is_terminal() {
        sub.push("-T");
    }
    sub.extend([service.as_str(), "sh", "-c", PICK_SHELL]);
    let reporter = output::Term::new();
    lifecycle::touch(&ctx.config, target.id(), &reporter);
    target.compose_attached(&sub, &reporter)
}
