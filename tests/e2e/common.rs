//! Hermetic test environment: a temp `HOME`, no global git config, a bare "origin"
//! whose URL contains the project name, and a main repository cloned from it.
//!
//! Docker is machine-wide while HOME is not: other compose projects named like ktrdr
//! instances (`ktrdr-prod`, `ktrdr--x`, a developer's real ones, `scripts/decoys.sh`'s)
//! may exist on the engine. So an [`Env`] of the ktrdr layout commits a `kinfra.toml`
//! that gives its instances Docker-visible names unique to it (`ktrdr-<tag>--NAME`,
//! `ktrdr-prod-<tag>`); tests take ids from [`Env::id_of`] and
//! [`Env::local_prod_id`], never from literals.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use assert_cmd::cargo::CommandCargoExt;

/// The name of the test's own temp directory under its root.
const TMP: &str = "tmp";

/// Envs made so far by this test process (for [`Env::tag`]).
static ENVS: AtomicUsize = AtomicUsize::new(0);

pub struct Env {
    pub root: tempfile::TempDir,
    pub home: PathBuf,
    /// `<root>/dev/ktrdr`, the main repository.
    pub main: PathBuf,
    /// `t<pid>x<n>`: unique to this Env among every test process on the machine.
    pub tag: String,
    /// What sandbox ids (and directory names) start with.
    prefix: String,
    local_prod_id: String,
}

/// Which names an Env's main repository gives its instances.
enum Names {
    /// A committed `kinfra.toml` over the built-in ktrdr layout: names unique to the Env.
    Unique,
    /// No `kinfra.toml`: the layout's own names (`ktrdr--NAME` and `ktrdr-prod` for
    /// the built-in layout, `<repo>--NAME` for one derived from a compose file).
    Layout,
}

impl Env {
    /// A ktrdr-layout main repository at `<tmp>/dev/ktrdr` with one commit on `main`:
    /// `.env.sandbox` git-ignored, and a `kinfra.toml` that keeps the built-in layout
    /// but makes every Docker-visible name unique to this Env.
    pub fn new() -> Env {
        Self::build("dev", "home", "ktrdr", Names::Unique)
    }

    /// Like [`Env::new`], with no `kinfra.toml`: the pure built-in ktrdr layout, whose
    /// names (`ktrdr--NAME`, `ktrdr-prod`) other projects on the engine may hold. A
    /// test using it gives its sandboxes names unique to the run and makes no
    /// local-prod.
    pub fn builtin() -> Env {
        Self::build("dev", "home", "ktrdr", Names::Layout)
    }

    /// A main repository `<tmp>/dev/<name>` with no `kinfra.toml` (a project whose
    /// layout is derived from its compose file: `name` should be unique to the run).
    pub fn with_repo_name(name: &str) -> Env {
        Self::build("dev", "home", name, Names::Layout)
    }

    /// Like [`Env::new`], but the main repository is `<tmp>/<parent>/ktrdr` and `HOME`
    /// is `<tmp>/<home>` (for odd characters in either).
    pub fn at(parent: &str, home: &str) -> Env {
        Self::build(parent, home, "ktrdr", Names::Unique)
    }

    fn build(parent: &str, home: &str, name: &str, names: Names) -> Env {
        let tag = format!(
            "t{}x{}",
            std::process::id(),
            ENVS.fetch_add(1, Ordering::Relaxed)
        );
        let (prefix, local_prod_id, config) = match names {
            Names::Unique => {
                let prefix = format!("ktrdr-{tag}--");
                let local_prod_id = format!("ktrdr-prod-{tag}");
                let config = format!(
                    "# Docker-visible names unique to this test environment; everything\n\
                     # else is the built-in ktrdr layout.\n\
                     [project]\n\
                     sandbox_prefix = \"{prefix}\"\n\
                     \n\
                     [local_prod]\n\
                     dir = \"ktrdr-prod\"\n\
                     id = \"{local_prod_id}\"\n"
                );
                (prefix, local_prod_id, Some(config))
            }
            Names::Layout => (format!("{name}--"), format!("{name}-prod"), None),
        };
        let root = tempfile::tempdir().expect("tempdir");
        let home = root.path().join(home);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(root.path().join(TMP)).unwrap();
        let dev = root.path().join(parent);
        std::fs::create_dir_all(&dev).unwrap();
        let origin = root.path().join(format!("origin/{name}.git"));
        std::fs::create_dir_all(&origin).unwrap();
        let env = Env {
            home,
            main: dev.join(name),
            root,
            tag,
            prefix,
            local_prod_id,
        };
        env.git(&origin, &["init", "-q", "--bare", "-b", "main"]);
        env.git(&dev, &["init", "-q", "-b", "main", "--", name]);
        env.git(
            &env.main,
            &["remote", "add", "origin", origin.to_str().unwrap()],
        );
        std::fs::write(env.main.join(".gitignore"), ".env.sandbox\n").unwrap();
        std::fs::write(env.main.join("README.md"), "hello\n").unwrap();
        // Committed, so worktrees and local-prod clones have it too.
        if let Some(config) = config {
            std::fs::write(env.main.join("kinfra.toml"), config).unwrap();
        }
        env.git(&env.main, &["add", "."]);
        env.git(&env.main, &["commit", "-q", "-m", "init"]);
        env
    }

