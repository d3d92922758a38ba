//! Configuration: the built-in ktrdr layout (an embedded TOML file) overridden key by
//! key by an optional `kinfra.toml`.
//!
//! Sections merge key by key; `ports` is a whole port map, so a `[ports]` in
//! `kinfra.toml` replaces the built-in one rather than adding to it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ports::{PortMap, PortSpec};

const BUILTIN: &str = include_str!("default_config.toml");

/// File name looked for at the repository root.
pub const CONFIG_FILE: &str = "kinfra.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config `{}`: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config `{}`: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid config `{}`: {message}", .path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("invalid port map: {0}")]
    Ports(#[from] crate::ports::PortError),
}

/// One layer of configuration as written in a file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    project: Option<ProjectLayer>,
    state: Option<StateLayer>,
    instance: Option<InstanceLayer>,
    slots: Option<SlotsLayer>,
    local_prod: Option<LocalProdLayer>,
    shared: Option<SharedLayer>,
    ports: Option<toml::map::Map<String, toml::Value>>,
    gate: Option<GateLayer>,
    secrets: Option<SecretsLayer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateLayer {
    timeout: Option<u64>,
    checks: Option<Vec<CheckSpec>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsLayer {
    timeout: Option<u64>,
    items: Option<Vec<SecretItem>>,
}

/// How a gate check probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A TCP connect succeeds.
    Tcp,
    /// An HTTP GET answers an expected status (and, optionally, a JSON list long enough).
    Http,
}

/// One startability-gate check.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    pub name: String,
    pub kind: CheckKind,
    /// Env key of the port to probe on 127.0.0.1.
    pub port: String,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default = "default_statuses")]
    pub expect_status: Vec<u16>,
    /// The JSON body must be a list of at least this many items, or an object whose
    /// `count_field` is such a list.
    pub min_count: Option<usize>,
    pub count_field: Option<String>,
    /// Names of checks that must pass first.
    #[serde(default)]
    pub after: Vec<String>,
    /// Compose service behind this check, for its logs when the check fails.
    pub service: Option<String>,
}

fn default_path() -> String {
    "/".into()
}

fn default_statuses() -> Vec<u16> {
    vec![200]
}

