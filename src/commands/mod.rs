//! One file per command: its clap arguments beside its handler. Commands parse, call
//! the domain modules, and print; the printing helpers they share live here.

pub mod completions;
pub mod config;
pub mod doctor;
pub mod down;
pub mod env;
pub mod forward;
pub mod hooks;
pub mod hosts;
pub mod init_shared;
pub mod list;
pub mod local_prod_create;
pub mod local_prod_destroy;
pub mod local_prod_init;
pub mod logs;
pub mod man;
pub mod mcp;
pub mod path;
pub mod ports;
pub mod reap;
pub mod remote;
pub mod rescue;
pub mod sandbox_create;
pub mod sandbox_destroy;
pub mod sandbox_init;
pub mod shell;
pub mod snapshot;
pub mod status;
pub mod top;
pub mod up;
pub mod url;
pub mod wait;

use crate::config::{CheckKind, Config};
use crate::context::Ctx;
use crate::error::{Diagnostic, Exit, Result};
use crate::instance::{self, Kind, Selector};
use crate::output;
use crate::provision::Created;

/// `--instance NAME`: the instance a command acts on, by id or by the name given to
/// `create`, wherever it lives (always unambiguous, unlike a positional NAME).
#[derive(Debug, Clone, clap::Args)]
pub struct InstanceArg {
    /// The instance to act on (id or the name given to create), from any directory.
    #[arg(long = "instance", value_name = "NAME", add = clap_complete::ArgValueCandidates::new(completions::instance_names))]
    pub instance: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum NameError {
    #[error("`{0}` is both an instance and this command's own argument here")]
    Both(String),
    #[error("both --instance and a positional NAME were given")]
    Twice,
}

impl Diagnostic for NameError {
    fn exit(&self) -> Exit {
        Exit::Usage
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            NameError::Both(n) => {
                format!("say which: `--instance {n}`, or put the instance first (`NAME ARG`)")
            }
            NameError::Twice => "give the instance once".into(),
        })
    }
}

/// `kinfra sandbox <command> [NAME] [ARG]`: with two positionals the first is NAME;
/// with one, it is NAME when an instance has that name or id and it is not also this
/// command's own argument here (`is_arg`), else the argument; `--instance` always
/// names the instance.
pub fn name_and_arg(
    ctx: &Ctx,
    kind: Kind,
    flag: &InstanceArg,
    first: Option<&str>,
    second: Option<&str>,
    is_arg: &dyn Fn(&instance::Found, &str) -> bool,
) -> Result<(Selector, Option<String>)> {
    if let Some(name) = &flag.instance {
        if second.is_some() {
            return Err(NameError::Twice.into());
        }
        return Ok((Selector::Named(name.clone()), first.map(str::to_string)));
    }
    match (first, second) {
        (Some(n), Some(a)) => Ok((Selector::Named(n.to_string()), Some(a.to_string()))),
        (Some(one), None) => {
            if !instance::names_an_instance(ctx, one) {
                return Ok((Selector::Here, Some(one.to_string())));
            }
            // An instance has that name; is it also the argument of the instance here?
            let here = instance::select(ctx, &Selector::Here, Some(kind));
            if let Ok(found) = here
                && is_arg(&found, one)
            {
                return Err(NameError::Both(one.to_string()).into());
            }
            Ok((Selector::Named(one.to_string()), None))
        }
        (None, _) => Ok((Selector::Here, None)),
    }
}

/// `[NAME]` alone (commands without an argument of their own).
pub fn selector(flag: &InstanceArg, name: Option<&str>) -> Result<Selector> {
    match (flag.instance.as_deref(), name) {
        (Some(_), Some(_)) => Err(NameError::Twice.into()),
        (Some(n), None) | (None, Some(n)) => Ok(Selector::Named(n.to_string())),
        (None, None) => Ok(Selector::Here),
    }
}

/// Plan lines (`--dry-run`) are data: stdout.
pub fn print_lines(lines: &[String]) {
    for line in lines {
        output::data(line);
    }
}

/// A typed report as one JSON object on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(text) => output::data(&text),
        // Our own report types always serialize; say so if one ever does not.
        Err(e) => output::error(&format!("cannot render JSON: {e}")),
    }
}

/// The human summary printed after create/init.
pub fn print_created(config: &Config, what: &str, created: &Created) {
    output::done(&format!("{what} `{}`", created.id));
    output::note(&format!("  {:<12}{}", "Location:", created.path.display()));
    output::note(&format!("  {:<12}{}", "Slot:", created.slot));
    if let Ok(mut ports) = config.ports.for_slot(created.slot) {
        // Only what the compose file publishes is worth a URL.
        if let Some(published) = &created.published {
            ports.retain(|p| published.contains(&p.key));
        }
        for (label, url) in crate::layout::urls(config, &ports) {
            output::note(&format!("  {:<12}{url}", format!("{label}:")));
        }
    }
}

/// How to reach a port: its URL template, `http://localhost:PORT` when a gate check
/// speaks HTTP to it, else `localhost:PORT` (a database is not HTTP).
pub fn url_of(config: &Config, key: &str, port: u16) -> String {
    let group = config
        .ports
        .specs
        .iter()
        .find(|(k, s)| {
            k == key || (s.count > 1 || s.local_prod_count > 1) && key.starts_with(&format!("{k}_"))
        })
        .map(|(k, s)| (k.as_str(), s));
    if let Some((_, spec)) = group
        && let Some(t) = &spec.url
    {
        return t.replace("{port}", &port.to_string());
    }
    let http = config
        .gate_checks
        .iter()
        .any(|c| c.kind == CheckKind::Http && c.port == key);
    if http {
        format!("http://localhost:{port}")
    } else {
        format!("localhost:{port}")
    }
}
