//! Which instance a command acts on. "This instance" is found by walking up from the
//! current directory to the env file, and is accepted only when the registry confirms
//! it (SPEC section 6, invariants 2 and 3): the registry is the identity, never a
//! directory name.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::context::Ctx;
use crate::envfile::{EnvError, EnvFile};
use crate::error::{Diagnostic, Exit};
use crate::registry::{Entry, Registry, canonical};

/// The two kinds of instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Slots 1..N, one per linked worktree (or `init`-ed checkout).
    Sandbox,
    /// Slot 0, the singleton production-like instance in its own clone.
    LocalProd,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Sandbox => "sandbox",
            Kind::LocalProd => "local-prod",
        }
    }

    /// The command group that acts on this kind.
    pub fn command(self) -> &'static str {
        match self {
            Kind::Sandbox => "kinfra sandbox",
            Kind::LocalProd => "kinfra local-prod",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("not inside a kinfra instance: no `{env_file}` between `{}` and the repository top", .cwd.display())]
    NotInside {
        cwd: PathBuf,
        env_file: String,
        want: Option<Kind>,
        local_prod: Option<String>,
    },
    #[error("`{path}` is registered as `{id}` but its `{env_file}` is missing")]
    EnvFileMissing {
        path: String,
        id: String,
        env_file: String,
    },
    #[error("`{}` is local-prod, not a sandbox", .root.display())]
    IsLocalProd { root: PathBuf },
    #[error("`{}` is {what}, not local-prod", .root.display())]
    NotLocalProd {
        root: PathBuf,
        what: String,
        local_prod: Option<String>,
    },
    #[error("`{}` has `{env_file}` but is not a registered instance", .root.display())]
    Unregistered { root: PathBuf, env_file: String },
    #[error("`{}` says `INSTANCE_ID={env_id}` but the registry has `{registry_id}` at this path", .env_path.display())]
    IdMismatch {
        env_path: PathBuf,
        env_id: String,
        registry_id: String,
    },
    #[error("no instance is called `{name}`")]
    NoSuchName { name: String, known: Vec<String> },
    #[error("`{name}` names more than one instance: {}", .candidates.join("; "))]
    Ambiguous {
        name: String,
        candidates: Vec<String>,
    },
    #[error("`{name}` is local-prod, not a sandbox")]
    NamedLocalProd { name: String },
    #[error("`{id}` is registered at `{path}`, which no longer exists")]
    Gone { id: String, path: String },
    #[error("no local-prod is registered for {project}")]
    NoLocalProd { project: String },
    #[error(transparent)]
    Env(#[from] EnvError),
}

impl Diagnostic for InstanceError {
    fn exit(&self) -> Exit {
        match self {
            InstanceError::NotInside { .. } => Exit::NotFound,
            InstanceError::EnvFileMissing { .. } | InstanceError::Env(_) => Exit::Failure,
            InstanceError::NoSuchName { .. } | InstanceError::NoLocalProd { .. } => Exit::NotFound,
            InstanceError::Ambiguous { .. } => Exit::Usage,
            InstanceError::NamedLocalProd { .. } => Exit::Refused,
            InstanceError::Gone { .. } => Exit::NotFound,
            InstanceError::IsLocalProd { .. }
            | InstanceError::NotLocalProd { .. }
            | InstanceError::Unregistered { .. }
            | InstanceError::IdMismatch { .. } => Exit::Refused,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            InstanceError::NotInside {
                want: Some(Kind::LocalProd),
                local_prod: Some(path),
                ..
            } => format!("local-prod is registered at `{path}`; cd there"),
            InstanceError::NotInside {
                want: Some(Kind::LocalProd),
                local_prod: None,
                ..
            } => "create it with `kinfra local-prod create`".into(),
            InstanceError::NotInside { .. } => "cd into a sandbox (see `kinfra sandbox list`), or create one with `kinfra sandbox create NAME`".into(),
            InstanceError::EnvFileMissing { .. } => {
                "`kinfra doctor --fix` writes it again from the registry".into()
            }
            InstanceError::IsLocalProd { .. } => "use `kinfra local-prod …` here".into(),
            InstanceError::NotLocalProd {
                local_prod: Some(path),
                ..
            } => format!("local-prod commands run only in the registered local-prod at `{path}`"),
            InstanceError::NotLocalProd { local_prod: None, .. } => {
                "no local-prod is registered; create one with `kinfra local-prod create`".into()
            }
            InstanceError::Unregistered { .. } => "run `kinfra doctor` to see what is registered, or `kinfra sandbox init` to register this checkout".into(),
            InstanceError::IdMismatch { .. } => "run `kinfra doctor` to see the disagreement".into(),
            InstanceError::Env(e) => return e.hint(),
            InstanceError::NoSuchName { known, .. } if known.is_empty() => {
                "no instance is registered; `kinfra sandbox create NAME` makes one".into()
            }
            InstanceError::NoSuchName { known, .. } => format!(
                "registered: {}",
                known.join(", ")
            ),
            InstanceError::Ambiguous { .. } => {
                "name it by its instance id (`--instance ID`), or run the command inside the instance".into()
            }
            InstanceError::NamedLocalProd { .. } => "use `kinfra local-prod …`".into(),
            InstanceError::Gone { id, .. } => format!(
                "`kinfra sandbox destroy {id}` unregisters it (and removes its containers)"
            ),
            InstanceError::NoLocalProd { .. } => "create it with `kinfra local-prod create`".into(),
        })
    }
}

