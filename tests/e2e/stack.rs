//! Docker end-to-end tests: the real `kinfra` binary runs the example stack
//! (`examples/hello-stack`) with the real Docker engine and Compose.
//!
//! Requirements (CI guarantees them; a missing one FAILS the test, it never skips):
//! a reachable Docker engine, Docker Compose (v2 or v1), and the local image
//! `kinfra-test/busybox:latest` built by `scripts/build-test-image.sh`.
//!
//! Isolation: every test has its own HOME (so its own kinfra registry), its own
//! explicit slots (host ports are shared by every process on the machine, so two tests
//! never use one slot at the same time: a per-slot lock serializes the few that share
//! one), and compose project names unique to this test process (`hello--t<pid>-…`,
//! local-prod `hello-prod-<Env tag>`).
//! A guard destroys every instance a test made, and removes by label whatever is left,
//! even when an assertion fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::common::exit;
use crate::common::{Env, Run};

pub(crate) const IMAGE: &str = "kinfra-test/busybox:latest";
const LABEL: &str = "com.docker.compose.project";
/// Slot n publishes 19100 + 10n .. +3 (API, DB, WORKER_1, WORKER_2); slot 0 is local-prod.
const PORT_BASE: u16 = 19100;

// Slots used below. 1..3 are left free for manual sessions on a developer machine.
pub(crate) const SLOT_PAIR_A: u32 = 4;
pub(crate) const SLOT_PAIR_B: u32 = 5;
const SLOT_GATE: u32 = 6;
const SLOT_CONFLICT: u32 = 7;
pub(crate) const SLOT_LOCAL_PROD_NEIGHBOUR: u32 = 8;
const SLOT_DESTROY: u32 = 9;
const SLOT_DOWN: u32 = 10;
const SLOT_FLAVOR: u32 = 6; // shares with the gate test (serialized by the lock)
pub(crate) const SLOT_SHELL: u32 = 10; // shares with the down test (serialized by the lock)

/// One lock per slot 0..=10: tests that share a slot's host ports never overlap.
static SLOT_LOCKS: [Mutex<()>; 11] = [const { Mutex::new(()) }; 11];

// ---------------------------------------------------------------------------------
// Docker helpers
// ---------------------------------------------------------------------------------

pub(crate) fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")))
}

#[track_caller]
pub(crate) fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fail (never skip) with a clear message when Docker, Compose or the image is missing.
pub(crate) fn require_docker() {
    let version = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match version {
        Err(e) => panic!("these end-to-end tests need Docker: cannot run `docker`: {e}"),
        Ok(out) if !out.status.success() || out.stdout.is_empty() => panic!(
            "these end-to-end tests need a reachable Docker engine: `docker version` says: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(_) => {}
    }
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let v1 = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        v2 || v1,
        "these end-to-end tests need Docker Compose (`docker compose` or `docker-compose`)"
    );
    let image = docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
    assert!(
        image.status.success(),
        "the test image `{IMAGE}` is missing: run scripts/build-test-image.sh first ({})",
        String::from_utf8_lossy(&image.stderr).trim()
    );
}

/// A container of a compose project, as `docker ps -a` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ctr {
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) state: String,
}

pub(crate) fn containers(project: &str) -> Vec<Ctr> {
    let filter = format!("label={LABEL}={project}");
    let out = docker_ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &filter,
        "--format",
        "{{.ID}}\t{{.Label \"com.docker.compose.service\"}}\t{{.State}}",
    ]);
    let mut list: Vec<Ctr> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Ctr {
                id: f[0].to_string(),
                service: f.get(1).unwrap_or(&"").to_string(),
                state: f.get(2).unwrap_or(&"").to_lowercase(),
            }
        })
        .collect();
    list.sort_by(|a, b| a.service.cmp(&b.service).then(a.id.cmp(&b.id)));
    list
}

