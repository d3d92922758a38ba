//! Lifecycle hooks (`[hooks]` in kinfra.toml): they run only once approved for the
//! repository and the exact command, are skipped with a warning otherwise (no terminal
//! to ask), need approval again when changed, never run with `--no-hooks`, and the
//! approvals are read from the per-user file whatever a repository's config says.
//! A failing `pre_up` stops `up` before compose runs.
//!
//! Every test has its own HOME (so its own approvals file) and a repository named
//! `hk<pid>-<case>` whose layout is derived from its compose file. Only
//! `post_up_runs_after_the_stack_started` starts containers (ports 26171/26172 on
//! 127.0.0.1); run it under the Docker end-to-end lock.

use std::path::{Path, PathBuf};

use crate::common::{Env, Run, canon, docker, exit};

const COMPOSE: &str = "services:\n  web:\n    image: kinfra-test/busybox:latest\n    stop_grace_period: 1s\n    ports:\n      - \"127.0.0.1:${WEB_PORT:-26170}:8080\"\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM INT; sleep 600 & wait\"]\n";

/// Docker's own subnets: a derived layout's fixed ones are the same in every test HOME.
/// The automatic block is pinned: the one picked from a per-process project name could
/// hold the layout's ports.
const PORTS: &str = "[ports.WEB_PORT]\nlocal_prod = 26170\nsandbox = 26171\nstride = 1\n\n[auto_ports]\nbase = 30200\nper_slot = 10\n\n[networks]\nenabled = false\n";

/// A repository with the compose file and a kinfra.toml of `PORTS` plus `hooks`.
fn repo(case: &str, hooks: &str) -> Env {
    let env = Env::with_repo_name(&format!("hk{}-{case}", std::process::id()));
    commit(&env, "compose.yaml", COMPOSE);
    commit(&env, "kinfra.toml", &format!("{PORTS}\n[hooks]\n{hooks}"));
    env
}

fn commit(env: &Env, name: &str, text: &str) {
    std::fs::write(env.main.join(name), text).unwrap();
    env.git(&env.main, &["add", name]);
    env.git(&env.main, &["commit", "-q", "-m", &format!("set {name}")]);
}

/// `sandbox create NAME` from the main repository (`extra` args after it).
fn create(env: &Env, name: &str, extra: &[&str]) -> (Run, PathBuf) {
    let mut args = vec!["sandbox", "create", name];
    args.extend_from_slice(extra);
    let run = env.kinfra(&env.main, &args);
    run.assert_code(0);
    let path = PathBuf::from(run.stdout.trim());
    (run, path)
}

fn listed(env: &Env, cwd: &Path) -> serde_json::Value {
    let run = env.kinfra(cwd, &["hooks", "list", "--json"]);
    run.assert_code(0);
    serde_json::from_str(&run.stdout).expect("hooks list --json parses")
}

