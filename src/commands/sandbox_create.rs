//! `kinfra sandbox create NAME [--branch B] [--slot N] [--dry-run]`

use crate::context::Ctx;
use crate::error::Result;
use crate::output;
use crate::provision::{self, Checkout};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox create my-feature                 # ../<project>--my-feature on the lowest free slot
  kinfra sandbox create fix-42 --branch fix/42     # check out (or create) branch fix/42
  kinfra sandbox create spike --slot 5 --dry-run   # show what would happen
  kinfra sandbox create agent-7 --up               # create, start, wait for the gate, print URLs
  kinfra sandbox create quick --no-hooks           # without the post_create hooks of kinfra.toml
  kinfra sandbox create agent-8 --mcp              # and a .mcp.json for an agent started there
  kinfra sandbox create big-run --host box1        # on the registered host box1 (kinfra hosts add)
  kinfra sandbox create agent-9 --host auto --up   # on the host with the most free slots and memory")]
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
    if args.dry_run {
        super::print_lines(&plan.describe(&ctx.config));
        if args.mcp {
            super::print_lines(&[format!(
                "write `{}` (kinfra mcp --instance <id>)",
                crate::mcp::CONFIG_FILE
            )]);
        }
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
    if args.slot.is_some() {
        return Err(crate::error::Error::usage(
            "--slot cannot be given with --host: the host picks the slot",
        ));
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
