//! The startability gate: every check runs in parallel against one deadline, polled with
//! a backoff capped at 100 ms (the spec allows 250); a service container that exits with
//! an error or turns unhealthy fails the gate at once. Checks probe a port (TCP, HTTP) or
//! wait for a container condition (healthy, a one-shot job completed), the latter from
//! the container states the gate reads anyway.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{CheckKind, CheckSpec};
use crate::probe;
use crate::report::{CheckProgress, Reporter};
use crate::status::{Container, ContainerState, Health};

/// Longest pause between two tries of one check: a check passes within ~50 ms of the
/// service being ready.
pub const MAX_BACKOFF: Duration = Duration::from_millis(50);
/// How often a check waiting for its dependencies looks again.
const BLOCKED_POLL: Duration = Duration::from_millis(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
/// How often container states are read while waiting when no event says they changed.
const CONTAINER_POLL: Duration = Duration::from_millis(500);
/// How long the main loop waits for an engine event before looking at the checks.
const EVENT_WAIT: Duration = Duration::from_millis(20);

/// What a check tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connect to 127.0.0.1:port succeeds.
    Tcp { port: u16 },
    /// An HTTP GET answers an expected status (and, optionally, a long enough JSON list).
    Http {
        port: u16,
        path: String,
        expect_status: Vec<u16>,
        min_count: Option<usize>,
        count_field: Option<String>,
    },
    /// A container of the service reports healthy.
    Healthy { service: String },
    /// A container of the (one-shot) service exited with code 0.
    Completed { service: String },
}

/// One gate check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    /// Names of checks that must pass first.
    pub after: Vec<String>,
    /// Compose service behind the check (its logs are shown when it fails).
    pub service: Option<String>,
    pub probe: Probe,
}

impl Check {
    /// A configured check bound to this instance's port.
    pub fn from_spec(spec: &CheckSpec, port: u16) -> Check {
        let probe = match spec.kind {
            CheckKind::Tcp => Probe::Tcp { port },
            CheckKind::Http => Probe::Http {
                port,
                path: spec.path.clone(),
                expect_status: spec.expect_status.clone(),
                min_count: spec.min_count,
                count_field: spec.count_field.clone(),
            },
        };
        Check {
            name: spec.name.clone(),
            after: spec.after.clone(),
            service: spec.service.clone(),
            probe,
        }
    }

    /// Whether trying needs the containers' states.
    pub fn needs_containers(&self) -> bool {
        matches!(self.probe, Probe::Healthy { .. } | Probe::Completed { .. })
    }

    /// One try: `Ok` when the check passes, else the reason.
    pub fn attempt(&self, containers: &[Container]) -> Result<(), String> {
        self.attempt_detail(containers).map(|_| ())
    }

    /// One try: what passed ("answered 200", "4 workers registered"), else the reason.
    pub fn attempt_detail(&self, containers: &[Container]) -> Result<String, String> {
        match &self.probe {
            Probe::Tcp { port } => {
                probe::tcp(*port)?;
                Ok(format!("port {port} accepts connections"))
            }
            Probe::Http {
                port,
                path,
                expect_status,
                min_count,
                count_field,
            } => {
                let url = format!("http://localhost:{port}{path}");
                let r = probe::http_get(*port, path)?;
                if !expect_status.contains(&r.status) {
                    return Err(format!(
                        "GET {url} answered {} (want {})",
                        r.status,
                        expect_status
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ));
                }
                let Some(min) = min_count else {
                    return Ok(format!("GET {url} answered {}", r.status));
                };
                let n = probe::json_count(&r.body, count_field.as_deref())
                    .map_err(|e| format!("GET {url}: {e}"))?;
                let what = count_field.as_deref().unwrap_or("items");
                if n < *min {
                    return Err(format!("GET {url}: {n} {what}, want at least {min}"));
                }
                Ok(format!("{n} {what} registered"))
            }
            Probe::Healthy { service } => {
                let mine: Vec<&Container> = containers
                    .iter()
                    .filter(|c| &c.service == service)
                    .collect();
                if mine.is_empty() {
                    return Err(format!("service `{service}` has no container yet"));
                }
                match mine.iter().find(|c| c.health != Some(Health::Healthy)) {
                    None => Ok(format!("service `{service}` is healthy")),
                    Some(c) => Err(format!(
                        "service `{service}` is {}",
                        c.health
                            .map_or_else(|| c.state.to_string(), |h| h.to_string())
                    )),
                }
            }
            Probe::Completed { service } => {
                let mine: Vec<&Container> = containers
                    .iter()
                    .filter(|c| &c.service == service)
                    .collect();
                if mine.is_empty() {
                    return Err(format!("job `{service}` has not started yet"));
                }
                match mine
                    .iter()
                    .find(|c| !(c.state == ContainerState::Exited && c.exit_code == Some(0)))
                {
                    None => Ok(format!("job `{service}` completed")),
                    Some(c) => Err(format!("job `{service}` is {}", c.state)),
                }
            }
        }
    }
}