/// `approved` of every hook `hooks list --json` shows in `cwd`.
fn approved(env: &Env, cwd: &Path) -> Vec<bool> {
    listed(env, cwd)["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["approved"].as_bool().unwrap())
        .collect()
}

fn approvals_file(env: &Env) -> PathBuf {
    env.home.join(".config/kinfra/approved-hooks.toml")
}

const MARK: &str = "post_create = [\"echo \\\"$KINFRA_INSTANCE $KINFRA_SLOT $WEB_PORT\\\" > hook-ran\", \"echo said-by-the-hook\"]\n";

#[test]
fn an_approved_post_create_runs_in_the_instance_with_its_environment() {
    let env = repo("run", MARK);
    let before = listed(&env, &env.main);
    assert_eq!(before["schema_version"], 1);
    assert_eq!(before["hooks"].as_array().unwrap().len(), 2);
    assert!(
        before["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["approved"] == false && h["stage"] == "post_create")
    );

    // Without a terminal, approving needs -y.
    env.kinfra(&env.main, &["hooks", "approve"])
        .assert_code(exit::REFUSED);
    assert!(!approvals_file(&env).exists());
    env.kinfra(&env.main, &["hooks", "approve", "-y"])
        .assert_code(0);
    assert!(approvals_file(&env).is_file());
    assert_eq!(approved(&env, &env.main), [true, true]);
    let after = listed(&env, &env.main);
    assert_eq!(
        after["repository"]["path"].as_str().unwrap(),
        canon(&env.main).to_str().unwrap()
    );

    let (run, path) = create(&env, "a", &[]);
    run.assert_stderr_contains("said-by-the-hook");
    let id = format!("hk{}-run--a", std::process::id());
    let text = std::fs::read_to_string(path.join("hook-ran")).expect("the hook ran there");
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields[0], id);
    assert!(fields[1].parse::<u32>().unwrap() >= 1, "{text}");
    assert!(
        fields[2].parse::<u16>().is_ok(),
        "the env file's port: {text}"
    );
    // A sandbox of the same repository uses the same approvals.
    assert_eq!(approved(&env, &path), [true, true]);
}

#[test]
fn unapproved_hooks_are_skipped_with_a_warning_naming_approve() {
    let env = repo("skip", MARK);
    let (run, path) = create(&env, "a", &[]);
    run.assert_stderr_contains("not approved")
        .assert_stderr_contains("kinfra hooks approve");
    assert!(
        !run.stderr.lines().any(|l| l.trim() == "said-by-the-hook"),
        "{}",
        run.stderr
    );
    assert!(!path.join("hook-ran").exists());
}

#[test]
fn a_changed_command_needs_approval_again() {
    let env = repo("change", MARK);
    env.kinfra(&env.main, &["hooks", "approve", "-y"])
        .assert_code(0);
    commit(
        &env,
        "kinfra.toml",
        &format!("{PORTS}\n[hooks]\npost_create = [\"echo changed > hook-ran\"]\n"),
    );
    assert_eq!(approved(&env, &env.main), [false]);
    let (run, path) = create(&env, "a", &[]);
    run.assert_stderr_contains("kinfra hooks approve");
    assert!(!path.join("hook-ran").exists());

    // Approved again, it runs; revoked, it is skipped again.
    env.kinfra(&env.main, &["hooks", "approve", "-y"])
        .assert_code(0);
    let (_, b) = create(&env, "b", &[]);
    assert_eq!(
        std::fs::read_to_string(b.join("hook-ran")).unwrap(),
        "changed\n"
    );
    env.kinfra(&env.main, &["hooks", "revoke"]).assert_code(0);
    let (_, c) = create(&env, "c", &[]);
    assert!(!c.join("hook-ran").exists());
}

#[test]
fn no_hooks_skips_even_approved_hooks() {
    let env = repo("nohooks", MARK);
    env.kinfra(&env.main, &["hooks", "approve", "-y"])
        .assert_code(0);
    let (run, path) = create(&env, "a", &["--no-hooks"]);
    run.assert_stderr_contains("--no-hooks");
    assert!(!path.join("hook-ran").exists());
    // --dry-run runs nothing either.
    env.kinfra(&env.main, &["sandbox", "create", "b", "--dry-run"])
        .assert_code(0);
    assert!(
        !env.sibling(&format!("hk{}-nohooks--b", std::process::id()))
            .exists()
    );
}

/// A repository's config cannot point kinfra at approvals it planted: not through
/// `state.dir`, not through a key of `[hooks]`.
#[test]
fn a_hostile_config_cannot_move_the_approvals() {
    let env = repo("hostile", MARK);
    let planted = env.tmp().join("planted");
    // A valid approvals file for exactly these hooks, written where a config could
    // point: XDG_CONFIG_HOME of another run.
    let mut approve = env.kinfra_cmd(&env.main, &["hooks", "approve", "-y"]);
    approve.env("XDG_CONFIG_HOME", &planted);
    assert!(approve.output().unwrap().status.success());
    let file = planted.join("kinfra/approved-hooks.toml");
    let text = std::fs::read_to_string(&file).expect("approvals written under XDG_CONFIG_HOME");
    for place in ["approved-hooks.toml", ".config/kinfra/approved-hooks.toml"] {
        let p = planted.join(place);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, &text).unwrap();
    }
    commit(
        &env,
        "kinfra.toml",
        &format!(
            "{PORTS}\n[state]\ndir = \"{}\"\nregistry = \"instances.json\"\n\n[hooks]\n{MARK}",
            planted.display()
        ),
    );
    assert_eq!(approved(&env, &env.main), [false, false]);
    assert_eq!(
        listed(&env, &env.main)["approvals_file"].as_str().unwrap(),
        approvals_file(&env).to_str().unwrap()
    );
    let (run, path) = create(&env, "a", &[]);
    run.assert_stderr_contains("kinfra hooks approve");
    assert!(!path.join("hook-ran").exists());

    // Nor can it have kinfra write where the approvals are kept.
    for section in [
        "[state]\ndir = \"~/.config/kinfra\"\nregistry = \"approved-hooks.toml\"\n",
        "[state]\ndir = \"~/.config/x/../kinfra/sub\"\nregistry = \"instances.json\"\n",
        "[state]\ndir = \"~/.config\"\nregistry = \"kinfra/approved-hooks.toml\"\n",
        "[shared]\ndir = \"~/.config/kinfra\"\n",
    ] {
        commit(&env, "kinfra.toml", &format!("{PORTS}\n{section}"));
        let before = std::fs::read(approvals_file(&env)).ok();
        env.kinfra(&env.main, &["sandbox", "create", "b"])
            .assert_code(exit::FAILURE)
            .assert_stderr_contains("hook approvals");
        assert_eq!(
            std::fs::read(approvals_file(&env)).ok(),
            before,
            "{section}"
        );
    }

    // No key of `[hooks]` names a file.
    commit(
        &env,
        "kinfra.toml",
        &format!(
            "{PORTS}\n[hooks]\napprovals = \"{}\"\n{MARK}",
            file.display()
        ),
    );
    env.kinfra(&env.main, &["hooks", "list"])
        .assert_code(exit::FAILURE)
        .assert_stderr_contains("approvals");
}

