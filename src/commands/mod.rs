//! One file per command: its clap arguments beside its handler. Helpers shared by
//! several commands live here.

pub mod completions;
pub mod doctor;
pub mod down;
pub mod env;
pub mod init_shared;
pub mod list;
pub mod local_prod_create;
pub mod local_prod_destroy;
pub mod local_prod_init;
pub mod logs;
pub mod ports;
pub mod sandbox_create;
pub mod sandbox_destroy;
pub mod sandbox_init;
pub mod shell;
pub mod status;
pub mod up;
pub mod url;

use std::path::Path;

use crate::config::Config;
use crate::docker;
use crate::envfile;
use crate::error::{Error, Result};
use crate::layout;
use crate::output;
use crate::preflight;
use crate::registry::{Registry, SlotHolder};

/// A `--slot` value checked against 1..=count.
pub fn sandbox_slot(value: i64, config: &Config) -> Result<u32> {
    let count = config.slot_count;
    if value == 0 {
        return Err(Error::failure(
            "slot 0 is reserved for local-prod; sandboxes use slots 1..=".to_string()
                + &count.to_string(),
        )
        .hint("use `kinfra local-prod create` for slot 0, or pick another slot"));
    }
    u32::try_from(value)
        .ok()
        .filter(|s| (1..=count).contains(s))
        .ok_or_else(|| {
            Error::failure(format!(
                "slot {value} is invalid; sandboxes use slots 1..={count}"
            ))
            .hint("omit --slot to take the lowest free slot")
        })
}

/// Pick the requested slot if free, else the lowest free one.
pub fn allocate_slot(registry: &Registry, config: &Config, wanted: Option<u32>) -> Result<u32> {
    let claims = registry.pool_claims();
    match wanted {
        Some(slot) => match registry.holder(slot, &claims) {
            Some(holder) => Err(Error::failure(format!(
                "slot {slot} is in use by {}",
                holder.describe()
            ))
            .hint("omit --slot to take the lowest free slot, or destroy that sandbox first")),
            None => Ok(slot),
        },
        None => registry.free_slot(config.slot_count).ok_or_else(|| {
            let holders: Vec<String> = (1..=config.slot_count)
                .filter_map(|s| {
                    registry.holder(s, &claims).map(|h| match h {
                        SlotHolder::Instance(e) => format!("{s}: {}", e.instance_id),
                        SlotHolder::Pool(_) => format!("{s}: ktrdr's pool"),
                    })
                })
                .collect();
            Error::failure(format!(
                "all {} sandbox slots are in use ({})",
                config.slot_count,
                holders.join(", ")
            ))
            .hint("destroy a sandbox you no longer need (`kinfra sandbox destroy NAME`)")
        }),
    }
}

/// Refuse when any port of `slot` is already in use.
pub fn check_ports_free(config: &Config, registry: &Registry, slot: u32) -> Result<()> {
    let ports = config
        .ports
        .for_slot(slot)
        .map_err(|e| Error::failure(e.to_string()))?;
    let conflicts = port_conflicts(&ports, None, registry);
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(Error::failure(format!(
        "port conflict on slot {slot}: {}",
        conflicts.join("; ")
    ))
    .with_exit(crate::error::Exit::Conflict)
    .hint("stop what holds the port, or choose another slot with --slot"))
}

/// The busy ports among `ports`, each described with its holder when Docker knows it.
/// Ports published by `own_project`'s running containers are not conflicts.
pub fn port_conflicts(
    ports: &[crate::ports::SlotPort],
    own_project: Option<&str>,
    registry: &Registry,
) -> Vec<String> {
    let busy = preflight::busy(ports);
    if busy.is_empty() {
        return Vec::new();
    }
    // One Docker call names every holder; without Docker the ports are just "in use".
    let containers = crate::status::all_containers().unwrap_or_default();
    let holder = |port: u16| {
        containers
            .iter()
            .find(|c| c.state == "running" && c.host_ports.contains(&port))
    };
    busy.iter()
        .filter(|p| holder(p.port).is_none_or(|c| Some(c.project.as_str()) != own_project))
        .map(|p| {
            let owner = match holder(p.port) {
                Some(c) => {
                    let kind = if registry.all().any(|e| e.instance_id == c.project) {
                        "kinfra instance"
                    } else {
                        "compose project"
                    };
                    format!("container `{}` of {kind} `{}`", c.name, c.project)
                }
                None => "a process outside Docker".to_string(),
            };
            format!("{} ({}) is held by {owner}", p.port, p.key)
        })
        .collect()
}

