//! Sandboxes on other machines over ssh, against the test hosts of `scripts/hosts.sh`:
//! `h1` and `h2`, each a network namespace with its own Docker engine, sshd, HOME and
//! `/tmp` (so a host cannot see this machine's test homes, registries or origins, which
//! live under /tmp: everything it has, it got over ssh).
//!
//! Without the harness (`scripts/hosts.sh up`) these tests skip with a message, unless
//! KINFRA_TEST_HOSTS=1 (scripts/test.sh's lane "hosts"), where they fail.
//!
//! Isolation: every test has its own local HOME (its own hosts file, remote index and
//! ssh control sockets) and Env tag (so its own repository key and checkout on each
//! host, and instance ids no other test uses); the hosts' registries are shared, and
//! every test destroys on the hosts what it made, even when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::exit;
use crate::common::{Env, Run};

/// The test hosts' ssh config, written by `scripts/hosts.sh up`.
fn ssh_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/hosts/ssh_config")
}

fn ssh_ok(host: &str) -> bool {
    Command::new("ssh")
        .args(["-F"])
        .arg(ssh_config())
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=3",
            host,
            "true",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the test hosts are up. With KINFRA_TEST_HOSTS=1, a missing harness fails
/// the test; otherwise the test is skipped with a note.
fn harness() -> bool {
    let up = ssh_config().is_file() && ssh_ok("h1") && ssh_ok("h2");
    if !up {
        assert!(
            std::env::var("KINFRA_TEST_HOSTS").as_deref() != Ok("1"),
            "KINFRA_TEST_HOSTS=1 but the test hosts do not answer: run `scripts/hosts.sh up`"
        );
        eprintln!("skipped: the test hosts are not up (`scripts/hosts.sh up`)");
    }
    up
}

/// `kinfra ARGS` in `cwd` with the test hosts' ssh config.
fn kinfra(env: &Env, cwd: &Path, args: &[&str]) -> Run {
    let mut cmd = env.kinfra_cmd(cwd, args);
    cmd.env("KINFRA_SSH_CONFIG", ssh_config());
    Run::from(cmd.output().expect("run kinfra"))
}

/// An Env with `h1` and `h2` registered.
fn env_with_hosts() -> Env {
    let env = Env::new();
    for h in ["h1", "h2"] {
        kinfra(&env, &env.main, &["hosts", "add", h, &format!("ssh://{h}")]).assert_code(0);
    }
    env
}

/// A shell command on a test host (its own HOME, Docker engine and /tmp).
fn on_host(host: &str, script: &str) -> std::process::Output {
    Command::new("ssh")
        .arg("-F")
        .arg(ssh_config())
        .args(["-o", "BatchMode=yes", host, script])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

#[test]
fn hosts_are_added_listed_and_removed_and_local_is_always_there() {
    let env = Env::new();
    let run = kinfra(&env, &env.main, &["hosts", "list", "--json"]);
    run.assert_code(0);
    let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(list["schema_version"], 1);
    assert_eq!(list["hosts"][0]["name"], "local");
    kinfra(
        &env,
        &env.main,
        &["hosts", "add", "box1", "ssh://me@box1:2222"],
    )
    .assert_code(0);
    kinfra(&env, &env.main, &["hosts", "add", "box1", "ssh://box1"]).assert_code(exit::CONFLICT);
    kinfra(&env, &env.main, &["hosts", "add", "box2", "box2"]).assert_code(exit::USAGE);
    kinfra(&env, &env.main, &["hosts", "add", "local", "ssh://x"]).assert_code(exit::USAGE);
    let run = kinfra(&env, &env.main, &["hosts", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = list["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local", "box1"]);
    assert_eq!(list["hosts"][1]["url"], "ssh://me@box1:2222");
    kinfra(&env, &env.main, &["hosts", "rm", "nope"]).assert_code(exit::NOT_FOUND);
    kinfra(&env, &env.main, &["hosts", "rm", "box1"]).assert_code(0);
    let run = kinfra(&env, &env.main, &["hosts", "list", "--json"]);
    assert!(!run.stdout.contains("box1"), "{}", run.stdout);
}

#[test]
fn check_reports_each_hosts_engine_and_an_unreachable_one() {
    if !harness() {
        return;
    }
    let env = env_with_hosts();
    let run = kinfra(&env, &env.main, &["hosts", "check", "--json"]);
    run.assert_code(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    for (i, h) in ["h1", "h2"].iter().enumerate() {
        let row = &report["hosts"][i];
        assert_eq!(row["name"], *h);
        assert_eq!(row["reachable"], true, "{report:#}");
        assert!(
            row["docker"].as_str().is_some_and(|v| !v.is_empty()),
            "{report:#}"
        );
        assert!(
            row["compose"].as_str().is_some_and(|v| !v.is_empty()),
            "{report:#}"
        );
        assert!(row["mem_available_mb"].as_u64().is_some(), "{report:#}");
    }
    // Nothing listens on this port of h2's address: unreachable, named, exit 6.
    kinfra(
        &env,
        &env.main,
        &["hosts", "add", "dead", "ssh://10.251.2.2:2999"],
    )
    .assert_code(0);
    let run = kinfra(&env, &env.main, &["hosts", "check", "dead"]);
    run.assert_code(exit::EXTERNAL);
    assert!(run.stdout.contains("dead: unreachable"), "{}", run.stdout);
}

/// Options that mean nothing on another host are refused before the host is asked (so
/// no harness is needed: the host is never reached) and nothing is made here.
#[test]
fn slot_and_data_from_are_refused_with_another_host_before_anything_happens() {
    let env = Env::new();
    kinfra(
        &env,
        &env.main,
        &["hosts", "add", "far", "ssh://127.0.0.1:1"],
    )
    .assert_code(0);
    let before = env.git(&env.main, &["for-each-ref"]);
    for (flag, value) in [("--slot", "3"), ("--data-from", "local-prod")] {
        let run = kinfra(
            &env,
            &env.main,
            &["sandbox", "create", "x", "--host", "far", flag, value],
        );
        run.assert_code(exit::USAGE);
        assert!(
            run.stderr
                .contains(&format!("{flag} cannot be given with --host far")),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    }
    assert_eq!(env.git(&env.main, &["for-each-ref"]), before);
    assert_eq!(env.git(&env.main, &["worktree", "list"]).lines().count(), 1);
}

/// `destroy --all` never reaches another host: it names this checkout's sandboxes there
/// and leaves them (and the remote index) as they were. No harness: no host is asked.
#[test]
fn destroy_all_names_the_sandboxes_on_other_hosts_and_leaves_them() {
    let env = Env::new();
    let entry = |id: &str, repo: &Path| {
        serde_json::json!({
            "instance_id": id, "name": id, "host": "far", "project": "x",
            "checkout": "/srv/x", "path": format!("/srv/{id}"), "branch": id,
            "created_at": "2026-01-01T00:00:00+00:00",
            "local_repo": repo.display().to_string(),
        })
    };
    let index = serde_json::json!({
        "schema_version": 1,
        "instances": {
            "mine--far": entry("mine--far", &env.main),
            "theirs--far": entry("theirs--far", Path::new("/elsewhere/repo")),
        },
    });
    let state = env.home.join(".local/state/kinfra");
    std::fs::create_dir_all(&state).unwrap();
    let index_file = state.join("remote-instances.json");
    let text = serde_json::to_string_pretty(&index).unwrap();
    std::fs::write(&index_file, &text).unwrap();
    let local = env.create_sandbox("all-local");
    let run = kinfra(&env, &env.main, &["sandbox", "destroy", "--all", "--yes"]);
    run.assert_code(0);
    assert!(!local.exists());
    assert!(
        run.stderr
            .contains("leaving 1 sandbox(es) on other hosts alone: `mine--far` on `far`"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("theirs--far"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&index_file).unwrap(), text);
}

/// A hello-stack repository in an Env with h1 and h2 registered, and the sandboxes a
/// test made on the hosts, destroyed (with --force) when the test ends.
struct Remote {
    env: Env,
    main: PathBuf,
    made: Vec<String>,
}

impl Remote {
    fn new() -> Remote {
        let env = env_with_hosts();
        let (main, _) = crate::common::hello_repo(&env);
        Remote {
            env,
            main,
            made: Vec::new(),
        }
    }

    fn kinfra(&self, args: &[&str]) -> Run {
        kinfra(&self.env, &self.main, args)
    }

    /// A sandbox name unique to this test process and Env.
    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.env.tag)
    }

    /// `sandbox create NAME --host HOST [extra]`, asserting success; returns the id.
    fn create(&mut self, what: &str, host: &str, extra: &[&str]) -> (String, Run) {
        let name = self.name(what);
        let id = format!("hello--{name}");
        self.made.push(id.clone());
        let mut args = vec!["sandbox", "create", &name, "--host", host];
        args.extend(extra);
        let run = self.kinfra(&args);
        run.assert_code(0);
        (id, run)
    }

    fn list(&self) -> (serde_json::Value, Run) {
        let run = self.kinfra(&["sandbox", "list", "--json"]);
        run.assert_code(0);
        (serde_json::from_str(&run.stdout).unwrap(), run)
    }

    fn row(&self, id: &str) -> serde_json::Value {
        let (list, _) = self.list();
        list["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["instance_id"] == id)
            .unwrap_or_else(|| panic!("`{id}` not listed: {list:#}"))
            .clone()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        for id in &self.made {
            let _ = self.kinfra(&["sandbox", "destroy", id, "--force", "--yes"]);
        }
    }
}

/// The directory of sandbox `id` on `host`, from the host's own registry.
fn remote_path(r: &Remote, id: &str) -> String {
    let row = r.row(id);
    row["path"].as_str().unwrap().to_string()
}

#[test]
fn sandboxes_on_each_host_are_listed_gated_and_destroyed_with_their_branch_fetched() {
    if !harness() {
        return;
    }
    let mut r = Remote::new();
    let (a, run) = r.create("a", "h1", &["--up"]);
    assert!(
        run.stderr.contains("installed kinfra on host `h1`")
            || run.stderr.contains("created sandbox"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("pushed from here"), "{}", run.stderr);
    let (b, _) = r.create("b", "h2", &[]);
    // Nothing of them here: no worktree, no local registry entry.
    assert!(!r.env.dev().join(&a).exists());
    let local_registry = r.env.home.join(".kinfra-hello/instances.json");
    let text = std::fs::read_to_string(&local_registry).unwrap_or_default();
    assert!(!text.contains(&a), "{text}");

    let (list, run) = r.list();
    let row_a = r.row(&a);
    assert_eq!(row_a["host"], "h1", "{list:#}");
    assert_eq!(row_a["status"], "running", "{list:#}");
    let row_b = r.row(&b);
    assert_eq!(row_b["host"], "h2");
    assert_eq!(row_b["status"], "never started", "{list:#}");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    let table = r.kinfra(&["sandbox", "list"]);
    assert!(table.stdout.contains("HOST"), "{}", table.stdout);

    // The gate ran on h1 against h1's 127.0.0.1: the API answers there.
    let port = row_a["api_port"].as_u64().unwrap();
    let probe = on_host(
        "h1",
        &format!("wget -q -O - http://127.0.0.1:{port}/api/v1/health"),
    );
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    // Commands by name run on the host.
    let status = r.kinfra(&["sandbox", "status", &a]);
    status.assert_code(0);
    assert!(status.stdout.contains("running"), "{}", status.stdout);
    let path = r.kinfra(&["sandbox", "path", &a]);
    assert_eq!(path.stdout.trim(), format!("h1:{}", remote_path(&r, &a)));

    // Work committed on the host comes back with destroy.
    let dir = remote_path(&r, &a);
    let commit = on_host(
        "h1",
        &format!(
            "cd {dir} && echo work > work.txt && git add work.txt && \
             git -c user.name=r -c user.email=r@r commit -q -m 'work on h1' && git rev-parse HEAD"
        ),
    );
    assert!(
        commit.status.success(),
        "{}",
        String::from_utf8_lossy(&commit.stderr)
    );
    let tip = String::from_utf8_lossy(&commit.stdout).trim().to_string();
    r.kinfra(&["sandbox", "destroy", &a, "--yes"])
        .assert_code(0);
    assert_eq!(r.env.git(&r.main, &["rev-parse", &a]).trim(), tip);
    assert_eq!(
        r.env
            .git(&r.main, &["rev-parse", &format!("refs/remotes/h1/{a}")])
            .trim(),
        tip
    );
    let (list, _) = r.list();
    assert!(!list.to_string().contains(&a), "{list:#}");
    let gone = on_host("h1", &format!("test -e {dir}"));
    assert!(!gone.status.success(), "{dir} still on h1");
    r.kinfra(&["sandbox", "destroy", &b, "--yes"])
        .assert_code(0);
}

#[test]
fn names_are_unique_across_hosts_and_an_unreachable_host_leaves_nothing_here() {
    if !harness() {
        return;
    }
    let mut r = Remote::new();
    let (a, _) = r.create("one", "h1", &[]);
    let name = r.name("one");
    for host in ["h2", "local"] {
        let run = r.kinfra(&["sandbox", "create", &name, "--host", host]);
        run.assert_code(exit::CONFLICT);
        assert!(run.stderr.contains("host `h1`"), "{}", run.stderr);
    }
    // `hosts rm` refuses while a sandbox lives there; --force only forgets it.
    r.kinfra(&["hosts", "rm", "h1"]).assert_code(exit::REFUSED);

    r.kinfra(&["hosts", "add", "dead", "ssh://10.251.1.2:2999"])
        .assert_code(0);
    let before = r.env.git(&r.main, &["for-each-ref"]);
    let run = r.kinfra(&["sandbox", "create", &r.name("lost"), "--host", "dead"]);
    run.assert_code(exit::EXTERNAL);
    assert!(run.stderr.contains("unreachable"), "{}", run.stderr);
    assert_eq!(r.env.git(&r.main, &["for-each-ref"]), before);
    let (list, _) = r.list();
    assert!(!list.to_string().contains("lost"), "{list:#}");
    assert!(r.env.git(&r.main, &["worktree", "list"]).lines().count() == 1);

    r.kinfra(&["sandbox", "destroy", &a, "--yes"])
        .assert_code(0);
    r.kinfra(&["hosts", "rm", "h1"]).assert_code(0);
}

#[test]
fn the_start_commit_reaches_the_host_by_clone_of_origin_or_by_push() {
    if !harness() {
        return;
    }
    let mut r = Remote::new();
    // An origin the hosts can read (scripts/hosts.sh's shared directory is visible to
    // them; the test's /tmp is not) holding the first commit only.
    let shared = Path::new("/var/lib/kinfra-test-hosts/shared").join(&r.env.tag);
    let _ = std::fs::remove_dir_all(&shared);
    std::fs::create_dir_all(&shared).unwrap();
    let origin = shared.join("hello.git");
    r.env.git(
        &shared,
        &["init", "-q", "--bare", "-b", "main", "hello.git"],
    );
    r.env.git(
        &r.main,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    r.env.git(&r.main, &["push", "-q", "origin", "main"]);
    // An unpushed commit: the sandbox must start from it.
    std::fs::write(r.main.join("local.txt"), "not pushed\n").unwrap();
    r.env.git(&r.main, &["add", "local.txt"]);
    r.env.git(&r.main, &["commit", "-q", "-m", "unpushed"]);
    let head = r
        .env
        .git(&r.main, &["rev-parse", "HEAD"])
        .trim()
        .to_string();
    let (a, run) = r.create("cloned", "h1", &[]);
    assert!(
        run.stderr.contains("cloned from origin by the host"),
        "{}",
        run.stderr
    );
    let at = on_host(
        "h1",
        &format!("cd {} && git rev-parse HEAD", remote_path(&r, &a)),
    );
    assert_eq!(String::from_utf8_lossy(&at.stdout).trim(), head);

    // Origin unreachable from the host (its URL names this machine's /tmp): push.
    let mut p = Remote::new();
    let hidden = p.env.root.path().join("origin/hello.git");
    p.env.git(
        p.env.root.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            hidden.to_str().unwrap(),
        ],
    );
    p.env.git(
        &p.main,
        &["remote", "add", "origin", hidden.to_str().unwrap()],
    );
    let head = p
        .env
        .git(&p.main, &["rev-parse", "HEAD"])
        .trim()
        .to_string();
    let (b, run) = p.create("pushed", "h2", &[]);
    assert!(run.stderr.contains("pushed from here"), "{}", run.stderr);
    let at = on_host(
        "h2",
        &format!(
            "cd {} && git rev-parse HEAD && git remote get-url origin",
            remote_path(&p, &b)
        ),
    );
    let out = String::from_utf8_lossy(&at.stdout);
    assert!(out.starts_with(&head), "{out}");
    r.kinfra(&["sandbox", "destroy", &a, "--yes"])
        .assert_code(0);
    p.kinfra(&["sandbox", "destroy", &b, "--yes"])
        .assert_code(0);
    let _ = std::fs::remove_dir_all(&shared);
}

/// An extra sshd in h2's namespaces on its own port (a host a test can kill), stopped
/// with everything it started when dropped.
struct ExtraSshd {
    port: u16,
    pidfile: PathBuf,
}

impl ExtraSshd {
    fn start(port: u16) -> ExtraSshd {
        // sshd writes it from inside the host's mount namespace: under /run, which the
        // host sees too.
        let pidfile = PathBuf::from(format!("/run/kinfra-hosts/extra-sshd-{port}.pid"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/hosts.sh");
        let out = Command::new(&script)
            .args(["sshd", "h2", &port.to_string()])
            .arg(&pidfile)
            .output()
            .expect("run scripts/hosts.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ExtraSshd { port, pidfile }
    }

    /// Kill the sshd and every process under it (the sessions of open connections),
    /// by their ids.
    fn kill(&self) {
        let Ok(text) = std::fs::read_to_string(&self.pidfile) else {
            return;
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            return;
        };
        let mut all = vec![pid];
        let mut i = 0;
        while i < all.len() {
            let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", all[i]))
                .unwrap_or_default();
            all.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
            i += 1;
        }
        for p in all {
            let _ = Command::new("kill")
                .args(["-KILL", &p.to_string()])
                .status();
        }
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

impl Drop for ExtraSshd {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn a_host_killed_between_lists_shows_unreachable_and_keeps_its_sandboxes() {
    if !harness() {
        return;
    }
    let mut r = Remote::new();
    let port = 2200 + u16::try_from(std::process::id() % 500).unwrap();
    let sshd = ExtraSshd::start(port);
    let url = format!("ssh://10.251.2.2:{}", sshd.port);
    r.kinfra(&["hosts", "add", "h2b", &url]).assert_code(0);
    let (on_h1, _) = r.create("alive", "h1", &[]);
    let (doomed, _) = r.create("doomed", "h2b", &[]);
    assert_eq!(r.row(&doomed)["status"], "never started");

    sshd.kill();
    let started = std::time::Instant::now();
    let (list, run) = r.list();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "list waited too long"
    );
    let row = r.row(&doomed);
    assert_eq!(row["status"], "unreachable", "{list:#}");
    assert_eq!(row["host"], "h2b");
    assert_eq!(r.row(&on_h1)["status"], "never started", "{list:#}");
    assert!(
        run.stderr.contains("host `h2b` did not answer"),
        "{}",
        run.stderr
    );
    let host = list["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "h2b")
        .unwrap();
    assert_eq!(host["reachable"], false);

    // destroy is refused while the host does not answer; the sandbox stays registered.
    let run = r.kinfra(&["sandbox", "destroy", &doomed, "--yes"]);
    run.assert_code(exit::EXTERNAL);
    assert!(run.stderr.contains("stays registered"), "{}", run.stderr);
    assert_eq!(r.row(&doomed)["status"], "unreachable");

    // Back up: destroyed for real.
    let sshd = ExtraSshd::start(port);
    r.kinfra(&["sandbox", "destroy", &doomed, "--yes"])
        .assert_code(0);
    r.kinfra(&["sandbox", "destroy", &on_h1, "--yes"])
        .assert_code(0);
    drop(sshd);
}

#[test]
fn forward_brings_the_ports_here_until_ctrl_c() {
    if !harness() {
        return;
    }
    let mut r = Remote::new();
    let (a, _) = r.create("fwd", "h1", &["--up"]);
    let mut cmd = r.env.kinfra_cmd(&r.main, &["forward", &a]);
    cmd.env("KINFRA_SSH_CONFIG", ssh_config())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn kinfra forward");
    let stdout = child.stdout.take().unwrap();
    // `HELLO_API_PORT 127.0.0.1:LOCAL -> h1:REMOTE`
    let mut api = None;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("HELLO_API_PORT 127.0.0.1:") {
            api = rest.split(' ').next().and_then(|p| p.parse::<u16>().ok());
        }
        if line.starts_with("HELLO_WORKER_PORT_2") {
            break;
        }
    }
    let api = api.expect("the API port's mapping");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        let out = Command::new("wget")
            .args(["-q", "-T", "2", "-O", "-"])
            .arg(format!("http://127.0.0.1:{api}/api/v1/health"))
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the forwarded API never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.contains("ok"), "{body}");
    // Ctrl-C: kinfra stops the tunnel and ends with 0.
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("stopped forwarding"), "{err}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", api)).is_err(),
        "port {api} still forwarded"
    );
    r.kinfra(&["sandbox", "destroy", &a, "--yes"])
        .assert_code(0);
}

/// Containers of compose project `project` on h2's engine (over its tcp address).
fn h2_containers(project: &str) -> String {
    let out = Command::new("docker")
        .args(["-H", "tcp://10.251.2.2:2375", "ps", "-aq", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .expect("run docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn thin_mode_refuses_a_bind_source_the_remote_engine_lacks_and_warns_about_ports() {
    if !harness() {
        return;
    }
    let env = Env::new();
    let (main, _) = crate::common::hello_repo(&env);
    // A bind mount from the checkout: it exists here (under /tmp), not on h2.
    let compose = main.join("docker-compose.yml");
    let text = std::fs::read_to_string(&compose).unwrap();
    let with_bind = text.replacen(
        "      - data:/data\n",
        "      - data:/data\n      - ./conf:/conf:ro\n",
        1,
    );
    assert_ne!(text, with_bind);
    std::fs::write(&compose, with_bind).unwrap();
    std::fs::create_dir_all(main.join("conf")).unwrap();
    std::fs::write(main.join("conf/app.ini"), "x=1\n").unwrap();
    env.git(&main, &["add", "."]);
    env.git(&main, &["commit", "-q", "-m", "bind mount"]);
    // Slot 10: far from the slots remote sandboxes take on the hosts' own registries.
    let name = format!("{}-thin", env.tag);
    let id = format!("hello--{name}");
    kinfra(&env, &main, &["sandbox", "create", &name, "--slot", "10"]).assert_code(0);
    let dir = env.dev().join(&id);
    // Whatever happens, what this test started on h2 goes.
    struct Down<'a>(&'a Env, PathBuf);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            for args in [
                &["sandbox", "down"][..],
                &["sandbox", "destroy", "--force", "--yes"],
            ] {
                let mut cmd = self.0.kinfra_cmd(&self.1, args);
                cmd.env("DOCKER_HOST", "tcp://10.251.2.2:2375");
                let _ = cmd.output();
            }
        }
    }
    let down = Down(&env, dir.clone());
    let up = |env: &Env| {
        let mut cmd = env.kinfra_cmd(&dir, &["sandbox", "up", "--no-wait"]);
        cmd.env("DOCKER_HOST", "tcp://10.251.2.2:2375");
        Run::from(cmd.output().unwrap())
    };
    let run = up(&env);
    run.assert_code(exit::REFUSED);
    assert!(
        run.stderr.contains("is on another machine"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("/conf"), "{}", run.stderr);
    assert!(h2_containers(&id).is_empty(), "containers were made on h2");

    // A source h2 has too (scripts/hosts.sh's shared directory is visible there): up
    // goes on, with the warning about 127.0.0.1.
    let shared = Path::new("/var/lib/kinfra-test-hosts/shared").join(&env.tag);
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("app.ini"), "x=1\n").unwrap();
    let text = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        text.replace("./conf:/conf:ro", &format!("{}:/conf:ro", shared.display())),
    )
    .unwrap();
    let run = up(&env);
    run.assert_code(0);
    assert!(
        run.stderr.contains("will not be reachable from here"),
        "{}",
        run.stderr
    );
    assert!(!h2_containers(&id).is_empty(), "nothing started on h2");
    drop(down);
    assert!(h2_containers(&id).is_empty(), "left containers on h2");
    let _ = std::fs::remove_dir_all(&shared);
}

#[test]
fn wait_and_env_by_name_run_on_the_host() {
    if !harness() {
        return;
    }
    let mut r = Remote::new();
    let (a, _) = r.create("wait", "h2", &["--up"]);
    let run = r.kinfra(&["wait", &a, "--timeout", "30"]);
    run.assert_code(0);
    assert!(run.stderr.contains("is ready"), "{}", run.stderr);
    let env = r.kinfra(&["sandbox", "env", &a]);
    env.assert_code(0);
    assert!(
        env.stdout.contains(&format!("INSTANCE_ID='{a}'")),
        "{}",
        env.stdout
    );
    r.kinfra(&["sandbox", "destroy", &a, "--yes"])
        .assert_code(0);
}
