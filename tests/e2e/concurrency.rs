// Concurrent kinfra processes on one registry: slot allocation under the lock, no lost
// entries, readers never see a torn file, and a held lock times out cleanly.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::common::{Env, Run, env_slot};

/// Run every argument list as its own kinfra process from the main repository, all
/// released at the same moment.
fn run_together(env: &Env, jobs: Vec<Vec<String>>) -> Vec<Run> {
    let barrier = Arc::new(Barrier::new(jobs.len()));
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|args| {
                let barrier = Arc::clone(&barrier);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let mut cmd = env.kinfra_cmd(&env.main, &args);
                scope.spawn(move || {
                    barrier.wait();
                    Run::from(cmd.output().expect("run kinfra"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn create_job(name: &str) -> Vec<String> {
    ["sandbox", "create", name].map(String::from).to_vec()
}

/// Check the registry holds exactly `names` with distinct slots in 1..=10, that each is
/// a worktree git knows, and that each env file agrees with its registry slot.
#[track_caller]
fn assert_consistent(env: &Env, names: &[String]) {
    let reg = env.registry();
    assert_eq!(reg["version"], 1);
    let instances = reg["instances"].as_object().expect("instances object");
    assert_eq!(
        instances.len(),
        names.len(),
        "registry entries: {:?}",
        instances.keys().collect::<Vec<_>>()
    );
    let worktrees = env.git(&env.main, &["worktree", "list", "--porcelain"]);
    let listed: BTreeSet<PathBuf> = worktrees
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(|p| std::fs::canonicalize(p).unwrap())
        .collect();
    assert_eq!(listed.len(), names.len() + 1, "{worktrees}");
    let mut slots = BTreeSet::new();
    for name in names {
        let id = env.id_of(name);
        let entry = &instances
            .get(&id)
            .unwrap_or_else(|| panic!("`{id}` is not registered"));
        let slot = entry["slot"].as_u64().unwrap();
        assert!((1..=10).contains(&slot), "{id} has slot {slot}");
        assert!(slots.insert(slot), "slot {slot} given twice");
        let path = PathBuf::from(entry["path"].as_str().unwrap());
        assert!(
            listed.contains(&std::fs::canonicalize(&path).unwrap()),
            "{} is not in `git worktree list`:\n{worktrees}",
            path.display()
        );
        assert_eq!(env_slot(&path), slot, "env file of {id} disagrees");
    }
}

#[test]
fn eight_concurrent_creates_all_get_their_own_slot() {
    let env = Env::new();
    let names: Vec<String> = (1..=8).map(|n| format!("s{n}")).collect();
    let runs = run_together(&env, names.iter().map(|n| create_job(n)).collect());
    for (name, run) in names.iter().zip(&runs) {
        assert_eq!(run.code, 0, "create {name} failed:\n{}", run.stderr);
        let path = PathBuf::from(run.stdout.trim());
        assert_eq!(path.file_name().unwrap().to_string_lossy(), env.id_of(name));
        assert!(path.join(".env.sandbox").is_file());
    }
    assert_consistent(&env, &names);
}

#[test]
fn lists_running_beside_creates_see_a_valid_registry() {
    let env = Env::new();
    let names: Vec<String> = (1..=6).map(|n| format!("c{n}")).collect();
    let mut jobs: Vec<Vec<String>> = names.iter().map(|n| create_job(n)).collect();
    jobs.insert(2, ["sandbox", "list", "--json"].map(String::from).to_vec());
    jobs.push(["sandbox", "list", "--json"].map(String::from).to_vec());
    let runs = run_together(&env, jobs);
    let mut lists = 0;
    for run in &runs {
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        if run.stdout.trim_start().starts_with('{') {
            lists += 1;
            let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("list JSON");
            assert_eq!(v["schema_version"], 1);
            let items = v["instances"].as_array().expect("instances array");
            assert!(items.len() <= names.len());
        }
    }
    assert_eq!(lists, 2);
    assert_consistent(&env, &names);
}

#[test]
fn a_held_lock_times_out_and_changes_nothing() {
    let env = Env::new();
    env.create_sandbox("first");
    let before = std::fs::read(env.registry_path()).unwrap();
    let lock_path = {
        let mut p = env.registry_path().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    };
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    lock.lock().unwrap();

    let mut cmd = env.kinfra_cmd(&env.main, &["sandbox", "create", "blocked"]);
    cmd.env("KINFRA_LOCK_TIMEOUT", "2");
    let started = Instant::now();
    let run = Run::from(cmd.output().unwrap());
    let took = started.elapsed();

    run.assert_code(3);
    assert!(took >= Duration::from_secs(2), "gave up after {took:?}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{}", run.stderr));
    assert!(
        error.contains("another kinfra command") && error.contains("instances.json.lock"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("waiting"), "{}", run.stderr);
    assert!(run.stdout.trim().is_empty(), "{}", run.stdout);
    assert_eq!(std::fs::read(env.registry_path()).unwrap(), before);
    assert!(!env.sibling(&env.id_of("blocked")).exists());
    let branches = env.git(&env.main, &["branch", "--list", &env.id_of("blocked")]);
    assert!(branches.trim().is_empty(), "{branches}");

    // Once released, the same command goes through.
    lock.unlock().unwrap();
    env.create_sandbox("blocked");
    assert_consistent(&env, &["first".into(), "blocked".into()]);
}

#[test]
fn a_briefly_held_lock_is_waited_for() {
    let env = Env::new();
    let lock_path = {
        let mut p = env.registry_path().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    };
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let lock = File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    let releaser = std::thread::spawn(move || {
        // Long enough to outlast create's planning (git and Docker reads) on a busy machine.
        std::thread::sleep(Duration::from_millis(4000));
        drop(lock);
    });
    let run = env.kinfra(&env.main, &["sandbox", "create", "patient"]);
    releaser.join().unwrap();
    run.assert_code(0);
    assert!(
        run.stderr.contains("waiting for another kinfra command"),
        "{}",
        run.stderr
    );
    assert_consistent(&env, &["patient".into()]);
}

/// Whole commands of one instance exclude each other: while another process holds the
/// instance's lock (as a running `up` or `destroy` does for its whole duration),
/// `destroy` of that instance (by name, with `--yes` or `--force`, and from inside)
/// waits, then gives up naming it and changes nothing. A command on another instance
/// is not held up.
#[test]
fn a_held_instance_lock_stops_destroy_of_that_instance() {
    let env = Env::new();
    let dir = env.create_sandbox("busy");
    let other = env.create_sandbox("free");
    let id = env.id_of("busy");
    let locks = env.home.join(".ktrdr/locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(locks.join(format!("{id}.lock")))
        .unwrap();
    lock.lock().unwrap();
    let before = std::fs::read(env.registry_path()).unwrap();

    for (cwd, args) in [
        (&env.main, vec!["sandbox", "destroy", id.as_str(), "--yes"]),
        (
            &env.main,
            vec!["sandbox", "destroy", id.as_str(), "--force"],
        ),
        (&dir, vec!["sandbox", "destroy", "--yes"]),
    ] {
        let mut cmd = env.kinfra_cmd(cwd, &args);
        cmd.env("KINFRA_LOCK_TIMEOUT", "1");
        let run = Run::from(cmd.output().unwrap());
        run.assert_code(3);
        assert!(run.stderr.contains(&id), "{args:?}\n{}", run.stderr);
        assert!(dir.join(".env.sandbox").is_file(), "{args:?}");
        assert_eq!(std::fs::read(env.registry_path()).unwrap(), before);
    }
    assert!(dir.is_dir());

    let free = env.id_of("free");
    env.kinfra(&env.main, &["sandbox", "destroy", &free, "--yes"])
        .assert_code(0);
    assert!(!other.exists());
    drop(lock);
    env.kinfra(&env.main, &["sandbox", "destroy", &id, "--yes"])
        .assert_code(0);
    assert!(!dir.exists());
}