/// Refuse when Docker still holds containers or volumes of `project` (a new instance
/// must not inherit an old one's database volume). Docker being down only warns here:
/// nothing can be started without it anyway.
pub fn check_no_leftovers(project: &str) -> Result<()> {
    match docker::project_resources(project) {
        Ok(res) if res.containers.is_empty() && res.volumes.is_empty() => Ok(()),
        Ok(res) => Err(Error::failure(format!(
            "Docker still holds {} of an earlier `{project}`",
            res.summary()
        ))
        .hint(cleanup_command(project, &res))),
        Err(e) => {
            output::warn(&format!(
                "could not check Docker for leftovers of `{project}`: {e}"
            ));
            Ok(())
        }
    }
}

fn cleanup_command(project: &str, res: &docker::ProjectResources) -> String {
    let mut parts = Vec::new();
    if !res.containers.is_empty() {
        parts.push(format!("docker rm -f {}", res.containers.join(" ")));
    }
    if !res.volumes.is_empty() {
        parts.push(format!("docker volume rm {}", res.volumes.join(" ")));
    }
    format!(
        "if that data is no longer needed, remove it with `{}`; its label is {}={project}",
        parts.join(" && "),
        docker::PROJECT_LABEL
    )
}

/// Copy the configured files (e.g. an example settings file) into a new checkout when
/// the target is missing.
pub fn copy_files(config: &Config, root: &Path) {
    for f in &config.copy_files {
        let (from, to) = (root.join(&f.from), root.join(&f.to));
        if from.is_file() && !to.exists() {
            let copied = to
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::copy(&from, &to).map(|_| ()));
            if let Err(e) = copied {
                output::warn(&format!("could not copy `{}` to `{}`: {e}", f.from, f.to));
            }
        }
    }
}

/// Write the env file of a new instance.
pub fn write_env_file(
    config: &Config,
    root: &Path,
    instance_id: &str,
    slot: u32,
    created_at: &str,
) -> Result<()> {
    let vars = layout::env_vars(config, instance_id, slot, created_at)
        .map_err(|e| Error::failure(e.to_string()))?;
    let path = root.join(&config.env_file);
    // Temp files of an earlier write that was killed before its rename.
    for stale in crate::fsutil::leftover_temp_files(&path) {
        let _ = std::fs::remove_file(stale);
    }
    envfile::save(&path, &vars)
        .map_err(|e| Error::failure(format!("cannot write `{}`: {e}", path.display())))
}

/// The human summary printed after create/init.
pub fn print_summary(config: &Config, what: &str, id: &str, root: &Path, slot: u32) {
    output::done(&format!("{what} `{id}`"));
    output::note(&format!("  {:<12}{}", "Location:", root.display()));
    output::note(&format!("  {:<12}{slot}", "Slot:"));
    if let Ok(ports) = config.ports.for_slot(slot) {
        for (label, url) in layout::urls(config, &ports) {
            output::note(&format!("  {:<12}{url}", format!("{label}:")));
        }
    }
}

/// The compose project of a resolved instance: its id, its compose file, the
/// local-prod profile when it is local-prod, and its env file as child environment.
pub fn compose_project(
    config: &Config,
    inst: &crate::context::Instance,
) -> Result<crate::compose::Project> {
    let file = crate::compose::find_file(&inst.root, &config.compose_files).ok_or_else(|| {
        Error::failure(format!(
            "no compose file in `{}` (looked for {})",
            inst.root.display(),
            config.compose_files.join(", ")
        ))
        .hint("set `instance.compose_files` in kinfra.toml")
    })?;
    Ok(crate::compose::Project {
        name: inst.entry.instance_id.clone(),
        file,
        profile: inst
            .is_local_prod
            .then(|| config.local_prod_profile.clone()),
        env: inst.env.to_map(),
    })
}