/// A 1Password item whose concealed fields become environment variables.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretItem {
    pub item: String,
    pub vault: Option<String>,
    /// Field label → env name.
    pub fields: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectLayer {
    name: Option<String>,
    sandbox_prefix: Option<String>,
    repo_check: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateLayer {
    dir: Option<String>,
    registry: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceLayer {
    env_file: Option<String>,
    compose_files: Option<Vec<String>>,
    copy_files: Option<Vec<CopyFile>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotsLayer {
    count: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalProdLayer {
    dir: Option<String>,
    id: Option<String>,
    profile: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedLayer {
    dir: Option<String>,
    env_key: Option<String>,
    subdirs: Option<Vec<SharedSubdir>>,
}

/// A file copied into a new worktree when the target is missing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyFile {
    pub from: String,
    pub to: String,
}

/// A subdirectory of the shared directory and the env key that points at it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedSubdir {
    pub name: String,
    pub env_key: String,
}

/// Later layer wins, field by field.
macro_rules! overlay {
    ($base:expr, $over:expr, [$($field:ident),*]) => {
        match ($base, $over) {
            (Some(mut b), Some(o)) => {
                $( if o.$field.is_some() { b.$field = o.$field; } )*
                Some(b)
            }
            (b, o) => o.or(b),
        }
    };
}

impl Layer {
    fn overlay(self, over: Layer) -> Layer {
        Layer {
            project: overlay!(
                self.project,
                over.project,
                [name, sandbox_prefix, repo_check]
            ),
            state: overlay!(self.state, over.state, [dir, registry]),
            instance: overlay!(
                self.instance,
                over.instance,
                [env_file, compose_files, copy_files]
            ),
            slots: overlay!(self.slots, over.slots, [count]),
            local_prod: overlay!(self.local_prod, over.local_prod, [dir, id, profile]),
            shared: overlay!(self.shared, over.shared, [dir, env_key, subdirs]),
            ports: over.ports.or(self.ports),
            gate: overlay!(self.gate, over.gate, [timeout, checks]),
            secrets: overlay!(self.secrets, over.secrets, [timeout, items]),
        }
    }
}

/// The resolved configuration every command works from.
#[derive(Debug, Clone)]
pub struct Config {
    pub project_name: String,
    pub sandbox_prefix: String,
    pub repo_check: String,
    pub state_dir: PathBuf,
    pub registry_path: PathBuf,
    pub env_file: String,
    pub compose_files: Vec<String>,
    pub copy_files: Vec<CopyFile>,
    pub slot_count: u32,
    pub local_prod_dir: String,
    pub local_prod_id: String,
    pub local_prod_profile: String,
    pub shared_dir: PathBuf,
    pub shared_env_key: String,
    pub shared_subdirs: Vec<SharedSubdir>,
    pub ports: PortMap,
    pub gate_timeout: u64,
    pub gate_checks: Vec<CheckSpec>,
    pub secrets_timeout: u64,
    pub secrets: Vec<SecretItem>,
}

impl Config {
    /// The built-in ktrdr layout alone.
    pub fn builtin() -> Config {
        // The embedded file is covered by tests; failing here is a build defect.
        Self::from_layers(None, None).unwrap_or_else(|e| panic!("built-in config: {e}"))
    }

    /// Load the built-in layout overridden by `path` (if given).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Self::from_layers(None, None),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_layers(Some(path), Some(&text))
            }
        }
    }

    /// Built-in + the given file text.
    pub fn from_layers(path: Option<&Path>, text: Option<&str>) -> Result<Config, ConfigError> {
        let builtin_path = Path::new("<built-in>");
        let base = parse_layer(builtin_path, BUILTIN)?;
        let layer = match (path, text) {
            (Some(p), Some(t)) => base.overlay(parse_layer(p, t)?),
            _ => base,
        };
        let src = path.unwrap_or(builtin_path);
        resolve(layer, src)
    }

    /// Directory of a sandbox named `slug`, next to the main repository.
    pub fn sandbox_dir(&self, main_repo: &Path, slug: &str) -> PathBuf {
        sibling(main_repo, &format!("{}{slug}", self.sandbox_prefix))
    }

    /// Directory of local-prod, next to the main repository.
    pub fn local_prod_path(&self, main_repo: &Path) -> PathBuf {
        sibling(main_repo, &self.local_prod_dir)
    }

    /// Lock file guarding the registry.
    pub fn registry_lock_path(&self) -> PathBuf {
        let mut name = self.registry_path.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }
}

fn sibling(main_repo: &Path, name: &str) -> PathBuf {
    main_repo
        .parent()
        .map_or_else(|| PathBuf::from(name), |p| p.join(name))
}

fn parse_layer(path: &Path, text: &str) -> Result<Layer, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: one_line_toml_error(&e, text),
    })
}

