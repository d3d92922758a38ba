// Crash safety: for every named crash point (`KINFRA_TEST_CRASH_AT`), kinfra is killed
// with SIGKILL there, as `kill -9` or a power cut would stop it. After every crash the
// registry parses, no two sandboxes share a slot, `doctor --json` explains what is left
// over, and re-running the same command (or `doctor --fix` where it applies) finishes
// the job. Each scenario runs in its own `Env`.
//
// Crash points covered (14): see `CRASH_POINTS`; `every_crash_point_in_src_is_covered`
// checks the list against `crashpoint::hit` in src/ and prints the count.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common::exit;
use crate::common::{Env, Run, canon};
use serde_json::Value;

const CRASH_ENV: &str = "KINFRA_TEST_CRASH_AT";

/// Every crash point these tests drive, each by at least one test below.
const CRASH_POINTS: &[&str] = &[
    "create:after-worktree",
    "create:after-env-file",
    "init:after-env-file",
    "local-prod-create:after-clone",
    "local-prod-create:after-env-file",
    "destroy:after-stop",
    "destroy:after-rescue",
    "destroy:after-files",
    "rescue:before-manifest",
    "write:instances.json:before-rename",
    "write:.env.sandbox:before-rename",
    // `write:<file>:before-rename` is one parameterised point (fsutil); the two files
    // above are the ones kinfra writes atomically.
    "write:<file>:before-rename",
    // Driven with real containers by `snapshot.rs`
    // (`killed_snapshot_is_not_listed_and_killed_restore_is_reported`).
    "snapshot:after-volume",
    "restore:after-volume",
    "copy:after-volume",
];

// ---------------------------------------------------------------- helpers

/// Run `kinfra ARGS` in `cwd` with the crash point set; assert it died of SIGKILL.
/// Returns the child's pid (temp files are named after it) and its output.
#[track_caller]
fn crash(env: &Env, cwd: &Path, point: &str, args: &[&str]) -> (u32, Run) {
    let mut cmd = env.kinfra_cmd(cwd, args);
    cmd.env(CRASH_ENV, point)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn kinfra");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait kinfra");
    let status = out.status;
    let run = Run::from(out);
    assert_eq!(
        status.signal(),
        Some(9),
        "`kinfra {}` with {CRASH_ENV}={point} was not killed by SIGKILL ({status})\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    (pid, run)
}

/// `doctor --json` (optionally `--fix`), parsed and shape-checked; findings about
/// Docker projects that are not the Env's are set aside (Docker is machine-wide).
struct Doctor {
    /// The exit code doctor gives for the Env's own findings (its real exit code is
    /// checked against all of them).
    code: i32,
    findings: Vec<Value>,
    raw: String,
}

impl Doctor {
    fn kinds(&self) -> Vec<&str> {
        self.findings
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect()
    }

    /// The finding of `kind` whose subject contains `subject`.
    #[track_caller]
    fn find(&self, kind: &str, subject: &str) -> &Value {
        self.findings
            .iter()
            .find(|f| f["kind"] == kind && f["subject"].as_str().unwrap().contains(subject))
            .unwrap_or_else(|| {
                panic!(
                    "doctor reports no `{kind}` about `{subject}`:\n{}",
                    self.raw
                )
            })
    }

    #[track_caller]
    fn assert_clean(&self) {
        assert!(
            self.findings.is_empty() && self.code == 0,
            "doctor is not clean (exit {}):\n{}",
            self.code,
            self.raw
        );
    }
}

#[track_caller]
fn doctor(env: &Env, cwd: &Path, fix: bool) -> Doctor {
    let args: &[&str] = if fix {
        &["doctor", "--json", "--fix"]
    } else {
        &["doctor", "--json"]
    };
    let run = env.kinfra(cwd, args);
    assert!(
        run.code == 0 || run.code == 1,
        "doctor exit {}\n{}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("doctor JSON: {e}\n{}\n{}", run.stdout, run.stderr));
    assert_eq!(v["schema_version"], 1, "{}", run.stdout);
    let findings = v["findings"].as_array().expect("findings array").clone();
    for f in &findings {
        for key in ["kind", "subject", "message", "fix"] {
            assert!(f[key].is_string(), "finding lacks `{key}`: {f}");
        }
        for key in ["auto", "fixed"] {
            assert!(f[key].is_boolean(), "finding lacks `{key}`: {f}");
        }
    }
    let remaining = |fs: &[&Value]| fs.iter().filter(|f| f["fixed"] == false).count();
    let all: Vec<&Value> = findings.iter().collect();
    assert_eq!(
        run.code,
        i32::from(remaining(&all) > 0),
        "doctor's exit code disagrees with its findings:\n{}",
        run.stdout
    );
    let own: Vec<&Value> = findings
        .iter()
        .filter(|f| !env.is_foreign_finding(f))
        .collect();
    Doctor {
        code: i32::from(remaining(&own) > 0),
        findings: own.into_iter().cloned().collect(),
        raw: format!("{}\n{}", run.stdout, run.stderr),
    }
}

/// The registry, if the file exists; it must parse.
fn registry(env: &Env) -> Option<Value> {
    env.registry_path()
        .exists()
        .then(|| serde_json::from_str(&env.registry_text()).expect("the registry parses"))
}

fn sandbox_ids(reg: &Option<Value>) -> BTreeSet<String> {
    reg.as_ref()
        .and_then(|r| r["instances"].as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// `.instances.json.tmp.*` files beside the registry.
fn registry_temp_files(env: &Env) -> Vec<PathBuf> {
    let dir = env.registry_path().parent().unwrap().to_owned();
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".instances.json.tmp.")
        })
        .map(|e| e.path())
        .collect()
}

