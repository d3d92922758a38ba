// Compatibility with the Python ktrdr tool, both ways: kinfra reads the registry and
// env file exactly as ktrdr writes them (`json.dump(data, f, indent=2)`; sorted
// `KEY=VALUE` lines), and ktrdr's reader (`InstanceInfo(**v)`) accepts what kinfra writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::Env;

/// ktrdr's dataclass and loader (ktrdr/cli/sandbox_registry.py), without the
/// `except: return Registry()` that hides errors.
const PY_PRELUDE: &str = r#"
import json, re, sys
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import Optional

@dataclass
class InstanceInfo:
    instance_id: str
    slot: int
    path: str
    created_at: str
    is_worktree: bool
    parent_repo: Optional[str] = None

FIELDS = ["instance_id", "slot", "path", "created_at", "is_worktree", "parent_repo"]

def ktrdr_load(path):
    with open(path) as f:
        data = json.load(f)
    instances = {k: InstanceInfo(**v) for k, v in data.get("instances", {}).items()}
    lp = data.get("local_prod")
    local_prod = InstanceInfo(**lp) if lp else None
    return data, instances, local_prod
"#;

/// Run a Python script (after the prelude) with `args` as `sys.argv[1:]`; its stdout.
fn python(home: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .env("HOME", home)
        .arg("-c")
        .arg(format!("{PY_PRELUDE}\n{script}"))
        .args(args)
        .output()
        .expect("python3 is installed");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What ktrdr's `save_registry` and `generate_env_file` write for a sandbox (id
/// `argv[4]`) on slot 3, plus a top-level key from a later ktrdr (`slots`) that kinfra
/// must keep.
const PY_WRITE_LEGACY: &str = r#"
home, wt, main, iid = sys.argv[1:5]
reg_dir = Path(home) / ".ktrdr" / "sandbox"
reg_dir.mkdir(parents=True, exist_ok=True)
info = InstanceInfo(
    instance_id=iid, slot=3, path=wt,
    created_at="2026-01-20T16:29:14.123456+00:00", is_worktree=True, parent_repo=main,
)
data = {
    "version": 1,
    "local_prod": None,
    "instances": {info.instance_id: asdict(info)},
    "slots": {"3": {"holder": iid, "note": "caf\u00e9 \u2713"}, "free": [1, 2, 4.5, None, True]},
}
with open(reg_dir / "instances.json", "w") as f:
    json.dump(data, f, indent=2)

shared = Path(home) / ".ktrdr" / "shared"
n = 3
env = {
    "KTRDR_API_PORT": str(8000 + n), "KTRDR_DB_PORT": str(5432 + n),
    "KTRDR_GRAFANA_PORT": str(3000 + n), "KTRDR_JAEGER_UI_PORT": str(16686 + n),
    "KTRDR_JAEGER_OTLP_GRPC_PORT": str(4317 + 10 * n),
    "KTRDR_JAEGER_OTLP_HTTP_PORT": str(4318 + 10 * n),
    "KTRDR_PROMETHEUS_PORT": str(9090 + n), "SLOT_NUMBER": str(n),
}
for i in range(4):
    env[f"KTRDR_WORKER_PORT_{i + 1}"] = str(5011 + 10 * (n - 1) + i)
env["INSTANCE_ID"] = info.instance_id
env["COMPOSE_PROJECT_NAME"] = info.instance_id
env["KTRDR_SHARED_DIR"] = str(shared)
env["KTRDR_DATA_DIR"] = str(shared / "data")
env["KTRDR_MODELS_DIR"] = str(shared / "models")
env["KTRDR_STRATEGIES_DIR"] = str(shared / "strategies")
env["CREATED_AT"] = "2026-01-20T16:29:14.123456+00:00"
env["SANDBOX_VERSION"] = "1"
with open(Path(wt) / ".env.sandbox", "w") as f:
    for key, value in sorted(env.items()):
        f.write(f"{key}={value}\n")
"#;

/// Checks any registry kinfra wrote must pass on the Python side.
const PY_CHECK_WRITTEN: &str = r#"
path = sys.argv[1]
text = open(path).read()
data, instances, local_prod = ktrdr_load(path)
# Byte-for-byte what json.dump(data, f, indent=2) would write: 2-space indent,
# `, `/`: ` separators, ASCII escapes, no trailing newline, key order as in the file.
assert json.dumps(data, indent=2) == text, "not json.dump(indent=2) output"
assert not text.endswith("\n")
assert list(data)[:3] == ["version", "local_prod", "instances"], list(data)
entries = list(data["instances"].values()) + ([data["local_prod"]] if data["local_prod"] else [])
for v in entries:
    assert list(v) == FIELDS, list(v)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", v["created_at"]), v["created_at"]
    assert isinstance(v["slot"], int) and isinstance(v["is_worktree"], bool)
for k, info in instances.items():
    assert info.instance_id == k and 1 <= info.slot <= 10
if local_prod:
    assert local_prod.slot == 0
print(json.dumps({"instances": sorted(instances), "local_prod": local_prod.instance_id if local_prod else None}))
"#;

/// `env` plus the sandbox `legacy-<tag>`, a worktree made by hand and registered (slot
/// 3) by "the Python tool"; returns the worktree and the instance id.
fn legacy_env(env: &Env) -> (PathBuf, String) {
    let id = env.id_of(&format!("legacy-{}", env.tag));
    let wt = env.sibling(&id);
    env.git(
        &env.main,
        &["worktree", "add", "-q", "-b", &id, wt.to_str().unwrap()],
    );
    python(
        &env.home,
        PY_WRITE_LEGACY,
        &[
            env.home.to_str().unwrap(),
            wt.to_str().unwrap(),
            env.main.to_str().unwrap(),
            &id,
        ],
    );
    (wt, id)
}

/// The `"<id>": {…}` block of a registry text.
fn legacy_block<'a>(text: &'a str, id: &str) -> &'a str {
    let start = text
        .find(&format!("    \"{id}\": {{"))
        .expect("legacy entry");
    let end = start + text[start..].find("\n    }").expect("end of entry") + 6;
    &text[start..end]
}

