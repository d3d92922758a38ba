//! The tools' work, synchronous: each resolves the scoped instance afresh, calls the
//! domain functions the commands use, and answers with the JSON of the matching
//! `--json` output (or a typed report of its own, `schema_version` 1) and a text
//! rendering. Progress goes to stderr through the terminal reporter.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::Scope;
use crate::commands;
use crate::error::Result;
use crate::lifecycle::{self, UpOptions};
use crate::output::Term;
use crate::process::TimeoutKind;

/// A tool's answer: structured content and its text rendering.
#[derive(Debug, Clone)]
pub struct Answer {
    pub json: Value,
    pub text: String,
}

fn answer<T: Serialize>(report: &T, text: String) -> Result<Answer> {
    let json = serde_json::to_value(report)
        .map_err(|e| crate::error::Error::failure(format!("cannot render JSON: {e}")))?;
    Ok(Answer { json, text })
}

/// The instance's URLs, one per port key.
#[derive(Debug, Serialize)]
pub struct UrlsReport {
    pub schema_version: u32,
    pub instance_id: String,
    pub urls: BTreeMap<String, String>,
}

/// The instance's env file.
#[derive(Debug, Serialize)]
pub struct EnvReport {
    pub schema_version: u32,
    pub instance_id: String,
    pub env: BTreeMap<String, String>,
}

/// The last lines of the instance's logs.
#[derive(Debug, Serialize)]
pub struct LogsReport {
    pub schema_version: u32,
    pub instance_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub tail: u32,
    pub lines: Vec<String>,
}

/// What a state-changing tool did.
#[derive(Debug, Serialize)]
pub struct ActionReport {
    pub schema_version: u32,
    pub instance_id: String,
    /// `up`, `down`, `restart`, `wait`.
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Seconds the startability gate took (`up`, `wait`); absent when it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate_seconds: Option<f64>,
    /// The instance's URLs after `up`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub urls: BTreeMap<String, String>,
}

/// A command run in a service container.
#[derive(Debug, Serialize)]
pub struct ExecReport {
    pub schema_version: u32,
    pub instance_id: String,
    pub service: String,
    pub command: Vec<String>,
    pub exit_code: u8,
    pub stdout: String,
    pub stderr: String,
}

pub fn status(scope: &Scope) -> Result<Answer> {
    let found = scope.found()?;
    let report = crate::inspect::status(&found.ctx.config, &found.inst)?;
    let mut lines = vec![format!(
        "{} ({}, slot {}) — {}",
        report.instance_id, report.kind, report.slot, report.state
    )];
    if let Some(e) = &report.docker_error {
        lines.push(format!("cannot read container state: {e}"));
    }
    for c in &report.containers {
        let health = c.health.map(|h| format!(", {h}")).unwrap_or_default();
        lines.push(format!(
            "  {}: {}{health} ({})",
            c.service, c.state, c.status
        ));
    }
    for c in &report.checks {
        let mark = if c.passed { "✓" } else { "✗" };
        lines.push(format!("{mark} {}: {}", c.name, c.detail));
    }
    for (label, url) in &report.urls {
        lines.push(format!("{label}: {url}"));
    }
    answer(&report, lines.join("\n"))
}

pub fn urls(scope: &Scope) -> Result<Answer> {
    let found = scope.found()?;
    let config = &found.ctx.config;
    let urls: BTreeMap<String, String> = lifecycle::instance_ports(config, &found.inst)?
        .iter()
        .map(|p| (p.key.clone(), commands::url_of(config, &p.key, p.port)))
        .collect();
    let text = urls
        .iter()
        .map(|(k, u)| format!("{k}: {u}"))
        .collect::<Vec<_>>()
        .join("\n");
    answer(
        &UrlsReport {
            schema_version: 1,
            instance_id: scope.id.clone(),
            urls,
        },
        text,
    )
}

pub fn env(scope: &Scope) -> Result<Answer> {
    let found = scope.found()?;
    let env = found.inst.env.to_map();
    let text = env
        .iter()
        .map(|(k, v)| commands::env::export_line(k, v))
        .collect::<Vec<_>>()
        .join("\n");
    answer(
        &EnvReport {
            schema_version: 1,
            instance_id: scope.id.clone(),
            env: env.into_iter().collect(),
        },
        text,
    )
}

/// `ports --json` for the instance's slot, with the ports its env file states.
pub fn ports(scope: &Scope) -> Result<Answer> {
    let found = scope.found()?;
    let ports = lifecycle::instance_ports(&found.ctx.config, &found.inst)?;
    let slot = found.inst.entry.slot;
    let text = std::iter::once(format!("slot {slot}"))
        .chain(ports.iter().map(|p| format!("{}: {}", p.key, p.port)))
        .collect::<Vec<_>>()
        .join("\n");
    answer(
        &commands::ports::PortsReport {
            schema_version: 1,
            slots: vec![commands::ports::SlotPorts {
                slot,
                ports: ports.iter().map(|p| (p.key.clone(), p.port)).collect(),
            }],
        },
        text,
    )
}

/// Most lines `logs` returns at once.
pub const MAX_TAIL: u32 = 10_000;

