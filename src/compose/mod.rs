//! Docker Compose: `docker compose` (v2) with a fallback to `docker-compose` (v1). Every
//! call names the project (`-p`) and the file (`-f`, absolute), so compose never guesses
//! the project from a directory name.

pub mod interpolate;
pub mod model;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::docker::DockerError;
use crate::envvars::ComposeChoice;
use crate::process::{Cmd, executable, on_path};

/// Which compose CLI this machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `docker compose`
    V2,
    /// `docker-compose`
    V1,
}

impl Flavor {
    pub fn describe(self) -> &'static str {
        match self {
            Flavor::V2 => "docker compose (v2)",
            Flavor::V1 => "docker-compose (v1)",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(
        "Docker Compose is not installed (neither `docker compose` nor `docker-compose` works)"
    )]
    Missing,
    #[error("{0}")]
    Chosen(String),
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// Detect once per process, as `KINFRA_COMPOSE` says: `v2` (`docker compose`), `v1`
/// (`docker-compose`), or `auto` (the default: v2 if it is installed, else v1).
pub fn detect() -> Result<Flavor, ComposeError> {
    static FLAVOR: OnceLock<Result<Flavor, String>> = OnceLock::new();
    let flavor = FLAVOR.get_or_init(|| {
        let choice = crate::envvars::compose_choice().map_err(|e| e.to_string())?;
        let works = |cmd: Cmd| cmd.output().map(|o| o.success()).unwrap_or(false);
        // Both are found on disk where the docker CLI and the shell look; no process is
        // started (`docker compose version` costs ~0.1 s, `docker-compose version`
        // ~0.5 s) unless neither is found there.
        let v2_on_disk = || on_path("docker") && compose_plugin_installed();
        let v2_asked = || works(Cmd::new("docker").args(["compose", "version"]));
        let v1 = || on_path("docker-compose");
        let found = match choice {
            ComposeChoice::V2 => (v2_on_disk() || v2_asked()).then_some(Flavor::V2),
            ComposeChoice::V1 => v1().then_some(Flavor::V1),
            ComposeChoice::Auto if v2_on_disk() => Some(Flavor::V2),
            ComposeChoice::Auto if v1() => Some(Flavor::V1),
            ComposeChoice::Auto => v2_asked().then_some(Flavor::V2),
        };
        found.ok_or_else(|| match choice {
            ComposeChoice::V2 => "KINFRA_COMPOSE=v2, but `docker compose` does not work".into(),
            ComposeChoice::V1 => "KINFRA_COMPOSE=v1, but `docker-compose` does not work".into(),
            ComposeChoice::Auto => String::new(),
        })
    });
    let flavor = match flavor {
        Ok(f) => *f,
        Err(why) if why.is_empty() => return Err(ComposeError::Missing),
        Err(why) => return Err(ComposeError::Chosen(why.clone())),
    };
    Ok(flavor)
}

/// Whether the Compose v2 plugin is in one of the directories the docker CLI loads
/// plugins from: `$DOCKER_CONFIG/cli-plugins` (else `~/.docker/cli-plugins`), the
/// `cliPluginsExtraDirs` its `config.json` names, then the system ones.
fn compose_plugin_installed() -> bool {
    let config_dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")),
    };
    let extra = config_dir
        .as_deref()
        .map(|d| {
            extra_plugin_dirs(&std::fs::read_to_string(d.join("config.json")).unwrap_or_default())
        })
        .unwrap_or_default();
    config_dir
        .map(|d| d.join("cli-plugins"))
        .into_iter()
        .chain(extra)
        .chain(
            [
                "/usr/local/lib/docker/cli-plugins",
                "/usr/local/libexec/docker/cli-plugins",
                "/usr/lib/docker/cli-plugins",
                "/usr/libexec/docker/cli-plugins",
                "/Applications/Docker.app/Contents/Resources/cli-plugins",
            ]
            .map(PathBuf::from),
        )
        .any(|dir| executable(&dir.join("docker-compose")))
}

/// The `cliPluginsExtraDirs` of a docker CLI `config.json` (none when it is unreadable).
fn extra_plugin_dirs(config_json: &str) -> Vec<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(rename = "cliPluginsExtraDirs", default)]
        extra: Vec<PathBuf>,
    }
    serde_json::from_str::<Config>(config_json)
        .map(|c| c.extra)
        .unwrap_or_default()
}

/// One compose project: name, file, optional profile, and the child environment
/// additions (env file, then secrets; later wins over the process environment).
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    /// The compose files, in `-f` order (absolute).
    pub files: Vec<PathBuf>,
    pub profile: Option<String>,
    pub env: BTreeMap<String, String>,
}

