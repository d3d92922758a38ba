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
  kinfra sandbox logs db --tail 20
  kinfra sandbox logs my-feature backend   # another instance, from anywhere")]
pub struct Args {
    /// `[NAME] [SERVICE]`: the instance (default: the one you are in) and the service
    /// (default: all). With one word, it is the instance when one has that name.
    #[arg(value_name = "NAME|SERVICE")]
    pub first: Option<String>,
    /// Only this service.
    #[arg(value_name = "SERVICE")]
    pub second: Option<String>,
    #[command(flatten)]
    pub instance: super::InstanceArg,
    /// Keep following new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// Lines from the end of each log.
    #[arg(long, default_value_t = 100)]
    pub tail: u32,
}

pub fn run(ctx: &Ctx, args: &Args, kind: Kind) -> Result<u8> {
    let (sel, service) = super::name_and_arg(
        ctx,
        kind,
        &args.instance,
        args.first.as_deref(),
        args.second.as_deref(),
        &lifecycle::has_service,
    )?;
    let target = lifecycle::resolve(ctx, kind, &sel)?;
    lifecycle::check_logs(&target, service.as_deref())?;
    let tail = args.tail.to_string();
    let mut sub = vec!["logs", "--tail", tail.as_str()];
    if !std::io::stdout().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        sub.push("--no-color");
    }
    if args.follow {
        sub.push("--follow");
    }
    if let Some(s) = &service {
        sub.push(s);
    }
    target.compose_attached(&sub, &output::Term::new())
}
