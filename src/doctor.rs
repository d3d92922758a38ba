//! `doctor`: compare the registry, the instance directories and env files, `git
//! worktree list`, and Docker's compose projects; report every disagreement with its
//! fix, and apply the fixes that cannot lose data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::envfile::EnvFile;
use crate::git;
use crate::layout;
use crate::registry::{Entry, Registry, RegistryError, canonical};
use crate::report::Reporter;
use crate::status::Container;
use crate::timefmt;

/// A repair `--fix` may apply: none of these can lose data.
/// How `doctor` ends when problems remain after it ran.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error("{remaining} problem(s) need attention")]
    ProblemsRemain {
        remaining: usize,
        /// How many of them `doctor --fix` would repair (0 when `--fix` was given).
        repairable: usize,
    },
}

impl crate::error::Diagnostic for DoctorError {
    fn exit(&self) -> crate::error::Exit {
        crate::error::Exit::Failure
    }

    fn hint(&self) -> Option<String> {
        match self {
            DoctorError::ProblemsRemain { repairable, .. } if *repairable > 0 => Some(format!(
                "{repairable} of them can be repaired safely with `kinfra doctor --fix`"
            )),
            DoctorError::ProblemsRemain { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Drop a registry entry whose directory is gone and which Docker holds nothing of.
    Unregister { id: String, local_prod: bool },
    /// Write a missing env file from the registry entry.
    WriteEnv { entry: Entry },
    /// Register a worktree a killed `create` left with its env file.
    Register { entry: Entry },
    /// `git worktree prune`: forget worktrees whose directories are gone.
    PruneWorktrees { main: PathBuf },
    /// Remove a temp file a killed registry write left.
    RemoveFile { path: PathBuf },
    /// Move an unparsable registry aside and rebuild it from the env files on disk.
    RebuildRegistry,
}

/// How a finding is repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// `doctor --fix` does it.
    Auto(Action),
    /// The user runs this (it could lose data, so kinfra does not).
    Command(String),
}

/// What doctor found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    CorruptRegistry,
    NewerRegistry,
    DockerUnreachable,
    StaleEntry,
    StaleLocalProd,
    MissingEnvFile,
    UnreadableEnvFile,
    EnvFileDisagrees,
    UnknownWorktree,
    SlotOutOfRange,
    SlotCollision,
    UnregisteredDockerProject,
    PrunableWorktrees,
    UnregisteredWorktree,
    UnregisteredLocalProd,
    UnregisteredEnvFile,
    LeftoverTempFile,
    PartialRescue,
    InterruptedDataOperation,
    LeftoverSnapshot,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub subject: String,
    pub message: String,
    pub fix: Fix,
}

/// A finding as reported (`--json`).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Reported {
    pub kind: Kind,
    pub subject: String,
    pub message: String,
    pub fix: String,
    pub auto: bool,
    pub fixed: bool,
}

/// What the machine holds, gathered once.
pub struct Inputs {
    pub registry: Result<Registry, RegistryError>,
    /// `None` when Docker did not answer.
    pub containers: Option<Vec<Container>>,
    /// Why Docker did not answer.
    pub docker_error: Option<String>,
    pub volumes: Option<Vec<(String, String)>>,
    /// Main repositories to inspect (the current one and every `parent_repo`).
    pub mains: Vec<PathBuf>,
}

/// Containers and volumes Docker holds for one project (`None`: Docker did not answer).
#[derive(Debug, Default)]
struct Held {
    containers: Vec<String>,
    volumes: Vec<String>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.volumes.is_empty()
    }
}

fn held(inputs: &Inputs, id: &str) -> Option<Held> {
    let containers = inputs.containers.as_ref()?;
    let volumes = inputs.volumes.as_ref()?;
    Some(Held {
        containers: containers
            .iter()
            .filter(|c| c.project == id)
            .map(|c| c.name.clone())
            .collect(),
        volumes: volumes
            .iter()
            .filter(|(p, _)| p == id)
            .map(|(_, v)| v.clone())
            .collect(),
    })
}

