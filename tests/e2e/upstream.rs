// The failure modes of ktrdr's Python sandbox tool, each as a named end-to-end test of
// what kinfra does instead. Every test has its own HOME and repositories; Docker is
// shared by every process on the machine, so names that reach Docker carry the test
// process id, and doctor findings about *other* processes' Docker projects are set
// aside when a test asserts that doctor is clean.
//
// Covered elsewhere, not repeated here: concurrent creates losing entries
// (tests/concurrency.rs), `sandbox destroy` inside the local-prod clone
// (tests/safety.rs), destroying after a failed gate (tests/stack.rs).

use std::path::{Path, PathBuf};

use crate::common::exit;
use crate::common::{Env, LabelledVolume as Volume, Run, branch_exists, canon, listed, worktrees};
use serde_json::Value;

/// A sandbox name unique to this test process.
fn uniq(name: &str) -> String {
    format!("{name}{}", std::process::id())
}

fn rescue_refs(env: &Env, repo: &Path) -> Vec<String> {
    env.git(
        repo,
        &["for-each-ref", "--format=%(refname)", "refs/kinfra/rescue/"],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// `kinfra doctor ARGS --json` in `cwd`: the run and its parsed report.
fn doctor(env: &Env, cwd: &Path, args: &[&str]) -> (Run, Value) {
    let mut all = vec!["doctor", "--json"];
    all.extend_from_slice(args);
    let run = env.kinfra(cwd, &all);
    let report: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e})\n--- stdout\n{}\n--- stderr\n{}",
            run.stdout, run.stderr
        )
    });
    assert_eq!(report["schema_version"], 1, "{report}");
    (run, report)
}

/// The findings of a report that concern this test: not those about Docker projects
/// that are not the Env's (Docker is machine-wide; this test's HOME is not).
fn own_findings(env: &Env, report: &Value) -> Vec<Value> {
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .filter(|f| !env.is_foreign_finding(f))
        .cloned()
        .collect()
}

/// The one finding of `kind` about `subject`.
#[track_caller]
fn finding(report: &Value, kind: &str, subject: &str) -> Value {
    let found: Vec<&Value> = report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .filter(|f| f["kind"] == kind && f["subject"] == subject)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one `{kind}` finding about `{subject}`:\n{report:#}"
    );
    found[0].clone()
}

/// doctor finds nothing about this test's state: exit 0, unless Docker projects that
/// are not the Env's are around, which are then the only findings left.
#[track_caller]
fn assert_doctor_clean(env: &Env, cwd: &Path) {
    let (run, report) = doctor(env, cwd, &[]);
    let own = own_findings(env, &report);
    assert!(own.is_empty(), "doctor should be clean:\n{report:#}");
    let foreign = report["findings"].as_array().unwrap().len();
    assert_eq!(report["remaining"], foreign, "{report:#}");
    run.assert_code(if foreign == 0 { 0 } else { 1 });
}

