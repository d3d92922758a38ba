//! `kinfra url [PORT_KEY]` — this instance's URLs.

use crate::context::{self, Ctx, Want};
use crate::error::{Error, Result};
use crate::layout;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print only this port's URL (e.g. `KTRDR_API_PORT`).
    pub port_key: Option<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let registry = ctx.registry()?;
    let inst = context::current_instance(ctx, &registry, Want::Either)?;
    let config = &ctx.config;
    let ports = super::instance_ports(config, &inst)?;
    match &args.port_key {
        Some(key) => {
            let p = ports
                .iter()
                .find(|p| &p.key == key || &p.group == key)
                .ok_or_else(|| {
                    let keys: Vec<&str> = ports.iter().map(|p| p.key.as_str()).collect();
                    Error::usage(format!("no port key `{key}`"))
                        .hint(format!("known keys: {}", keys.join(", ")))
                })?;
            let port = inst.env.require_port(&p.key)?;
            let url = config
                .ports
                .spec(&p.group)
                .and_then(|s| s.url.clone())
                .unwrap_or_else(|| "http://localhost:{port}".into())
                .replace("{port}", &port.to_string());
            output::data(&url);
        }
        None => {
            let rows: Vec<Vec<String>> = layout::urls(config, &ports)
                .into_iter()
                .map(|(label, url)| vec![label, url])
                .collect();
            output::data(&output::table(&["SERVICE", "URL"], &rows));
        }
    }
    Ok(0)
}
