//! `kinfra sandbox status [--json]` (and for local-prod): containers (exited ones
//! too, with health), the gate's checks run once, the URL of every port, and the
//! shared-data summary.

use crate::context::Ctx;
use crate::error::Result;
use crate::inspect;
use crate::instance::{self, Kind};
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox status
  kinfra sandbox status --json | jq .checks
  kinfra sandbox status my-feature          # by name, from any directory")]
pub struct Args {
    /// The instance (id or the name given to create), from any directory; default: the
    /// one you are in (local-prod: the registered one).
    #[arg(add = clap_complete::ArgValueCandidates::new(super::completions::instance_names))]
    pub name: Option<String>,
    #[command(flatten)]
    pub instance: super::InstanceArg,
    /// Print one JSON object (`schema_version` 1) instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: &Args, kind: Kind) -> Result<u8> {
    let sel = super::selector(&args.instance, args.name.as_deref())?;
    let found = instance::select(ctx, &sel, Some(kind))?;
    let (ctx, inst) = (&found.ctx, &found.inst);
    super::snapshot::warn_interrupted_at(&ctx.config, inst.id());
    let report = inspect::status(&ctx.config, inst)?;
    if let Some(e) = &report.docker_error {
        output::warn(&format!("cannot read container state: {e}"));
    }
    if args.json {
        super::print_json(&report);
        return Ok(0);
    }
    output::data(&format!(
        "{} ({}, slot {}) — {}",
        report.instance_id, report.kind, report.slot, report.state
    ));
    output::data(&format!("path: {}", report.path));
    if report.containers.is_empty() {
        output::data("containers: none");
    } else {
        let rows: Vec<Vec<String>> = report
            .containers
            .iter()
            .map(|c| {
                vec![
                    c.service.clone(),
                    c.state.to_string(),
                    c.health.map_or_else(|| "-".into(), |h| h.to_string()),
                    c.status.clone(),
                ]
            })
            .collect();
        output::data(&output::table(
            &["SERVICE", "STATE", "HEALTH", "STATUS"],
            &rows,
        ));
    }
    for c in &report.oom_killed {
        output::data(&format!(
            "✗ `{c}` was killed for memory: the instance's budget is too small for it (`up --memory`)"
        ));
    }
    if !report.checks.is_empty() {
        output::data("");
        for c in &report.checks {
            let mark = if c.passed { "✓" } else { "✗" };
            output::data(&format!("{mark} {}: {}", c.name, c.detail));
        }
    }
    output::data("");
    let rows: Vec<Vec<String>> = report
        .ports
        .iter()
        .map(|(key, port)| {
            let url = super::url_of(&ctx.config, key, *port);
            vec![key.clone(), port.to_string(), url]
        })
        .collect();
    output::data(&output::table(&["PORT KEY", "PORT", "URL"], &rows));
    output::data("");
    output::data(&format!("shared data: {}", report.shared.dir.display()));
    for d in &report.shared.subdirs {
        output::data(&format!(
            "  {}: {}",
            d.name,
            d.entries.map_or_else(
                || "missing (run `kinfra sandbox init-shared`)".into(),
                |n| format!("{n} entries")
            )
        ));
    }
    Ok(0)
}
