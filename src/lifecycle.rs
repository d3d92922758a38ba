//! Running an instance's stack: `up` (port preflight, secrets, `compose up -d`, the
//! startability gate), `down`, and the attached commands `logs` and `shell`. Every
//! compose call names the project and the file, so compose never guesses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::compose::{self, Flavor, Project};
use crate::config::Config;
use crate::context::Ctx;
use crate::docker;
use crate::error::{Diagnostic, Exit, Result};
use crate::gate::{self, Check, CheckState};
use crate::instance::{self, Instance, Kind};
use crate::ports::SlotPort;
use crate::registry::Registry;
use crate::report::Reporter;
use crate::secrets;
use crate::slots::{self, PortConflict};
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
        })
    }
}

/// An instance ready for compose calls: resolved, confirmed by the registry, with its
/// compose project, and Docker and Compose known to answer.
pub struct Target {
    pub registry: Registry,
    pub inst: Instance,
    pub project: Project,
    pub flavor: Flavor,
}

/// Resolve "this instance" of `kind` from the current directory.
pub fn resolve(ctx: &Ctx, kind: Kind) -> Result<Target> {
    let registry = ctx.registry()?;
    let inst = instance::current(ctx, &registry, Some(kind))?;
    let project = compose_project(&ctx.config, &inst)?;
    docker::ensure_available()?;
    let flavor = compose::detect()?;
    Ok(Target {
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
        file,
        profile: inst
            .is_local_prod()
            .then(|| config.local_prod_profile.clone()),
        env: inst.env.to_map(),
    })
}

/// The instance's ports as its env file states them (what compose will publish).
pub fn instance_ports(config: &Config, inst: &Instance) -> Result<Vec<SlotPort>> {
    let mut ports = config
        .ports
        .for_slot(inst.entry.slot)
        .map_err(crate::config::ConfigError::from)?;
    for p in &mut ports {
        p.port = inst.env.require_port(&p.key)?;
    }
    Ok(ports)
}

impl Target {
    pub fn id(&self) -> &str {
        self.inst.id()
    }

    /// `compose <sub…>` with its progress on stderr; a failure names the command.
    pub fn compose_streamed(&self, sub: &[&str], reporter: &dyn Reporter) -> Result<()> {
        let cmd = self.project.command(self.flavor, sub).stdout_to_stderr();
        reporter.verbose(&cmd.display());
        cmd.run_streamed().map_err(|e| {
            LifecycleError::Compose {
                command: format!("`compose {}`", sub.join(" ")),
                reason: e.to_string(),
            }
            .into()
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
}

/// What `up` will do, worked out before anything starts.
pub struct UpPlan {
    pub ports: Vec<SlotPort>,
    /// Busy ports (held by something other than this instance).
    pub conflicts: Vec<PortConflict>,
    pub fetch_secrets: bool,
    pub compose_args: Vec<String>,
    pub checks: Vec<Check>,
    pub timeout: Duration,
    pub wait: bool,
}

pub fn plan_up(config: &Config, target: &Target, opts: &UpOptions) -> Result<UpPlan> {
    let ports = instance_ports(config, &target.inst)?;
    let conflicts = slots::port_conflicts(&ports, Some(target.id()), &target.registry);
    let mut compose_args: Vec<String> = vec!["up".into(), "-d".into(), "--remove-orphans".into()];
    if opts.build {
        compose_args.push("--build".into());
    }
    let mut checks = Vec::new();
    for spec in &config.gate_checks {
        checks.push(Check {
            port: target.inst.env.require_port(&spec.port)?,
            spec: spec.clone(),
        });
    }
    Ok(UpPlan {
        ports,
        conflicts,
        fetch_secrets: !config.secrets.is_empty() && !opts.no_secrets,
        compose_args,
        checks,
        timeout: opts
            .timeout
            .unwrap_or(Duration::from_secs(config.gate_timeout)),
        wait: !opts.no_wait,
    })
}

impl UpPlan {
    pub fn describe(&self, target: &Target) -> Vec<String> {
        let mut lines = vec![format!(
            "start {} `{}` at `{}`",
            target.inst.kind,
            target.id(),
            target.inst.root.display()
        )];
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
        if self.fetch_secrets {
            lines.push("  fetch secrets from 1Password (child environment only)".into());
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
                    .map(|c| c.spec.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
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

/// Run `plan`: refuse busy ports, fetch secrets, `compose up -d`, then the gate. A gate
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
    // Secrets go only into the child's environment.
    if plan.fetch_secrets {
        match secrets::fetch(&config.secrets, Duration::from_secs(config.secrets_timeout)) {
            Ok(values) => {
                reporter.verbose(&format!("{} secret(s) loaded", values.len()));
                target.project.env.extend(values);
            }
            Err(e) if target.inst.is_local_prod() => {
                return Err(LifecycleError::Secrets(e).into());
            }
            Err(e) => reporter.warn(&format!("{e}; starting with insecure defaults")),
        }
    }
    reporter.note(&format!(
        "starting `{}` with {}",
        target.id(),
        target.flavor.describe()
    ));
    target.compose_streamed(&plan.arg_refs(), reporter)?;
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
    let report = gate::run(plan.checks.clone(), target.id(), plan.timeout, reporter);
    if report.passed() {
        return Ok(UpOutcome {
            gate: Some(report),
            started,
        });
    }
    report_gate_failure(target, &report, reporter);
    let id = target.id().to_string();
    Err(if report.failed_containers.is_empty() {
        LifecycleError::GateTimedOut {
            id,
            timeout: plan.timeout,
        }
    } else {
        LifecycleError::GateFailed {
            id,
            why: format!(
                "a container failed {:.1}s into the gate",
                report.elapsed.as_secs_f64()
            ),
        }
    }
    .into())
}

/// The failing checks with their last error, and the last log lines of the services
/// behind them.
fn report_gate_failure(target: &Target, report: &gate::Report, reporter: &dyn Reporter) {
    let mut services: Vec<String> = Vec::new();
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
            reporter.warn(&format!("check `{}` failed: {last_error}", check.spec.name));
            if let Some(s) = check
                .spec
                .service
                .as_ref()
                .filter(|s| !services.contains(s))
            {
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
pub fn down(target: &Target, volumes: bool, reporter: &dyn Reporter) -> Result<()> {
    target.compose_streamed(&down_args(volumes), reporter)
}

pub fn down_args(volumes: bool) -> Vec<&'static str> {
    let mut sub = vec!["down", "--remove-orphans"];
    if volumes {
        sub.push("--volumes");
    }
    sub
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
