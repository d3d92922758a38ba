//! Docker end-to-end tests of compose-aware kinfra: the real binary runs ktrdr's stack as
//! it is today and as it was in the seed era (`tests/fixtures/compose`) on the built-in
//! layout, runs a project that has no configuration at all (its layout derived from its
//! compose file), and refuses compose files and layouts two instances cannot share.
//!
//! Requirements as in `stack.rs`: a reachable Docker engine, Compose, and the local
//! image `kinfra-test/busybox:latest`; a missing one fails the test, never skips it.
//! scripts/test.sh runs this module once per Compose (`KINFRA_COMPOSE=v1`, then `v2`).
//!
//! Isolation: every test has its own HOME; compose projects, external networks and
//! volumes carry this test process's id (`t<pid>`, `…<pid>`; ktrdr sandboxes also the
//! Env's own prefix, `ktrdr-<tag>--`) and a guard removes them even when an assertion
//! fails; nothing else on the engine is touched. The ktrdr tests
//! publish slots 9 and 10 of the built-in layout (8009/8010, 5441/5442, … and automatic
//! ports from 20090 and 20100), on 127.0.0.1 only, one test at a time. Other modules
//! create ktrdr sandboxes expecting every slot's ports free, so scripts/test.sh runs
//! this module in a `cargo test` of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::common::{Env, Run, docker, exit, worktrees};

const IMAGE: &str = "kinfra-test/busybox:latest";
const PROJECT_LABEL: &str = "com.docker.compose.project";
const TODAY: &str = include_str!("../fixtures/compose/ktrdr-today.yml");
const SEED: &str = include_str!("../fixtures/compose/ktrdr-seed.yml");
/// The ktrdr tests' two slots: ports 8009/8010 and up, away from common services.
const SLOT_A: u32 = 9;
const SLOT_B: u32 = 10;
const GATE_TIMEOUT: &str = "120";

/// The ktrdr tests share the host ports of slots 9 and 10.
static KTRDR_SLOTS: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------------

#[track_caller]
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fail (never skip) with a clear message when Docker or the test image is missing.
fn require_docker() {
    let out: Output = docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "these end-to-end tests need a reachable Docker engine: `docker version` says: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let image = docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
    assert!(
        image.status.success(),
        "the test image `{IMAGE}` is missing: run scripts/build-test-image.sh first"
    );
}

/// The label on the external networks and volumes a test makes (who made them).
fn test_label() -> String {
    format!("kinfra-e2e-test={}", std::process::id())
}

fn project_filter(project: &str) -> String {
    format!("label={PROJECT_LABEL}={project}")
}

/// `service state` of every container of `project`, sorted.
fn containers(project: &str) -> Vec<(String, String)> {
    let out = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &project_filter(project),
        "--format",
        "{{.Label \"com.docker.compose.service\"}}\t{{.State}}",
    ]);
    let mut list: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(s, st)| (s.to_string(), st.to_lowercase()))
        .collect();
    list.sort();
    list
}

/// Every host port the running containers of `project` publish, as `docker ps` shows
/// them (`127.0.0.1:8009->8000/tcp, …`).
fn published_ports(project: &str) -> Vec<u16> {
    let out = docker_ok(&[
        "ps",
        "--filter",
        &project_filter(project),
        "--format",
        "{{.Ports}}",
    ]);
    let mut ports: Vec<u16> = out
        .lines()
        .flat_map(|l| l.split(','))
        .flat_map(host_ports)
        .collect();
    ports.sort_unstable();
    ports
}

/// The host side of one `docker ps` port entry (`0.0.0.0:4317-4318->4317-4318/tcp`
/// is a range); none for a port that is only exposed.
fn host_ports(entry: &str) -> Vec<u16> {
    let Some((host, _)) = entry.trim().split_once("->") else {
        return Vec::new();
    };
    let Some((_, ports)) = host.rsplit_once(':') else {
        return Vec::new();
    };
    let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
    match (first.parse::<u16>(), last.parse::<u16>()) {
        (Ok(a), Ok(b)) => (a..=b).collect(),
        _ => panic!("cannot read the ports of `docker ps` entry {entry:?}"),
    }
}

