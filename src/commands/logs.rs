//! `kinfra sandbox logs [SERVICE] [-f] [--tail N]` (and for local-prod).

use std::io::IsTerminal;

use crate::context::{self, Ctx, Want};
use crate::docker;
use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this service.
    pub service: Option<String>,
    /// Keep following new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// Lines from the end of each log.
    #[arg(long, default_value_t = 100)]
    pub tail: u32,
}

pub fn run(ctx: &Ctx, args: &Args, want: Want) -> Result<u8> {
    let registry = ctx.registry()?;
    let inst = context::current_instance(ctx, &registry, want)?;
    let project = super::compose_project(&ctx.config, &inst)?;
    docker::ensure_available()?;
    let flavor = crate::compose::detect()?;
    let tail = args.tail.to_string();
    let mut sub = vec!["logs", "--tail", tail.as_str()];
    if !std::io::stdout().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        sub.push("--no-color");
    }
    if args.follow {
        sub.push("--follow");
    }
    if let Some(s) = &args.service {
        sub.push(s);
    }
    let status = project
        .command(flavor, &sub)
        .status(true)
        .map_err(|e| Error::failure(e.to_string()))?;
    Ok(super::exit_code_of(status))
}
