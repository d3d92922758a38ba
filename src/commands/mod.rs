//! One file per command: its clap arguments beside its handler. Commands parse, call
//! the domain modules, and print; the printing helpers they share live here.

pub mod completions;
pub mod config;
pub mod doctor;
pub mod down;
pub mod env;
pub mod init_shared;
pub mod list;
pub mod local_prod_create;
pub mod local_prod_destroy;
pub mod local_prod_init;
pub mod logs;
pub mod man;
pub mod ports;
pub mod reap;
pub mod rescue;
pub mod sandbox_create;
pub mod sandbox_destroy;
pub mod sandbox_init;
pub mod shell;
pub mod status;
pub mod up;
pub mod url;

use crate::config::{CheckKind, Config};
use crate::output;
use crate::provision::Created;

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
