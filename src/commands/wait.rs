//! `kinfra wait [NAME] [--timeout SECS]` — block until the instance's startability gate
//! passes: exit 0 ready, 8 timed out, 7 a service failed, 9 not running (at once).

use std::time::Duration;

use crate::context::Ctx;
use crate::error::Result;
use crate::lifecycle;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra wait                          # the instance you are in
  kinfra wait my-feature --timeout 300 && run-tests
  kinfra wait ktrdr-prod               # local-prod, by its id")]
pub struct Args {
    /// The instance (id or the name given to create), from any directory; default: the
    /// one you are in.
    #[arg(add = clap_complete::ArgValueCandidates::new(super::completions::instance_names))]
    pub name: Option<String>,
    #[command(flatten)]
    pub instance: super::InstanceArg,
    /// Seconds to wait (default: `gate.timeout`).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: Option<u64>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let sel = super::selector(&args.instance, args.name.as_deref())?;
    // Either kind: a name says which; here, the instance around the current directory.
    let found = crate::instance::select(ctx, &sel, None)?;
    let kind = found.inst.kind;
    let sel = crate::instance::Selector::Named(found.inst.id().to_string());
    let target = lifecycle::resolve(&found.ctx, kind, &sel)?;
    let report = lifecycle::wait(
        &target,
        args.timeout.map(Duration::from_secs),
        &output::Term::new(),
    )?;
    output::done(&format!(
        "`{}` is ready (gate {:.2}s)",
        target.id(),
        report.elapsed.as_secs_f64()
    ));
    Ok(0)
}