/// Remove everything labelled with `project` (the fallback after `destroy`).
fn purge(project: &str) {
    let filter = project_filter(project);
    let ids = |args: &[&str]| -> Vec<String> {
        String::from_utf8_lossy(&docker(args).stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let cs = ids(&["ps", "-aq", "--filter", &filter]);
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
// A test's repository, instances and Docker objects
// ---------------------------------------------------------------------------------

/// A sandbox a test made.
#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    path: PathBuf,
}

/// A hermetic HOME and main repository, and everything a test makes on the Docker
/// engine: removed when the test ends, pass or fail (instances first, then the
/// external networks and volumes they used).
struct Lab {
    env: Env,
    main: PathBuf,
    /// The layout's sandbox prefix (the Env's `ktrdr-<tag>--`, `<project>--`).
    prefix: String,
    sandboxes: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
    tag: String,
    started: Instant,
    _lock: Option<MutexGuard<'static, ()>>,
}

impl Lab {
    /// A ktrdr checkout (origin names ktrdr) holding `compose` as
    /// `docker-compose.sandbox.yml`, its shared directories made; holds the lock of
    /// slots 9 and 10.
    fn ktrdr(test: &str, compose: &str) -> Lab {
        require_docker();
        let lock = KTRDR_SLOTS.lock().unwrap_or_else(|p| p.into_inner());
        let env = Env::new();
        let main = env.main.clone();
        let prefix = env.prefix().to_string();
        let lab = Lab::around(env, main, &prefix, test, Some(lock));
        lab.commit("docker-compose.sandbox.yml", compose);
        lab.kinfra(&lab.main, &["sandbox", "init-shared"])
            .assert_code(0);
        lab
    }

    /// A checkout named `name` whose origin does not name ktrdr, with no kinfra.toml.
    fn project(name: &str, test: &str) -> Lab {
        require_docker();
        let env = Env::with_repo_name(name);
        let main = env.main.clone();
        let prefix = env.prefix().to_string();
        Lab::around(env, main, &prefix, test, None)
    }

    fn around(
        env: Env,
        main: PathBuf,
        prefix: &str,
        test: &str,
        lock: Option<MutexGuard<'static, ()>>,
    ) -> Lab {
        Lab {
            env,
            main,
            prefix: prefix.to_string(),
            sandboxes: Vec::new(),
            networks: Vec::new(),
            volumes: Vec::new(),
            tag: format!("t{}-{test}", std::process::id()),
            started: Instant::now(),
            _lock: lock,
        }
    }

    fn kinfra(&self, cwd: &Path, args: &[&str]) -> Run {
        self.env.kinfra(cwd, args)
    }

    /// Write `name` in the main repository and commit it.
    fn commit(&self, name: &str, text: &str) {
        std::fs::write(self.main.join(name), text).unwrap();
        self.env.git(&self.main, &["add", name]);
        self.env
            .git(&self.main, &["commit", "-q", "-m", &format!("add {name}")]);
    }

    /// `sandbox create NAME [--slot N]` from the main repository, asserting success;
    /// the instance is destroyed when the test ends.
    fn create(&mut self, name: &str, slot: Option<u32>) -> Sandbox {
        let id = format!("{}{name}", self.prefix);
        self.sandboxes.push(id.clone());
        let slot = slot.map(|s| s.to_string());
        let mut args = vec!["sandbox", "create", name];
        if let Some(s) = &slot {
            args.extend(["--slot", s.as_str()]);
        }
        let run = self.kinfra(&self.main, &args);
        run.assert_code(0);
        let path = PathBuf::from(run.stdout.trim());
        assert_eq!(path, self.env.dev().join(&id), "{run:?}");
        Sandbox { id, path }
    }

    /// `[-v] sandbox up` in `sb`, asserting success.
    fn up(&self, sb: &Sandbox, verbose: bool) -> Run {
        let t = Instant::now();
        let mut args = vec!["sandbox", "up", "--timeout", GATE_TIMEOUT];
        if verbose {
            args.insert(0, "-v");
        }
        let run = self.kinfra(&sb.path, &args);
        run.assert_code(0);
        self.log(&format!(
            "`{}` up in {:.1}s",
            sb.id,
            t.elapsed().as_secs_f64()
        ));
        run
    }

    /// `up` in both at once (they must run side by side); `a` with `-v`.
    fn up_both(&self, a: &Sandbox, b: &Sandbox) -> (Run, Run) {
        std::thread::scope(|s| {
            let first = s.spawn(|| self.up(a, true));
            let second = self.up(b, false);
            (first.join().expect("up of the first sandbox"), second)
        })
    }

    /// A Docker network (`external: true` in the compose file) removed at the end.
    fn network(&mut self, name: &str) {
        self.networks.push(name.to_string());
        docker_ok(&["network", "create", "--label", &test_label(), name]);
    }

    /// A Docker volume (`external: true` in the compose file) removed at the end.
    fn volume(&mut self, name: &str) {
        self.volumes.push(name.to_string());
        docker_ok(&["volume", "create", "--label", &test_label(), name]);
    }

    /// `status` of `id` in `sandbox list --json`, run from the main repository.
    fn list_status(&self, id: &str) -> String {
        let run = self.kinfra(&self.main, &["sandbox", "list", "--json"]);
        run.assert_code(0);
        let list: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("`list --json` printed no JSON ({e}): {run:?}"));
        list["instances"]
            .as_array()
            .expect("instances is a list")
            .iter()
            .find(|i| i["instance_id"] == id)
            .unwrap_or_else(|| panic!("`{id}` is not listed: {list:#}"))["status"]
            .as_str()
            .expect("status is a string")
            .to_string()
    }

    fn log(&self, what: &str) {
        eprintln!(
            "[{} +{:.1}s] {what}",
            self.tag,
            self.started.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for id in &self.sandboxes {
            let _ = self.kinfra(&self.main, &["sandbox", "destroy", id, "--force"]);
            purge(id);
        }
        for n in &self.networks {
            let _ = docker(&["network", "rm", n]);
        }
        for v in &self.volumes {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        self.log("cleaned up");
    }
}

/// The env file of an instance as key → value.
fn env_file(dir: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join(".env.sandbox")).unwrap();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A ktrdr fixture as the tests run it: published on 127.0.0.1 only (tests bind nothing
/// else; every quoted `"${KTRDR_…` in the fixtures is a port entry).
fn runnable(fixture: &str) -> String {
    let text = fixture.replace("\"${KTRDR_", "\"127.0.0.1:${KTRDR_");
    assert!(text.contains("127.0.0.1:${KTRDR_API_PORT:-8000}:8000"));
    // The test image's busybox `nc` has no `-z`: a healthcheck using it never passes.
    assert!(!text.contains("nc -z"));
    text
}

/// `kinfra -v … up` names the Compose it runs; when a lane chose one, it is that one.
fn assert_flavor(run: &Run) {
    let flavor = ["docker-compose (v1)", "docker compose (v2)"]
        .into_iter()
        .find(|f| run.stderr.contains(f))
        .unwrap_or_else(|| panic!("`up` does not name the compose flavor: {run:?}"));
    match std::env::var("KINFRA_COMPOSE").as_deref() {
        Ok("v1") => assert_eq!(flavor, "docker-compose (v1)"),
        Ok("v2") => assert_eq!(flavor, "docker compose (v2)"),
        _ => {}
    }
    eprintln!("compose flavor used by kinfra: {flavor}");
}

/// The ports the built-in layout gives slot `n` (SPEC §2): API, DB, workers 1..4.
fn ktrdr_core_ports(n: u16) -> Vec<u16> {
    let w = 5011 + 10 * (n - 1);
    vec![8000 + n, 5432 + n, w, w + 1, w + 2, w + 3]
}

/// `config check` in `dir` passes.
fn assert_config_check_passes(lab: &Lab, dir: &Path) {
    let run = lab.kinfra(dir, &["config", "check"]);
    run.assert_code(0);
}

// ---------------------------------------------------------------------------------
// ktrdr
// ---------------------------------------------------------------------------------

/// ktrdr as it is today: external resources checked before anything starts, agent
/// ports assigned per slot, two sandboxes side by side with no shared host port, and
/// the built-in Observability check dropped (the stack has no Jaeger of its own).
#[test]
fn ktrdr_today_runs_two_sandboxes_side_by_side() {
    let pid = std::process::id();
    let network = format!("kinfra-e2e-obs-{pid}");
    let volume = format!("kinfra-e2e-claude-{pid}");
    let compose = runnable(TODAY)
        .replace("devops-ai-observability", &network)
        .replace("ktrdr-agent-claude-auth", &volume);
    let mut lab = Lab::ktrdr("today", &compose);
    let a = lab.create(&format!("{}-a", lab.tag), Some(SLOT_A));
    let b = lab.create(&format!("{}-b", lab.tag), Some(SLOT_B));

    // The agent ports, which ktrdr itself never assigns, get ports from each slot's
    // block of automatic ports (services in name order: assessment, then design).
    let (ea, eb) = (env_file(&a.path), env_file(&b.path));
    assert_eq!(ea["KTRDR_ASSESSMENT_AGENT_PORT"], "20090", "{ea:?}");
    assert_eq!(ea["KTRDR_DESIGN_AGENT_PORT"], "20091", "{ea:?}");
    assert_eq!(eb["KTRDR_ASSESSMENT_AGENT_PORT"], "20100", "{eb:?}");
    assert_eq!(eb["KTRDR_DESIGN_AGENT_PORT"], "20101", "{eb:?}");

    // Without the external network and volume, `up` refuses before starting anything.
    let run = lab.kinfra(&a.path, &["sandbox", "up", "--timeout", GATE_TIMEOUT]);
    run.assert_code(exit::REFUSED)
        .assert_stderr_contains(&format!("network `{network}`"))
        .assert_stderr_contains(&format!("volume `{volume}`"))
        .assert_stderr_contains(&format!("docker network create {network}"));
    assert_eq!(containers(&a.id), vec![], "nothing may start: {run:?}");
    lab.network(&network);
    lab.volume(&volume);

    let (ra, rb) = lab.up_both(&a, &b);
    assert_flavor(&ra);
    ra.assert_stderr_contains("gate check `Observability` skipped");
    for run in [&ra, &rb] {
        for check in ["Database", "Backend", "Workers"] {
            run.assert_stderr_contains(&format!("✓ {check} ("));
        }
        assert!(!run.stderr.contains("✓ Observability"), "{run:?}");
        assert!(
            !run.stderr.contains("does not exist"),
            "the shared directories exist: no bind source may be missing: {run:?}"
        );
    }
    for sb in [&a, &b] {
        let cs = containers(&sb.id);
        assert_eq!(cs.len(), 9, "{cs:?}");
        assert!(cs.iter().all(|(_, st)| st == "running"), "{cs:?}");
        assert_eq!(lab.list_status(&sb.id), "running");
    }

    // Every published host port belongs to one sandbox only.
    let (pa, pb) = (published_ports(&a.id), published_ports(&b.id));
    let mut want_a = ktrdr_core_ports(SLOT_A as u16);
    want_a.extend([20090, 20091]);
    want_a.sort_unstable();
    let mut want_b = ktrdr_core_ports(SLOT_B as u16);
    want_b.extend([20100, 20101]);
    want_b.sort_unstable();
    assert_eq!(pa, want_a);
    assert_eq!(pb, want_b);
    let shared: BTreeSet<u16> = pa.iter().filter(|p| pb.contains(p)).copied().collect();
    assert!(shared.is_empty(), "ports published by both: {shared:?}");

    assert_config_check_passes(&lab, &lab.main);
    assert_config_check_passes(&lab, &a.path);

    for sb in [&a, &b] {
        lab.kinfra(&sb.path, &["sandbox", "destroy", "--yes"])
            .assert_code(0);
        assert_eq!(containers(&sb.id), vec![], "containers left by destroy");
    }
}

/// ktrdr in the seed era (per-slot Grafana, Jaeger, Prometheus): the env files are
/// exactly SPEC §3's 20 keys, two sandboxes run side by side, and the gate includes
/// Observability.
#[test]
fn ktrdr_seed_era_runs_two_sandboxes_side_by_side() {
    let mut lab = Lab::ktrdr("seed", &runnable(SEED));
    let a = lab.create(&format!("{}-a", lab.tag), Some(SLOT_A));
    let b = lab.create(&format!("{}-b", lab.tag), Some(SLOT_B));

    let shared = lab.env.home.join(".ktrdr/shared");
    for (sb, n) in [(&a, SLOT_A as u16), (&b, SLOT_B as u16)] {
        let text = std::fs::read_to_string(sb.path.join(".env.sandbox")).unwrap();
        let created = env_file(&sb.path)["CREATED_AT"].clone();
        assert!(
            is_python_utc_timestamp(&created),
            "CREATED_AT {created:?} is not `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`"
        );
        let w = 5011 + 10 * (n - 1);
        let want = format!(
            "COMPOSE_PROJECT_NAME={id}\n\
             CREATED_AT={created}\n\
             INSTANCE_ID={id}\n\
             KTRDR_API_PORT={api}\n\
             KTRDR_DATA_DIR={shared}/data\n\
             KTRDR_DB_PORT={db}\n\
             KTRDR_GRAFANA_PORT={grafana}\n\
             KTRDR_JAEGER_OTLP_GRPC_PORT={grpc}\n\
             KTRDR_JAEGER_OTLP_HTTP_PORT={http}\n\
             KTRDR_JAEGER_UI_PORT={jaeger}\n\
             KTRDR_MODELS_DIR={shared}/models\n\
             KTRDR_PROMETHEUS_PORT={prom}\n\
             KTRDR_SHARED_DIR={shared}\n\
             KTRDR_STRATEGIES_DIR={shared}/strategies\n\
             KTRDR_WORKER_PORT_1={w1}\n\
             KTRDR_WORKER_PORT_2={w2}\n\
             KTRDR_WORKER_PORT_3={w3}\n\
             KTRDR_WORKER_PORT_4={w4}\n\
             SANDBOX_VERSION=1\n\
             SLOT_NUMBER={n}\n",
            id = sb.id,
            api = 8000 + n,
            shared = shared.display(),
            db = 5432 + n,
            grafana = 3000 + n,
            grpc = 4317 + 10 * n,
            http = 4318 + 10 * n,
            jaeger = 16686 + n,
            prom = 9090 + n,
            w1 = w,
            w2 = w + 1,
            w3 = w + 2,
            w4 = w + 3,
        );
        assert_eq!(text, want, "env file of `{}`", sb.id);
        assert_eq!(text.lines().count(), 20);
    }

    let (ra, rb) = lab.up_both(&a, &b);
    assert_flavor(&ra);
    for run in [&ra, &rb] {
        assert!(
            !run.stderr.contains("skipped"),
            "no gate check may be dropped: {run:?}"
        );
        for check in ["Database", "Backend", "Workers", "Observability"] {
            run.assert_stderr_contains(&format!("✓ {check} ("));
        }
    }
    for sb in [&a, &b] {
        let cs = containers(&sb.id);
        let services: Vec<&str> = cs.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            services,
            [
                "backend",
                "backtest-worker-1",
                "backtest-worker-2",
                "db",
                "grafana",
                "jaeger",
                "prometheus",
                "training-worker-1",
                "training-worker-2"
            ],
            "the local-prod profile's workers must not start in a sandbox"
        );
        assert!(cs.iter().all(|(_, st)| st == "running"), "{cs:?}");
    }

    let (pa, pb) = (published_ports(&a.id), published_ports(&b.id));
    for (ports, n) in [(&pa, SLOT_A as u16), (&pb, SLOT_B as u16)] {
        let mut want = ktrdr_core_ports(n);
        want.extend([3000 + n, 16686 + n, 4317 + 10 * n, 4318 + 10 * n, 9090 + n]);
        want.sort_unstable();
        assert_eq!(*ports, want, "published ports of slot {n}");
    }
    let shared_ports: Vec<&u16> = pa.iter().filter(|p| pb.contains(p)).collect();
    assert!(
        shared_ports.is_empty(),
        "ports published by both: {shared_ports:?}"
    );
    assert_config_check_passes(&lab, &a.path);
}

/// `2026-01-20T16:29:14.123456+00:00`: Python's `isoformat()` of an aware UTC time.
fn is_python_utc_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 32
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..26)
        && &s[26..] == "+00:00"
}

// ---------------------------------------------------------------------------------
// Zero configuration
// ---------------------------------------------------------------------------------

/// A small application: a web server with a healthcheck, and a TCP service.
const SMALL_APP: &str = r#"services:
  web:
    image: kinfra-test/busybox:latest
    stop_grace_period: 1s
    ports:
      - "127.0.0.1:${WEB_PORT:-24580}:8080"
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 30
    command:
      - sh
      - -c
      - |
        trap 'exit 0' TERM INT
        mkdir -p /www
        echo ok > /www/index.html
        httpd -f -p 8080 -h /www &
        wait
  cache:
    image: kinfra-test/busybox:latest
    stop_grace_period: 1s
    ports:
      - "127.0.0.1:${CACHE_PORT:-24581}:6379"
    command:
      - sh
      - -c
      - |
        trap 'exit 0' TERM INT
        nc -ll -p 6379 -e cat &
        wait
"#;

/// A compose project with no kinfra.toml and no ktrdr origin: kinfra derives its
/// layout, keeps its registry under the XDG state directory, gives each sandbox its
/// own ports, and writes nothing to `~/.<project>` or `~/.ktrdr`.
#[test]
fn a_project_without_configuration_runs_two_sandboxes() {
    let name = format!("shop{}", std::process::id());
    let mut lab = Lab::project(&name, "zero");
    lab.commit("compose.yaml", SMALL_APP);
    let a = lab.create("a", None);
    let b = lab.create("b", None);
    assert_eq!(a.id, format!("{name}--a"));

    let home = lab.env.home.clone();
    let registry = home.join(format!(".local/state/kinfra/{name}/instances.json"));
    let reg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&registry)
            .unwrap_or_else(|e| panic!("read {}: {e}", registry.display())),
    )
    .unwrap();
    for sb in [&a, &b] {
        assert!(reg["instances"][&sb.id].is_object(), "{reg:#}");
    }
    let no_dotdirs = || {
        for dir in [format!(".{name}"), ".ktrdr".to_string()] {
            assert!(!home.join(&dir).exists(), "`~/{dir}` was written");
        }
    };
    no_dotdirs();

    // Automatic ports from the project's block in 24000..=31999, one set per sandbox.
    let port = |sb: &Sandbox, key: &str| -> u16 {
        env_file(&sb.path)[key]
            .parse()
            .unwrap_or_else(|e| panic!("{key} of `{}`: {e}", sb.id))
    };
    let mut all = BTreeSet::new();
    for sb in [&a, &b] {
        for key in ["WEB_PORT", "CACHE_PORT"] {
            let p = port(sb, key);
            assert!((24_000..=31_999).contains(&p), "{key}={p} of `{}`", sb.id);
            assert!(all.insert(p), "port {p} given twice");
        }
    }

    // `ports` shows the automatic ports of slot 1 (a's).
    let run = lab.kinfra(&lab.main, &["ports", "1"]);
    run.assert_code(0);
    for key in ["WEB_PORT", "CACHE_PORT"] {
        let want = port(&a, key).to_string();
        assert!(
            run.stdout.contains(key) && run.stdout.contains(&want),
            "`ports 1` lacks {key}={want}: {run:?}"
        );
    }

    // The gate comes from the compose file: a healthcheck, and a TCP port.
    for sb in [&a, &b] {
        let run = lab.up(sb, false);
        run.assert_stderr_contains("✓ web healthy (")
            .assert_stderr_contains(&format!("✓ cache on {} (", port(sb, "CACHE_PORT")));
    }
    for sb in [&a, &b] {
        assert_eq!(lab.list_status(&sb.id), "running");
        let mut want = vec![port(sb, "WEB_PORT"), port(sb, "CACHE_PORT")];
        want.sort_unstable();
        assert_eq!(published_ports(&sb.id), want, "ports of `{}`", sb.id);
    }

    for sb in [&a, &b] {
        lab.kinfra(&sb.path, &["sandbox", "down"]).assert_code(0);
        assert_eq!(lab.list_status(&sb.id), "stopped");
    }
    for sb in [&a, &b] {
        lab.kinfra(&sb.path, &["sandbox", "destroy", "--yes"])
            .assert_code(0);
        assert!(!sb.path.exists());
        assert_eq!(containers(&sb.id), vec![]);
    }
    let reg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&registry).unwrap()).unwrap();
    assert_eq!(reg["instances"], serde_json::json!({}), "{reg:#}");
    no_dotdirs();
}

