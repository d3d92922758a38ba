//! `kinfra completions SHELL`

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

pub fn run(args: &Args) -> Result<u8> {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "kinfra",
        &mut std::io::stdout(),
    );
    Ok(0)
}