/// Drop `id` from the registry by hand, as a user editing the JSON would.
fn remove_entry_by_hand(env: &Env, id: &str) {
    let mut reg = env.registry();
    let removed = reg["instances"]
        .as_object_mut()
        .expect("instances object")
        .remove(id);
    assert!(removed.is_some(), "`{id}` was not registered");
    std::fs::write(
        env.registry_path(),
        serde_json::to_string_pretty(&reg).unwrap(),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------

/// Upstream bug: after a sandbox directory was deleted by hand (`rm -rf`), ktrdr's
/// `sandbox list` silently dropped the entry while *reading* (and its containers and
/// volumes with it from view), so nothing ever cleaned them up. kinfra's list shows the
/// entry as `missing (stale)`, warns, and writes nothing; `doctor` reports it and
/// `doctor --fix` unregisters it (Docker holds nothing of it) and prunes the worktree.
#[test]
fn stale_entry_after_rm_rf_is_reported_by_list_and_fixed_by_doctor() {
    let env = Env::new();
    let name = uniq("stale");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    let sandbox_canon = canon(&sandbox);
    std::fs::remove_dir_all(&sandbox).unwrap();
    let reg_before = env.registry_text();

    // list: shown as missing/stale, warned about, not dropped.
    let run = env.kinfra(&env.main, &["sandbox", "list"]);
    run.assert_code(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains(&id) && l.contains("missing") && l.contains("stale")),
        "list should show `{id}` as missing (stale):\n{}",
        run.stdout
    );
    run.assert_stderr_contains("stale");
    let row = listed(&env, &id);
    assert_eq!(row["status"], "missing", "{row}");
    assert_eq!(row["stale"], true, "{row}");
    assert_eq!(env.registry_text(), reg_before, "list must never write");

    // doctor: reports it, exit 1, writes nothing.
    let run = env.kinfra(&env.main, &["doctor"]);
    run.assert_code(exit::FAILURE);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("[stale-entry]") && l.contains(&id)),
        "doctor should report the stale entry:\n{}",
        run.stdout
    );
    let (run, report) = doctor(&env, &env.main, &[]);
    run.assert_code(exit::FAILURE);
    let stale = finding(&report, "stale-entry", &id);
    assert_eq!(stale["auto"], true, "{stale}");
    assert_eq!(stale["fixed"], false, "{stale}");
    assert_eq!(
        env.registry_text(),
        reg_before,
        "doctor without --fix wrote"
    );
    assert!(worktrees(&env, &env.main).contains(&sandbox_canon));

    // doctor --fix: unregistered and pruned; the branch stays.
    let (_, report) = doctor(&env, &env.main, &["--fix"]);
    assert_eq!(finding(&report, "stale-entry", &id)["fixed"], true);
    assert!(env.registry()["instances"].get(&id).is_none());
    assert!(!worktrees(&env, &env.main).contains(&sandbox_canon));
    assert!(
        branch_exists(&env, &env.main, &id),
        "the branch must be kept"
    );

    assert_doctor_clean(&env, &env.main);
}

