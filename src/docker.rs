//! What Docker holds for a compose project (found by the `com.docker.compose.project`
//! label, never by name guessing), read through the Engine API (the `docker` CLI only
//! where kinfra's API client cannot reach the engine, e.g. `ssh://`), and removing it.

use crate::engine::{Engine, EngineError, Filters};
use crate::process::{Cmd, ProcessError, TimeoutKind};

/// Label compose puts on every container, volume and network of a project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// Label compose puts on a project's containers: the directory it ran in.
pub const WORKING_DIR_LABEL: &str = "com.docker.compose.project.working_dir";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("`docker` is not installed (not found on PATH)")]
    Missing,
    #[error("the Docker daemon is not reachable: {0}")]
    DaemonDown(String),
    #[error(transparent)]
    Process(ProcessError),
    #[error(transparent)]
    Engine(EngineError),
}

impl From<EngineError> for DockerError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unreachable { .. } => DockerError::DaemonDown(e.to_string()),
            other => DockerError::Engine(other),
        }
    }
}

impl From<ProcessError> for DockerError {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::NotFound { .. } => DockerError::Missing,
            ProcessError::Failed { ref stderr, .. } if daemon_down(stderr) => {
                DockerError::DaemonDown(first_line(stderr))
            }
            other => DockerError::Process(other),
        }
    }
}

fn daemon_down(stderr: &str) -> bool {
    stderr.contains("Cannot connect to the Docker daemon")
        || stderr.contains("error during connect")
        || stderr.contains("Is the docker daemon running")
}

fn first_line(s: &str) -> String {
    s.trim().lines().next().unwrap_or_default().to_string()
}

pub fn docker() -> Cmd {
    // Docker answers quickly or not at all; a hung daemon must not hang kinfra.
    Cmd::new("docker").timeout_kind(TimeoutKind::Read)
}

/// Fail with a one-line error when Docker is missing or its daemon is down.
pub fn ensure_available() -> Result<(), DockerError> {
    // The engine's `/_ping` answers in well under a millisecond; only when it cannot be
    // reached directly (ssh://, TLS, or down), or the docker CLI is not installed, is the
    // CLI asked, for its message.
    if crate::process::on_path("docker") && read_engine().is_ok() {
        return Ok(());
    }
    let out = docker()
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()?;
    if out.success() && !out.stdout.trim().is_empty() {
        Ok(())
    } else {
        Err(DockerError::DaemonDown(first_line(&out.stderr)))
    }
}

/// What Docker holds for one compose project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectResources {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
    /// Container → the directory compose ran in (its working-dir label), when known.
    pub working_dirs: Vec<(String, String)>,
    /// Volume → when it was created (RFC 3339), when known.
    pub volumes_created: Vec<(String, String)>,
}

impl ProjectResources {
    /// What of this project is not the instance at `path` created at `created_at`:
    /// containers compose started from another directory, and volumes older than the
    /// instance. (Another checkout's stack with the same project name, or an earlier
    /// instance's data.)
    pub fn foreign(&self, path: &std::path::Path, created_at: &str) -> Vec<String> {
        self.foreign_except(path, created_at, &[])
    }

    /// [`ProjectResources::foreign`], the volumes the instance adopted left out.
    pub fn foreign_except(
        &self,
        path: &std::path::Path,
        created_at: &str,
        adopted: &[String],
    ) -> Vec<String> {
        let here = crate::registry::canonical(path);
        let mut out: Vec<String> = self
            .working_dirs
            .iter()
            .filter(|(_, dir)| {
                let d = std::path::Path::new(dir);
                d != path && crate::registry::canonical(d) != here
            })
            .map(|(c, dir)| format!("container `{c}` (started from `{dir}`)"))
            .collect();
        if let Some(created) = crate::timefmt::parse_iso(created_at) {
            let slack = jiff::SignedDuration::from_secs(5);
            for (v, when) in &self.volumes_created {
                if adopted.contains(v) {
                    continue;
                }
                let older = crate::timefmt::parse_iso(when)
                    .and_then(|t| t.checked_add(slack).ok())
                    .is_some_and(|t| t < created);
                if older {
                    out.push(format!(
                        "volume `{v}` (created {when}, before the instance)"
                    ));
                }
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.volumes.is_empty() && self.networks.is_empty()
    }

    /// "2 containers, 1 volume, 1 network".
    pub fn summary(&self) -> String {
        fn n(count: usize, what: &str) -> String {
            format!("{count} {what}{}", if count == 1 { "" } else { "s" })
        }
        format!(
            "{}, {}, {}",
            n(self.containers.len(), "container"),
            n(self.volumes.len(), "volume"),
            n(self.networks.len(), "network")
        )
    }
}

/// The Engine API client for reads, unless `KINFRA_DOCKER_READS=cli` asks for the docker
/// CLI instead (a diagnostic switch: both must give the same answers).
pub fn read_engine() -> Result<Engine, EngineError> {
    if std::env::var("KINFRA_DOCKER_READS").is_ok_and(|v| v == "cli") {
        return Err(EngineError::Unsupported {
            what: "KINFRA_DOCKER_READS=cli".into(),
        });
    }
    Engine::connect()
}

/// Containers (any state), volumes and networks labelled with `project`: three Engine
/// API reads, no process.
pub fn project_resources(project: &str) -> Result<ProjectResources, DockerError> {
    match read_engine() {
        Ok(engine) => Ok(project_resources_api(&engine, project)?),
        Err(EngineError::Unsupported { .. }) => project_resources_cli(project),
        Err(e) => Err(e.into()),
    }
}

fn project_resources_api(engine: &Engine, project: &str) -> Result<ProjectResources, EngineError> {
    let filters = Filters::new().label_value(PROJECT_LABEL, project);
    let containers = engine.containers(&filters, true)?;
    let volumes = engine.volumes(&filters)?;
    let networks = engine.networks(&filters)?;
    Ok(ProjectResources {
        working_dirs: containers
            .iter()
            .filter_map(|c| {
                let dir = c.labels.get(WORKING_DIR_LABEL)?;
                Some((c.name().to_string(), dir.clone()))
            })
            .collect(),
        containers: containers.iter().map(|c| c.name().to_string()).collect(),
        volumes_created: volumes
            .iter()
            .map(|v| (v.name.clone(), v.created_at.clone()))
            .collect(),
        volumes: volumes.into_iter().map(|v| v.name).collect(),
        networks: networks.into_iter().map(|n| n.name).collect(),
    })
}

fn project_resources_cli(project: &str) -> Result<ProjectResources, DockerError> {
    let filter = format!("label={PROJECT_LABEL}={project}");
    let names = |args: &[&str]| -> Result<Vec<String>, DockerError> {
        let out = docker().args(args).args(["--filter", &filter]).run()?;
        Ok(parse_lines(&out))
    };
    let rows = names(&[
        "ps",
        "-a",
        "--format",
        &format!("{{{{.Names}}}}\t{{{{.Label \"{WORKING_DIR_LABEL}\"}}}}"),
    ])?;
    let mut containers = Vec::new();
    let mut working_dirs = Vec::new();
    for row in rows {
        let (name, dir) = row.split_once('\t').unwrap_or((row.as_str(), ""));
        if !dir.trim().is_empty() {
            working_dirs.push((name.trim().to_string(), dir.trim().to_string()));
        }
        containers.push(name.trim().to_string());
    }
    Ok(ProjectResources {
        containers,
        volumes: names(&["volume", "ls", "--format", "{{.Name}}"])?,
        networks: names(&["network", "ls", "--format", "{{.Name}}"])?,
        working_dirs,
        volumes_created: Vec::new(),
    })
}

/// Every compose-labelled volume, as `(project, volume name)`, in one Docker call.
pub fn all_project_volumes() -> Result<Vec<(String, String)>, DockerError> {
    let out = docker()
        .args(["volume", "ls", "--filter"])
        .arg(format!("label={PROJECT_LABEL}"))
        .arg("--format")
        .arg(format!("{{{{.Label \"{PROJECT_LABEL}\"}}}}\t{{{{.Name}}}}"))
        .run()?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let (p, n) = l.split_once('\t')?;
            (!p.trim().is_empty()).then(|| (p.trim().to_string(), n.trim().to_string()))
        })
        .collect())
}

