//! ktrdr's version-2 registry through the CLI: kinfra reads the file ktrdr's loader
//! writes, treats a slot claimed in ktrdr's pool as taken, writes the file back as
//! version 2 with `slots` byte-identical, and never changes (nor moves aside) a file
//! it must not: one from a newer tool, or a healthy version-2 file under `doctor --fix`.

use std::path::Path;
use std::process::Command;

use crate::common::{Env, Run, env_slot, exit};

/// Turn the registry at `argv[1]` into what ktrdr's loader saves after migrating it to
/// version 2 (`json.dump(data, f, indent=2)`): the same entries, then a slot pool with
/// slot 1 claimed by the worktree `argv[2]` and slot 2 free.
const PY_MIGRATE_TO_V2: &str = r#"
import json, sys
path, claimer = sys.argv[1:3]
with open(path) as f:
    old = json.load(f)
pool = {
    "1": {
        "slot_id": 1,
        "infrastructure_path": "/home/me/.ktrdr/sandboxes/slot-1",
        "profile": "light",
        "workers": {"backtest": 1, "training": 1},
        "ports": {"api": 8001, "db": 5433},
        "claimed_by": claimer,
        "claimed_at": "2026-04-01T10:00:00.000000+00:00",
        "status": "running",
    },
    "2": {
        "slot_id": 2,
        "infrastructure_path": "/home/me/.ktrdr/sandboxes/slot-2",
        "profile": "standard",
        "workers": {"backtest": 2, "training": 1},
        "ports": {"api": 8002, "db": 5434},
        "claimed_by": None,
        "claimed_at": None,
        "status": "stopped",
    },
}
data = {"version": 2, "local_prod": old["local_prod"], "instances": old["instances"], "slots": pool}
with open(path, "w") as f:
    json.dump(data, f, indent=2)
"#;

/// Fails unless the file at `argv[1]` is exactly what `json.dump(indent=2)` writes for
/// its own content, with ktrdr's version-2 key order.
const PY_CHECK_V2: &str = r#"
import json, sys
text = open(sys.argv[1]).read()
data = json.loads(text)
assert json.dumps(data, indent=2) == text, "not json.dump(indent=2) output"
assert list(data) == ["version", "local_prod", "instances", "slots"], list(data)
assert data["version"] == 2
"#;

fn python(script: &str, args: &[&str]) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is installed");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The text of the `slots` value (the last key, so everything after `"slots": `).
#[track_caller]
fn slots_text(registry: &str) -> &str {
    let at = registry
        .find("\n  \"slots\": ")
        .unwrap_or_else(|| panic!("no top-level `slots` in {registry}"));
    &registry[at..]
}

fn list_json(env: &Env) -> serde_json::Value {
    let run = env.kinfra(&env.main, &["sandbox", "list", "--json"]);
    run.assert_code(0);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("`list --json` printed no JSON ({e}): {run:?}"))
}

fn listed_slots(list: &serde_json::Value) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = list["instances"]
        .as_array()
        .expect("instances is a list")
        .iter()
        .map(|i| {
            (
                i["instance_id"].as_str().unwrap_or_default().to_string(),
                i["slot"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    out.sort();
    out
}

/// A main repository under a non-ASCII directory, a sandbox `first` on slot 3,
/// and the registry turned into ktrdr's version 2 (pool slot 1 claimed by a
/// non-ASCII path, slot 2 free). Returns the environment and the file's bytes.
fn v2_env() -> (Env, Vec<u8>) {
    let env = Env::at("dév", "home");
    env.kinfra(&env.main, &["sandbox", "create", "first", "--slot", "3"])
        .assert_code(0);
    let claimer = env.sibling("ktrdr-impl-café");
    let registry = env.registry_path();
    python(
        PY_MIGRATE_TO_V2,
        &[registry.to_str().unwrap(), claimer.to_str().unwrap()],
    );
    let bytes = std::fs::read(&registry).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.is_ascii(), "json.dump escapes non-ASCII: {text}");
    assert!(text.contains("ktrdr-impl-caf\\u00e9"), "{text}");
    assert!(text.contains("d\\u00e9v"), "{text}");
    python(PY_CHECK_V2, &[registry.to_str().unwrap()]);
    (env, bytes)
}

#[track_caller]
fn assert_unchanged(path: &Path, before: &[u8]) {
    let now = std::fs::read(path).unwrap();
    assert!(
        now == before,
        "`{}` changed:\n--- before\n{}\n--- now\n{}",
        path.display(),
        String::from_utf8_lossy(before),
        String::from_utf8_lossy(&now)
    );
}

/// Files beside the registry other than kinfra's own (the lock and its state file).
fn strangers_beside(registry: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(registry.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            ![
                "instances.json",
                "instances.json.lock",
                "instances.kinfra.json",
            ]
            .contains(&n.as_str())
        })
        .collect();
    names.sort();
    names
}

/// Create takes slot 2 (3 is registered, 1 claimed in ktrdr's pool) and keeps the file
/// ktrdr's version 2 with `slots` byte-identical; destroy restores the exact bytes.
#[test]
fn create_and_destroy_keep_ktrdrs_version_2_file() {
    let (env, original) = v2_env();
    let registry = env.registry_path();
    let original_text = String::from_utf8(original.clone()).unwrap();

    let run = env.kinfra(&env.main, &["sandbox", "create", "second"]);
    run.assert_code(0);
    let second = std::path::PathBuf::from(run.stdout.trim());
    assert_eq!(
        env_slot(&second),
        2,
        "slot 1 is claimed in the pool: {run:?}"
    );

    let text = std::fs::read_to_string(&registry).unwrap();
    python(PY_CHECK_V2, &[registry.to_str().unwrap()]);
    assert_eq!(slots_text(&text), slots_text(&original_text));
    let reg: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reg["instances"][env.id_of("second")]["slot"], 2);
    assert_eq!(reg["instances"][env.id_of("first")]["slot"], 3);
    assert!(
        text.contains("\"path\": \"")
            && text.contains(&format!("d\\u00e9v/{}\"", env.id_of("second"))),
        "the new entry's non-ASCII path is escaped as Python does: {text}"
    );

    let list = list_json(&env);
    assert_eq!(list["schema_version"], 1);
    assert_eq!(
        listed_slots(&list),
        [(env.id_of("first"), 3), (env.id_of("second"), 2)]
    );

    env.kinfra(&second, &["sandbox", "destroy", "--yes"])
        .assert_code(0);
    assert!(!second.exists());
    assert_unchanged(&registry, &original);
    assert_eq!(strangers_beside(&registry), Vec::<String>::new());
}