/// Upstream bug: a sandbox deleted by hand and dropped from the registry freed its slot
/// while its Docker volumes survived; the next sandbox of that name reused the old
/// database volume silently. kinfra's doctor does not unregister an entry while Docker
/// still holds something of it (the fix is the destroy command), and `sandbox create`
/// refuses a name whose project still has volumes, naming them and printing the
/// `docker volume rm` cleanup; doctor then reports the orphaned project.
#[test]
fn slot_reuse_after_manual_delete_with_surviving_volumes_is_refused() {
    let env = Env::new();
    let name = uniq("upvol");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    let volume = Volume::create(&id, &format!("{id}_data"));
    std::fs::remove_dir_all(&sandbox).unwrap();

    // doctor: stale, but not auto-fixable while the volume exists.
    let (run, report) = doctor(&env, &env.main, &[]);
    run.assert_code(exit::FAILURE);
    let stale = finding(&report, "stale-entry", &id);
    assert_eq!(stale["auto"], false, "{stale}");
    assert_eq!(stale["fix"], format!("kinfra sandbox destroy {id} --yes"));
    assert!(
        stale["message"].as_str().unwrap().contains("volume"),
        "{stale}"
    );
    let (run, report) = doctor(&env, &env.main, &["--fix"]);
    run.assert_code(exit::FAILURE);
    assert_eq!(finding(&report, "stale-entry", &id)["fixed"], false);
    assert!(
        env.registry()["instances"][&id].is_object(),
        "doctor --fix unregistered an instance whose volume still exists"
    );
    assert!(volume.exists(), "doctor removed a volume");

    // The user drops the entry by hand and prunes git: the slot looks free.
    remove_entry_by_hand(&env, &id);
    env.git(&env.main, &["worktree", "prune"]);
    let reg_before = env.registry_text();

    let run = env.kinfra(&env.main, &["sandbox", "create", &name]);
    run.assert_code(exit::CONFLICT)
        .assert_stderr_contains(&volume.0);
    let hint = run
        .stderr
        .lines()
        .find(|l| l.starts_with("hint:"))
        .unwrap_or_else(|| panic!("no hint:\n{}", run.stderr));
    assert!(
        hint.contains(&format!("docker volume rm {}", volume.0)),
        "the hint should give the cleanup command: {hint}"
    );
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
    assert!(!sandbox.exists(), "a refused create left a directory");
    assert_eq!(env.registry_text(), reg_before);
    assert!(volume.exists());

    let (run, report) = doctor(&env, &env.main, &[]);
    run.assert_code(exit::FAILURE);
    let orphan = finding(&report, "unregistered-docker-project", &id);
    assert_eq!(orphan["auto"], false, "{orphan}");
    assert!(
        orphan["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("docker volume rm {}", volume.0)),
        "{orphan}"
    );
    // --fix never removes Docker data.
    doctor(&env, &env.main, &["--fix"]);
    assert!(volume.exists(), "doctor --fix removed a volume");
}

/// Upstream bug: with `.env.sandbox` deleted from a worktree, ktrdr's commands fell
/// back to defaults (slot-0 ports: the sandbox talked to local-prod). kinfra's instance
/// commands fail naming the env file, and `doctor --fix` writes it again from the
/// registry — byte-identical, since it uses the registry's `created_at`.
#[test]
fn env_file_deleted_from_worktree_is_regenerated_by_doctor_fix() {
    let env = Env::new();
    let name = uniq("noenv");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    let file = sandbox.join(".env.sandbox");
    let original = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let reg_before = env.registry_text();

    let mut unclear = Vec::new();
    for args in [&["env"][..], &["url"][..], &["sandbox", "status"][..]] {
        let run = env.kinfra(&sandbox, args);
        run.assert_code(exit::FAILURE);
        assert!(run.stdout.is_empty(), "{args:?} stdout: {}", run.stdout);
        run.assert_stderr_contains(".env.sandbox");
        // The directory is a registered sandbox: the way out is doctor.
        if !run.stderr.contains("doctor") {
            unclear.push(format!("{args:?}:\n{}", run.stderr));
        }
    }
    assert!(!file.exists(), "a failed command wrote the env file");
    assert_eq!(env.registry_text(), reg_before);

    let (run, report) = doctor(&env, &env.main, &[]);
    run.assert_code(exit::FAILURE);
    let missing = finding(&report, "missing-env-file", &id);
    assert_eq!(missing["auto"], true, "{missing}");
    assert!(!file.exists(), "doctor without --fix wrote the env file");

    let (_, report) = doctor(&env, &env.main, &["--fix"]);
    assert_eq!(finding(&report, "missing-env-file", &id)["fixed"], true);
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&file).unwrap()),
        String::from_utf8_lossy(&original),
        "the regenerated env file differs"
    );
    assert_eq!(env.registry_text(), reg_before);
    env.kinfra(&sandbox, &["env"]).assert_code(0);
    assert_doctor_clean(&env, &env.main);

    assert!(
        unclear.is_empty(),
        "in a registered sandbox without its env file, the error should point to \
         `kinfra doctor --fix`:\n{}",
        unclear.join("\n")
    );
}

