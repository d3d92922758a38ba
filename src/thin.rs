//! Thin mode: `DOCKER_HOST` points at an engine on another machine that is not a
//! registered host. Compose then runs here against that engine, so a bind mount's
//! source is looked up on the engine's side (a source missing there becomes an empty
//! directory while the stack looks healthy) and ports published on 127.0.0.1 are that
//! machine's, not this one's. `up` checks the first on the engine and warns about the
//! second.

use std::path::PathBuf;

use crate::engine::{self, Engine, EngineError, NewContainer};
use crate::error::{Diagnostic, Exit};

#[derive(Debug, thiserror::Error)]
pub enum ThinError {
    #[error(
        "the Docker engine at `{engine}` is on another machine and does not have {}: {}",
        if .missing.len() == 1 { "this bind-mount source" } else { "these bind-mount sources" },
        .missing.iter().map(|(s, p)| format!("`{}` (mounted by {s})", p.display())).collect::<Vec<_>>().join(", ")
    )]
    MissingOnEngine {
        engine: String,
        missing: Vec<(String, PathBuf)>,
    },
    #[error("cannot check bind-mount sources on the Docker engine at `{engine}`: {source}")]
    Engine { engine: String, source: EngineError },
}

impl Diagnostic for ThinError {
    fn exit(&self) -> Exit {
        match self {
            ThinError::MissingOnEngine { .. } => Exit::Refused,
            ThinError::Engine { .. } => Exit::External,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            ThinError::MissingOnEngine { .. } => "create them on that machine, or run the sandbox there: `kinfra hosts add NAME ssh://…` and `kinfra sandbox create NAME --host NAME`".into(),
            ThinError::Engine { .. } => "check DOCKER_HOST, then retry".into(),
        })
    }
}

/// Whether an address (`host:port`) is this machine's.
fn is_loopback(addr: &str) -> bool {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_matches(['[', ']']);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// The engine's address when kinfra is in thin mode: a `tcp://` engine whose host is
/// not this machine and not a registered host (those run their sandboxes themselves).
pub fn remote_engine(registered: &[String]) -> Option<String> {
    let options = engine::Options::from_env().ok()?;
    match options.host {
        engine::Host::Tcp(addr) if !is_loopback(&addr) => {
            let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
            (!registered.iter().any(|r| r == host)).then_some(addr)
        }
        _ => None,
    }
}

/// The registered hosts' host names (for [`remote_engine`]).
pub fn registered_hosts() -> Vec<String> {
    crate::hosts::HostsFile::load()
        .map(|f| f.all().into_iter().map(|h| h.url.host).collect())
        .unwrap_or_default()
}

/// Which of `sources` (with the services mounting them) do not exist on the engine's
/// side: for each, a container that mounts it is created (never started) and removed;
/// the engine refuses to create one whose bind source it does not have.
pub fn missing_on_engine(
    addr: &str,
    sources: &[(String, PathBuf)],
) -> Result<Vec<(String, PathBuf)>, ThinError> {
    let fail = |source| ThinError::Engine {
        engine: addr.to_string(),
        source,
    };
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let engine = Engine::connect().map_err(fail)?;
    let Some(image) = engine.any_image().map_err(fail)? else {
        return Err(fail(EngineError::ImageMissing("any image".into())));
    };
    let mut missing = Vec::new();
    for (i, (services, path)) in sources.iter().enumerate() {
        let name = format!("kinfra-bind-check-{}-{i}", std::process::id());
        let spec = NewContainer::new(&name, &image)
            .bind(&path.display().to_string(), "/kinfra-bind-check")
            .label("kinfra.bind-check", "1");
        match engine.container_create(&spec) {
            Ok(id) => {
                let _ = engine.container_remove(&id, true);
            }
            Err(EngineError::Api {
                status: 400,
                ref message,
                ..
            }) if message.contains("does not exist") => {
                missing.push((services.clone(), path.clone()));
            }
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_this_machine() {
        for local in [
            "127.0.0.1:2375",
            "localhost:2375",
            "[::1]:2375",
            "0.0.0.0:2375",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in ["10.0.0.2:2375", "box1:2375", "[fe80::1]:2375"] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }
}