/// Every finding, in a stable order.
pub fn examine(config: &Config, inputs: &Inputs) -> Vec<Finding> {
    let mut out = Vec::new();
    let registry = match &inputs.registry {
        Ok(r) => r,
        Err(e) => {
            out.push(Finding {
                kind: Kind::CorruptRegistry,
                subject: config.registry_path.display().to_string(),
                message: e.to_string(),
                fix: Fix::Auto(Action::RebuildRegistry),
            });
            return out;
        }
    };
    let docker_holds = |id: &str| held(inputs, id);
    if let Some(why) = &inputs.docker_error {
        out.push(Finding {
            kind: Kind::DockerUnreachable,
            subject: "docker".into(),
            message: format!("could not check containers and volumes: {why}"),
            fix: Fix::Command(
                "start Docker (or check DOCKER_HOST), then run `kinfra doctor` again".into(),
            ),
        });
    }
    if registry.read_only() {
        out.push(Finding {
            kind: Kind::NewerRegistry,
            subject: config.registry_path.display().to_string(),
            message: format!(
                "`{}` was written by a newer tool (version {}); kinfra reads it but changes nothing in it",
                config.registry_path.display(),
                registry.version
            ),
            fix: Fix::Command("upgrade kinfra".into()),
        });
    }
    for r in crate::rescue::list(&config.state_dir, &inputs.mains) {
        if r.is_partial() {
            out.push(Finding {
                kind: Kind::PartialRescue,
                subject: r.name(),
                message: format!(
                    "rescue `{}` was cut short (no manifest); what it moved is kept in `{}`",
                    r.name(),
                    r.dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default()
                ),
                fix: Fix::Command(format!(
                    "kinfra rescue list   (its files stay until you remove them; `kinfra rescue restore {}` if it has a ref)",
                    r.name()
                )),
            });
        }
    }

    for i in crate::snapshot::all_interrupted(config) {
        if i.running {
            continue;
        }
        out.push(Finding {
            kind: Kind::InterruptedDataOperation,
            subject: i.instance.clone(),
            message: i.message(),
            fix: Fix::Command(i.command.clone()),
        });
    }
    for dir in crate::snapshot::leftover_temp_dirs(config) {
        out.push(Finding {
            kind: Kind::LeftoverSnapshot,
            subject: dir.display().to_string(),
            message: format!(
                "`{}` is what a killed `snapshot create` left (never listed as a snapshot)",
                dir.display()
            ),
            fix: Fix::Command(format!(
                "rm -rf {}",
                crate::process::shell_quote(&dir.display().to_string())
            )),
        });
    }
    // Registered instances.
    let entries: Vec<(&Entry, bool)> = registry
        .instances
        .iter()
        .map(|e| (e, false))
        .chain(registry.local_prod.iter().map(|e| (e, true)))
        .collect();
    for (entry, local_prod) in &entries {
        examine_entry(config, entry, *local_prod, inputs, &mut out);
    }

    // Slots.
    let mut by_slot: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for e in &registry.instances {
        by_slot.entry(e.slot).or_default().push(&e.instance_id);
        if !(1..=config.slot_count).contains(&e.slot) {
            out.push(Finding {
                kind: Kind::SlotOutOfRange,
                subject: e.instance_id.clone(),
                message: format!(
                    "sandbox `{}` has slot {}, outside 1..={}",
                    e.instance_id, e.slot, config.slot_count
                ),
                fix: Fix::Command(format!("kinfra sandbox destroy {} --yes", e.instance_id)),
            });
        }
    }
    for (slot, ids) in by_slot.iter().filter(|(_, ids)| ids.len() > 1) {
        out.push(Finding {
            kind: Kind::SlotCollision,
            subject: ids.join(", "),
            message: format!("slot {slot} is held by {}", ids.join(" and ")),
            fix: Fix::Command(format!(
                "kinfra sandbox destroy {} --yes",
                ids[ids.len() - 1]
            )),
        });
    }

    // Docker projects that look like ours but are not registered.
    if let (Some(containers), Some(volumes)) = (&inputs.containers, &inputs.volumes) {
        let registered: BTreeSet<&str> = entries
            .iter()
            .map(|(e, _)| e.instance_id.as_str())
            .collect();
        let ours = |p: &str| p.starts_with(&config.sandbox_prefix) || p == config.local_prod_id;
        let projects: BTreeSet<&str> = containers
            .iter()
            .map(|c| c.project.as_str())
            .chain(volumes.iter().map(|(p, _)| p.as_str()))
            .filter(|p| ours(p) && !registered.contains(p))
            .collect();
        for project in projects {
            let h = docker_holds(project).unwrap_or_default();
            let (cs, vs) = (h.containers, h.volumes);
            let mut cmds = Vec::new();
            if !cs.is_empty() {
                cmds.push(format!("docker rm -f {}", cs.join(" ")));
            }
            if !vs.is_empty() {
                cmds.push(format!("docker volume rm {}", vs.join(" ")));
            }
            out.push(Finding {
                kind: Kind::UnregisteredDockerProject,
                subject: project.to_string(),
                message: format!(
                    "Docker holds {} container(s) and {} volume(s) of `{project}`, which is not registered{}",
                    cs.len(),
                    vs.len(),
                    if vs.is_empty() { "" } else { "; a new instance of that name would reuse its volumes" }
                ),
                fix: Fix::Command(cmds.join(" && ")),
            });
        }
    }

    // Worktrees and rescue refs of the main repositories.
    for main in &inputs.mains {
        examine_repo(config, registry, main, &mut out);
    }

    // Temp files of a registry write that was killed before its rename.
    report_temp_files(
        &config.registry_path,
        "registry write (the registry itself is intact)",
        &mut out,
    );
    out
}

