//! The startability gate: every check runs in parallel against one deadline, polled with
//! a backoff capped at 100 ms (the spec allows 250); a service container that exits with an error or turns
//! unhealthy fails the gate at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{CheckKind, CheckSpec};
use crate::probe;
use crate::report::{CheckProgress, Reporter};
use crate::status::{self, Container};

/// Longest pause between two tries of one check.
pub const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// How often a check waiting for its dependencies looks again.
const BLOCKED_POLL: Duration = Duration::from_millis(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
/// How often container states are read while waiting.
const CONTAINER_POLL: Duration = Duration::from_millis(300);

/// A check bound to this instance's port.
#[derive(Debug, Clone)]
pub struct Check {
    pub spec: CheckSpec,
    pub port: u16,
}

impl Check {
    /// One try: `Ok` when the check passes, else the reason.
    pub fn attempt(&self) -> Result<(), String> {
        self.attempt_detail().map(|_| ())
    }

    /// One try: what passed ("answered 200", "4 workers registered"), else the reason.
    pub fn attempt_detail(&self) -> Result<String, String> {
        match self.spec.kind {
            CheckKind::Tcp => {
                probe::tcp(self.port)?;
                Ok(format!("port {} accepts connections", self.port))
            }
            CheckKind::Http => {
                let url = format!("http://localhost:{}{}", self.port, self.spec.path);
                let r = probe::http_get(self.port, &self.spec.path)?;
                if !self.spec.expect_status.contains(&r.status) {
                    return Err(format!(
                        "GET {url} answered {} (want {})",
                        r.status,
                        self.spec
                            .expect_status
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ));
                }
                let Some(min) = self.spec.min_count else {
                    return Ok(format!("GET {url} answered {}", r.status));
                };
                let n = probe::json_count(&r.body, self.spec.count_field.as_deref())
                    .map_err(|e| format!("GET {url}: {e}"))?;
                let what = self.spec.count_field.as_deref().unwrap_or("items");
                if n < min {
                    return Err(format!("GET {url}: {n} {what}, want at least {min}"));
                }
                Ok(format!("{n} {what} registered"))
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

/// The gate's result.
#[derive(Debug, Clone)]
pub struct Report {
    pub checks: Vec<(Check, CheckState)>,
    /// Containers that exited with an error or turned unhealthy.
    pub failed_containers: Vec<Container>,
    pub elapsed: Duration,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failed_containers.is_empty()
            && self
                .checks
                .iter()
                .all(|(_, s)| matches!(s, CheckState::Passed { .. }))
    }
}

/// Run every check until all pass, the deadline passes, or a container of `project`
/// fails.
pub fn run(
    checks: Vec<Check>,
    project: &str,
    timeout: Duration,
    reporter: &dyn Reporter,
) -> Report {
    let started = Instant::now();
    let deadline = started + timeout;
    let states: Arc<Mutex<Vec<CheckState>>> = Arc::new(Mutex::new(
        checks
            .iter()
            .map(|c| {
                if c.spec.after.is_empty() {
                    CheckState::Trying { last_error: None }
                } else {
                    CheckState::Blocked
                }
            })
            .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for (i, check) in checks.iter().cloned().enumerate() {
        let deps: Vec<usize> = check
            .spec
            .after
            .iter()
            .filter_map(|d| checks.iter().position(|c| &c.spec.name == d))
            .collect();
        let states = Arc::clone(&states);
        let stop = Arc::clone(&stop);
        handles.push(std::thread::spawn(move || {
            poll_check(i, &check, &deps, &states, &stop, started, deadline)
        }));
    }

    let names: Vec<String> = checks.iter().map(|c| c.spec.name.clone()).collect();
    let mut failed_containers = Vec::new();
    let mut next_poll = Instant::now();
    loop {
        let snapshot = lock(&states).clone();
        reporter.checks(&names, &progress(&snapshot), false);
        let finished = snapshot
            .iter()
            .all(|s| matches!(s, CheckState::Passed { .. } | CheckState::Failed { .. }));
        if finished {
            break;
        }
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + CONTAINER_POLL;
            if let Ok(list) = status::project_containers(project) {
                failed_containers = list.into_iter().filter(Container::failed).collect();
                if !failed_containers.is_empty() {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
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

fn poll_check(
    i: usize,
    check: &Check,
    deps: &[usize],
    states: &Mutex<Vec<CheckState>>,
    stop: &AtomicBool,
    started: Instant,
    deadline: Instant,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            let mut s = lock(states);
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
            let s = lock(states);
            deps.iter()
                .all(|d| matches!(s[*d], CheckState::Passed { .. }))
        };
        if !ready {
            // Blocked checks look often, and start with a fresh backoff once unblocked.
            std::thread::sleep(BLOCKED_POLL);
            continue;
        }
        match check.attempt() {
            Ok(()) => {
                lock(states)[i] = CheckState::Passed {
                    after: started.elapsed(),
                };
                return;
            }
            Err(e) => {
                lock(states)[i] = CheckState::Trying {
                    last_error: Some(e),
                }
            }
        }
        std::thread::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())));
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
            Check {
                spec: spec("A", CheckKind::Tcp, &[]),
                port,
            },
            Check {
                spec: spec("B", CheckKind::Tcp, &["A"]),
                port,
            },
        ];
        let report = run(
            checks,
            "kinfra-unit-test-no-such-project",
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
            Check {
                spec: spec("A", CheckKind::Http, &[]),
                port,
            },
            Check {
                spec: spec("B", CheckKind::Tcp, &["A"]),
                port,
            },
        ];
        let report = run(
            checks,
            "kinfra-unit-test-no-such-project",
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
