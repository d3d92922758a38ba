//! `kinfra sandbox list [--json]` — every registered instance; stale entries (directory
//! gone) are reported, never silently dropped.

use crate::context::Ctx;
use crate::error::Result;
use crate::instance::Kind;
use crate::listing;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox list
  kinfra sandbox list --json | jq -r '.instances[] | select(.status == \"running\") | .instance_id'")]
pub struct Args {
    /// Print one JSON object (`schema_version` 1) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let (registry, state) = crate::registry::load_with_state(&ctx.config.registry_paths())?;
    let report = listing::list(&ctx.config, &registry, &state, &ctx.cwd);
    if let Some(e) = &report.docker_error {
        output::warn(&format!("Docker did not answer ({e}); status is unknown"));
    }
    if args.json {
        super::print_json(&report);
        return Ok(0);
    }
    if report.instances.is_empty() {
        output::note("no instances are registered; create one with `kinfra sandbox create NAME`");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = report
        .instances
        .iter()
        .map(|r| {
            vec![
                format!(
                    "{}{}{}",
                    if r.current { "* " } else { "  " },
                    r.instance_id,
                    if r.kind == Kind::LocalProd {
                        " (local-prod)"
                    } else {
                        ""
                    }
                ),
                r.slot.to_string(),
                if r.stale {
                    "missing (stale)".into()
                } else {
                    r.status.clone()
                },
                r.branch.clone().unwrap_or_else(|| "-".into()),
                r.api_port.map_or("-".into(), |p| p.to_string()),
                r.path.clone(),
                r.created_at
                    .get(..19)
                    .unwrap_or(&r.created_at)
                    .replace('T', " "),
            ]
        })
        .collect();
    output::data(&output::table(
        &[
            "  INSTANCE",
            "SLOT",
            "STATUS",
            "BRANCH",
            "API",
            "PATH",
            "CREATED",
        ],
        &rows,
    ));
    let stale: Vec<&listing::ListRow> = report.instances.iter().filter(|r| r.stale).collect();
    if !stale.is_empty() {
        output::warn(&format!(
            "{} registered instance(s) are missing their directory (stale)",
            stale.len()
        ));
        for r in stale {
            let cmd = match r.kind {
                Kind::Sandbox => format!("kinfra sandbox destroy {} --yes", r.instance_id),
                Kind::LocalProd => "kinfra local-prod destroy --yes".into(),
            };
            output::hint(&format!(
                "`{cmd}` frees slot {} (it also removes its containers)",
                r.slot
            ));
        }
    }
    Ok(0)
}
