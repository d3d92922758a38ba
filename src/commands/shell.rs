//! `kinfra sandbox shell [SERVICE]` (and for local-prod): bash in the service's
//! container, else sh; the shell's own exit code is returned.

use std::io::IsTerminal;

use crate::context::{self, Ctx, Want};
use crate::docker;
use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Service to enter.
    #[arg(default_value = "backend")]
    pub service: String,
}

const PICK_SHELL: &str = "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi";

pub fn run(ctx: &Ctx, args: &Args, want: Want) -> Result<u8> {
    let registry = ctx.registry()?;
    let inst = context::current_instance(ctx, &registry, want)?;
    let project = super::compose_project(&ctx.config, &inst)?;
    docker::ensure_available()?;
    let flavor = crate::compose::detect()?;
    let mut sub = vec!["exec"];
    if !std::io::stdin().is_terminal() {
        sub.push("-T");
    }
    sub.extend([args.service.as_str(), "sh", "-c", PICK_SHELL]);
    let status = project
        .command(flavor, &sub)
        .status(true)
        .map_err(|e| Error::failure(e.to_string()))?;
    Ok(super::exit_code_of(status))
}
