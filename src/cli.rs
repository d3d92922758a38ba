//! The command-line grammar and dispatch to `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::context::Ctx;
use crate::error::Result;
use crate::instance::Kind;

#[derive(Debug, Parser)]
#[command(
    name = "kinfra",
    version,
    about = "Numbered, isolated copies of a Docker Compose stack, one per git worktree",
    propagate_version = true
)]
pub struct Cli {
    /// Config file to use instead of `kinfra.toml` at the repository root.
    #[arg(
        long,
        global = true,
        env = "KINFRA_CONFIG",
        hide_env_values = true,
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,
    /// Say more about what is being run.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sandboxes: parallel copies in their own git worktrees (slots 1..N).
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// local-prod: the singleton production-like instance on the standard ports (slot 0).
    #[command(subcommand, name = "local-prod")]
    LocalProd(LocalProdCommand),
    /// The effective layout, and how it fits the compose file.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// Compare registry, directories, env files, git and Docker; repair what is safe.
    Doctor(commands::doctor::Args),
    /// Stop (never delete) sandboxes that nothing used for a while.
    Reap(commands::reap::Args),
    /// Snapshots of an instance's volumes: create, list, restore, rm.
    #[command(subcommand)]
    Snapshot(commands::snapshot::SnapshotCommand),
    /// The work `destroy --rescue` kept: list it, put it back, prune it.
    #[command(subcommand)]
    Rescue(commands::rescue::RescueCommand),
    /// Wait until an instance's startability gate passes (for scripts and agents).
    Wait(commands::wait::Args),
    /// The `[hooks]` of kinfra.toml: approve them, list them, revoke approvals.
    #[command(subcommand)]
    Hooks(commands::hooks::HooksCommand),
    /// A live dashboard of every instance: state, gate, URL, CPU, memory; start, stop, logs.
    Top(commands::top::Args),
    /// Show the port map.
    Ports(commands::ports::Args),
    /// Print this instance's environment, shell-sourceable.
    Env(commands::env::Args),
    /// Print this instance's URLs.
    Url(commands::url::Args),
    /// Print the line that loads kinfra's shell completions (instance names included).
    Completions(commands::completions::Args),
    /// Write a man page per command into a directory.
    Man(commands::man::Args),
    /// Serve one instance to AI agents over MCP (stdio), scoped to that instance.
    Mcp(commands::mcp::Args),
    /// Reach a sandbox's ports on another host from here, through ssh, until Ctrl-C.
    Forward(commands::forward::Args),
    /// Other machines that run sandboxes over ssh (`local` is always one).
    #[command(subcommand)]
    Hosts(commands::hosts::HostsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox: a new git worktree next to the repository, with its own slot.
    Create(commands::sandbox_create::Args),
    /// Make the current checkout a sandbox.
    Init(commands::sandbox_init::Args),
    /// Stop and remove a sandbox (its worktree only if clean, or rescued with --force).
    Destroy(commands::sandbox_destroy::Args),
    /// List registered instances.
    List(commands::list::Args),
    /// Create the shared data directories, optionally copying them from a checkout.
    InitShared(commands::init_shared::Args),
    /// Start this sandbox's containers and wait for the startability gate.
    Up(commands::up::Args),
    /// Stop this sandbox's containers.
    Down(commands::down::Args),
    /// Containers, URLs and shared data of this sandbox.
    Status(commands::status::Args),
    /// Show container logs.
    Logs(commands::logs::Args),
    /// Open a shell in a service container.
    Shell(commands::shell::Args),
    /// Print a sandbox's environment, shell-sourceable.
    Env(commands::env::InstanceArgs),
    /// Print a sandbox's URLs.
    Url(commands::url::InstanceArgs),
    /// Print a sandbox's directory.
    Path(commands::path::Args),
    /// Bring a sandbox's work from its host: its branch and rescue refs.
    Fetch(commands::remote::FetchArgs),
}

#[derive(Debug, Subcommand)]
pub enum LocalProdCommand {
    /// Create local-prod: an independent clone next to the repository, on slot 0.
    Create(commands::local_prod_create::Args),
    /// Make the current clone local-prod.
    Init(commands::local_prod_init::Args),
    /// Stop and unregister the registered local-prod (never the current directory).
    Destroy(commands::local_prod_destroy::Args),
    /// Start local-prod (with its profile) and wait for the startability gate.
    Up(commands::up::Args),
    /// Stop local-prod, profile-only services included.
    Down(commands::down::Args),
    /// Containers, URLs and shared data of local-prod.
    Status(commands::status::Args),
    /// Show local-prod's container logs.
    Logs(commands::logs::Args),
    /// Open a shell in a local-prod service container.
    Shell(commands::shell::Args),
    /// Print local-prod's environment, shell-sourceable.
    Env(commands::env::InstanceArgs),
    /// Print local-prod's URLs.
    Url(commands::url::InstanceArgs),
}

pub fn run(cli: Cli) -> Result<u8> {
    crate::output::set_verbose(cli.verbose);
    // A bad value in kinfra's own environment variables is an error, never a default.
    crate::envvars::check_all()?;
    match &cli.command {
        Command::Completions(args) => return commands::completions::run(args),
        Command::Man(args) => return commands::man::run(args),
        Command::Hosts(cmd) => return commands::hosts::run(cmd),
        Command::Forward(args) => return commands::forward::run(args),
        _ => {}
    }
    // A sandbox on another host: its host's kinfra runs the command.
    if matches!(cli.command, Command::Sandbox(_) | Command::Wait(_)) {
        let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if let Some((sub, rest, entry)) = commands::remote::target(&argv) {
            return commands::remote::forward(&sub, &rest, &entry);
        }
    }
    if let Command::Sandbox(SandboxCommand::Fetch(a)) = &cli.command {
        return commands::remote::fetch(a);
    }
    let ctx = Ctx::load(cli.config.as_deref())?;
    crate::output::verbose(&format!("config: {}", ctx.config.source.describe()));
    match cli.command {
        Command::Sandbox(cmd) => match cmd {
            SandboxCommand::Create(a) => commands::sandbox_create::run(&ctx, &a),
            SandboxCommand::Init(a) => commands::sandbox_init::run(&ctx, &a),
            SandboxCommand::Destroy(a) => commands::sandbox_destroy::run(&ctx, &a),
            SandboxCommand::List(a) => commands::list::run(&ctx, &a),
            SandboxCommand::InitShared(a) => commands::init_shared::run(&ctx, &a),
            SandboxCommand::Up(a) => commands::up::run(&ctx, &a, Kind::Sandbox),
            SandboxCommand::Down(a) => commands::down::run(&ctx, &a, Kind::Sandbox),
            SandboxCommand::Status(a) => commands::status::run(&ctx, &a, Kind::Sandbox),
            SandboxCommand::Logs(a) => commands::logs::run(&ctx, &a, Kind::Sandbox),
            SandboxCommand::Shell(a) => commands::shell::run(&ctx, &a, Kind::Sandbox),
            SandboxCommand::Env(a) => commands::env::run_for(&ctx, &a, Kind::Sandbox),
            SandboxCommand::Url(a) => commands::url::run_for(&ctx, &a, Kind::Sandbox),
            SandboxCommand::Path(a) => commands::path::run(&ctx, &a),
            SandboxCommand::Fetch(a) => commands::remote::fetch(&a),
        },
        Command::LocalProd(cmd) => match cmd {
            LocalProdCommand::Create(a) => commands::local_prod_create::run(&ctx, &a),
            LocalProdCommand::Init(a) => commands::local_prod_init::run(&ctx, &a),
            LocalProdCommand::Destroy(a) => commands::local_prod_destroy::run(&ctx, &a),
            LocalProdCommand::Up(a) => commands::up::run(&ctx, &a, Kind::LocalProd),
            LocalProdCommand::Down(a) => commands::down::run(&ctx, &a, Kind::LocalProd),
            LocalProdCommand::Status(a) => commands::status::run(&ctx, &a, Kind::LocalProd),
            LocalProdCommand::Logs(a) => commands::logs::run(&ctx, &a, Kind::LocalProd),
            LocalProdCommand::Shell(a) => commands::shell::run(&ctx, &a, Kind::LocalProd),
            LocalProdCommand::Env(a) => commands::env::run_for(&ctx, &a, Kind::LocalProd),
            LocalProdCommand::Url(a) => commands::url::run_for(&ctx, &a, Kind::LocalProd),
        },
        Command::Config(c) => commands::config::run(&ctx, &c),
        Command::Doctor(a) => commands::doctor::run(&ctx, &a),
        Command::Ports(a) => commands::ports::run(&ctx, &a),
        Command::Rescue(c) => commands::rescue::run(&ctx, &c),
        Command::Snapshot(c) => commands::snapshot::run(&ctx, &c),
        Command::Reap(a) => commands::reap::run(&ctx, &a),
        Command::Wait(a) => commands::wait::run(&ctx, &a),
        Command::Hooks(c) => commands::hooks::run(&ctx, &c),
        Command::Top(a) => commands::top::run(&ctx, &a),
        Command::Env(a) => commands::env::run(&ctx, &a),
        Command::Url(a) => commands::url::run(&ctx, &a),
        Command::Mcp(a) => commands::mcp::run(&ctx, &a),
        Command::Completions(_) | Command::Man(_) | Command::Hosts(_) | Command::Forward(_) => {
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// Every leaf command shows examples, and every argument says what it is for.
    #[test]
    fn every_command_has_examples_and_every_flag_a_description() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, problems: &mut Vec<String>) {
            let here = format!("{path} {}", cmd.get_name()).trim().to_string();
            let leaves: Vec<&clap::Command> = cmd.get_subcommands().collect();
            if leaves.is_empty() {
                let examples = cmd
                    .get_after_help()
                    .is_some_and(|h| h.to_string().contains("Examples:"));
                if !examples {
                    problems.push(format!("`{here}` has no Examples section"));
                }
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    problems.push(format!("`{here}`: `{id}` has no description"));
                }
            }
            for sub in leaves {
                walk(sub, &here, problems);
            }
        }
        let mut problems = Vec::new();
        walk(&Cli::command(), "", &mut problems);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
