//! `kinfra sandbox status [--json]` (and for local-prod): containers (exited ones
//! too, with health), the URL of every port, and the shared-data summary.

use serde_json::json;

use crate::context::{self, Ctx, Want};
use crate::error::Result;
use crate::output;
use crate::status::{self, State};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: &Args, want: Want) -> Result<u8> {
    let config = &ctx.config;
    let registry = ctx.registry()?;
    let inst = context::current_instance(ctx, &registry, want)?;
    let id = &inst.entry.instance_id;
    let (containers, state) = match status::project_containers(id) {
        Ok(list) => {
            let state = State::of(&list);
            (list, state)
        }
        Err(e) => {
            output::warn(&format!("cannot read container state: {e}"));
            (Vec::new(), State::Unknown)
        }
    };
    let ports = super::instance_ports(config, &inst)?;
    let urls = crate::layout::urls(config, &ports);
    let shared: Vec<(String, std::path::PathBuf, Option<usize>)> = config
        .shared_subdirs
        .iter()
        .map(|s| {
            let path = config.shared_dir.join(&s.name);
            let entries = std::fs::read_dir(&path).ok().map(|d| d.count());
            (s.name.clone(), path, entries)
        })
        .collect();

    if args.json {
        let doc = json!({
            "schema_version": 1,
            "instance_id": id,
            "kind": if inst.is_local_prod { "local-prod" } else { "sandbox" },
            "slot": inst.entry.slot,
            "path": inst.entry.path,
            "state": state.label(),
            "containers": containers,
            "ports": ports.iter().map(|p| (p.key.clone(), json!(p.port))).collect::<serde_json::Map<_, _>>(),
            "urls": urls.iter().map(|(l, u)| (l.clone(), json!(u))).collect::<serde_json::Map<_, _>>(),
            "shared": {
                "dir": config.shared_dir,
                "subdirs": shared.iter().map(|(n, p, e)| json!({"name": n, "path": p, "exists": e.is_some(), "entries": e})).collect::<Vec<_>>(),
            },
        });
        output::data(&doc.to_string());
        return Ok(0);
    }
    output::data(&format!(
        "{id} ({}, slot {}) — {}",
        if inst.is_local_prod {
            "local-prod"
        } else {
            "sandbox"
        },
        inst.entry.slot,
        state.label()
    ));
    output::data(&format!("path: {}", inst.entry.path));
    if containers.is_empty() {
        output::data("containers: none");
    } else {
        let rows: Vec<Vec<String>> = containers
            .iter()
            .map(|c| {
                vec![
                    c.service.clone(),
                    c.state.clone(),
                    c.health.clone().unwrap_or_else(|| "-".into()),
                    c.status.clone(),
                ]
            })
            .collect();
        output::data(&output::table(
            &["SERVICE", "STATE", "HEALTH", "STATUS"],
            &rows,
        ));
    }
    output::data("");
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            let url = config
                .ports
                .spec(&p.group)
                .and_then(|s| s.url.as_ref())
                .map_or_else(|| "-".into(), |u| u.replace("{port}", &p.port.to_string()));
            vec![p.key.clone(), p.port.to_string(), url]
        })
        .collect();
    output::data(&output::table(&["PORT KEY", "PORT", "URL"], &rows));
    output::data("");
    output::data(&format!("shared data: {}", config.shared_dir.display()));
    for (name, _, entries) in &shared {
        output::data(&format!(
            "  {name}: {}",
            entries.map_or_else(
                || "missing (run `kinfra sandbox init-shared`)".into(),
                |n| format!("{n} entries")
            )
        ));
    }
    Ok(0)
}