/// Force-remove what `project_resources` found: containers, then networks, then volumes.
pub fn remove_resources(res: &ProjectResources) -> Result<(), DockerError> {
    if !res.containers.is_empty() {
        docker()
            .args(["rm", "--force", "--volumes"])
            .args(&res.containers)
            .run()?;
    }
    if !res.networks.is_empty() {
        docker().args(["network", "rm"]).args(&res.networks).run()?;
    }
    if !res.volumes.is_empty() {
        docker()
            .args(["volume", "rm", "--force"])
            .args(&res.volumes)
            .run()?;
    }
    Ok(())
}

/// Non-empty trimmed lines.
pub fn parse_lines(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

impl crate::error::Diagnostic for DockerError {
    fn exit(&self) -> crate::error::Exit {
        match self {
            DockerError::Process(ProcessError::TimedOut { .. }) => crate::error::Exit::TimedOut,
            DockerError::Process(ProcessError::Interrupted { .. }) => {
                crate::error::Exit::Interrupted
            }
            DockerError::Engine(e) => crate::error::Diagnostic::exit(e),
            _ => crate::error::Exit::External,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            DockerError::Missing => Some("install Docker Engine, then retry".into()),
            DockerError::DaemonDown(_) => {
                Some("start the Docker daemon (or check DOCKER_HOST), then retry".into())
            }
            DockerError::Process(_) => None,
            DockerError::Engine(e) => crate::error::Diagnostic::hint(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_pluralizes() {
        let res = ProjectResources {
            containers: vec!["a".into(), "b".into()],
            volumes: vec!["v".into()],
            ..Default::default()
        };
        assert_eq!(res.summary(), "2 containers, 1 volume, 0 networks");
    }

    #[test]
    fn another_checkouts_containers_and_older_volumes_are_foreign() {
        let res = ProjectResources {
            containers: vec!["p_web_1".into(), "p_db_1".into()],
            volumes: vec!["p_old".into(), "p_new".into()],
            working_dirs: vec![
                ("p_web_1".into(), "/w/p".into()),
                ("p_db_1".into(), "/elsewhere/p".into()),
            ],
            volumes_created: vec![
                ("p_old".into(), "2026-01-01T00:00:00Z".into()),
                ("p_new".into(), "2026-02-01T00:00:10Z".into()),
            ],
            ..Default::default()
        };
        let foreign = res.foreign(
            std::path::Path::new("/w/p"),
            "2026-02-01T00:00:00.000000+00:00",
        );
        assert_eq!(foreign.len(), 2, "{foreign:?}");
        assert!(foreign[0].contains("p_db_1") && foreign[0].contains("/elsewhere/p"));
        assert!(foreign[1].contains("p_old"));
    }

    #[test]
    fn daemon_down_is_recognised() {
        let e: DockerError = ProcessError::Failed {
            command: "docker ps".into(),
            status: "exit code 1".into(),
            stderr: "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?\n".into(),
        }
        .into();
        assert!(matches!(e, DockerError::DaemonDown(_)), "{e}");
        let e: DockerError = ProcessError::NotFound {
            program: "docker".into(),
        }
        .into();
        assert!(matches!(e, DockerError::Missing));
    }
}
