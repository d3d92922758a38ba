//! Idle stop (`kinfra reap --idle 2h`): sandboxes whose containers did nothing (no CPU
//! time, no network bytes) and that no kinfra command touched for that long are stopped
//! — never deleted, never local-prod — and `up` wakes them. Activity is judged from the
//! containers' cumulative counters, compared with what the previous `reap` saw (kept in
//! kinfra's state file), so reap is meant to run periodically (e.g. from cron).

use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::engine::{Engine, Filters};
use crate::error::Result;
use crate::registry::{self, Registry};
use crate::report::Reporter;
use crate::state::{Activity, State};

/// One sandbox as reap sees it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Seen {
    pub instance_id: String,
    /// Idle since (the later of the last counter change and the last kinfra command).
    pub idle_since: String,
    pub idle_for_secs: u64,
    /// Over the limit: stopped (or would be, with `--dry-run`).
    pub stop: bool,
    /// Why it is not stopped even though idle: another kinfra command holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// `reap --json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub schema_version: u32,
    pub idle_limit_secs: u64,
    pub dry_run: bool,
    pub instances: Vec<Seen>,
}

/// Look at every running sandbox of the registry; stop those idle for `idle` (unless
/// `dry_run`). Counters seen are recorded either way.
pub fn reap(
    config: &Config,
    idle: Duration,
    dry_run: bool,
    reporter: &dyn Reporter,
) -> Result<Report> {
    let engine = Engine::connect().map_err(crate::docker::DockerError::from)?;
    let paths = config.registry_paths();
    let (registry, _) = registry::load_with_state(&paths)?;
    let now = crate::timefmt::now();
    let now_iso = crate::timefmt::now_iso();
    // Counters of every running sandbox, one engine read per container.
    let mut counters: Vec<(String, Counters)> = Vec::new();
    for e in &registry.instances {
        let running = engine
            .containers(
                &Filters::new()
                    .label_value(crate::docker::PROJECT_LABEL, &e.instance_id)
                    .status("running"),
                false,
            )
            .map_err(crate::docker::DockerError::from)?;
        if running.is_empty() {
            continue;
        }
        let mut sum = Counters::default();
        for c in &running {
            if let Ok(s) = engine.counters(&c.id) {
                sum.cpu_ns = sum.cpu_ns.saturating_add(s.cpu_total_ns);
                sum.net_bytes = sum
                    .net_bytes
                    .saturating_add(s.net_rx_bytes)
                    .saturating_add(s.net_tx_bytes);
            }
        }
        counters.push((e.instance_id.clone(), sum));
    }
    // Record what was seen, and work out who is idle, under the registry lock.
    let seen = registry::update_with_state(&paths, reporter, |reg, state| {
        Ok::<_, crate::error::Error>(judge(reg, state, &counters, &now_iso, now, idle))
    })?
    .value;
    let mut out = Vec::new();
    for mut s in seen {
        if s.stop && !dry_run {
            match stop(config, &registry, &s.instance_id, reporter) {
                Ok(()) => reporter.done(&format!(
                    "stopped `{}` (idle for {})",
                    s.instance_id,
                    crate::rescue::human_duration(Duration::from_secs(s.idle_for_secs))
                )),
                Err(e) => {
                    s.stop = false;
                    s.skipped = Some(e.message);
                }
            }
        }
        out.push(s);
    }
    Ok(Report {
        schema_version: 1,
        idle_limit_secs: idle.as_secs(),
        dry_run,
        instances: out,
    })
}

/// Cumulative counters of an instance's running containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub cpu_ns: u64,
    pub net_bytes: u64,
}

/// Below these rates a stack counts as idle: what its healthchecks cost.
const IDLE_CPU_FRACTION: f64 = 0.02;
const IDLE_NET_BYTES_PER_SEC: f64 = 1024.0;

