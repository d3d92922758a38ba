//! `kinfra sandbox down [--volumes]` / `kinfra local-prod down [--volumes]` — for
//! local-prod always with its profile, so profile-only services stop too.

use crate::context::{self, Ctx, Want};
use crate::docker;
use crate::error::{Error, Result};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also remove the instance's volumes (its data).
    #[arg(long)]
    pub volumes: bool,
}

pub fn run(ctx: &Ctx, args: &Args, want: Want) -> Result<u8> {
    let registry = ctx.registry()?;
    let inst = context::current_instance(ctx, &registry, want)?;
    let project = super::compose_project(&ctx.config, &inst)?;
    docker::ensure_available()?;
    let flavor = crate::compose::detect()?;
    let mut sub = vec!["down", "--remove-orphans"];
    if args.volumes {
        sub.push("--volumes");
    }
    let cmd = project.command(flavor, &sub).stdout_to_stderr();
    output::verbose(&cmd.display());
    let status = cmd
        .status(false)
        .map_err(|e| Error::failure(e.to_string()))?;
    if !status.success() {
        return Err(Error::failure(format!(
            "`{}` failed ({})",
            cmd.display(),
            crate::process::describe_status(status)
        )));
    }
    output::done(&format!(
        "`{}` stopped{}",
        inst.entry.instance_id,
        if args.volumes {
            " and its volumes removed"
        } else {
            ""
        }
    ));
    Ok(0)
}
