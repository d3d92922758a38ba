//! Running an instance's stack: `up` (port preflight, secrets, `compose up -d`, the
//! startability gate), `down`, and the attached commands `logs` and `shell`. Every
//! compose call names the project and the file, so compose never guesses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::compose::model::MountKind;
use crate::compose::{self, Flavor, Project};
use crate::config::{self, Config};
use crate::context::Ctx;
use crate::docker;
use crate::error::{Diagnostic, Exit, Result};
use crate::gate::{self, Check, CheckState, Probe};
use crate::instance::{self, Instance, Kind};
use crate::ports::SlotPort;
use crate::process::ProcessError;
use crate::registry::Registry;
use crate::report::Reporter;
use crate::secrets;
use crate::slots::{self, PortConflict};
use crate::stack::{self, Stack, StackError};
use crate::status::Container;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no compose file in `{}` (looked for {})", .root.display(), .candidates.join(", "))]
    NoComposeFile {
        root: PathBuf,
        candidates: Vec<String>,
    },
    #[error("port conflict: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    PortsBusy(Vec<PortConflict>),
    #[error("cannot load secrets for local-prod: {0}")]
    Secrets(secrets::SecretError),
    #[error("{command} failed: {reason}")]
    Compose { command: String, reason: String },
    #[error("`{id}` did not pass the startability gate ({why})")]
    GateFailed { id: String, why: String },
    #[error("`{id}` did not pass the startability gate within {}s", .timeout.as_secs())]
    GateTimedOut { id: String, timeout: Duration },
    #[error("external {} missing: {}", if .networks.is_empty() { "volumes are" } else if .volumes.is_empty() { "networks are" } else { "networks and volumes are" }, .networks.iter().map(|n| format!("network `{n}`")).chain(.volumes.iter().map(|v| format!("volume `{v}`"))).collect::<Vec<_>>().join(", "))]
    MissingExternal {
        networks: Vec<String>,
        volumes: Vec<String>,
    },
    #[error("Docker project `{id}` holds what is not this instance's: {}", .volumes.join(", "))]
    StaleVolumes { id: String, volumes: Vec<String> },
    #[error("{0}")]
    SubnetTaken(String),
    #[error("gate check `{check}` probes `{key}`, which the env file does not hold")]
    CheckPort { check: String, key: String },
    #[error("interrupted; `{id}` may be partly started or stopped")]
    Interrupted { id: String },
    #[error("gave up on compose for `{id}`: {reason}")]
    ComposeTimedOut { id: String, reason: String },
    #[error("`{id}` has no containers; it is not running")]
    NotRunning { id: String },
    #[error("service `{service}` is not running in `{id}` ({state})")]
    ServiceNotRunning {
        id: String,
        service: String,
        state: String,
    },
    #[error("`{id}` has no service `{service}` (services: {})", .known.join(", "))]
    NoSuchService {
        id: String,
        service: String,
        known: Vec<String>,
    },
}

impl Diagnostic for LifecycleError {
    fn exit(&self) -> Exit {
        match self {
            LifecycleError::NoComposeFile { .. } => Exit::Failure,
            LifecycleError::PortsBusy(_) => Exit::Conflict,
            LifecycleError::Secrets(_) => Exit::Refused,
            LifecycleError::Compose { .. } => Exit::External,
            LifecycleError::GateFailed { .. } => Exit::GateFailed,
            LifecycleError::GateTimedOut { .. } => Exit::TimedOut,
            LifecycleError::NotRunning { .. } | LifecycleError::ServiceNotRunning { .. } => {
                Exit::NotRunning
            }
            LifecycleError::NoSuchService { .. } => Exit::NotFound,
            LifecycleError::MissingExternal { .. } => Exit::Refused,
            LifecycleError::CheckPort { .. } => Exit::Failure,
            LifecycleError::SubnetTaken(_) => Exit::Conflict,
            LifecycleError::StaleVolumes { .. } => Exit::Conflict,
            LifecycleError::Interrupted { .. } => Exit::Interrupted,
            LifecycleError::ComposeTimedOut { .. } => Exit::TimedOut,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            LifecycleError::NoComposeFile { .. } => "set `instance.compose_files` in kinfra.toml".into(),
            LifecycleError::PortsBusy(_) => "stop what holds the port (`kinfra sandbox list` shows running instances), then retry".into(),
            LifecycleError::Secrets(_) => "sign in to 1Password (`op signin`), or pass --no-secrets to use insecure defaults".into(),
            LifecycleError::Compose { .. } => "the compose output above says why".into(),
            LifecycleError::GateFailed { .. } | LifecycleError::GateTimedOut { .. } => "the containers were left in place for debugging; `logs SERVICE` shows more, `down` stops them".into(),
            LifecycleError::NotRunning { .. } => "start it with `up`".into(),
            LifecycleError::ServiceNotRunning { .. } => "start it with `up`, or see `status`".into(),
            LifecycleError::NoSuchService { .. } => "`status` lists the services".into(),
            LifecycleError::MissingExternal { networks, volumes } => networks
                .iter()
                .map(|n| format!("docker network create {n}"))
                .chain(volumes.iter().map(|v| format!("docker volume create {v}")))
                .collect::<Vec<_>>()
                .join(" && "),
            LifecycleError::CheckPort { .. } => "name a port key of the layout, or a port variable of the compose file".into(),
            LifecycleError::SubnetTaken(_) => "remove that network if it is left over, or move kinfra's subnets with `networks.range` in kinfra.toml".into(),
            LifecycleError::StaleVolumes { .. } => "another checkout uses this project name, or an earlier instance left its data: kinfra starts nothing on it; remove them by hand if they are no longer needed (`docker ps -a`, `docker volume ls`)".into(),
            LifecycleError::Interrupted { .. } | LifecycleError::ComposeTimedOut { .. } => {
                "`status` shows where it stands; `up` again finishes it, `down` stops it".into()
            }
        })
    }
}

