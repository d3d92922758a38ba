//! `kinfra hosts add|list|rm|check`: the machines sandboxes run on.

use serde::Serialize;

use crate::error::Result;
use crate::hosts::{self, HostEntry, HostError, HostsFile, LOCAL, SshUrl};
use crate::output;
use crate::remote::RemoteIndex;

#[derive(Debug, clap::Subcommand)]
pub enum HostsCommand {
    /// Register a host reachable over ssh.
    #[command(after_help = "Examples:
  kinfra hosts add box1 ssh://me@box1.lan
  kinfra hosts add gpu ssh://gpu:2222")]
    Add(AddArgs),
    /// List the hosts (`local` is always one).
    #[command(after_help = "Examples:
  kinfra hosts list
  kinfra hosts list --json")]
    List(ListArgs),
    /// Forget a host (refused while sandboxes live there, unless --force).
    #[command(after_help = "Examples:
  kinfra hosts rm box1
  kinfra hosts rm box1 --force   # also forget its sandboxes (nothing is removed there)")]
    Rm(RmArgs),
    /// Check hosts: ssh, Docker and Compose versions, kinfra there, free slots, memory, disk.
    #[command(after_help = "Examples:
  kinfra hosts check
  kinfra hosts check box1 --json")]
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The host's name in kinfra (`--host NAME`).
    pub name: String,
    /// Its address: `ssh://[user@]host[:port]` (an ssh config alias works as host).
    pub url: String,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print one JSON object (`schema_version` 1) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// The host to forget.
    pub name: String,
    /// Forget it even though sandboxes are registered there (forgets them too; nothing
    /// on the host is removed).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Only this host (default: every host).
    pub name: Option<String>,
    /// Print one JSON object (`schema_version` 1) instead of lines.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: &HostsCommand) -> Result<u8> {
    match cmd {
        HostsCommand::Add(a) => add(a),
        HostsCommand::List(a) => list(a),
        HostsCommand::Rm(a) => rm(a),
        HostsCommand::Check(a) => check(a),
    }
}

fn add(args: &AddArgs) -> Result<u8> {
    if !hosts::valid_name(&args.name) {
        return Err(HostError::BadName(args.name.clone()).into());
    }
    let url = SshUrl::parse(&args.url)?;
    hosts::update(&output::Term::new(), |file| {
        if file.hosts.contains_key(&args.name) {
            return Err(HostError::Exists(args.name.clone()));
        }
        file.hosts.insert(
            args.name.clone(),
            HostEntry {
                url: url.to_url(),
                added_at: crate::timefmt::now_iso(),
            },
        );
        Ok(())
    })?;
    output::done(&format!("added host `{}` ({})", args.name, url.to_url()));
    output::hint(&format!("`kinfra hosts check {}` tries it", args.name));
    Ok(0)
}

#[derive(Debug, Serialize)]
struct HostRow {
    name: String,
    url: Option<String>,
    instances: usize,
}

#[derive(Debug, Serialize)]
struct HostsReport {
    schema_version: u32,
    hosts: Vec<HostRow>,
}

fn list(args: &ListArgs) -> Result<u8> {
    let file = HostsFile::load()?;
    let index = RemoteIndex::load()?;
    let mut rows = vec![HostRow {
        name: LOCAL.into(),
        url: None,
        instances: 0,
    }];
    rows.extend(file.hosts.iter().map(|(name, e)| HostRow {
        name: name.clone(),
        url: Some(e.url.clone()),
        instances: index.on_host(name).count(),
    }));
    if args.json {
        super::print_json(&HostsReport {
            schema_version: 1,
            hosts: rows,
        });
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.url.clone().unwrap_or_else(|| "(this machine)".into()),
                if r.name == LOCAL {
                    "-".into()
                } else {
                    r.instances.to_string()
                },
            ]
        })
        .collect();
    output::data(&output::table(&["HOST", "ADDRESS", "SANDBOXES"], &table));
    Ok(0)
}

