// Path safety: the whole sandbox and local-prod flow where the directories hold spaces,
// non-ASCII characters or a leading dash, with odd branch names, and with a HOME whose
// path needs shell quoting. Paths must reach git as single arguments (never through a
// shell, never read as options), and every path kinfra prints or writes for a shell
// must come back unchanged when the shell reads it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::exit;
use crate::common::{Env, Run, canon, listed};
use serde_json::Value;

/// A sandbox name unique to this test process (it reaches Docker as a project name).
fn uniq(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// `sh -c SCRIPT` in `cwd` with the test environment; its stdout, asserting success.
#[track_caller]
fn sh(env: &Env, cwd: &Path, script: &str) -> String {
    let mut cmd = Command::new("sh");
    env.apply(&mut cmd);
    let out = cmd
        .current_dir(cwd)
        .args(["-c", script])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "sh -c {script:?} in {}: {}",
        cwd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A variable of the env file in `dir`, as a POSIX shell sourcing it sees it.
fn sourced(env: &Env, dir: &Path, var: &str) -> String {
    sh(
        env,
        dir,
        &format!(". ./.env.sandbox && printf %s \"${var}\""),
    )
}

/// A variable after `eval "$(kinfra env)"` in `dir`.
fn evaluated(env: &Env, dir: &Path, var: &str) -> String {
    let run = env.kinfra(dir, &["env"]);
    run.assert_code(0);
    let mut cmd = Command::new("sh");
    env.apply(&mut cmd);
    let out = cmd
        .current_dir(dir)
        .args(["-c", &format!("eval \"$1\" && printf %s \"${var}\""), "sh"])
        .arg(&run.stdout)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "eval of `kinfra env` failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        run.stdout
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// doctor finds nothing about this test's state (findings about Docker projects that
/// are not the Env's aside: Docker is machine-wide, HOME is not).
#[track_caller]
fn assert_doctor_clean(env: &Env, cwd: &Path) {
    let run = env.kinfra(cwd, &["doctor", "--json"]);
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}\n{}\n{}", run.stdout, run.stderr));
    let own: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !env.is_foreign_finding(f))
        .collect();
    assert!(own.is_empty(), "doctor should be clean:\n{report:#}");
}

fn head_branch(env: &Env, dir: &Path) -> String {
    env.git(dir, &["symbolic-ref", "--short", "HEAD"])
        .trim()
        .to_string()
}

/// The command destroy printed after `restore it with: `.
fn restore_command(run: &Run) -> String {
    run.stderr
        .lines()
        .find_map(|l| l.split_once("restore it with: ").map(|(_, c)| c.trim()))
        .unwrap_or_else(|| panic!("no restore command in stderr:\n{}", run.stderr))
        .to_string()
}

/// create (optionally `--branch`), list, env, url, doctor; local-prod create and
/// destroy from the sandbox; then destroy with uncommitted work and `--force`, and the
/// printed restore command brings the work back.
fn whole_flow(env: &Env, name: &str, branch: Option<&str>) {
    let id = env.id_of(name);
    let parent = env.main.parent().unwrap().to_owned();
    let mut args = vec!["sandbox", "create", name];
    if let Some(b) = branch {
        args.extend(["--branch", b]);
    }
    let run = env.kinfra(&env.main, &args);
    run.assert_code(0);
    let sandbox = PathBuf::from(run.stdout.trim());
    assert_eq!(canon(&sandbox), canon(&parent.join(&id)));
    assert_eq!(head_branch(env, &sandbox), branch.unwrap_or(&id));
    let entry = env.registry()["instances"][&id].clone();
    assert_eq!(
        canon(Path::new(entry["path"].as_str().unwrap())),
        canon(&sandbox)
    );
    assert_eq!(
        canon(Path::new(entry["parent_repo"].as_str().unwrap())),
        canon(&env.main)
    );

    // list: the path comes back as written, and the directory is found.
    let row = listed(env, &id);
    assert_eq!(row["path"], entry["path"]);
    assert_eq!(row["stale"], false, "{row}");
    let run = env.kinfra(&env.main, &["sandbox", "list"]);
    run.assert_code(0);
    assert!(
        run.stdout.contains(entry["path"].as_str().unwrap()),
        "{}",
        run.stdout
    );

    // env / url from a subdirectory with an odd name too.
    let sub = sandbox.join("sub dir é");
    std::fs::create_dir_all(&sub).unwrap();
    let shared = env.home.join(".ktrdr/shared").display().to_string();
    assert_eq!(sourced(env, &sandbox, "INSTANCE_ID"), id);
    assert_eq!(sourced(env, &sandbox, "KTRDR_SHARED_DIR"), shared);
    assert_eq!(evaluated(env, &sub, "INSTANCE_ID"), id);
    assert_eq!(evaluated(env, &sub, "KTRDR_SHARED_DIR"), shared);
    env.kinfra(&sub, &["url", "KTRDR_API_PORT"]).assert_code(0);
    std::fs::remove_dir(&sub).unwrap();
    assert_doctor_clean(env, &env.main);

    // local-prod from the sandbox: a clone next to the main repository, on main.
    let run = env.kinfra(&sandbox, &["local-prod", "create"]);
    run.assert_code(0);
    let prod = PathBuf::from(run.stdout.trim());
    assert_eq!(canon(&prod), canon(&parent.join("ktrdr-prod")));
    assert_eq!(head_branch(env, &prod), "main");
    assert_eq!(evaluated(env, &prod, "INSTANCE_ID"), env.local_prod_id());
    assert_eq!(sourced(env, &prod, "KTRDR_SHARED_DIR"), shared);
    assert_eq!(
        canon(Path::new(
            env.registry()["local_prod"]["path"].as_str().unwrap()
        )),
        canon(&prod)
    );
    env.kinfra(&sandbox, &["local-prod", "destroy", "--yes"])
        .assert_code(0);
    assert!(env.registry()["local_prod"].is_null());
    assert!(prod.join("README.md").is_file(), "the clone must be kept");
    assert!(!prod.join(".env.sandbox").exists());
    assert!(sandbox.join(".env.sandbox").is_file());
    assert!(env.registry()["instances"][&id].is_object());

    // Destroy with uncommitted work: refused, then rescued with --force; the printed
    // command restores it, run by a shell from elsewhere.
    std::fs::write(sandbox.join("notes é.txt"), "precious\n").unwrap();
    std::fs::write(sandbox.join("README.md"), "changed\n").unwrap();
    env.kinfra(&env.main, &["sandbox", "destroy", name, "--yes"])
        .assert_code(exit::REFUSED);
    assert!(sandbox.join("notes é.txt").is_file());
    let run = env.kinfra(&env.main, &["sandbox", "destroy", name, "--force"]);
    run.assert_code(0);
    assert!(!sandbox.exists());
    assert!(env.registry()["instances"].get(&id).is_none());
    sh(env, env.root.path(), &restore_command(&run));
    assert_eq!(
        std::fs::read_to_string(sandbox.join("notes é.txt")).unwrap(),
        "precious\n"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("README.md")).unwrap(),
        "changed\n"
    );
    assert!(env.main.join("README.md").is_file());
    env.git(
        &env.main,
        &[
            "worktree",
            "remove",
            "--force",
            "--",
            sandbox.to_str().unwrap(),
        ],
    );
}

