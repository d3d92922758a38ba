//! Live container state, for every compose project at once, from one label-filtered
//! Engine API call (`docker ps -a` only where kinfra's API client cannot reach the
//! engine, e.g. `ssh://`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::docker::{self, DockerError, PROJECT_LABEL};
use crate::engine::{Engine, EngineError, Filters};

/// A container's state as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    /// A state this kinfra does not know.
    Unknown,
}

impl ContainerState {
    pub fn parse(text: &str) -> ContainerState {
        match text.trim().to_ascii_lowercase().as_str() {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "restarting" => ContainerState::Restarting,
            "removing" => ContainerState::Removing,
            "exited" => ContainerState::Exited,
            "dead" => ContainerState::Dead,
            _ => ContainerState::Unknown,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Removing => "removing",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
            ContainerState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A container's healthcheck result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn label(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One container as `docker ps -a` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Container {
    pub project: String,
    pub service: String,
    pub name: String,
    pub state: ContainerState,
    /// None when the container has no healthcheck.
    pub health: Option<Health>,
    pub exit_code: Option<i32>,
    /// Host ports it publishes.
    pub host_ports: Vec<u16>,
    /// Docker's human status (`Up 3 minutes (healthy)`).
    pub status: String,
}

impl Container {
    /// Exited with a failure, died, or reports unhealthy.
    pub fn failed(&self) -> bool {
        self.state == ContainerState::Dead
            || (self.state == ContainerState::Exited && self.exit_code != Some(0))
            || self.health == Some(Health::Unhealthy)
    }

    pub fn is_running(&self) -> bool {
        self.state == ContainerState::Running
    }
}

const FORMAT: &str = "{{.Label \"com.docker.compose.project\"}}\t{{.Label \"com.docker.compose.service\"}}\t{{.Names}}\t{{.State}}\t{{.Status}}\t{{.Ports}}";

/// Every compose-labelled container (any state), in one Engine API call.
pub fn all_containers() -> Result<Vec<Container>, DockerError> {
    match docker::read_engine() {
        Ok(engine) => Ok(from_engine(&engine, &Filters::new().label(PROJECT_LABEL))?),
        Err(EngineError::Unsupported { .. }) => all_containers_cli(),
        Err(e) => Err(e.into()),
    }
}

/// The containers of one project, in one Engine API call, sorted by service and name.
pub fn project_containers(project: &str) -> Result<Vec<Container>, DockerError> {
    let mut list = match docker::read_engine() {
        Ok(engine) => from_engine(&engine, &Filters::new().label_value(PROJECT_LABEL, project))?,
        Err(EngineError::Unsupported { .. }) => project_containers_cli(project)?,
        Err(e) => return Err(e.into()),
    };
    list.sort_by(|a, b| a.service.cmp(&b.service).then(a.name.cmp(&b.name)));
    Ok(list)
}

/// Containers matching `filters`, as [`Container`]s.
pub fn from_engine(engine: &Engine, filters: &Filters) -> Result<Vec<Container>, EngineError> {
    Ok(engine
        .containers(filters, true)?
        .iter()
        .filter_map(from_summary)
        .collect())
}

/// An Engine API container summary as a [`Container`] (`None` without a compose
/// project label).
pub fn from_summary(c: &crate::engine::ContainerSummary) -> Option<Container> {
    let project = c.project().filter(|p| !p.is_empty())?.to_string();
    let mut host_ports: Vec<u16> = Vec::new();
    for p in &c.ports {
        if let Some(port) = p.public_port
            && !host_ports.contains(&port)
        {
            host_ports.push(port);
        }
    }
    Some(Container {
        project,
        service: c.service().unwrap_or_default().to_string(),
        name: c.name().to_string(),
        state: ContainerState::parse(&c.state),
        health: parse_health(&c.status),
        exit_code: parse_exit_code(&c.status),
        host_ports,
        status: c.status.clone(),
    })
}

/// The containers of one project, read again whenever the engine reports an event for
/// them (start, die, health change…), so a waiting caller reacts within milliseconds
/// instead of at its next poll.
pub struct ProjectWatch {
    engine: Option<Engine>,
    project: String,
    events: std::sync::Mutex<Option<crate::engine::EventStream>>,
}

impl ProjectWatch {
    /// Watch `project`; without the Engine API (e.g. `ssh://`), reads go through the
    /// CLI and changes are found by polling.
    pub fn new(project: &str) -> ProjectWatch {
        let engine = docker::read_engine().ok();
        let filters = Filters::new()
            .of_type("container")
            .label_value(PROJECT_LABEL, project);
        let events = engine
            .as_ref()
            .and_then(|e| e.events(&filters, Some(std::time::SystemTime::now())).ok());
        ProjectWatch {
            engine,
            project: project.to_string(),
            events: std::sync::Mutex::new(events),
        }
    }

    /// The project's containers now (`None`: they cannot be read right now).
    pub fn containers(&self) -> Option<Vec<Container>> {
        let mut list = match &self.engine {
            Some(engine) => from_engine(
                engine,
                &Filters::new().label_value(PROJECT_LABEL, &self.project),
            )
            .ok()?,
            None => project_containers_cli(&self.project).ok()?,
        };
        list.sort_by(|a, b| a.service.cmp(&b.service).then(a.name.cmp(&b.name)));
        Some(list)
    }

    /// Wait up to `timeout` for an event about the project's containers; `true` when
    /// one came (read the containers again), `false` on timeout. Without an event stream
    /// it just waits.
    pub fn wait_change(&self, timeout: std::time::Duration) -> bool {
        let Ok(mut guard) = self.events.lock() else {
            std::thread::sleep(timeout);
            return false;
        };
        let Some(stream) = guard.as_mut() else {
            drop(guard);
            std::thread::sleep(timeout);
            return false;
        };
        match stream.next_timeout(timeout) {
            Ok(Some(_)) => true,
            Ok(None) => false,
            // The stream broke: poll from now on.
            Err(_) => {
                *guard = None;
                false
            }
        }
    }
}

/// [`all_containers`] through the docker CLI (`docker ps -a`).
pub fn all_containers_cli() -> Result<Vec<Container>, DockerError> {
    let out = docker::docker()
        .args(["ps", "-a", "--no-trunc", "--filter"])
        .arg(format!("label={PROJECT_LABEL}"))
        .args(["--format", FORMAT])
        .run()?;
    Ok(parse_ps(&out))
}

/// [`project_containers`] through the docker CLI.
fn project_containers_cli(project: &str) -> Result<Vec<Container>, DockerError> {
    let out = docker::docker()
        .args(["ps", "-a", "--no-trunc", "--filter"])
        .arg(format!("label={PROJECT_LABEL}={project}"))
        .args(["--format", FORMAT])
        .run()?;
    let mut list = parse_ps(&out);
    list.sort_by(|a, b| a.service.cmp(&b.service).then(a.name.cmp(&b.name)));
    Ok(list)
}

/// Containers grouped by project.
pub fn by_project(containers: Vec<Container>) -> BTreeMap<String, Vec<Container>> {
    let mut map: BTreeMap<String, Vec<Container>> = BTreeMap::new();
    for c in containers {
        map.entry(c.project.clone()).or_default().push(c);
    }
    map
}

/// An instance's summary state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Running,
    Partial {
        running: usize,
        total: usize,
    },
    Stopped,
    /// The directory is gone.
    Missing,
    /// Docker could not be asked.
    Unknown,
}

impl State {
    pub fn of(containers: &[Container]) -> State {
        let total = containers.len();
        let running = containers.iter().filter(|c| c.is_running()).count();
        match (running, total) {
            (_, 0) | (0, _) => State::Stopped,
            (r, t) if r == t => State::Running,
            (running, total) => State::Partial { running, total },
        }
    }