/// An instance resolved and confirmed by the registry.
#[derive(Debug, Clone)]
pub struct Instance {
    pub entry: Entry,
    pub root: PathBuf,
    pub env: EnvFile,
    pub kind: Kind,
}

impl Instance {
    pub fn id(&self) -> &str {
        &self.entry.instance_id
    }

    pub fn is_local_prod(&self) -> bool {
        self.kind == Kind::LocalProd
    }
}

/// Walk up from `start` to the nearest directory holding `env_file`, never past `top`.
pub fn find_root(start: &Path, top: &Path, env_file: &str) -> Option<PathBuf> {
    let top = canonical(top);
    let mut dir = canonical(start);
    loop {
        if dir.join(env_file).is_file() {
            return Some(dir);
        }
        if dir == top {
            return None;
        }
        dir = dir.parent()?.to_owned();
        if !dir.starts_with(&top) {
            return None;
        }
    }
}

/// Resolve "this instance" from the current directory and check it against the
/// registry. `want` is the kind the command acts on (`None`: either).
pub fn current(
    ctx: &Ctx,
    registry: &Registry,
    want: Option<Kind>,
) -> Result<Instance, InstanceError> {
    let env_name = &ctx.config.env_file;
    let not_inside = || InstanceError::NotInside {
        cwd: ctx.cwd.clone(),
        env_file: env_name.clone(),
        want,
        local_prod: registry.local_prod.as_ref().map(|lp| lp.path.clone()),
    };
    let repo = ctx.repo.as_ref().ok_or_else(not_inside)?;
    let Some(root) = find_root(&ctx.cwd, &repo.toplevel, env_name) else {
        // A registered instance that lost its env file says so, rather than "not here".
        if let Some(e) = registry.at_path(&repo.toplevel) {
            return Err(InstanceError::EnvFileMissing {
                path: e.path.clone(),
                id: e.instance_id.clone(),
                env_file: env_name.clone(),
            });
        }
        return Err(not_inside());
    };
    let env = load_env(&ctx.config, &root)?;
    let id = env.require("INSTANCE_ID")?.to_string();

    let is_local_prod = registry
        .local_prod
        .as_ref()
        .is_some_and(|lp| canonical(lp.path()) == root);
    let kind = if is_local_prod {
        Kind::LocalProd
    } else {
        Kind::Sandbox
    };
    match (want, kind) {
        (Some(Kind::Sandbox), Kind::LocalProd) => return Err(InstanceError::IsLocalProd { root }),
        (Some(Kind::LocalProd), Kind::Sandbox) => {
            let what = match registry.at_path(&root) {
                Some(e) => format!("sandbox `{}`", e.instance_id),
                None => "an unregistered directory".to_string(),
            };
            return Err(InstanceError::NotLocalProd {
                root,
                what,
                local_prod: registry.local_prod.as_ref().map(|lp| lp.path.clone()),
            });
        }
        _ => {}
    }
    let entry = match kind {
        Kind::LocalProd => registry.local_prod.clone(),
        Kind::Sandbox => registry
            .instances
            .iter()
            .find(|e| canonical(e.path()) == root)
            .cloned(),
    };
    let Some(entry) = entry else {
        return Err(InstanceError::Unregistered {
            root,
            env_file: env_name.clone(),
        });
    };
    if entry.instance_id != id {
        return Err(InstanceError::IdMismatch {
            env_path: root.join(env_name),
            env_id: id,
            registry_id: entry.instance_id,
        });
    }
    Ok(Instance {
        entry,
        root,
        env,
        kind,
    })
}