/// toml's messages span several lines with a caret; keep one line with the line number.
fn one_line_toml_error(err: &toml::de::Error, text: &str) -> String {
    let message = err
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match err.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

fn required<T>(value: Option<T>, key: &str, path: &Path) -> Result<T, ConfigError> {
    value.ok_or_else(|| ConfigError::Invalid {
        path: path.to_owned(),
        message: format!("`{key}` is missing"),
    })
}

fn resolve(layer: Layer, path: &Path) -> Result<Config, ConfigError> {
    // Messages quote user strings, which may hold line breaks; errors stay one line.
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_owned(),
        message: message.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    let project = layer.project.unwrap_or_default();
    let state = layer.state.unwrap_or_default();
    let instance = layer.instance.unwrap_or_default();
    let slots = layer.slots.unwrap_or_default();
    let local_prod = layer.local_prod.unwrap_or_default();
    let shared = layer.shared.unwrap_or_default();
    let gate = layer.gate.unwrap_or_default();
    let secrets = layer.secrets.unwrap_or_default();

    let state_dir = expand_home(&required(state.dir, "state.dir", path)?);
    let registry = PathBuf::from(required(state.registry, "state.registry", path)?);
    let registry_path = if registry.is_absolute() {
        registry
    } else {
        state_dir.join(registry)
    };

    let mut specs = Vec::new();
    for (key, value) in required(layer.ports, "ports", path)? {
        if !is_env_key(&key) {
            return Err(invalid(format!(
                "port key `{key}` is not an environment variable name"
            )));
        }
        let spec: PortSpec = value.try_into().map_err(|e: toml::de::Error| {
            let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            invalid(format!("`ports.{key}`: {msg}"))
        })?;
        specs.push((key, spec));
    }
    let ports = PortMap { specs };

    let slot_count = required(slots.count, "slots.count", path)?;
    if !(1..=99).contains(&slot_count) {
        return Err(invalid(format!(
            "`slots.count` is {slot_count}, outside 1..=99"
        )));
    }
    ports
        .validate(slot_count)
        .map_err(|source| invalid(source.to_string()))?;

    let config = Config {
        project_name: required(project.name, "project.name", path)?,
        sandbox_prefix: required(project.sandbox_prefix, "project.sandbox_prefix", path)?,
        repo_check: required(project.repo_check, "project.repo_check", path)?,
        state_dir,
        registry_path,
        env_file: required(instance.env_file, "instance.env_file", path)?,
        compose_files: required(instance.compose_files, "instance.compose_files", path)?,
        copy_files: instance.copy_files.unwrap_or_default(),
        slot_count,
        local_prod_dir: required(local_prod.dir, "local_prod.dir", path)?,
        local_prod_id: required(local_prod.id, "local_prod.id", path)?,
        local_prod_profile: required(local_prod.profile, "local_prod.profile", path)?,
        shared_dir: expand_home(&required(shared.dir, "shared.dir", path)?),
        shared_env_key: required(shared.env_key, "shared.env_key", path)?,
        shared_subdirs: shared.subdirs.unwrap_or_default(),
        ports,
        gate_timeout: required(gate.timeout, "gate.timeout", path)?,
        gate_checks: gate.checks.unwrap_or_default(),
        secrets_timeout: required(secrets.timeout, "secrets.timeout", path)?,
        secrets: secrets.items.unwrap_or_default(),
    };
    validate_checks(&config).map_err(invalid)?;
    if !crate::slug::is_valid_project_name(&config.local_prod_id) {
        return Err(invalid(format!(
            "`local_prod.id` `{}` is not a valid compose project name",
            config.local_prod_id
        )));
    }
    if config.env_file.is_empty() || config.env_file.contains('/') {
        return Err(invalid(
            "`instance.env_file` must be a plain file name".into(),
        ));
    }
    Ok(config)
}

/// Every check probes a known port key, has a unique name, and waits only for checks
/// listed before it (so dependencies cannot form a cycle).
fn validate_checks(config: &Config) -> Result<(), String> {
    let keys: Vec<String> = config
        .ports
        .for_slot(1)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|p| p.key)
        .collect();
    let mut seen: Vec<&str> = Vec::new();
    for check in &config.gate_checks {
        if seen.contains(&check.name.as_str()) {
            return Err(format!("gate check `{}` is defined twice", check.name));
        }
        if !keys.contains(&check.port) {
            return Err(format!(
                "gate check `{}` probes `{}`, which is not a port key (known: {})",
                check.name,
                check.port,
                keys.join(", ")
            ));
        }
        for dep in &check.after {
            if !seen.contains(&dep.as_str()) {
                return Err(format!(
                    "gate check `{}` waits for `{dep}`, which is not a check defined before it",
                    check.name
                ));
            }
        }
        if !check.path.starts_with('/') {
            return Err(format!(
                "gate check `{}`: `path` must start with `/`",
                check.name
            ));
        }
        seen.push(&check.name);
    }
    Ok(())
}

