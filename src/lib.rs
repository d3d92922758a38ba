//! kinfra: numbered, isolated copies of one Docker Compose stack, one per git checkout,
//! each on its own slot of host ports, recorded in a registry, never losing work.

pub mod cli;
pub mod commands;
pub mod compose;
pub mod config;
pub mod context;
pub mod crashpoint;
pub mod destroy;
pub mod docker;
pub mod doctor;
pub mod envfile;
pub mod error;
pub mod fsutil;
pub mod gate;
pub mod git;
pub mod layout;
pub mod output;
pub mod ports;
pub mod preflight;
pub mod probe;
pub mod process;
pub mod pyjson;
pub mod registry;
pub mod rescue;
pub mod secrets;
pub mod slug;
pub mod status;
pub mod timefmt;

use std::process::ExitCode;

use clap::Parser;

/// Parse the command line, run, and turn the outcome into the process exit code.
pub fn main_entry() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { error::Exit::Usage.code() } else { 0 });
        }
    };
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            output::error(&e.message);
            if let Some(hint) = &e.hint {
                output::hint(hint);
            }
            ExitCode::from(e.code())
        }
    }
}