/// What must hold after ANY crash: the registry (if present) parses, slots are
/// distinct and in range, doctor runs and explains every registry temp file, and
/// nothing is reported corrupt. Returns doctor's findings for the caller's checks.
#[track_caller]
fn check_after_crash(env: &Env, doctor_cwd: &Path) -> Doctor {
    if let Some(reg) = registry(env) {
        assert_eq!(reg["version"], 1, "{reg}");
        let mut slots = BTreeSet::new();
        for (id, e) in reg["instances"].as_object().expect("instances") {
            let slot = e["slot"].as_u64().expect("slot");
            assert!((1..=10).contains(&slot), "{id} has slot {slot}");
            assert!(slots.insert(slot), "slot {slot} is shared:\n{reg}");
        }
        if !reg["local_prod"].is_null() {
            assert_eq!(reg["local_prod"]["slot"], 0, "{reg}");
        }
    }
    let doc = doctor(env, doctor_cwd, false);
    assert!(
        !doc.kinds().contains(&"corrupt-registry"),
        "a crash left a corrupt registry:\n{}",
        doc.raw
    );
    for tmp in registry_temp_files(env) {
        let f = doc.find("leftover-temp-file", &tmp.display().to_string());
        assert_eq!(f["auto"], true, "{f}");
    }
    doc
}

