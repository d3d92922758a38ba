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
use std::time::{Duration, Instant};

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