impl Project {
    /// Program and arguments for `compose <sub…>`; global flags come before the
    /// subcommand (v1 silently ignores `--profile` placed after it).
    pub fn argv(&self, flavor: Flavor, sub: &[&str]) -> (String, Vec<String>) {
        let (program, mut args) = match flavor {
            Flavor::V2 => ("docker".to_string(), vec!["compose".to_string()]),
            Flavor::V1 => ("docker-compose".to_string(), Vec::new()),
        };
        args.extend(["-p".to_string(), self.name.clone()]);
        for file in &self.files {
            args.extend(["-f".to_string(), file.display().to_string()]);
        }
        if let Some(p) = &self.profile {
            args.extend(["--profile".to_string(), p.clone()]);
        }
        args.extend(sub.iter().map(|s| s.to_string()));
        (program, args)
    }

    pub fn command(&self, flavor: Flavor, sub: &[&str]) -> Cmd {
        let (program, args) = self.argv(flavor, sub);
        let dir = self
            .files
            .first()
            .and_then(|f| f.parent())
            .unwrap_or_else(|| Path::new("/"));
        let mut cmd = Cmd::new(program).args(args).cwd(dir);
        for (k, v) in &self.env {
            cmd = cmd.env(k, v);
        }
        cmd
    }

    /// `down --volumes --remove-orphans`, output captured.
    pub fn down_volumes(&self) -> Result<(), ComposeError> {
        self.down(true)
    }

    /// `down --remove-orphans`, with `--volumes` when `volumes`; output captured.
    pub fn down(&self, volumes: bool) -> Result<(), ComposeError> {
        let flavor = detect()?;
        let args: &[&str] = if volumes {
            &["down", "--volumes", "--remove-orphans"]
        } else {
            &["down", "--remove-orphans"]
        };
        self.command(flavor, args)
            .run()
            .map_err(DockerError::from)?;
        Ok(())
    }
}

/// The first configured compose file that exists in `root`.
pub fn find_file(root: &Path, candidates: &[String]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(|c| root.join(c))
        .find(|p| p.is_file())
}

impl crate::error::Diagnostic for ComposeError {
    fn exit(&self) -> crate::error::Exit {
        match self {
            ComposeError::Docker(d) => crate::error::Diagnostic::exit(d),
            ComposeError::Missing | ComposeError::Chosen(_) => crate::error::Exit::External,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ComposeError::Docker(d) => crate::error::Diagnostic::hint(d),
            ComposeError::Missing => {
                Some("install the Compose plugin (`docker compose`) or `docker-compose`".into())
            }
            ComposeError::Chosen(_) => Some(
                "install that Compose, or set KINFRA_COMPOSE=auto to use whichever works".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path_without_running_them() {
        assert!(on_path("sh"));
        assert!(!on_path("kinfra-no-such-program"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("docker-compose");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        assert!(!executable(&file), "not executable yet");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(executable(&file));
        assert!(!executable(dir.path()), "a directory is not a program");
    }

    #[test]
    fn extra_plugin_dirs_come_from_the_docker_config() {
        assert_eq!(
            extra_plugin_dirs(
                r#"{"auths":{},"cliPluginsExtraDirs":["/opt/homebrew/lib/docker/cli-plugins"]}"#
            ),
            vec![PathBuf::from("/opt/homebrew/lib/docker/cli-plugins")]
        );
        assert!(extra_plugin_dirs(r#"{"auths":{}}"#).is_empty());
        assert!(extra_plugin_dirs("not json").is_empty());
        assert!(extra_plugin_dirs("").is_empty());
    }

    fn project(profile: Option<&str>) -> Project {
        Project {
            name: "ktrdr--x".into(),
            files: vec![PathBuf::from("/w/ktrdr--x/docker-compose.yml")],
            profile: profile.map(str::to_string),
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn v2_command_line() {
        let (prog, args) = project(None).argv(Flavor::V2, &["down", "--volumes"]);
        assert_eq!(prog, "docker");
        assert_eq!(
            args,
            [
                "compose",
                "-p",
                "ktrdr--x",
                "-f",
                "/w/ktrdr--x/docker-compose.yml",
                "down",
                "--volumes"
            ]
        );
    }

    #[test]
    fn v1_command_line_puts_profile_before_the_subcommand() {
        let (prog, args) = project(Some("local-prod")).argv(Flavor::V1, &["up", "-d"]);
        assert_eq!(prog, "docker-compose");
        assert_eq!(
            args,
            [
                "-p",
                "ktrdr--x",
                "-f",
                "/w/ktrdr--x/docker-compose.yml",
                "--profile",
                "local-prod",
                "up",
                "-d"
            ]
        );
    }

    #[test]
    fn finds_the_first_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["a.yml".to_string(), "b.yml".to_string()];
        assert_eq!(find_file(dir.path(), &names), None);
        std::fs::write(dir.path().join("b.yml"), "").unwrap();
        assert_eq!(
            find_file(dir.path(), &names),
            Some(dir.path().join("b.yml"))
        );
        std::fs::write(dir.path().join("a.yml"), "").unwrap();
        assert_eq!(
            find_file(dir.path(), &names),
            Some(dir.path().join("a.yml"))
        );
    }
}