/// An instance ready for compose calls: resolved, confirmed by the registry, with its
/// compose project, and Docker and Compose known to answer.
pub struct Target {
    /// The context of the instance's own checkout (its project's configuration).
    pub ctx: Ctx,
    pub registry: Registry,
    pub inst: Instance,
    pub project: Project,
    pub flavor: Flavor,
}

/// Resolve the instance of `kind` a command acts on: `sel` (by name, from anywhere) or
/// the current directory's (local-prod: the registered one).
pub fn resolve(ctx: &Ctx, kind: Kind, sel: &instance::Selector) -> Result<Target> {
    resolve_as(ctx, Some(kind), sel)
}

/// [`resolve`] for commands that act on either kind (`None`).
pub fn resolve_as(ctx: &Ctx, kind: Option<Kind>, sel: &instance::Selector) -> Result<Target> {
    let instance::Found {
        ctx,
        registry,
        inst,
    } = instance::select(ctx, sel, kind)?;
    let mut project = compose_project(&ctx.config, &inst)?;
    // The override `up` wrote (subnets, budget) is part of the project for every call.
    let over = crate::overrides::path(&ctx.config.state_dir, inst.id());
    if over.is_file() {
        project.files.push(over);
    }
    docker::ensure_available()?;
    let flavor = compose::detect()?;
    Ok(Target {
        ctx,
        registry,
        inst,
        project,
        flavor,
    })
}

/// The compose project of an instance: its id, its compose file, the local-prod
/// profile when it is local-prod, and its env file as child environment.
pub fn compose_project(config: &Config, inst: &Instance) -> Result<Project, LifecycleError> {
    let file = compose::find_file(&inst.root, &config.compose_files).ok_or_else(|| {
        LifecycleError::NoComposeFile {
            root: inst.root.clone(),
            candidates: config.compose_files.clone(),
        }
    })?;
    Ok(Project {
        name: inst.id().to_string(),
        files: vec![file],
        profile: inst
            .is_local_prod()
            .then(|| config.local_prod_profile.clone()),
        env: inst.env.to_map(),
    })
}

/// The instance's ports as its env file states them: the layout's, then the automatic
/// ones (every other numeric key kinfra wrote).
pub fn instance_ports(config: &Config, inst: &Instance) -> Result<Vec<SlotPort>> {
    let mut ports = config
        .ports
        .for_slot(inst.entry.slot)
        .map_err(crate::config::ConfigError::from)?;
    for p in &mut ports {
        p.port = inst.env.require_port(&p.key)?;
    }
    let layout = config.layout_keys();
    for (key, var) in &inst.env.vars {
        if layout.contains(key) || config::RESERVED_KEYS.contains(&key.as_str()) {
            continue;
        }
        if let Ok(port) = var.value.parse::<u16>() {
            ports.push(SlotPort {
                key: key.clone(),
                port,
                group: key.clone(),
            });
        }
    }
    Ok(ports)
}

impl Target {
    pub fn id(&self) -> &str {
        self.inst.id()
    }

    /// Hold the instance's lock for the rest of the command: `up`, `down`, `destroy`
    /// and `init` of one instance never run at the same time.
    pub fn lock(
        &self,
        config: &Config,
        command: &str,
        reporter: &dyn Reporter,
    ) -> Result<crate::lock::InstanceLock> {
        Ok(crate::lock::instance(
            &config.state_dir,
            self.id(),
            command,
            reporter,
        )?)
    }

    /// `compose <sub…>` with its progress on stderr; a failure names the command.
    pub fn compose_streamed(&self, sub: &[&str], reporter: &dyn Reporter) -> Result<()> {
        let cmd = self
            .project
            .command(self.flavor, sub)
            .stdout_to_stderr()
            .timeout_kind(crate::process::TimeoutKind::Compose);
        reporter.verbose(&cmd.display());
        cmd.run_streamed().map_err(|e| match e {
            ProcessError::Interrupted { .. } => LifecycleError::Interrupted {
                id: self.id().to_string(),
            }
            .into(),
            ProcessError::TimedOut { .. } => LifecycleError::ComposeTimedOut {
                id: self.id().to_string(),
                reason: e.to_string(),
            }
            .into(),
            e => LifecycleError::Compose {
                command: format!("`compose {}`", sub.join(" ")),
                reason: e.to_string(),
            }
            .into(),
        })
    }

    /// `compose <sub…>` attached to the terminal; its exit code is returned.
    pub fn compose_attached(&self, sub: &[&str], reporter: &dyn Reporter) -> Result<u8> {
        let cmd = self.project.command(self.flavor, sub);
        reporter.verbose(&cmd.display());
        let status = cmd.status(true).map_err(|e| LifecycleError::Compose {
            command: format!("`compose {}`", sub.join(" ")),
            reason: e.to_string(),
        })?;
        Ok(exit_code_of(status))
    }