/// Parse an env file; assert keys are sorted and unique.
fn env_file(dir: &Path) -> Vec<(String, String)> {
    let path = dir.join(".env.sandbox");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let pairs: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("line {l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    let keys: Vec<&String> = pairs.iter().map(|(k, _)| k).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted, "keys of {} not sorted/unique", path.display());
    pairs
}

fn env_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The env file of `dir` is a correct one for `id` on `slot`.
#[track_caller]
fn assert_env_file(dir: &Path, id: &str, slot: u64) {
    let env = env_file(dir);
    let want_len = if slot == 0 { 24 } else { 20 };
    assert_eq!(env.len(), want_len, "{env:?}");
    assert_eq!(env_get(&env, "INSTANCE_ID"), Some(id));
    assert_eq!(env_get(&env, "COMPOSE_PROJECT_NAME"), Some(id));
    assert_eq!(
        env_get(&env, "SLOT_NUMBER"),
        Some(slot.to_string().as_str())
    );
    assert_eq!(env_get(&env, "SANDBOX_VERSION"), Some("1"));
    let api = (8000 + slot).to_string();
    assert_eq!(env_get(&env, "KTRDR_API_PORT"), Some(api.as_str()));
}

/// Linked worktrees of the main repository (canonical; the main one excluded).
fn worktrees(env: &Env) -> BTreeSet<PathBuf> {
    env.git(&env.main, &["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .map(|p| canon(&p))
        .filter(|p| *p != canon(&env.main))
        .collect()
}

fn branch_exists(env: &Env, branch: &str) -> bool {
    !env.git(&env.main, &["branch", "--list", branch])
        .trim()
        .is_empty()
}

/// `(refname, commit)` of every rescue ref.
fn rescue_refs(env: &Env) -> Vec<(String, String)> {
    env.git(
        &env.main,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/kinfra/rescue/",
        ],
    )
    .lines()
    .map(|l| {
        let (r, c) = l.split_once(' ').unwrap();
        (r.to_string(), c.to_string())
    })
    .collect()
}

/// An expected registered sandbox.
struct Want<'a> {
    id: &'a str,
    path: PathBuf,
    is_worktree: bool,
}

fn sandbox_want(env: &Env, name: &str) -> (String, PathBuf) {
    let id = env.id_of(name);
    let path = env.sibling(&id);
    (id, path)
}

/// The end state after recovery: exactly `sandboxes` (and local-prod at `local_prod`)
/// registered on distinct slots, env files correct, `git worktree list` = the
/// registered worktrees, and doctor (run in `doctor_cwd`) finds nothing except kinds
/// listed in `tolerate`.
#[track_caller]
fn assert_final(
    env: &Env,
    sandboxes: &[Want],
    local_prod: Option<&Path>,
    doctor_cwd: &Path,
    tolerate: &[&str],
) {
    let reg = registry(env).expect("a registry exists");
    let instances = reg["instances"].as_object().expect("instances");
    let want_ids: BTreeSet<String> = sandboxes.iter().map(|w| w.id.to_string()).collect();
    assert_eq!(sandbox_ids(&Some(reg.clone())), want_ids, "{reg}");
    let mut slots = BTreeSet::new();
    let mut want_worktrees = BTreeSet::new();
    for w in sandboxes {
        let e = &instances[w.id];
        assert_eq!(e["instance_id"], w.id);
        assert_eq!(
            canon(Path::new(e["path"].as_str().unwrap())),
            canon(&w.path)
        );
        assert_eq!(e["is_worktree"], w.is_worktree, "{e}");
        let slot = e["slot"].as_u64().unwrap();
        assert!(slots.insert(slot), "slot {slot} shared:\n{reg}");
        assert_env_file(&w.path, w.id, slot);
        if w.is_worktree {
            assert_eq!(
                canon(Path::new(e["parent_repo"].as_str().unwrap())),
                canon(&env.main)
            );
            want_worktrees.insert(canon(&w.path));
        }
    }
    assert_eq!(worktrees(env), want_worktrees, "git worktree list");
    match local_prod {
        Some(p) => {
            let lp = &reg["local_prod"];
            assert_eq!(lp["instance_id"], env.local_prod_id(), "{reg}");
            assert_eq!(lp["slot"], 0);
            assert_eq!(lp["is_worktree"], false);
            assert_eq!(canon(Path::new(lp["path"].as_str().unwrap())), canon(p));
            assert_env_file(p, env.local_prod_id(), 0);
        }
        None => assert!(reg["local_prod"].is_null(), "{reg}"),
    }
    let doc = doctor(env, doctor_cwd, false);
    let unexpected: Vec<&Value> = doc
        .findings
        .iter()
        .filter(|f| !tolerate.contains(&f["kind"].as_str().unwrap()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "doctor still finds something after recovery:\n{}",
        doc.raw
    );
}

fn count_resumes(run: &Run, what: &str) -> usize {
    run.stderr
        .matches(&format!("resuming an interrupted {what}"))
        .count()
}

// ---------------------------------------------------------------- sandbox create

#[test]
fn create_after_worktree_is_resumed_by_rerunning_create() {
    let env = Env::new();
    let (id, path) = sandbox_want(&env, "x");
    crash(
        &env,
        &env.main,
        "create:after-worktree",
        &["sandbox", "create", "x"],
    );

    assert!(path.is_dir(), "the worktree was made before the crash");
    assert!(!path.join(".env.sandbox").exists());
    assert!(!sandbox_ids(&registry(&env)).contains(&id));
    let doc = check_after_crash(&env, &env.main);
    let f = doc.find("unregistered-worktree", &id);
    assert!(
        f["fix"].as_str().unwrap().contains("sandbox create x"),
        "{f}"
    );

    // `doctor --fix` cannot finish this one (no env file to take the slot from); it
    // must not remove the worktree either.
    let fixed = doctor(&env, &env.main, true);
    assert_eq!(fixed.find("unregistered-worktree", &id)["fixed"], false);
    assert!(path.is_dir());

    let run = env.kinfra(&env.main, &["sandbox", "create", "x"]);
    run.assert_code(0);
    assert_eq!(count_resumes(&run, "create"), 1, "{}", run.stderr);
    assert_eq!(canon(Path::new(run.stdout.trim())), canon(&path));
    assert!(branch_exists(&env, &id));
    let want = [Want {
        id: &id,
        path: path.clone(),
        is_worktree: true,
    }];
    assert_final(&env, &want, None, &env.main, &[]);
}

#[test]
fn create_after_env_file_is_resumed_or_registered_by_doctor_fix() {
    // (a) re-running the create.
    let env = Env::new();
    let (id, path) = sandbox_want(&env, "x");
    crash(
        &env,
        &env.main,
        "create:after-env-file",
        &["sandbox", "create", "x"],
    );
    assert_env_file(&path, &id, 1);
    assert!(!sandbox_ids(&registry(&env)).contains(&id));
    let doc = check_after_crash(&env, &env.main);
    assert_eq!(doc.find("unregistered-worktree", &id)["auto"], true);

    let run = env.kinfra(&env.main, &["sandbox", "create", "x"]);
    run.assert_code(0);
    assert_eq!(count_resumes(&run, "create"), 1, "{}", run.stderr);
    let want = [Want {
        id: &id,
        path: path.clone(),
        is_worktree: true,
    }];
    assert_final(&env, &want, None, &env.main, &[]);

    // (b) `doctor --fix` registers it on the slot its env file names.
    let env = Env::new();
    let (id, path) = sandbox_want(&env, "x");
    crash(
        &env,
        &env.main,
        "create:after-env-file",
        &["sandbox", "create", "x"],
    );
    check_after_crash(&env, &env.main);
    let fixed = doctor(&env, &env.main, true);
    assert_eq!(fixed.find("unregistered-worktree", &id)["fixed"], true);
    assert_eq!(fixed.code, 0, "{}", fixed.raw);
    assert_eq!(env.registry()["instances"][&id]["slot"], 1);
    let want = [Want {
        id: &id,
        path,
        is_worktree: true,
    }];
    assert_final(&env, &want, None, &env.main, &[]);
    // The create is finished: running it again is refused.
    env.kinfra(&env.main, &["sandbox", "create", "x"])
        .assert_code(exit::CONFLICT);
}

#[test]
fn create_of_a_registered_sandbox_does_not_claim_to_resume() {
    // After a finished create (or a crash repaired by `doctor --fix`), the worktree is
    // registered: a second `create` of the same name must refuse without first saying
    // it is "resuming an interrupted create".
    let env = Env::new();
    env.create_sandbox("x");
    let again = env.kinfra(&env.main, &["sandbox", "create", "x"]);
    again.assert_code(exit::CONFLICT);
    assert_eq!(count_resumes(&again, "create"), 0, "{}", again.stderr);
}

#[test]
fn env_file_write_killed_before_rename_during_create() {
    let env = Env::new();
    let (id, path) = sandbox_want(&env, "x");
    let (pid, _) = crash(
        &env,
        &env.main,
        "write:.env.sandbox:before-rename",
        &["sandbox", "create", "x"],
    );
    // Never a torn env file: either none or a whole one. Here: none, plus the temp.
    assert!(!path.join(".env.sandbox").exists());
    let tmp = path.join(format!("..env.sandbox.tmp.{pid}"));
    assert!(tmp.is_file(), "expected the temp file {}", tmp.display());
    assert!(!sandbox_ids(&registry(&env)).contains(&id));
    let doc = check_after_crash(&env, &env.main);
    doc.find("unregistered-worktree", &id);

    // Re-running the create must finish it. (The temp env file is an untracked file
    // kinfra itself wrote; it must not make the worktree look like someone's work.)
    let run = env.kinfra(&env.main, &["sandbox", "create", "x"]);
    run.assert_code(0);
    assert_eq!(count_resumes(&run, "create"), 1, "{}", run.stderr);
    let want = [Want {
        id: &id,
        path: path.clone(),
        is_worktree: true,
    }];
    assert_final(&env, &want, None, &env.main, &[]);
    // No leftover temp file that would later make `destroy` see "uncommitted changes".
    let dirty = env.git(&path, &["status", "--porcelain", "--untracked-files=all"]);
    assert!(dirty.trim().is_empty(), "left in the worktree: {dirty}");
}

#[test]
fn env_file_write_killed_before_rename_during_local_prod_create() {
    let env = Env::new();
    let prod = env.sibling("ktrdr-prod");
    let (pid, _) = crash(
        &env,
        &env.main,
        "write:.env.sandbox:before-rename",
        &["local-prod", "create"],
    );
    assert!(!prod.join(".env.sandbox").exists());
    assert!(prod.join(format!("..env.sandbox.tmp.{pid}")).is_file());
    let doc = check_after_crash(&env, &env.main);
    doc.find("leftover-temp-file", "ktrdr-prod");

    let run = env.kinfra(&env.main, &["local-prod", "create"]);
    run.assert_code(0);
    assert_eq!(count_resumes(&run, "create"), 1, "{}", run.stderr);
    assert_final(&env, &[], Some(&prod), &env.main, &[]);
    // The killed write's temp file must not linger unexplained in the clone.
    let left = env.git(&prod, &["status", "--porcelain", "--untracked-files=all"]);
    assert!(left.trim().is_empty(), "left in local-prod: {left}");
}

#[test]
fn registry_write_killed_before_rename_keeps_the_old_registry() {
    // (a) during a create, recovered by re-running it (then doctor --fix for the temp).
    let env = Env::new();
    let first = env.create_sandbox("first");
    let before = std::fs::read(env.registry_path()).unwrap();
    let (id, path) = sandbox_want(&env, "x");
    let (pid, _) = crash(
        &env,
        &env.main,
        "write:instances.json:before-rename",
        &["sandbox", "create", "x"],
    );
    assert_eq!(
        std::fs::read(env.registry_path()).unwrap(),
        before,
        "the old registry content must be intact"
    );
    let tmp = env
        .registry_path()
        .with_file_name(format!(".instances.json.tmp.{pid}"));
    assert_eq!(registry_temp_files(&env), vec![tmp.clone()]);
    // The temp file holds the whole new registry (fsynced), never a fragment.
    let staged: Value = serde_json::from_slice(&std::fs::read(&tmp).unwrap()).unwrap();
    assert!(staged["instances"].get(&id).is_some(), "{staged}");
    let doc = check_after_crash(&env, &env.main);
    assert!(
        doc.find("leftover-temp-file", ".instances.json.tmp.")["message"]
            .as_str()
            .unwrap()
            .contains("intact")
    );
    doc.find("unregistered-worktree", &id);

    let run = env.kinfra(&env.main, &["sandbox", "create", "x"]);
    run.assert_code(0);
    assert_eq!(count_resumes(&run, "create"), 1, "{}", run.stderr);
    // The next registry write, under the lock, removed the dead writer's temp file.
    assert!(!tmp.exists());
    let doc = doctor(&env, &env.main, false);
    assert!(doc.kinds().is_empty(), "{}", doc.raw);
    let want = [
        Want {
            id: &env.id_of("first"),
            path: first.clone(),
            is_worktree: true,
        },
        Want {
            id: &id,
            path: path.clone(),
            is_worktree: true,
        },
    ];
    assert_final(&env, &want, None, &env.main, &[]);

    // (b) during a create, recovered by `doctor --fix` alone.
    let env = Env::new();
    let first = env.create_sandbox("first");
    let (id, path) = sandbox_want(&env, "x");
    crash(
        &env,
        &env.main,
        "write:instances.json:before-rename",
        &["sandbox", "create", "x"],
    );
    check_after_crash(&env, &env.main);
    let fixed = doctor(&env, &env.main, true);
    assert_eq!(fixed.code, 0, "{}", fixed.raw);
    assert!(fixed.findings.iter().all(|f| f["fixed"] == true));
    assert!(registry_temp_files(&env).is_empty());
    let want = [
        Want {
            id: &env.id_of("first"),
            path: first,
            is_worktree: true,
        },
        Want {
            id: &id,
            path,
            is_worktree: true,
        },
    ];
    assert_final(&env, &want, None, &env.main, &[]);

    // (c) during a destroy's final unregister: the worktree is gone, the entry stays.
    let env = Env::new();
    let (id, path) = sandbox_want(&env, "x");
    env.create_sandbox("x");
    let before = std::fs::read(env.registry_path()).unwrap();
    crash(
        &env,
        &env.main,
        "write:instances.json:before-rename",
        &["sandbox", "destroy", "x", "--yes"],
    );
    assert_eq!(std::fs::read(env.registry_path()).unwrap(), before);
    assert!(!path.exists());
    let doc = check_after_crash(&env, &env.main);
    doc.find("stale-entry", &id);
    let run = env.kinfra(&env.main, &["sandbox", "destroy", "x", "--yes"]);
    run.assert_code(0);
    assert!(branch_exists(&env, &id), "the branch is kept");
    doctor(&env, &env.main, true);
    assert_final(&env, &[], None, &env.main, &[]);
}

// ---------------------------------------------------------------- sandbox init

#[test]
fn init_after_env_file_is_reported_and_resumed() {
    let env = Env::new();
    // The directory's basename is the instance id: unique to this Env.
    let id = format!("plain-{}", env.tag);
    env.git(
        &env.dev(),
        &["clone", "-q", env.main.to_str().unwrap(), &id],
    );
    let plain = env.sibling(&id);
    crash(&env, &plain, "init:after-env-file", &["sandbox", "init"]);
    assert_env_file(&plain, &id, 1);
    assert!(!sandbox_ids(&registry(&env)).contains(&id));
    // Run inside the checkout, doctor explains the stray env file.
    let doc = check_after_crash(&env, &plain);
    let f = doc.find("unregistered-env-file", &id);
    assert!(f["fix"].as_str().unwrap().contains("sandbox init"), "{f}");

    let run = env.kinfra(&plain, &["sandbox", "init"]);
    run.assert_code(0);
    assert_eq!(count_resumes(&run, "init"), 1, "{}", run.stderr);
    let want = [Want {
        id: &id,
        path: plain.clone(),
        is_worktree: false,
    }];
    assert_final(&env, &want, None, &plain, &[]);
    // A finished init is not resumed again.
    env.kinfra(&plain, &["sandbox", "init"])
        .assert_code(exit::CONFLICT)
        .assert_stderr_contains("already initialized");
}

// ---------------------------------------------------------------- local-prod create

#[test]
fn local_prod_create_after_clone_is_resumed() {
    let env = Env::new();
    let prod = env.sibling("ktrdr-prod");
    crash(
        &env,
        &env.main,
        "local-prod-create:after-clone",
        &["local-prod", "create"],
    );
    assert!(prod.join(".git").exists());
    assert!(!prod.join(".env.sandbox").exists());
    assert!(registry(&env).is_none_or(|r| r["local_prod"].is_null()));
    // A clone without an env file is also what a completed `local-prod destroy` keeps:
    // nothing kinfra-specific is wrong, and re-running create adopts it.
    check_after_crash(&env, &env.main).assert_clean();
    // As if killed before kinfra re-pointed origin: `git clone` names the main
    // repository as origin.
    let origin = env.git(&env.main, &["remote", "get-url", "origin"]);
    env.git(
        &prod,
        &["remote", "set-url", "origin", env.main.to_str().unwrap()],
    );

    let run = env.kinfra(&env.main, &["local-prod", "create"]);
    run.assert_code(0);
    assert_eq!(count_resumes(&run, "create"), 1, "{}", run.stderr);
    assert_final(&env, &[], Some(&prod), &env.main, &[]);
    // Still an independent clone (not a worktree), on the default branch, and the
    // resumed create ends with the main repository's origin.
    assert!(prod.join(".git").is_dir());
    assert_eq!(env.git(&prod, &["branch", "--show-current"]).trim(), "main");
    assert_eq!(env.git(&prod, &["remote", "get-url", "origin"]), origin);
}

#[test]
fn local_prod_create_after_env_file_is_resumed() {
    let env = Env::new();
    let prod = env.sibling("ktrdr-prod");
    crash(
        &env,
        &env.main,
        "local-prod-create:after-env-file",
        &["local-prod", "create"],
    );
    assert_env_file(&prod, env.local_prod_id(), 0);
    assert!(registry(&env).is_none_or(|r| r["local_prod"].is_null()));
    let doc = check_after_crash(&env, &env.main);
    doc.find("unregistered-local-prod", "ktrdr-prod");

    let run = env.kinfra(&env.main, &["local-prod", "create"]);
    run.assert_code(0);
    assert_eq!(count_resumes(&run, "create"), 1, "{}", run.stderr);
    assert_final(&env, &[], Some(&prod), &env.main, &[]);
}

// ---------------------------------------------------------------- destroy

#[test]
fn sandbox_destroy_after_stop_is_finished_by_rerun() {
    let env = Env::new();
    let (id, path) = sandbox_want(&env, "x");
    env.create_sandbox("x");
    let before = std::fs::read(env.registry_path()).unwrap();
    crash(
        &env,
        &env.main,
        "destroy:after-stop",
        &["sandbox", "destroy", "x", "--yes"],
    );
    // Nothing but containers touched: still registered, worktree and env file intact.
    assert_eq!(std::fs::read(env.registry_path()).unwrap(), before);
    assert_env_file(&path, &id, 1);
    check_after_crash(&env, &env.main).assert_clean();

    env.kinfra(&env.main, &["sandbox", "destroy", "x", "--yes"])
        .assert_code(0);
    assert!(!path.exists());
    assert!(branch_exists(&env, &id), "the branch is kept");
    assert_final(&env, &[], None, &env.main, &[]);
}

#[test]
fn rescue_killed_before_its_manifest_loses_nothing_and_a_rerun_finishes() {
    let env = Env::new();
    let (id, path) = sandbox_want(&env, "x");
    env.create_sandbox("x");
    std::fs::write(path.join("work.txt"), "precious\n").unwrap();
    // An ignored, precious file (like ktrdr's `.env`): moved into the rescue directory.
    std::fs::write(path.join(".gitignore"), ".env.sandbox\n.env\n").unwrap();
    std::fs::write(path.join(".env"), "SECRET=1\n").unwrap();
    let (_, killed) = crash(
        &env,
        &env.main,
        "rescue:before-manifest",
        &["sandbox", "destroy", "x", "--force"],
    );
    // The worktree and its entry are still there; the moved file is in the rescue
    // directory, never lost.
    assert!(path.join("work.txt").is_file(), "{}", killed.stderr);
    assert!(sandbox_ids(&registry(&env)).contains(&id));
    let moved: Vec<PathBuf> = walk(&env.home.join(format!(".ktrdr/rescue/{id}")))
        .into_iter()
        .filter(|p| p.ends_with("files/.env"))
        .collect();
    let in_place = path.join(".env").is_file();
    assert!(
        in_place || moved.len() == 1,
        "`.env` is neither in the worktree nor in the rescue directory"
    );
    // `rescue list` shows the cut-short rescue as incomplete.
    let list = env.kinfra(&env.main, &["rescue", "list"]);
    list.assert_code(0);
    assert!(list.stdout.contains("incomplete"), "{}", list.stdout);

    // The re-run rescues what is left and finishes.
    env.kinfra(&env.main, &["sandbox", "destroy", "x", "--force"])
        .assert_code(0);
    assert!(!path.exists());
    assert!(!sandbox_ids(&registry(&env)).contains(&id));
    let found: Vec<PathBuf> = walk(&env.home.join(format!(".ktrdr/rescue/{id}")))
        .into_iter()
        .filter(|p| p.ends_with("files/.env"))
        .collect();
    assert!(
        !found.is_empty(),
        "`.env` must survive in a rescue directory"
    );
    for f in found {
        assert_eq!(std::fs::read_to_string(f).unwrap(), "SECRET=1\n");
    }
}

/// Every file below `dir` (no symlinks followed).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk(&p)),
            Ok(_) => out.push(p),
            Err(_) => {}
        }
    }
    out
}

