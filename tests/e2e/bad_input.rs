// Bad input of every kind: each case checks the exit code, a clear one-line
// `error: …` on stderr (plus at most a `hint: …`), and that nothing changed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::common::exit;
use crate::common::{Env, Run, canon};

/// Tests that bind a sandbox port, and the test that needs every slot's ports free,
/// must not overlap.
static SLOT_PORTS: Mutex<()> = Mutex::new(());

fn slot_ports_guard() -> std::sync::MutexGuard<'static, ()> {
    SLOT_PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything a failed command must leave alone.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    registry: Option<Vec<u8>>,
    dev: Vec<String>,
    worktrees: String,
    branches: String,
    main_env_file: Option<Vec<u8>>,
}

fn snapshot(env: &Env) -> Snapshot {
    let mut dev: Vec<String> = std::fs::read_dir(env.dev())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dev.sort();
    Snapshot {
        registry: std::fs::read(env.registry_path()).ok(),
        dev,
        worktrees: env.git(&env.main, &["worktree", "list", "--porcelain"]),
        branches: env.git(&env.main, &["branch", "--list", "--format=%(refname)"]),
        main_env_file: std::fs::read(env.main.join(".env.sandbox")).ok(),
    }
}

#[track_caller]
fn assert_unchanged(env: &Env, before: &Snapshot) {
    assert_eq!(&snapshot(env), before, "a failed command changed something");
}

/// Exit `code`; stdout empty; exactly one `error:` line containing every needle, followed
/// by nothing or by one `hint:` line. Returns the error line, or what is wrong.
fn check_error(run: &Run, code: i32, needles: &[&str]) -> Result<String, String> {
    let show = || format!("\n--- stdout\n{}\n--- stderr\n{}", run.stdout, run.stderr);
    if run.code != code {
        return Err(format!("expected exit {code}, got {}{}", run.code, show()));
    }
    if !run.stdout.trim().is_empty() {
        return Err(format!("a failed command printed data on stdout{}", show()));
    }
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let errors: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("error:"))
        .collect();
    let [at] = errors[..] else {
        return Err(format!("expected exactly one `error:` line{}", show()));
    };
    let rest = &lines[at + 1..];
    if !(rest.is_empty() || (rest.len() == 1 && rest[0].starts_with("hint: "))) {
        return Err(format!(
            "after the error line only one `hint:` line may follow{}",
            show()
        ));
    }
    let line = lines[at].to_string();
    for needle in needles {
        if !line.contains(needle) {
            return Err(format!("error line lacks {needle:?}{}", show()));
        }
    }
    Ok(line)
}

#[track_caller]
fn assert_error(run: &Run, code: i32, needles: &[&str]) -> String {
    match check_error(run, code, needles) {
        Ok(line) => line,
        Err(e) => panic!("{e}"),
    }
}

#[track_caller]
fn assert_hint(run: &Run, needle: &str) {
    let hint = run
        .stderr
        .lines()
        .find(|l| l.starts_with("hint: "))
        .unwrap_or_else(|| panic!("no `hint:` line\n--- stderr\n{}", run.stderr));
    assert!(
        hint.contains(needle),
        "hint lacks {needle:?}\n--- stderr\n{}",
        run.stderr
    );
}

fn env_file(dir: &Path) -> PathBuf {
    dir.join(".env.sandbox")
}

