//! `kinfra sandbox logs [SERVICE] [-f] [--tail N]` (and for local-prod).

use std::io::IsTerminal;

use crate::context::{Ctx, Want};
use crate::error::Result;

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
    let running = super::resolve_running(ctx, want)?;
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
    running.compose_attached(&sub)
}