#[test]
fn sandbox_destroy_after_rescue_keeps_the_work_and_is_finished_by_rerun() {
    let env = Env::new();
    let (id, path) = sandbox_want(&env, "x");
    env.create_sandbox("x");
    std::fs::write(path.join("work.txt"), "precious\n").unwrap();
    let (_, killed) = crash(
        &env,
        &env.main,
        "destroy:after-rescue",
        &["sandbox", "destroy", "x", "--force"],
    );
    let after_crash = rescue_refs(&env);
    assert_eq!(after_crash.len(), 1, "{after_crash:?}\n{}", killed.stderr);
    let (first_ref, first_commit) = after_crash[0].clone();
    assert!(first_ref.starts_with(&format!("refs/kinfra/rescue/{id}/")));
    let saved = env.git(&env.main, &["show", &format!("{first_commit}:work.txt")]);
    assert_eq!(saved, "precious\n");
    // The worktree (with the work) and the entry are still there.
    assert_eq!(
        std::fs::read_to_string(path.join("work.txt")).unwrap(),
        "precious\n"
    );
    assert!(sandbox_ids(&registry(&env)).contains(&id));
    check_after_crash(&env, &env.main);

    // Without --force the re-run still refuses uncommitted work and changes nothing.
    env.kinfra(&env.main, &["sandbox", "destroy", "x", "--yes"])
        .assert_code(exit::REFUSED)
        .assert_stderr_contains("work that would be lost");
    assert!(path.join("work.txt").is_file());
    assert_eq!(rescue_refs(&env), after_crash);

    let run = env.kinfra(&env.main, &["sandbox", "destroy", "x", "--force"]);
    run.assert_code(0);
    assert!(!path.exists());
    assert!(branch_exists(&env, &id), "the branch is kept");
    // Exactly one new rescue ref per completed rescue: the re-run rescued once more
    // (same second ⇒ same ref name and, for the same tree, the same commit).
    let saved_again: Vec<String> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("unsaved work kept as rescue `"))
        .filter_map(|l| l.split('`').next())
        .map(|name| format!("refs/kinfra/rescue/{name}"))
        .collect();
    assert_eq!(saved_again.len(), 1, "{}", run.stderr);
    let refs = rescue_refs(&env);
    let expected = if saved_again[0] == first_ref { 1 } else { 2 };
    assert_eq!(refs.len(), expected, "{refs:?}");
    assert!(
        refs.iter().any(|(r, _)| *r == first_ref),
        "the first rescue ref is gone: {refs:?}"
    );
    for (r, c) in &refs {
        let saved = env.git(&env.main, &["show", &format!("{c}:work.txt")]);
        assert_eq!(saved, "precious\n", "{r}");
        let has_env = env.git(&env.main, &["ls-tree", "--name-only", c]);
        assert!(!has_env.lines().any(|l| l == ".env.sandbox"), "{r}");
    }
    assert_final(&env, &[], None, &env.main, &[]);
}

