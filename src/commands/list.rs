//! `kinfra sandbox list [--json] [--watch]` — every registered instance; stale entries
//! (directory gone) are reported, never silently dropped. With hosts registered, the
//! sandboxes on them too (one ssh round trip per host, all hosts at once, beside the
//! local read); a host that does not answer has its rows marked unreachable and a
//! warning. `--watch` keeps going (this machine's instances): the table is drawn again on
//! each change, or (with `--json`) one JSON line per change.

use std::io::{self, IsTerminal, Write};

use crate::context::Ctx;
use crate::error::Result;
use crate::hosts::{Host, HostsFile};
use crate::instance::Kind;
use crate::listing::{self, HostAnswer, HostedReport, HostedRow};
use crate::output;
use crate::remote::{self, RemoteIndex};
use crate::watch;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox list
  kinfra sandbox list --json | jq -r '.instances[] | select(.status == \"running\") | .instance_id'
  kinfra sandbox list --watch --json | jq -c 'select(.event != \"initial\") | [.event, .instance.instance_id, .instance.status]'

With --watch --json, each line is {\"schema_version\":1,\"event\":E,\"instance\":ROW}: one
`initial` line per instance, then `changed`, `created` or `destroyed` lines as they happen.
Watching ends with exit 0 on Ctrl-C or SIGTERM, and quietly when the reader goes away.")]
pub struct Args {
    /// Print one JSON object (`schema_version` 1) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep watching: print again on every change (with --json: one line per change).
    #[arg(long)]
    pub watch: bool,
}

/// The rows of this user's sandboxes on other hosts, from what the hosts answered.
fn remote_rows(
    index: &RemoteIndex,
    answers: &[remote::HostListing],
) -> (Vec<HostedRow>, Vec<HostAnswer>) {
    let mut rows = Vec::new();
    for e in index.instances.values() {
        let answer = answers.iter().find(|a| a.host == e.host);
        let found = answer.and_then(|a| a.rows.as_ref().ok()).map(|list| {
            list.iter()
                .find(|r| r.instance_id == e.instance_id)
                .cloned()
        });
        let (status, stale, slot, branch, api_port) = match found {
            None => (
                "unreachable".to_string(),
                false,
                0,
                Some(e.branch.clone()),
                None,
            ),
            Some(None) => ("missing".to_string(), true, 0, Some(e.branch.clone()), None),
            Some(Some(r)) => (r.status, false, r.slot, r.branch, r.api_port),
        };
        rows.push(HostedRow {
            row: listing::ListRow {
                instance_id: e.instance_id.clone(),
                kind: Kind::Sandbox,
                slot,
                path: e.path.clone(),
                created_at: e.created_at.clone(),
                is_worktree: true,
                parent_repo: Some(e.checkout.clone()),
                branch,
                api_port,
                status,
                health: None,
                stale,
                current: false,
            },
            host: e.host.clone(),
        });
    }
    let hosts = answers
        .iter()
        .map(|a| HostAnswer {
            name: a.host.clone(),
            reachable: a.rows.is_ok(),
            error: a.rows.as_ref().err().cloned(),
            elapsed_ms: u64::try_from(a.elapsed.as_millis()).unwrap_or(u64::MAX),
        })
        .collect();
    (rows, hosts)
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    if args.watch {
        return run_watch(ctx, args.json);
    }
    let hosts = HostsFile::load()?.all();
    let index = if hosts.is_empty() {
        RemoteIndex::default()
    } else {
        RemoteIndex::load()?
    };
    // Only hosts holding this user's sandboxes are asked.
    let asked: Vec<Host> = hosts
        .into_iter()
        .filter(|h| index.on_host(&h.name).next().is_some())
        .collect();
    let (local, answers) = std::thread::scope(|s| {
        let remote = s.spawn(|| remote::list_hosts(&asked, &index));
        let local = crate::registry::load_with_state(&ctx.config.registry_paths())
            .map(|(registry, state)| listing::list(&ctx.config, &registry, &state, &ctx.cwd));
        (local, remote.join().unwrap_or_default())
    });
    let local = local?;
    if let Some(e) = &local.docker_error {
        output::warn(&format!("Docker did not answer ({e}); status is unknown"));
    }
    let (remote, host_answers) = remote_rows(&index, &answers);
    for a in host_answers.iter().filter(|a| !a.reachable) {
        output::warn(&format!(
            "host `{}` did not answer ({}); its sandboxes are shown as unreachable",
            a.name,
            a.error.as_deref().unwrap_or("")
        ));
    }
    let with_hosts = !host_answers.is_empty() || !remote.is_empty();
    let mut rows: Vec<HostedRow> = local
        .instances
        .into_iter()
        .map(|row| HostedRow {
            row,
            host: crate::hosts::LOCAL.into(),
        })
        .collect();
    rows.extend(remote);
    let report = HostedReport {
        schema_version: 1,
        instances: rows,
        docker_error: local.docker_error,
        hosts: host_answers,
    };
    if args.json {
        super::print_json(&report);
        return Ok(0);
    }
    if report.instances.is_empty() {
        output::note("no instances are registered; create one with `kinfra sandbox create NAME`");
        return Ok(0);
    }
    let rows: Vec<(&listing::ListRow, Option<&str>)> = report
        .instances
        .iter()
        .map(|h| (&h.row, with_hosts.then_some(h.host.as_str())))
        .collect();
    output::data(&table(&rows));
    let stale: Vec<&listing::ListRow> = report
        .instances
        .iter()
        .filter(|h| h.row.stale && h.host == crate::hosts::LOCAL)
        .map(|h| &h.row)
        .collect();
    if !stale.is_empty() {
        output::warn(&format!(
            "{} registered instance(s) are missing their directory (stale)",
            stale.len()
        ));
        for r in stale {
            let cmd = match r.kind {
                Kind::Sandbox => format!("kinfra sandbox destroy {} --yes", r.instance_id),
                Kind::LocalProd => "kinfra local-prod destroy --yes".into(),
            };
            output::hint(&format!(
                "`{cmd}` frees slot {} (it also removes its containers)",
                r.slot
            ));
        }
    }
    Ok(0)
}

/// The human table of `rows`, with a HOST column when any row names its host.
fn table(rows: &[(&listing::ListRow, Option<&str>)]) -> String {
    let with_hosts = rows.iter().any(|(_, host)| host.is_some());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(r, host)| {
            let mut cells = vec![
                format!(
                    "{}{}{}",
                    if r.current { "* " } else { "  " },
                    r.instance_id,
                    if r.kind == Kind::LocalProd {
                        " (local-prod)"
                    } else {
                        ""
                    }
                ),
                r.slot.to_string(),
                if r.stale {
                    "missing (stale)".into()
                } else {
                    r.status.clone()
                },
                r.branch.clone().unwrap_or_else(|| "-".into()),
                r.api_port.map_or("-".into(), |p| p.to_string()),
                r.path.clone(),
                r.created_at
                    .get(..19)
                    .unwrap_or(&r.created_at)
                    .replace('T', " "),
            ];
            if with_hosts {
                cells.insert(1, host.unwrap_or_default().to_string());
            }
            cells
        })
        .collect();
    let mut header = vec![
        "  INSTANCE",
        "SLOT",
        "STATUS",
        "BRANCH",
        "API",
        "PATH",
        "CREATED",
    ];
    if with_hosts {
        header.insert(1, "HOST");
    }
    output::table(&header, &cells)
}

