//! What an agent does with its sandbox: one step in (`create --up`), every command by
//! name from outside any checkout, `kinfra wait` on a slow and on a failing stack, and
//! one step out (`destroy --delete-branch`, merged and unmerged).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Env, branch_exists, exit};
use crate::stack::Stack;

/// Slots of the example stack these tests hold (no other module uses them).
const SLOT_BY_NAME: u32 = 1;
const SLOT_WAIT: u32 = 2;

/// The example stack's API port of `slot` (examples/hello-stack/kinfra.toml).
fn api_port(slot: u32) -> u16 {
    19100 + 10 * slot as u16
}

#[test]
fn create_up_then_every_command_by_name_from_outside_any_checkout() {
    let mut st = Stack::new("byname", &[SLOT_BY_NAME]);
    // `--up`: created, started, gate passed, URLs printed, in one step.
    let sb = st.create_with("n", SLOT_BY_NAME, &["--up"]);
    let outside = st.env.home.clone();
    assert!(
        !outside.starts_with(&st.main) && !outside.starts_with(&sb.path),
        "{} must be outside every checkout",
        outside.display()
    );
    let name = sb.id.as_str();
    let run = st.kinfra(&outside, &["sandbox", "status", name, "--json"]);
    run.assert_code(0);
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(status["instance_id"], name, "{status:#}");

    // Read commands.
    let run = st.kinfra(&outside, &["sandbox", "env", name]);
    run.assert_code(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| l == format!("export INSTANCE_ID='{name}'")),
        "{}",
        run.stdout
    );
    let run = st.kinfra(&outside, &["sandbox", "url", name]);
    run.assert_code(0);
    assert!(
        run.stdout.contains(&api_port(SLOT_BY_NAME).to_string()),
        "{}",
        run.stdout
    );
    let run = st.kinfra(&outside, &["sandbox", "path", name]);
    run.assert_code(0);
    assert_eq!(
        crate::common::canon(Path::new(run.stdout.trim())),
        crate::common::canon(&sb.path)
    );
    let run = st.kinfra(&outside, &["sandbox", "logs", name, "backend"]);
    run.assert_code(0);
    assert!(
        run.stdout.contains("backend: listening") || run.stderr.contains("backend: listening"),
        "{run:?}"
    );
    let mut shell = st.cmd(&outside, &["sandbox", "shell", name, "backend"]);
    let out = shell
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"echo from-the-shell\nexit\n")?;
            child.wait_with_output()
        })
        .expect("run kinfra sandbox shell");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("from-the-shell"),
        "{out:?}"
    );

    // The same NAME with `--instance`, which always works.
    st.kinfra(&outside, &["wait", "--instance", name, "--timeout", "60"])
        .assert_code(0);

    // State changes by name: down, then wait says "not running" at once, then up.
    st.kinfra(&outside, &["sandbox", "down", name])
        .assert_code(0);
    let t = Instant::now();
    st.kinfra(&outside, &["wait", name, "--timeout", "60"])
        .assert_code(exit::NOT_RUNNING);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "wait on a stopped instance must return at once, took {:?}",
        t.elapsed()
    );
    st.kinfra(&outside, &["sandbox", "up", name, "--timeout", "60"])
        .assert_code(0);
    st.kinfra(&outside, &["wait", name]).assert_code(0);

    // An unknown name: one line, not found, nothing else touched.
    st.kinfra(&outside, &["sandbox", "status", "no-such-sandbox"])
        .assert_code(exit::NOT_FOUND)
        .assert_stderr_contains("no instance is called `no-such-sandbox`");
}

#[test]
fn wait_on_a_slow_and_on_a_failing_stack() {
    let mut st = Stack::new("wait", &[SLOT_WAIT]);
    let sb = st.create("w", SLOT_WAIT);
    let name = sb.id.clone();
    let outside = st.env.home.clone();

    // Slow: the backend serves after 6 s; `wait`, started as soon as containers run,
    // returns 0 once the gate passes, not before.
    let mut up = st.cmd(&sb.path, &["sandbox", "up", "--timeout", "90"]);
    up.env("BACKEND_DELAY", "6")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut up = up.spawn().expect("spawn up");
    let started = Instant::now();
    let waited = loop {
        let run = st.kinfra(&outside, &["wait", &name, "--timeout", "90"]);
        if run.code != exit::NOT_RUNNING {
            break run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the containers never ran"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    waited.assert_code(0);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "wait returned before the slow backend served ({:?})",
        started.elapsed()
    );
    assert!(up.wait().expect("up").success());

    // Failing: the backend exits 1; `wait` says the gate failed.
    st.kinfra(&sb.path, &["sandbox", "down"]).assert_code(0);
    let mut cmd = st.cmd(&sb.path, &["sandbox", "up", "--timeout", "60"]);
    cmd.env("BACKEND_FAIL", "1");
    let out = cmd.output().expect("run up");
    assert_eq!(out.status.code(), Some(exit::GATE_FAILED), "{out:?}");
    st.kinfra(&outside, &["wait", &name, "--timeout", "30"])
        .assert_code(exit::GATE_FAILED);
}

#[test]
fn destroy_delete_branch_deletes_only_a_merged_branch_kinfra_created() {
    let env = Env::new();
    let run_id = std::process::id();

    // Merged (no commits of its own): deleted.
    let merged = format!("merged-{run_id}");
    env.create_sandbox(&merged);
    let branch = env.id_of(&merged);
    assert!(branch_exists(&env, &env.main, &branch));
    env.kinfra(
        &env.main,
        &["sandbox", "destroy", &merged, "--delete-branch", "--yes"],
    )
    .assert_code(0)
    .assert_stderr_contains(&format!("deleted branch `{branch}`"));
    assert!(!branch_exists(&env, &env.main, &branch));

    // Unmerged (a commit main lacks): kept, and it says why.
    let unmerged = format!("unmerged-{run_id}");
    let path = env.create_sandbox(&unmerged);
    let branch = env.id_of(&unmerged);
    std::fs::write(path.join("feature.txt"), "work\n").unwrap();
    env.git(&path, &["add", "feature.txt"]);
    env.git(&path, &["commit", "-q", "-m", "feature"]);
    env.kinfra(
        &env.main,
        &["sandbox", "destroy", &unmerged, "--delete-branch", "--yes"],
    )
    .assert_code(0)
    .assert_stderr_contains(&format!("kept branch `{branch}`"))
    .assert_stderr_contains("commits `main` lacks");
    assert!(branch_exists(&env, &env.main, &branch));

    // A branch the user named with --branch: kept, even when merged.
    let named = format!("named-{run_id}");
    let own = format!("mine-{run_id}");
    env.git(&env.main, &["branch", &own]);
    env.kinfra(&env.main, &["sandbox", "create", &named, "--branch", &own])
        .assert_code(0);
    env.kinfra(
        &env.main,
        &["sandbox", "destroy", &named, "--delete-branch", "--yes"],
    )
    .assert_code(0)
    .assert_stderr_contains(&format!("kept branch `{own}`"));
    assert!(branch_exists(&env, &env.main, &own));
}
