//! `kinfra reap --idle DURATION [--dry-run] [--json]` — stop (never delete) sandboxes
//! nothing used for that long.

use std::time::Duration;

use crate::context::Ctx;
use crate::error::Result;
use crate::output;
use crate::reap;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra reap --idle 2h --dry-run     # who would be stopped
  kinfra reap --idle 2h               # stop them (volumes kept; `up` wakes them)
  */15 * * * * kinfra reap --idle 2h  # from cron: activity is judged between runs")]
pub struct Args {
    /// Stop sandboxes idle for this long (`90m`, `2h`, `1d`, or seconds).
    #[arg(long, value_name = "DURATION", value_parser = parse_idle)]
    pub idle: Duration,
    /// Print who would be stopped, and stop nothing (activity seen is still recorded).
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object (`schema_version` 1) instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_idle(text: &str) -> std::result::Result<Duration, String> {
    reap::parse_idle(text)
        .ok_or_else(|| format!("`{text}` is not a duration like `90m`, `2h` or `1d`"))
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let report = reap::reap(&ctx.config, args.idle, args.dry_run, &output::Term::new())?;
    if args.json {
        super::print_json(&report);
        return Ok(0);
    }
    if report.instances.is_empty() {
        output::note("no sandbox is running");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = report
        .instances
        .iter()
        .map(|s| {
            vec![
                s.instance_id.clone(),
                crate::rescue::human_duration(Duration::from_secs(s.idle_for_secs)),
                match (&s.skipped, s.stop, args.dry_run) {
                    (Some(why), _, _) => format!("kept: {why}"),
                    (None, true, true) => "would stop".into(),
                    (None, true, false) => "stopped".into(),
                    (None, false, _) => "in use".into(),
                },
            ]
        })
        .collect();
    output::data(&output::table(&["INSTANCE", "IDLE", "ACTION"], &rows));
    Ok(0)
}
