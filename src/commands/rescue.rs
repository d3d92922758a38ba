//! `kinfra rescue list|restore|prune`: the work `destroy --rescue` kept, put back, or
//! (explicitly, never automatically) pruned.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::context::Ctx;
use crate::error::Result;
use crate::output;
use crate::rescue::{self, RescueRecord, Stamp};

#[derive(Debug, clap::Subcommand)]
pub enum RescueCommand {
    /// List the rescues of this project (refs and rescue directories).
    #[command(after_help = "Examples:
  kinfra rescue list
  kinfra rescue list --json")]
    List(ListArgs),
    /// Put a rescue's work back where it was (or at PATH): commits as commits, staged
    /// versions staged, edits as edits, moved files in their places.
    #[command(after_help = "Examples:
  kinfra rescue restore ktrdr--my-feature                    # its latest rescue, at its old path
  kinfra rescue restore ktrdr--my-feature/20261128T203000Z ../elsewhere")]
    Restore(RestoreArgs),
    /// Delete rescues older than a number of days (refs and directories).
    #[command(after_help = "Examples:
  kinfra rescue prune --older-than 90 --dry-run
  kinfra rescue prune --older-than 90")]
    Prune(PruneArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print one JSON object (`schema_version` 1) instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// `<instance>/<time>`, a ref name, or an instance (its latest rescue).
    pub name: String,
    /// Where to put the worktree (default: where it was).
    pub path: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Delete rescues older than this many days.
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u64).range(0..=36_500))]
    pub older_than: u64,
    /// Print what would be deleted, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `rescue list --json`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct ListReport {
    schema_version: u32,
    rescues: Vec<Row>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Row {
    name: String,
    instance: String,
    refname: Option<String>,
    commit: Option<String>,
    dir: Option<PathBuf>,
    branch: Option<String>,
    worktree: Option<PathBuf>,
    partial: bool,
    summary: String,
}

fn mains(ctx: &Ctx) -> Vec<PathBuf> {
    ctx.main_repos(ctx.registry().ok().as_ref())
}

pub fn run(ctx: &Ctx, cmd: &RescueCommand) -> Result<u8> {
    let state = &ctx.config.state_dir;
    match cmd {
        RescueCommand::List(args) => {
            let records = rescue::list(state, &mains(ctx));
            if args.json {
                super::print_json(&ListReport {
                    schema_version: 1,
                    rescues: records.iter().map(row).collect(),
                });
            } else if records.is_empty() {
                output::note("no rescues");
            } else {
                for r in &records {
                    output::data(&r.summary());
                }
                output::hint("`kinfra rescue restore NAME` puts one back");
            }
            Ok(0)
        }
        RescueCommand::Restore(args) => {
            let record = rescue::find(state, &mains(ctx), &args.name)?;
            let outcome = rescue::restore(&record, args.path.as_deref())?;
            for (i, line) in outcome.describe().iter().enumerate() {
                if i == 0 {
                    output::done(line);
                } else {
                    output::note(line);
                }
            }
            output::hint(
                "the rescue is kept; once you are sure, `kinfra rescue prune` can delete old ones",
            );
            output::data(&outcome.path.display().to_string());
            Ok(0)
        }
        RescueCommand::Prune(args) => {
            let older = Duration::from_secs(args.older_than * 86_400);
            let gone = rescue::prune(state, &mains(ctx), older, &Stamp::now(), args.dry_run)?;
            let verb = if args.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            for r in &gone {
                output::data(&format!("{verb} {}", r.summary()));
            }
            output::note(&format!("{} rescue(s) {verb}", gone.len()));
            Ok(0)
        }
    }
}

fn row(r: &RescueRecord) -> Row {
    Row {
        name: r.name(),
        instance: r.instance.clone(),
        refname: r.refname.clone(),
        commit: r.commit.clone(),
        dir: r.dir.clone(),
        branch: r.manifest.as_ref().and_then(|m| m.branch.clone()),
        worktree: r.manifest.as_ref().map(|m| m.worktree.clone()),
        partial: r.is_partial(),
        summary: r.summary(),
    }
}
