//! `kinfra url [PORT_KEY]` — this instance's URLs: `http://host:port` for HTTP
//! services, `host:port` for the others.

use crate::context::Ctx;
use crate::error::{Diagnostic, Exit, Result};
use crate::instance;
use crate::lifecycle;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra url                   # every port of this instance
  kinfra url KTRDR_API_PORT    # one, for scripts: curl \"$(kinfra url KTRDR_API_PORT)/api/v1/health\"")]
pub struct Args {
    /// Print only this port's URL (e.g. `KTRDR_API_PORT`).
    pub port_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("no port key `{key}`")]
struct UnknownKey {
    key: String,
    known: Vec<String>,
}

impl Diagnostic for UnknownKey {
    fn exit(&self) -> Exit {
        Exit::NotFound
    }
    fn hint(&self) -> Option<String> {
        Some(format!("known keys: {}", self.known.join(", ")))
    }
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let registry = ctx.registry()?;
    let inst = instance::current(ctx, &registry, None)?;
    let config = &ctx.config;
    let ports = lifecycle::instance_ports(config, &inst)?;
    match &args.port_key {
        Some(key) => {
            let p = ports
                .iter()
                .find(|p| &p.key == key || &p.group == key)
                .ok_or_else(|| UnknownKey {
                    key: key.clone(),
                    known: ports.iter().map(|p| p.key.clone()).collect(),
                })?;
            output::data(&super::url_of(config, &p.key, p.port));
        }
        None => {
            let rows: Vec<Vec<String>> = ports
                .iter()
                .map(|p| vec![p.key.clone(), super::url_of(config, &p.key, p.port)])
                .collect();
            output::data(&output::table(&["PORT KEY", "URL"], &rows));
        }
    }
    Ok(0)
}