/// A file a newer tool wrote (version 3) is read, never written: `list` works,
/// `create` refuses (exit 4) and the file keeps its bytes.
#[test]
fn a_newer_registry_is_read_but_never_written() {
    let (env, original) = v2_env();
    let registry = env.registry_path();
    let v3 = String::from_utf8(original)
        .unwrap()
        .replacen("\"version\": 2", "\"version\": 3", 1);
    std::fs::write(&registry, &v3).unwrap();

    let list = list_json(&env);
    assert_eq!(listed_slots(&list), [(env.id_of("first"), 3)]);

    let run = env.kinfra(&env.main, &["sandbox", "create", "third"]);
    run.assert_code(exit::REFUSED)
        .assert_stderr_contains("newer");
    assert!(!env.sibling(&env.id_of("third")).exists(), "{run:?}");
    assert_unchanged(&registry, v3.as_bytes());
    assert_eq!(strangers_beside(&registry), Vec::<String>::new());
}

/// `doctor --fix` on a healthy version-2 file changes nothing and moves nothing aside;
/// repairing a stale entry writes the file back as version 2, `slots` untouched.
#[test]
fn doctor_fix_never_moves_a_version_2_file_aside() {
    let (env, original) = v2_env();
    let registry = env.registry_path();
    // Every finding of this test's own is fixed; exit 1 only for findings about Docker
    // projects that are not the Env's.
    let doctor_fix = || {
        let run: Run = env.kinfra(&env.main, &["doctor", "--fix", "--json"]);
        let report: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("`doctor --fix --json` printed no JSON ({e}): {run:?}"));
        let unfixed: Vec<&serde_json::Value> = report["findings"]
            .as_array()
            .expect("findings is a list")
            .iter()
            .filter(|f| f["fixed"] == false)
            .collect();
        assert!(
            unfixed.iter().all(|f| env.is_foreign_finding(f)),
            "doctor --fix left findings of this test: {run:?}"
        );
        run.assert_code(if unfixed.is_empty() { 0 } else { exit::FAILURE });
        assert!(
            !run.stderr.contains("corrupt") && !run.stdout.contains("corrupt"),
            "a version-2 file is not corrupt: {run:?}"
        );
        run
    };
    doctor_fix();
    assert_unchanged(&registry, &original);
    assert_eq!(strangers_beside(&registry), Vec::<String>::new());

    // `first`'s directory is gone: its entry is stale and doctor drops it.
    std::fs::remove_dir_all(env.sibling(&env.id_of("first"))).unwrap();
    let run = doctor_fix();
    let text = std::fs::read_to_string(&registry).unwrap();
    assert!(
        text.contains("\"instances\": {}"),
        "the stale entry is dropped: {run:?}\n{text}"
    );
    python(PY_CHECK_V2, &[registry.to_str().unwrap()]);
    let original_text = String::from_utf8(original).unwrap();
    assert_eq!(slots_text(&text), slots_text(&original_text));
    assert_eq!(strangers_beside(&registry), Vec::<String>::new());
}
