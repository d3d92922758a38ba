//! What one instance looks like right now, for `status`: its containers (exited ones
//! too, with health), its ports and URLs, the gate's checks run once, and the shared
//! data directories. Everything is a typed, serialisable report.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::gate::Check;
use crate::instance::{Instance, Kind};
use crate::status::{self, Container, State};

/// `status --json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StatusReport {
    pub schema_version: u32,
    pub instance_id: String,
    pub kind: Kind,
    pub slot: u32,
    pub path: String,
    pub state: String,
    /// Why the state is unknown, when Docker could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_error: Option<String>,
    pub containers: Vec<Container>,
    /// Containers the kernel killed for memory (over the instance's budget).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub oom_killed: Vec<String>,
    pub ports: BTreeMap<String, u16>,
    pub urls: BTreeMap<String, String>,
    pub checks: Vec<CheckResult>,
    pub shared: SharedSummary,
}

/// One gate check, tried once.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    /// What passed ("4 workers registered") or the error.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SharedSummary {
    pub dir: PathBuf,
    pub subdirs: Vec<SharedDir>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SharedDir {
    pub name: String,
    pub path: PathBuf,
    pub exists: bool,
    pub entries: Option<usize>,
}

/// Gather the status of `inst`. Docker being unreachable is reported in the result,
/// not as an error: the rest is still worth showing.
pub fn status(config: &Config, inst: &Instance) -> Result<StatusReport> {
    let (containers, state, docker_error) = match status::project_containers(inst.id()) {
        Ok(list) => {
            let state = State::of(&list);
            (list, state, None)
        }
        Err(e) => (Vec::new(), State::Unknown, Some(e.to_string())),
    };
    let oom_killed = oom_killed(&containers);
    let ports = crate::lifecycle::instance_ports(config, inst)?;
    let urls = crate::layout::urls(config, &ports);
    let checks = match gate_for(config, inst) {
        Ok(checks) => run_once(
            &checks,
            &containers,
            state != State::Stopped && state != State::Unknown,
        ),
        Err(e) => vec![CheckResult {
            name: "gate".into(),
            passed: false,
            detail: format!("cannot work out the gate: {}", e.message),
        }],
    };
    let shared = SharedSummary {
        dir: config.shared_dir.clone(),
        subdirs: config
            .shared_subdirs
            .iter()
            .map(|s| {
                let path = config.shared_dir.join(&s.name);
                let entries = std::fs::read_dir(&path).ok().map(|d| d.count());
                SharedDir {
                    name: s.name.clone(),
                    exists: entries.is_some(),
                    path,
                    entries,
                }
            })
            .collect(),
    };
    Ok(StatusReport {
        schema_version: 1,
        instance_id: inst.id().to_string(),
        kind: inst.kind,
        slot: inst.entry.slot,
        path: inst.entry.path.clone(),
        state: state.label(),
        docker_error,
        containers,
        oom_killed,
        ports: ports.iter().map(|p| (p.key.clone(), p.port)).collect(),
        urls: urls.into_iter().collect(),
        checks,
        shared,
    })
}

/// The containers among `list` that stopped because the kernel killed them for memory.
pub fn oom_killed(list: &[Container]) -> Vec<String> {
    let stopped: Vec<&Container> = list.iter().filter(|c| !c.is_running()).collect();
    if stopped.is_empty() {
        return Vec::new();
    }
    let Ok(engine) = crate::engine::Engine::connect() else {
        return Vec::new();
    };
    stopped
        .into_iter()
        .filter(|c| {
            engine
                .container_inspect(&c.name)
                .is_ok_and(|d| d.state.oom_killed)
        })
        .map(|c| c.name.clone())
        .collect()
}

/// The checks `up` would run for `inst`.
fn gate_for(config: &Config, inst: &Instance) -> Result<Vec<Check>> {
    let project = crate::lifecycle::compose_project(config, inst)?;
    let env = inst.env.to_map();
    let lookup = |name: &str| env.get(name).cloned().or_else(|| std::env::var(name).ok());
    let profiles = inst
        .is_local_prod()
        .then(|| config.local_prod_profile.clone())
        .into_iter()
        .collect();
    let stack = crate::stack::Stack::load(&project.files, &lookup, profiles)?;
    Ok(crate::lifecycle::gate_checks(config, &env, &stack)?.0)
}

/// Every check tried once, in parallel (dependencies are ignored: each says for
/// itself). With nothing running, they are not tried.
fn run_once(checks: &[Check], containers: &[Container], running: bool) -> Vec<CheckResult> {
    if !running {
        return checks
            .iter()
            .map(|c| CheckResult {
                name: c.name.clone(),
                passed: false,
                detail: "not running".into(),
            })
            .collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = checks
            .iter()
            .map(|c| scope.spawn(move || (c, c.attempt_detail(containers))))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .map(|(c, r)| CheckResult {
                name: c.name.clone(),
                passed: r.is_ok(),
                detail: r.unwrap_or_else(|e| e),
            })
            .collect()
    })
}