/// Where one check stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckState {
    /// Waiting for the checks it depends on.
    Blocked,
    Trying {
        last_error: Option<String>,
    },
    Passed {
        after: Duration,
    },
    Failed {
        last_error: String,
    },
}

/// Why the gate stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every check passed.
    Passed,
    /// A container exited with an error, died, or turned unhealthy.
    ContainerFailed,
    /// The deadline passed.
    TimedOut,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// The gate's result.
#[derive(Debug, Clone)]
pub struct Report {
    pub checks: Vec<(Check, CheckState)>,
    /// Containers that exited with an error or turned unhealthy.
    pub failed_containers: Vec<Container>,
    pub elapsed: Duration,
    pub ending: Ending,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.ending == Ending::Passed
    }
}

/// Where the gate reads the instance's containers.
pub trait Containers {
    /// The containers now (any state); `None` when they cannot be read right now.
    fn list(&self) -> Option<Vec<Container>>;
    /// Wait up to `timeout` for a sign that they changed (`true`: read them again).
    fn wait_change(&self, timeout: Duration) -> bool {
        std::thread::sleep(timeout);
        false
    }
}

impl Containers for crate::status::ProjectWatch {
    fn list(&self) -> Option<Vec<Container>> {
        self.containers()
    }
    fn wait_change(&self, timeout: Duration) -> bool {
        crate::status::ProjectWatch::wait_change(self, timeout)
    }
}

impl<F: Fn() -> Option<Vec<Container>>> Containers for F {
    fn list(&self) -> Option<Vec<Container>> {
        self()
    }
}

