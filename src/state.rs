//! kinfra's own per-instance state (`instances.kinfra.json` beside `instances.json`):
//! what kinfra must remember beyond the six entry fields ktrdr's registry holds.
//!
//! The file is read and written only under the registry's lock, through
//! [`crate::registry::update_with_state`]. Every struct here defaults its fields and
//! keeps fields it does not know, so a newer kinfra's additions survive an older
//! kinfra's write. State for an id the registry does not hold is an orphan (what a crash
//! between the two writes leaves): readers ignore it and the next update prunes it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The state file format this kinfra writes.
pub const VERSION: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read kinfra state `{}`: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("kinfra state `{}` is corrupt: {problem}", .path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("cannot write kinfra state `{}`: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("kinfra state `{}` was written by a newer kinfra (version {version}); this one writes version {VERSION} and will not change it", .path.display())]
    Newer { path: PathBuf, version: u64 },
}

impl crate::error::Diagnostic for StateError {
    fn exit(&self) -> crate::error::Exit {
        match self {
            StateError::Newer { .. } => crate::error::Exit::Refused,
            _ => crate::error::Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            StateError::Corrupt { path, .. } => Some(format!(
                "nothing was changed; fix `{}` by hand or restore it from a backup (kinfra never treats it as empty)",
                path.display()
            )),
            StateError::Newer { .. } => {
                Some("nothing was changed; upgrade kinfra to change these instances".into())
            }
            _ => None,
        }
    }
}

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub version: u64,
    /// Per instance id (the registry's key).
    pub instances: BTreeMap<String, InstanceState>,
    /// Top-level fields this kinfra does not know, kept as read.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: VERSION,
            instances: BTreeMap::new(),
            other: Map::new(),
        }
    }
}

/// What kinfra remembers about one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceState {
    /// The name given to `create` (the instance id is derived from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Set when kinfra created the branch (so `destroy` may delete it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_branch: Option<CreatedBranch>,
    /// The host the instance runs on; `None` is this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// A data operation that started and has not finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// Volumes an earlier instance kept (`local-prod destroy --keep-volumes`) that this
    /// one took over: its own data, although older than it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopted_volumes: Vec<String>,
    /// When the instance was last seen idle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_since: Option<String>,
    /// When the reaper stopped it for being idle (cleared by the next `up`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by_reap: Option<String>,
    /// When a kinfra command last acted on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_touched: Option<String>,
    /// When `up` last started it (never started: `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_up: Option<String>,
    /// Its own memory budget in bytes (`up --memory`), instead of the layout's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Its own CPU budget (`up --cpus`), instead of the layout's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Waiting for a free place among the concurrent `up`s since (pid of the waiter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<Queued>,
    /// The last activity counters seen by `reap` (CPU time, network bytes) and when
    /// they last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<Activity>,
    /// Ports kinfra assigned automatically, by config key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An `up` waiting for its turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Queued {
    pub since: String,
    pub pid: u32,
}

/// What `reap` last saw of an instance's containers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Activity {
    /// Sum over the containers of CPU time used so far (ns).
    pub cpu_ns: u64,
    /// Sum over the containers of network bytes received and sent so far.
    pub net_bytes: u64,
    /// When those were read.
    pub sampled_at: String,
    /// When they last grew faster than a healthcheck makes them (or were first seen).
    pub active_at: String,
}

/// A branch kinfra created for an instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreatedBranch {
    pub name: String,
    /// The commit the branch started at.
    pub start_commit: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A data operation in progress (a string, not an enum, so a newer kinfra's kinds
/// still read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Operation {
    /// `restore`, `copy`, …
    pub name: String,
    pub started_at: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `instances.kinfra.json` for `instances.json`: the registry's stem plus
/// `.kinfra.json`, in the same directory (beside the configured path, not a symlink's
/// target).
pub fn path_beside(registry: &Path) -> PathBuf {
    let stem = registry
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "instances".into());
    registry.with_file_name(format!("{stem}.kinfra.json"))
}