// ---------------------------------------------------------------------------------
// Bad input: one line, an exit code, nothing created
// ---------------------------------------------------------------------------------

/// What a refused command must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    dev: Vec<String>,
    home: Vec<PathBuf>,
    worktrees: Vec<PathBuf>,
    branches: String,
}

fn snapshot(env: &Env) -> Snapshot {
    let mut dev: Vec<String> = std::fs::read_dir(env.dev())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dev.sort();
    Snapshot {
        dev,
        home: files_under(&env.home),
        worktrees: worktrees(env, &env.main),
        branches: env.git(&env.main, &["branch", "--list", "--format=%(refname)"]),
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A repository `bad<pid>-<case>` (origin not ktrdr, no kinfra.toml) whose main
/// commit holds `files`.
fn bad_repo(case: &str, files: &[(&str, &str)]) -> Env {
    let env = Env::with_repo_name(&format!("bad{}-{case}", std::process::id()));
    for (name, text) in files {
        std::fs::write(env.main.join(name), text).unwrap();
        env.git(&env.main, &["add", name]);
    }
    if !files.is_empty() {
        env.git(&env.main, &["commit", "-q", "-m", "files"]);
    }
    env
}

/// The run failed with `code` and one `error:` line holding every needle (at most a
/// `hint:` line besides); returns the error line.
#[track_caller]
fn assert_one_line_error(run: &Run, code: i32, needles: &[&str]) -> String {
    run.assert_code(code);
    assert!(run.stdout.is_empty(), "nothing on stdout: {run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        !lines.is_empty()
            && lines[0].starts_with("error: ")
            && lines[1..].iter().all(|l| l.starts_with("hint: "))
            && lines.len() <= 2,
        "want one `error:` line (and a hint): {run:?}"
    );
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} missing from: {}", lines[0]);
    }
    lines[0].to_string()
}