fn is_env_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `~` and `~/…` are the home directory.
pub fn expand_home(path: &str) -> PathBuf {
    let home = || {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
    };
    if path == "~" {
        home()
    } else if let Some(rest) = path.strip_prefix("~/") {
        home().join(rest)
    } else {
        PathBuf::from(path)
    }
}

impl crate::error::Diagnostic for ConfigError {
    fn exit(&self) -> crate::error::Exit {
        crate::error::Exit::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(text: &str) -> Result<Config, ConfigError> {
        Config::from_layers(Some(Path::new("/r/kinfra.toml")), Some(text))
    }

    #[test]
    fn builtin_is_the_ktrdr_layout() {
        let c = Config::builtin();
        assert_eq!(c.project_name, "ktrdr");
        assert_eq!(c.sandbox_prefix, "ktrdr--");
        assert_eq!(c.env_file, ".env.sandbox");
        assert!(c.registry_path.ends_with(".ktrdr/sandbox/instances.json"));
        assert_eq!(c.local_prod_id, "ktrdr-prod");
        assert_eq!(c.slot_count, 10);
        assert_eq!(c.ports.specs.len(), 8);
        assert_eq!(c.shared_subdirs.len(), 3);
    }

    #[test]
    fn a_key_overrides_only_itself() {
        let c = with("[project]\nname = \"hello\"\n").unwrap();
        assert_eq!(c.project_name, "hello");
        assert_eq!(c.sandbox_prefix, "ktrdr--");
    }

    #[test]
    fn ports_replace_the_builtin_map() {
        let c = with(
            "[gate]\nchecks = []\n[ports.HELLO_API_PORT]\nlocal_prod = 47000\nsandbox = 47010\nstride = 10\n",
        )
        .unwrap();
        assert_eq!(c.ports.specs.len(), 1);
        assert_eq!(c.ports.for_slot(2).unwrap()[0].port, 47020);
    }

    #[test]
    fn unknown_keys_are_reported_with_the_line() {
        let err = with("[project]\nname = \"x\"\nnmae = \"y\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("nmae"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");

        let err = with("\n[bogus]\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn type_errors_are_reported_with_the_line() {
        let err = with("[slots]\ncount = \"ten\"\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn colliding_ports_are_refused() {
        let err = with(
            "[ports.A]\nlocal_prod = 9000\nsandbox = 9001\nstride = 1\n\
             [ports.B]\nlocal_prod = 9005\nsandbox = 9100\nstride = 1\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("port 9005 is used by both slot 0 (`B`) and slot 5 (`A`)")
                || err
                    .to_string()
                    .contains("port 9005 is used by both slot 5 (`A`) and slot 0 (`B`)"),
            "{err}"
        );
    }

    #[test]
    fn gate_checks_must_name_known_ports() {
        let err = with("[ports.A]\nlocal_prod = 9000\nsandbox = 9001\nstride = 1\n").unwrap_err();
        assert!(err.to_string().contains("not a port key"), "{err}");
        let err = with("[[gate.checks]]\nname = \"X\"\nkind = \"tcp\"\nport = \"KTRDR_DB_PORT\"\nafter = [\"Y\"]\n")
            .unwrap_err();
        assert!(err.to_string().contains("waits for `Y`"), "{err}");
    }

    #[test]
    fn the_readme_example_is_valid() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("```toml\n[project]")
            .expect("README has the example")
            + 8;
        let len = readme[start..].find("```").expect("closed");
        let c = with(&readme[start..start + len]).unwrap();
        assert_eq!(c.project_name, "myapp");
        assert_eq!(c.gate_checks.len(), 3);
        assert_eq!(c.secrets.len(), 1);
    }

    #[test]
    fn local_prod_id_must_be_a_project_name() {
        assert!(with("[local_prod]\nid = \"Bad Name\"\n").is_err());
    }
}