fn examine_entry(
    config: &Config,
    entry: &Entry,
    local_prod: bool,
    inputs: &Inputs,
    out: &mut Vec<Finding>,
) {
    let id = &entry.instance_id;
    let path = entry.path();
    let destroy_cmd = if local_prod {
        "kinfra local-prod destroy --yes".to_string()
    } else {
        format!("kinfra sandbox destroy {id} --yes")
    };
    if !path.is_dir() {
        let fix = match held(inputs, id) {
            Some(h) if h.is_empty() => Fix::Auto(Action::Unregister {
                id: id.clone(),
                local_prod,
            }),
            Some(_) => Fix::Command(destroy_cmd.clone()),
            None => Fix::Command(format!("start Docker, then `{destroy_cmd}`")),
        };
        let held = match held(inputs, id) {
            Some(h) if !h.is_empty() => format!(
                "; Docker still holds {} container(s) and {} volume(s) of it",
                h.containers.len(),
                h.volumes.len()
            ),
            _ => String::new(),
        };
        out.push(Finding {
            kind: if local_prod {
                Kind::StaleLocalProd
            } else {
                Kind::StaleEntry
            },
            subject: id.clone(),
            message: format!(
                "`{id}` is registered at `{}`, which no longer exists{held}",
                entry.path
            ),
            fix,
        });
        return;
    }
    let env_path = path.join(&config.env_file);
    report_temp_files(&env_path, "env-file write", out);
    if !env_path.exists() {
        out.push(Finding {
            kind: Kind::MissingEnvFile,
            subject: id.clone(),
            message: format!("`{}` is missing", env_path.display()),
            fix: Fix::Auto(Action::WriteEnv {
                entry: entry.clone(),
            }),
        });
        return;
    }
    let regenerate = format!(
        "rm {} && kinfra doctor --fix",
        crate::process::shell_quote(&env_path.display().to_string())
    );
    let env = match EnvFile::load(&env_path) {
        Ok(env) => env,
        Err(e) => {
            out.push(Finding {
                kind: Kind::UnreadableEnvFile,
                subject: id.clone(),
                message: e.to_string(),
                fix: Fix::Command(regenerate),
            });
            return;
        }
    };
    let mut problems = Vec::new();
    if env.get("INSTANCE_ID") != Some(id.as_str()) {
        problems.push(format!(
            "INSTANCE_ID is `{}`, registry says `{id}`",
            env.get("INSTANCE_ID").unwrap_or("")
        ));
    }
    if env.get("SLOT_NUMBER") != Some(entry.slot.to_string().as_str()) {
        problems.push(format!(
            "SLOT_NUMBER is `{}`, registry says {}",
            env.get("SLOT_NUMBER").unwrap_or(""),
            entry.slot
        ));
    }
    if let Ok(ports) = config.ports.for_slot(entry.slot) {
        for p in ports {
            let want = p.port.to_string();
            if env.get(&p.key) != Some(want.as_str()) {
                problems.push(format!(
                    "{} is `{}`, slot {} uses {want}",
                    p.key,
                    env.get(&p.key).unwrap_or(""),
                    entry.slot
                ));
            }
        }
    }
    if !problems.is_empty() {
        out.push(Finding {
            kind: Kind::EnvFileDisagrees,
            subject: id.clone(),
            message: format!(
                "`{}` disagrees with the registry: {}",
                env_path.display(),
                problems.join("; ")
            ),
            fix: Fix::Command(regenerate),
        });
    }
    let worktree_main = entry
        .parent_repo
        .as_deref()
        .map(Path::new)
        .filter(|m| entry.is_worktree && !local_prod && m.is_dir());
    if let Some(main) = worktree_main {
        let here = canonical(path);
        let known = git::worktree_list(main)
            .map(|l| l.iter().any(|w| canonical(&w.path) == here))
            .unwrap_or(true);
        if !known {
            out.push(Finding {
                kind: Kind::UnknownWorktree,
                subject: id.clone(),
                message: format!(
                    "`{}` is registered as a worktree of `{}`, but git does not list it",
                    entry.path,
                    main.display()
                ),
                fix: Fix::Command(format!(
                    "git -C {} worktree repair {}",
                    crate::process::shell_quote(&main.display().to_string()),
                    crate::process::shell_quote(&entry.path)
                )),
            });
        }
    }
}

