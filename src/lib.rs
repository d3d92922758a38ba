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
pub mod engine;
pub mod envfile;
pub mod envvars;
pub mod error;
pub mod fsutil;
pub mod gate;
pub mod git;
pub mod gitfiles;
pub mod hooks;
pub mod hosts;
pub mod index;
pub mod inspect;
pub mod instance;
pub mod interrupt;
pub mod layout;
pub mod lifecycle;
pub mod listing;
pub mod lock;
pub mod mcp;
pub mod output;
pub mod overrides;
pub mod placement;
pub mod ports;
pub mod preflight;
pub mod probe;
pub mod process;
pub mod provision;
pub mod pyjson;
pub mod reap;
pub mod registry;
pub mod remote;
pub mod report;
pub mod rescue;
pub mod schemas;
pub mod secrets;
pub mod shared;
pub mod slots;
pub mod slug;
pub mod snapshot;
pub mod stack;
pub mod state;
pub mod status;
pub mod thin;
pub mod timefmt;
pub mod top;
pub mod upqueue;
pub mod watch;

use std::process::ExitCode;

use clap::Parser;

/// Parse the command line, run, and turn the outcome into the process exit code.
pub fn main_entry() -> ExitCode {
    // `COMPLETE=bash kinfra …`: answer the shell's completion request and exit.
    clap_complete::CompleteEnv::with_factory(<cli::Cli as clap::CommandFactory>::command)
        .complete();
    // First, so no Ctrl-C can kill kinfra half-way from here on: it is a flag the
    // runner and waiting loops act on.
    if let Err(e) = interrupt::install() {
        output::warn(&format!("Ctrl-C will stop kinfra abruptly: {e}"));
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                error::Exit::Usage.code()
            } else {
                0
            });
        }
    };
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            output::error(&e.message);
            if let Some(hint) = &e.hint {
                output::hint(hint);
            }
            // Whatever failed on the way out, Ctrl-C or SIGTERM is why.
            if interrupt::requested() && e.exit != error::Exit::Interrupted {
                return ExitCode::from(error::Exit::Interrupted.code());
            }
            ExitCode::from(e.code())
        }
    }
}