#[test]
fn whole_flow_under_a_parent_with_spaces_and_non_ascii() {
    let env = Env::at("my dev é", "home");
    whole_flow(&env, &uniq("flow"), Some("feat/ü-x"));
}

#[test]
fn whole_flow_under_a_parent_whose_name_starts_with_a_dash() {
    let env = Env::at("-dash dir", "home");
    whole_flow(&env, &uniq("dash"), None);
}

/// Branch names git accepts but a shell would act on are passed verbatim: checked out
/// as given, never evaluated.
#[test]
fn odd_branch_names_are_checked_out_verbatim() {
    let env = Env::at("dev", "home");
    for (i, branch) in [
        "feat/-x",
        "it's",
        "x;$(touch${IFS}PWNED)",
        "feat/ü-`touch${IFS}PWNED`",
    ]
    .into_iter()
    .enumerate()
    {
        let name = uniq(&format!("odd{i}"));
        let run = env.kinfra(&env.main, &["sandbox", "create", &name, "--branch", branch]);
        run.assert_code(0);
        let sandbox = PathBuf::from(run.stdout.trim());
        assert_eq!(head_branch(&env, &sandbox), branch);
        env.kinfra(&env.main, &["sandbox", "destroy", &name, "--yes"])
            .assert_code(0);
        assert!(!sandbox.exists());
        assert!(
            !env.git(&env.main, &["branch", "--list", branch])
                .trim()
                .is_empty(),
            "branch `{branch}` must be kept"
        );
    }
    for dir in [env.root.path(), &env.main, &env.home] {
        assert!(!dir.join("PWNED").exists(), "a branch name ran in a shell");
    }
}