    pub fn label(&self) -> String {
        match self {
            State::Running => "running".into(),
            State::Partial { running, total } => format!("partial {running}/{total}"),
            State::Stopped => "stopped".into(),
            State::Missing => "missing".into(),
            State::Unknown => "unknown".into(),
        }
    }
}

/// Parse `docker ps --format` lines of [`FORMAT`].
pub fn parse_ps(out: &str) -> Vec<Container> {
    out.lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let project = f.next()?.trim().to_string();
            let service = f.next()?.trim().to_string();
            let name = f.next()?.trim().to_string();
            let state = ContainerState::parse(f.next()?);
            let status = f.next()?.trim().to_string();
            let ports = f.next().unwrap_or("").trim();
            if project.is_empty() {
                return None;
            }
            Some(Container {
                health: parse_health(&status),
                exit_code: parse_exit_code(&status),
                host_ports: parse_host_ports(ports),
                project,
                service,
                name,
                state,
                status,
            })
        })
        .collect()
}

/// `Up 2 minutes (healthy)` → `healthy`; `(health: starting)` → `starting`.
pub fn parse_health(status: &str) -> Option<Health> {
    if status.contains("(unhealthy)") {
        Some(Health::Unhealthy)
    } else if status.contains("(healthy)") {
        Some(Health::Healthy)
    } else if status.contains("(health: starting)") {
        Some(Health::Starting)
    } else {
        None
    }
}