/// Which instance a command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The one the current directory is in (local-prod: the registered one).
    Here,
    /// By instance id or by the name given to `create`, wherever it lives.
    Named(String),
}

impl Selector {
    pub fn from_option(name: Option<&str>) -> Selector {
        name.map_or(Selector::Here, |n| Selector::Named(n.to_string()))
    }
}

/// An instance found for a command: the context of its own checkout (its project's
/// configuration), its registry, and the instance.
pub struct Found {
    pub ctx: Ctx,
    pub registry: Registry,
    pub inst: Instance,
}

/// Resolve `sel` for a command on `want` instances. Sandboxes `Here` come from the
/// current directory (checked against the registry); local-prod is the registered one
/// wherever the command runs (the registry is its identity); names are looked up in this
/// project's registry, then in every project of the per-user index.
pub fn select(ctx: &Ctx, sel: &Selector, want: Option<Kind>) -> crate::error::Result<Found> {
    match sel {
        Selector::Here if want == Some(Kind::LocalProd) => {
            let registry = ctx.registry()?;
            // Inside local-prod itself, the usual checks apply (env file, id).
            if let Ok(inst) = current(ctx, &registry, Some(Kind::LocalProd)) {
                return Ok(Found {
                    ctx: ctx.clone(),
                    registry,
                    inst,
                });
            }
            let entry = registry
                .local_prod
                .clone()
                .ok_or_else(|| InstanceError::NoLocalProd {
                    project: ctx.config.project_name.clone(),
                })?;
            at_entry(&entry, Kind::LocalProd, ctx)
        }
        Selector::Here => {
            let registry = ctx.registry()?;
            let inst = current(ctx, &registry, want)?;
            Ok(Found {
                ctx: ctx.clone(),
                registry,
                inst,
            })
        }
        Selector::Named(name) => {
            let (entry, kind) = find_named(ctx, name, want)?;
            at_entry(&entry, kind, ctx)
        }
    }
}

/// The instance `entry` of some registry, resolved in its own checkout.
fn at_entry(entry: &Entry, kind: Kind, from: &Ctx) -> crate::error::Result<Found> {
    let path = entry.path();
    if !path.is_dir() {
        return Err(InstanceError::Gone {
            id: entry.instance_id.clone(),
            path: entry.path.clone(),
        }
        .into());
    }
    // The instance's own project configuration (its kinfra.toml or layout), unless the
    // command was given one explicitly.
    let ctx = Ctx::at(path, from.config_flag.as_deref())?;
    let registry = ctx.registry()?;
    let want = Some(kind);
    let inst = current(&ctx, &registry, want)?;
    if inst.entry.instance_id != entry.instance_id {
        return Err(InstanceError::IdMismatch {
            env_path: inst.root.join(&ctx.config.env_file),
            env_id: inst.entry.instance_id,
            registry_id: entry.instance_id.clone(),
        }
        .into());
    }
    Ok(Found {
        ctx,
        registry,
        inst,
    })
}

