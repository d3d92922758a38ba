//! `kinfra sandbox create NAME [--branch B] [--slot N] [--data-from SOURCE] [--dry-run]`

use crate::context::Ctx;
use crate::error::Result;
use crate::instance::{Kind, Selector};
use crate::lifecycle::{self, Target};
use crate::output;
use crate::provision::{self, Checkout};
use crate::snapshot::{self, SnapshotError, Stored};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox create my-feature                 # ../<project>--my-feature on the lowest free slot
  kinfra sandbox create fix-42 --branch fix/42     # check out (or create) branch fix/42
  kinfra sandbox create spike --slot 5 --dry-run   # show what would happen
  kinfra sandbox create agent-7 --up               # create, start, wait for the gate, print URLs
  kinfra sandbox create quick --no-hooks           # without the post_create hooks of kinfra.toml
  kinfra sandbox create agent-8 --mcp              # and a .mcp.json for an agent started there
  kinfra sandbox create big-run --host box1        # on the registered host box1 (kinfra hosts add)
  kinfra sandbox create agent-9 --host auto --up   # on the host with the most free slots and memory
  kinfra sandbox create db-work --data-from local-prod              # volumes start as copies of local-prod's
  kinfra sandbox create repro --data-from snapshot:before-migration")]
pub struct Args {
    /// Sandbox name; slugified into the directory name (`My Feature!` → `my-feature`).
    pub name: String,
    /// Check out this branch (created from the current HEAD if it does not exist).
    /// Default: a branch named after the sandbox directory.
    #[arg(long)]
    pub branch: Option<String>,
    /// Use this slot instead of the lowest free one whose ports are free.
    #[arg(long, allow_negative_numbers = true)]
    pub slot: Option<i64>,
    /// Print what would be created, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Then start it and wait for its gate (`sandbox up`), and print its URLs.
    #[arg(long)]
    pub up: bool,
    #[command(flatten)]
    pub hooks: super::hooks::NoHooks,
    /// Also write `.mcp.json` in the worktree: a `kinfra mcp` server scoped to the
    /// sandbox, for an agent started there.
    #[arg(long)]
    pub mcp: bool,
    /// Where it runs: `local` (default), a registered host (`kinfra hosts list`), or
    /// `auto` (the host with the most free slots, then the most free memory).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Start the volumes as copies of `local-prod`'s, another instance's (id or name),
    /// or a snapshot's (`snapshot:NAME`). The source is only read.
    #[arg(long, value_name = "SOURCE")]
    pub data_from: Option<String>,
    /// With `--data-from` an instance: copy while its services run (no stop).
    #[arg(long, requires = "data_from")]
    pub live: bool,
}

/// Where `--data-from` copies from.
enum Source {
    Instance(Box<Target>),
    Snapshot(Stored),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Instance(t) => format!("instance `{}`", t.id()),
            Source::Snapshot(s) => format!("snapshot `{}`", s.manifest.name),
        }
    }
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let host = match args.host.as_deref() {
        None | Some(crate::hosts::LOCAL) => None,
        Some("auto") => crate::placement::pick(ctx)?,
        Some(name) => Some(crate::hosts::HostsFile::load()?.host(name)?),
    };
    if let Some(host) = host {
        return run_remote(ctx, args, host);
    }
    let plan = provision::plan_sandbox_create(ctx, &args.name, args.branch.as_deref(), args.slot)?;
    // Names are unique across hosts.
    if let Some(e) = crate::remote::RemoteIndex::load()?.instances.get(&plan.id) {
        return Err(crate::remote::RemoteError::Taken {
            id: plan.id.clone(),
            host: e.host.clone(),
        }
        .into());
    }
    let source = match &args.data_from {
        Some(from) => Some(resolve_source(ctx, args, &plan, from)?),
        None => None,
    };
    if args.dry_run {
        let mut lines = plan.describe(&ctx.config);
        if let Some(src) = &source {
            lines.push(format!(
                "  start its volumes as copies of {}",
                src.describe()
            ));
        }
        if args.mcp {
            lines.push(format!(
                "write `{}` (kinfra mcp --instance <id>)",
                crate::mcp::CONFIG_FILE
            ));
        }
        super::print_lines(&lines);
        return Ok(0);
    }
    let reporter = output::Term::new();
    let created = provision::execute(&ctx.config, &plan, &reporter)?;
    super::print_created(&ctx.config, "created sandbox", &created);
    if let Checkout::Worktree { branch, .. } = &plan.checkout {
        output::note(&format!("  {:<12}{}", "Branch:", branch.describe()));
    }
    if args.mcp {
        let path = crate::mcp::write_config_file(&created.path, &created.id)?;
        output::note(&format!("  {:<12}{}", "MCP:", path.display()));
    }
    if let Some(src) = &source {
        let here = Ctx::at(&created.path, ctx.config_flag.as_deref())?;
        copy_data(&here, args, src)?;
    }
    super::hooks::post_create(
        ctx,
        &created,
        crate::instance::Kind::Sandbox,
        args.hooks,
        &reporter,
    )?;
    if args.up {
        let here = crate::context::Ctx::at(&created.path, ctx.config_flag.as_deref())?;
        super::up::up(
            &here,
            crate::instance::Kind::Sandbox,
            &crate::instance::Selector::Here,
            &crate::lifecycle::UpOptions::default(),
            false,
            args.hooks,
        )?;
    } else {
        output::hint(&format!(
            "cd {} && kinfra sandbox up",
            crate::process::shell_quote(&created.path.display().to_string())
        ));
    }
    output::data(&created.path.display().to_string());
    Ok(0)
}