fn examine_repo(config: &Config, registry: &Registry, main: &Path, out: &mut Vec<Finding>) {
    let Ok(list) = git::worktree_list(main) else {
        return;
    };
    if list.iter().any(|w| w.prunable) {
        out.push(Finding {
            kind: Kind::PrunableWorktrees,
            subject: main.display().to_string(),
            message: format!(
                "`{}` lists worktrees whose directories are gone",
                main.display()
            ),
            fix: Fix::Auto(Action::PruneWorktrees {
                main: main.to_owned(),
            }),
        });
    }
    for wt in list.iter().skip(1).filter(|w| !w.prunable) {
        let Some(name) = wt
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            continue;
        };
        if registry.at_path(&wt.path).is_some() {
            continue;
        }
        let Some(slug) = name.strip_prefix(&config.sandbox_prefix) else {
            report_stray_env_file(config, &wt.path, out);
            continue;
        };
        let env_path = wt.path.join(&config.env_file);
        let env = EnvFile::load(&env_path).ok();
        let slot = env
            .as_ref()
            .filter(|e| e.get("INSTANCE_ID") == Some(name.as_str()))
            .and_then(|e| e.require_number("SLOT_NUMBER", 1..=config.slot_count).ok());
        let adoptable =
            slot.filter(|s| registry.free_slot_at(*s) && registry.sandbox(&name).is_none());
        let fix = match (adoptable, &env) {
            (Some(slot), Some(env)) => Fix::Auto(Action::Register {
                entry: Entry {
                    instance_id: name.clone(),
                    slot,
                    path: wt.path.display().to_string(),
                    created_at: env
                        .get("CREATED_AT")
                        .map_or_else(timefmt::now_iso, str::to_string),
                    is_worktree: true,
                    parent_repo: Some(main.display().to_string()),
                },
            }),
            _ => Fix::Command(format!(
                "cd {} && kinfra sandbox create {slug}   (finishes an interrupted create), or `git -C {} worktree remove {}`",
                crate::process::shell_quote(&main.display().to_string()),
                crate::process::shell_quote(&main.display().to_string()),
                crate::process::shell_quote(&wt.path.display().to_string()),
            )),
        };
        out.push(Finding {
            kind: Kind::UnregisteredWorktree,
            subject: name.clone(),
            message: format!(
                "worktree `{}` looks like a sandbox but is not registered{}",
                wt.path.display(),
                if env.is_some() {
                    ""
                } else {
                    " (and has no env file)"
                }
            ),
            fix,
        });
    }
    if let Some(first) = list.first().filter(|w| registry.at_path(&w.path).is_none()) {
        report_stray_env_file(config, &first.path, out);
    }
    let lp_path = config.local_prod_path(main);
    if registry.local_prod.is_none() {
        report_temp_files(&lp_path.join(&config.env_file), "env-file write", out);
    }
    let lp_env_names_it = EnvFile::load(&lp_path.join(&config.env_file))
        .is_ok_and(|e| e.get("INSTANCE_ID") == Some(config.local_prod_id.as_str()));
    // A destroyed local-prod keeps its clone without an env file; only a clone that
    // still says it is local-prod is left over from an interrupted create or init.
    if registry.local_prod.is_none() && lp_env_names_it {
        out.push(Finding {
            kind: Kind::UnregisteredLocalProd,
            subject: lp_path.display().to_string(),
            message: format!("`{}` looks like local-prod but no local-prod is registered", lp_path.display()),
            fix: Fix::Command(format!(
                "cd {} && kinfra local-prod create   (finishes an interrupted create; or `kinfra local-prod init` inside it)",
                crate::process::shell_quote(&main.display().to_string())
            )),
        });
    }
}

