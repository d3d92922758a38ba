// Concurrency stress: 20 kinfra processes released together on one registry, mixing
// creates, destroys, lists and doctors. Slots are 1..=10, so the mix is 2 pre-created
// sandboxes (destroyed during the run) + 8 new ones: at most 10 exist at any moment,
// whatever the order, and every create must succeed. Repeated 3 times, each in a
// fresh `Env`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use crate::common::{Env, Run, canon, env_slot};
use serde_json::Value;

const ROUNDS: usize = 3;
const CREATES: usize = 8;
const DESTROYS: usize = 2;
const LISTS: usize = 5;
const DOCTORS: usize = 5;

/// Findings a `doctor` may legitimately see while creates and destroys are half-way
/// (between `git worktree add/remove` and the registry write, or during a rename).
const TRANSIENT: &[&str] = &[
    "unregistered-worktree",
    "stale-entry",
    "prunable-worktrees",
    "unknown-worktree",
    "missing-env-file",
    "leftover-temp-file",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Create,
    Destroy,
    List,
    Doctor,
}

/// Start every job as its own process from the main repository, all released by one
/// barrier, and collect the outputs in job order.
fn run_together(env: &Env, jobs: &[(Kind, Vec<String>)]) -> Vec<Run> {
    let barrier = Arc::new(Barrier::new(jobs.len()));
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(_, args)| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let mut cmd = env.kinfra_cmd(&env.main, &args);
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let child = cmd.spawn().expect("spawn kinfra");
                    Run::from(child.wait_with_output().expect("wait kinfra"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Counts for the log line.
struct Counts {
    processes: usize,
    entries: usize,
    /// Doctors that saw (transient) findings mid-run.
    busy_doctors: usize,
    slots: BTreeSet<u64>,
}

fn round(n: usize) -> Counts {
    let env = Env::new();
    let old: Vec<String> = (1..=DESTROYS).map(|i| format!("old{i}")).collect();
    let old_paths: Vec<PathBuf> = old.iter().map(|o| env.create_sandbox(o)).collect();
    let new: Vec<String> = (1..=CREATES).map(|i| format!("s{i}")).collect();

    // Interleave the kinds so processes of every kind start side by side.
    let mut jobs: Vec<(Kind, Vec<String>)> = Vec::new();
    for i in 0..CREATES.max(LISTS).max(DOCTORS) {
        if let Some(name) = new.get(i) {
            jobs.push((Kind::Create, args(&["sandbox", "create", name])));
        }
        if i < LISTS {
            jobs.push((Kind::List, args(&["sandbox", "list", "--json"])));
        }
        if let Some(name) = old.get(i) {
            jobs.push((Kind::Destroy, args(&["sandbox", "destroy", name, "--yes"])));
        }
        if i < DOCTORS {
            jobs.push((Kind::Doctor, args(&["doctor", "--json"])));
        }
    }
    assert_eq!(jobs.len(), 20);
    let runs = run_together(&env, &jobs);

    let mut seen: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut busy_doctors = 0;
    for ((kind, argv), run) in jobs.iter().zip(&runs) {
        *seen.entry(*kind).or_default() += 1;
        let what = format!("round {n}: kinfra {}", argv.join(" "));
        match kind {
            Kind::Create | Kind::Destroy => {
                assert_eq!(
                    run.code, 0,
                    "{what} failed\n--- stdout\n{}\n--- stderr\n{}",
                    run.stdout, run.stderr
                );
            }
            Kind::List => {
                assert_eq!(run.code, 0, "{what} failed\n{}", run.stderr);
                let v: Value = serde_json::from_str(&run.stdout)
                    .unwrap_or_else(|e| panic!("{what}: {e}\n{}", run.stdout));
                assert_eq!(v["schema_version"], 1);
                let items = v["instances"].as_array().expect("instances array");
                assert!(items.len() <= CREATES + DESTROYS, "{}", run.stdout);
                let mut slots = BTreeSet::new();
                for it in items {
                    let slot = it["slot"].as_u64().unwrap();
                    assert!(slots.insert(slot), "{what}: slot {slot} twice");
                }
            }
            Kind::Doctor => {
                assert!(
                    run.code == 0 || run.code == 1,
                    "{what}: exit {}\n{}",
                    run.code,
                    run.stderr
                );
                let v: Value = serde_json::from_str(&run.stdout)
                    .unwrap_or_else(|e| panic!("{what}: {e}\n{}", run.stdout));
                let findings = v["findings"].as_array().expect("findings array");
                assert_eq!(
                    run.code == 1,
                    !findings.is_empty(),
                    "{what}: exit code vs findings\n{}",
                    run.stdout
                );
                // Docker projects that are not the Env's are not its business.
                let own: Vec<&Value> = findings
                    .iter()
                    .filter(|f| !env.is_foreign_finding(f))
                    .collect();
                busy_doctors += usize::from(!own.is_empty());
                for f in own {
                    let k = f["kind"].as_str().unwrap();
                    assert_ne!(k, "corrupt-registry", "{what}: {}", run.stdout);
                    assert!(
                        TRANSIENT.contains(&k),
                        "{what}: non-transient finding `{k}`:\n{}",
                        run.stdout
                    );
                }
            }
        }
    }
    assert_eq!(seen[&Kind::Create], CREATES);
    assert_eq!(seen[&Kind::Destroy], DESTROYS);

    // The final registry: exactly the new sandboxes, distinct slots, env files agree.
    let reg = env.registry();
    assert_eq!(reg["version"], 1);
    assert!(reg["local_prod"].is_null());
    let instances = reg["instances"].as_object().expect("instances");
    let want: BTreeSet<String> = new.iter().map(|s| env.id_of(s)).collect();
    let have: BTreeSet<String> = instances.keys().cloned().collect();
    assert_eq!(have, want, "round {n}: registry\n{reg}");
    let mut slots = BTreeSet::new();
    let mut registered_paths = BTreeSet::new();
    for (id, e) in instances {
        let slot = e["slot"].as_u64().unwrap();
        assert!((1..=10).contains(&slot), "{id}: slot {slot}");
        assert!(slots.insert(slot), "round {n}: slot {slot} twice\n{reg}");
        let path = PathBuf::from(e["path"].as_str().unwrap());
        assert_eq!(env_slot(&path), slot, "round {n}: env file of {id}");
        assert_eq!(e["is_worktree"], true);
        registered_paths.insert(canon(&path));
    }

    // `git worktree list` matches the registry exactly.
    let listing = env.git(&env.main, &["worktree", "list", "--porcelain"]);
    let listed: BTreeSet<PathBuf> = listing
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(|p| canon(Path::new(p)))
        .filter(|p| *p != canon(&env.main))
        .collect();
    assert_eq!(listed, registered_paths, "round {n}:\n{listing}");
    for (name, path) in old.iter().zip(&old_paths) {
        assert!(!path.exists(), "{} is still there", path.display());
        let branch = env.git(&env.main, &["branch", "--list", &env.id_of(name)]);
        assert!(
            !branch.trim().is_empty(),
            "the branch of {name} was deleted"
        );
    }

    // Nothing is left for doctor to find (but other Docker projects on the engine).
    let doctor = env.kinfra(&env.main, &["doctor", "--json"]);
    let v: Value = serde_json::from_str(&doctor.stdout).expect("doctor JSON");
    let findings = v["findings"].as_array().expect("findings array");
    let foreign = findings
        .iter()
        .filter(|f| env.is_foreign_finding(f))
        .count();
    assert!(
        foreign == findings.len() && doctor.code == i32::from(foreign > 0),
        "round {n}: final doctor\n{}\n{}",
        doctor.stdout,
        doctor.stderr
    );

    Counts {
        processes: runs.len(),
        entries: instances.len(),
        busy_doctors,
        slots,
    }
}

#[test]
fn twenty_mixed_processes_on_one_registry() {
    for n in 1..=ROUNDS {
        let started = Instant::now();
        let c = round(n);
        eprintln!(
            "stress round {n}/{ROUNDS}: {} processes ({CREATES} create, {DESTROYS} destroy, {LISTS} list, {DOCTORS} doctor), {} entries, {} distinct slots {:?}, {} doctor(s) saw transient findings, {:.1}s",
            c.processes,
            c.entries,
            c.slots.len(),
            c.slots,
            c.busy_doctors,
            started.elapsed().as_secs_f64()
        );
    }
}
