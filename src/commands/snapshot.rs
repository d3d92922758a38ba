//! `kinfra snapshot create|list|restore|rm`: an instance's named volumes kept as
//! archives in the state directory, and put back. The instance is an option here
//! (`--instance`), because the positional is the snapshot's name.

use crate::context::Ctx;
use crate::error::Result;
use crate::instance::{Kind, Selector};
use crate::lifecycle::{self, Target};
use crate::output;
use crate::snapshot::{self, Stored};

#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Copy an instance's named volumes into a new snapshot.
    Create(CreateArgs),
    /// List the snapshots.
    List(ListArgs),
    /// Replace an instance's volumes with a snapshot's (checksums verified first).
    Restore(RestoreArgs),
    /// Delete a snapshot.
    Rm(RmArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra snapshot create                              # the instance you are in, named <id>-<UTC time>
  kinfra snapshot create --instance local-prod --name before-migration
  kinfra snapshot create --live                       # do not stop the services that mount the volumes")]
pub struct CreateArgs {
    /// The instance to copy (id, name, or `local-prod`; default: the one you are in).
    #[arg(long = "instance", value_name = "ID")]
    pub instance: Option<String>,
    /// The snapshot's name (default: `<instance>-<UTC time>`).
    #[arg(long)]
    pub name: Option<String>,
    /// Copy while the services run (no stop; the copy may be inconsistent).
    #[arg(long)]
    pub live: bool,
    /// Print what would be copied and stopped, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra snapshot list
  kinfra snapshot list --json | jq -r '.snapshots[].name'")]
pub struct ListArgs {
    /// Print one JSON object (`schema_version` 1) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra snapshot restore before-migration                 # onto the instance you are in (asks first)
  kinfra snapshot restore ktrdr-prod-20260101T000000Z --instance local-prod --yes
  kinfra snapshot restore before-migration --dry-run")]
pub struct RestoreArgs {
    /// The snapshot to restore.
    pub name: String,
    /// The instance whose volumes are replaced (id, name, or `local-prod`; default: the
    /// one you are in).
    #[arg(long = "instance", value_name = "ID")]
    pub instance: Option<String>,
    /// Print what would be replaced, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the prompt only.
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra snapshot rm before-migration --yes
  kinfra snapshot rm before-migration --dry-run")]
pub struct RmArgs {
    /// The snapshot to delete.
    pub name: String,
    /// Print what would be deleted, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the prompt only.
    #[arg(short, long)]
    pub yes: bool,
}

pub fn run(ctx: &Ctx, cmd: &SnapshotCommand) -> Result<u8> {
    match cmd {
        SnapshotCommand::Create(a) => create(ctx, a),
        SnapshotCommand::List(a) => list(ctx, a),
        SnapshotCommand::Restore(a) => restore(ctx, a),
        SnapshotCommand::Rm(a) => rm(ctx, a),
    }
}

/// `local-prod` names the registered local-prod; anything else an instance by id or
/// name; nothing the instance of the current directory.
pub fn resolve(ctx: &Ctx, instance: Option<&str>) -> Result<Target> {
    let (kind, sel) = match instance {
        Some("local-prod") => (Some(Kind::LocalProd), Selector::Here),
        Some(name) => (None, Selector::Named(name.to_string())),
        None => (None, Selector::Here),
    };
    let target = lifecycle::resolve_as(ctx, kind, &sel)?;
    warn_interrupted(&target);
    Ok(target)
}

/// Say so when a restore or copy into this instance did not finish.
pub fn warn_interrupted(target: &Target) {
    warn_interrupted_at(&target.ctx.config, target.id());
}

/// [`warn_interrupted`] by configuration and instance id.
pub fn warn_interrupted_at(config: &crate::config::Config, id: &str) {
    if let Some(i) = snapshot::interrupted(config, id) {
        warn_about(&i);
    }
}

/// What an unfinished data operation means, and what to run about it.
pub fn warn_about(i: &snapshot::Interrupted) {
    output::warn(&i.message());
    if !i.running {
        output::hint(&i.hint());
    }
}

fn create(ctx: &Ctx, args: &CreateArgs) -> Result<u8> {
    if let Some(name) = &args.name {
        snapshot::check_name(name)?;
    }
    let target = resolve(ctx, args.instance.as_deref())?;
    let set = snapshot::data_set_of(&target)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| snapshot::default_name(target.id()));
    let mut lines = vec![format!(
        "snapshot `{}` into `{}`:",
        target.id(),
        snapshot::snapshots_dir(&target.ctx.config)
            .join(&name)
            .display()
    )];
    lines.extend(snapshot::describe_set(&set));
    if !args.live && !set.services.is_empty() {
        lines.push(format!(
            "  stop {} for the copy (those running), start them again",
            set.services.join(", ")
        ));
    }
    if args.dry_run {
        super::print_lines(&lines);
        return Ok(0);
    }
    let term = output::Term::new();
    for line in &lines {
        output::note(line);
    }
    let config = &target.ctx.config;
    let _lock = target.lock(config, "snapshot create", &term)?;
    let stored = snapshot::create(
        config,
        &target,
        &set,
        target.inst.kind.label(),
        &name,
        args.live,
        &term,
    )?;
    output::done(&format!(
        "snapshot `{name}` of `{}`: {} volume(s), {}",
        target.id(),
        stored.manifest.volumes.len(),
        snapshot::human_size(stored.manifest.total_size())
    ));
    output::data(&name);
    Ok(0)
}

/// `snapshot list --json`: every complete snapshot's manifest, oldest first.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ListReport<'a> {
    pub schema_version: u32,
    pub snapshots: Vec<&'a snapshot::Manifest>,
}

fn list(ctx: &Ctx, args: &ListArgs) -> Result<u8> {
    let all = snapshot::list(&ctx.config)?;
    if args.json {
        super::print_json(&ListReport {
            schema_version: snapshot::SCHEMA_VERSION,
            snapshots: all.iter().map(|s| &s.manifest).collect(),
        });
        return Ok(0);
    }
    if all.is_empty() {
        output::note("no snapshots; take one with `kinfra snapshot create`");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|Stored { manifest: m, .. }| {
            vec![
                m.name.clone(),
                m.source_instance.clone(),
                m.created.clone(),
                m.keys().join(","),
                snapshot::human_size(m.total_size()),
            ]
        })
        .collect();
    output::data(
        output::table(&["NAME", "SOURCE", "CREATED", "VOLUMES", "SIZE"], &rows).trim_end(),
    );
    Ok(0)
}

fn restore(ctx: &Ctx, args: &RestoreArgs) -> Result<u8> {
    let stored = snapshot::load(&ctx.config, &args.name)?;
    let target = resolve(ctx, args.instance.as_deref())?;
    let set = snapshot::data_set_of(&target)?;
    snapshot::check_fits(&stored, &set)?;
    let mut lines = vec![format!(
        "restore snapshot `{}` (of `{}`, {}) onto `{}`:",
        stored.manifest.name,
        stored.manifest.source_instance,
        stored.manifest.created,
        target.id()
    )];
    lines.extend(snapshot::describe_set(&set));
    if !set.services.is_empty() {
        lines.push(format!(
            "  stop {} while the volumes are replaced, start again those that ran",
            set.services.join(", ")
        ));
    }
    if args.dry_run {
        super::print_lines(&lines);
        return Ok(0);
    }
    snapshot::verify(&stored)?;
    for line in &lines {
        output::note(line);
    }
    super::sandbox_destroy::confirm(
        args.yes,
        &format!(
            "replace the data of `{}` with snapshot `{}`",
            target.id(),
            stored.manifest.name
        ),
    )?;
    let term = output::Term::new();
    let config = &target.ctx.config;
    let _lock = target.lock(config, "snapshot restore", &term)?;
    let again = format!(
        "kinfra snapshot restore {} --instance {} --yes",
        stored.manifest.name,
        target.id()
    );
    snapshot::mark(config, target.id(), "restore", &again, &term)?;
    snapshot::restore(&target, &stored, &set, &term)?;
    snapshot::unmark(config, target.id(), &term)?;
    output::done(&format!(
        "restored snapshot `{}` onto `{}`",
        stored.manifest.name,
        target.id()
    ));
    Ok(0)
}

fn rm(ctx: &Ctx, args: &RmArgs) -> Result<u8> {
    let stored = snapshot::load(&ctx.config, &args.name)?;
    if args.dry_run {
        super::print_lines(&[format!("delete `{}`", stored.dir.display())]);
        return Ok(0);
    }
    super::sandbox_destroy::confirm(
        args.yes,
        &format!(
            "delete snapshot `{}` ({})",
            args.name,
            snapshot::human_size(stored.manifest.total_size())
        ),
    )?;
    snapshot::remove(&ctx.config, &args.name)?;
    output::done(&format!("deleted snapshot `{}`", args.name));
    Ok(0)
}

/// `destroy` that keeps data: take the snapshot `plan.snapshot` names (when the
/// instance has volumes) before anything is stopped or removed.
pub fn before_destroy(ctx: &Ctx, plan: &crate::destroy::Plan) -> Result<Option<String>> {
    let Some(name) = &plan.snapshot else {
        return Ok(None);
    };
    let which = match plan.kind {
        Kind::LocalProd => "local-prod",
        Kind::Sandbox => plan.entry.instance_id.as_str(),
    };
    let target = resolve(ctx, Some(which))?;
    let set = snapshot::data_set_of(&target)?;
    if set.volumes.is_empty() {
        output::note(&format!(
            "`{}` has no named volumes to snapshot",
            target.id()
        ));
        return Ok(None);
    }
    let term = output::Term::new();
    let config = &target.ctx.config;
    let _lock = target.lock(config, "snapshot before destroy", &term)?;
    let stored = snapshot::create(
        config,
        &target,
        &set,
        target.inst.kind.label(),
        name,
        false,
        &term,
    )?;
    output::done(&format!(
        "snapshot `{name}` of `{}` taken first ({}); `kinfra snapshot restore {name}` puts it back",
        target.id(),
        snapshot::human_size(stored.manifest.total_size())
    ));
    Ok(Some(name.clone()))
}
