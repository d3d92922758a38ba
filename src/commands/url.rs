//! `kinfra url [PORT_KEY]` (the current directory's instance), `kinfra sandbox url
//! [NAME] [PORT_KEY]` and `kinfra local-prod url [PORT_KEY]`: the instance's URLs —
//! `http://host:port` for HTTP services, `host:port` for the others.

use crate::context::Ctx;
use crate::error::{Diagnostic, Exit, Result};
use crate::instance::{self, Kind, Selector};
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

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox url my-feature                  # every port of another instance
  kinfra sandbox url my-feature KTRDR_API_PORT
  kinfra local-prod url KTRDR_API_PORT")]
pub struct InstanceArgs {
    /// `[NAME] [PORT_KEY]`: the instance (default: the one you are in) and one port key.
    /// With one word, it is the instance when one has that name.
    #[arg(value_name = "NAME|PORT_KEY")]
    pub first: Option<String>,
    /// Print only this port's URL.
    #[arg(value_name = "PORT_KEY")]
    pub second: Option<String>,
    #[command(flatten)]
    pub instance: super::InstanceArg,
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
    print(ctx, &Selector::Here, None, args.port_key.as_deref())
}

pub fn run_for(ctx: &Ctx, args: &InstanceArgs, kind: Kind) -> Result<u8> {
    let is_key = |found: &instance::Found, word: &str| {
        lifecycle::instance_ports(&found.ctx.config, &found.inst)
            .is_ok_and(|ps| ps.iter().any(|p| p.key == word || p.group == word))
    };
    let (sel, key) = super::name_and_arg(
        ctx,
        kind,
        &args.instance,
        args.first.as_deref(),
        args.second.as_deref(),
        &is_key,
    )?;
    print(ctx, &sel, Some(kind), key.as_deref())
}

fn print(ctx: &Ctx, sel: &Selector, kind: Option<Kind>, key: Option<&str>) -> Result<u8> {
    let found = instance::select(ctx, sel, kind)?;
    let config = &found.ctx.config;
    let ports = lifecycle::instance_ports(config, &found.inst)?;
    match key {
        Some(key) => {
            let p = ports
                .iter()
                .find(|p| p.key == key || p.group == key)
                .ok_or_else(|| UnknownKey {
                    key: key.to_string(),
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
