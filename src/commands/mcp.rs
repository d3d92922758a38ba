//! `kinfra mcp [--instance ID] [--allow-exec]`: an MCP server on stdio for AI agents,
//! scoped to one instance.

use crate::context::Ctx;
use crate::error::Result;
use crate::mcp;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra mcp                                  # serve the instance you are in
  kinfra mcp --instance my-feature            # serve one instance, from any directory
  kinfra mcp --instance my-feature --allow-exec
  claude mcp add kinfra -- kinfra mcp --instance my-feature

stdout carries JSON-RPC only; progress and errors go to stderr. Calls about another
instance are refused; local-prod is read-only (no up, down, restart or exec).")]
pub struct Args {
    /// The instance to serve (id or the name given to create); default: the one you are in.
    #[arg(long = "instance", value_name = "ID", add = clap_complete::ArgValueCandidates::new(super::completions::instance_names))]
    pub instance: Option<String>,
    /// Offer the `exec` tool (run a command in a service container).
    #[arg(long)]
    pub allow_exec: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    mcp::serve(
        ctx,
        &mcp::Options {
            instance: args.instance.clone(),
            allow_exec: args.allow_exec,
        },
    )
}
