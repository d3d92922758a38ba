//! `kinfra config show [--json]` and `kinfra config check`: the effective layout, and
//! the layout compared with the compose file.

use crate::config::check::{self, Finding};
use crate::config::render::{self, ConfigReport, GateCheck};
use crate::context::Ctx;
use crate::error::{Diagnostic, Exit, Result};
use crate::output;
use crate::stack::Stack;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the effective layout (built-in, derived from the compose file, or merged
    /// with kinfra.toml) as TOML that can be saved as kinfra.toml unchanged.
    #[command(after_help = "Examples:
  kinfra config show                  # the layout in force here
  kinfra config show > kinfra.toml    # start a kinfra.toml from it
  kinfra config show --json | jq .gate")]
    Show(ShowArgs),
    /// Compare the layout with the compose file: exit 1 on a port two instances would
    /// share, a literal host port, or a gate check for a missing service.
    #[command(after_help = "Examples:
  kinfra config check")]
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Print one JSON object (`schema_version` 1) instead of TOML.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print one JSON object (`schema_version` 1) instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
enum ConfigCommandError {
    #[error("no compose file to compare with in `{}` (looked for {})", .0.display(), .1.join(", "))]
    NoComposeFile(std::path::PathBuf, Vec<String>),
    #[error("{0} problem(s) in the layout")]
    Problems(usize),
    #[error("cannot render the layout as TOML: {0}")]
    Render(String),
}

impl Diagnostic for ConfigCommandError {
    fn exit(&self) -> Exit {
        Exit::Failure
    }
    fn hint(&self) -> Option<String> {
        match self {
            ConfigCommandError::NoComposeFile(..) => {
                Some("run it in a checkout with a compose file".into())
            }
            ConfigCommandError::Problems(_) => Some(
                "fix kinfra.toml or the compose file; `kinfra config show` prints the layout"
                    .into(),
            ),
            ConfigCommandError::Render(_) => None,
        }
    }
}

pub fn run(ctx: &Ctx, cmd: &ConfigCommand) -> Result<u8> {
    match cmd {
        ConfigCommand::Show(args) => show(ctx, args),
        ConfigCommand::Check(args) => run_check(ctx, args),
    }
}

fn stacks(ctx: &Ctx) -> Result<Option<(Stack, Stack)>> {
    super::ports::compose_stacks(ctx)
}

fn show(ctx: &Ctx, args: &ShowArgs) -> Result<u8> {
    let config = &ctx.config;
    if !args.json {
        let text =
            render::to_toml(config).map_err(|e| ConfigCommandError::Render(e.to_string()))?;
        output::data(text.trim_end());
        return Ok(0);
    }
    let stacks = stacks(ctx)?;
    let gate = match &stacks {
        Some((sandbox, _)) => {
            let env = crate::provision::sample_env(config, sandbox, 1)?;
            let (checks, dropped) = crate::lifecycle::gate_checks(config, &env, sandbox)?;
            checks
                .iter()
                .map(|c| GateCheck {
                    name: c.name.clone(),
                    kind: probe_kind(&c.probe).into(),
                    service: c.service.clone(),
                    dropped: None,
                })
                .chain(dropped.into_iter().map(|(name, why)| {
                    GateCheck {
                        service: config
                            .gate_checks
                            .iter()
                            .find(|c| c.name == name)
                            .and_then(|c| c.service.clone()),
                        name,
                        kind: "dropped".into(),
                        dropped: Some(why),
                    }
                }))
                .collect()
        }
        None => config
            .gate_checks
            .iter()
            .map(|c| GateCheck {
                name: c.name.clone(),
                kind: format!("{:?}", c.kind).to_lowercase(),
                service: c.service.clone(),
                dropped: None,
            })
            .collect(),
    };
    super::print_json(&ConfigReport {
        schema_version: 1,
        source: &config.source,
        registry: &config.registry_path,
        state_dir: &config.state_dir,
        layout: &config.layer,
        gate,
    });
    Ok(0)
}

fn probe_kind(p: &crate::gate::Probe) -> &'static str {
    match p {
        crate::gate::Probe::Tcp { .. } => "tcp",
        crate::gate::Probe::Http { .. } => "http",
        crate::gate::Probe::Healthy { .. } => "healthy",
        crate::gate::Probe::Completed { .. } => "completed",
    }
}

/// `config check --json`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct CheckReport<'a> {
    schema_version: u32,
    source: &'a crate::config::Source,
    findings: Vec<JsonFinding>,
    errors: usize,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
struct JsonFinding {
    #[serde(flatten)]
    finding: Finding,
    error: bool,
    message: String,
}

fn run_check(ctx: &Ctx, args: &CheckArgs) -> Result<u8> {
    let config = &ctx.config;
    let Some((sandbox, prod)) = stacks(ctx)? else {
        let root = ctx
            .repo
            .as_ref()
            .map_or_else(|| ctx.cwd.clone(), |r| r.toplevel.clone());
        return Err(ConfigCommandError::NoComposeFile(root, config.compose_files.clone()).into());
    };
    let found = check::check(config, &sandbox, &prod);
    let errors = found.iter().filter(|f| f.is_error()).count();
    if args.json {
        super::print_json(&CheckReport {
            schema_version: 1,
            source: &config.source,
            errors,
            findings: found
                .iter()
                .map(|f| JsonFinding {
                    finding: f.clone(),
                    error: f.is_error(),
                    message: f.message(),
                })
                .collect(),
        });
    } else {
        output::note(&format!("layout: {}", config.source.describe()));
        for f in &found {
            let tag = if f.is_error() { "error" } else { "note" };
            output::data(&format!("{tag}: {}", f.message()));
        }
    }
    if errors > 0 {
        return Err(ConfigCommandError::Problems(errors).into());
    }
    if !args.json {
        output::done("the layout fits the compose file");
    }
    Ok(0)
}