/// A `--branch` that git would read as an option is refused as a usage error before
/// anything is made.
#[test]
fn a_branch_starting_with_a_dash_is_refused_before_anything_changes() {
    let env = Env::at("dev", "home");
    let name = uniq("dashbranch");
    for branch in ["--branch=-x", "--branch=--force", "--branch=-b"] {
        let run = env.kinfra(&env.main, &["sandbox", "create", &name, branch]);
        run.assert_code(2);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert!(!env.main.parent().unwrap().join(env.id_of(&name)).exists());
        assert_eq!(env.registry_text(), "");
        let branches = env.git(
            &env.main,
            &["branch", "--list", "--format=%(refname:short)"],
        );
        assert_eq!(branches.trim(), "main", "a branch was made: {branches}");
    }
}

/// The env file stays shell-sourceable, and readable by kinfra itself, when HOME (so
/// every shared-dir path in it) holds a space, a single quote, a double quote and `$`.
#[test]
fn env_file_is_shell_sourceable_when_home_has_a_space_and_a_quote() {
    let env = Env::at("dev", "home dir/it's \"q\" $HOME");
    let name = uniq("home");
    let id = env.id_of(&name);
    let sandbox = env.create_sandbox(&name);
    let shared = env.home.join(".ktrdr/shared").display().to_string();
    assert!(
        env.registry_path().is_file(),
        "the registry is not under HOME"
    );
    for var in [
        "KTRDR_SHARED_DIR",
        "KTRDR_DATA_DIR",
        "KTRDR_MODELS_DIR",
        "KTRDR_STRATEGIES_DIR",
    ] {
        let want = match var {
            "KTRDR_SHARED_DIR" => shared.clone(),
            other => format!(
                "{shared}/{}",
                other
                    .trim_start_matches("KTRDR_")
                    .trim_end_matches("_DIR")
                    .to_lowercase()
            ),
        };
        assert_eq!(sourced(&env, &sandbox, var), want, "{var}");
        assert_eq!(evaluated(&env, &sandbox, var), want, "{var}");
    }
    assert_eq!(sourced(&env, &sandbox, "INSTANCE_ID"), id);
    assert_doctor_clean(&env, &env.main);

    let run = env.kinfra(&env.main, &["local-prod", "create"]);
    run.assert_code(0);
    let prod = PathBuf::from(run.stdout.trim());
    assert_eq!(sourced(&env, &prod, "KTRDR_SHARED_DIR"), shared);
    assert_eq!(evaluated(&env, &prod, "KTRDR_SHARED_DIR"), shared);

    env.kinfra(&env.main, &["local-prod", "destroy", "--yes"])
        .assert_code(0);
    env.kinfra(&env.main, &["sandbox", "destroy", &name, "--yes"])
        .assert_code(0);
    assert!(!sandbox.exists());
    assert!(env.registry()["instances"].get(&id).is_none());
}

/// `list` marks the instance the current directory is in (also from a subdirectory
/// reached through a symlink), and no other.
#[test]
fn list_marks_the_instance_the_current_directory_is_in() {
    let env = Env::new();
    let a = env.create_sandbox(&uniq("cur-a"));
    let b = env.create_sandbox(&uniq("cur-b"));
    std::fs::create_dir(a.join("sub")).unwrap();
    let link = env.root.path().join("link to a");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let current = |cwd: &Path| -> Vec<String> {
        let run = env.kinfra(cwd, &["sandbox", "list", "--json"]);
        run.assert_code(0);
        let list: Value = serde_json::from_str(&run.stdout).unwrap();
        list["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["current"] == true)
            .map(|r| r["instance_id"].as_str().unwrap().to_string())
            .collect()
    };
    let id_a = env.id_of(&uniq("cur-a"));
    let id_b = env.id_of(&uniq("cur-b"));
    assert_eq!(current(&a), vec![id_a.clone()]);
    assert_eq!(current(&link.join("sub")), vec![id_a]);
    assert_eq!(current(&b), vec![id_b]);
    assert!(current(&env.main).is_empty());
}