    /// The instance's containers, any state.
    pub fn containers(&self) -> Result<Vec<Container>> {
        Ok(crate::status::project_containers(self.id())?)
    }
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

/// Options of `up`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    pub no_wait: bool,
    pub build: bool,
    pub timeout: Option<Duration>,
    pub no_secrets: bool,
    /// This instance's own budget from now on (kept in kinfra's state file).
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
}

/// What `up` will do, worked out before anything starts.
pub struct UpPlan {
    /// Automatic ports for port variables that appeared since the env file was
    /// written (a branch switch, a compose change); added to the env file first.
    pub new_ports: Vec<(String, u16)>,
    /// The host ports the compose file publishes (what the preflight checks).
    pub ports: Vec<SlotPort>,
    /// Busy ports (held by something other than this instance).
    pub conflicts: Vec<PortConflict>,
    /// External networks and volumes the compose file needs that do not exist.
    pub missing_networks: Vec<String>,
    pub missing_volumes: Vec<String>,
    /// Why the external resources could not be checked (Docker did not answer).
    pub externals_unknown: Option<String>,
    /// Containers and volumes of this project name that are not this instance's
    /// (another checkout's; an earlier instance's data).
    pub stale_volumes: Vec<String>,
    /// Bind-mount sources missing on disk (compose would create empty directories).
    pub missing_binds: Vec<(String, PathBuf)>,
    /// Thin mode: the address of the engine on another machine (not a registered
    /// host) that compose will use.
    pub thin_engine: Option<String>,
    /// Every bind-mount source, with the services mounting it (checked on the engine's
    /// side in thin mode).
    pub bind_sources: Vec<(String, PathBuf)>,
    pub secrets: Vec<secrets::Request>,
    pub compose_args: Vec<String>,
    pub checks: Vec<Check>,
    /// Configured checks not run because their service is not in the compose file.
    pub dropped_checks: Vec<Dropped>,
    pub timeout: Duration,
    pub wait: bool,
    /// The override file's content (subnets, per-service limits).
    pub overrides: crate::overrides::Overrides,
    /// The budget in force and whether it is this instance's own.
    pub budget: crate::config::Budget,
    pub own_budget: bool,
    /// A Docker network not of this project already uses one of the subnets.
    pub subnet_taken: Option<String>,
    /// At most this many `up`s at once (0: no cap).
    pub max_concurrent: u32,
}

/// The child environment kinfra gives compose: process environment, then the env
/// file (later wins).
fn lookup_with(env: &BTreeMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| env.get(name).cloned().or_else(|| std::env::var(name).ok())
}

/// Read the instance's compose file(s) as compose will see them.
pub fn load_stack(
    config: &Config,
    target: &Target,
    env: &BTreeMap<String, String>,
) -> Result<Stack> {
    let profiles = target
        .inst
        .is_local_prod()
        .then(|| config.local_prod_profile.clone())
        .into_iter()
        .collect();
    Ok(Stack::load(
        &target.project.files,
        &lookup_with(env),
        profiles,
    )?)
}