fn rm(args: &RmArgs) -> Result<u8> {
    if args.name == LOCAL {
        return Err(HostError::BadName(args.name.clone()).into());
    }
    HostsFile::load()?.host(&args.name)?;
    let index = RemoteIndex::load()?;
    let there: Vec<String> = index
        .on_host(&args.name)
        .map(|e| e.instance_id.clone())
        .collect();
    if !there.is_empty() && !args.force {
        return Err(HostError::HasInstances {
            host: args.name.clone(),
            count: there.len(),
            names: there.join(", "),
        }
        .into());
    }
    if !there.is_empty() {
        crate::remote::update(&output::Term::new(), |idx| {
            idx.instances.retain(|_, e| e.host != args.name);
            Ok(())
        })?;
        output::warn(&format!(
            "forgot {} sandbox(es) on `{}` (still there on the host): {}",
            there.len(),
            args.name,
            there.join(", ")
        ));
    }
    hosts::update(&output::Term::new(), |file| {
        file.hosts.remove(&args.name);
        Ok(())
    })?;
    output::done(&format!("removed host `{}`", args.name));
    Ok(0)
}

#[derive(Debug, Serialize)]
struct CheckRow {
    name: String,
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(flatten)]
    facts: Option<hosts::Facts>,
    /// Same version as this kinfra.
    kinfra_current: bool,
    free_slots: Option<u32>,
}

#[derive(Debug, Serialize)]
struct CheckReport {
    schema_version: u32,
    local_kinfra: String,
    hosts: Vec<CheckRow>,
}

fn check(args: &CheckArgs) -> Result<u8> {
    let file = HostsFile::load()?;
    let targets = match &args.name {
        Some(n) => vec![file.host(n)?],
        None => file.all(),
    };
    let index = RemoteIndex::load()?;
    let rows: Vec<CheckRow> = std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .map(|h| s.spawn(move || hosts::facts(h, true)))
            .collect();
        handles
            .into_iter()
            .zip(&targets)
            .map(|(handle, h)| {
                let res = handle
                    .join()
                    .unwrap_or_else(|_| Err(HostError::NotFound(h.name.clone())));
                // Slots of the built-in layout; each checkout there may have its own.
                let used = u32::try_from(index.on_host(&h.name).count()).unwrap_or(u32::MAX);
                match res {
                    Ok(f) => CheckRow {
                        name: h.name.clone(),
                        reachable: true,
                        error: None,
                        kinfra_current: f.kinfra.as_deref() == Some(&hosts::local_version()),
                        facts: Some(f),
                        free_slots: Some(10u32.saturating_sub(used)),
                    },
                    Err(e) => CheckRow {
                        name: h.name.clone(),
                        reachable: false,
                        error: Some(crate::error::one_line(&e.to_string())),
                        facts: None,
                        kinfra_current: false,
                        free_slots: None,
                    },
                }
            })
            .collect()
    });
    let unreachable = rows.iter().filter(|r| !r.reachable).count();
    if args.json {
        super::print_json(&CheckReport {
            schema_version: 1,
            local_kinfra: hosts::local_version(),
            hosts: rows,
        });
    } else {
        for r in &rows {
            let Some(f) = &r.facts else {
                output::data(&format!(
                    "{}: unreachable ({})",
                    r.name,
                    r.error.as_deref().unwrap_or("")
                ));
                continue;
            };
            let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "missing".into());
            let kinfra = match (&f.kinfra, r.kinfra_current) {
                (Some(v), true) => format!("{v} (current)"),
                (Some(v), false) => format!("{v} (will be updated on first use)"),
                (None, _) => "not installed (installed on first use)".into(),
            };
            output::data(&format!(
                "{}: ssh ok, {} {}, docker {}, compose {}, {kinfra}, free slots {}, memory {} MiB, disk {} MiB, docker networks {}",
                r.name,
                f.arch,
                or(&f.glibc),
                or(&f.docker),
                or(&f.compose),
                r.free_slots.map_or("?".into(), |n| n.to_string()),
                f.mem_available_mb.map_or("?".into(), |n| n.to_string()),
                f.disk_free_mb.map_or("?".into(), |n| n.to_string()),
                f.networks.map_or("?".into(), |n| n.to_string()),
            ));
        }
    }
    if unreachable > 0 {
        output::warn(&format!("{unreachable} host(s) did not answer"));
        return Ok(crate::error::Exit::External.code());
    }
    Ok(0)
}
