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
  echo 'ls /data' | kinfra sandbox shell backend")]
pub struct Args {
    /// Service to enter.
    #[arg(default_value = "backend")]
    pub service: String,
}

const PICK_SHELL: &str = "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi";

pub fn run(ctx: &Ctx, args: &Args, kind: Kind) -> Result<u8> {
    let target = lifecycle::resolve(ctx, kind)?;
    lifecycle::check_shell(&target, &args.service)?;
    let mut sub = vec!["exec"];
    if !std::io::stdin().is_terminal() {
        sub.push("-T");
    }
    sub.extend([args.service.as_str(), "sh", "-c", PICK_SHELL]);
    let reporter = output::Term::new();
    lifecycle::touch(&ctx.config, target.id(), &reporter);
    target.compose_attached(&sub, &reporter)
}