/// Upstream bug: ktrdr's `load_registry` turned any parse error into an empty registry
/// (`except: return Registry()`), so the next create overwrote every entry. kinfra
/// refuses every command on a truncated registry and leaves it byte-for-byte alone;
/// `doctor --fix` moves it aside (`instances.json.corrupt-*`, the same bytes) and
/// rebuilds the entries from the env files on disk, slots and `created_at` kept.
#[test]
fn registry_corruption_is_never_treated_as_empty() {
    let env = Env::new();
    let a = uniq("corrupt-a");
    let b = uniq("corrupt-b");
    let sa = PathBuf::from(
        env.kinfra(&env.main, &["sandbox", "create", &a, "--slot", "3"])
            .assert_code(0)
            .stdout
            .trim(),
    );
    let sb = PathBuf::from(
        env.kinfra(&env.main, &["sandbox", "create", &b, "--slot", "7"])
            .assert_code(0)
            .stdout
            .trim(),
    );
    let prod = PathBuf::from(
        env.kinfra(&env.main, &["local-prod", "create"])
            .assert_code(0)
            .stdout
            .trim(),
    );
    let good = env.registry();
    let text = env.registry_text();
    let truncated = &text.as_bytes()[..text.len() / 2];
    std::fs::write(env.registry_path(), truncated).unwrap();
    let reg_name = env.registry_path().display().to_string();

    for (cwd, args) in [
        (&env.main, &["sandbox", "create", "newer"][..]),
        (&env.main, &["sandbox", "list"][..]),
        (&env.main, &["sandbox", "destroy", a.as_str(), "--yes"][..]),
        (&sb, &["sandbox", "destroy", "--force"][..]),
        (&env.main, &["local-prod", "destroy", "--force"][..]),
    ] {
        let run = env.kinfra(cwd, args);
        run.assert_code(exit::FAILURE)
            .assert_stderr_contains(&reg_name);
        assert_eq!(
            std::fs::read(env.registry_path()).unwrap(),
            truncated,
            "{args:?} rewrote the corrupt registry"
        );
    }
    assert!(sa.join(".env.sandbox").is_file() && sb.join(".env.sandbox").is_file());
    assert!(prod.join(".env.sandbox").is_file());
    assert!(!env.sibling(&env.id_of("newer")).exists());

    // doctor: reports, writes nothing.
    let (run, report) = doctor(&env, &env.main, &[]);
    run.assert_code(exit::FAILURE);
    assert_eq!(
        finding(&report, "corrupt-registry", &reg_name)["auto"],
        true
    );
    assert_eq!(std::fs::read(env.registry_path()).unwrap(), truncated);

    // doctor --fix: backup of the exact bytes, entries rebuilt from the env files.
    let (_, report) = doctor(&env, &env.main, &["--fix"]);
    assert_eq!(
        finding(&report, "corrupt-registry", &reg_name)["fixed"],
        true
    );
    let dir = env.registry_path().parent().unwrap().to_owned();
    let backups: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("instances.json.corrupt-")
        })
        .collect();
    assert_eq!(backups.len(), 1, "one backup expected: {backups:?}");
    assert_eq!(std::fs::read(&backups[0]).unwrap(), truncated);

    let rebuilt = env.registry();
    for id in [env.id_of(&a), env.id_of(&b)] {
        let (old, new) = (&good["instances"][&id], &rebuilt["instances"][&id]);
        assert!(new.is_object(), "`{id}` not rebuilt:\n{rebuilt:#}");
        for field in ["slot", "created_at", "is_worktree"] {
            assert_eq!(old[field], new[field], "`{id}`.{field}");
        }
        assert_eq!(
            canon(Path::new(new["path"].as_str().unwrap())),
            canon(Path::new(old["path"].as_str().unwrap())),
        );
        assert_eq!(
            canon(Path::new(new["parent_repo"].as_str().unwrap())),
            canon(&env.main)
        );
    }
    assert_eq!(rebuilt["instances"].as_object().unwrap().len(), 2);
    assert_eq!(rebuilt["local_prod"]["slot"], 0, "{rebuilt:#}");
    assert_eq!(
        rebuilt["local_prod"]["created_at"],
        good["local_prod"]["created_at"]
    );
    assert_eq!(
        canon(Path::new(rebuilt["local_prod"]["path"].as_str().unwrap())),
        canon(&prod)
    );

    // The rebuilt registry works, and the sandboxes are recognised again.
    env.kinfra(&env.main, &["sandbox", "list"]).assert_code(0);
    env.kinfra(&sa, &["env"]).assert_code(0);
    env.kinfra(&prod, &["local-prod", "status", "--json"])
        .assert_code(0);
    assert_doctor_clean(&env, &env.main);
}

/// The same upstream bug by another road: `doctor --fix` run where it cannot see any
/// main repository (e.g. from HOME) must not "rebuild" a corrupt registry into an empty
/// one — that loses every entry just as ktrdr's `except: return Registry()` did, and
/// the next create would hand out the slots of live sandboxes again. Either the
/// registry stays as it is (and doctor exits 1), or the rebuild finds the sandbox.
#[test]
fn corrupt_registry_is_not_rebuilt_empty_from_outside_a_checkout() {
    let env = Env::new();
    let name = uniq("outside");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    let text = env.registry_text();
    let truncated = text.as_bytes()[..text.len() / 2].to_vec();
    std::fs::write(env.registry_path(), &truncated).unwrap();

    let (run, _) = doctor(&env, &env.home, &["--fix"]);
    let now = std::fs::read(env.registry_path()).unwrap();
    if now == truncated {
        run.assert_code(exit::FAILURE);
    } else {
        let rebuilt: Value = serde_json::from_slice(&now).unwrap();
        assert!(
            rebuilt["instances"][&id].is_object(),
            "doctor --fix outside a checkout replaced the corrupt registry with one that \
             lost `{id}` (exit {}):\n{rebuilt:#}\n--- stderr\n{}",
            run.code,
            run.stderr
        );
    }
    assert!(sandbox.join(".env.sandbox").is_file());
}