/// `sandbox create x` in `env`'s main repository is refused with `code` and `needles`,
/// and nothing is created: no worktree, branch, file under HOME or Docker object.
#[track_caller]
fn assert_create_refused(env: &Env, code: i32, needles: &[&str]) -> Run {
    let before = snapshot(env);
    let run = env.kinfra(&env.main, &["sandbox", "create", "x"]);
    assert_one_line_error(&run, code, needles);
    assert_eq!(snapshot(env), before, "a refused create changed something");
    let project = env.id_of("x");
    assert!(!env.sibling(&project).exists(), "the worktree was left");
    assert_eq!(containers(&project), vec![]);
    run
}

#[test]
fn a_repository_without_compose_file_or_config_is_refused() {
    let env = bad_repo("plain", &[]);
    let run = assert_create_refused(&env, exit::USAGE, &["is not a ktrdr repository"]);
    run.assert_stderr_contains("hint:")
        .assert_stderr_contains("compose file");
}

const MALFORMED: &str = "services:\n  web:\n    image: x\n    ports: [\n      - \"1:2\"\n";

#[test]
fn malformed_yaml_names_the_file_and_line() {
    let env = bad_repo("yaml", &[("compose.yaml", MALFORMED)]);
    assert_create_refused(&env, exit::FAILURE, &["compose.yaml:5", "invalid YAML"]);
}

