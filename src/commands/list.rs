//! `kinfra sandbox list [--json] [--watch]` — every registered instance; stale entries
//! (directory gone) are reported, never silently dropped. `--watch` keeps going: the
//! table is drawn again on each change, or (with `--json`) one JSON line per change.

use std::io::{self, IsTerminal, Write};

use crate::context::Ctx;
use crate::error::Result;
use crate::instance::Kind;
use crate::listing;
use crate::output;
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

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    if args.watch {
        return run_watch(ctx, args.json);
    }
    let (registry, state) = crate::registry::load_with_state(&ctx.config.registry_paths())?;
    let report = listing::list(&ctx.config, &registry, &state, &ctx.cwd);
    if let Some(e) = &report.docker_error {
        output::warn(&format!("Docker did not answer ({e}); status is unknown"));
    }
    if args.json {
        super::print_json(&report);
        return Ok(0);
    }
    if report.instances.is_empty() {
        output::note("no instances are registered; create one with `kinfra sandbox create NAME`");
        return Ok(0);
    }
    output::data(&table(&report.instances));
    let stale: Vec<&listing::ListRow> = report.instances.iter().filter(|r| r.stale).collect();
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

/// The human table of `rows`.
fn table(instances: &[listing::ListRow]) -> String {
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|r| {
            vec![
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
            ]
        })
        .collect();
    output::table(
        &[
            "  INSTANCE",
            "SLOT",
            "STATUS",
            "BRANCH",
            "API",
            "PATH",
            "CREATED",
        ],
        &rows,
    )
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
                writeln!(out, "{}", table(rows))?;
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