/// `sandbox create NAME` on a terminal (through `script`), answering `answer` to the
/// prompt; returns what the terminal showed.
fn create_on_a_terminal(env: &Env, name: &str, answer: &str) -> String {
    let kinfra = assert_cmd::cargo::cargo_bin("kinfra");
    let line = format!("{} sandbox create {name}", kinfra.display());
    let mut cmd = std::process::Command::new("script");
    env.apply(&mut cmd);
    cmd.current_dir(&env.main)
        .args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run script");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{shown}");
    shown
}

#[test]
fn on_a_terminal_unapproved_hooks_are_asked_about() {
    let env = repo("ask", MARK);
    let sandbox = |n: &str| env.sibling(&format!("hk{}-ask--{n}", std::process::id()));
    let shown = create_on_a_terminal(&env, "a", "n");
    assert!(shown.contains("not approved yet"), "{shown}");
    assert!(!sandbox("a").join("hook-ran").exists());
    // `y`: this time only.
    create_on_a_terminal(&env, "b", "y");
    assert!(sandbox("b").join("hook-ran").is_file());
    assert!(!approvals_file(&env).exists());
    // `always`: approved, and run.
    create_on_a_terminal(&env, "c", "always");
    assert!(sandbox("c").join("hook-ran").is_file());
    assert_eq!(approved(&env, &env.main), [true, true]);
    // Approved hooks are not asked about.
    let shown = create_on_a_terminal(&env, "d", "");
    assert!(!shown.contains("not approved yet"), "{shown}");
    assert!(sandbox("d").join("hook-ran").is_file());
}

/// `service state` of every container of the compose project `project`.
fn containers(project: &str) -> Vec<String> {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.Names}} {{.State}}",
    ]);
    assert!(out.status.success(), "docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_failing_pre_up_stops_up_before_compose_runs() {
    let env = repo(
        "preup",
        "pre_up = [\"echo pre-up-ran > pre-up-ran; echo no-deps >&2; exit 3\"]\n",
    );
    env.kinfra(&env.main, &["hooks", "approve", "-y"])
        .assert_code(0);
    let (_, path) = create(&env, "a", &[]);
    let id = format!("hk{}-preup--a", std::process::id());
    let _down = Down(id.clone());
    let run = env.kinfra(&path, &["sandbox", "up", "--timeout", "30"]);
    run.assert_code(exit::REFUSED)
        .assert_stderr_contains("pre_up hook")
        .assert_stderr_contains("exit code 3")
        .assert_stderr_contains("no-deps");
    assert!(path.join("pre-up-ran").is_file(), "the hook ran");
    assert_eq!(containers(&id), Vec::<String>::new(), "nothing may start");
    // Dry runs run no hooks.
    std::fs::remove_file(path.join("pre-up-ran")).unwrap();
    env.kinfra(&path, &["sandbox", "up", "--dry-run"])
        .assert_code(0);
    assert!(!path.join("pre-up-ran").exists());
}

#[test]
fn a_failing_pre_destroy_keeps_the_instance() {
    let env = repo("predestroy", "pre_destroy = [\"exit 1\"]\n");
    env.kinfra(&env.main, &["hooks", "approve", "-y"])
        .assert_code(0);
    let (_, path) = create(&env, "a", &[]);
    let id = format!("hk{}-predestroy--a", std::process::id());
    env.kinfra(&env.main, &["sandbox", "destroy", &id, "--yes"])
        .assert_code(exit::REFUSED)
        .assert_stderr_contains("pre_destroy hook");
    assert!(path.is_dir(), "the worktree stays");
    // --no-hooks destroys it.
    env.kinfra(
        &env.main,
        &["sandbox", "destroy", &id, "--yes", "--no-hooks"],
    )
    .assert_code(0);
    assert!(!path.exists());
}

/// Removes the test's compose project whatever happens.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.0),
        ]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
        let nets = docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.0),
        ]);
        for id in String::from_utf8_lossy(&nets.stdout).split_whitespace() {
            let _ = docker(&["network", "rm", id]);
        }
    }
}

/// Docker: `post_up` runs once the stack is up, `pre_down` before it stops; a failing
/// `post_up` is a warning.
#[test]
fn post_up_runs_after_the_stack_started() {
    let env = repo(
        "postup",
        "post_up = [\"docker ps --filter label=com.docker.compose.project=$KINFRA_INSTANCE --format '{{.State}}' > post-up-saw\", \"exit 5\"]\npre_down = [\"echo bye > pre-down-ran\"]\n",
    );
    env.kinfra(&env.main, &["hooks", "approve", "-y"])
        .assert_code(0);
    let (_, path) = create(&env, "a", &["--slot", "1"]);
    let id = format!("hk{}-postup--a", std::process::id());
    let _down = Down(id.clone());
    let run = env.kinfra(&path, &["sandbox", "up", "--timeout", "60"]);
    run.assert_code(0)
        .assert_stderr_contains("post_up hook `exit 5` failed");
    let saw = std::fs::read_to_string(path.join("post-up-saw")).unwrap();
    assert_eq!(
        saw.trim(),
        "running",
        "the hook ran after the stack started"
    );
    env.kinfra(&path, &["sandbox", "down"]).assert_code(0);
    assert!(path.join("pre-down-ran").is_file());
}