/// A compose error found at create names the file the user can open: the main
/// checkout's (or the commit's), not the worktree create never made.
#[test]
fn a_create_time_compose_error_names_a_file_that_exists() {
    let env = bad_repo("yamlpath", &[("compose.yaml", MALFORMED)]);
    let line = assert_one_line_error(
        &env.kinfra(&env.main, &["sandbox", "create", "x"]),
        exit::FAILURE,
        &["compose.yaml:5"],
    );
    let named = line
        .split('`')
        .find(|part| part.ends_with("compose.yaml:5"))
        .and_then(|part| part.strip_suffix(":5"))
        .unwrap_or_else(|| panic!("no file named in: {line}"));
    assert!(
        Path::new(named).is_file(),
        "the error names `{named}`, which does not exist: {line}"
    );
}

#[test]
fn a_literal_host_port_is_refused_naming_service_and_port() {
    let compose = "services:\n  web:\n    image: kinfra-test/busybox:latest\n    ports:\n      - \"9000:80\"\n";
    let env = bad_repo("literal", &[("compose.yaml", compose)]);
    let run = assert_create_refused(&env, exit::FAILURE, &["`web`", "9000", "literal"]);
    run.assert_stderr_contains("${");
}

#[test]
fn a_host_port_published_twice_is_refused() {
    let compose = "services:\n  web:\n    image: kinfra-test/busybox:latest\n    ports:\n      - \"${WEB_PORT:-25001}:80\"\n  api:\n    image: kinfra-test/busybox:latest\n    ports:\n      - \"${WEB_PORT:-25001}:81\"\n";
    let env = bad_repo("twice", &[("compose.yaml", compose)]);
    assert_create_refused(&env, exit::FAILURE, &["25001", "`web`", "`api`"]);
}