pub fn plan_up(config: &Config, target: &Target, opts: &UpOptions) -> Result<UpPlan> {
    let mut env = target.inst.env.to_map();
    let first = load_stack(config, target, &env)?;
    if let Some(d) = first.duplicates().into_iter().next() {
        return Err(StackError::Duplicate(d.to_string()).into());
    }
    if target.inst.kind == Kind::Sandbox
        && let Some(lit) = first.literal_ports().into_iter().next()
    {
        return Err(lit.into());
    }
    let new_ports =
        stack::assign_auto_ports(config, target.inst.entry.slot, &first.port_vars(), &env)?;
    let stack = if new_ports.is_empty() {
        first
    } else {
        for (k, v) in &new_ports {
            env.insert(k.clone(), v.to_string());
        }
        load_stack(config, target, &env)?
    };
    let ports = stack.published_slot_ports();
    check_ports_not_shared(config, target, &ports)?;
    let conflicts = slots::port_conflicts(&ports, Some(target.id()), &target.registry);

    let (missing_networks, missing_volumes, externals_unknown) = missing_externals(&stack);
    let stale_volumes = stale_volumes(target);
    // Each bind source once, with the services that mount it.
    let mut bind_sources: Vec<(String, PathBuf)> = Vec::new();
    for service in stack.model.active_services(&stack.profiles) {
        for m in &service.mounts {
            if let MountKind::Bind { source } = &m.kind {
                match bind_sources.iter_mut().find(|(_, p)| p == source) {
                    Some((services, _)) => {
                        services.push_str(", ");
                        services.push_str(&service.name);
                    }
                    None => bind_sources.push((service.name.clone(), source.clone())),
                }
            }
        }
    }
    let thin_engine = crate::thin::remote_engine(&crate::thin::registered_hosts());
    // Here, a missing source is a warning; in thin mode the engine's side decides.
    let missing_binds: Vec<(String, PathBuf)> = if thin_engine.is_some() {
        Vec::new()
    } else {
        bind_sources
            .iter()
            .filter(|(_, p)| !p.exists())
            .cloned()
            .collect()
    };

    let secrets = if opts.no_secrets {
        Vec::new()
    } else {
        config
            .secrets
            .iter()
            .filter(|i| i.applies_to(target.inst.kind))
            .map(|i| secrets::Request {
                item: i.item.clone(),
                vault: i.vault.clone(),
                fields: i
                    .fields
                    .iter()
                    .map(|(label, t)| (label.clone(), t.resolve(&|n| stack.reads(n))))
                    .collect(),
            })
            .collect()
    };

    let mut compose_args: Vec<String> = vec!["up".into(), "-d".into(), "--remove-orphans".into()];
    if opts.build {
        compose_args.push("--build".into());
    }
    let (checks, dropped_checks) = gate_checks(config, &env, &stack)?;

    // Subnets for the networks, the budget as per-service limits.
    let known = crate::registry::load_with_state(&config.registry_paths())
        .ok()
        .and_then(|(_, st)| st.instance(target.id()).cloned())
        .unwrap_or_default();
    let own_budget = opts.memory.is_some()
        || opts.cpus.is_some()
        || known.memory.is_some()
        || known.cpus.is_some();
    let budget = crate::config::Budget {
        memory: opts.memory.or(known.memory).or(config.budget.memory),
        cpus: opts.cpus.or(known.cpus).or(config.budget.cpus),
    };
    let subnets = match &config.networks {
        Some(plan) => crate::overrides::subnets(
            plan,
            target.inst.entry.slot,
            &crate::overrides::networks_needing_subnets(&stack),
        )?,
        None => Vec::new(),
    };
    let subnet_taken = if subnets.is_empty() {
        None
    } else {
        crate::engine::Engine::connect()
            .ok()
            .and_then(|e| e.networks(&crate::engine::Filters::new()).ok())
            .and_then(|nets| crate::overrides::taken_subnet(&subnets, target.id(), &nets))
            .map(|e| e.to_string())
    };
    let overrides = crate::overrides::Overrides {
        subnets,
        limits: crate::overrides::limits(&budget, &stack),
    };
    Ok(UpPlan {
        overrides,
        budget,
        own_budget,
        subnet_taken,
        max_concurrent: config.max_concurrent_ups,
        new_ports,
        ports,
        conflicts,
        missing_networks,
        missing_volumes,
        externals_unknown,
        stale_volumes,
        missing_binds,
        thin_engine,
        bind_sources,
        secrets,
        compose_args,
        checks,
        dropped_checks,
        timeout: opts
            .timeout
            .unwrap_or(Duration::from_secs(config.gate_timeout)),
        wait: !opts.no_wait,
    })
}

/// The gate for `stack`: the configured checks whose service the compose file has
/// (the others are dropped, with why); when none is configured, or none is left, the
/// gate comes from the compose file: every service with a healthcheck becomes healthy,
/// every one-shot job exits 0, every other service publishing a TCP port accepts a
/// connection on it.
pub fn gate_checks(
    config: &Config,
    env: &BTreeMap<String, String>,
    stack: &Stack,
) -> Result<(Vec<Check>, Vec<Dropped>)> {
    let mut checks = Vec::new();
    let mut dropped = Vec::new();
    for spec in &config.gate_checks {
        if let Some(service) = &spec.service
            && !stack.has_service(service)
        {
            dropped.push((
                spec.name.clone(),
                format!("the compose file has no service `{service}`"),
            ));
            continue;
        }
        let port = env
            .get(&spec.port)
            .and_then(|v| v.parse::<u16>().ok())
            .ok_or_else(|| LifecycleError::CheckPort {
                check: spec.name.clone(),
                key: spec.port.clone(),
            })?;
        // A dependency on a dropped check is dropped with it.
        let mut check = Check::from_spec(spec, port);
        check
            .after
            .retain(|d| !dropped.iter().any(|(name, _)| name == d));
        checks.push(check);
    }
    if checks.is_empty() {
        checks = compose_gate(stack);
    }
    Ok((checks, dropped))
}

/// A configured check not run, and why (its service is not in the compose file).
pub type Dropped = (String, String);

/// The gate a compose file implies (see [`gate_checks`]).
pub fn compose_gate(stack: &Stack) -> Vec<Check> {
    let jobs: Vec<String> = stack
        .model
        .one_shot_jobs()
        .into_iter()
        .map(|s| s.name.clone())
        .collect();
    let mut checks = Vec::new();
    for service in stack.model.active_services(&stack.profiles) {
        let name = &service.name;
        let probe = if jobs.contains(name) {
            Probe::Completed {
                service: name.clone(),
            }
        } else if service.healthcheck.as_ref().is_some_and(|h| !h.disabled) {
            Probe::Healthy {
                service: name.clone(),
            }
        } else if let Some(port) = stack
            .published()
            .into_iter()
            .find(|p| &p.service == name && p.protocol == "tcp")
        {
            Probe::Tcp { port: port.port }
        } else {
            continue;
        };
        let label = match &probe {
            Probe::Completed { .. } => format!("{name} completed"),
            Probe::Healthy { .. } => format!("{name} healthy"),
            Probe::Tcp { port } => format!("{name} on {port}"),
            Probe::Http { .. } => name.clone(),
        };
        checks.push(Check {
            name: label,
            after: Vec::new(),
            service: Some(name.clone()),
            probe,
        });
    }
    checks
}