impl State {
    /// Read the state; a missing file is empty state. Never writes anything.
    pub fn load(path: &Path) -> Result<State, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => State::parse(path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<State, StateError> {
        let corrupt = |problem: String| StateError::Corrupt {
            path: path.to_owned(),
            problem,
        };
        // Line and column in serde's message point at the problem in a hand edit.
        let value: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if !value.is_object() {
            return Err(corrupt("the top level is not a JSON object".into()));
        }
        let state: State = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        if state.version == 0 {
            return Err(corrupt("`version` is 0".into()));
        }
        Ok(state)
    }

    /// Written by a newer kinfra: readable, never written.
    pub fn read_only(&self) -> bool {
        self.version > VERSION
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Write atomically (through a symlink to its target). Callers hold the registry lock.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        if self.read_only() {
            return Err(StateError::Newer {
                path: path.to_owned(),
                version: self.version,
            });
        }
        crate::registry::write_through_links(path, self.to_json().as_bytes()).map_err(|source| {
            StateError::Write {
                path: path.to_owned(),
                source,
            }
        })
    }

    /// The state of `instance_id`, if any.
    pub fn instance(&self, instance_id: &str) -> Option<&InstanceState> {
        self.instances.get(instance_id)
    }

    /// The state of `instance_id`, created empty if missing.
    pub fn instance_mut(&mut self, instance_id: &str) -> &mut InstanceState {
        self.instances.entry(instance_id.to_owned()).or_default()
    }

    /// Drop the state of every id `keep` refuses; returns the dropped ids.
    pub fn prune(&mut self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let orphans: Vec<String> = self
            .instances
            .keys()
            .filter(|id| !keep(id))
            .cloned()
            .collect();
        for id in &orphans {
            self.instances.remove(id);
        }
        orphans
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Diagnostic, Exit};

    fn p() -> &'static Path {
        Path::new("/s/instances.kinfra.json")
    }

    #[test]
    fn beside_the_registry() {
        assert_eq!(
            path_beside(Path::new("/h/.ktrdr/sandbox/instances.json")),
            Path::new("/h/.ktrdr/sandbox/instances.kinfra.json")
        );
        assert_eq!(
            path_beside(Path::new("/x/reg")),
            Path::new("/x/reg.kinfra.json")
        );
    }

    #[test]
    fn round_trip_keeps_unknown_fields_at_every_level() {
        let text = r#"{
  "version": 1,
  "instances": {
    "ktrdr--a": {
      "name": "a",
      "created_branch": {"name": "ktrdr--a", "start_commit": "abc", "upstream": "origin/main"},
      "operation": {"name": "restore", "started_at": "2026-04-01T10:00:00.000000+00:00", "snapshot": "s1"},
      "ports": {"api": 8001, "grafana": 3001},
      "future_field": [1, 2]
    },
    "ktrdr--b": {}
  },
  "hosts": {"nas": "10.0.0.2"}
}"#;
        let state = State::parse(p(), text.as_bytes()).unwrap();
        let a = state.instance("ktrdr--a").unwrap();
        assert_eq!(a.name.as_deref(), Some("a"));
        assert_eq!(a.created_branch.as_ref().unwrap().start_commit, "abc");
        assert_eq!(a.operation.as_ref().unwrap().name, "restore");
        assert_eq!(a.ports["grafana"], 3001);
        assert_eq!(a.other["future_field"], serde_json::json!([1, 2]));
        assert_eq!(state.instance("ktrdr--b"), Some(&InstanceState::default()));

        let back = State::parse(p(), state.to_json().as_bytes()).unwrap();
        assert_eq!(back, state);
        let json: Value = serde_json::from_str(&state.to_json()).unwrap();
        assert_eq!(json["hosts"]["nas"], "10.0.0.2");
        assert_eq!(
            json["instances"]["ktrdr--a"]["created_branch"]["upstream"],
            "origin/main"
        );
        assert_eq!(json["instances"]["ktrdr--a"]["operation"]["snapshot"], "s1");
    }

    #[test]
    fn an_empty_object_is_empty_state_but_garbage_is_an_error() {
        assert_eq!(State::parse(p(), b"{}").unwrap(), State::default());
        for (text, needle) in [
            ("", "EOF"),
            ("[]", "not a JSON object"),
            ("{\"instances\": []}", "invalid type"),
            (
                "{\"instances\": {\"a\": {\"ports\": {\"api\": 70000}}}}",
                "70000",
            ),
            ("{\"version\": 0}", "`version` is 0"),
        ] {
            let err = State::parse(p(), text.as_bytes()).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("is corrupt") && msg.contains(needle),
                "{text}: {msg}"
            );
            assert!(err.hint().unwrap().contains("never treats it as empty"));
        }
    }

    #[test]
    fn a_newer_file_reads_but_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instances.kinfra.json");
        let text = "{\"version\": 2, \"instances\": {\"a\": {\"name\": \"a\"}}}";
        std::fs::write(&path, text).unwrap();
        let state = State::load(&path).unwrap();
        assert!(state.read_only());
        assert_eq!(state.instance("a").unwrap().name.as_deref(), Some("a"));
        let err = state.save(&path).unwrap_err();
        assert_eq!(err.exit(), Exit::Refused);
        assert!(err.to_string().contains("newer kinfra"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn prune_drops_only_what_is_not_kept() {
        let mut state = State::default();
        state.instance_mut("a").name = Some("a".into());
        state.instance_mut("b");
        assert_eq!(state.prune(|id| id == "a"), vec!["b".to_string()]);
        assert_eq!(state.instances.len(), 1);
    }
}