fn env_keys(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    text.lines()
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            assert!(
                !v.is_empty() && !v.starts_with('\'') && !v.starts_with('"'),
                "{l}"
            );
            k.to_string()
        })
        .collect()
}

#[track_caller]
fn assert_sorted_unique(keys: &[String]) {
    let mut sorted = keys.to_vec();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    sorted.dedup();
    assert_eq!(keys, sorted, "keys are not sorted and unique");
}

fn sourced(dir: &Path, var: &str) -> String {
    let out = Command::new("sh")
        .current_dir(dir)
        .arg("-c")
        .arg(format!(". ./.env.sandbox && echo ${var}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn kinfra_lists_a_python_written_registry() {
    let env = Env::builtin();
    let (wt, id) = legacy_env(&env);
    let before = std::fs::read(env.registry_path()).unwrap();
    let run = env.kinfra(&env.main, &["sandbox", "list", "--json"]);
    run.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    let items = v["instances"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", run.stdout);
    let e = &items[0];
    assert_eq!(e["instance_id"], id.as_str());
    assert_eq!(e["slot"], 3);
    assert_eq!(e["path"], wt.to_str().unwrap());
    assert_eq!(e["created_at"], "2026-01-20T16:29:14.123456+00:00");
    assert_eq!(e["is_worktree"], true);
    assert_eq!(e["parent_repo"], env.main.to_str().unwrap());
    assert_eq!(e["stale"], false);
    let run = env.kinfra(&env.main, &["sandbox", "list"]);
    run.assert_code(0);
    assert!(run.stdout.contains(&id), "{}", run.stdout);
    assert_eq!(
        std::fs::read(env.registry_path()).unwrap(),
        before,
        "reads never write"
    );
}

#[test]
fn kinfra_works_inside_a_python_made_sandbox() {
    let env = Env::builtin();
    let (wt, id) = legacy_env(&env);
    let before = std::fs::read(env.registry_path()).unwrap();
    let sub = wt.join("deep/er");
    std::fs::create_dir_all(&sub).unwrap();
    for dir in [&wt, &sub] {
        let run = env.kinfra(dir, &["env"]);
        run.assert_code(0);
        for line in [
            &format!("export INSTANCE_ID='{id}'"),
            "export KTRDR_API_PORT='8003'",
            "export KTRDR_WORKER_PORT_4='5034'",
            "export SLOT_NUMBER='3'",
        ] {
            assert!(run.stdout.lines().any(|l| l == line), "{}", run.stdout);
        }
        let run = env.kinfra(dir, &["url", "KTRDR_API_PORT"]);
        run.assert_code(0);
        assert_eq!(run.stdout.trim(), "http://localhost:8003/api/v1/docs");
    }
    assert_eq!(std::fs::read(env.registry_path()).unwrap(), before);
}

#[test]
fn creating_beside_a_python_entry_keeps_it_and_the_format() {
    // With a local-prod: names unique to this Env (`ktrdr-prod` may be taken on Docker).
    let env = Env::new();
    let (_wt, legacy) = legacy_env(&env);
    let original = env.registry_text();
    let block = legacy_block(&original, &legacy).to_string();
    let slots_before = env.registry()["slots"].clone();

    let second = env.create_sandbox("second");
    let text = env.registry_text();
    assert!(!text.ends_with('\n'), "trailing newline: {text:?}");
    assert!(
        text.starts_with("{\n  \"version\": 1,\n  \"local_prod\": null,\n  \"instances\": {\n")
    );
    assert_eq!(
        legacy_block(&text, &legacy),
        block,
        "the Python entry changed"
    );
    let reg = env.registry();
    assert_eq!(reg["slots"], slots_before, "unknown top-level key lost");
    assert!(
        text.contains(r#""note": "caf\u00e9 \u2713""#),
        "non-ASCII not escaped as Python does:\n{text}"
    );
    let new = &reg["instances"][env.id_of("second")];
    assert_eq!(new["slot"], 1, "lowest free slot");
    assert_eq!(
        std::fs::canonicalize(new["path"].as_str().unwrap()).unwrap(),
        std::fs::canonicalize(&second).unwrap()
    );
    assert_eq!(new["parent_repo"], env.main.to_str().unwrap());
    let keys: Vec<&String> = new.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "instance_id",
            "slot",
            "path",
            "created_at",
            "is_worktree",
            "parent_repo"
        ]
    );

    // And a local-prod beside them.
    let run = env.kinfra(&env.main, &["local-prod", "create"]);
    run.assert_code(0);
    let text = env.registry_text();
    assert_eq!(legacy_block(&text, &legacy), block);
    assert_eq!(env.registry()["slots"], slots_before);

    let out = python(
        &env.home,
        PY_CHECK_WRITTEN,
        &[env.registry_path().to_str().unwrap()],
    );
    let seen: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let mut instances = [legacy, env.id_of("second")];
    instances.sort();
    assert_eq!(
        seen,
        serde_json::json!({"instances": instances, "local_prod": env.local_prod_id()})
    );
}

#[test]
fn new_env_files_have_exactly_the_ktrdr_keys() {
    // The sandbox on the pure built-in layout (no kinfra.toml), named for this run.
    let env = Env::builtin();
    let name = format!("fresh-{}", env.tag);
    let sandbox = env.create_sandbox(&name);
    let keys = env_keys(&sandbox.join(".env.sandbox"));
    assert_eq!(keys.len(), 20, "{keys:?}");
    assert_sorted_unique(&keys);
    assert_eq!(sourced(&sandbox, "KTRDR_API_PORT"), "8001");
    assert_eq!(sourced(&sandbox, "KTRDR_WORKER_PORT_4"), "5014");
    assert_eq!(sourced(&sandbox, "INSTANCE_ID"), env.id_of(&name));
    let created = sourced(&sandbox, "CREATED_AT");
    assert_eq!(
        created,
        env.registry()["instances"][env.id_of(&name)]["created_at"]
    );

    // local-prod's id is fixed in the built-in layout (and may be taken on Docker):
    // made in an Env whose names are its own; its env file has the same keys.
    let prod_env = Env::new();
    let run = prod_env.kinfra(&prod_env.main, &["local-prod", "create"]);
    run.assert_code(0);
    let prod = PathBuf::from(run.stdout.trim());
    let keys = env_keys(&prod.join(".env.sandbox"));
    assert_eq!(keys.len(), 24, "{keys:?}");
    assert_sorted_unique(&keys);
    assert_eq!(sourced(&prod, "KTRDR_API_PORT"), "8000");
    assert_eq!(sourced(&prod, "KTRDR_WORKER_PORT_8"), "5010");
    assert_eq!(sourced(&prod, "SLOT_NUMBER"), "0");

    // ktrdr's own env reader (load_env_sandbox: split at the first `=`, no unquoting)
    // sees the same values.
    let out = python(
        &env.home,
        r##"
env = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line and not line.startswith("#") and "=" in line:
        k, v = line.split("=", 1)
        env[k] = v
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", env["CREATED_AT"]), env
print(env["KTRDR_API_PORT"], env["SLOT_NUMBER"], env["KTRDR_DATA_DIR"])
"##,
        &[sandbox.join(".env.sandbox").to_str().unwrap()],
    );
    let data_dir = env.home.join(".ktrdr/shared/data");
    assert_eq!(out.trim(), format!("8001 1 {}", data_dir.display()));
}

#[test]
fn python_accepts_what_kinfra_writes_from_scratch() {
    let env = Env::new();
    env.create_sandbox("one");
    env.create_sandbox("two");
    let run = env.kinfra(&env.main, &["local-prod", "create"]);
    run.assert_code(0);
    let out = python(
        &env.home,
        PY_CHECK_WRITTEN,
        &[env.registry_path().to_str().unwrap()],
    );
    let seen: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        seen,
        serde_json::json!({
            "instances": [env.id_of("one"), env.id_of("two")],
            "local_prod": env.local_prod_id()
        })
    );
}

/// ktrdr copies `.claude/settings.local.example.json` to `.claude/settings.local.json`
/// in a new worktree when the target is missing; kinfra does the same (and never
/// overwrites a file that is there).
#[test]
fn new_worktrees_get_the_configured_copy_files() {
    let env = Env::new();
    let claude = env.main.join(".claude");
    std::fs::create_dir_all(&claude).unwrap();
    std::fs::write(
        claude.join("settings.local.example.json"),
        "{\"example\": true}\n",
    )
    .unwrap();
    env.git(&env.main, &["add", "."]);
    env.git(&env.main, &["commit", "-q", "-m", "example settings"]);

    let sandbox = env.create_sandbox("copy");
    assert_eq!(
        std::fs::read_to_string(sandbox.join(".claude/settings.local.json")).unwrap(),
        "{\"example\": true}\n"
    );

    // A tracked settings file is left as it is.
    std::fs::write(claude.join("settings.local.json"), "{\"mine\": 1}\n").unwrap();
    env.git(&env.main, &["add", "."]);
    env.git(&env.main, &["commit", "-q", "-m", "own settings"]);
    let second = env.create_sandbox("copy-two");
    assert_eq!(
        std::fs::read_to_string(second.join(".claude/settings.local.json")).unwrap(),
        "{\"mine\": 1}\n"
    );
}