/// Every published port must be this instance's alone: no other registered instance
/// may have it in its env file (a hand edit or a `kinfra.toml` change can make two
/// instances share one even while only one of them runs).
fn check_ports_not_shared(config: &Config, target: &Target, ports: &[SlotPort]) -> Result<()> {
    for other in target.registry.all() {
        if other.instance_id == target.id() {
            continue;
        }
        let Ok(env) = crate::envfile::EnvFile::load(&other.path().join(&config.env_file)) else {
            continue;
        };
        for p in ports {
            let hit = env.vars.iter().find(|(k, v)| {
                !config::RESERVED_KEYS.contains(&k.as_str()) && v.value == p.port.to_string()
            });
            if let Some((key, _)) = hit {
                return Err(StackError::Shared {
                    port: p.port,
                    key: p.key.clone(),
                    why: format!("also `{key}` of instance `{}`", other.instance_id),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// What Docker holds under this instance's project name that is not this instance's:
/// containers another checkout started, volumes older than the instance (an earlier
/// instance's data: ktrdr's "database auth failures on slot reuse"). Docker
/// unreachable: none known (compose will say so).
fn stale_volumes(target: &Target) -> Vec<String> {
    let adopted = adopted_volumes(&target.ctx.config, target.id());
    crate::docker::project_resources(target.id())
        .map(|res| res.foreign_except(&target.inst.root, &target.inst.entry.created_at, &adopted))
        .unwrap_or_default()
}

/// The volumes `id` adopted from an earlier instance (`local-prod create` after
/// `local-prod destroy --keep-volumes`).
pub fn adopted_volumes(config: &Config, id: &str) -> Vec<String> {
    crate::registry::load_with_state(&config.registry_paths())
        .ok()
        .and_then(|(_, st)| Some(st.instance(id)?.adopted_volumes.clone()))
        .unwrap_or_default()
}

/// External networks and volumes the compose file needs that the engine lacks.
fn missing_externals(stack: &Stack) -> (Vec<String>, Vec<String>, Option<String>) {
    let networks = stack.model.external_networks();
    let volumes = stack.model.external_volumes();
    if networks.is_empty() && volumes.is_empty() {
        return (Vec::new(), Vec::new(), None);
    }
    let engine = match crate::engine::Engine::connect() {
        Ok(e) => e,
        Err(e) => return (Vec::new(), Vec::new(), Some(e.to_string())),
    };
    let mut missing_n = Vec::new();
    for n in &networks {
        match engine.networks(&crate::engine::Filters::new().name(&n.name)) {
            Ok(list) if list.iter().any(|x| x.name == n.name) => {}
            Ok(_) => missing_n.push(n.name.clone()),
            Err(e) => return (Vec::new(), Vec::new(), Some(e.to_string())),
        }
    }
    let mut missing_v = Vec::new();
    for v in &volumes {
        match engine.volumes(&crate::engine::Filters::new().name(&v.name)) {
            Ok(list) if list.iter().any(|x| x.name == v.name) => {}
            Ok(_) => missing_v.push(v.name.clone()),
            Err(e) => return (Vec::new(), Vec::new(), Some(e.to_string())),
        }
    }
    (missing_n, missing_v, None)
}

impl UpPlan {
    pub fn describe(&self, target: &Target) -> Vec<String> {
        let mut lines = vec![format!(
            "start {} `{}` at `{}`",
            target.inst.kind,
            target.id(),
            target.inst.root.display()
        )];
        for (k, v) in &self.new_ports {
            lines.push(format!(
                "  add `{k}={v}` to the env file (a new port variable)"
            ));
        }
        lines.push(format!(
            "  check ports free: {}",
            self.ports
                .iter()
                .map(|p| format!("{}={}", p.key, p.port))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        for c in &self.conflicts {
            lines.push(format!("    would refuse: {c}"));
        }
        for n in &self.missing_networks {
            lines.push(format!(
                "    would refuse: external network `{n}` does not exist"
            ));
        }
        for v in &self.missing_volumes {
            lines.push(format!(
                "    would refuse: external volume `{v}` does not exist"
            ));
        }
        for (services, path) in &self.missing_binds {
            lines.push(format!(
                "  warning: `{}` does not exist (mounted by {services})",
                path.display()
            ));
        }
        for sn in &self.overrides.subnets {
            lines.push(format!("  network `{}` on subnet {}", sn.network, sn.cidr));
        }
        if let Some(t) = &self.subnet_taken {
            lines.push(format!("    would refuse: {t}"));
        }
        if self.budget.memory.is_some() || self.budget.cpus.is_some() {
            lines.push(format!(
                "  budget{}: {}{} shared by {} service(s)",
                if self.own_budget {
                    " (this instance's)"
                } else {
                    ""
                },
                self.budget
                    .memory
                    .map(|m| format!("{} memory", crate::rescue::human_size(m)))
                    .unwrap_or_default(),
                self.budget
                    .cpus
                    .map(|c| format!(" {c} CPUs"))
                    .unwrap_or_default(),
                self.overrides.limits.len()
            ));
        }
        if self.max_concurrent > 0 {
            lines.push(format!(
                "  wait for a place among {} concurrent `up`s",
                self.max_concurrent
            ));
        }
        if !self.secrets.is_empty() {
            lines.push(format!(
                "  fetch secrets from 1Password ({}; child environment only)",
                self.secrets
                    .iter()
                    .map(|r| format!("`{}`", r.item))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        lines.push(format!(
            "  `{}`",
            target
                .project
                .command(target.flavor, &self.arg_refs())
                .display()
        ));
        if self.wait {
            lines.push(format!(
                "  wait up to {}s for: {}",
                self.timeout.as_secs(),
                self.checks
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for (name, why) in &self.dropped_checks {
            lines.push(format!("  skip check `{name}`: {why}"));
        }
        lines
    }

    fn arg_refs(&self) -> Vec<&str> {
        self.compose_args.iter().map(String::as_str).collect()
    }
}

/// What `up` found when it finished.
pub struct UpOutcome {
    /// `None` with `--no-wait`.
    pub gate: Option<gate::Report>,
    pub started: Instant,
}

/// Run `plan`: refuse busy ports and missing external resources, add new automatic
/// ports to the env file, fetch secrets, `compose up -d`, then the gate. A gate
/// failure is returned as an error after its details went to the reporter.
pub fn execute_up(
    config: &Config,
    target: &mut Target,
    plan: &UpPlan,
    reporter: &dyn Reporter,
) -> Result<UpOutcome> {
    let started = Instant::now();
    if !plan.conflicts.is_empty() {
        return Err(LifecycleError::PortsBusy(plan.conflicts.clone()).into());
    }
    if !plan.missing_networks.is_empty() || !plan.missing_volumes.is_empty() {
        return Err(LifecycleError::MissingExternal {
            networks: plan.missing_networks.clone(),
            volumes: plan.missing_volumes.clone(),
        }
        .into());
    }
    if let Some(t) = &plan.subnet_taken {
        return Err(LifecycleError::SubnetTaken(t.clone()).into());
    }
    if !plan.stale_volumes.is_empty() {
        return Err(LifecycleError::StaleVolumes {
            id: target.id().to_string(),
            volumes: plan.stale_volumes.clone(),
        }
        .into());
    }
    if let Some(addr) = &plan.thin_engine {
        let missing = crate::thin::missing_on_engine(addr, &plan.bind_sources)?;
        if !missing.is_empty() {
            return Err(crate::thin::ThinError::MissingOnEngine {
                engine: addr.clone(),
                missing,
            }
            .into());
        }
        reporter.warn(&format!(
            "the Docker engine at `{addr}` is on another machine: ports published on 127.0.0.1 are that machine's and will not be reachable from here"
        ));
    }
    if let Some(why) = &plan.externals_unknown {
        reporter.warn(&format!(
            "could not check the compose file's external networks and volumes: {why}"
        ));
    }
    for (services, path) in &plan.missing_binds {
        reporter.warn(&format!(
            "`{}` does not exist (mounted by {services}): Docker will create it empty",
            path.display()
        ));
    }
    for (name, why) in &plan.dropped_checks {
        if config.gate_checks_builtin {
            reporter.verbose(&format!("gate check `{name}` skipped: {why}"));
        } else {
            reporter.warn(&format!("gate check `{name}` skipped: {why}"));
        }
    }
    if !plan.new_ports.is_empty() {
        add_env_vars(config, target, &plan.new_ports)?;
        for (k, v) in &plan.new_ports {
            reporter.note(&format!(
                "`{k}` is a new port variable of the compose file: assigned {v} (added to `{}`)",
                config.env_file
            ));
        }
    }
    // Secrets go only into the child's environment.
    if !plan.secrets.is_empty() {
        match secrets::fetch(&plan.secrets, Duration::from_secs(config.secrets_timeout)) {
            Ok(fetched) => {
                reporter.verbose(&format!("{} secret(s) loaded", fetched.values.len()));
                for (item, label) in &fetched.missing {
                    reporter.warn(&format!(
                        "1Password item `{item}` has no concealed field `{label}`; its default applies"
                    ));
                }
                target.project.env.extend(fetched.values);
            }
            Err(e) if target.inst.is_local_prod() => {
                return Err(LifecycleError::Secrets(e).into());
            }
            Err(e) => reporter.warn(&format!("{e}; starting with insecure defaults")),
        }
    }
    // The override file (subnets, budget) goes after the project's own files.
    let over = crate::overrides::save(&config.state_dir, target.id(), &plan.overrides)?;
    target
        .project
        .files
        .retain(|f| !f.starts_with(config.state_dir.join("overrides")));
    if let Some(path) = over {
        target.project.files.push(path);
    }
    if plan.own_budget {
        remember_budget(config, target.id(), plan.budget, reporter);
    }
    // A place among the concurrent `up`s, held until the gate is done.
    let _place = crate::upqueue::take_place(config, target.id(), plan.max_concurrent, reporter)?;
    reporter.note(&format!(
        "starting `{}` with {}",
        target.id(),
        target.flavor.describe()
    ));
    target
        .compose_streamed(&plan.arg_refs(), reporter)
        .map_err(explain_pool_exhaustion)?;
    mark_started(config, target.id(), reporter);
    if !plan.wait {
        return Ok(UpOutcome {
            gate: None,
            started,
        });
    }
    reporter.note(&format!(
        "waiting for {} check(s) (timeout {}s)",
        plan.checks.len(),
        plan.timeout.as_secs()
    ));
    let id = target.id().to_string();
    let containers = crate::status::ProjectWatch::new(&id);
    let report = gate::run(plan.checks.clone(), &containers, plan.timeout, reporter);
    if report.passed() {
        return Ok(UpOutcome {
            gate: Some(report),
            started,
        });
    }
    report_gate_failure(target, &report, reporter);
    Err(match report.ending {
        gate::Ending::Interrupted => LifecycleError::Interrupted { id },
        gate::Ending::ContainerFailed => LifecycleError::GateFailed {
            id,
            why: format!(
                "a container failed {:.1}s into the gate",
                report.elapsed.as_secs_f64()
            ),
        },
        gate::Ending::TimedOut
            if report
                .checks
                .iter()
                .all(|(_, s)| !matches!(s, CheckState::Trying { .. } | CheckState::Blocked))
                && report.elapsed < plan.timeout =>
        {
            LifecycleError::GateFailed {
                id,
                why: "a check failed".into(),
            }
        }
        _ => LifecycleError::GateTimedOut {
            id,
            timeout: plan.timeout,
        },
    }
    .into())
}

/// A compose failure because the daemon ran out of address pools says so, with the fix.
fn explain_pool_exhaustion(e: crate::error::Error) -> crate::error::Error {
    if e.message.contains("non-overlapping IPv4 address pool")
        || e.message.contains("could not find an available")
    {
        e.with_hint(
            "the Docker daemon ran out of network address pools: enable `networks` in kinfra.toml (fixed subnets per slot), or give the daemon more `default-address-pools`",
        )
    } else {
        e
    }
}

/// Keep this instance's own budget in kinfra's state file for the next `up`s.
fn remember_budget(
    config: &Config,
    id: &str,
    budget: crate::config::Budget,
    reporter: &dyn Reporter,
) {
    let res = crate::registry::update_with_state(
        &config.registry_paths(),
        reporter,
        |reg, state| -> Result<(), crate::registry::RegistryError> {
            if reg.contains(id) {
                let mine = state.instance_mut(id);
                mine.memory = budget.memory;
                mine.cpus = budget.cpus;
            }
            Ok(())
        },
    );
    if let Err(e) = res {
        reporter.warn(&format!("could not keep the budget of `{id}`: {e}"));
    }
}

/// Remember that `up` started the instance (so `list` can tell "never started" from
/// "stopped"); only a note is lost if this fails.
fn mark_started(config: &Config, id: &str, reporter: &dyn Reporter) {
    let now = crate::timefmt::now_iso();
    let res = crate::registry::update_with_state(
        &config.registry_paths(),
        reporter,
        |reg, state| -> Result<(), crate::registry::RegistryError> {
            if reg.contains(id) {
                let mine = state.instance_mut(id);
                mine.last_up = Some(now.clone());
                mine.last_touched = Some(now.clone());
                mine.stopped_by_reap = None;
                mine.idle_since = None;
                // The services a killed `snapshot create` stopped are started again.
                if mine
                    .operation
                    .as_ref()
                    .is_some_and(|op| op.name == crate::snapshot::STOPPED_FOR_SNAPSHOT)
                {
                    mine.operation = None;
                }
            }
            Ok(())
        },
    );
    if let Err(e) = res {
        reporter.verbose(&format!("could not record the start of `{id}`: {e}"));
    }
}

/// Add keys to the instance's env file, keeping everything it holds.
fn add_env_vars(config: &Config, target: &mut Target, new: &[(String, u16)]) -> Result<()> {
    let mut vars = target.inst.env.to_map();
    for (k, v) in new {
        vars.insert(k.clone(), v.to_string());
        target.project.env.insert(k.clone(), v.to_string());
    }
    let path = target.inst.root.join(&config.env_file);
    crate::envfile::save(&path, &vars)
        .map_err(|source| crate::fsutil::fs_err("write", &path)(source))?;
    target.inst.env = crate::envfile::EnvFile::load(&path)?;
    Ok(())
}

/// `wait`: block until the instance's gate passes (exit 0), its deadline passes
/// (timed out), a service fails (gate failed); an instance with nothing running is
/// reported at once (not running).
pub fn wait(
    target: &Target,
    timeout: Option<Duration>,
    reporter: &dyn Reporter,
) -> Result<gate::Report> {
    let config = &target.ctx.config;
    let containers = target.containers()?;
    if !containers.iter().any(|c| c.is_running()) {
        return Err(LifecycleError::NotRunning {
            id: target.id().to_string(),
        }
        .into());
    }
    let env = target.inst.env.to_map();
    let stack = load_stack(config, target, &env)?;
    let (checks, dropped) = gate_checks(config, &env, &stack)?;
    for (name, why) in &dropped {
        reporter.verbose(&format!("gate check `{name}` skipped: {why}"));
    }
    let timeout = timeout.unwrap_or(Duration::from_secs(config.gate_timeout));
    let watch = crate::status::ProjectWatch::new(target.id());
    let report = gate::run(checks, &watch, timeout, reporter);
    if report.passed() {
        return Ok(report);
    }
    report_gate_failure(target, &report, reporter);
    let id = target.id().to_string();
    Err(match report.ending {
        gate::Ending::Interrupted => LifecycleError::Interrupted { id },
        gate::Ending::ContainerFailed => LifecycleError::GateFailed {
            id,
            why: format!("a container failed {:.1}s in", report.elapsed.as_secs_f64()),
        },
        _ => LifecycleError::GateTimedOut { id, timeout },
    }
    .into())
}

/// The failing checks with their last error, and the last log lines of the services
/// behind them.
fn report_gate_failure(target: &Target, report: &gate::Report, reporter: &dyn Reporter) {
    let mut services: Vec<String> = Vec::new();
    for name in crate::inspect::oom_killed(&report.failed_containers) {
        reporter.warn(&format!(
            "`{name}` was killed for memory: the instance's budget is too small for it (`up --memory`)"
        ));
    }
    for c in &report.failed_containers {
        let health = c.health.map(|h| format!(", {h}")).unwrap_or_default();
        reporter.warn(&format!(
            "service `{}` ({}) {}{health}",
            c.service, c.name, c.status
        ));
        if !services.contains(&c.service) {
            services.push(c.service.clone());
        }
    }
    for (check, state) in &report.checks {
        if let CheckState::Failed { last_error } = state {
            reporter.warn(&format!("check `{}` failed: {last_error}", check.name));
            if let Some(s) = check.service.as_ref().filter(|s| !services.contains(s)) {
                services.push(s.clone());
            }
        }
    }
    for service in &services {
        let logs = target
            .project
            .command(
                target.flavor,
                &["logs", "--no-color", "--tail", "20", service],
            )
            .output();
        if let Ok(out) = logs {
            reporter.note(&format!("--- last log lines of `{service}` ---"));
            for line in out.stdout.lines().chain(out.stderr.lines()) {
                reporter.note(line);
            }
        }
    }
}

/// `down`: stop the containers (with the profile for local-prod, so profile-only
/// services stop too), optionally removing the volumes.
pub fn down(
    config: &Config,
    target: &Target,
    volumes: bool,
    reporter: &dyn Reporter,
) -> Result<()> {
    target.compose_streamed(&down_args(volumes), reporter)?;
    touch(config, target.id(), reporter);
    Ok(())
}

/// Remember that a kinfra command just used the instance (`reap` leaves it alone for
/// a while); losing this only costs a note.
pub fn touch(config: &Config, id: &str, reporter: &dyn Reporter) {
    let now = crate::timefmt::now_iso();
    let _ = crate::registry::update_with_state(
        &config.registry_paths(),
        reporter,
        |reg, state| -> Result<(), crate::registry::RegistryError> {
            if reg.contains(id) {
                state.instance_mut(id).last_touched = Some(now.clone());
            }
            Ok(())
        },
    );
}

pub fn down_args(volumes: bool) -> Vec<&'static str> {
    let mut sub = vec!["down", "--remove-orphans"];
    if volumes {
        sub.push("--volumes");
    }
    sub
}

/// Whether the compose file of `found` has a service called `name` (for telling a
/// SERVICE argument from an instance NAME).
pub fn has_service(found: &instance::Found, name: &str) -> bool {
    let config = &found.ctx.config;
    let Ok(project) = compose_project(config, &found.inst) else {
        return false;
    };
    let env = found.inst.env.to_map();
    load_stack_files(config, &found.inst, &project.files, &env)
        .is_ok_and(|st| st.model.services.contains_key(name))
}

fn load_stack_files(
    config: &Config,
    inst: &Instance,
    files: &[PathBuf],
    env: &BTreeMap<String, String>,
) -> Result<Stack> {
    let profiles = inst
        .is_local_prod()
        .then(|| config.local_prod_profile.clone())
        .into_iter()
        .collect();
    Ok(Stack::load(files, &lookup_with(env), profiles)?)
}

/// `logs`: refuse when the instance has no containers (or not that service).
pub fn check_logs(target: &Target, service: Option<&str>) -> Result<()> {
    let containers = target.containers()?;
    if containers.is_empty() {
        return Err(LifecycleError::NotRunning {
            id: target.id().to_string(),
        }
        .into());
    }
    if let Some(service) = service
        && !containers.iter().any(|c| c.service == service)
    {
        return Err(no_such_service(target, &containers, service).into());
    }
    Ok(())
}

/// `shell`: the service must have a running container.
pub fn check_shell(target: &Target, service: &str) -> Result<()> {
    let containers = target.containers()?;
    let mine: Vec<&Container> = containers.iter().filter(|c| c.service == service).collect();
    if mine.is_empty() {
        if containers.is_empty() {
            return Err(LifecycleError::NotRunning {
                id: target.id().to_string(),
            }
            .into());
        }
        return Err(no_such_service(target, &containers, service).into());
    }
    if !mine.iter().any(|c| c.is_running()) {
        return Err(LifecycleError::ServiceNotRunning {
            id: target.id().to_string(),
            service: service.to_string(),
            state: mine[0].status.clone(),
        }
        .into());
    }
    Ok(())
}

fn no_such_service(target: &Target, containers: &[Container], service: &str) -> LifecycleError {
    let mut known: Vec<String> = containers.iter().map(|c| c.service.clone()).collect();
    known.sort();
    known.dedup();
    LifecycleError::NoSuchService {
        id: target.id().to_string(),
        service: service.to_string(),
        known,
    }
}