#[test]
fn sandbox_destroy_after_files_is_finished_by_rerun_or_doctor_fix() {
    for use_doctor in [false, true] {
        let env = Env::new();
        let (id, path) = sandbox_want(&env, "x");
        env.create_sandbox("x");
        let keep = env.create_sandbox("keep");
        crash(
            &env,
            &env.main,
            "destroy:after-files",
            &["sandbox", "destroy", "x", "--yes"],
        );
        assert!(!path.exists(), "the worktree was removed before the crash");
        assert!(sandbox_ids(&registry(&env)).contains(&id));
        let doc = check_after_crash(&env, &env.main);
        assert_eq!(doc.find("stale-entry", &id)["auto"], true);

        if use_doctor {
            let fixed = doctor(&env, &env.main, true);
            assert_eq!(fixed.find("stale-entry", &id)["fixed"], true);
        } else {
            env.kinfra(&env.main, &["sandbox", "destroy", "x", "--yes"])
                .assert_code(0);
        }
        assert!(branch_exists(&env, &id), "the branch is kept");
        let want = [Want {
            id: &env.id_of("keep"),
            path: keep,
            is_worktree: true,
        }];
        assert_final(&env, &want, None, &env.main, &[]);
    }
}

/// `local-prod destroy` keeps the clone (SPEC 6.4) and doctor has nothing to say about
/// it (see `doctor_is_clean_after_local_prod_destroy`).
const KEPT_CLONE: &[&str] = &[];