/// Temp files an atomic write of `target` left when it was killed before its rename.
fn report_temp_files(target: &Path, what: &str, out: &mut Vec<Finding>) {
    for tmp in crate::fsutil::leftover_temp_files(target) {
        out.push(Finding {
            kind: Kind::LeftoverTempFile,
            subject: tmp.display().to_string(),
            message: format!("`{}` is left from an interrupted {what}", tmp.display()),
            fix: Fix::Auto(Action::RemoveFile { path: tmp }),
        });
    }
}

/// A checkout (not named like a sandbox) with an env file but no registry entry: what
/// an `init` killed half-way leaves.
fn report_stray_env_file(config: &Config, path: &Path, out: &mut Vec<Finding>) {
    let env_path = path.join(&config.env_file);
    if !env_path.is_file() {
        return;
    }
    let q = |p: &Path| crate::process::shell_quote(&p.display().to_string());
    let is_local_prod = EnvFile::load(&env_path)
        .is_ok_and(|e| e.get("INSTANCE_ID") == Some(config.local_prod_id.as_str()));
    let init = if is_local_prod {
        "local-prod init"
    } else {
        "sandbox init"
    };
    out.push(Finding {
        kind: Kind::UnregisteredEnvFile,
        subject: path.display().to_string(),
        message: format!("`{}` has an env file but is not registered", path.display()),
        fix: Fix::Command(format!(
            "cd {} && kinfra {init}   (finishes an interrupted init), or `rm {}`",
            q(path),
            q(&env_path)
        )),
    });
}