/// Upstream gap: a worktree made by hand next to the sandboxes (`git worktree add
/// ../ktrdr--manual`) was invisible to ktrdr's tool, which later handed its directory
/// name to a new sandbox. kinfra's doctor reports it as an unregistered worktree with a
/// command to adopt or remove it, and never registers it by itself (no env file says
/// which slot it should have); the printed create adopts it.
#[test]
fn worktree_without_env_file_is_reported() {
    let env = Env::new();
    let name = uniq("manual");
    let id = env.id_of(&name);
    let dir = env.sibling(&id);
    env.git(&env.main, &["worktree", "add", "-q", dir.to_str().unwrap()]);
    let reg_before = env.registry_text();

    let (run, report) = doctor(&env, &env.main, &[]);
    run.assert_code(exit::FAILURE);
    let found = finding(&report, "unregistered-worktree", &id);
    assert_eq!(found["auto"], false, "{found}");
    let fix = found["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!("kinfra sandbox create {name}")),
        "{fix}"
    );
    assert!(fix.contains("worktree remove"), "{fix}");
    assert!(
        found["message"].as_str().unwrap().contains("no env file"),
        "{found}"
    );

    let (run, report) = doctor(&env, &env.main, &["--fix"]);
    run.assert_code(exit::FAILURE);
    assert_eq!(
        finding(&report, "unregistered-worktree", &id)["fixed"],
        false
    );
    assert_eq!(
        env.registry_text(),
        reg_before,
        "doctor --fix registered it"
    );
    assert!(!dir.join(".env.sandbox").exists());
    assert!(worktrees(&env, &env.main).contains(&canon(&dir)));

    // The printed fix adopts the worktree.
    let run = env.kinfra(&env.main, &["sandbox", "create", &name]);
    run.assert_code(0);
    assert_eq!(canon(Path::new(run.stdout.trim())), canon(&dir));
    assert!(env.registry()["instances"][&id].is_object());
    assert!(dir.join(".env.sandbox").is_file());
    assert_doctor_clean(&env, &env.main);
}

/// Upstream gap: ktrdr lost uncommitted work outright; kinfra keeps it as rescue refs,
/// which must not pile up unseen. doctor lists rescue refs older than `--rescue-days`
/// and deletes them only with `--fix`.
#[test]
fn doctor_never_deletes_rescues_and_prune_is_explicit() {
    let env = Env::new();
    let name = uniq("rescue");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    std::fs::write(sandbox.join("work.txt"), "uncommitted\n").unwrap();
    env.kinfra(&env.main, &["sandbox", "destroy", &name, "--force"])
        .assert_code(0);
    let refs = rescue_refs(&env, &env.main);
    assert_eq!(refs.len(), 1, "{refs:?}");
    let rescue = refs[0].clone();
    assert!(rescue.starts_with(&format!("refs/kinfra/rescue/{id}/")));

    // Ages are whole seconds: make the rescue older than 0 days' worth of seconds.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // doctor, even with --fix, never touches a rescue.
    assert_doctor_clean(&env, &env.main);
    doctor(&env, &env.main, &["--fix"]);
    assert_eq!(rescue_refs(&env, &env.main), vec![rescue.as_str()]);

    // `rescue list` shows it; `prune --dry-run` names it and deletes nothing.
    let list = env.kinfra(&env.main, &["rescue", "list", "--json"]);
    list.assert_code(0);
    let doc: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(doc["rescues"].as_array().unwrap().len(), 1, "{doc:#}");
    let run = env.kinfra(
        &env.main,
        &["rescue", "prune", "--older-than", "0", "--dry-run"],
    );
    run.assert_code(0);
    assert!(run.stdout.contains("would delete"), "{}", run.stdout);
    assert_eq!(rescue_refs(&env, &env.main), vec![rescue.as_str()]);
    // A younger limit keeps it.
    env.kinfra(&env.main, &["rescue", "prune", "--older-than", "30"])
        .assert_code(0);
    assert_eq!(rescue_refs(&env, &env.main), vec![rescue.as_str()]);
    // Explicitly, it goes; the branch stays.
    env.kinfra(&env.main, &["rescue", "prune", "--older-than", "0"])
        .assert_code(0);
    assert!(rescue_refs(&env, &env.main).is_empty());
    assert!(
        branch_exists(&env, &env.main, &id),
        "the branch must be kept"
    );
}

