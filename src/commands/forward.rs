//! `kinfra forward NAME`: the published ports of a sandbox on another host, reachable
//! here on 127.0.0.1 through ssh (the same port numbers when they are free here, else
//! free ones, printed), until Ctrl-C.

use std::net::TcpListener;

use serde::Serialize;

use crate::error::Result;
use crate::hosts::HostsFile;
use crate::output;
use crate::remote::{self, RemoteError, RemoteIndex};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra forward my-feature          # until Ctrl-C; prints `KEY 127.0.0.1:LOCAL -> HOST:PORT` per port")]
pub struct Args {
    /// The sandbox on another host (id or the name given to create).
    pub name: String,
}

/// One forwarded port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forward {
    pub key: String,
    pub remote: u16,
    pub local: u16,
}

/// The port keys and numbers a host's `sandbox status --json` reports as published
/// (its `ports` map, and container host ports not in it), each port once.
pub fn published(status: &serde_json::Value) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    let mut add = |key: String, port: u16| {
        if !out.iter().any(|(_, p)| *p == port) {
            out.push((key, port));
        }
    };
    if let Some(map) = status["ports"].as_object() {
        for (k, v) in map {
            if let Some(p) = v.as_u64().and_then(|p| u16::try_from(p).ok()) {
                add(k.clone(), p);
            }
        }
    }
    for c in status["containers"].as_array().into_iter().flatten() {
        let service = c["service"].as_str().unwrap_or("?");
        for p in c["host_ports"].as_array().into_iter().flatten() {
            if let Some(p) = p.as_u64().and_then(|p| u16::try_from(p).ok()) {
                add(service.to_string(), p);
            }
        }
    }
    out
}

/// The same port here when it is free, else any free one. The probe's listener is
/// closed again before ssh binds the port.
fn local_port_for(remote: u16) -> Option<u16> {
    if TcpListener::bind(("127.0.0.1", remote)).is_ok() {
        return Some(remote);
    }
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .ok()
        .map(|a| a.port())
}

pub fn run(args: &Args) -> Result<u8> {
    let index = RemoteIndex::load()?;
    let entry = index
        .find(&args.name)
        .ok_or_else(|| RemoteError::NotRemote(args.name.clone()))?;
    let host = HostsFile::load()?.host(&entry.host)?;
    let status = remote::run_json(
        &host,
        &entry.path,
        &["sandbox", "status", &entry.instance_id, "--json"],
    )?;
    let ports = published(&status);
    if ports.is_empty() {
        output::warn(&format!(
            "`{}` publishes no port on `{}`",
            entry.instance_id, host.name
        ));
        return Ok(0);
    }
    let mut forwards = Vec::new();
    for (key, remote) in ports {
        let Some(local) = local_port_for(remote) else {
            return Err(crate::error::Error::failure(format!(
                "no free local port for {key} ({remote})"
            )));
        };
        forwards.push(Forward { key, remote, local });
    }
    for f in &forwards {
        let moved = if f.local == f.remote {
            ""
        } else {
            "  (port taken here)"
        };
        output::data(&format!(
            "{} 127.0.0.1:{} -> {}:{}{moved}",
            f.key, f.local, host.name, f.remote
        ));
    }
    output::note(&format!(
        "forwarding {} port(s) of `{}` from host `{}`; Ctrl-C stops",
        forwards.len(),
        entry.instance_id,
        host.name
    ));
    let pairs: Vec<(u16, u16)> = forwards.iter().map(|f| (f.local, f.remote)).collect();
    match remote::tunnel(&host, &pairs)?.status(false) {
        Ok(s) if s.success() => Ok(0),
        Ok(s) => Err(crate::hosts::HostError::Unreachable {
            host: host.name.clone(),
            detail: format!(
                "the tunnel ended ({}); a local port may have been taken meanwhile",
                crate::process::describe_status(s)
            ),
        }
        .into()),
        Err(crate::process::ProcessError::Interrupted { .. }) => {
            output::done("stopped forwarding");
            Ok(0)
        }
        Err(e) => Err(crate::hosts::HostError::from(e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports_come_from_the_map_then_the_containers_each_once() {
        let status: serde_json::Value = serde_json::from_str(
            r#"{"ports":{"API":8001,"DB":5433},
                "containers":[{"service":"api","host_ports":[8001]},{"service":"extra","host_ports":[9999]}]}"#,
        )
        .unwrap();
        assert_eq!(
            published(&status),
            vec![
                ("API".to_string(), 8001),
                ("DB".to_string(), 5433),
                ("extra".to_string(), 9999)
            ]
        );
    }
}