    /// What this Env's sandbox ids and directory names start with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The instance id (and directory name) of the sandbox named `name` (slug-clean).
    pub fn id_of(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The instance id of this Env's local-prod (its directory stays `ktrdr-prod`).
    pub fn local_prod_id(&self) -> &str {
        &self.local_prod_id
    }

    /// Whether the compose project `project` is one of this Env's instances.
    pub fn owns_project(&self, project: &str) -> bool {
        project.starts_with(&self.prefix) || project == self.local_prod_id
    }

    /// Whether a `doctor --json` finding is about a Docker project that is not this
    /// Env's (another process's, or one that was on the engine before): not the test's
    /// business.
    pub fn is_foreign_finding(&self, finding: &serde_json::Value) -> bool {
        finding["kind"] == "unregistered-docker-project"
            && !finding["subject"]
                .as_str()
                .is_some_and(|p| self.owns_project(p))
    }

    /// The directory holding the main repository (and its sandboxes).
    pub fn dev(&self) -> PathBuf {
        self.main.parent().expect("main has a parent").to_owned()
    }

    /// `<dev>/<name>`.
    pub fn sibling(&self, name: &str) -> PathBuf {
        self.dev().join(name)
    }

    pub fn registry_path(&self) -> PathBuf {
        self.home.join(".ktrdr/sandbox/instances.json")
    }

    pub fn registry_text(&self) -> String {
        std::fs::read_to_string(self.registry_path()).unwrap_or_default()
    }

    pub fn registry(&self) -> serde_json::Value {
        serde_json::from_str(&self.registry_text()).expect("registry parses")
    }

    /// The test's own `TMPDIR` (`<root>/tmp`).
    pub fn tmp(&self) -> PathBuf {
        self.root.path().join(TMP)
    }

    /// The environment every subprocess of a test gets: nothing of the caller's but
    /// `PATH` and what picks the Docker engine and Compose (`DOCKER_HOST`,
    /// `DOCKER_CONFIG`, `KINFRA_COMPOSE`: the lanes of scripts/test.sh).
    pub fn apply(&self, cmd: &mut Command) {
        // kinfra's own directory first, so commands kinfra prints (`kinfra rescue
        // restore …`) can be run by a shell as a user would.
        let mut path = vec![kinfra_dir()];
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        cmd.env_clear()
            .env(
                "PATH",
                std::env::join_paths(path).expect("PATH entries without `:`"),
            )
            .env("HOME", &self.home)
            .env("TMPDIR", self.tmp())
            .env("LANG", "C.UTF-8")
            .env("TZ", "UTC")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "200")
            .env("KINFRA_LOCK_TIMEOUT", "60");
        for key in ["DOCKER_HOST", "KINFRA_COMPOSE"] {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        // Docker reads a relative DOCKER_CONFIG against the child's directory.
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            cmd.env(
                "DOCKER_CONFIG",
                std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir)),
            );
        }
    }

    /// `kinfra ARGS` run in `cwd`.
    pub fn kinfra(&self, cwd: &Path, args: &[&str]) -> Run {
        let mut cmd = self.kinfra_cmd(cwd, args);
        Run::from(cmd.output().expect("run kinfra"))
    }

    pub fn kinfra_cmd(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("kinfra").expect("kinfra binary");
        self.apply(&mut cmd);
        cmd.current_dir(cwd).args(args);
        cmd
    }

    pub fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        self.apply(&mut cmd);
        let out = cmd.current_dir(cwd).args(args).output().expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} in {}: {}",
            cwd.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Create a sandbox from the main repository, asserting success; returns its path.
    pub fn create_sandbox(&self, name: &str) -> PathBuf {
        let run = self.kinfra(&self.main, &["sandbox", "create", name]);
        run.assert_code(0);
        PathBuf::from(run.stdout.trim())
    }
}