fn run_remote(ctx: &Ctx, args: &Args, host: crate::hosts::Host) -> Result<u8> {
    let not_with_host = |flag, why| crate::remote::RemoteError::NotWithHost {
        flag,
        host: host.name.clone(),
        why,
    };
    if args.slot.is_some() {
        return Err(not_with_host("--slot", "the host picks the slot").into());
    }
    if args.data_from.is_some() {
        return Err(not_with_host("--data-from", "the data would have to cross hosts").into());
    }
    let plan = crate::remote::plan_create(ctx, &args.name, args.branch.as_deref(), host)?;
    // What the host's `sandbox create` is asked to do besides.
    let flags: Vec<&str> = [
        (args.up, "--up"),
        (args.hooks.no_hooks, "--no-hooks"),
        (args.mcp, "--mcp"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, f)| *f)
    .collect();
    if args.dry_run {
        super::print_lines(&plan.describe());
        return Ok(0);
    }
    let created = crate::remote::execute_create(&plan, &flags, &output::Term::new())?;
    let e = &created.entry;
    output::done(&format!(
        "created sandbox `{}` on host `{}`",
        e.instance_id, e.host
    ));
    output::note(&format!("  {:<12}{}:{}", "Location:", e.host, e.path));
    output::note(&format!("  {:<12}{}", "Slot:", created.slot));
    output::note(&format!("  {:<12}{}", "Branch:", e.branch));
    output::note(&format!(
        "  {:<12}{}",
        "Repository:",
        match created.reached {
            crate::remote::Reached::Existing => "already on the host",
            crate::remote::Reached::ClonedOrigin => "cloned from origin by the host",
            crate::remote::Reached::Pushed => "pushed from here (origin unreachable from the host)",
        }
    ));
    if !args.up {
        output::hint(&format!("kinfra sandbox up {}", e.instance_id));
    }
    output::data(&format!("{}:{}", e.host, e.path));
    Ok(0)
}

/// Find and check the source before anything is made: it exists, it is not the sandbox
/// being created, it has the volumes the new sandbox's compose file names.
fn resolve_source(ctx: &Ctx, args: &Args, plan: &provision::Plan, from: &str) -> Result<Source> {
    let keys: Vec<String> = plan
        .stack
        .as_ref()
        .map(|st| {
            snapshot::data_set(&st.model, &st.profiles, &plan.id, &ctx.config.data_skip).keys()
        })
        .unwrap_or_default();
    if let Some(name) = from.strip_prefix("snapshot:") {
        let stored = snapshot::load(&ctx.config, name)?;
        let mut have = keys;
        have.sort();
        if stored.manifest.keys() != have {
            return Err(SnapshotError::Mismatch {
                name: name.to_string(),
                id: "the new sandbox".into(),
                snapshot: stored.manifest.keys(),
                instance: have,
            }
            .into());
        }
        snapshot::verify(&stored)?;
        return Ok(Source::Snapshot(stored));
    }
    if from == args.name
        || from == plan.id
        || crate::slug::slugify(from) == crate::slug::slugify(&args.name)
    {
        return Err(SnapshotError::SelfSource(from.to_string()).into());
    }
    let target = super::snapshot::resolve(ctx, Some(from))?;
    let set = snapshot::data_set_of(&target)?;
    snapshot::check_source(&set, &keys)?;
    Ok(Source::Instance(Box::new(target)))
}

/// Fill the new sandbox's volumes from `src`, recorded as an operation on it so an
/// interrupted copy is found by the next command and by `doctor`.
fn copy_data(here: &Ctx, args: &Args, src: &Source) -> Result<()> {
    let target = lifecycle::resolve(here, Kind::Sandbox, &Selector::Here)?;
    let set = snapshot::data_set_of(&target)?;
    let term = output::Term::new();
    let config = &target.ctx.config;
    let _lock = target.lock(config, "sandbox create --data-from", &term)?;
    let again = match src {
        Source::Snapshot(s) => format!(
            "kinfra snapshot restore {} --instance {} --yes",
            s.manifest.name,
            target.id()
        ),
        Source::Instance(t) => format!(
            "kinfra sandbox destroy {} --yes && kinfra sandbox create {} --data-from {}",
            target.id(),
            crate::process::shell_quote(&args.name),
            t.id()
        ),
    };
    snapshot::mark(config, target.id(), "copy", &again, &term)?;
    output::note(&format!(
        "copying the data of {} into `{}`",
        src.describe(),
        target.id()
    ));
    match src {
        Source::Snapshot(stored) => snapshot::restore(&target, stored, &set, &term)?,
        Source::Instance(source) => {
            let source_set = snapshot::data_set_of(source)?;
            let _source_lock = source.lock(
                &source.ctx.config,
                &format!("copy of its data into `{}`", target.id()),
                &term,
            )?;
            snapshot::copy_between(source.as_ref(), &source_set, &set, args.live, &term)?;
        }
    }
    snapshot::unmark(config, target.id(), &term)?;
    output::done(&format!(
        "`{}` starts with the data of {}",
        target.id(),
        src.describe()
    ));
    Ok(())
}