/// `--watch`: lines (or tables) until Ctrl-C, SIGTERM or the reader goes away; all of
/// them end with exit 0.
fn run_watch(ctx: &Ctx, json: bool) -> Result<u8> {
    let mut sink = WatchOut {
        json,
        tty: std::io::stdout().is_terminal(),
    };
    match watch::watch(&ctx.config, &ctx.cwd, &mut sink)? {
        watch::End::Interrupted | watch::End::OutputClosed => Ok(0),
    }
}

struct WatchOut {
    json: bool,
    tty: bool,
}

impl watch::Sink for WatchOut {
    fn changes(
        &mut self,
        changes: &[watch::WatchLine],
        rows: &[listing::ListRow],
    ) -> io::Result<()> {
        let mut out = io::stdout().lock();
        if self.json {
            for line in changes {
                let text = serde_json::to_string(line).map_err(io::Error::other)?;
                writeln!(out, "{text}")?;
            }
        } else {
            if self.tty {
                // Clear the screen and go home: the table is drawn afresh.
                write!(out, "\x1b[2J\x1b[H")?;
            }
            let stamp = crate::timefmt::now_iso();
            writeln!(out, "# {stamp}")?;
            if rows.is_empty() {
                writeln!(out, "(no instances are registered)")?;
            } else {
                let rows: Vec<(&listing::ListRow, Option<&str>)> =
                    rows.iter().map(|r| (r, None)).collect();
                writeln!(out, "{}", table(&rows))?;
            }
            if !self.tty {
                writeln!(out)?;
            }
        }
        out.flush()
    }

    fn closed(&self) -> bool {
        stdout_closed()
    }
}

/// Whether stdout is a pipe or socket whose reader went away (poll reports an error
/// on it), so an idle watch ends without waiting for its next line to fail.
fn stdout_closed() -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let stdout = io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)),
        Err(_) => false,
    }
}
