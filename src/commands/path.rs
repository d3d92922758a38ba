//! `kinfra sandbox path NAME`: the instance's directory, for `cd "$(kinfra sandbox path
//! NAME)"`.

use crate::context::Ctx;
use crate::error::Result;
use crate::instance::{self, Selector};
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  cd \"$(kinfra sandbox path my-feature)\"")]
pub struct Args {
    /// The instance (id or the name given to create).
    #[arg(add = clap_complete::ArgValueCandidates::new(super::completions::instance_names))]
    pub name: String,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let found = instance::select(ctx, &Selector::Named(args.name.clone()), None)?;
    output::data(&found.inst.root.display().to_string());
    Ok(0)
}
