//! `kinfra sandbox up` / `kinfra local-prod up` — port preflight, secrets,
//! `compose up -d`, then the startability gate.

use std::time::{Duration, Instant};

use crate::context::{Ctx, Want};
use crate::error::{Error, Exit, Result};
use crate::gate::{self, Check, CheckState};
use crate::output;
use crate::secrets;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Return once the containers are started, without the gate.
    #[arg(long)]
    pub no_wait: bool,
    /// Build images before starting.
    #[arg(long)]
    pub build: bool,
    /// Seconds the gate may take (default: `gate.timeout`, 120 for ktrdr).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Do not fetch 1Password secrets (insecure defaults apply).
    #[arg(long)]
    pub no_secrets: bool,
}

pub fn run(ctx: &Ctx, args: &Args, want: Want) -> Result<u8> {
    let started = Instant::now();
    let config = &ctx.config;
    let mut running = super::resolve_running(ctx, want)?;
    let id = running.inst.entry.instance_id.clone();
    let (inst, registry, flavor) = (&running.inst, &running.registry, running.flavor);

    // Port preflight: a port held by this instance's own containers is not a conflict.
    let ports = super::instance_ports(config, inst)?;
    let conflicts = super::port_conflicts(&ports, Some(&id), registry);
    if !conflicts.is_empty() {
        return Err(Error::failure(format!("port conflict: {}", conflicts.join("; ")))
            .with_exit(Exit::Conflict)
            .hint("stop what holds the port (`kinfra sandbox list` shows running instances), then retry"));
    }

    // Secrets go only into the child's environment.
    let mut secret_env = std::collections::BTreeMap::new();
    if !config.secrets.is_empty() && !args.no_secrets {
        match secrets::fetch(&config.secrets, Duration::from_secs(config.secrets_timeout)) {
            Ok(values) => {
                output::verbose(&format!("{} secret(s) loaded", values.len()));
                secret_env = values;
            }
            Err(e) if inst.is_local_prod => {
                return Err(Error::failure(format!("cannot load secrets for local-prod: {e}"))
                    .hint("sign in to 1Password (`op signin`), or pass --no-secrets to use insecure defaults"));
            }
            Err(e) => output::warn(&format!("{e}; starting with insecure defaults")),
        }
    }

    running.project.env.extend(secret_env);

    output::note(&format!("starting `{id}` with {}", flavor.describe()));
    let mut sub = vec!["up", "-d", "--remove-orphans"];
    if args.build {
        sub.push("--build");
    }
    running
        .compose_streamed(&sub)
        .map_err(|e| e.hint("the compose output above says why"))?;
    if args.no_wait {
        output::done(&format!("`{id}` started (gate skipped: --no-wait)"));
        return Ok(0);
    }

    let timeout = Duration::from_secs(args.timeout.unwrap_or(config.gate_timeout));
    let mut checks = Vec::new();
    for spec in &config.gate_checks {
        checks.push(Check {
            port: inst.env.require_port(&spec.port)?,
            spec: spec.clone(),
        });
    }
    output::note(&format!(
        "waiting for {} check(s) (timeout {}s)",
        checks.len(),
        timeout.as_secs()
    ));
    let report = gate::run(checks, &id, timeout);
    if report.passed() {
        output::done(&format!(
            "`{id}` is ready (gate {:.2}s, total {:.2}s)",
            report.elapsed.as_secs_f64(),
            started.elapsed().as_secs_f64()
        ));
        for (label, url) in crate::layout::urls(config, &ports) {
            output::note(&format!("  {:<12}{url}", format!("{label}:")));
        }
        return Ok(0);
    }

    // Failure: what failed, why, and the failing services' last log lines.
    let mut services: Vec<String> = Vec::new();
    for c in &report.failed_containers {
        let health = c
            .health
            .as_deref()
            .map(|h| format!(", {h}"))
            .unwrap_or_default();
        output::error(&format!(
            "service `{}` ({}) {}{health}",
            c.service, c.name, c.status
        ));
        if !services.contains(&c.service) {
            services.push(c.service.clone());
        }
    }
    for (check, state) in &report.checks {
        if let CheckState::Failed { last_error } = state {
            output::error(&format!("check `{}` failed: {last_error}", check.spec.name));
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
        let logs = running
            .project
            .command(flavor, &["logs", "--no-color", "--tail", "20", service])
            .output();
        if let Ok(out) = logs {
            output::note(&format!("--- last log lines of `{service}` ---"));
            for line in out.stdout.lines().chain(out.stderr.lines()) {
                output::note(line);
            }
        }
    }
    let why = if report.failed_containers.is_empty() {
        format!("after {:.1}s", report.elapsed.as_secs_f64())
    } else {
        format!(
            "a container failed {:.1}s into the gate",
            report.elapsed.as_secs_f64()
        )
    };
    Err(Error::failure(format!("`{id}` did not pass the startability gate ({why})"))
        .with_exit(Exit::GateFailed)
        .hint("the containers were left in place for debugging; `kinfra sandbox logs SERVICE` shows more, `down` stops them"))
}