/// With Docker unreachable, doctor exits non-zero and says it could not check
/// containers and volumes (text and `--json`); it never says "no problems found", and
/// `--fix` changes nothing it could only judge with Docker.
#[test]
fn doctor_without_docker_says_it_could_not_check() {
    let env = Env::new();
    env.create_sandbox("one");
    let before = std::fs::read(env.registry_path()).unwrap();
    let down = |args: &[&str]| {
        let mut cmd = env.kinfra_cmd(&env.main, args);
        cmd.env("DOCKER_HOST", "unix:///nonexistent-kinfra.sock");
        Run::from(cmd.output().unwrap())
    };
    let run = down(&["doctor"]);
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("could not check containers"), "{all}");
    assert!(!all.contains("no problems found"), "{all}");

    for args in [
        &["doctor", "--json"][..],
        &["doctor", "--json", "--fix"][..],
    ] {
        let run = down(args);
        assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
        let report: Value = serde_json::from_str(&run.stdout).unwrap();
        finding(&report, "docker-unreachable", "docker");
        assert_eq!(std::fs::read(env.registry_path()).unwrap(), before);
    }
    assert!(
        env.sibling(&env.id_of("one"))
            .join(".env.sandbox")
            .is_file()
    );
}

/// `doctor --fix` rebuilds a corrupt registry only when every instance named in it is
/// found again on disk: an `init`-ed clone is kept, and a sandbox moved where doctor
/// cannot see it makes doctor refuse, leaving the corrupt file's bytes as they are.
#[test]
fn doctor_fix_never_rebuilds_an_instance_away() {
    let env = Env::new();
    let kept = env.create_sandbox("kept");
    let moved = env.create_sandbox("moved");
    let elsewhere = env.root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let clone_id = env.id_of("clone");
    env.git(
        &elsewhere,
        &["clone", "-q", env.main.to_str().unwrap(), "clone"],
    );
    let clone = elsewhere.join("clone");
    env.kinfra(&clone, &["sandbox", "init", "--name", &clone_id])
        .assert_code(0);
    let ids = [env.id_of("kept"), env.id_of("moved"), clone_id.clone()];
    // Moved by hand where no git worktree list points.
    std::fs::rename(&moved, env.root.path().join("hidden")).unwrap();
    // Corrupt, but every id is still named in it.
    let text = env.registry_text();
    let corrupt = &text.as_bytes()[..text.trim_end().len() - 1];
    std::fs::write(env.registry_path(), corrupt).unwrap();

    let (run, report) = doctor(&env, &env.main, &["--fix"]);
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        finding(
            &report,
            "corrupt-registry",
            &env.registry_path().display().to_string()
        )["fixed"],
        false,
        "{report:#}"
    );
    assert!(
        run.stderr.contains(&ids[1]) || run.stdout.contains(&ids[1]),
        "doctor should name the instance it cannot find\n{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(std::fs::read(env.registry_path()).unwrap(), corrupt);
    assert!(kept.join(".env.sandbox").is_file());
    assert!(clone.join(".env.sandbox").is_file());

    // Moved back: doctor either rebuilds with all three (the clone too) or, when it
    // cannot see the clone from here, still refuses.
    std::fs::rename(env.root.path().join("hidden"), &moved).unwrap();
    let (run, _) = doctor(&env, &env.main, &["--fix"]);
    let now = std::fs::read(env.registry_path()).unwrap();
    if now == corrupt {
        assert!(run.stdout.contains(&clone_id) || run.stderr.contains(&clone_id));
        return;
    }
    let reg = env.registry();
    for id in &ids {
        assert!(
            reg["instances"][id].is_object(),
            "{id} dropped\n{}\n{}\n{reg:#}",
            run.stdout,
            run.stderr
        );
    }
}