/// Whether going from `before` (read at `then`) to `now_c` (read at `now`) is activity.
fn active(before: &Activity, now_c: Counters, now: jiff::Timestamp) -> bool {
    let Some(then) = crate::timefmt::parse_iso(&before.sampled_at) else {
        return true;
    };
    let secs = Duration::try_from(now.duration_since(then))
        .unwrap_or_default()
        .as_secs_f64();
    // Containers restarted (counters went down) or read twice at once: activity.
    if secs <= 0.0 || now_c.cpu_ns < before.cpu_ns || now_c.net_bytes < before.net_bytes {
        return true;
    }
    let cpu = (now_c.cpu_ns - before.cpu_ns) as f64 / 1e9 / secs;
    let net = (now_c.net_bytes - before.net_bytes) as f64 / secs;
    cpu > IDLE_CPU_FRACTION || net > IDLE_NET_BYTES_PER_SEC
}

/// Update each running sandbox's activity record and say which are idle for `idle`.
fn judge(
    reg: &Registry,
    state: &mut State,
    counters: &[(String, Counters)],
    now_iso: &str,
    now: jiff::Timestamp,
    idle: Duration,
) -> Vec<Seen> {
    let mut out = Vec::new();
    for (id, c) in counters {
        if !reg.instances.iter().any(|e| &e.instance_id == id) {
            continue;
        }
        let mine = state.instance_mut(id);
        // A second look within a second (a dry run just before) tells nothing new: keep
        // the older sample, so the rate is judged over the longer window.
        let fresh = mine.activity.as_ref().is_none_or(|a| {
            crate::timefmt::parse_iso(&a.sampled_at).is_none_or(|t| {
                Duration::try_from(now.duration_since(t)).unwrap_or_default()
                    >= Duration::from_secs(1)
                    || c.cpu_ns < a.cpu_ns
            })
        });
        if fresh {
            let active_at = match &mine.activity {
                Some(a) if !active(a, *c, now) => a.active_at.clone(),
                _ => now_iso.to_string(),
            };
            mine.activity = Some(Activity {
                cpu_ns: c.cpu_ns,
                net_bytes: c.net_bytes,
                sampled_at: now_iso.to_string(),
                active_at,
            });
        }
        let last_active = mine
            .activity
            .as_ref()
            .and_then(|a| crate::timefmt::parse_iso(&a.active_at));
        let last_touched = mine
            .last_touched
            .as_deref()
            .and_then(crate::timefmt::parse_iso);
        let since = match (last_active, last_touched) {
            (Some(a), Some(t)) => a.max(t),
            (Some(a), None) => a,
            (None, Some(t)) => t,
            (None, None) => now,
        };
        let idle_for = Duration::try_from(now.duration_since(since)).unwrap_or_default();
        if idle_for >= idle {
            mine.idle_since = Some(crate::timefmt::format_timestamp(since));
        }
        out.push(Seen {
            instance_id: id.clone(),
            idle_since: crate::timefmt::format_timestamp(since),
            idle_for_secs: idle_for.as_secs(),
            stop: idle_for >= idle,
            skipped: None,
        });
    }
    out
}

/// `compose down` (volumes kept) under the instance's lock, and the mark `list` shows.
fn stop(config: &Config, registry: &Registry, id: &str, reporter: &dyn Reporter) -> Result<()> {
    let entry = registry
        .sandbox(id)
        .ok_or_else(|| crate::instance::InstanceError::NoSuchName {
            name: id.to_string(),
            known: registry.all().map(|e| e.instance_id.clone()).collect(),
        })?;
    // Another command on it means it is in use: leave it.
    let _lock =
        crate::lock::instance_within(&config.state_dir, id, "reap", Duration::ZERO, reporter)?;
    let root = entry.path().to_owned();
    let env = crate::instance::load_env(config, &root)?;
    let inst = crate::instance::Instance {
        entry: entry.clone(),
        root,
        env,
        kind: crate::instance::Kind::Sandbox,
    };
    let mut project = crate::lifecycle::compose_project(config, &inst)?;
    let over = crate::overrides::path(&config.state_dir, id);
    if over.is_file() {
        project.files.push(over);
    }
    let flavor = crate::compose::detect()?;
    project
        .command(flavor, &["down", "--remove-orphans"])
        .timeout_kind(crate::process::TimeoutKind::Compose)
        .run()
        .map_err(crate::docker::DockerError::from)?;
    let now = crate::timefmt::now_iso();
    registry::update_with_state(&config.registry_paths(), reporter, |reg, state| {
        if reg.contains(id) {
            state.instance_mut(id).stopped_by_reap = Some(now.clone());
        }
        Ok::<_, crate::registry::RegistryError>(())
    })?;
    Ok(())
}