#[test]
fn local_prod_destroy_after_stop_is_finished_by_rerun() {
    let env = Env::new();
    let prod = env.sibling("ktrdr-prod");
    env.kinfra(&env.main, &["local-prod", "create"])
        .assert_code(0);
    let sandbox = env.create_sandbox("s");
    crash(
        &env,
        &sandbox,
        "destroy:after-stop",
        &["local-prod", "destroy", "--yes"],
    );
    assert_env_file(&prod, env.local_prod_id(), 0);
    assert!(!env.registry()["local_prod"].is_null());
    check_after_crash(&env, &env.main).assert_clean();

    env.kinfra(&sandbox, &["local-prod", "destroy", "--yes"])
        .assert_code(0);
    assert!(prod.join(".git").is_dir(), "the clone is kept");
    assert!(!prod.join(".env.sandbox").exists());
    let want = [Want {
        id: &env.id_of("s"),
        path: sandbox,
        is_worktree: true,
    }];
    assert_final(&env, &want, None, &env.main, KEPT_CLONE);
}

#[test]
fn local_prod_destroy_after_files_is_finished_by_rerun() {
    let env = Env::new();
    let prod = env.sibling("ktrdr-prod");
    env.kinfra(&env.main, &["local-prod", "create"])
        .assert_code(0);
    crash(
        &env,
        &env.main,
        "destroy:after-files",
        &["local-prod", "destroy", "--yes"],
    );
    assert!(!prod.join(".env.sandbox").exists());
    assert!(!env.registry()["local_prod"].is_null());
    let doc = check_after_crash(&env, &env.main);
    doc.find("missing-env-file", env.local_prod_id());

    env.kinfra(&env.main, &["local-prod", "destroy", "--yes"])
        .assert_code(0);
    assert!(prod.join(".git").is_dir(), "the clone is kept");
    assert_final(&env, &[], None, &env.main, KEPT_CLONE);
}

