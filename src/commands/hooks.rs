//! `kinfra hooks approve|list|revoke` — which of the repository's `[hooks]` may run —
//! and what the commands that run hooks share: `--no-hooks`, the prompt for hooks not
//! yet approved, and running one stage for an instance.

use std::path::Path;

use crate::context::Ctx;
use crate::error::{Diagnostic, Exit, Result};
use crate::hooks::{self, Answer, HookError, Policy, RepoKey, Site, Stage};
use crate::instance::Instance;
use crate::output;
use crate::report::Reporter;

#[derive(Debug, clap::Subcommand)]
pub enum HooksCommand {
    /// Approve the current config's hooks for this repository (shows them and asks).
    #[command(after_help = "Examples:
  kinfra hooks approve       # show the hooks not approved yet, ask, record the approval
  kinfra hooks approve -y    # approve without asking (scripts)")]
    Approve(ApproveArgs),
    /// Show each hook of the current config and whether it is approved.
    #[command(after_help = "Examples:
  kinfra hooks list
  kinfra hooks list --json")]
    List(ListArgs),
    /// Forget every hook approval of this repository.
    #[command(after_help = "Examples:
  kinfra hooks revoke")]
    Revoke(RevokeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// Approve without asking.
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {}

/// `--no-hooks`, for every command that runs hooks.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct NoHooks {
    /// Run none of the `[hooks]` of kinfra.toml this time.
    #[arg(long)]
    pub no_hooks: bool,
}

#[derive(Debug, thiserror::Error)]
enum ApproveError {
    #[error("cannot ask whether to approve the hooks: no terminal")]
    NoTerminal,
    #[error("not approved; nothing was changed")]
    Declined,
}

impl Diagnostic for ApproveError {
    fn exit(&self) -> Exit {
        Exit::Refused
    }
    fn hint(&self) -> Option<String> {
        match self {
            ApproveError::NoTerminal => {
                Some("review them with `kinfra hooks list`, then `kinfra hooks approve -y`".into())
            }
            ApproveError::Declined => None,
        }
    }
}

pub fn run(ctx: &Ctx, cmd: &HooksCommand) -> Result<u8> {
    let repo = ctx
        .repo
        .as_ref()
        .ok_or_else(|| HookError::NoRepo(ctx.cwd.clone()))?;
    let key = RepoKey::of(repo);
    let path = hooks::approvals_path()?;
    let reporter = output::Term::new();
    match cmd {
        HooksCommand::Approve(args) => approve(ctx, &key, &path, args, &reporter),
        HooksCommand::List(args) => list(ctx, &key, &path, args),
        HooksCommand::Revoke(_) => {
            let n = hooks::update_approvals(&path, &reporter, |a| a.revoke(&key))?;
            output::done(&format!(
                "revoked {n} hook approval(s) of `{}`",
                key.path.display()
            ));
            Ok(0)
        }
    }
}

fn approve(
    ctx: &Ctx,
    key: &RepoKey,
    path: &Path,
    args: &ApproveArgs,
    reporter: &dyn Reporter,
) -> Result<u8> {
    let config = &ctx.config;
    if config.hooks.is_empty() {
        output::note(&format!("{} has no hooks", config.source.describe()));
        return Ok(0);
    }
    let approvals = hooks::load_approvals(path)?;
    let pending: Vec<(Stage, &str)> = config
        .hooks
        .all()
        .filter(|(s, c)| !approvals.is_approved(key, *s, c))
        .collect();
    if pending.is_empty() {
        output::done("every hook is approved already");
        return Ok(0);
    }
    output::note(&format!(
        "hooks of {} for `{}`{}, not approved yet:",
        config.source.describe(),
        key.path.display(),
        key.origin
            .as_deref()
            .map(|o| format!(" (origin `{o}`)"))
            .unwrap_or_default()
    ));
    for (stage, command) in &pending {
        output::note(&format!("  {stage}: {command}"));
    }
    if !args.yes {
        if !output::interactive() {
            return Err(ApproveError::NoTerminal.into());
        }
        if !output::confirm(&format!(
            "run these {} command(s) with your rights when kinfra reaches them?",
            pending.len()
        )) {
            return Err(ApproveError::Declined.into());
        }
    }
    hooks::update_approvals(path, reporter, |a| a.approve(key, pending.iter().copied()))?;
    output::done(&format!("approved {} hook command(s)", pending.len()));
    Ok(0)
}

/// `hooks list --json`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ListReport {
    schema_version: u32,
    repository: RepoKey,
    approvals_file: String,
    timeout_secs: u64,
    hooks: Vec<ListRow>,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
struct ListRow {
    stage: Stage,
    command: String,
    sha256: String,
    approved: bool,
}

fn list(ctx: &Ctx, key: &RepoKey, path: &Path, args: &ListArgs) -> Result<u8> {
    let approvals = hooks::load_approvals(path)?;
    let rows: Vec<ListRow> = ctx
        .config
        .hooks
        .all()
        .map(|(stage, command)| ListRow {
            stage,
            command: command.to_string(),
            sha256: hooks::digest(command),
            approved: approvals.is_approved(key, stage, command),
        })
        .collect();
    if args.json {
        super::print_json(&ListReport {
            schema_version: 1,
            repository: key.clone(),
            approvals_file: path.display().to_string(),
            timeout_secs: ctx.config.hooks.timeout.as_secs(),
            hooks: rows,
        });
        return Ok(0);
    }
    if rows.is_empty() {
        output::note(&format!("{} has no hooks", ctx.config.source.describe()));
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.stage.to_string(),
                if r.approved { "yes" } else { "no" }.to_string(),
                r.command.clone(),
            ]
        })
        .collect();
    output::data(&output::table(&["STAGE", "APPROVED", "COMMAND"], &table));
    if rows.iter().any(|r| !r.approved) {
        output::hint("`kinfra hooks approve` shows and approves the others");
    }
    Ok(0)
}

