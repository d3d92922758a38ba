// End-to-end tests of the destroy safety invariants (SPEC sections 6 and 11).
//
// Every test gets its own `Env` (temp HOME, registry, repositories). Sandbox names
// carry the test process id so Docker project names never clash between parallel runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::exit;
use crate::common::{Env, LabelledVolume, Run, branch_exists, canon, docker, worktrees};
use serde_json::Value;

const SIX_FIELDS: [&str; 6] = [
    "created_at",
    "instance_id",
    "is_worktree",
    "parent_repo",
    "path",
    "slot",
];

/// A sandbox name unique to this test process.
fn uniq(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Every file under `dir` (recursively, symlinks not followed) with its bytes.
/// A `.git` *directory* is skipped; a worktree's `.git` file is included.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let ft = entry.file_type().unwrap();
            let rel = path.strip_prefix(base).unwrap().to_owned();
            if ft.is_dir() {
                if entry.file_name() == ".git" {
                    continue;
                }
                walk(base, &path, out);
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, target.into_os_string().into_encoded_bytes());
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn rescue_refs(env: &Env, repo: &Path, id: &str) -> Vec<String> {
    env.git(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname)",
            &format!("refs/kinfra/rescue/{id}/"),
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn sandbox_entry(env: &Env, id: &str) -> Value {
    env.registry()["instances"][id].clone()
}

fn assert_six_fields(entry: &Value) {
    let keys: Vec<&str> = entry
        .as_object()
        .unwrap_or_else(|| panic!("entry is not an object: {entry}"))
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys, SIX_FIELDS,
        "entry must have exactly six fields: {entry}"
    );
}

/// `kinfra ARGS` in `cwd` with Docker pointed at a socket that does not exist.
fn kinfra_docker_down(env: &Env, cwd: &Path, args: &[&str]) -> Run {
    let mut cmd = env.kinfra_cmd(cwd, args);
    cmd.env("DOCKER_HOST", "unix:///nonexistent.sock");
    Run::from(cmd.output().expect("run kinfra"))
}

/// Docker volumes created by a test, removed when the test ends (pass or fail).
struct Volumes(Vec<LabelledVolume>);

impl Volumes {
    fn create(&mut self, project: &str, name: &str) {
        self.0.push(LabelledVolume::create(project, name));
    }
}

fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).status.success()
}