#[test]
fn doctor_is_clean_after_local_prod_destroy() {
    // Not a crash: the end state of a completed `local-prod destroy` (clone kept, env
    // file removed, unregistered) is what destroy is meant to leave, so doctor should
    // not call it a problem and exit 1.
    let env = Env::new();
    env.kinfra(&env.main, &["local-prod", "create"])
        .assert_code(0);
    env.kinfra(&env.main, &["local-prod", "destroy", "--yes"])
        .assert_code(0);
    doctor(&env, &env.main, false).assert_clean();
}

// ---------------------------------------------------------------- coverage

#[test]
fn every_crash_point_in_src_is_covered() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeSet::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for rest in text.split("crashpoint::hit(").skip(1) {
                    if let Some(lit) = rest.strip_prefix('"') {
                        found.insert(lit.split('"').next().unwrap().to_string());
                    } else if rest.contains("write:{name}:before-rename") {
                        found.insert("write:<file>:before-rename".to_string());
                    }
                }
            }
        }
    }
    let covered: BTreeSet<String> = CRASH_POINTS.iter().map(|s| s.to_string()).collect();
    let missing: Vec<&String> = found.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "crash points without a test: {missing:?}"
    );
    let named = CRASH_POINTS
        .iter()
        .filter(|p| !p.contains('<'))
        .collect::<Vec<_>>();
    eprintln!(
        "crash-point call sites in src: {} (8 named + the parameterised write:<file>); crash points tested: {} ({})",
        found.len(),
        named.len(),
        named
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}
