//! Many sandboxes on one host: forty stacks at once on a default daemon (fixed subnets
//! per slot), budgets that the kernel enforces (and `status` reports), the cap on
//! concurrent `up`s, idle stop with an injected clock, and `list` reading the Engine API
//! exactly as it read the docker CLI.
//!
//! Heavy (real containers, many of them): `scripts/test.sh` runs this module on its
//! own, in one Compose lane. Every project is named `dn<pid>…--…` and removed by a guard.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::{Env, Run};

const IMAGE: &str = "kinfra-test/busybox:latest";
/// Slot n of the test project publishes 26000 + n.
const PORT_BASE: u16 = 26_000;

/// The tests of this module take turns: they share the port block.
static TURN: Mutex<()> = Mutex::new(());

/// A one-service project (`web`, an HTTP server on `${DN_PORT}`) with its own
/// kinfra.toml: `slots` slots, ports 26000 + n, fixed subnets, and `extra` config lines.
struct Dense {
    env: Env,
    name: String,
    created: Vec<String>,
}

impl Dense {
    fn new(tag: &str, slots: u32, extra: &str) -> Dense {
        let env = Env::with_repo_name("dense");
        let name = format!("dn{}{tag}", std::process::id());
        std::fs::write(
            env.main.join("compose.yaml"),
            format!(
                "services:\n  web:\n    image: {IMAGE}\n    stop_grace_period: 1s\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; mkdir -p /www && echo ok > /www/health && httpd -f -p 80 -h /www & wait\"]\n    ports:\n      - \"127.0.0.1:${{DN_PORT:-{PORT_BASE}}}:80\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            env.main.join("kinfra.toml"),
            format!(
                "base = \"compose\"\n[project]\nname = \"{name}\"\nsandbox_prefix = \"{name}--\"\nrepo_check = \"\"\n[local_prod]\ndir = \"{name}-prod\"\nid = \"{name}-prod\"\n[slots]\ncount = {slots}\n[ports.DN_PORT]\nlocal_prod = {PORT_BASE}\nsandbox = {}\nstride = 1\n[auto_ports]\nbase = 27000\nper_slot = 10\n[networks]\nrange = \"10.230.0.0/16\"\nper_slot = 1\n[gate]\ntimeout = 120\n[[gate.checks]]\nname = \"web\"\nkind = \"http\"\nport = \"DN_PORT\"\npath = \"/health\"\n{extra}",
                PORT_BASE + 1
            ),
        )
        .unwrap();
        env.git(&env.main, &["add", "."]);
        env.git(&env.main, &["commit", "-q", "-m", "dense"]);
        Dense {
            env,
            name,
            created: Vec::new(),
        }
    }

    fn id(&self, n: &str) -> String {
        format!("{}--{n}", self.name)
    }

    fn create(&mut self, n: &str, slot: u32) -> PathBuf {
        let run = self.env.kinfra(
            &self.env.main,
            &["sandbox", "create", n, "--slot", &slot.to_string()],
        );
        run.assert_code(0);
        self.created.push(self.id(n));
        PathBuf::from(run.stdout.trim())
    }

    fn kinfra(&self, args: &[&str]) -> Run {
        self.env.kinfra(&self.env.main, args)
    }

    fn kinfra_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let mut cmd = self.env.kinfra_cmd(&self.env.main, args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Run::from(cmd.output().unwrap())
    }
}

impl Drop for Dense {
    fn drop(&mut self) {
        for id in &self.created {
            let _ = self
                .env
                .kinfra(&self.env.main, &["sandbox", "destroy", id, "--force"]);
            // Whatever is left of the project, by its label only.
            let filter = format!("label=com.docker.compose.project={id}");
            let ids = docker(&["ps", "-aq", "--filter", &filter]);
            for c in ids.lines() {
                let _ = docker(&["rm", "-f", c]);
            }
            let vols = docker(&["volume", "ls", "-q", "--filter", &filter]);
            for v in vols.lines() {
                let _ = docker(&["volume", "rm", "-f", v]);
            }
            let nets = docker(&["network", "ls", "-q", "--filter", &filter]);
            for n in nets.lines() {
                let _ = docker(&["network", "rm", n]);
            }
        }
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn http_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn forty_stacks_run_at_once_on_a_default_daemon() {
    let _turn = lock();
    let mut d = Dense::new("f", 40, "");
    let mut paths = Vec::new();
    for n in 1..=40u32 {
        paths.push(d.create(&format!("s{n}"), n));
    }
    // Every `up` at once (each is its own process).
    let started = Instant::now();
    let children: Vec<_> = paths
        .iter()
        .map(|p| {
            d.env
                .kinfra_cmd(p, &["sandbox", "up", "--timeout", "300"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut failed = Vec::new();
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            failed.push(format!(
                "s{}: {}",
                n + 1,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failed.is_empty(), "ups failed:\n{}", failed.join("\n"));
    eprintln!("40 ups took {:.1}s", started.elapsed().as_secs_f64());
    // Each answers on its own port, from its own network.
    for n in 1..=40u16 {
        assert!(
            http_ok(PORT_BASE + n),
            "slot {n} does not answer on {}",
            PORT_BASE + n
        );
    }
    let subnets: Vec<String> = (1..=40)
        .map(|n| {
            docker(&[
                "network",
                "inspect",
                &format!("{}_default", d.id(&format!("s{n}"))),
                "--format",
                "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            ])
            .trim()
            .to_string()
        })
        .collect();
    let mut unique = subnets.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 40, "{subnets:?}");
    assert!(
        subnets.iter().all(|s| s.starts_with("10.230.")),
        "{subnets:?}"
    );
    let list = d.kinfra(&["sandbox", "list", "--json"]);
    list.assert_code(0);
    let doc: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let running = doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "running")
        .count();
    assert_eq!(running, 40, "{}", list.stdout);
    // Down in parallel too, before the guard destroys them.
    let children: Vec<_> = paths
        .iter()
        .map(|p| {
            d.env
                .kinfra_cmd(p, &["sandbox", "down"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let _ = c.wait_with_output();
    }
}

#[test]
fn a_budget_is_enforced_and_an_oom_kill_is_reported() {
    let _turn = lock();
    let mut d = Dense::new("b", 3, "");
    // A second service that eats memory: `tail` buffers a line that never ends.
    let compose = std::fs::read_to_string(d.env.main.join("compose.yaml")).unwrap();
    std::fs::write(
        d.env.main.join("compose.yaml"),
        format!(
            "{compose}  hog:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"sleep 2; head -c 400000000 /dev/zero | tail -c 300000000 > /dev/null; exit 137\"]\n"
        ),
    )
    .unwrap();
    d.env.git(&d.env.main, &["commit", "-qam", "hog"]);
    let path = d.create("b1", 1);
    // 64 MiB for both services: 32 MiB each; `hog` wants ~300 MB.
    let up = d
        .env
        .kinfra(&path, &["sandbox", "up", "--memory", "64m", "--no-wait"]);
    up.assert_code(0);
    let limit = docker(&[
        "inspect",
        &format!("{}_web_1", d.id("b1")),
        "--format",
        "{{.HostConfig.Memory}}",
    ]);
    assert_eq!(
        limit.trim(),
        (32u64 << 20).to_string(),
        "per-service share of the budget"
    );
    // The kernel kills `tail`; status says the service was killed for memory.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        let st = d.env.kinfra(&path, &["sandbox", "status", "--json"]);
        last = st.stdout.clone();
        if st.stdout.contains("oom_killed") {
            break;
        }
        let human = d.env.kinfra(&path, &["sandbox", "status"]);
        if human.stdout.contains("killed for memory") {
            last = human.stdout;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The hog's shell ends the container when `tail` is killed, and docker records the
    // OOM kill on the container.
    let oom = docker(&[
        "inspect",
        &format!("{}_hog_1", d.id("b1")),
        "--format",
        "{{.State.OOMKilled}}",
    ]);
    assert!(
        oom.trim() == "true" || last.contains("killed for memory") || last.contains("oom_killed"),
        "no OOM kill seen: docker says {oom}, status says {last}"
    );
    // The budget is this instance's from now on.
    let again = d.env.kinfra(&path, &["sandbox", "up", "--dry-run"]);
    again.assert_code(0);
    assert!(again.stdout.contains("this instance's"), "{}", again.stdout);
}

#[test]
fn the_cap_on_concurrent_ups_queues_the_rest() {
    let _turn = lock();
    // One `up` at a time; the first one's gate waits for a slow backend.
    let mut d = Dense::new("q", 3, "[budget]\nmax_concurrent_ups = 1\n");
    let a = d.create("q1", 1);
    let b = d.create("q2", 2);
    // Slow the first up down: its web server starts serving after 6 s.
    let compose = std::fs::read_to_string(d.env.main.join("compose.yaml")).unwrap();
    let slow = compose.replace(
        "trap 'exit 0' TERM;",
        "trap 'exit 0' TERM; sleep ${DN_DELAY:-0};",
    );
    std::fs::write(a.join("compose.yaml"), &slow).unwrap();
    let first = d
        .env
        .kinfra_cmd(&a, &["sandbox", "up"])
        .env("DN_DELAY", "6")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let second = d
        .env
        .kinfra_cmd(&b, &["sandbox", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While the first holds the only place, the second is queued, and list says so.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = String::new();
    while Instant::now() < deadline {
        let list = d.kinfra(&["sandbox", "list", "--json"]);
        seen = list.stdout.clone();
        if seen.contains("\"queued\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        seen.contains("\"queued\""),
        "the second up is not shown queued: {seen}"
    );
    let out1 = first.wait_with_output().unwrap();
    let out2 = second.wait_with_output().unwrap();
    assert!(
        out1.status.success(),
        "{}",
        String::from_utf8_lossy(&out1.stderr)
    );
    assert!(
        out2.status.success(),
        "{}",
        String::from_utf8_lossy(&out2.stderr)
    );
    let err2 = String::from_utf8_lossy(&out2.stderr);
    assert!(err2.contains("queued"), "{err2}");
    assert!(http_ok(PORT_BASE + 1) && http_ok(PORT_BASE + 2));
    for p in [&a, &b] {
        d.env.kinfra(p, &["sandbox", "down"]).assert_code(0);
    }
}

#[test]
fn reap_stops_idle_sandboxes_and_up_wakes_them() {
    let _turn = lock();
    let mut d = Dense::new("r", 3, "");
    let idle = d.create("idle", 1);
    let busy = d.create("busy", 2);
    for p in [&idle, &busy] {
        d.env.kinfra(p, &["sandbox", "up"]).assert_code(0);
    }
    // First look (now): both just used.
    d.kinfra(&["reap", "--idle", "2h"]).assert_code(0);
    // Three hours later (an injected clock): `busy` was used by a kinfra command then.
    let later = "2099-01-01T03:00:00Z";
    let touched = d
        .env
        .kinfra_cmd(&busy, &["sandbox", "shell", "web"])
        .env("KINFRA_TEST_NOW", "2099-01-01T02:30:00Z")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        touched.status.success(),
        "{}",
        String::from_utf8_lossy(&touched.stderr)
    );
    let dry = d.kinfra_with(
        &["reap", "--idle", "2h", "--dry-run", "--json"],
        &[("KINFRA_TEST_NOW", later)],
    );
    dry.assert_code(0);
    let doc: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    let stop_of = |id: &str| {
        doc["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["instance_id"] == id)
            .map(|r| r["stop"].as_bool().unwrap())
    };
    assert_eq!(stop_of(&d.id("idle")), Some(true), "{doc:#}");
    assert_eq!(stop_of(&d.id("busy")), Some(false), "{doc:#}");
    // The dry run stopped nothing.
    assert!(http_ok(PORT_BASE + 1));
    let run = d.kinfra_with(&["reap", "--idle", "2h"], &[("KINFRA_TEST_NOW", later)]);
    run.assert_code(0);
    assert!(!http_ok(PORT_BASE + 1), "the idle sandbox still answers");
    assert!(http_ok(PORT_BASE + 2), "the busy sandbox was stopped");
    let list = d.kinfra(&["sandbox", "list"]);
    assert!(list.stdout.contains("stopped (idle)"), "{}", list.stdout);
    // Nothing was deleted; `up` wakes it.
    assert!(idle.join(".env.sandbox").is_file());
    d.env.kinfra(&idle, &["sandbox", "up"]).assert_code(0);
    assert!(http_ok(PORT_BASE + 1));
    let list = d.kinfra(&["sandbox", "list"]);
    assert!(!list.stdout.contains("stopped (idle)"), "{}", list.stdout);
    for p in [&idle, &busy] {
        d.env.kinfra(p, &["sandbox", "down"]).assert_code(0);
    }
}

#[test]
fn list_reads_the_engine_api_as_it_read_the_cli() {
    let _turn = lock();
    let mut d = Dense::new("l", 4, "");
    let a = d.create("l1", 1);
    let _b = d.create("l2", 2);
    let c = d.create("l3", 3);
    d.env.kinfra(&a, &["sandbox", "up"]).assert_code(0);
    d.env
        .kinfra(&c, &["sandbox", "up", "--no-wait"])
        .assert_code(0);
    for args in [&["sandbox", "list", "--json"][..], &["sandbox", "list"][..]] {
        let api = d.kinfra(args);
        let cli = d.kinfra_with(args, &[("KINFRA_DOCKER_READS", "cli")]);
        api.assert_code(0);
        cli.assert_code(0);
        assert_eq!(api.stdout, cli.stdout, "{args:?}");
    }
    let st_api = d.env.kinfra(&a, &["sandbox", "status", "--json"]);
    let mut cmd = d.env.kinfra_cmd(&a, &["sandbox", "status", "--json"]);
    cmd.env("KINFRA_DOCKER_READS", "cli");
    let st_cli = Run::from(cmd.output().unwrap());
    let strip = |s: &str| {
        let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
        // Status text ages ("Up 2 seconds") between the two reads.
        for c in v["containers"].as_array_mut().unwrap() {
            c["status"] = serde_json::Value::Null;
        }
        v
    };
    assert_eq!(strip(&st_api.stdout), strip(&st_cli.stdout));
    for p in [&a, &c] {
        d.env.kinfra(p, &["sandbox", "down"]).assert_code(0);
    }
}