/// Find `name` (an instance id, or the name given to `create`) in this project's
/// registry and in every registry of the per-user index.
fn find_named(ctx: &Ctx, name: &str, want: Option<Kind>) -> crate::error::Result<(Entry, Kind)> {
    let mut registries: Vec<(String, std::path::PathBuf)> = vec![(
        ctx.config.project_name.clone(),
        ctx.config.registry_path.clone(),
    )];
    if let Ok(index) = crate::index::load() {
        for p in &index.projects {
            if !registries
                .iter()
                .any(|(_, r)| canonical(r) == canonical(&p.registry))
            {
                registries.push((p.name.clone(), p.registry.clone()));
            }
        }
    }
    let mut found: Vec<(String, Entry, Kind)> = Vec::new();
    let mut known: Vec<String> = Vec::new();
    for (project, path) in &registries {
        let paths = crate::registry::RegistryPaths::beside(path);
        let Ok((reg, state)) = crate::registry::load_with_state(&paths) else {
            continue;
        };
        for (e, kind) in reg
            .instances
            .iter()
            .map(|e| (e, Kind::Sandbox))
            .chain(reg.local_prod.iter().map(|e| (e, Kind::LocalProd)))
        {
            known.push(e.instance_id.clone());
            let given = state.instance(&e.instance_id).and_then(|s| s.name.clone());
            let hit = e.instance_id == name || given.as_deref() == Some(name);
            if hit
                && !found
                    .iter()
                    .any(|(_, f, _)| f.instance_id == e.instance_id && f.path == e.path)
            {
                found.push((project.clone(), e.clone(), kind));
            }
        }
    }
    match found.len() {
        0 => Err(InstanceError::NoSuchName {
            name: name.to_string(),
            known,
        }
        .into()),
        1 => {
            let (_, entry, kind) = found.remove(0);
            if want == Some(Kind::Sandbox) && kind == Kind::LocalProd {
                return Err(InstanceError::NamedLocalProd {
                    name: name.to_string(),
                }
                .into());
            }
            Ok((entry, kind))
        }
        _ => Err(InstanceError::Ambiguous {
            name: name.to_string(),
            candidates: found
                .iter()
                .map(|(p, e, _)| format!("`{}` of {p} at `{}`", e.instance_id, e.path))
                .collect(),
        }
        .into()),
    }
}

/// Whether `name` names an instance (by id or by the name given to `create`) in this
/// project or any project of the index: for telling a NAME from a command's own
/// argument.
pub fn names_an_instance(ctx: &Ctx, name: &str) -> bool {
    !matches!(
        find_named(ctx, name, None),
        Err(crate::error::Error {
            exit: crate::error::Exit::NotFound,
            ..
        })
    )
}

/// A registered sandbox by instance id, or by the name it was created with.
pub fn lookup_sandbox<'r>(
    config: &Config,
    registry: &'r Registry,
    name: &str,
) -> Option<&'r Entry> {
    let by_slug = format!("{}{}", config.sandbox_prefix, crate::slug::slugify(name));
    registry
        .sandbox(name)
        .or_else(|| registry.sandbox(&by_slug))
}

/// The env file of the instance at `root`, with every value a command may hand to
/// compose or print checked to be well-formed (slot in range, ports numeric).
pub fn load_env(config: &Config, root: &Path) -> Result<EnvFile, EnvError> {
    let env = EnvFile::load(&root.join(&config.env_file))?;
    env.require("INSTANCE_ID")?;
    let slot = env.require_number("SLOT_NUMBER", 0..=config.slot_count)?;
    if let Ok(ports) = config.ports.for_slot(slot) {
        for p in ports {
            env.require_port(&p.key)?;
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_up_to_the_env_file_but_not_past_the_top() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("repo");
        let deep = top.join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_root(&deep, &top, ".env.sandbox"), None);
        // An env file above the top does not count.
        std::fs::write(dir.path().join(".env.sandbox"), "").unwrap();
        assert_eq!(find_root(&deep, &top, ".env.sandbox"), None);
        std::fs::write(top.join(".env.sandbox"), "").unwrap();
        assert_eq!(
            find_root(&deep, &top, ".env.sandbox"),
            Some(canonical(&top))
        );
        std::fs::write(top.join("a/.env.sandbox"), "").unwrap();
        assert_eq!(
            find_root(&deep, &top, ".env.sandbox"),
            Some(canonical(&top.join("a")))
        );
    }
}