/// The instance's ports as its env file states them (what compose will publish).
pub fn instance_ports(
    config: &Config,
    inst: &crate::context::Instance,
) -> Result<Vec<crate::ports::SlotPort>> {
    let mut ports = config
        .ports
        .for_slot(inst.entry.slot)
        .map_err(|e| Error::failure(e.to_string()))?;
    for p in &mut ports {
        p.port = inst.env.require_port(&p.key)?;
    }
    Ok(ports)
}

/// A child's exit status as our exit code (128 + signal when it was killed).
pub fn exit_code_of(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        _ => 1,
    }
}

/// Whether `path` is what a create killed half-way leaves: a linked worktree of `main`
/// on `branch`, with no env file or one naming `id`, and nothing uncommitted but the
/// files kinfra itself writes. Such a worktree is safe to adopt.
pub fn is_orphan_worktree(
    config: &Config,
    main: &Path,
    path: &Path,
    id: &str,
    branch: &str,
) -> Result<bool> {
    use crate::registry::canonical;
    let is_real_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if !is_real_dir {
        return Ok(false);
    }
    let here = canonical(path);
    let listed = crate::git::worktree_list(main)?;
    let Some(wt) = listed.iter().skip(1).find(|w| canonical(&w.path) == here) else {
        return Ok(false);
    };
    if wt.branch.as_deref() != Some(branch) {
        return Ok(false);
    }
    let env_path = path.join(&config.env_file);
    if env_path.exists() {
        match envfile::EnvFile::load(&env_path) {
            Ok(env) if env.get("INSTANCE_ID") == Some(id) => {}
            _ => return Ok(false),
        }
    }
    let ours: Vec<&str> = std::iter::once(config.env_file.as_str())
        .chain(config.copy_files.iter().map(|f| f.to.as_str()))
        .collect();
    let env_tmp = format!(".{}.tmp.", config.env_file);
    Ok(crate::git::uncommitted(path)?
        .iter()
        .all(|f| ours.contains(&f.as_str()) || f.starts_with(&env_tmp)))
}

/// Whether `root` holds what an `init` killed half-way leaves: an env file naming `id`
/// while nothing is registered at `root` or under `id`.
pub fn is_interrupted_init(ctx: &crate::context::Ctx, root: &Path, id: &str) -> Result<bool> {
    let env_path = root.join(&ctx.config.env_file);
    if !env_path.is_file() {
        return Ok(false);
    }
    let names_id =
        envfile::EnvFile::load(&env_path).is_ok_and(|e| e.get("INSTANCE_ID") == Some(id));
    let registry = ctx.registry()?;
    let known = registry.at_path(root).is_some() || registry.all().any(|e| e.instance_id == id);
    Ok(names_id && !known)
}

/// An instance resolved from the current directory, ready for compose calls.
pub struct Running {
    pub registry: Registry,
    pub inst: crate::context::Instance,
    pub project: crate::compose::Project,
    pub flavor: crate::compose::Flavor,
}

/// Resolve "this instance" (SPEC 6.2/6.3 checks), its compose project, and make sure
/// Docker and Compose answer before anything is run.
pub fn resolve_running(ctx: &crate::context::Ctx, want: crate::context::Want) -> Result<Running> {
    let registry = ctx.registry()?;
    let inst = crate::context::current_instance(ctx, &registry, want)?;
    let project = compose_project(&ctx.config, &inst)?;
    docker::ensure_available()?;
    let flavor = crate::compose::detect()?;
    Ok(Running {
        registry,
        inst,
        project,
        flavor,
    })
}

impl Running {
    /// `compose <sub…>` with its progress on stderr; a failure names the command.
    pub fn compose_streamed(&self, sub: &[&str]) -> Result<()> {
        let cmd = self.project.command(self.flavor, sub).stdout_to_stderr();
        output::verbose(&cmd.display());
        cmd.run_streamed()
            .map_err(|e| Error::failure(e.to_string()))
    }

    /// `compose <sub…>` attached to the terminal; its exit code is returned.
    pub fn compose_attached(&self, sub: &[&str]) -> Result<u8> {
        let cmd = self.project.command(self.flavor, sub);
        output::verbose(&cmd.display());
        let status = cmd
            .status(true)
            .map_err(|e| Error::failure(e.to_string()))?;
        Ok(exit_code_of(status))
    }
}
