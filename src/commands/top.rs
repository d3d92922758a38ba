//! `kinfra top` — the terminal dashboard of every registered instance.

use crate::context::Ctx;
use crate::error::Result;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra top
  NO_COLOR=1 kinfra top

Keys: up/down (or j/k) select an instance; u starts it, d stops it, l shows its last log
lines; q, Esc or Ctrl-C quit. Needs a terminal of at least 80x24.")]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: &Args) -> Result<u8> {
    crate::top::run(&ctx.config, &ctx.cwd)?;
    Ok(0)
}