/// `2h`, `90m`, `1d`, `30s`, or seconds.
pub fn parse_idle(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, mult) = match t.chars().last()? {
        's' => (&t[..t.len() - 1], 1),
        'm' => (&t[..t.len() - 1], 60),
        'h' => (&t[..t.len() - 1], 3600),
        'd' => (&t[..t.len() - 1], 86_400),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n.is_finite() && (0.0..=3.65e7).contains(&n))
        .then(|| Duration::from_secs_f64(n * f64::from(mult)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Entry;

    fn reg(ids: &[&str]) -> Registry {
        let mut r = Registry::default();
        for (i, id) in ids.iter().enumerate() {
            r.instances.push(Entry {
                instance_id: (*id).into(),
                slot: i as u32 + 1,
                path: format!("/w/{id}"),
                created_at: String::new(),
                is_worktree: true,
                parent_repo: Some("/w/m".into()),
            });
        }
        r
    }

    fn at(iso: &str) -> jiff::Timestamp {
        crate::timefmt::parse_iso(iso).unwrap()
    }

    #[test]
    fn idle_means_unchanged_counters_and_no_command_for_the_whole_time() {
        let r = reg(&["a", "b"]);
        let mut st = State::default();
        let two_hours = Duration::from_secs(7200);
        let c = |cpu_s: u64, net: u64| Counters {
            cpu_ns: cpu_s * 1_000_000_000,
            net_bytes: net,
        };
        // First look: everything counts as just active.
        let t0 = "2026-01-01T00:00:00.000000+00:00";
        let seen = judge(
            &r,
            &mut st,
            &[("a".into(), c(10, 0)), ("b".into(), c(10, 0))],
            t0,
            at(t0),
            two_hours,
        );
        assert!(seen.iter().all(|s| !s.stop));
        // Three hours later: `a` only ran its healthcheck (a few seconds of CPU),
        // `b` worked (an hour of CPU).
        let t1 = "2026-01-01T03:00:00.000000+00:00";
        let seen = judge(
            &r,
            &mut st,
            &[("a".into(), c(15, 100)), ("b".into(), c(3610, 0))],
            t1,
            at(t1),
            two_hours,
        );
        assert!(seen[0].stop, "{seen:?}");
        assert_eq!(seen[0].idle_for_secs, 3 * 3600);
        assert!(!seen[1].stop, "{seen:?}");
        // A second look at the same moment changes nothing.
        let again = judge(
            &r,
            &mut st,
            &[("a".into(), c(15, 100)), ("b".into(), c(3610, 0))],
            t1,
            at(t1),
            two_hours,
        );
        assert!(again[0].stop, "{again:?}");
        // A kinfra command an hour ago keeps `a` running.
        st.instance_mut("a").last_touched = Some("2026-01-01T02:00:00.000000+00:00".into());
        let seen = judge(
            &r,
            &mut st,
            &[("a".into(), c(15, 100)), ("b".into(), c(3610, 0))],
            t1,
            at(t1),
            two_hours,
        );
        assert!(!seen[0].stop, "{seen:?}");
    }

    #[test]
    fn idle_limits_parse() {
        assert_eq!(parse_idle("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_idle("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_idle("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_idle("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_idle("soon"), None);
        assert_eq!(parse_idle("-1h"), None);
    }
}