/// Run every check until all pass, the deadline passes, a container fails, or kinfra
/// is interrupted. Container states are read again on every engine event about them
/// (and every half second regardless).
pub fn run(
    checks: Vec<Check>,
    containers: &dyn Containers,
    timeout: Duration,
    reporter: &dyn Reporter,
) -> Report {
    let started = Instant::now();
    let deadline = started + timeout;
    let states: Arc<Mutex<Vec<CheckState>>> = Arc::new(Mutex::new(
        checks
            .iter()
            .map(|c| {
                if c.after.is_empty() {
                    CheckState::Trying { last_error: None }
                } else {
                    CheckState::Blocked
                }
            })
            .collect(),
    ));
    let latest: Arc<Mutex<Vec<Container>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for (i, check) in checks.iter().cloned().enumerate() {
        let deps: Vec<usize> = check
            .after
            .iter()
            .filter_map(|d| checks.iter().position(|c| &c.name == d))
            .collect();
        let states = Arc::clone(&states);
        let stop = Arc::clone(&stop);
        let latest = Arc::clone(&latest);
        handles.push(std::thread::spawn(move || {
            let ctx = PollCtx {
                states: &states,
                latest: &latest,
                stop: &stop,
                started,
                deadline,
            };
            poll_check(i, &check, &deps, &ctx)
        }));
    }

    let names: Vec<String> = checks.iter().map(|c| c.name.clone()).collect();
    let mut failed_containers = Vec::new();
    let mut next_poll = Instant::now();
    let mut ending = Ending::TimedOut;
    loop {
        if crate::interrupt::requested() {
            ending = Ending::Interrupted;
            break;
        }
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + CONTAINER_POLL;
            if let Some(list) = containers.list() {
                failed_containers = list.iter().filter(|c| c.failed()).cloned().collect();
                *lock(&latest) = list;
                if !failed_containers.is_empty() {
                    ending = Ending::ContainerFailed;
                    break;
                }
            }
        }
        let snapshot = lock(&states).clone();
        reporter.checks(&names, &progress(&snapshot), false);
        let finished = snapshot
            .iter()
            .all(|s| matches!(s, CheckState::Passed { .. } | CheckState::Failed { .. }));
        if finished {
            if snapshot
                .iter()
                .all(|s| matches!(s, CheckState::Passed { .. }))
            {
                ending = Ending::Passed;
            }
            break;
        }
        if containers.wait_change(EVENT_WAIT) {
            next_poll = Instant::now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let elapsed = started.elapsed();
    let final_states: Vec<CheckState> = lock(&states)
        .iter()
        .map(|s| match s {
            CheckState::Passed { .. } | CheckState::Failed { .. } => s.clone(),
            CheckState::Trying { last_error } => CheckState::Failed {
                last_error: last_error.clone().unwrap_or_else(|| "not tried".into()),
            },
            CheckState::Blocked => CheckState::Failed {
                last_error: "never started: a check it waits for did not pass".into(),
            },
        })
        .collect();
    reporter.checks(&names, &progress(&final_states), true);
    Report {
        checks: checks.into_iter().zip(final_states).collect(),
        failed_containers,
        elapsed,
        ending,
    }
}

fn progress(states: &[CheckState]) -> Vec<CheckProgress> {
    states
        .iter()
        .map(|s| match s {
            CheckState::Blocked => CheckProgress::Blocked,
            CheckState::Trying { last_error } => CheckProgress::Trying(last_error.clone()),
            CheckState::Passed { after } => CheckProgress::Passed(*after),
            CheckState::Failed { last_error } => CheckProgress::Failed(last_error.clone()),
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct PollCtx<'a> {
    states: &'a Mutex<Vec<CheckState>>,
    latest: &'a Mutex<Vec<Container>>,
    stop: &'a AtomicBool,
    started: Instant,
    deadline: Instant,
}

fn poll_check(i: usize, check: &Check, deps: &[usize], ctx: &PollCtx<'_>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        if now >= ctx.deadline {
            let mut s = lock(ctx.states);
            s[i] = match &s[i] {
                CheckState::Trying { last_error } => CheckState::Failed {
                    last_error: last_error.clone().unwrap_or_else(|| "timed out".into()),
                },
                _ => CheckState::Failed {
                    last_error: "timed out waiting for the checks it depends on".into(),
                },
            };
            return;
        }
        let ready = {
            let s = lock(ctx.states);
            deps.iter()
                .all(|d| matches!(s[*d], CheckState::Passed { .. }))
        };
        if !ready {
            // Blocked checks look often, and start with a fresh backoff once unblocked.
            std::thread::sleep(BLOCKED_POLL);
            continue;
        }
        let result = if check.needs_containers() {
            let snapshot = lock(ctx.latest).clone();
            check.attempt(&snapshot)
        } else {
            check.attempt(&[])
        };
        match result {
            Ok(()) => {
                lock(ctx.states)[i] = CheckState::Passed {
                    after: ctx.started.elapsed(),
                };
                return;
            }
            Err(e) => {
                lock(ctx.states)[i] = CheckState::Trying {
                    last_error: Some(e),
                }
            }
        }
        // Container conditions change when the states are read again.
        let pause = if check.needs_containers() {
            EVENT_WAIT
        } else {
            backoff
        };
        std::thread::sleep(pause.min(ctx.deadline.saturating_duration_since(Instant::now())));
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: CheckKind, after: &[&str]) -> CheckSpec {
        CheckSpec {
            name: name.into(),
            kind,
            port: "P".into(),
            path: "/".into(),
            expect_status: vec![200],
            min_count: None,
            count_field: None,
            after: after.iter().map(|s| s.to_string()).collect(),
            service: None,
        }
    }

    fn none() -> Option<Vec<Container>> {
        Some(Vec::new())
    }

    #[test]
    fn passes_as_soon_as_a_listener_appears() {
        // Reserve a port, release it, then start listening after a delay.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            std::thread::sleep(Duration::from_secs(2));
            drop(l);
        });
        let checks = vec![
            Check::from_spec(&spec("A", CheckKind::Tcp, &[]), port),
            Check::from_spec(&spec("B", CheckKind::Tcp, &["A"]), port),
        ];
        let report = run(
            checks,
            &none,
            Duration::from_secs(5),
            &crate::report::Silent,
        );
        assert!(report.passed(), "{report:?}");
        assert!(
            report.elapsed < Duration::from_secs(2),
            "{:?}",
            report.elapsed
        );
        server.join().unwrap();
    }

    #[test]
    fn times_out_with_the_last_error() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let checks = vec![
            Check::from_spec(&spec("A", CheckKind::Http, &[]), port),
            Check::from_spec(&spec("B", CheckKind::Tcp, &["A"]), port),
        ];
        let report = run(
            checks,
            &none,
            Duration::from_millis(400),
            &crate::report::Silent,
        );
        assert!(!report.passed());
        match &report.checks[0].1 {
            CheckState::Failed { last_error } => {
                assert!(last_error.contains("answered 503"), "{last_error}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(report.checks[1].1, CheckState::Failed { .. }));
    }
}
