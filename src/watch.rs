//! `sandbox list --watch`: the rows of `sandbox list`, then every change to them as it
//! happens. Changes of containers (state, health) come from the engine's event stream,
//! and only the project an event names is read again; instances created or destroyed
//! are seen when the registry (or kinfra's state file beside it) changes on disk,
//! checked on the stream's timeout tick. Without the Engine API (e.g. `ssh://`) the
//! whole list is read again every few seconds instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::config::Config;
use crate::engine::{EventStream, Filters};
use crate::error::Result;
use crate::listing::{self, ListRow};
use crate::registry::{self, RegistryPaths};

/// How long one wait for an event lasts before the registry and the stop conditions
/// are looked at again.
const TICK: Duration = Duration::from_millis(250);
/// Events arriving this close together are handled as one batch (an `up` makes many).
const COALESCE: Duration = Duration::from_millis(40);
/// Without an event stream, the whole list is read again this often.
const POLL: Duration = Duration::from_secs(2);

/// What happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Its row when watching began (one per instance, before anything else).
    Initial,
    /// Its row differs from the last one printed (state, health, branch…).
    Changed,
    /// It was registered.
    Created,
    /// It was unregistered (the row is its last one).
    Destroyed,
}

/// One line of `sandbox list --watch --json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct WatchLine {
    pub schema_version: u32,
    pub event: Change,
    /// The same object as a row of `sandbox list --json`.
    pub instance: ListRow,
}

impl WatchLine {
    pub fn new(event: Change, instance: ListRow) -> WatchLine {
        WatchLine {
            schema_version: 1,
            event,
            instance,
        }
    }
}

/// Why watching ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Whoever read the output went away.
    OutputClosed,
}

/// Where the rows go: each batch of changes with every row after them; an error ends
/// watching (the output is closed).
pub trait Sink {
    fn changes(&mut self, changes: &[WatchLine], rows: &[ListRow]) -> std::io::Result<()>;
    /// Whether the reader went away even though nothing was written lately.
    fn closed(&self) -> bool;
}

/// The changes from `old` to `new` rows, in `new`'s order, destroyed ones last.
pub fn diff(old: &[ListRow], new: &[ListRow]) -> Vec<WatchLine> {
    let before: BTreeMap<&str, &ListRow> =
        old.iter().map(|r| (r.instance_id.as_str(), r)).collect();
    let after: BTreeSet<&str> = new.iter().map(|r| r.instance_id.as_str()).collect();
    let mut out: Vec<WatchLine> = new
        .iter()
        .filter_map(|r| match before.get(r.instance_id.as_str()) {
            None => Some(WatchLine::new(Change::Created, r.clone())),
            Some(was) if *was != r => Some(WatchLine::new(Change::Changed, r.clone())),
            Some(_) => None,
        })
        .collect();
    out.extend(
        old.iter()
            .filter(|r| !after.contains(r.instance_id.as_str()))
            .map(|r| WatchLine::new(Change::Destroyed, r.clone())),
    );
    out
}

/// When the registry and the state file were last written (`None`: absent).
fn stamps(paths: &RegistryPaths) -> [Option<SystemTime>; 2] {
    let at = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    [at(&paths.registry), at(&paths.state)]
}

/// Container events of every compose project, from now on.
fn open_events() -> Option<EventStream> {
    let engine = crate::docker::read_engine().ok()?;
    let filters = Filters::new()
        .of_type("container")
        .label(crate::docker::PROJECT_LABEL);
    engine.events(&filters, None).ok()
}

/// Watch until interrupted or the sink's reader goes away.
pub fn watch(config: &Config, cwd: &Path, sink: &mut dyn Sink) -> Result<End> {
    let paths = config.registry_paths();
    // Stream first, so nothing happening while the list is read is missed.
    let mut events = open_events();
    let (mut registry, mut state) = registry::load_with_state(&paths)?;
    let mut seen = stamps(&paths);
    let mut rows = listing::list(config, &registry, &state, cwd).instances;
    let initial: Vec<WatchLine> = rows
        .iter()
        .map(|r| WatchLine::new(Change::Initial, r.clone()))
        .collect();
    if sink.changes(&initial, &rows).is_err() {
        return Ok(End::OutputClosed);
    }
    let mut last_full = Instant::now();
    loop {
        if crate::interrupt::requested() {
            return Ok(End::Interrupted);
        }
        if sink.closed() {
            return Ok(End::OutputClosed);
        }
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut full = false;
        match events.as_mut() {
            Some(stream) => {
                let mut wait = TICK;
                loop {
                    match stream.next_timeout(wait) {
                        Ok(Some(event)) => {
                            if let Some(p) = event.project()
                                && registry.contains(p)
                            {
                                dirty.insert(p.to_string());
                            }
                            wait = COALESCE;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            crate::output::verbose(&format!("event stream ended: {e}"));
                            events = None;
                            full = true;
                            break;
                        }
                    }
                }
            }
            None => {
                std::thread::sleep(TICK);
                if last_full.elapsed() >= POLL {
                    full = true;
                    events = open_events();
                }
            }
        }
        let now = stamps(&paths);
        if now != seen {
            seen = now;
            // A registry caught half-written by a writer is read again on the next tick.
            if let Ok((r, s)) = registry::load_with_state(&paths) {
                (registry, state) = (r, s);
                full = true;
            } else {
                seen = [None, None];
            }
        }
        let new_rows = if full {
            last_full = Instant::now();
            listing::list(config, &registry, &state, cwd).instances
        } else if !dirty.is_empty() {
            let mut next = rows.clone();
            for id in &dirty {
                let containers = crate::status::project_containers(id).ok();
                if let Some(row) =
                    listing::row_of(config, &registry, &state, cwd, id, containers.as_deref())
                    && let Some(slot) = next.iter_mut().find(|r| &r.instance_id == id)
                {
                    *slot = row;
                }
            }
            next
        } else {
            continue;
        };
        let changes = diff(&rows, &new_rows);
        rows = new_rows;
        if !changes.is_empty() && sink.changes(&changes, &rows).is_err() {
            return Ok(End::OutputClosed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::Kind;

    fn row(id: &str, status: &str) -> ListRow {
        ListRow {
            instance_id: id.into(),
            kind: Kind::Sandbox,
            slot: 1,
            path: format!("/x/{id}"),
            created_at: "2026-01-01T00:00:00Z".into(),
            is_worktree: true,
            parent_repo: None,
            branch: None,
            api_port: None,
            status: status.into(),
            health: None,
            stale: false,
            current: false,
        }
    }

    #[test]
    fn diff_names_created_changed_and_destroyed_rows() {
        let old = vec![
            row("a", "stopped"),
            row("b", "running"),
            row("c", "running"),
        ];
        let new = vec![
            row("a", "running"),
            row("b", "running"),
            row("d", "stopped"),
        ];
        let got: Vec<(Change, String)> = diff(&old, &new)
            .into_iter()
            .map(|l| (l.event, l.instance.instance_id))
            .collect();
        assert_eq!(
            got,
            vec![
                (Change::Changed, "a".into()),
                (Change::Created, "d".into()),
                (Change::Destroyed, "c".into()),
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn a_line_is_versioned() {
        let line =
            serde_json::to_value(WatchLine::new(Change::Initial, row("a", "stopped"))).unwrap();
        assert_eq!(line["schema_version"], 1);
        assert_eq!(line["event"], "initial");
        assert_eq!(line["instance"]["instance_id"], "a");
        assert_eq!(line["instance"]["health"], serde_json::Value::Null);
    }
}
