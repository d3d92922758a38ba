//! `kinfra sandbox down [--volumes]` / `kinfra local-prod down [--volumes]` — for
//! local-prod always with its profile, so profile-only services stop too.

use crate::context::{Ctx, Want};
use crate::error::Result;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also remove the instance's volumes (its data).
    #[arg(long)]
    pub volumes: bool,
}

pub fn run(ctx: &Ctx, args: &Args, want: Want) -> Result<u8> {
    let running = super::resolve_running(ctx, want)?;
    let mut sub = vec!["down", "--remove-orphans"];
    if args.volumes {
        sub.push("--volumes");
    }
    running.compose_streamed(&sub)?;
    output::done(&format!(
        "`{}` stopped{}",
        running.inst.entry.instance_id,
        if args.volumes {
            " and its volumes removed"
        } else {
            ""
        }
    ));
    Ok(0)
}