#[test]
fn a_required_variable_left_unset_shows_its_message() {
    let compose = "services:\n  web:\n    image: kinfra-test/busybox:latest\n    environment:\n      TOKEN: \"${APP_TOKEN:?set APP_TOKEN to the API token}\"\n    ports:\n      - \"${WEB_PORT:-25001}:80\"\n";
    let env = bad_repo("required", &[("compose.yaml", compose)]);
    assert_create_refused(
        &env,
        exit::FAILURE,
        &["APP_TOKEN", "set APP_TOKEN to the API token"],
    );
}

#[test]
fn a_port_variable_with_a_non_numeric_default_is_refused() {
    let compose = "services:\n  web:\n    image: kinfra-test/busybox:latest\n    ports:\n      - \"${WEB_PORT:-http}:80\"\n";
    let env = bad_repo("nonnumeric", &[("compose.yaml", compose)]);
    assert_create_refused(&env, exit::FAILURE, &["WEB_PORT", "http", "not a number"]);
}

/// A `kinfra.toml` port changed after one sandbox was made gives a new sandbox the
/// port the first one's env file holds: `up` refuses (exit 3) naming that instance,
/// before anything starts.
#[test]
fn a_layout_port_held_by_another_instance_stops_up() {
    let name = format!("bad{}-layout", std::process::id());
    let mut lab = Lab::project(&name, "layout");
    let compose = "services:\n  web:\n    image: kinfra-test/busybox:latest\n    ports:\n      - \"127.0.0.1:${WEB_PORT:-26080}:8080\"\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM INT; sleep 600 & wait\"]\n";
    lab.commit("compose.yaml", compose);
    // The automatic block is pinned: the one picked from the (per-process) project name
    // could be 26000.., which these layout ports would fall in.
    let toml = "[ports.WEB_PORT]\nlocal_prod = 26000\nsandbox = 26001\nstride = 1\n\n[auto_ports]\nbase = 30000\nper_slot = 10\n";
    lab.commit("kinfra.toml", toml);
    // Explicit slots: a busy port is then a clear error, not a silent other slot.
    let a = lab.create("a", Some(1));
    assert_eq!(env_file(&a.path)["WEB_PORT"], "26001");

    // Slot 2 now gets 26001 too: a's env file still holds it.
    lab.commit(
        "kinfra.toml",
        &toml
            .replace("sandbox = 26001", "sandbox = 26000")
            .replace("local_prod = 26000", "local_prod = 26020"),
    );
    let b = lab.create("b", Some(2));
    assert_eq!(env_file(&b.path)["WEB_PORT"], "26001");

    let run = lab.kinfra(&b.path, &["sandbox", "up", "--timeout", "30"]);
    assert_one_line_error(&run, exit::CONFLICT, &["26001", &a.id]);
    assert_eq!(containers(&b.id), vec![], "nothing may start");
    assert_eq!(containers(&a.id), vec![]);
}