/// Ask on the terminal about hooks not approved yet: y (this time), always (approve),
/// anything else no.
fn ask(stage: Stage, dir: &Path, commands: &[&str]) -> Answer {
    output::note(&format!(
        "these {stage} hook(s) are not approved yet (they would run in `{}`):",
        dir.display()
    ));
    for c in commands {
        output::note(&format!("  {c}"));
    }
    parse_answer(&output::ask(
        "run them? [y = this time / always = approve / N]",
    ))
}

fn parse_answer(text: &str) -> Answer {
    match text.trim().to_lowercase().as_str() {
        "y" | "yes" => Answer::Once,
        "a" | "always" => Answer::Always,
        _ => Answer::No,
    }
}

/// How hooks are treated by a command: `--no-hooks`, else run the approved ones and ask
/// about the others on a terminal (skip them without one).
pub fn policy(flag: NoHooks) -> Policy<'static> {
    if flag.no_hooks {
        return Policy::OFF;
    }
    Policy {
        skip: false,
        ask: output::interactive().then_some(&ask as &hooks::Ask),
    }
}

/// Where an instance's hooks run: its directory, with its env file.
pub fn site_of(inst: &Instance) -> Site {
    Site {
        id: inst.id().to_string(),
        kind: inst.kind,
        slot: inst.entry.slot,
        dir: inst.root.clone(),
        env: inst.env.to_map(),
    }
}

/// Run `stage`'s hooks of the config in `ctx` (the instance's own checkout) for `site`.
pub fn run_stage(
    ctx: &Ctx,
    stage: Stage,
    site: &Site,
    policy: Policy<'_>,
    reporter: &dyn Reporter,
) -> Result<()> {
    if ctx.config.hooks.of(stage).is_empty() {
        return Ok(());
    }
    let key = ctx.repo.as_ref().map(RepoKey::of);
    hooks::run(
        &ctx.config.hooks,
        key.as_ref(),
        stage,
        site,
        policy,
        reporter,
    )?;
    Ok(())
}

/// `post_create` for an instance `create` just made (its own checkout's config); a
/// problem is a warning: the instance exists either way.
pub fn post_create(
    ctx: &Ctx,
    created: &crate::provision::Created,
    kind: crate::instance::Kind,
    flag: NoHooks,
    reporter: &dyn Reporter,
) -> Result<()> {
    let here = match Ctx::at(&created.path, ctx.config_flag.as_deref()) {
        Ok(here) => here,
        Err(e) => {
            reporter.warn(&format!("post_create hooks not run: {}", e.message));
            return Ok(());
        }
    };
    if here.config.hooks.of(Stage::PostCreate).is_empty() {
        return Ok(());
    }
    let env_path = created.path.join(&here.config.env_file);
    let env = crate::envfile::EnvFile::load(&env_path)
        .map(|e| e.to_map())
        .unwrap_or_default();
    let site = Site {
        id: created.id.clone(),
        kind,
        slot: created.slot,
        dir: created.path.clone(),
        env,
    };
    run_stage(&here, Stage::PostCreate, &site, policy(flag), reporter)
}

/// `pre_destroy` for the instance `plan` destroys, with the config of its own checkout.
/// An instance whose directory is gone, or whose config cannot be read, has no hooks
/// to run (destroy must still clean it up): that is a warning.
pub fn pre_destroy(
    ctx: &Ctx,
    plan: &crate::destroy::Plan,
    flag: NoHooks,
    reporter: &dyn Reporter,
) -> Result<()> {
    if !plan.path.is_dir() {
        return Ok(());
    }
    let here = match Ctx::at(&plan.path, ctx.config_flag.as_deref()) {
        Ok(here) => here,
        Err(e) => {
            reporter.warn(&format!(
                "pre_destroy hooks of `{}` not run: {}",
                plan.entry.instance_id, e.message
            ));
            return Ok(());
        }
    };
    if here.config.hooks.of(Stage::PreDestroy).is_empty() {
        return Ok(());
    }
    let env = crate::envfile::EnvFile::load(&plan.env_file)
        .map(|e| e.to_map())
        .unwrap_or_default();
    let site = Site {
        id: plan.entry.instance_id.clone(),
        kind: plan.kind,
        slot: plan.entry.slot,
        dir: plan.path.clone(),
        env,
    };
    run_stage(&here, Stage::PreDestroy, &site, policy(flag), reporter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(parse_answer("y\n"), Answer::Once);
        assert_eq!(parse_answer("Always\n"), Answer::Always);
        assert_eq!(parse_answer("\n"), Answer::No);
        assert_eq!(parse_answer("nope"), Answer::No);
    }
}
