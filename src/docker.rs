//! The Docker CLI: is the engine there, and what does it hold for a compose project
//! (found by the `com.docker.compose.project` label, never by name guessing).

use crate::process::{Cmd, ProcessError, TimeoutKind};

/// Label compose puts on every container, volume and network of a project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("`docker` is not installed (not found on PATH)")]
    Missing,
    #[error("the Docker daemon is not reachable: {0}")]
    DaemonDown(String),
    #[error(transparent)]
    Process(ProcessError),
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
}

impl ProjectResources {
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

/// Containers (any state), volumes and networks labelled with `project`.
pub fn project_resources(project: &str) -> Result<ProjectResources, DockerError> {
    let filter = format!("label={PROJECT_LABEL}={project}");
    let names = |args: &[&str]| -> Result<Vec<String>, DockerError> {
        let out = docker().args(args).args(["--filter", &filter]).run()?;
        Ok(parse_lines(&out))
    };
    Ok(ProjectResources {
        containers: names(&["ps", "-a", "--format", "{{.Names}}"])?,
        volumes: names(&["volume", "ls", "--format", "{{.Name}}"])?,
        networks: names(&["network", "ls", "--format", "{{.Name}}"])?,
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
            networks: vec![],
        };
        assert_eq!(res.summary(), "2 containers, 1 volume, 0 networks");
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