fn volumes_of_project(project: &str) -> Vec<String> {
    let out = docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    assert!(out.status.success(), "docker volume ls failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Create local-prod from `cwd`, asserting success; returns its path.
fn create_local_prod(env: &Env, cwd: &Path) -> PathBuf {
    let run = env.kinfra(cwd, &["local-prod", "create"]);
    run.assert_code(0);
    PathBuf::from(run.stdout.trim())
}

/// Make `sandbox` dirty: an untracked file, a new file in a new directory, and a
/// modified tracked file.
fn make_dirty(sandbox: &Path) {
    std::fs::write(sandbox.join("notes.txt"), "precious uncommitted work\n").unwrap();
    std::fs::create_dir_all(sandbox.join("sub")).unwrap();
    std::fs::write(sandbox.join("sub/deep.txt"), "deep work\n").unwrap();
    std::fs::write(sandbox.join("README.md"), "hello, modified\n").unwrap();
}

// ---------------------------------------------------------------------------
// SPEC 11, scenario 1
// ---------------------------------------------------------------------------

#[test]
fn scenario1_local_prod_create_from_a_sandbox_makes_a_clone_on_main() {
    let env = Env::new();
    let name = uniq("lp-create");
    let sandbox = env.create_sandbox(&name);
    // Put the sandbox's branch ahead of main, so "on main" is observable.
    std::fs::write(sandbox.join("feature.txt"), "feature\n").unwrap();
    env.git(&sandbox, &["add", "feature.txt"]);
    env.git(&sandbox, &["commit", "-q", "-m", "feature"]);

    let prod = create_local_prod(&env, &sandbox);

    let expected = env.sibling("ktrdr-prod");
    assert_eq!(canon(&prod), canon(&expected));
    assert!(
        expected.join(".git").is_dir(),
        "local-prod must be a clone (.git a directory), not a worktree"
    );
    assert!(expected.join(".env.sandbox").is_file());
    assert!(!expected.join("feature.txt").exists());
    assert_eq!(
        env.git(&expected, &["remote", "get-url", "origin"]),
        env.git(&env.main, &["remote", "get-url", "origin"]),
        "origin URL must be preserved"
    );
    assert_eq!(
        env.git(&expected, &["rev-parse", "--abbrev-ref", "HEAD"])
            .trim(),
        "main"
    );
    assert_eq!(
        env.git(&expected, &["rev-parse", "HEAD"]),
        env.git(&env.main, &["rev-parse", "main"])
    );
    assert!(
        !worktrees(&env, &env.main).contains(&canon(&expected)),
        "local-prod must not be a worktree of the main repository"
    );

    let reg = env.registry();
    let lp = &reg["local_prod"];
    assert_six_fields(lp);
    assert_eq!(lp["instance_id"], env.local_prod_id());
    assert_eq!(lp["slot"], 0);
    assert_eq!(lp["is_worktree"], false);
    assert_eq!(
        canon(Path::new(lp["path"].as_str().unwrap())),
        canon(&expected)
    );
    assert_eq!(
        canon(Path::new(lp["parent_repo"].as_str().unwrap())),
        canon(&env.main),
        "parent_repo is the main repository, not the sandbox"
    );
    assert!(lp["created_at"].as_str().unwrap().ends_with("+00:00"));
    // The sandbox is still registered as before.
    assert_six_fields(&sandbox_entry(&env, &env.id_of(&name)));
}

// ---------------------------------------------------------------------------
// SPEC 11, scenario 2 (and invariant 6.1)
// ---------------------------------------------------------------------------

#[test]
fn scenario2_local_prod_destroy_from_a_sandbox_leaves_the_sandbox_untouched() {
    let env = Env::new();
    let name = uniq("lp-keep");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    let prod = create_local_prod(&env, &sandbox);
    make_dirty(&sandbox);

    // A Docker resource of the sandbox's project stands in for its containers.
    let mut vols = Volumes(Vec::new());
    let sandbox_vol = format!("{id}_data");
    vols.create(&id, &sandbox_vol);

    let files_before = snapshot(&sandbox);
    let entry_before = sandbox_entry(&env, &id);
    let lp_path = env.registry()["local_prod"]["path"]
        .as_str()
        .unwrap()
        .to_string();

    let run = env.kinfra(&sandbox, &["local-prod", "destroy", "--yes"]);
    run.assert_code(0).assert_stderr_contains(&format!(
        "destroying the registered local-prod at `{lp_path}` (not the current directory)"
    ));

    // local-prod is destroyed: unregistered, env file gone, clone kept.
    let reg = env.registry();
    assert!(
        reg["local_prod"].is_null(),
        "local_prod: {}",
        reg["local_prod"]
    );
    assert!(prod.is_dir(), "the local-prod clone must be kept");
    assert!(prod.join(".git").is_dir());
    assert!(prod.join("README.md").is_file());
    assert!(!prod.join(".env.sandbox").exists());

    // The sandbox is untouched.
    assert_eq!(snapshot(&sandbox), files_before, "sandbox files changed");
    assert_eq!(
        std::fs::read_to_string(sandbox.join("notes.txt")).unwrap(),
        "precious uncommitted work\n"
    );
    assert_eq!(sandbox_entry(&env, &id), entry_before);
    assert!(worktrees(&env, &env.main).contains(&canon(&sandbox)));
    assert!(
        volume_exists(&sandbox_vol),
        "the sandbox's volume was removed"
    );
}

#[test]
fn local_prod_destroy_from_a_sandbox_without_local_prod_changes_nothing() {
    let env = Env::new();
    let name = uniq("lp-none");
    let sandbox = env.create_sandbox(&name);
    make_dirty(&sandbox);
    let files_before = snapshot(&sandbox);
    let reg_before = env.registry_text();

    for flags in [&["--yes"][..], &["--force"][..]] {
        let mut args = vec!["local-prod", "destroy"];
        args.extend_from_slice(flags);
        let run = env.kinfra(&sandbox, &args);
        run.assert_code(exit::NOT_FOUND);
        assert_eq!(snapshot(&sandbox), files_before);
        assert_eq!(env.registry_text(), reg_before);
    }
}

// ---------------------------------------------------------------------------
// SPEC 11, scenario 3
// ---------------------------------------------------------------------------

#[test]
fn scenario3_local_prod_destroy_from_the_local_prod_directory() {
    let env = Env::new();
    let name = uniq("lp-self");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    let prod = create_local_prod(&env, &env.main);
    let sandbox_files = snapshot(&sandbox);
    let entry_before = sandbox_entry(&env, &id);

    let run = env.kinfra(&prod, &["local-prod", "destroy", "--yes"]);
    run.assert_code(0);
    assert!(
        !run.stderr.contains("not the current directory"),
        "cwd is the target; stderr:\n{}",
        run.stderr
    );
    assert!(env.registry()["local_prod"].is_null());
    assert!(prod.join(".git").is_dir(), "the clone must be kept");
    assert!(prod.join("README.md").is_file());
    assert!(!prod.join(".env.sandbox").exists());
    assert_eq!(snapshot(&sandbox), sandbox_files);
    assert_eq!(sandbox_entry(&env, &id), entry_before);

    // Destroying again: nothing registered, exit 1, clone still there.
    env.kinfra(&prod, &["local-prod", "destroy", "--yes"])
        .assert_code(exit::NOT_FOUND);
    assert!(prod.join("README.md").is_file());
}

#[test]
fn local_prod_dry_run_changes_nothing() {
    let env = Env::new();
    let prod = create_local_prod(&env, &env.main);
    let reg_before = env.registry_text();
    let files_before = snapshot(&prod);

    let run = env.kinfra(&env.main, &["local-prod", "destroy", "--dry-run"]);
    run.assert_code(0);
    assert!(
        run.stdout.contains(env.local_prod_id()),
        "stdout:\n{}",
        run.stdout
    );
    assert!(run.stdout.contains("unregister"), "stdout:\n{}", run.stdout);
    assert_eq!(env.registry_text(), reg_before);
    assert_eq!(snapshot(&prod), files_before);
}

// ---------------------------------------------------------------------------
// Invariant 6.3: `sandbox destroy` on "this instance" only in a registered sandbox
// ---------------------------------------------------------------------------

/// Shared fixture for the refusals: a registered sandbox and local-prod.
struct World {
    env: Env,
    id: String,
    sandbox: PathBuf,
    prod: PathBuf,
}

impl World {
    fn new(name: &str) -> World {
        let env = Env::new();
        let name = uniq(name);
        let sandbox = env.create_sandbox(&name);
        let prod = create_local_prod(&env, &env.main);
        World {
            id: env.id_of(&name),
            env,
            sandbox,
            prod,
        }
    }

    /// Runs `sandbox destroy` with each of `--yes` and `--force` in `cwd` and asserts
    /// each exits `code` and leaves everything as it was.
    fn assert_destroy_refused_in(&self, cwd: &Path, code: i32, stderr_needle: &str) {
        let env = &self.env;
        let reg_before = env.registry_text();
        let sandbox_before = snapshot(&self.sandbox);
        let prod_before = snapshot(&self.prod);
        let cwd_before = snapshot(cwd);
        let wt_before = worktrees(env, &env.main);
        for flag in ["--yes", "--force"] {
            let run = env.kinfra(cwd, &["sandbox", "destroy", flag]);
            run.assert_code(code).assert_stderr_contains(stderr_needle);
            assert_eq!(env.registry_text(), reg_before, "registry changed ({flag})");
            assert_eq!(snapshot(&self.sandbox), sandbox_before, "sandbox ({flag})");
            assert_eq!(snapshot(&self.prod), prod_before, "local-prod ({flag})");
            assert_eq!(snapshot(cwd), cwd_before, "cwd ({flag})");
            assert!(self.prod.join(".env.sandbox").is_file());
            assert_eq!(worktrees(env, &env.main), wt_before);
        }
        assert!(env.registry()["local_prod"].is_object());
        assert!(env.registry()["instances"][&self.id].is_object());
    }
}

#[test]
fn sandbox_destroy_in_local_prod_is_refused() {
    let w = World::new("in-lp");
    w.assert_destroy_refused_in(&w.prod, exit::REFUSED, "local-prod");
    // A subdirectory of local-prod is local-prod too.
    let sub = w.prod.join("subdir");
    std::fs::create_dir_all(&sub).unwrap();
    w.assert_destroy_refused_in(&sub, exit::REFUSED, "local-prod");
}

#[test]
fn sandbox_destroy_in_the_main_repository_is_refused() {
    let w = World::new("in-main");
    w.assert_destroy_refused_in(&w.env.main, exit::NOT_FOUND, "not inside a kinfra instance");
}

#[test]
fn sandbox_destroy_in_an_unregistered_directory_with_an_env_file_is_refused() {
    let w = World::new("in-unreg");
    // A hand-made clone carrying a copy of the sandbox's env file.
    let stray = w.env.sibling("ktrdr-handmade");
    w.env.git(
        &w.env.dev(),
        &[
            "clone",
            "-q",
            w.env.main.to_str().unwrap(),
            stray.to_str().unwrap(),
        ],
    );
    std::fs::copy(w.sandbox.join(".env.sandbox"), stray.join(".env.sandbox")).unwrap();
    w.assert_destroy_refused_in(&stray, exit::REFUSED, "doctor");
    assert!(stray.join(".env.sandbox").is_file());
    assert!(stray.join(".git").is_dir());
}

#[test]
fn sandbox_destroy_where_env_file_disagrees_with_registry_is_refused() {
    let w = World::new("mismatch");
    // The sandbox's env file names another instance id.
    let env_file = w.sandbox.join(".env.sandbox");
    let text = std::fs::read_to_string(&env_file).unwrap();
    let changed = text.replace(
        &format!("INSTANCE_ID={}", w.id),
        &format!("INSTANCE_ID={}", w.env.id_of("someone-else")),
    );
    assert_ne!(text, changed);
    std::fs::write(&env_file, changed).unwrap();
    w.assert_destroy_refused_in(&w.sandbox, exit::REFUSED, "INSTANCE_ID");
}

// ---------------------------------------------------------------------------
// Invariant 6.5: uncommitted work
// ---------------------------------------------------------------------------

#[test]
fn dirty_sandbox_is_refused_then_rescued_with_force() {
    let env = Env::new();
    let name = uniq("dirty");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    make_dirty(&sandbox);
    let files_before = snapshot(&sandbox);
    let reg_before = env.registry_text();

    // --yes: refused, nothing changed.
    let run = env.kinfra(&env.main, &["sandbox", "destroy", &name, "--yes"]);
    run.assert_code(exit::REFUSED)
        .assert_stderr_contains("uncommitted");
    assert_eq!(snapshot(&sandbox), files_before);
    assert_eq!(env.registry_text(), reg_before);
    assert!(rescue_refs(&env, &env.main, &id).is_empty());

    // From inside the sandbox too.
    env.kinfra(&sandbox, &["sandbox", "destroy", "--yes"])
        .assert_code(exit::REFUSED);
    assert_eq!(snapshot(&sandbox), files_before);
    assert_eq!(env.registry_text(), reg_before);

    // --dry-run: exit 0, plan on stdout, nothing changed.
    let run = env.kinfra(&env.main, &["sandbox", "destroy", &name, "--dry-run"]);
    run.assert_code(0);
    assert!(run.stdout.contains(&id), "stdout:\n{}", run.stdout);
    assert!(run.stdout.contains("rescue"), "stdout:\n{}", run.stdout);
    assert_eq!(snapshot(&sandbox), files_before);
    assert_eq!(env.registry_text(), reg_before);
    assert!(rescue_refs(&env, &env.main, &id).is_empty());

    // --force: rescued, then removed; branch kept.
    let run = env.kinfra(&env.main, &["sandbox", "destroy", &name, "--force"]);
    run.assert_code(0);
    assert!(!sandbox.exists(), "the worktree should be gone");
    assert!(env.registry()["instances"].get(&id).is_none());
    assert!(!worktrees(&env, &env.main).contains(&sandbox));
    assert!(branch_exists(&env, &env.main, &id), "branch must be kept");
    let refs = rescue_refs(&env, &env.main, &id);
    assert_eq!(refs.len(), 1, "one rescue ref: {refs:?}");
    let tree = env.git(&env.main, &["ls-tree", "-r", "--name-only", &refs[0]]);
    assert!(
        !tree.lines().any(|l| l == ".env.sandbox"),
        "rescue must not hold the env file:\n{tree}"
    );

    // The printed restore command brings the work back.
    let restore = run
        .stderr
        .lines()
        .find_map(|l| l.split_once("restore it with: ").map(|(_, c)| c.trim()))
        .unwrap_or_else(|| panic!("no restore command in stderr:\n{}", run.stderr))
        .to_string();
    let rescue_name = refs[0].trim_start_matches("refs/kinfra/rescue/");
    assert_eq!(restore, format!("kinfra rescue restore {rescue_name}"));
    let mut sh = Command::new("sh");
    env.apply(&mut sh);
    let out = sh
        .current_dir(env.root.path())
        .args(["-c", &restore])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore command `{restore}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("notes.txt")).unwrap(),
        "precious uncommitted work\n"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("sub/deep.txt")).unwrap(),
        "deep work\n"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("README.md")).unwrap(),
        "hello, modified\n"
    );
    assert!(!sandbox.join(".env.sandbox").exists());
}

#[test]
fn rescue_excludes_the_env_file_even_when_it_is_not_ignored() {
    let env = Env::new();
    let name = uniq("unignored");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    // Stop ignoring the env file in the sandbox (a tracked modification).
    std::fs::write(sandbox.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(sandbox.join("work.txt"), "work\n").unwrap();

    let run = env.kinfra(&env.main, &["sandbox", "destroy", &name, "--force"]);
    run.assert_code(0);
    assert!(!sandbox.exists());
    let refs = rescue_refs(&env, &env.main, &id);
    assert_eq!(refs.len(), 1, "{refs:?}");
    let tree = env.git(&env.main, &["ls-tree", "-r", "--name-only", &refs[0]]);
    assert!(tree.lines().any(|l| l == "work.txt"), "tree:\n{tree}");
    assert!(
        !tree.lines().any(|l| l == ".env.sandbox"),
        "rescue must not hold the env file:\n{tree}"
    );
    assert_eq!(
        env.git(&env.main, &["show", &format!("{}:.gitignore", refs[0])]),
        "*.log\n"
    );
}

#[test]
fn ignored_files_do_not_make_a_sandbox_dirty() {
    let env = Env::new();
    let name = uniq("ignored");
    let sandbox = env.create_sandbox(&name);
    // Only the (ignored) env file differs from HEAD.
    env.kinfra(&env.main, &["sandbox", "destroy", &name, "--yes"])
        .assert_code(0);
    assert!(!sandbox.exists());
}

// ---------------------------------------------------------------------------
// Destroy by name / from inside; invariant 6.4
// ---------------------------------------------------------------------------

#[test]
fn clean_sandbox_destroyed_by_name_from_the_main_repository() {
    let env = Env::new();
    let name = uniq("byname");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    let other = env.create_sandbox(&uniq("bystander"));
    let other_before = snapshot(&other);
    let main_before = snapshot(&env.main);

    let run = env.kinfra(&env.main, &["sandbox", "destroy", &name, "--yes"]);
    run.assert_code(0);
    assert!(!sandbox.exists());
    assert!(env.registry()["instances"].get(&id).is_none());
    assert!(!worktrees(&env, &env.main).contains(&sandbox));
    assert!(branch_exists(&env, &env.main, &id), "branch must be kept");
    // Nothing else touched.
    assert_eq!(snapshot(&other), other_before);
    assert_eq!(snapshot(&env.main), main_before);
    assert!(env.registry()["instances"][env.id_of(&uniq("bystander"))].is_object());

    // Again: not registered any more.
    let run = env.kinfra(&env.main, &["sandbox", "destroy", &name, "--yes"]);
    run.assert_code(exit::NOT_FOUND)
        .assert_stderr_contains("no registered sandbox");
    assert!(branch_exists(&env, &env.main, &id));
}

#[test]
fn sandbox_destroy_by_name_refuses_local_prod() {
    let env = Env::new();
    let prod = create_local_prod(&env, &env.main);
    let reg_before = env.registry_text();
    for flag in ["--yes", "--force"] {
        let run = env.kinfra(
            &env.main,
            &["sandbox", "destroy", env.local_prod_id(), flag],
        );
        run.assert_code(exit::NOT_FOUND)
            .assert_stderr_contains("local-prod destroy");
        assert_eq!(env.registry_text(), reg_before);
        assert!(prod.join(".env.sandbox").is_file());
    }
}

#[test]
fn sandbox_destroy_of_this_instance_from_a_subdirectory() {
    let env = Env::new();
    let name = uniq("here");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    let sub = sandbox.join("a/b");
    std::fs::create_dir_all(&sub).unwrap();

    env.kinfra(&sub, &["sandbox", "destroy", "--yes"])
        .assert_code(0);
    assert!(!sandbox.exists());
    assert!(env.registry()["instances"].get(&id).is_none());
    assert!(branch_exists(&env, &env.main, &id));
    assert!(env.main.join("README.md").is_file());
}

#[test]
fn sandbox_without_prompt_or_yes_is_refused() {
    let env = Env::new();
    let name = uniq("noyes");
    let sandbox = env.create_sandbox(&name);
    let reg_before = env.registry_text();
    env.kinfra(&env.main, &["sandbox", "destroy", &name])
        .assert_code(exit::REFUSED);
    assert!(sandbox.join(".env.sandbox").is_file());
    assert_eq!(env.registry_text(), reg_before);
    let prod = create_local_prod(&env, &env.main);
    env.kinfra(&env.main, &["local-prod", "destroy"])
        .assert_code(exit::REFUSED);
    assert!(prod.join(".env.sandbox").is_file());
    assert!(env.registry()["local_prod"].is_object());
}

// ---------------------------------------------------------------------------
// Invariant 6.8: idempotency
// ---------------------------------------------------------------------------

#[test]
fn destroy_finishes_after_a_crash_between_worktree_removal_and_unregistering() {
    let env = Env::new();
    let name = uniq("crash");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    env.git(
        &env.main,
        &["worktree", "remove", "--force", sandbox.to_str().unwrap()],
    );
    assert!(!sandbox.exists());
    assert!(env.registry()["instances"][&id].is_object());

    let run = env.kinfra(&env.main, &["sandbox", "list"]);
    run.assert_code(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains(&id) && l.contains("stale")),
        "list should show `{id}` as stale:\n{}",
        run.stdout
    );

    env.kinfra(&env.main, &["sandbox", "destroy", &name, "--yes"])
        .assert_code(0);
    assert!(env.registry()["instances"].get(&id).is_none());
    assert!(!worktrees(&env, &env.main).contains(&sandbox));
    assert!(branch_exists(&env, &env.main, &id));
}

#[test]
fn destroy_prunes_a_worktree_whose_directory_vanished() {
    let env = Env::new();
    let name = uniq("vanished");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    let sandbox_canon = canon(&sandbox);
    std::fs::remove_dir_all(&sandbox).unwrap();
    // git still lists it (prunable).
    let listed = env.git(&env.main, &["worktree", "list", "--porcelain"]);
    assert!(
        listed.contains(sandbox.to_str().unwrap())
            || listed.contains(sandbox_canon.to_str().unwrap())
    );

    env.kinfra(&env.main, &["sandbox", "destroy", &name, "--yes"])
        .assert_code(0);
    assert!(env.registry()["instances"].get(&id).is_none());
    let listed = env.git(&env.main, &["worktree", "list", "--porcelain"]);
    assert!(
        !listed.contains(sandbox.to_str().unwrap()),
        "worktree should be pruned:\n{listed}"
    );
    assert!(branch_exists(&env, &env.main, &id));
}

// ---------------------------------------------------------------------------
// --keep-worktree
// ---------------------------------------------------------------------------

#[test]
fn keep_worktree_leaves_the_directory_and_removes_the_env_file() {
    let env = Env::new();
    let name = uniq("keep");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    make_dirty(&sandbox);
    let mut before = snapshot(&sandbox);
    before.remove(Path::new(".env.sandbox"));

    env.kinfra(
        &env.main,
        &["sandbox", "destroy", &name, "--yes", "--keep-worktree"],
    )
    .assert_code(0);
    assert!(sandbox.is_dir());
    assert!(!sandbox.join(".env.sandbox").exists());
    assert_eq!(snapshot(&sandbox), before, "other files must be untouched");
    assert!(env.registry()["instances"].get(&id).is_none());
    assert!(worktrees(&env, &env.main).contains(&canon(&sandbox)));
    assert!(branch_exists(&env, &env.main, &id));
}

// ---------------------------------------------------------------------------
// Invariant 6.6: Docker unreachable
// ---------------------------------------------------------------------------

#[test]
fn docker_unreachable_refuses_without_force_and_proceeds_with_it() {
    let env = Env::new();
    let name = uniq("nodocker");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    let files_before = snapshot(&sandbox);
    let reg_before = env.registry_text();

    let run = kinfra_docker_down(&env, &env.main, &["sandbox", "destroy", &name, "--yes"]);
    run.assert_code(exit::EXTERNAL);
    assert_eq!(snapshot(&sandbox), files_before);
    assert_eq!(env.registry_text(), reg_before);
    assert!(worktrees(&env, &env.main).contains(&canon(&sandbox)));

    let run = kinfra_docker_down(&env, &env.main, &["sandbox", "destroy", &name, "--force"]);
    run.assert_code(0);
    assert!(!sandbox.exists());
    assert!(env.registry()["instances"].get(&id).is_none());
    assert!(branch_exists(&env, &env.main, &id));
}

#[test]
fn docker_unreachable_local_prod_destroy_refuses_without_force() {
    let env = Env::new();
    let prod = create_local_prod(&env, &env.main);
    let reg_before = env.registry_text();
    let files_before = snapshot(&prod);

    kinfra_docker_down(&env, &env.main, &["local-prod", "destroy", "--yes"])
        .assert_code(exit::EXTERNAL);
    assert_eq!(env.registry_text(), reg_before);
    assert_eq!(snapshot(&prod), files_before);

    kinfra_docker_down(&env, &env.main, &["local-prod", "destroy", "--force"]).assert_code(0);
    assert!(env.registry()["local_prod"].is_null());
    assert!(prod.join("README.md").is_file());
    assert!(!prod.join(".env.sandbox").exists());
}

// ---------------------------------------------------------------------------
// Invariant 6.4: symlinks
// ---------------------------------------------------------------------------

#[test]
fn a_registered_path_replaced_by_a_symlink_is_never_deleted_through() {
    let env = Env::new();
    let name = uniq("link");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    std::fs::write(sandbox.join("work.txt"), "keep me\n").unwrap();
    let moved = env.sibling(&format!("moved-{name}"));
    env.git(
        &env.main,
        &[
            "worktree",
            "move",
            sandbox.to_str().unwrap(),
            moved.to_str().unwrap(),
        ],
    );
    std::os::unix::fs::symlink(&moved, &sandbox).unwrap();
    let target_before = snapshot(&moved);
    let reg_before = env.registry_text();

    for flags in [&["--force"][..], &["--yes"][..]] {
        let mut args = vec!["sandbox", "destroy", name.as_str()];
        args.extend_from_slice(flags);
        let run = env.kinfra(&env.main, &args);
        run.assert_code(exit::REFUSED);
        assert!(moved.is_dir(), "the symlink target was deleted ({flags:?})");
        assert_eq!(
            snapshot(&moved),
            target_before,
            "target changed ({flags:?})"
        );
        assert!(
            std::fs::symlink_metadata(&sandbox)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(env.registry_text(), reg_before);
        assert!(worktrees(&env, &env.main).contains(&canon(&moved)));
        assert!(branch_exists(&env, &env.main, &id));
    }
}

// ---------------------------------------------------------------------------
// --all
// ---------------------------------------------------------------------------

#[test]
fn destroy_all_destroys_every_sandbox_but_never_local_prod() {
    let env = Env::new();
    let a = uniq("all-a");
    let b = uniq("all-b");
    let sa = env.create_sandbox(&a);
    let sb = env.create_sandbox(&b);
    let prod = create_local_prod(&env, &env.main);
    let lp_before = env.registry()["local_prod"].clone();
    let prod_before = snapshot(&prod);

    env.kinfra(&env.main, &["sandbox", "destroy", "--all", "--yes"])
        .assert_code(0);
    assert!(!sa.exists());
    assert!(!sb.exists());
    let reg = env.registry();
    assert_eq!(
        reg["instances"].as_object().map(|o| o.len()),
        Some(0),
        "instances: {}",
        reg["instances"]
    );
    assert_eq!(
        reg["local_prod"], lp_before,
        "local-prod must stay registered"
    );
    assert_eq!(snapshot(&prod), prod_before);
    assert!(prod.join(".env.sandbox").is_file());
    assert!(branch_exists(&env, &env.main, &env.id_of(&a)));
    assert!(branch_exists(&env, &env.main, &env.id_of(&b)));
    assert_eq!(worktrees(&env, &env.main), vec![canon(&env.main)]);
}

#[test]
fn destroy_all_with_one_dirty_sandbox_refuses_everything_without_force() {
    let env = Env::new();
    let a = uniq("alld-a");
    let b = uniq("alld-b");
    let sa = env.create_sandbox(&a);
    let sb = env.create_sandbox(&b);
    make_dirty(&sb);
    let reg_before = env.registry_text();

    env.kinfra(&env.main, &["sandbox", "destroy", "--all", "--yes"])
        .assert_code(exit::REFUSED);
    assert!(sa.join(".env.sandbox").is_file());
    assert!(sb.join("notes.txt").is_file());
    assert_eq!(env.registry_text(), reg_before);
}

// ---------------------------------------------------------------------------
// Docker resources: only the instance's own project
// ---------------------------------------------------------------------------

#[test]
fn destroy_removes_its_own_volumes_and_leaves_other_projects_alone() {
    let env = Env::new();
    let name = uniq("vol");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);

    let mut vols = Volumes(Vec::new());
    let own = format!("{id}_data");
    // Another project whose name starts with this one's.
    let other_project = format!("{id}-other");
    let other = format!("{other_project}_data");
    vols.create(&id, &own);
    vols.create(&other_project, &other);

    let run = env.kinfra(&env.main, &["sandbox", "destroy", &name, "--dry-run"]);
    run.assert_code(0);
    assert!(run.stdout.contains(&own), "dry-run stdout:\n{}", run.stdout);
    assert!(
        !run.stdout.contains(&other),
        "dry-run stdout:\n{}",
        run.stdout
    );
    assert!(volume_exists(&own), "dry-run removed a volume");

    env.kinfra(&env.main, &["sandbox", "destroy", &name, "--yes"])
        .assert_code(0);
    assert!(!sandbox.exists());
    assert!(volumes_of_project(&id).is_empty(), "own volume left behind");
    assert!(!volume_exists(&own));
    assert!(
        volume_exists(&other),
        "another project's volume was removed"
    );
    assert!(env.registry()["instances"].get(&id).is_none());
}

// ---------------------------------------------------------------------------
// Invariant 6.4: only a registered linked worktree is ever deleted
// ---------------------------------------------------------------------------

/// Rewrite one field of a sandbox's registry entry (simulating a stale or tampered
/// registry; the entry keeps its six fields).
fn set_entry_field(env: &Env, id: &str, field: &str, value: Value) {
    let mut reg = env.registry();
    reg["instances"][id][field] = value;
    std::fs::write(
        env.registry_path(),
        serde_json::to_string_pretty(&reg).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_plain_directory_at_a_stale_registered_path_is_not_deleted() {
    let env = Env::new();
    let name = uniq("squat");
    let sandbox = env.create_sandbox(&name);
    env.git(
        &env.main,
        &["worktree", "remove", "--force", sandbox.to_str().unwrap()],
    );
    // Someone made an unrelated directory at the same path since.
    std::fs::create_dir_all(&sandbox).unwrap();
    std::fs::write(sandbox.join("unrelated.txt"), "not a worktree\n").unwrap();
    let before = snapshot(&sandbox);
    let reg_before = env.registry_text();

    for flag in ["--yes", "--force"] {
        env.kinfra(&env.main, &["sandbox", "destroy", &name, flag])
            .assert_code(exit::REFUSED);
        assert_eq!(snapshot(&sandbox), before, "({flag})");
        assert_eq!(env.registry_text(), reg_before, "({flag})");
    }
}

#[test]
fn a_registry_entry_pointing_at_the_main_repository_never_deletes_it() {
    let env = Env::new();
    let name = uniq("at-main");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    set_entry_field(&env, &id, "path", Value::from(env.main.to_str().unwrap()));
    std::fs::write(env.main.join("uncommitted.txt"), "main work\n").unwrap();
    let main_before = snapshot(&env.main);
    let reg_before = env.registry_text();

    for flag in ["--yes", "--force"] {
        env.kinfra(&env.main, &["sandbox", "destroy", &name, flag])
            .assert_code(exit::REFUSED);
        assert_eq!(snapshot(&env.main), main_before, "({flag})");
        assert!(env.main.join(".git").is_dir());
        assert_eq!(env.registry_text(), reg_before, "({flag})");
    }
    assert!(sandbox.join(".env.sandbox").is_file());
}

#[test]
fn a_registry_entry_pointing_at_a_clone_never_deletes_it() {
    let env = Env::new();
    let name = uniq("at-clone");
    let id = env.id_of(&name);
    env.create_sandbox(&name);
    let prod = create_local_prod(&env, &env.main);
    set_entry_field(&env, &id, "path", Value::from(prod.to_str().unwrap()));
    let prod_before = snapshot(&prod);
    let reg_before = env.registry_text();

    for flag in ["--yes", "--force"] {
        env.kinfra(&env.main, &["sandbox", "destroy", &name, flag])
            .assert_code(exit::REFUSED);
        assert_eq!(snapshot(&prod), prod_before, "({flag})");
        assert!(prod.join(".git").is_dir());
        assert_eq!(env.registry_text(), reg_before, "({flag})");
    }
}

#[test]
fn a_corrupt_registry_stops_destroy_and_is_not_rewritten() {
    let env = Env::new();
    let name = uniq("corrupt");
    let sandbox = env.create_sandbox(&name);
    let prod = create_local_prod(&env, &env.main);
    let garbage = "{\"version\": 1, \"instances\": {";
    std::fs::write(env.registry_path(), garbage).unwrap();
    let sandbox_before = snapshot(&sandbox);
    let prod_before = snapshot(&prod);

    for (cwd, args) in [
        (
            &env.main,
            &["sandbox", "destroy", name.as_str(), "--force"][..],
        ),
        (&sandbox, &["sandbox", "destroy", "--force"][..]),
        (&env.main, &["sandbox", "destroy", "--all", "--force"][..]),
        (&sandbox, &["local-prod", "destroy", "--force"][..]),
    ] {
        let run = env.kinfra(cwd, args);
        assert_ne!(run.code, 0, "{args:?} should fail:\n{}", run.stderr);
        assert!(
            run.stderr.contains("instances.json"),
            "{args:?}: the error should name the registry file:\n{}",
            run.stderr
        );
        assert_eq!(
            env.registry_text(),
            garbage,
            "{args:?} rewrote the registry"
        );
        assert_eq!(snapshot(&sandbox), sandbox_before, "{args:?}");
        assert_eq!(snapshot(&prod), prod_before, "{args:?}");
    }
}

#[test]
fn dry_run_with_force_on_a_dirty_sandbox_changes_nothing() {
    let env = Env::new();
    let name = uniq("dry-force");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    make_dirty(&sandbox);
    let before = snapshot(&sandbox);
    let reg_before = env.registry_text();

    let run = env.kinfra(
        &env.main,
        &["sandbox", "destroy", &name, "--dry-run", "--force"],
    );
    run.assert_code(0);
    assert!(
        run.stdout.contains("remove worktree"),
        "stdout:\n{}",
        run.stdout
    );
    assert_eq!(snapshot(&sandbox), before);
    assert_eq!(env.registry_text(), reg_before);
    assert!(rescue_refs(&env, &env.main, &id).is_empty());
}

#[test]
fn staged_only_changes_are_refused_and_rescued() {
    let env = Env::new();
    let name = uniq("staged");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    std::fs::write(sandbox.join("staged.txt"), "staged\n").unwrap();
    env.git(&sandbox, &["add", "staged.txt"]);

    env.kinfra(&env.main, &["sandbox", "destroy", &name, "--yes"])
        .assert_code(exit::REFUSED);
    assert!(sandbox.join("staged.txt").is_file());
    env.kinfra(&env.main, &["sandbox", "destroy", &name, "--force"])
        .assert_code(0);
    let refs = rescue_refs(&env, &env.main, &id);
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(
        env.git(&env.main, &["show", &format!("{}:staged.txt", refs[0])]),
        "staged\n"
    );
}

/// SPEC 6.2 and 6.3: `local-prod up/down/status/logs/shell` run only in the registered
/// local-prod, and sandbox commands refuse there, each naming what the directory is.
#[test]
fn instance_commands_run_only_in_their_own_kind_of_instance() {
    let env = Env::new();
    let name = uniq("kind");
    let sandbox = env.create_sandbox(&name);
    let prod = PathBuf::from(
        env.kinfra(&env.main, &["local-prod", "create"])
            .assert_code(0)
            .stdout
            .trim(),
    );
    let before = env.registry_text();
    let sandbox_files = snapshot(&sandbox);
    // local-prod commands act on the registered local-prod wherever they run: from a
    // sandbox they reach local-prod, never the sandbox (the registry is the identity).
    let run = env.kinfra(&sandbox, &["local-prod", "status", "--json"]);
    run.assert_code(0);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["instance_id"], env.local_prod_id(), "{doc:#}");
    assert_eq!(
        canon(Path::new(doc["path"].as_str().unwrap())),
        canon(&prod)
    );
    let run = env.kinfra(&sandbox, &["local-prod", "env"]);
    run.assert_code(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| l == format!("export INSTANCE_ID='{}'", env.local_prod_id())),
        "{}",
        run.stdout
    );
    let run = env.kinfra(&sandbox, &["local-prod", "url", "KTRDR_API_PORT"]);
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), "http://localhost:8000/api/v1/docs");
    // Sandbox commands still refuse to treat the local-prod directory as a sandbox.
    for sub in ["up", "down", "status", "logs", "shell"] {
        let run = env.kinfra(&prod, &["sandbox", sub]);
        run.assert_code(exit::REFUSED);
        run.assert_stderr_contains("is local-prod, not a sandbox");
    }
    assert_eq!(env.registry_text(), before);
    assert_eq!(snapshot(&sandbox), sandbox_files);
}

/// `destroy --all` acts only on the current checkout's sandboxes: a registry shared
/// with another clone of the project keeps that clone's sandboxes (and their files)
/// exactly as they were, and says it left them alone.
#[test]
fn destroy_all_leaves_another_checkouts_sandboxes_alone() {
    let env = Env::new();
    let mine = env.create_sandbox(&uniq("all-mine"));
    let elsewhere = env.root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    env.git(
        &elsewhere,
        &["clone", "-q", env.main.to_str().unwrap(), "other-main"],
    );
    let other_main = elsewhere.join("other-main");
    let origin = env.git(&env.main, &["remote", "get-url", "origin"]);
    env.git(&other_main, &["remote", "set-url", "origin", origin.trim()]);
    let theirs_name = uniq("all-theirs");
    let theirs = PathBuf::from(
        env.kinfra(&other_main, &["sandbox", "create", &theirs_name])
            .assert_code(0)
            .stdout
            .trim(),
    );
    let theirs_id = env.id_of(&theirs_name);
    let theirs_entry = env.registry()["instances"][&theirs_id].clone();
    assert!(theirs_entry.is_object(), "{}", env.registry_text());
    let theirs_before = snapshot(&theirs);

    let run = env.kinfra(&env.main, &["sandbox", "destroy", "--all", "--yes"]);
    run.assert_code(0);
    assert!(!mine.exists());
    assert!(run.stderr.contains(&theirs_id), "{}", run.stderr);
    assert_eq!(env.registry()["instances"][&theirs_id], theirs_entry);
    assert_eq!(snapshot(&theirs), theirs_before);
    assert_eq!(
        worktrees(&env, &other_main),
        vec![canon(&other_main), canon(&theirs)]
    );
}
