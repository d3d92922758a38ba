//! `kinfra env` — this instance's env file as `export` lines for `eval`.

use crate::context::{self, Ctx, Want};
use crate::envfile;
use crate::error::Result;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: &Args) -> Result<u8> {
    let registry = ctx.registry()?;
    let inst = context::current_instance(ctx, &registry, Want::Either)?;
    for line in envfile::render(&inst.env.to_map()).lines() {
        output::data(&format!("export {line}"));
    }
    Ok(0)
}
