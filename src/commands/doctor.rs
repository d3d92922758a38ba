//! `kinfra doctor [--fix] [--json] [--rescue-days N]`

use crate::context::Ctx;
use crate::doctor::{self, Fix, Inputs};
use crate::error::Result;
use crate::output;
use crate::registry::Registry;
use crate::status;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra doctor               # report what disagrees, with the fix for each
  kinfra doctor --fix         # apply the repairs that cannot lose data
  kinfra doctor --json | jq '.findings[].kind'")]
pub struct Args {
    /// Apply the repairs that cannot lose data; print the command for the rest.
    #[arg(long)]
    pub fix: bool,
    /// Print one JSON object (`schema_version` 1) instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// `doctor --json`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct Report<'a> {
    schema_version: u32,
    registry: &'a std::path::Path,
    findings: &'a [doctor::Reported],
    /// Findings left unrepaired.
    remaining: usize,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let config = &ctx.config;
    let registry = Registry::load(&config.registry_path);
    let mains = ctx.main_repos(registry.as_ref().ok());
    let containers = status::all_containers();
    let docker_error = containers.as_ref().err().map(ToString::to_string);
    let inputs = Inputs {
        registry,
        docker_error,
        containers: containers.ok(),
        volumes: crate::docker::all_project_volumes().ok(),
        mains: mains.clone(),
    };
    let findings = doctor::examine(config, &inputs);
    let mut reported = Vec::new();
    let mut remaining = 0;
    for f in &findings {
        let fixed = match (&f.fix, args.fix) {
            (Fix::Auto(action), true) => {
                match doctor::apply(config, action, &mains, &output::Term::new()) {
                    Ok(what) => {
                        if !args.json {
                            output::done(&what);
                        }
                        true
                    }
                    Err(e) => {
                        output::warn(&format!("could not fix {}: {e}", f.subject));
                        false
                    }
                }
            }
            _ => false,
        };
        if !fixed {
            remaining += 1;
        }
        reported.push(f.report(fixed));
    }
    if args.json {
        super::print_json(&Report {
            schema_version: 1,
            registry: &config.registry_path,
            findings: &reported,
            remaining,
        });
    } else if findings.is_empty() {
        output::done(&format!(
            "no problems found (registry `{}`)",
            config.registry_path.display()
        ));
    } else {
        for r in reported.iter().filter(|r| !r.fixed) {
            output::data(&format!("✗ [{}] {}", r.kind, r.message));
            output::data(&format!("    fix: {}", r.fix));
        }
    }
    if remaining > 0 {
        let auto = reported.iter().filter(|r| r.auto && !r.fixed).count();
        return Err(doctor::DoctorError::ProblemsRemain {
            remaining,
            repairable: if args.fix { 0 } else { auto },
        }
        .into());
    }
    Ok(0)
}
