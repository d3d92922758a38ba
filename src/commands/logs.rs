//! `kinfra sandbox logs [SERVICE] [-f] [--tail N]` (and for local-prod).

use std::io::IsTerminal;

use crate::context::Ctx;
use crate::error::Result;
use crate::instance::Kind;
use crate::lifecycle;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox logs               # last 100 lines of every service
  kinfra sandbox logs backend -f    # follow one service
  kinfra sandbox logs db --tail 20")]
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

pub fn run(ctx: &Ctx, args: &Args, kind: Kind) -> Result<u8> {
    let target = lifecycle::resolve(ctx, kind)?;
    lifecycle::check_logs(&target, args.service.as_deref())?;
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
    target.compose_attached(&sub, &output::Term::new())
}