/// The directory holding the `kinfra` binary under test.
pub fn kinfra_dir() -> PathBuf {
    let bin = assert_cmd::cargo::cargo_bin("kinfra");
    bin.parent().expect("binary has a directory").to_owned()
}

/// A finished kinfra run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stderr\n{}",
            self.stderr
        );
        self
    }
}

pub fn canon(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
}

/// Canonical paths of `git worktree list` of `repo` (as listed when a directory is gone).
pub fn worktrees(env: &Env, repo: &Path) -> Vec<PathBuf> {
    env.git(repo, &["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p)))
        .collect()
}

pub fn branch_exists(env: &Env, repo: &Path, branch: &str) -> bool {
    !env.git(repo, &["branch", "--list", branch])
        .trim()
        .is_empty()
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

/// A Docker volume labelled as a compose project's, removed when the test ends (pass
/// or fail).
pub struct LabelledVolume(pub String);

impl LabelledVolume {
    pub fn create(project: &str, name: &str) -> LabelledVolume {
        let out = docker(&[
            "volume",
            "create",
            "--label",
            &format!("com.docker.compose.project={project}"),
            name,
        ]);
        assert!(
            out.status.success(),
            "docker volume create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LabelledVolume(name.to_string())
    }

    pub fn exists(&self) -> bool {
        docker(&["volume", "inspect", &self.0]).status.success()
    }
}

impl Drop for LabelledVolume {
    fn drop(&mut self) {
        let _ = docker(&["volume", "rm", "-f", &self.0]);
    }
}

/// `SLOT_NUMBER` of an instance's env file.
pub fn env_slot(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join(".env.sandbox")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("SLOT_NUMBER="))
        .unwrap_or_else(|| panic!("no SLOT_NUMBER in {text}"))
        .parse()
        .unwrap()
}

/// The row of `id` in `kinfra sandbox list --json`, run from the main repository.
#[track_caller]
pub fn listed(env: &Env, id: &str) -> serde_json::Value {
    let run = env.kinfra(&env.main, &["sandbox", "list", "--json"]);
    run.assert_code(0);
    let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["instance_id"] == id)
        .unwrap_or_else(|| panic!("`{id}` not listed: {list:#}"))
        .clone()
}

/// The example stack (`examples/hello-stack`) as a repository `<dev>/hello` with one
/// commit and no origin; its local-prod id made unique to the Env (it reaches Docker).
/// Returns the repository and that id.
pub fn hello_repo(env: &Env) -> (PathBuf, String) {
    let main = env.dev().join("hello");
    std::fs::create_dir_all(&main).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-stack");
    for f in ["docker-compose.yml", "kinfra.toml"] {
        std::fs::copy(example.join(f), main.join(f))
            .unwrap_or_else(|e| panic!("copy {f} from {}: {e}", example.display()));
    }
    let local_prod_id = format!("hello-prod-{}", env.tag);
    let toml = main.join("kinfra.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let fixed = "id = \"hello-prod\"\n";
    assert_eq!(text.matches(fixed).count(), 1, "{text}");
    let text = text.replace(fixed, &format!("id = \"{local_prod_id}\"\n"));
    std::fs::write(&toml, text).unwrap();
    std::fs::write(main.join(".gitignore"), ".env.sandbox\n").unwrap();
    env.git(&main, &["init", "-q", "-b", "main"]);
    env.git(&main, &["add", "."]);
    env.git(&main, &["commit", "-q", "-m", "hello stack"]);
    (main, local_prod_id)
}

/// kinfra's exit codes (the README's table).
#[allow(dead_code)]
pub mod exit {
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const CONFLICT: i32 = 3;
    pub const REFUSED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const EXTERNAL: i32 = 6;
    pub const GATE_FAILED: i32 = 7;
    pub const TIMED_OUT: i32 = 8;
    pub const NOT_RUNNING: i32 = 9;
    pub const INTERRUPTED: i32 = 130;
}