/// Replace the line starting with `KEY=` in an env file.
fn set_env_line(file: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let prefix = format!("{key}=");
    assert!(text.lines().any(|l| l.starts_with(&prefix)), "{text}");
    let new: String = text
        .lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                format!("{key}={value}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(file, new).unwrap();
}

/// 1-based line of `KEY=` in an env file.
fn line_of(file: &Path, key: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    let prefix = format!("{key}=");
    text.lines().position(|l| l.starts_with(&prefix)).unwrap() + 1
}

// ---------------------------------------------------------------- create: names

#[test]
fn create_with_a_name_that_slugifies_to_nothing_is_a_usage_error() {
    let env = Env::new();
    let before = snapshot(&env);
    for name in ["---", "..", "!!!", "   ", "/"] {
        let run = env.kinfra(&env.main, &["sandbox", "create", "--", name]);
        assert_error(&run, 2, &[name.trim()]);
        assert_unchanged(&env, &before);
    }
}

#[test]
fn create_with_an_overlong_name_is_a_usage_error() {
    let env = Env::new();
    let before = snapshot(&env);
    // The prefix + `fits` characters make 63, the most a compose project name allows.
    let fits = 63 - env.prefix().len();
    for len in [fits + 1, 80] {
        let name = "a".repeat(len);
        let run = env.kinfra(&env.main, &["sandbox", "create", &name]);
        assert_error(&run, 2, &["63"]);
        assert_unchanged(&env, &before);
    }
    // Exactly 63 characters is fine.
    let name = "b".repeat(fits);
    let path = env.create_sandbox(&name);
    assert_eq!(
        path.file_name().unwrap().to_string_lossy(),
        env.id_of(&name)
    );
    assert_eq!(env.id_of(&name).len(), 63);
}

#[test]
fn create_slugifies_a_friendly_name() {
    let env = Env::new();
    let run = env.kinfra(&env.main, &["sandbox", "create", "My Feature!"]);
    run.assert_code(0);
    let path = PathBuf::from(run.stdout.trim());
    assert_eq!(canon(&path), canon(&env.sibling(&env.id_of("my-feature"))));
    assert!(env_file(&path).is_file());
    let reg = env.registry();
    assert_eq!(reg["instances"][env.id_of("my-feature")]["slot"], 1);
}

// ---------------------------------------------------------------- create: slots

#[test]
fn create_with_an_invalid_slot_fails() {
    let env = Env::new();
    let before = snapshot(&env);
    for (slot, needle) in [("0", "slot 0"), ("11", "slot 11"), ("-1", "slot -1")] {
        let run = env.kinfra(&env.main, &["sandbox", "create", "s", "--slot", slot]);
        assert_error(&run, exit::USAGE, &[needle]);
        assert_unchanged(&env, &before);
    }
    // Not a number at all: clap's usage error.
    let run = env.kinfra(&env.main, &["sandbox", "create", "s", "--slot", "x"]);
    run.assert_code(2);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error:") && first.contains("--slot") && first.contains("'x'"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("error:").count(), 1, "{}", run.stderr);
    assert_unchanged(&env, &before);
}

#[test]
fn create_into_an_existing_directory_fails() {
    let env = Env::new();
    let taken = env.sibling(&env.id_of("taken"));
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("keep.txt"), "mine").unwrap();
    let before = snapshot(&env);
    let run = env.kinfra(&env.main, &["sandbox", "create", "taken"]);
    let want = canon(&taken).display().to_string();
    assert_error(&run, exit::CONFLICT, &[&want, "already exists"]);
    assert_unchanged(&env, &before);
    assert_eq!(
        std::fs::read_to_string(taken.join("keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(std::fs::read_dir(&taken).unwrap().count(), 1);
}

#[test]
fn all_slots_taken_names_every_holder() {
    let _ports = slot_ports_guard();
    let env = Env::new();
    for n in 1..=10 {
        env.create_sandbox(&format!("s{n}"));
    }
    let reg = env.registry();
    for n in 1..=10u64 {
        assert_eq!(reg["instances"][env.id_of(&format!("s{n}"))]["slot"], n);
    }
    let before = snapshot(&env);

    let run = env.kinfra(&env.main, &["sandbox", "create", "s11"]);
    let line = assert_error(&run, exit::CONFLICT, &["slots are in use"]);
    for n in 1..=10 {
        let holder = format!("{n}: {}", env.id_of(&format!("s{n}")));
        assert!(line.contains(&holder), "{holder:?} missing from: {line}");
    }
    assert_unchanged(&env, &before);

    let run = env.kinfra(&env.main, &["sandbox", "create", "other", "--slot", "3"]);
    assert_error(&run, exit::CONFLICT, &["slot 3", &env.id_of("s3")]);
    assert_unchanged(&env, &before);
}

#[test]
fn a_held_slot_names_its_holder() {
    let env = Env::new();
    env.create_sandbox("first");
    let before = snapshot(&env);
    let run = env.kinfra(&env.main, &["sandbox", "create", "second", "--slot", "1"]);
    assert_error(&run, exit::CONFLICT, &["slot 1", &env.id_of("first")]);
    assert_unchanged(&env, &before);
}

// ---------------------------------------------------------------- corrupt registry

#[test]
fn a_corrupt_registry_is_never_treated_as_empty() {
    let env = Env::new();
    let sandbox = env.create_sandbox("kept");
    let valid = env.registry_text();
    let reg_path = env.registry_path().display().to_string();
    for garbage in [
        "this is not json\n".to_string(),
        valid[..valid.len() / 2].to_string(),
        "[]".to_string(),
        String::new(),
    ] {
        std::fs::write(env.registry_path(), &garbage).unwrap();
        let before = snapshot(&env);
        let runs = [
            env.kinfra(&env.main, &["sandbox", "create", "new"]),
            env.kinfra(&env.main, &["sandbox", "list"]),
            env.kinfra(&env.main, &["sandbox", "list", "--json"]),
            env.kinfra(&env.main, &["sandbox", "destroy", "kept", "--yes"]),
            env.kinfra(&env.main, &["sandbox", "destroy", "--all", "--force"]),
            env.kinfra(&sandbox, &["sandbox", "destroy", "--yes"]),
            env.kinfra(&sandbox, &["env"]),
            env.kinfra(&env.main, &["local-prod", "create"]),
        ];
        for run in &runs {
            assert_error(run, 1, &[&reg_path]);
        }
        assert_unchanged(&env, &before);
        assert_eq!(
            std::fs::read(env.registry_path()).unwrap(),
            garbage.as_bytes()
        );
        assert!(sandbox.join("README.md").is_file());
        assert!(!env.sibling(&env.id_of("new")).exists());
        assert!(!env.sibling("ktrdr-prod").exists());
    }
}

#[test]
fn a_registry_entry_without_a_slot_is_named() {
    let env = Env::new();
    let dir = env.registry_path().parent().unwrap().to_owned();
    std::fs::create_dir_all(&dir).unwrap();
    let id = env.id_of("noslot");
    let text = r#"{
  "version": 1,
  "local_prod": null,
  "instances": {
    "ID": {
      "instance_id": "ID",
      "path": "/nowhere/ID",
      "created_at": "2026-01-20T16:29:14.123456+00:00",
      "is_worktree": true,
      "parent_repo": "/nowhere/ktrdr"
    }
  }
}"#
    .replace("ID", &id);
    std::fs::write(env.registry_path(), text).unwrap();
    let before = snapshot(&env);
    for args in [
        &["sandbox", "list"][..],
        &["sandbox", "create", "x"][..],
        &["sandbox", "destroy", &id, "--yes"][..],
    ] {
        let run = env.kinfra(&env.main, args);
        assert_error(&run, 1, &[&id, "slot", "instances.json"]);
        assert_unchanged(&env, &before);
    }
}

// ---------------------------------------------------------------- bad env files

#[test]
fn a_malformed_env_file_names_file_line_and_key() {
    let env = Env::new();
    let sandbox = env.create_sandbox("bad-env");
    let file = env_file(&sandbox);
    let file_name = canon(&file).display().to_string();
    let original = std::fs::read(&file).unwrap();
    let mut failures = Vec::new();
    for (key, value) in [("KTRDR_API_PORT", "80x1"), ("SLOT_NUMBER", "42")] {
        std::fs::write(&file, &original).unwrap();
        set_env_line(&file, key, value);
        let broken = std::fs::read(&file).unwrap();
        let line = format!("line {}", line_of(&file, key));
        let before = snapshot(&env);
        for args in [&["url"][..], &["url", "KTRDR_API_PORT"][..], &["env"][..]] {
            let run = env.kinfra(&sandbox, args);
            if let Err(e) = check_error(&run, 1, &[&file_name, &line, key, value]) {
                failures.push(format!(
                    "`kinfra {}` with {key}={value}: {e}",
                    args.join(" ")
                ));
            }
            assert_unchanged(&env, &before);
            assert_eq!(std::fs::read(&file).unwrap(), broken, "reads never write");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------- sandbox init

#[test]
fn init_outside_a_git_repository_is_a_usage_error() {
    let env = Env::new();
    let plain = env.root.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let before = snapshot(&env);
    let run = env.kinfra(&plain, &["sandbox", "init"]);
    assert_error(&run, 2, &["not inside a git repository"]);
    assert_unchanged(&env, &before);
    assert!(!env_file(&plain).exists());
    let run = env.kinfra(&plain, &["sandbox", "create", "x"]);
    assert_error(&run, 2, &["not inside a git repository"]);
    assert_unchanged(&env, &before);
}

#[test]
fn init_in_a_foreign_repository_is_a_usage_error() {
    let env = Env::new();
    let other = env.sibling("other");
    std::fs::create_dir(&other).unwrap();
    env.git(&other, &["init", "-q", "-b", "main"]);
    std::fs::write(other.join("README.md"), "x\n").unwrap();
    env.git(&other, &["add", "."]);
    env.git(&other, &["commit", "-q", "-m", "init"]);
    // No origin at all.
    let before = snapshot(&env);
    let run = env.kinfra(&other, &["sandbox", "init"]);
    assert_error(&run, 2, &["origin"]);
    assert_unchanged(&env, &before);
    // An origin that is not ktrdr.
    env.git(
        &other,
        &[
            "remote",
            "add",
            "origin",
            "https://example.com/acme/other.git",
        ],
    );
    let before = snapshot(&env);
    let run = env.kinfra(&other, &["sandbox", "init"]);
    assert_error(&run, 2, &["https://example.com/acme/other.git", "ktrdr"]);
    assert_unchanged(&env, &before);
    assert!(!env_file(&other).exists());
    let run = env.kinfra(&other, &["sandbox", "create", "x"]);
    assert_error(&run, 2, &["ktrdr"]);
    assert_unchanged(&env, &before);
    let run = env.kinfra(&other, &["local-prod", "create"]);
    assert_error(&run, 2, &["ktrdr"]);
    assert_unchanged(&env, &before);
}

#[test]
fn init_with_an_invalid_name_is_a_usage_error() {
    let env = Env::new();
    let before = snapshot(&env);
    for name in ["Bad Name", "-x", "", &"a".repeat(64)] {
        let arg = format!("--name={name}");
        let run = env.kinfra(&env.main, &["sandbox", "init", &arg]);
        assert_error(&run, 2, &[&format!("`{name}`")]);
        assert_unchanged(&env, &before);
    }
}

#[test]
fn init_twice_fails_and_changes_nothing() {
    let env = Env::new();
    // Named: the default, the directory's basename `ktrdr`, may be a compose project
    // already on the engine (whose leftovers init would rightly refuse).
    let id = env.id_of("main");
    let run = env.kinfra(&env.main, &["sandbox", "init", "--name", &id]);
    run.assert_code(0);
    assert_eq!(env.registry()["instances"][&id]["slot"], 1);
    let before = snapshot(&env);
    for args in [
        &["sandbox", "init"][..],
        &["sandbox", "init", "--name", "another"][..],
    ] {
        let run = env.kinfra(&env.main, args);
        assert_error(&run, exit::CONFLICT, &["already initialized"]);
        assert_unchanged(&env, &before);
    }
}

#[test]
fn init_where_the_basename_is_taken_hints_at_name() {
    let env = Env::new();
    env.create_sandbox("x");
    let elsewhere = env.root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let taken = env.id_of("x");
    env.git(
        &elsewhere,
        &["clone", "-q", env.main.to_str().unwrap(), &taken],
    );
    let clone = elsewhere.join(&taken);
    let before = snapshot(&env);
    let run = env.kinfra(&clone, &["sandbox", "init"]);
    assert_error(&run, exit::CONFLICT, &[&taken, "taken"]);
    assert_hint(&run, "--name");
    assert_unchanged(&env, &before);
    assert!(!env_file(&clone).exists());
    // The hint works.
    let other = format!("{taken}2");
    let run = env.kinfra(&clone, &["sandbox", "init", "--name", &other]);
    run.assert_code(0);
    assert_eq!(env.registry()["instances"][&other]["slot"], 2);
}

// ---------------------------------------------------------------- local-prod

#[test]
fn local_prod_init_refuses_a_linked_worktree() {
    let env = Env::new();
    let wt = env.sibling("plain-wt");
    env.git(
        &env.main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "plain-wt",
            wt.to_str().unwrap(),
        ],
    );
    let sandbox = env.create_sandbox("was-a-sandbox");
    std::fs::remove_file(env_file(&sandbox)).unwrap();
    let before = snapshot(&env);
    for dir in [&wt, &sandbox] {
        let run = env.kinfra(dir, &["local-prod", "init"]);
        assert_error(&run, exit::REFUSED, &["linked git worktree"]);
        assert_unchanged(&env, &before);
        assert!(!env_file(dir).exists());
    }
}

#[test]
fn a_second_local_prod_is_refused() {
    let env = Env::new();
    let run = env.kinfra(&env.main, &["local-prod", "create"]);
    run.assert_code(0);
    let prod = env.sibling("ktrdr-prod");
    assert!(env_file(&prod).is_file());
    let before = snapshot(&env);
    let run = env.kinfra(&env.main, &["local-prod", "create"]);
    assert_error(
        &run,
        exit::CONFLICT,
        &["already registered", env.local_prod_id()],
    );
    assert_unchanged(&env, &before);
    // Not from local-prod itself either, nor by init in another clone.
    let run = env.kinfra(&prod, &["local-prod", "create"]);
    assert_error(&run, exit::CONFLICT, &["already registered"]);
    assert_unchanged(&env, &before);
    let clone = env.sibling("second-clone");
    env.git(
        &env.dev(),
        &["clone", "-q", env.main.to_str().unwrap(), "second-clone"],
    );
    let before = snapshot(&env);
    let run = env.kinfra(&clone, &["local-prod", "init"]);
    assert_error(&run, exit::CONFLICT, &["already registered"]);
    assert_unchanged(&env, &before);
    assert!(!env_file(&clone).exists());
}

#[test]
fn local_prod_create_refuses_an_existing_directory() {
    let env = Env::new();
    let prod = env.sibling("ktrdr-prod");
    std::fs::create_dir(&prod).unwrap();
    std::fs::write(prod.join("precious.txt"), "do not touch").unwrap();
    let before = snapshot(&env);
    let run = env.kinfra(&env.main, &["local-prod", "create"]);
    assert_error(&run, exit::CONFLICT, &["ktrdr-prod", "already exists"]);
    assert_unchanged(&env, &before);
    assert_eq!(
        std::fs::read_to_string(prod.join("precious.txt")).unwrap(),
        "do not touch"
    );
    assert_eq!(std::fs::read_dir(&prod).unwrap().count(), 1);
}

// ---------------------------------------------------------------- outside an instance

#[test]
fn instance_commands_outside_an_instance_fail_with_a_hint() {
    let env = Env::new();
    let sandbox = env.create_sandbox("bystander");
    let plain = env.root.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let sub = env.main.join("sub/dir");
    std::fs::create_dir_all(&sub).unwrap();
    let before = snapshot(&env);
    for dir in [&env.main, &sub, &plain] {
        for args in [
            &["env"][..],
            &["url"][..],
            &["sandbox", "destroy", "--yes"][..],
        ] {
            let run = env.kinfra(dir, args);
            assert_error(&run, exit::NOT_FOUND, &["not inside a kinfra instance"]);
            assert_hint(&run, "sandbox");
            assert_unchanged(&env, &before);
        }
    }
    assert!(env_file(&sandbox).is_file());
}

// ---------------------------------------------------------------- kinfra.toml

#[test]
fn a_config_with_an_unknown_key_names_the_line() {
    let env = Env::new();
    std::fs::write(
        env.main.join("kinfra.toml"),
        format!(
            "[project]\nname = \"ktrdr\"\nnmae = \"oops\"\nsandbox_prefix = \"{}\"\n",
            env.prefix()
        ),
    )
    .unwrap();
    let before = snapshot(&env);
    for args in [&["ports"][..], &["sandbox", "create", "x"][..]] {
        let run = env.kinfra(&env.main, args);
        assert_error(&run, 1, &["kinfra.toml", "line 3", "nmae"]);
        assert_unchanged(&env, &before);
    }
}

#[test]
fn a_config_with_colliding_ports_names_the_port_and_both_slots() {
    let env = Env::new();
    // Added to the Env's own kinfra.toml (its unique names stay).
    let config = env.main.join("kinfra.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[ports.A_PORT]\nlocal_prod = 9000\nsandbox = 9001\nstride = 1\n\n\
         [ports.B_PORT]\nlocal_prod = 9005\nsandbox = 9100\nstride = 1\n",
    );
    std::fs::write(&config, text).unwrap();
    env.git(&env.main, &["add", "kinfra.toml"]);
    env.git(&env.main, &["commit", "-q", "-m", "config"]);
    let before = snapshot(&env);
    for args in [
        &["ports"][..],
        &["sandbox", "create", "x"][..],
        &["sandbox", "init"][..],
    ] {
        let run = env.kinfra(&env.main, args);
        assert_error(&run, 1, &["kinfra.toml", "9005", "slot 0", "slot 5"]);
        assert_unchanged(&env, &before);
    }
}

// ---------------------------------------------------------------- port conflict

#[test]
fn a_busy_port_is_a_conflict_naming_the_port() {
    let _ports = slot_ports_guard();
    let env = Env::new();
    let listener = std::net::TcpListener::bind(("0.0.0.0", 8007)).expect("bind 0.0.0.0:8007");
    let before = snapshot(&env);

    let run = env.kinfra(&env.main, &["sandbox", "create", "busy", "--slot", "7"]);
    assert_error(&run, 3, &["8007", "slot 7"]);
    assert_unchanged(&env, &before);
    assert!(!env.sibling(&env.id_of("busy")).exists());

    // Named: the default name `ktrdr` may be a compose project already on the engine.
    let id = env.id_of("main");
    let run = env.kinfra(
        &env.main,
        &["sandbox", "init", "--slot", "7", "--name", &id],
    );
    assert_error(&run, 3, &["8007", "slot 7"]);
    assert_unchanged(&env, &before);
    assert!(!env_file(&env.main).exists());
    drop(listener);
}

/// Ids are unique across sandboxes and local-prod: `sandbox init --name` with
/// local-prod's id is refused and local-prod's entry is kept as it is.
#[test]
fn init_with_local_prods_id_is_refused() {
    let env = Env::new();
    env.kinfra(&env.main, &["local-prod", "create"])
        .assert_code(0);
    let before = snapshot(&env);
    let prod_entry = env.registry()["local_prod"].clone();
    assert!(prod_entry.is_object(), "{}", env.registry_text());
    let run = env.kinfra(
        &env.main,
        &["sandbox", "init", "--name", env.local_prod_id()],
    );
    assert_error(&run, exit::CONFLICT, &[env.local_prod_id()]);
    assert_unchanged(&env, &before);
    assert_eq!(env.registry()["local_prod"], prod_entry);
}

/// A create that cannot ask Docker whether an earlier instance of the same id left
/// volumes refuses (it never just warns) and makes nothing.
#[test]
fn create_refuses_when_docker_cannot_be_asked_about_leftovers() {
    let env = Env::new();
    env.create_sandbox("first");
    let before = snapshot(&env);
    for args in [
        &["sandbox", "create", "second"][..],
        &["sandbox", "create", "second", "--slot", "5"][..],
        &["local-prod", "create"][..],
    ] {
        let mut cmd = env.kinfra_cmd(&env.main, args);
        cmd.env("DOCKER_HOST", "unix:///nonexistent-kinfra.sock");
        let run = Run::from(cmd.output().unwrap());
        assert_error(&run, exit::EXTERNAL, &["cannot ask Docker"]);
        assert_hint(&run, "DOCKER_HOST");
        assert_unchanged(&env, &before);
    }
    let id = env.id_of("main");
    let mut cmd = env.kinfra_cmd(&env.main, &["sandbox", "init", "--name", &id]);
    cmd.env("DOCKER_HOST", "unix:///nonexistent-kinfra.sock");
    let run = Run::from(cmd.output().unwrap());
    assert_error(&run, exit::EXTERNAL, &["cannot ask Docker"]);
    assert_unchanged(&env, &before);
}

/// `HOME` unset, empty or relative is refused with a hint naming `HOME`; kinfra never
/// resolves its state directory against the current directory.
#[test]
fn home_unset_empty_or_relative_is_refused_with_a_hint() {
    let env = Env::new();
    env.create_sandbox("present");
    let before = snapshot(&env);
    for home in [None, Some(""), Some("relative/home")] {
        for args in [
            &["sandbox", "list"][..],
            &["sandbox", "create", "other"][..],
            &["doctor"][..],
        ] {
            let mut cmd = env.kinfra_cmd(&env.main, args);
            match home {
                None => cmd.env_remove("HOME"),
                Some(h) => cmd.env("HOME", h),
            };
            let run = Run::from(cmd.output().unwrap());
            assert_error(&run, exit::USAGE, &["HOME"]);
            assert_hint(&run, "HOME");
            assert_unchanged(&env, &before);
            for dir in [&env.main, &env.dev()] {
                assert!(!dir.join(".ktrdr").exists(), "{home:?} {args:?}");
                assert!(!dir.join("relative").exists(), "{home:?} {args:?}");
            }
        }
    }
}
