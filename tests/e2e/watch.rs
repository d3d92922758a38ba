//! `sandbox list --watch --json` on the real example stack: it sees another process's
//! `up` and `down` through the engine's events, a `create` and a `destroy` through the
//! registry, and ends (exit 0) when its reader goes away.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::stack::{SLOT_LOCAL_PROD_NEIGHBOUR, Stack};

const SLOT: u32 = SLOT_LOCAL_PROD_NEIGHBOUR;

/// Lines from the watcher until `pred` holds for one (which is returned).
#[track_caller]
fn expect_line(
    rx: &mpsc::Receiver<serde_json::Value>,
    seen: &mut Vec<serde_json::Value>,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if pred(&line) {
                    return line;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line {what}; lines so far:\n{seen:#?}");
}

/// `kinfra sandbox list --watch --json` from `kinfra` (a command with no arguments yet),
/// its stdout piped.
pub(crate) fn spawn_watch(mut kinfra: std::process::Command) -> std::process::Child {
    kinfra
        .args(["sandbox", "list", "--watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kinfra")
}

/// The exit code of `child`, which must end within 10 seconds (it is killed if not).
#[track_caller]
fn exit_within(child: &mut std::process::Child, when: &str) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`list --watch` still runs 10s {when}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn watch_json_sees_up_down_create_destroy_and_ends_when_its_reader_goes() {
    let mut st = Stack::new("watch", &[SLOT]);
    let sb = st.create("w", SLOT);
    let mut child = spawn_watch(st.cmd(&st.main, &[]));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    // Reads lines until the first `destroyed` one, then closes its end of the pipe.
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            let value: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            let last = value["event"] == "destroyed";
            if tx.send(value).is_err() || last {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let id = sb.id.clone();
    let is = |event: &'static str, id: String, status: Option<&'static str>| {
        move |l: &serde_json::Value| {
            l["schema_version"] == 1
                && l["event"] == event
                && l["instance"]["instance_id"] == id.as_str()
                && status.is_none_or(|s| l["instance"]["status"] == s)
        }
    };
    let first = expect_line(&rx, &mut seen, "initial", is("initial", id.clone(), None));
    assert_eq!(first["instance"]["status"], "never started", "{first}");
    assert_eq!(first["instance"]["slot"], SLOT);

    st.up(&sb);
    expect_line(
        &rx,
        &mut seen,
        "changed to running",
        is("changed", id.clone(), Some("running")),
    );
    st.kinfra(&sb.path, &["sandbox", "down"]).assert_code(0);
    expect_line(
        &rx,
        &mut seen,
        "changed to stopped",
        is("changed", id.clone(), Some("stopped")),
    );

    let other = st.create("x", 3);
    expect_line(
        &rx,
        &mut seen,
        "created",
        is("created", other.id.clone(), None),
    );
    st.kinfra(&st.main, &["sandbox", "destroy", &other.id, "--yes"])
        .assert_code(0);
    expect_line(
        &rx,
        &mut seen,
        "destroyed",
        is("destroyed", other.id.clone(), None),
    );
    // Nothing more is read: the reader closes the pipe, and the idle watcher notices.
    drop(rx);
    reader.join().expect("reader");
    let code = exit_within(&mut child, "after its reader went away");
    assert_eq!(code, Some(0), "{seen:#?}");
}

#[test]
fn watch_ends_with_0_on_sigterm() {
    let env = crate::common::Env::new();
    let mut child = spawn_watch(env.kinfra_cmd(&env.main, &[]));
    std::thread::sleep(Duration::from_millis(700));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    assert_eq!(exit_within(&mut child, "after SIGTERM"), Some(0));
}