/// ktrdr's "database auth failures on slot reuse": `up` looks for what an earlier
/// instance of the same id left before it starts anything. A volume of the project
/// older than the instance makes `up` refuse, naming the volume, with nothing started
/// and the volume kept.
#[test]
fn up_refuses_a_volume_an_earlier_instance_left() {
    let name = format!("reuse{}", std::process::id());
    let mut lab = Lab::project(&name, "reuse");
    lab.commit("compose.yaml", SMALL_APP);
    let sb = lab.create("a", None);
    let old = crate::common::LabelledVolume::create(&sb.id, &format!("{}_olddata", sb.id));
    // The instance as if made after the volume (an earlier instance's data).
    let registry = lab
        .env
        .home
        .join(format!(".local/state/kinfra/{name}/instances.json"));
    let mut reg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&registry).unwrap()).unwrap();
    reg["instances"][&sb.id]["created_at"] = "2099-01-01T00:00:00.000000+00:00".into();
    std::fs::write(&registry, serde_json::to_string_pretty(&reg).unwrap()).unwrap();

    let run = lab.kinfra(&sb.path, &["sandbox", "up", "--timeout", GATE_TIMEOUT]);
    run.assert_code(exit::CONFLICT);
    assert!(run.stderr.contains(&old.0), "{run:?}");
    assert!(containers(&sb.id).is_empty(), "{:?}", containers(&sb.id));
    assert!(old.exists());
}