pub fn logs(scope: &Scope, service: Option<&str>, tail: Option<u32>) -> Result<Answer> {
    let tail = tail.unwrap_or(100).clamp(1, MAX_TAIL);
    let target = scope.target()?;
    lifecycle::check_logs(&target, service)?;
    let tail_text = tail.to_string();
    let mut sub = vec!["logs", "--no-color", "--tail", tail_text.as_str()];
    sub.extend(service);
    let out = captured(&target, &sub)?;
    let lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    let text = lines.join("\n");
    answer(
        &LogsReport {
            schema_version: 1,
            instance_id: scope.id.clone(),
            service: service.map(str::to_string),
            tail,
            lines,
        },
        text,
    )
}

/// `compose <sub…>` with its output captured (a non-zero exit is not an error here).
fn captured(target: &lifecycle::Target, sub: &[&str]) -> Result<crate::process::Output> {
    target
        .project
        .command(target.flavor, sub)
        .timeout_kind(TimeoutKind::Compose)
        .output()
        .map_err(|e| {
            lifecycle::LifecycleError::Compose {
                command: format!(
                    "`compose {}`",
                    sub.iter().take(3).copied().collect::<Vec<_>>().join(" ")
                ),
                reason: e.to_string(),
            }
            .into()
        })
}

fn action(scope: &Scope, action: &str, service: Option<&str>) -> ActionReport {
    ActionReport {
        schema_version: 1,
        instance_id: scope.id.clone(),
        action: action.to_string(),
        service: service.map(str::to_string),
        gate_seconds: None,
        urls: BTreeMap::new(),
    }
}

pub fn restart(scope: &Scope, service: &str) -> Result<Answer> {
    scope.writable("restart")?;
    let target = scope.target()?;
    let reporter = Term::new();
    let _lock = target.lock(&target.ctx.config, "mcp restart", &reporter)?;
    lifecycle::check_shell(&target, service)?;
    target.compose_streamed(&["restart", service], &reporter)?;
    lifecycle::touch(&target.ctx.config, target.id(), &reporter);
    answer(
        &action(scope, "restart", Some(service)),
        format!("`{}`: `{service}` restarted", scope.id),
    )
}

pub fn up(scope: &Scope, timeout: Option<u64>) -> Result<Answer> {
    scope.writable("up")?;
    let mut target = scope.target()?;
    let ctx = target.ctx.clone();
    let reporter = Term::new();
    let _lock = target.lock(&ctx.config, "mcp up", &reporter)?;
    let opts = UpOptions {
        timeout: timeout.map(Duration::from_secs),
        ..UpOptions::default()
    };
    let plan = lifecycle::plan_up(&ctx.config, &target, &opts)?;
    let outcome = lifecycle::execute_up(&ctx.config, &mut target, &plan, &reporter)?;
    let mut report = action(scope, "up", None);
    report.gate_seconds = outcome.gate.as_ref().map(|g| g.elapsed.as_secs_f64());
    report.urls = plan
        .ports
        .iter()
        .map(|p| (p.key.clone(), commands::url_of(&ctx.config, &p.key, p.port)))
        .collect();
    let text = format!(
        "`{}` is ready{}",
        scope.id,
        report
            .gate_seconds
            .map(|s| format!(" (gate {s:.2}s)"))
            .unwrap_or_default()
    );
    answer(&report, text)
}

pub fn down(scope: &Scope) -> Result<Answer> {
    scope.writable("down")?;
    let target = scope.target()?;
    let reporter = Term::new();
    let _lock = target.lock(&target.ctx.config, "mcp down", &reporter)?;
    lifecycle::down(&target.ctx.config, &target, false, &reporter)?;
    answer(
        &action(scope, "down", None),
        format!("`{}` stopped", scope.id),
    )
}

pub fn wait(scope: &Scope, timeout: Option<u64>) -> Result<Answer> {
    let target = scope.target()?;
    let report = lifecycle::wait(&target, timeout.map(Duration::from_secs), &Term::new())?;
    let mut out = action(scope, "wait", None);
    out.gate_seconds = Some(report.elapsed.as_secs_f64());
    answer(
        &out,
        format!(
            "`{}` is ready (gate {:.2}s)",
            scope.id,
            report.elapsed.as_secs_f64()
        ),
    )
}

pub fn exec(scope: &Scope, service: &str, command: &[String]) -> Result<Answer> {
    scope.writable("exec")?;
    let target = scope.target()?;
    lifecycle::check_shell(&target, service)?;
    let mut sub = vec!["exec", "-T", service];
    sub.extend(command.iter().map(String::as_str));
    let reporter = Term::new();
    lifecycle::touch(&target.ctx.config, target.id(), &reporter);
    let out = captured(&target, &sub)?;
    let exit_code = lifecycle::exit_code_of(out.status);
    let mut text = out.stdout.clone();
    if !out.stderr.is_empty() {
        text.push_str(&out.stderr);
    }
    if exit_code != 0 {
        text.push_str(&format!("\n(exit code {exit_code})"));
    }
    answer(
        &ExecReport {
            schema_version: 1,
            instance_id: scope.id.clone(),
            service: service.to_string(),
            command: command.to_vec(),
            exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
        },
        text,
    )
}
