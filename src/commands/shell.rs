//! `kinfra sandbox shell [SERVICE]` (and for local-prod): bash in the service's
//! container, else sh; the shell's own exit code is returned.

use std::io::IsTerminal;

use crate::context::{Ctx, Want};
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Service to enter.
    #[arg(default_value = "backend")]
    pub service: String,
}

const PICK_SHELL: &str = "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi";

pub fn run(ctx: &Ctx, args: &Args, want: Want) -> Result<u8> {
    let running = super::resolve_running(ctx, want)?;
    let mut sub = vec!["exec"];
    if !std::io::stdin().is_terminal() {
        sub.push("-T");
    }
    sub.extend([args.service.as_str(), "sh", "-c", PICK_SHELL]);
    running.compose_attached(&sub)
}
