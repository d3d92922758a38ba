//! `kinfra sandbox list [--json]` — every registered instance; stale entries (directory
//! gone) are reported, never silently dropped.

use serde_json::json;

use crate::context::Ctx;
use crate::error::Result;
use crate::output;
use crate::registry::Entry;
use crate::status::{self, State};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

struct Row<'a> {
    entry: &'a Entry,
    local_prod: bool,
    exists: bool,
    api_port: Option<u16>,
    state: State,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let registry = ctx.registry()?;
    let api_key = ctx.config.ports.specs.first().map(|(k, _)| k.clone());
    // One Docker call for every instance.
    let live = if registry.all().next().is_some() {
        status::all_containers().map(status::by_project).ok()
    } else {
        None
    };
    let rows: Vec<Row> = registry
        .instances
        .iter()
        .map(|e| (e, false))
        .chain(registry.local_prod.iter().map(|e| (e, true)))
        .map(|(entry, local_prod)| Row {
            entry,
            local_prod,
            exists: entry.path().is_dir(),
            state: match &live {
                _ if !entry.path().is_dir() => State::Missing,
                None => State::Unknown,
                Some(map) => map
                    .get(&entry.instance_id)
                    .map_or(State::Stopped, |c| State::of(c)),
            },
            api_port: api_key.as_ref().and_then(|k| {
                ctx.config
                    .ports
                    .for_slot(entry.slot)
                    .ok()?
                    .into_iter()
                    .find(|p| &p.key == k || &p.group == k)
                    .map(|p| p.port)
            }),
        })
        .collect();
    if args.json {
        let items: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "instance_id": r.entry.instance_id,
                    "kind": if r.local_prod { "local-prod" } else { "sandbox" },
                    "slot": r.entry.slot,
                    "path": r.entry.path,
                    "created_at": r.entry.created_at,
                    "is_worktree": r.entry.is_worktree,
                    "parent_repo": r.entry.parent_repo,
                    "api_port": r.api_port,
                    "status": r.state.label(),
                    "stale": !r.exists,
                })
            })
            .collect();
        output::data(&json!({"schema_version": 1, "instances": items}).to_string());
        return Ok(0);
    }
    if rows.is_empty() {
        output::note("no instances are registered; create one with `kinfra sandbox create NAME`");
        return Ok(0);
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                if r.local_prod {
                    format!("{} (local-prod)", r.entry.instance_id)
                } else {
                    r.entry.instance_id.clone()
                },
                r.entry.slot.to_string(),
                if r.exists {
                    r.state.label()
                } else {
                    "missing (stale)".into()
                },
                r.api_port.map_or("-".into(), |p| p.to_string()),
                r.entry.path.clone(),
                r.entry
                    .created_at
                    .get(..19)
                    .unwrap_or(&r.entry.created_at)
                    .replace('T', " "),
            ]
        })
        .collect();
    output::data(&output::table(
        &["INSTANCE", "SLOT", "STATUS", "API", "PATH", "CREATED"],
        &table_rows,
    ));
    let stale = rows.iter().filter(|r| !r.exists).count();
    if stale > 0 {
        output::warn(&format!(
            "{stale} registered instance(s) are missing their directory (stale)"
        ));
        output::hint(
            "`kinfra sandbox destroy NAME` unregisters one (it also removes its containers)",
        );
    }
    Ok(0)
}