/// `Exited (137) 5 seconds ago` → 137.
pub fn parse_exit_code(status: &str) -> Option<i32> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split(')').next()?.parse().ok()
}

/// `127.0.0.1:47001->8080/tcp, :::5432->5432/tcp` → [47001, 5432] (deduplicated).
pub fn parse_host_ports(ports: &str) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for part in ports.split(',') {
        let Some((host, _)) = part.trim().split_once("->") else {
            continue;
        };
        let Some((_, port)) = host.rsplit_once(':') else {
            continue;
        };
        // A range `0.0.0.0:5000-5001->…` publishes each port.
        let (lo, hi) = match port.split_once('-') {
            Some((a, b)) => (a.parse().ok(), b.parse().ok()),
            None => (port.parse().ok(), port.parse().ok()),
        };
        if let (Some(lo), Some(hi)) = (lo, hi) {
            for p in lo..=hi {
                if seen.insert(p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ps_lines() {
        let out = "p1\tbackend\tp1_backend_1\trunning\tUp 3 seconds (healthy)\t127.0.0.1:47001->8080/tcp\n\
                   p1\tdb\tp1_db_1\texited\tExited (1) 2 seconds ago\t\n\
                   \t\tstray\trunning\tUp\t\n";
        let list = parse_ps(out);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].health, Some(Health::Healthy));
        assert_eq!(list[0].host_ports, vec![47001]);
        assert_eq!(list[1].exit_code, Some(1));
        assert!(list[1].failed());
        assert!(!list[0].failed());
    }

    #[test]
    fn host_ports_cover_ipv6_and_ranges() {
        assert_eq!(
            parse_host_ports("0.0.0.0:5432->5432/tcp, :::5432->5432/tcp, 8080/tcp"),
            vec![5432]
        );
        assert_eq!(
            parse_host_ports("127.0.0.1:5000-5002->5000-5002/tcp"),
            vec![5000, 5001, 5002]
        );
        assert!(parse_host_ports("").is_empty());
    }

    #[test]
    fn health_and_exit_codes() {
        assert_eq!(
            parse_health("Up 1 second (health: starting)"),
            Some(Health::Starting)
        );
        assert_eq!(
            parse_health("Up 1 second (unhealthy)"),
            Some(Health::Unhealthy)
        );
        assert_eq!(parse_health("Up 1 second"), None);
        assert_eq!(parse_exit_code("Exited (137) 5 seconds ago"), Some(137));
        assert_eq!(parse_exit_code("Up 5 seconds"), None);
    }

    #[test]
    fn summary_states() {
        let c = |state: &str| Container {
            project: "p".into(),
            service: "s".into(),
            name: "n".into(),
            state: ContainerState::parse(state),
            health: None,
            exit_code: None,
            host_ports: vec![],
            status: String::new(),
        };
        assert_eq!(State::of(&[]), State::Stopped);
        assert_eq!(State::of(&[c("running"), c("running")]), State::Running);
        assert_eq!(
            State::of(&[c("running"), c("exited")]).label(),
            "partial 1/2"
        );
        assert_eq!(State::of(&[c("exited")]), State::Stopped);
    }
}
