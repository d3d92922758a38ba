//! The error a command returns: one line of message, an optional hint, and the exit
//! code scripts can rely on (1 failure, 2 usage, 3 port conflict, as ktrdr's tool).

use crate::compose::ComposeError;
use crate::config::ConfigError;
use crate::docker::DockerError;
use crate::envfile::EnvError;
use crate::git::GitError;
use crate::registry::RegistryError;

/// Exit codes.
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;
pub const PORT_CONFLICT: u8 = 3;
/// `up`: the startability gate did not pass (shares its number with usage errors, as in
/// ktrdr's tool).
pub const GATE_FAILED: u8 = 2;

#[derive(Debug)]
pub struct Error {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn failure(message: impl Into<String>) -> Error {
        Error {
            code: FAILURE,
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error {
            code: USAGE,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_code(mut self, code: u8) -> Error {
        self.code = code;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Error {
        let hint = match &e {
            RegistryError::Corrupt { path, .. } => Some(format!(
                "nothing was changed; fix `{}` by hand or restore it from a backup (kinfra never treats it as empty)",
                path.display()
            )),
            RegistryError::LockTimeout { .. } => Some(
                "wait for the other command to finish, or raise KINFRA_LOCK_TIMEOUT (seconds)"
                    .to_string(),
            ),
            _ => None,
        };
        Error {
            code: FAILURE,
            message: e.to_string(),
            hint,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::failure(e.to_string())
    }
}

impl From<EnvError> for Error {
    fn from(e: EnvError) -> Error {
        Error::failure(e.to_string())
            .hint("fix the line by hand, or run `kinfra doctor` to compare it with the registry")
    }
}

impl From<GitError> for Error {
    fn from(e: GitError) -> Error {
        Error::failure(e.to_string())
    }
}

impl From<DockerError> for Error {
    fn from(e: DockerError) -> Error {
        let hint = match &e {
            DockerError::Missing => Some("install Docker Engine, then retry".to_string()),
            DockerError::DaemonDown(_) => {
                Some("start the Docker daemon (or check DOCKER_HOST), then retry".to_string())
            }
            DockerError::Process(_) => None,
        };
        Error {
            code: FAILURE,
            message: e.to_string(),
            hint,
        }
    }
}

impl From<ComposeError> for Error {
    fn from(e: ComposeError) -> Error {
        match e {
            ComposeError::Docker(d) => d.into(),
            ComposeError::Missing => Error::failure(e.to_string())
                .hint("install the Compose plugin (`docker compose`) or `docker-compose`"),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::failure(e.to_string())
    }
}