/// Apply one repair. Registry changes go through the locked update.
pub fn apply(
    config: &Config,
    action: &Action,
    mains: &[PathBuf],
    reporter: &dyn Reporter,
) -> Result<String, String> {
    let paths = config.registry_paths();
    let update = |f: &dyn Fn(&mut Registry)| {
        crate::registry::update_with_state(
            &paths,
            reporter,
            |reg, _| -> Result<(), RegistryError> {
                f(reg);
                Ok(())
            },
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    match action {
        Action::Unregister { id, local_prod } => {
            let local_prod = *local_prod;
            update(&|reg: &mut Registry| {
                if local_prod {
                    if reg
                        .local_prod
                        .as_ref()
                        .is_some_and(|e| &e.instance_id == id)
                    {
                        reg.local_prod = None;
                    }
                } else {
                    reg.remove_sandbox(id);
                }
            })?;
            Ok(format!("unregistered `{id}`"))
        }
        Action::WriteEnv { entry } => {
            let vars = layout::env_vars(config, &entry.instance_id, entry.slot, &entry.created_at)
                .map_err(|e| e.to_string())?;
            let path = entry.path().join(&config.env_file);
            crate::envfile::save(&path, &vars).map_err(|e| e.to_string())?;
            Ok(format!("wrote `{}`", path.display()))
        }
        Action::Register { entry } => {
            let mut done = false;
            crate::registry::update_with_state(
                &paths,
                reporter,
                |reg, _| -> Result<(), RegistryError> {
                    if reg.free_slot_at(entry.slot) && reg.sandbox(&entry.instance_id).is_none() {
                        reg.insert_sandbox(entry.clone());
                        done = true;
                    }
                    Ok(())
                },
            )
            .map_err(|e| e.to_string())?;
            if done {
                Ok(format!(
                    "registered `{}` on slot {}",
                    entry.instance_id, entry.slot
                ))
            } else {
                Err(format!("slot {} was taken meanwhile", entry.slot))
            }
        }
        Action::PruneWorktrees { main } => {
            git::worktree_prune(main).map_err(|e| e.to_string())?;
            Ok(format!("pruned worktrees of `{}`", main.display()))
        }
        Action::RemoveFile { path } => {
            // Under the registry lock, and only when the writer is gone: a temp file of
            // a write in progress is that writer's.
            let _guard = crate::registry::lock_with(&config.registry_lock_path(), reporter)
                .map_err(|e| e.to_string())?;
            if crate::fsutil::writer_alive(path) {
                return Err(format!(
                    "`{}` belongs to a kinfra command still running",
                    path.display()
                ));
            }
            match std::fs::remove_file(path) {
                Ok(()) => Ok(format!("removed `{}`", path.display())),
                // A registry write under the same lock removed it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Ok(format!("`{}` is gone", path.display()))
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Action::RebuildRegistry => rebuild_registry(config, mains, reporter),
    }
}

/// Rebuild an unparsable registry from the env files of the worktrees and local-prod
/// of the known main repositories. Refused when an instance the corrupt file names
/// cannot be found again (nothing is dropped). The new registry is written first, the
/// old one copied to a backup, then the new one renamed into place: the registry is
/// never missing, and a symlinked registry stays a symlink.
fn rebuild_registry(
    config: &Config,
    mains: &[PathBuf],
    reporter: &dyn Reporter,
) -> Result<String, String> {
    let _guard = crate::registry::lock_with(&config.registry_lock_path(), reporter)
        .map_err(|e| e.to_string())?;
    let path = &config.registry_path;
    if crate::registry::Registry::load(path).is_ok() {
        return Err("the registry parses now; nothing to rebuild".into());
    }
    if mains.is_empty() {
        return Err(
            "no repository to rebuild from here; run `kinfra doctor --fix` inside a checkout of the project"
                .into(),
        );
    }
    let old_text = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let reg = rediscover(config, mains);
    let named = named_ids(&String::from_utf8_lossy(&old_text));
    let lost: Vec<&String> = named.iter().filter(|id| !reg.contains(id)).collect();
    if !lost.is_empty() {
        return Err(format!(
            "cannot rebuild without losing {} (not found on disk from here): fix `{}` by hand",
            lost.iter()
                .map(|i| format!("`{i}`"))
                .collect::<Vec<_>>()
                .join(", "),
            path.display()
        ));
    }
    let target = crate::registry::resolve_links(path).map_err(|e| e.to_string())?;
    let mut backup = target.as_os_str().to_owned();
    backup.push(format!(".corrupt-{}", timefmt::now_compact()));
    let backup = PathBuf::from(backup);
    std::fs::write(&backup, &old_text)
        .map_err(|e| format!("cannot keep a backup at `{}`: {e}", backup.display()))?;
    crate::registry::write_through_links(path, reg.to_json().as_bytes())
        .map_err(|e| format!("cannot write the rebuilt registry: {e}"))?;
    Ok(format!(
        "rebuilt the registry with {} sandbox(es){} found on disk; the corrupt one is kept at `{}`",
        reg.instances.len(),
        if reg.local_prod.is_some() {
            " and local-prod"
        } else {
            ""
        },
        backup.display()
    ))
}

/// The registry the env files on disk describe.
fn rediscover(config: &Config, mains: &[PathBuf]) -> Registry {
    let mut reg = Registry::default();
    for main in mains {
        let Ok(list) = git::worktree_list(main) else {
            continue;
        };
        for (i, wt) in list.iter().enumerate() {
            let Ok(env) = EnvFile::load(&wt.path.join(&config.env_file)) else {
                continue;
            };
            let (Some(id), Ok(slot)) = (
                env.get("INSTANCE_ID"),
                env.require_number("SLOT_NUMBER", 0..=config.slot_count),
            ) else {
                continue;
            };
            if slot == 0 || reg.sandbox(id).is_some() || reg.slot_holder(slot).is_some() {
                continue;
            }
            reg.instances.push(Entry {
                instance_id: id.to_string(),
                slot,
                path: canonical(&wt.path).display().to_string(),
                created_at: env.get("CREATED_AT").unwrap_or_default().to_string(),
                is_worktree: i > 0,
                parent_repo: (i > 0).then(|| main.display().to_string()),
            });
        }
        let lp = config.local_prod_path(main);
        let lp_env = EnvFile::load(&lp.join(&config.env_file)).ok();
        if let Some(env) = lp_env.filter(|e| {
            reg.local_prod.is_none() && e.get("INSTANCE_ID") == Some(config.local_prod_id.as_str())
        }) {
            reg.local_prod = Some(Entry {
                instance_id: config.local_prod_id.clone(),
                slot: 0,
                path: canonical(&lp).display().to_string(),
                created_at: env.get("CREATED_AT").unwrap_or_default().to_string(),
                is_worktree: false,
                parent_repo: Some(main.display().to_string()),
            });
        }
    }
    reg
}

/// Instance ids a (possibly corrupt) registry text names: every `"instance_id": "…"`.
pub fn named_ids(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("\"instance_id\"") {
        rest = &rest[i + "\"instance_id\"".len()..];
        let after = rest.trim_start();
        let Some(after) = after.strip_prefix(':') else {
            continue;
        };
        let after = after.trim_start();
        let Some(after) = after.strip_prefix('"') else {
            continue;
        };
        if let Some(end) = after.find('"') {
            let id = after[..end].to_string();
            if !id.is_empty() && !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

impl Finding {
    pub fn report(&self, fixed: bool) -> Reported {
        Reported {
            kind: self.kind,
            subject: self.subject.clone(),
            message: self.message.clone(),
            fix: match &self.fix {
                Fix::Command(c) => c.clone(),
                Fix::Auto(_) => "kinfra doctor --fix".into(),
            },
            auto: matches!(self.fix, Fix::Auto(_)),
            fixed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_salvaged_from_a_corrupt_registry() {
        let text = r#"{"version": 1, "instances": {"ktrdr--a": {"instance_id": "ktrdr--a", "slot": 1,
            "path": "/w/a"}, "ktrdr--b": {"instance_id" :  "ktrdr--b", "sl"#;
        assert_eq!(named_ids(text), vec!["ktrdr--a", "ktrdr--b"]);
        assert!(named_ids("garbage").is_empty());
    }
}