pub(crate) fn running(project: &str) -> Vec<Ctr> {
    containers(project)
        .into_iter()
        .filter(|c| c.state == "running")
        .collect()
}

/// The one container of `service` in `project`.
#[track_caller]
pub(crate) fn container_of(project: &str, service: &str) -> Ctr {
    let all = containers(project);
    let mine: Vec<&Ctr> = all.iter().filter(|c| c.service == service).collect();
    assert_eq!(
        mine.len(),
        1,
        "expected one `{service}` container in `{project}`: {all:?}"
    );
    mine[0].clone()
}

fn labelled(kind: &str, project: &str) -> Vec<String> {
    let filter = format!("label={LABEL}={project}");
    docker_ok(&[kind, "ls", "-q", "--filter", &filter])
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) fn volumes(project: &str) -> Vec<String> {
    labelled("volume", project)
}

fn networks(project: &str) -> Vec<String> {
    labelled("network", project)
}

/// Remove everything labelled with `project` (the fallback after `destroy`).
pub(crate) fn purge(project: &str) {
    let filter = format!("label={LABEL}={project}");
    let ids = |args: &[&str]| -> Vec<String> {
        String::from_utf8_lossy(&docker(args).stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    // kinfra's data helpers (snapshots, copies) that a killed kinfra left hold the
    // project's volumes; they carry the project in their own label.
    let helpers = format!("label={}={project}", kinfra::snapshot::HELPER_LABEL);
    let mut cs = ids(&["ps", "-aq", "--filter", &filter]);
    cs.extend(ids(&["ps", "-aq", "--filter", &helpers]));
    if !cs.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(cs.iter().map(String::as_str));
        let _ = docker(&args);
    }
    for n in ids(&["network", "ls", "-q", "--filter", &filter]) {
        let _ = docker(&["network", "rm", &n]);
    }
    for v in ids(&["volume", "ls", "-q", "--filter", &filter]) {
        let _ = docker(&["volume", "rm", "-f", &v]);
    }
}

// ---------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------

/// `GET path` on 127.0.0.1:port: the status code and the body.
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let status = raw
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status line from {addr}: {raw:?}"))?;
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

#[track_caller]
fn assert_health_ok(port: u16) {
    match http_get(port, "/api/v1/health") {
        Ok((200, _)) => {}
        other => panic!("GET 127.0.0.1:{port}/api/v1/health: want 200, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// The test stack: HOME, main repository, instances, cleanup
// ---------------------------------------------------------------------------------

/// A sandbox made by a test.
#[derive(Debug, Clone)]
pub(crate) struct Sandbox {
    pub(crate) id: String,
    pub(crate) path: PathBuf,
    pub(crate) slot: u32,
}

impl Sandbox {
    fn port(&self, offset: u16) -> u16 {
        PORT_BASE + 10 * self.slot as u16 + offset
    }
    fn api_port(&self) -> u16 {
        self.port(0)
    }
    fn db_port(&self) -> u16 {
        self.port(1)
    }
}

pub(crate) struct Stack {
    pub(crate) env: Env,
    /// `<dev>/hello`, the main repository of the example stack.
    pub(crate) main: PathBuf,
    pub(crate) tag: String,
    pub(crate) sandboxes: Vec<String>,
    /// local-prod's instance id (its directory stays `<dev>/hello-prod`).
    pub(crate) local_prod_id: String,
    /// Set once this test may have made local-prod (it checked nothing else had).
    pub(crate) local_prod: bool,
    pub(crate) started: Instant,
    pub(crate) _locks: Vec<MutexGuard<'static, ()>>,
}

impl Stack {
    /// Lock `slots`, make a hermetic HOME and the main repository `<dev>/hello`
    /// holding the example's compose file and kinfra.toml.
    pub(crate) fn new(test: &str, slots: &[u32]) -> Stack {
        require_docker();
        let mut slots = slots.to_vec();
        slots.sort_unstable();
        slots.dedup();
        let locks = slots
            .iter()
            .map(|&s| {
                SLOT_LOCKS[s as usize]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
            })
            .collect();
        let env = Env::new();
        let (main, local_prod_id) = crate::common::hello_repo(&env);
        Stack {
            env,
            main,
            tag: format!("t{}-{test}", std::process::id()),
            sandboxes: Vec::new(),
            local_prod_id,
            local_prod: false,
            started: Instant::now(),
            _locks: locks,
        }
    }

    pub(crate) fn cmd(&self, cwd: &Path, args: &[&str]) -> Command {
        self.env.kinfra_cmd(cwd, args)
    }

    pub(crate) fn kinfra(&self, cwd: &Path, args: &[&str]) -> Run {
        self.env.kinfra(cwd, args)
    }

    pub(crate) fn kinfra_with(&self, cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let mut cmd = self.cmd(cwd, args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("run kinfra"))
    }

    /// `kinfra sandbox create t<pid>-<test>-<name> --slot N` from the main repository.
    pub(crate) fn create(&mut self, name: &str, slot: u32) -> Sandbox {
        self.create_with(name, slot, &[])
    }

    /// [`Stack::create`] with more arguments (`--up`, ...); the path is the last line
    /// of its output.
    pub(crate) fn create_with(&mut self, name: &str, slot: u32, more: &[&str]) -> Sandbox {
        let name = format!("{}-{name}", self.tag);
        let id = format!("hello--{name}");
        self.sandboxes.push(id.clone());
        let slot_arg = slot.to_string();
        let mut args = vec!["sandbox", "create", name.as_str(), "--slot", &slot_arg];
        args.extend_from_slice(more);
        let run = self.kinfra(&self.main, &args);
        run.assert_code(0);
        let path = PathBuf::from(run.stdout.trim().lines().last().unwrap_or_default());
        assert!(path.join(".env.sandbox").is_file(), "{run:?}");
        assert_eq!(path, self.env.dev().join(&id));
        Sandbox { id, path, slot }
    }

    /// `sandbox up` in `sb`, asserting success.
    pub(crate) fn up(&self, sb: &Sandbox) -> Run {
        let t = Instant::now();
        let run = self.kinfra(&sb.path, &["sandbox", "up", "--timeout", "60"]);
        run.assert_code(0);
        self.log(&format!(
            "`{}` up in {:.1}s",
            sb.id,
            t.elapsed().as_secs_f64()
        ));
        run
    }

    /// Check before making local-prod that nothing of a foreign one exists (its
    /// leftovers would block `local-prod create`; they are not ours to remove), then
    /// arm the cleanup for it.
    pub(crate) fn claim_local_prod(&mut self) {
        let id = &self.local_prod_id;
        let res = (containers(id), volumes(id), networks(id));
        assert!(
            res.0.is_empty() && res.1.is_empty() && res.2.is_empty(),
            "Docker already holds resources of `{id}` that this test did not make \
             (containers {:?}, volumes {:?}, networks {:?}); remove them and rerun",
            res.0,
            res.1,
            res.2
        );
        self.local_prod = true;
    }

    fn registry(&self) -> serde_json::Value {
        let path = self.env.home.join(".kinfra-hello/instances.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).expect("registry parses")
    }

    pub(crate) fn json(&self, cwd: &Path, args: &[&str]) -> serde_json::Value {
        let run = self.kinfra(cwd, args);
        run.assert_code(0);
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("`kinfra {args:?}` printed no JSON ({e}): {run:?}"))
    }

    fn list_status(&self, id: &str) -> String {
        let list = self.json(&self.main, &["sandbox", "list", "--json"]);
        assert_eq!(list["schema_version"], 1);
        let item = list["instances"]
            .as_array()
            .expect("instances is a list")
            .iter()
            .find(|i| i["instance_id"] == id)
            .unwrap_or_else(|| panic!("`{id}` is not listed: {list}"));
        item["status"].as_str().expect("status").to_string()
    }

    pub(crate) fn log(&self, what: &str) {
        eprintln!(
            "[{} +{:.1}s] {what}",
            self.tag,
            self.started.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.local_prod {
            let _ = self.kinfra(
                &self.main,
                &["local-prod", "destroy", "--force", "--no-snapshot"],
            );
            purge(&self.local_prod_id);
        }
        for id in &self.sandboxes {
            let _ = self.kinfra(&self.main, &["sandbox", "destroy", id, "--force"]);
            purge(id);
        }
        self.log("cleaned up");
    }
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

/// Two sandboxes started at the same time: both pass the gate on their own ports, and
/// their data volumes are separate.
#[test]
fn two_sandboxes_run_side_by_side() {
    let mut st = Stack::new("two", &[SLOT_PAIR_A, SLOT_PAIR_B]);
    let a = st.create("a", SLOT_PAIR_A);
    let b = st.create("b", SLOT_PAIR_B);

    let t = Instant::now();
    let spawn = |sb: &Sandbox| {
        st.cmd(&sb.path, &["sandbox", "up", "--timeout", "90"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kinfra sandbox up")
    };
    let (ca, cb) = (spawn(&a), spawn(&b));
    let ra = Run::from(ca.wait_with_output().expect("wait for up a"));
    let rb = Run::from(cb.wait_with_output().expect("wait for up b"));
    st.log(&format!(
        "both up (concurrently) in {:.1}s",
        t.elapsed().as_secs_f64()
    ));
    ra.assert_code(0);
    rb.assert_code(0);

    // Distinct ports, each backend answering on its own.
    assert_ne!(a.api_port(), b.api_port());
    for sb in [&a, &b] {
        let status = st.json(&sb.path, &["sandbox", "status", "--json"]);
        assert_eq!(status["schema_version"], 1);
        assert_eq!(status["instance_id"], sb.id.as_str());
        assert_eq!(status["ports"]["HELLO_API_PORT"], sb.api_port());
        assert_eq!(status["ports"]["HELLO_DB_PORT"], sb.db_port());
        let list = status["containers"].as_array().expect("containers list");
        assert_eq!(list.len(), 4, "four containers in {status}");
        assert!(
            list.iter().all(|c| c["state"] == "running"),
            "all running: {status}"
        );
        assert_eq!(status["state"], "running");
        assert_health_ok(sb.api_port());
    }
    assert_eq!(
        st.json(&a.path, &["sandbox", "status", "--json"])["ports"],
        serde_json::json!({
            "HELLO_API_PORT": a.api_port(), "HELLO_DB_PORT": a.db_port(),
            "HELLO_WORKER_PORT_1": a.port(2), "HELLO_WORKER_PORT_2": a.port(3),
        })
    );

    // State isolation: a file written to one backend's volume is absent in the other.
    let backend_a = container_of(&a.id, "backend");
    let backend_b = container_of(&b.id, "backend");
    docker_ok(&["exec", &backend_a.id, "sh", "-c", "echo A > /data/marker"]);
    assert_eq!(
        docker_ok(&["exec", &backend_a.id, "cat", "/data/marker"]).trim(),
        "A"
    );
    let other = docker(&["exec", &backend_b.id, "cat", "/data/marker"]);
    assert!(
        !other.status.success(),
        "the marker written in `{}` is visible in `{}`: {}",
        a.id,
        b.id,
        String::from_utf8_lossy(&other.stdout)
    );

    assert_eq!(st.list_status(&a.id), "running");
    assert_eq!(st.list_status(&b.id), "running");
}

/// A backend that dies at startup fails the gate at once (exit 2) with the failing
/// check and the service's log lines; the containers stay for debugging, and destroy
/// removes every Docker resource of the project.
#[test]
fn gate_failure_exits_2_fast_with_logs() {
    let mut st = Stack::new("gate", &[SLOT_GATE]);
    let sb = st.create("g", SLOT_GATE);

    let t = Instant::now();
    let run = st.kinfra_with(
        &sb.path,
        &["sandbox", "up", "--timeout", "60"],
        &[("BACKEND_FAIL", "1")],
    );
    let took = t.elapsed();
    st.log(&format!(
        "failing up returned in {:.1}s",
        took.as_secs_f64()
    ));
    run.assert_code(exit::GATE_FAILED);
    assert!(
        took < Duration::from_secs(20),
        "a container that exits must fail the gate at once, not at the deadline; took {took:?}"
    );
    run.assert_stderr_contains("Backend")
        .assert_stderr_contains("backend: simulated startup failure");

    // Left for debugging: the exited backend is still there.
    let backend = container_of(&sb.id, "backend");
    assert_eq!(backend.state, "exited", "{:?}", containers(&sb.id));
    assert_eq!(containers(&sb.id).len(), 4);

    let run = st.kinfra(&sb.path, &["sandbox", "destroy", "--yes"]);
    run.assert_code(0);
    assert_eq!(containers(&sb.id), vec![], "containers left after destroy");
    assert_eq!(volumes(&sb.id), Vec::<String>::new(), "volumes left");
    assert_eq!(networks(&sb.id), Vec::<String>::new(), "networks left");
    assert!(!sb.path.exists(), "the worktree is removed");
}

/// A port held outside Docker makes `up` exit 3 naming the port; once it is free `up`
/// succeeds, and `up` on the running instance succeeds again.
#[test]
fn port_conflict_exits_3_then_up_is_idempotent() {
    let mut st = Stack::new("port", &[SLOT_CONFLICT]);
    let sb = st.create("p", SLOT_CONFLICT);

    let listener = TcpListener::bind(("127.0.0.1", sb.db_port()))
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:{}: {e}", sb.db_port()));
    let run = st.kinfra(&sb.path, &["sandbox", "up", "--timeout", "60"]);
    run.assert_code(exit::CONFLICT)
        .assert_stderr_contains(&sb.db_port().to_string());
    assert_eq!(
        running(&sb.id),
        vec![],
        "nothing may start on a port conflict"
    );
    drop(listener);

    st.up(&sb);
    assert_health_ok(sb.api_port());
    let before = containers(&sb.id);
    let run = st.up(&sb);
    assert!(
        !run.stderr.contains("port conflict"),
        "own ports are no conflict: {run:?}"
    );
    assert_eq!(
        containers(&sb.id),
        before,
        "a second up keeps the running containers"
    );
    assert_health_ok(sb.api_port());
}

/// local-prod: created from a sandbox, started with its profile (the `extra` service),
/// fully stopped by down, and destroyed from the sandbox without touching the sandbox.
#[test]
fn local_prod_lifecycle_leaves_the_sandbox_alone() {
    let mut st = Stack::new("lp", &[0, SLOT_LOCAL_PROD_NEIGHBOUR]);
    let sb = st.create("s", SLOT_LOCAL_PROD_NEIGHBOUR);
    st.up(&sb);

    st.claim_local_prod();
    let run = st.kinfra(&sb.path, &["local-prod", "create"]);
    run.assert_code(0);
    let prod = st.env.dev().join("hello-prod");
    let lp = st.local_prod_id.as_str();
    assert_eq!(PathBuf::from(run.stdout.trim()), prod);
    assert!(prod.join("docker-compose.yml").is_file());
    assert!(prod.join("kinfra.toml").is_file());
    assert_eq!(st.registry()["local_prod"]["instance_id"], lp);

    let t = Instant::now();
    st.kinfra(&prod, &["local-prod", "up", "--timeout", "60"])
        .assert_code(0);
    st.log(&format!(
        "local-prod up in {:.1}s",
        t.elapsed().as_secs_f64()
    ));
    assert_eq!(container_of(lp, "extra").state, "running");
    assert_eq!(running(lp).len(), 5, "{:?}", containers(lp));
    assert_health_ok(PORT_BASE);

    st.log("local-prod checked");
    st.kinfra(&prod, &["local-prod", "down"]).assert_code(0);
    st.log("local-prod down");
    assert_eq!(
        running(lp),
        vec![],
        "down must stop the profile-only service too"
    );

    st.kinfra(&prod, &["local-prod", "up", "--timeout", "60"])
        .assert_code(0);
    assert_eq!(container_of(lp, "extra").state, "running");

    let sandbox_before = containers(&sb.id);
    assert_eq!(sandbox_before.len(), 4);
    st.log("local-prod up again");
    let run = st.kinfra(&sb.path, &["local-prod", "destroy", "--yes"]);
    run.assert_code(0);
    st.log("local-prod destroyed");
    assert_eq!(containers(lp), vec![], "local-prod containers left");
    assert_eq!(volumes(lp), Vec::<String>::new(), "volumes left");
    assert_eq!(networks(lp), Vec::<String>::new(), "networks left");
    assert!(st.registry()["local_prod"].is_null());

    // The sandbox is untouched: the same containers, still running, still registered.
    let sandbox_after = containers(&sb.id);
    assert_eq!(sandbox_after, sandbox_before);
    assert!(sandbox_after.iter().all(|c| c.state == "running"));
    assert!(sb.path.join(".env.sandbox").is_file());
    assert!(st.registry()["instances"][&sb.id].is_object());
    assert_health_ok(sb.api_port());
}

/// Destroy with Docker unreachable changes nothing; with Docker, it removes the
/// project's containers, volumes and network.
#[test]
fn destroy_removes_docker_resources_and_refuses_without_docker() {
    let mut st = Stack::new("destroy", &[SLOT_DESTROY]);
    let sb = st.create("d", SLOT_DESTROY);
    st.up(&sb);
    let before = containers(&sb.id);
    assert_eq!(before.len(), 4);
    assert_eq!(volumes(&sb.id).len(), 1);
    assert_eq!(networks(&sb.id).len(), 1);

    let run = st.kinfra_with(
        &sb.path,
        &["sandbox", "destroy", "--yes"],
        &[("DOCKER_HOST", "unix:///nonexistent.sock")],
    );
    run.assert_code(exit::EXTERNAL);
    assert!(sb.path.is_dir(), "worktree kept");
    assert!(sb.path.join(".env.sandbox").is_file(), "env file kept");
    assert!(
        st.registry()["instances"][&sb.id].is_object(),
        "registry entry kept"
    );
    assert_eq!(containers(&sb.id), before, "containers untouched");
    assert!(containers(&sb.id).iter().all(|c| c.state == "running"));

    let run = st.kinfra(&sb.path, &["sandbox", "destroy", "--yes"]);
    run.assert_code(0);
    assert_eq!(containers(&sb.id), vec![]);
    assert_eq!(volumes(&sb.id), Vec::<String>::new());
    assert_eq!(networks(&sb.id), Vec::<String>::new());
    assert!(!sb.path.exists());
    assert!(st.registry()["instances"].get(&sb.id).is_none());
}

/// `down` stops the containers and keeps the data; `down --volumes` removes it.
#[test]
fn down_keeps_volumes_and_down_volumes_removes_them() {
    let mut st = Stack::new("down", &[SLOT_DOWN]);
    let sb = st.create("w", SLOT_DOWN);
    st.up(&sb);
    assert_eq!(st.list_status(&sb.id), "running");

    st.kinfra(&sb.path, &["sandbox", "down"]).assert_code(0);
    assert_eq!(running(&sb.id), vec![]);
    assert_eq!(st.list_status(&sb.id), "stopped");
    assert_eq!(volumes(&sb.id).len(), 1, "plain down keeps the data volume");

    st.kinfra(&sb.path, &["sandbox", "down", "--volumes"])
        .assert_code(0);
    assert_eq!(volumes(&sb.id), Vec::<String>::new());
    assert_eq!(containers(&sb.id), vec![]);
    assert_eq!(st.list_status(&sb.id), "stopped");
}

/// Which compose flavor this machine's kinfra uses (printed for the CI log).
#[test]
fn reports_the_compose_flavor() {
    let mut st = Stack::new("flavor", &[SLOT_FLAVOR]);
    let sb = st.create("f", SLOT_FLAVOR);
    let run = st.kinfra(&sb.path, &["-v", "sandbox", "up", "--timeout", "60"]);
    run.assert_code(0);
    let flavor = ["docker-compose (v1)", "docker compose (v2)"]
        .into_iter()
        .find(|f| run.stderr.contains(f))
        .unwrap_or_else(|| panic!("`-v up` does not name the compose flavor: {run:?}"));
    eprintln!("compose flavor used by kinfra: {flavor}");
}

/// `shell` returns the shell's exit code; `logs` shows the service's output.
#[test]
fn shell_exit_code_and_logs() {
    let mut st = Stack::new("shell", &[SLOT_SHELL]);
    let sb = st.create("sh", SLOT_SHELL);
    st.up(&sb);

    let mut child = st
        .cmd(&sb.path, &["sandbox", "shell", "backend"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kinfra sandbox shell");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"exit 7\n")
        .expect("write to the shell");
    let run = Run::from(child.wait_with_output().expect("wait for shell"));
    run.assert_code(7);

    let run = st.kinfra(&sb.path, &["sandbox", "logs", "backend", "--tail", "5"]);
    run.assert_code(0);
    assert!(
        run.stdout.contains("backend: listening"),
        "logs lack the backend's start line: {run:?}"
    );
}

/// Writes a stand-in for the 1Password CLI (`op` cannot be installed here) into
/// `<dir>/fake-op-bin`: it answers `op item get hello-dev --format json` with one
/// concealed field holding `secret`, and fails like `op` for any other item.
fn fake_op_bin(dir: &Path, secret: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("fake-op-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in\n  *'item get hello-dev '*) printf '%s' '{{\"fields\":[{{\"type\":\"CONCEALED\",\"label\":\"api-secret\",\"value\":\"{secret}\"}},{{\"type\":\"STRING\",\"label\":\"user\",\"value\":\"me\"}}]}}' ;;\n  *) echo '[ERROR] \"x\" isn'\"'\"'t an item' >&2; exit 1 ;;\nesac\n"
    );
    let op = bin.join("op");
    std::fs::write(&op, script).unwrap();
    std::fs::set_permissions(&op, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Secrets (SPEC section 10): passed to compose only through the child environment —
/// never written to disk or printed; a missing `op` is a warning for a sandbox (insecure
/// defaults) and an error for local-prod unless `--no-secrets`.
#[test]
fn secrets_reach_compose_only_through_the_environment() {
    let mut st = Stack::new("secrets", &[0, 3]);
    // The app asks for one 1Password item; commit that config so worktrees get it.
    let toml = st.main.join("kinfra.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(
        "\n[secrets]\ntimeout = 10\nitems = [{ item = \"hello-dev\", fields = { \"api-secret\" = \"HELLO_SECRET\" } }]\n",
    );
    std::fs::write(&toml, text).unwrap();
    st.env.git(&st.main, &["commit", "-q", "-am", "secrets"]);
    let sb = st.create("s", 3);

    let secret = format!("s3cret-{}-value", std::process::id());
    let bin = fake_op_bin(st.env.root.path(), &secret);
    let path_with_op = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = st.kinfra_with(
        &sb.path,
        &["sandbox", "up", "--timeout", "60"],
        &[("PATH", &path_with_op)],
    );
    run.assert_code(0);
    let backend = container_of(&sb.id, "backend");
    let seen = docker_ok(&[
        "exec",
        &backend.id,
        "sh",
        "-c",
        "printf %s \"$HELLO_SECRET\"",
    ]);
    assert_eq!(seen, secret, "the backend did not get the secret");
    assert!(
        !run.stdout.contains(&secret) && !run.stderr.contains(&secret),
        "the secret was printed: {run:?}"
    );
    // Nowhere on disk: not in the worktree (env file included), not under HOME.
    let grep = Command::new("grep")
        .args(["-r", "-l", "-F", &secret])
        .arg(&sb.path)
        .arg(&st.env.home)
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "the secret was written to: {}",
        String::from_utf8_lossy(&grep.stdout)
    );

    // Without `op`: a sandbox warns and starts with the insecure default.
    let run = st.kinfra(&sb.path, &["sandbox", "up", "--timeout", "60"]);
    run.assert_code(0);
    run.assert_stderr_contains("`op` is not installed");
    run.assert_stderr_contains("insecure defaults");
    let backend = container_of(&sb.id, "backend");
    let seen = docker_ok(&[
        "exec",
        &backend.id,
        "sh",
        "-c",
        "printf %s \"$HELLO_SECRET\"",
    ]);
    assert_eq!(seen, "insecure-default");

    // local-prod refuses to start without its secrets, before touching Docker.
    st.claim_local_prod();
    let lp = st.local_prod_id.as_str();
    let prod = PathBuf::from(
        st.kinfra(&sb.path, &["local-prod", "create"])
            .assert_code(0)
            .stdout
            .trim(),
    );
    let run = st.kinfra(&prod, &["local-prod", "up", "--timeout", "60"]);
    run.assert_code(exit::REFUSED);
    run.assert_stderr_contains("cannot load secrets for local-prod");
    run.assert_stderr_contains("--no-secrets");
    assert!(
        containers(lp).is_empty(),
        "local-prod started without its secrets"
    );
    let run = st.kinfra_with(
        &prod,
        &["local-prod", "up", "--timeout", "60", "--no-wait"],
        &[("PATH", &path_with_op)],
    );
    run.assert_code(0);
    let backend = container_of(lp, "backend");
    let seen = docker_ok(&[
        "exec",
        &backend.id,
        "sh",
        "-c",
        "printf %s \"$HELLO_SECRET\"",
    ]);
    assert_eq!(seen, secret);
}

/// Docker's daemon down, or `docker` missing: one line naming what is missing, exit 1,
/// nothing changed.
#[test]
fn docker_down_or_missing_is_one_line_error() {
    let mut st = Stack::new("nodocker", &[3]);
    let sb = st.create("s", 3);
    let registry_before = std::fs::read(st.env.home.join(".kinfra-hello/instances.json")).unwrap();

    let run = st.kinfra_with(
        &sb.path,
        &["sandbox", "up"],
        &[("DOCKER_HOST", "unix:///nonexistent-kinfra.sock")],
    );
    run.assert_code(exit::EXTERNAL);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("Docker daemon is not reachable"),
        "{}",
        run.stderr
    );
    run.assert_stderr_contains("hint:");

    // A PATH with git but without docker.
    let bin = st.env.root.path().join("git-only-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let git = String::from_utf8_lossy(
        &Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    std::os::unix::fs::symlink(&git, bin.join("git")).unwrap();
    let run = st.kinfra_with(
        &sb.path,
        &["sandbox", "up"],
        &[("PATH", bin.to_str().unwrap())],
    );
    run.assert_code(exit::EXTERNAL);
    run.assert_stderr_contains("`docker` is not installed");

    assert!(containers(&sb.id).is_empty());
    assert_eq!(
        std::fs::read(st.env.home.join(".kinfra-hello/instances.json")).unwrap(),
        registry_before
    );
}
