//! `kinfra sandbox up` / `kinfra local-prod up` — port preflight, secrets,
//! `compose up -d`, then the startability gate.

use std::time::Duration;

use crate::context::Ctx;
use crate::error::Result;
use crate::hooks::Stage;
use crate::instance::Kind;
use crate::lifecycle::{self, UpOptions};
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox up                 # start the one you are in and wait for the gate
  kinfra sandbox up my-feature      # by name, from any directory
  kinfra sandbox up --build         # rebuild images first
  kinfra sandbox up --no-wait       # return once the containers are started
  kinfra sandbox up --timeout 300 --dry-run
  kinfra sandbox up --memory 2g --cpus 1.5   # this instance's budget, kept for later ups
  kinfra sandbox up --no-hooks      # without the pre_up/post_up hooks of kinfra.toml")]
pub struct Args {
    /// The instance (id or the name given to create), from any directory; default: the
    /// one you are in (local-prod: the registered one).
    #[arg(add = clap_complete::ArgValueCandidates::new(super::completions::instance_names))]
    pub name: Option<String>,
    #[command(flatten)]
    pub instance: super::InstanceArg,
    /// Return once the containers are started, without the gate.
    #[arg(long)]
    pub no_wait: bool,
    /// Build images before starting.
    #[arg(long)]
    pub build: bool,
    /// Seconds the gate may take (default: `gate.timeout`, 120 for ktrdr).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: Option<u64>,
    /// Do not fetch 1Password secrets (insecure defaults apply).
    #[arg(long)]
    pub no_secrets: bool,
    /// Memory for all of this instance's containers together, from now on (`512m`, `4g`).
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    pub memory: Option<u64>,
    /// CPUs for all of this instance's containers together, from now on.
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    pub cpus: Option<f64>,
    /// Print what would be started and checked, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub hooks: super::hooks::NoHooks,
}

pub fn run(ctx: &Ctx, args: &Args, kind: Kind) -> Result<u8> {
    let sel = super::selector(&args.instance, args.name.as_deref())?;
    let opts = UpOptions {
        no_wait: args.no_wait,
        build: args.build,
        timeout: args.timeout.map(Duration::from_secs),
        no_secrets: args.no_secrets,
        memory: args.memory,
        cpus: args.cpus,
    };
    up(ctx, kind, &sel, &opts, args.dry_run, args.hooks)
}

/// Start an instance and wait for its gate, printing what happens (also `create --up`).
pub fn up(
    ctx: &Ctx,
    kind: Kind,
    sel: &crate::instance::Selector,
    opts: &UpOptions,
    dry_run: bool,
    hooks: super::hooks::NoHooks,
) -> Result<u8> {
    let mut target = lifecycle::resolve(ctx, kind, sel)?;
    // Not about services a killed snapshot left stopped: this `up` is what starts them.
    if let Some(i) = crate::snapshot::interrupted(&target.ctx.config, target.id())
        && (i.operation != crate::snapshot::STOPPED_FOR_SNAPSHOT || i.running)
    {
        super::snapshot::warn_about(&i);
    }
    let ctx = &target.ctx.clone();
    let reporter = output::Term::new();
    let _lock = (!dry_run)
        .then(|| target.lock(&ctx.config, &format!("{} up", kind.label()), &reporter))
        .transpose()?;
    // Hooks never run with --dry-run; a failing pre_up stops before anything changes.
    let policy = super::hooks::policy(hooks);
    let site = super::hooks::site_of(&target.inst);
    if !dry_run {
        super::hooks::run_stage(ctx, Stage::PreUp, &site, policy, &reporter)?;
    }
    let plan = lifecycle::plan_up(&ctx.config, &target, opts)?;
    if dry_run {
        super::print_lines(&plan.describe(&target));
        return Ok(0);
    }
    let outcome = lifecycle::execute_up(&ctx.config, &mut target, &plan, &reporter)?;
    let id = target.id();
    match &outcome.gate {
        None => output::done(&format!("`{id}` started (gate skipped: --no-wait)")),
        Some(report) => {
            output::done(&format!(
                "`{id}` is ready (gate {:.2}s, total {:.2}s)",
                report.elapsed.as_secs_f64(),
                outcome.started.elapsed().as_secs_f64()
            ));
            for (label, url) in crate::layout::urls(&ctx.config, &plan.ports) {
                output::note(&format!("  {:<12}{url}", format!("{label}:")));
            }
        }
    }
    // The env file may have gained ports during `up`.
    let site = super::hooks::site_of(&target.inst);
    super::hooks::run_stage(ctx, Stage::PostUp, &site, policy, &reporter)?;
    Ok(0)
}

fn parse_memory(text: &str) -> Result<u64, String> {
    crate::config::parse_memory(text)
        .ok_or_else(|| format!("`{text}` is not a size like `512m` or `4g`"))
}

fn parse_cpus(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|c| c.is_finite() && *c > 0.0 && *c <= 1024.0)
        .ok_or_else(|| format!("`{text}` is not a number of CPUs in 0..=1024"))
}
