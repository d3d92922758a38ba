//! Configuration. A layout is the built-in ktrdr layout (an embedded TOML file) or,
//! in any other compose project, one derived from its compose file (`derive`); an
//! optional `kinfra.toml` is merged over it key by key.
//!
//! Sections merge key by key; `ports` is a whole port map, so a `[ports]` in
//! `kinfra.toml` replaces the base one rather than adding to it; so do `gate.checks`
//! and `secrets.items`.

pub mod check;
pub mod derive;
pub mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ports::{PortMap, PortSpec};

const BUILTIN: &str = include_str!("ktrdr.toml");

/// File name looked for at the repository root.
pub const CONFIG_FILE: &str = "kinfra.toml";

/// Environment keys kinfra writes itself; a layout may not use them for anything else.
pub const RESERVED_KEYS: &[&str] = &[
    "COMPOSE_PROJECT_NAME",
    "CREATED_AT",
    "INSTANCE_ID",
    "SANDBOX_VERSION",
    "SLOT_NUMBER",
];

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
    #[error("`HOME` is {}; kinfra keeps its state under the home directory", if .0.is_empty() { "not set" } else { "not an absolute path" })]
    NoHome(String),
}

impl crate::error::Diagnostic for ConfigError {
    fn exit(&self) -> crate::error::Exit {
        match self {
            ConfigError::NoHome(_) => crate::error::Exit::Usage,
            _ => crate::error::Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ConfigError::NoHome(_) => Some("set HOME to your home directory".into()),
            ConfigError::Parse { .. } | ConfigError::Invalid { .. } => {
                Some("fix the file; `kinfra config check` compares it with the compose file".into())
            }
            _ => None,
        }
    }
}

/// Which layout a `kinfra.toml` is merged over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// The built-in ktrdr layout.
    Ktrdr,
    /// A layout derived from the repository's compose file.
    Compose,
}

/// One layer of configuration as written in a file: every key optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<Base>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<StateLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<SlotsLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_prod: Option<LocalProdLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_ports: Option<AutoPortsLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<toml::map::Map<String, toml::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<SecretsLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networks: Option<NetworksLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HooksLayer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<DataLayer>,
}

/// `[hooks]`: shell commands run at points of an instance's life, each only once the
/// user approved it (see `hooks`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HooksLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_create: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_up: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_up: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_down: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_destroy: Option<Vec<String>>,
    /// Seconds each command may run (default 300).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataLayer {
    /// Compose volume keys that snapshots and `--data-from` leave out (caches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworksLayer {
    /// Give every instance's networks fixed subnets (false: leave them to Docker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// An IPv4 block, `/24` or larger: slot n's k-th network gets its
    /// `(n * per_slot + k)`-th `/24`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_slot: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetLayer {
    /// Memory for all of an instance's containers together (`512m`, `4g`, bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPUs for all of an instance's containers together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// At most this many `up`s at once (on this machine); more wait in a queue. 0: no cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_ups: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GateLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<CheckSpec>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<SecretItem>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AutoPortsLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_slot: Option<u32>,
}

/// How a gate check probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A TCP connect succeeds.
    Tcp,
    /// An HTTP GET answers an expected status (and, optionally, a JSON list long enough).
    Http,
}

/// One startability-gate check.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_field: Option<String>,
    /// Names of checks that must pass first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Compose service behind this check: the check is dropped when the compose file
    /// has no such service, and its logs are shown when the check fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

fn default_path() -> String {
    "/".into()
}

fn default_statuses() -> Vec<u16> {
    vec![200]
}

/// The environment name(s) a secret field is passed as.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EnvTargets {
    One(String),
    /// Candidates: the ones the compose file reads are used (the first when it reads
    /// none of them), so one layout serves compose files of different eras.
    Many(Vec<String>),
}

impl EnvTargets {
    pub fn names(&self) -> Vec<&str> {
        match self {
            EnvTargets::One(n) => vec![n.as_str()],
            EnvTargets::Many(ns) => ns.iter().map(String::as_str).collect(),
        }
    }

    /// The names to set, given the variables the compose file reads.
    pub fn resolve(&self, read: &dyn Fn(&str) -> bool) -> Vec<String> {
        let names = self.names();
        let used: Vec<String> = names
            .iter()
            .filter(|n| read(n))
            .map(|n| (*n).to_string())
            .collect();
        if used.is_empty() {
            names
                .first()
                .map(|n| vec![(*n).to_string()])
                .unwrap_or_default()
        } else {
            used
        }
    }
}

/// A 1Password item whose concealed fields become environment variables.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretItem {
    pub item: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    /// Which instances use it: `sandbox`, `local-prod` (default: both).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Field label → env name (or candidate env names).
    pub fields: BTreeMap<String, EnvTargets>,
}

impl SecretItem {
    pub fn applies_to(&self, kind: crate::instance::Kind) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind.label())
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_check: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose_files: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_files: Option<Vec<CopyFile>>,
    /// Names of ignored paths `destroy` deletes without asking (caches, build output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposable: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlotsLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalProdLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SharedLayer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdirs: Option<Vec<SharedSubdir>>,
}

/// A file copied into a new worktree when the target is missing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CopyFile {
    pub from: String,
    pub to: String,
}

/// A subdirectory of the shared directory and the env key that points at it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
    pub fn overlay(self, over: Layer) -> Layer {
        Layer {
            base: over.base.or(self.base),
            project: overlay!(
                self.project,
                over.project,
                [name, sandbox_prefix, repo_check]
            ),
            state: overlay!(self.state, over.state, [dir, registry]),
            instance: overlay!(
                self.instance,
                over.instance,
                [env_file, compose_files, copy_files, disposable]
            ),
            slots: overlay!(self.slots, over.slots, [count]),
            local_prod: overlay!(self.local_prod, over.local_prod, [dir, id, profile]),
            shared: overlay!(self.shared, over.shared, [dir, env_key, subdirs]),
            auto_ports: overlay!(self.auto_ports, over.auto_ports, [base, per_slot]),
            ports: over.ports.or(self.ports),
            gate: overlay!(self.gate, over.gate, [timeout, checks]),
            secrets: overlay!(self.secrets, over.secrets, [timeout, items]),
            networks: overlay!(self.networks, over.networks, [enabled, range, per_slot]),
            budget: overlay!(self.budget, over.budget, [memory, cpus, max_concurrent_ups]),
            hooks: overlay!(
                self.hooks,
                over.hooks,
                [post_create, pre_up, post_up, pre_down, pre_destroy, timeout]
            ),
            data: overlay!(self.data, over.data, [skip]),
        }
    }

    /// The built-in ktrdr layout.
    pub fn ktrdr() -> Layer {
        // The embedded file is covered by tests; failing here is a build defect.
        parse_layer(Path::new("<built-in>"), BUILTIN)
            .unwrap_or_else(|e| panic!("built-in config: {e}"))
    }
}

/// Where the configuration in force came from (shown by `config show` and `-v`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// The built-in ktrdr layout.
    Builtin,
    /// Derived from this compose file.
    Derived { compose_file: PathBuf },
    /// This `kinfra.toml`, merged over a base.
    File { path: PathBuf, over: Box<Source> },
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Builtin => "the built-in ktrdr layout".into(),
            Source::Derived { compose_file } => {
                format!("a layout derived from `{}`", compose_file.display())
            }
            Source::File { path, over } => {
                format!("`{}` over {}", path.display(), over.describe())
            }
        }
    }
}

/// Automatic ports: slot `n` hands out `base + n * per_slot ..` (`per_slot` of them)
/// to published port variables the layout does not assign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AutoPorts {
    pub base: u32,
    pub per_slot: u32,
}

impl AutoPorts {
    /// The block of `slot`.
    pub fn block(&self, slot: u32) -> std::ops::Range<u32> {
        let first = self.base + self.per_slot * slot;
        first..first + self.per_slot
    }
}

/// Where instances' network subnets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    /// As written (`10.200.0.0/16`).
    pub range: String,
    pub base: std::net::Ipv4Addr,
    pub prefix_len: u8,
    pub per_slot: u32,
}

impl NetworkPlan {
    pub fn parse(range: &str, per_slot: u32) -> Result<NetworkPlan, String> {
        let bad =
            || format!("`networks.range` `{range}` is not an IPv4 block like `10.200.0.0/16`");
        let (addr, len) = range.split_once('/').ok_or_else(bad)?;
        let base: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        if !(8..=24).contains(&prefix_len) {
            return Err(format!(
                "`networks.range` `{range}` must be a /8 to /24 block"
            ));
        }
        let mask = u32::MAX << (32 - u32::from(prefix_len));
        if u32::from(base) & !mask != 0 {
            return Err(format!(
                "`networks.range` `{range}` has host bits set (its block starts at {})",
                std::net::Ipv4Addr::from(u32::from(base) & mask)
            ));
        }
        if !(1..=64).contains(&per_slot) {
            return Err(format!("`networks.per_slot` is {per_slot}, outside 1..=64"));
        }
        Ok(NetworkPlan {
            range: range.to_string(),
            base,
            prefix_len,
            per_slot,
        })
    }
}

/// An instance's resource budget (all of its containers together).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
}

/// `512m`, `4g`, `1.5g`, `1048576` → bytes.
pub fn parse_memory(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n.is_finite() && n > 0.0).then_some((n * mult as f64) as u64)
}

/// The resolved configuration every command works from.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    pub base: Base,
    pub project_name: String,
    pub sandbox_prefix: String,
    pub repo_check: String,
    pub state_dir: PathBuf,
    pub registry_path: PathBuf,
    pub env_file: String,
    pub compose_files: Vec<String>,
    pub copy_files: Vec<CopyFile>,
    /// Ignored paths (by name) `destroy` deletes without asking.
    pub disposable: Vec<String>,
    pub slot_count: u32,
    pub local_prod_dir: String,
    pub local_prod_id: String,
    pub local_prod_profile: String,
    pub shared_dir: PathBuf,
    pub shared_env_key: String,
    pub shared_subdirs: Vec<SharedSubdir>,
    pub auto_ports: AutoPorts,
    pub ports: PortMap,
    pub gate_timeout: u64,
    pub gate_checks: Vec<CheckSpec>,
    /// The checks come from the base layout, not from a `kinfra.toml`.
    pub gate_checks_builtin: bool,
    pub secrets_timeout: u64,
    pub secrets: Vec<SecretItem>,
    /// Fixed subnets for instances' networks (`None`: left to Docker).
    pub networks: Option<NetworkPlan>,
    /// The default budget of an instance.
    pub budget: Budget,
    /// At most this many `up`s at once; 0: no cap.
    pub max_concurrent_ups: u32,
    /// Lifecycle hooks (run only once approved).
    pub hooks: crate::hooks::Hooks,
    /// Compose volume keys snapshots and `--data-from` leave out.
    pub data_skip: Vec<String>,
    /// The merged layer this was resolved from (rendered by `config show`).
    pub layer: Layer,
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
                let text = read_config_file(path)?;
                Self::from_layers(Some(path), Some(&text))
            }
        }
    }

    /// Built-in + the given file text.
    pub fn from_layers(path: Option<&Path>, text: Option<&str>) -> Result<Config, ConfigError> {
        match (path, text) {
            (Some(p), Some(t)) => {
                let over = parse_layer(p, t)?;
                Self::resolve_over(Layer::ktrdr(), Source::Builtin, Some((p, over)))
            }
            _ => Self::resolve_over(Layer::ktrdr(), Source::Builtin, None),
        }
    }

    /// `file` (path and parsed layer) merged over `base`.
    pub fn resolve_over(
        base: Layer,
        base_source: Source,
        file: Option<(&Path, Layer)>,
    ) -> Result<Config, ConfigError> {
        let builtin_checks = base.gate.as_ref().and_then(|g| g.checks.clone());
        let (layer, source, path) = match file {
            Some((p, over)) => (
                base.overlay(over),
                Source::File {
                    path: p.to_owned(),
                    over: Box::new(base_source),
                },
                p.to_owned(),
            ),
            None => (base, base_source, PathBuf::from("<built-in>")),
        };
        let mut config = resolve(layer.clone(), &path, source)?;
        config.gate_checks_builtin = builtin_checks
            .as_ref()
            .is_some_and(|b| *b == config.gate_checks);
        config.layer = layer;
        Ok(config)
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

    /// The registry, its lock and kinfra's state file beside it.
    pub fn registry_paths(&self) -> crate::registry::RegistryPaths {
        crate::registry::RegistryPaths::beside(&self.registry_path)
    }

    /// Every env key the layout assigns for `slot` (ports and shared directories).
    pub fn layout_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .ports
            .for_slot(1)
            .map(|ps| ps.into_iter().map(|p| p.key).collect())
            .unwrap_or_default();
        if let Ok(ps) = self.ports.for_slot(0) {
            for p in ps {
                if !keys.contains(&p.key) {
                    keys.push(p.key);
                }
            }
        }
        keys.push(self.shared_env_key.clone());
        keys.extend(self.shared_subdirs.iter().map(|s| s.env_key.clone()));
        keys
    }
}

/// Read a config file: a regular file (never a FIFO or device), at most 1 MiB.
pub fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let read_err = |source: std::io::Error| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let bytes = crate::fsutil::read_regular(path, 1 << 20)
        .map_err(|e| read_err(std::io::Error::other(e.to_string())))?
        .ok_or_else(|| read_err(std::io::Error::from(std::io::ErrorKind::NotFound)))?;
    String::from_utf8(bytes).map_err(|_| ConfigError::Parse {
        path: path.to_owned(),
        message: "not UTF-8 text".into(),
    })
}

fn sibling(main_repo: &Path, name: &str) -> PathBuf {
    main_repo
        .parent()
        .map_or_else(|| PathBuf::from(name), |p| p.join(name))
}

pub fn parse_layer(path: &Path, text: &str) -> Result<Layer, ConfigError> {
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

fn resolve(layer: Layer, path: &Path, source: Source) -> Result<Config, ConfigError> {
    // Messages quote user strings, which may hold line breaks; errors stay one line.
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_owned(),
        message: message.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    let base = layer.base.unwrap_or(Base::Ktrdr);
    let project = layer.project.unwrap_or_default();
    let state = layer.state.unwrap_or_default();
    let instance = layer.instance.unwrap_or_default();
    let slots = layer.slots.unwrap_or_default();
    let local_prod = layer.local_prod.unwrap_or_default();
    let shared = layer.shared.unwrap_or_default();
    let auto = layer.auto_ports.unwrap_or_default();
    let gate = layer.gate.unwrap_or_default();
    let secrets = layer.secrets.unwrap_or_default();
    let nets = layer.networks.unwrap_or_default();
    let data_skip = layer
        .data
        .as_ref()
        .and_then(|d| d.skip.clone())
        .unwrap_or_default();
    let budget = layer.budget.unwrap_or_default();
    let hooks =
        crate::hooks::Hooks::from_layer(layer.hooks.unwrap_or_default()).map_err(invalid)?;
    let networks = if nets.enabled.unwrap_or(true) {
        Some(
            NetworkPlan::parse(
                &required(nets.range, "networks.range", path)?,
                nets.per_slot.unwrap_or(4),
            )
            .map_err(invalid)?,
        )
    } else {
        None
    };
    let budget_memory = match &budget.memory {
        None => None,
        Some(m) => Some(parse_memory(m).ok_or_else(|| {
            invalid(format!(
                "`budget.memory` `{m}` is not a size like `512m` or `4g`"
            ))
        })?),
    };
    if let Some(c) = budget.cpus
        && !(c.is_finite() && c > 0.0 && c <= 1024.0)
    {
        return Err(invalid(format!("`budget.cpus` is {c}, outside 0..=1024")));
    }
    let max_concurrent_ups = budget.max_concurrent_ups.unwrap_or(0);
    if max_concurrent_ups > 1000 {
        return Err(invalid(format!(
            "`budget.max_concurrent_ups` is {max_concurrent_ups}, outside 0..=1000"
        )));
    }

    let state_dir = expand_home(&required(state.dir, "state.dir", path)?)?;
    let registry = PathBuf::from(required(state.registry, "state.registry", path)?);
    let registry_path = if registry.is_absolute() {
        registry
    } else {
        state_dir.join(registry)
    };
    if !registry_path.is_absolute() {
        return Err(invalid(format!(
            "`state.dir` must be absolute or start with `~/`, not `{}`",
            state_dir.display()
        )));
    }

    let shared_dir = expand_home(&required(shared.dir, "shared.dir", path)?)?;
    // Nothing a config names may write where the user's hook approvals are kept.
    let writes = [
        ("state.dir", state_dir.as_path()),
        (
            "state.registry",
            registry_path.parent().unwrap_or(&registry_path),
        ),
        ("shared.dir", shared_dir.as_path()),
    ];
    for (key, dir) in writes {
        if crate::hooks::inside_approvals_dir(dir) {
            return Err(invalid(format!(
                "`{key}` `{}` is where kinfra keeps your hook approvals",
                dir.display()
            )));
        }
    }

    let mut specs = Vec::new();
    for (key, value) in required(layer.ports, "ports", path)? {
        if !is_env_key(&key) {
            return Err(invalid(format!(
                "port key `{key}` is not an environment variable name"
            )));
        }
        if RESERVED_KEYS.contains(&key.as_str()) {
            return Err(invalid(format!(
                "port key `{key}` is one kinfra writes itself"
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
    let auto_ports = AutoPorts {
        base: required(auto.base, "auto_ports.base", path)?,
        per_slot: required(auto.per_slot, "auto_ports.per_slot", path)?,
    };
    validate_auto_ports(&ports, auto_ports, slot_count).map_err(invalid)?;

    let gate_timeout = required(gate.timeout, "gate.timeout", path)?;
    if !(1..=86_400).contains(&gate_timeout) {
        return Err(invalid(format!(
            "`gate.timeout` is {gate_timeout}, outside 1..=86400 seconds"
        )));
    }
    let secrets_timeout = required(secrets.timeout, "secrets.timeout", path)?;
    if !(1..=3_600).contains(&secrets_timeout) {
        return Err(invalid(format!(
            "`secrets.timeout` is {secrets_timeout}, outside 1..=3600 seconds"
        )));
    }

    let config = Config {
        source,
        base,
        project_name: required(project.name, "project.name", path)?,
        sandbox_prefix: required(project.sandbox_prefix, "project.sandbox_prefix", path)?,
        repo_check: required(project.repo_check, "project.repo_check", path)?,
        state_dir,
        registry_path,
        env_file: required(instance.env_file, "instance.env_file", path)?,
        compose_files: required(instance.compose_files, "instance.compose_files", path)?,
        copy_files: instance.copy_files.unwrap_or_default(),
        disposable: instance.disposable.unwrap_or_else(|| {
            crate::rescue::DEFAULT_DISPOSABLE
                .iter()
                .map(|s| s.to_string())
                .collect()
        }),
        slot_count,
        local_prod_dir: required(local_prod.dir, "local_prod.dir", path)?,
        local_prod_id: required(local_prod.id, "local_prod.id", path)?,
        local_prod_profile: required(local_prod.profile, "local_prod.profile", path)?,
        shared_dir,
        shared_env_key: required(shared.env_key, "shared.env_key", path)?,
        shared_subdirs: shared.subdirs.unwrap_or_default(),
        auto_ports,
        ports,
        gate_timeout,
        gate_checks: gate.checks.unwrap_or_default(),
        gate_checks_builtin: false,
        secrets_timeout,
        secrets: secrets.items.unwrap_or_default(),
        networks,
        budget: Budget {
            memory: budget_memory,
            cpus: budget.cpus,
        },
        max_concurrent_ups,
        hooks,
        data_skip,
        layer: Layer::default(),
    };
    validate_checks(&config).map_err(invalid)?;
    validate_untrusted(&config).map_err(invalid)?;
    Ok(config)
}

/// A repository's `kinfra.toml` is untrusted input: names, paths and keys must stay
/// where they belong.
fn validate_untrusted(config: &Config) -> Result<(), String> {
    let names = [
        ("project.name", &config.project_name),
        ("local_prod.id", &config.local_prod_id),
    ];
    for (key, value) in names {
        if !crate::slug::is_valid_project_name(value) {
            return Err(format!(
                "`{key}` `{value}` is not a valid compose project name"
            ));
        }
    }
    let prefix_ok = !config.sandbox_prefix.is_empty()
        && crate::slug::is_valid_project_name(&format!("{}x", config.sandbox_prefix));
    if !prefix_ok {
        return Err(format!(
            "`project.sandbox_prefix` `{}` must start a valid compose project name",
            config.sandbox_prefix
        ));
    }
    if !is_plain_name(&config.local_prod_dir) {
        return Err(format!(
            "`local_prod.dir` `{}` must be a plain directory name",
            config.local_prod_dir
        ));
    }
    if !is_plain_name(&config.env_file) {
        return Err("`instance.env_file` must be a plain file name".into());
    }
    for f in &config.compose_files {
        check_relative_inside("instance.compose_files", f)?;
    }
    for f in &config.copy_files {
        check_relative_inside("instance.copy_files", &f.from)?;
        check_relative_inside("instance.copy_files", &f.to)?;
    }
    for s in &config.shared_subdirs {
        if !is_plain_name(&s.name) {
            return Err(format!(
                "`shared.subdirs` name `{}` must be a plain directory name",
                s.name
            ));
        }
    }
    let mut env_keys: Vec<&str> = vec![config.shared_env_key.as_str()];
    env_keys.extend(config.shared_subdirs.iter().map(|s| s.env_key.as_str()));
    for item in &config.secrets {
        for targets in item.fields.values() {
            env_keys.extend(targets.names());
        }
        for kind in &item.kinds {
            if kind != "sandbox" && kind != "local-prod" {
                return Err(format!(
                    "secret item `{}`: kind `{kind}` is not `sandbox` or `local-prod`",
                    item.item
                ));
            }
        }
    }
    for key in env_keys {
        if !is_env_key(key) {
            return Err(format!("`{key}` is not an environment variable name"));
        }
        if RESERVED_KEYS.contains(&key) {
            return Err(format!("`{key}` is a key kinfra writes itself"));
        }
    }
    Ok(())
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.chars().any(char::is_control)
}

/// A path inside the checkout: relative, no `..`, no control characters.
fn check_relative_inside(key: &str, path: &str) -> Result<(), String> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && p.is_relative()
        && !path.chars().any(char::is_control)
        && p.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{key}` path `{}` must be relative and stay inside the checkout",
            path.escape_debug()
        ))
    }
}

/// Every slot's automatic block stays in 1..=65535 and clear of every layout port of
/// every slot.
fn validate_auto_ports(ports: &PortMap, auto: AutoPorts, slots: u32) -> Result<(), String> {
    if auto.per_slot == 0 || auto.per_slot > 1000 {
        return Err(format!(
            "`auto_ports.per_slot` is {}, outside 1..=1000",
            auto.per_slot
        ));
    }
    let last = auto.block(slots).end - 1;
    if auto.base == 0 || last > 65_535 {
        return Err(format!(
            "`auto_ports` gives slot {slots} ports up to {last}, outside 1..=65535"
        ));
    }
    let all = auto.block(0).start..auto.block(slots).end;
    for slot in 0..=slots {
        for p in ports.for_slot(slot).map_err(|e| e.to_string())? {
            if all.contains(&u32::from(p.port)) {
                return Err(format!(
                    "port {} (`{}` of slot {slot}) lies in the automatic ports {}..={}; move it, or set `[auto_ports] base` to a block clear of the layout",
                    p.port,
                    p.key,
                    all.start,
                    all.end - 1
                ));
            }
        }
    }
    Ok(())
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
        // A check may also probe an automatic port (a compose variable the map does
        // not list); that is checked against the compose file when it is used.
        if !is_env_key(&check.port) {
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

pub fn is_env_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `~` and `~/…` are the home directory, which must be set and absolute.
pub fn expand_home(path: &str) -> Result<PathBuf, ConfigError> {
    let home = || -> Result<PathBuf, ConfigError> {
        let h = std::env::var_os("HOME").unwrap_or_default();
        let p = PathBuf::from(&h);
        if p.is_absolute() {
            Ok(p)
        } else {
            Err(ConfigError::NoHome(h.to_string_lossy().into_owned()))
        }
    };
    if path == "~" {
        home()
    } else if let Some(rest) = path.strip_prefix("~/") {
        Ok(home()?.join(rest))
    } else {
        Ok(PathBuf::from(path))
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
    fn a_layout_port_in_the_automatic_block_is_refused_and_a_pinned_block_cures_it() {
        let layout = "[ports.WEB_PORT]\nlocal_prod = 26000\nsandbox = 26001\nstride = 1\n";
        let err = with(&format!(
            "{layout}[auto_ports]\nbase = 26000\nper_slot = 10\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("port 26000 (`WEB_PORT` of slot 0) lies in the automatic ports"),
            "{err}"
        );
        assert!(err.contains("`[auto_ports] base`"), "{err}");
        let c = with(&format!(
            "{layout}[auto_ports]\nbase = 30000\nper_slot = 10\n"
        ))
        .unwrap();
        assert_eq!(c.auto_ports.block(1), 30_010..30_020);
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
    fn gate_checks_must_name_port_keys() {
        // A check may probe a port variable of the compose file (checked when used)...
        assert!(with("[ports.A]\nlocal_prod = 9000\nsandbox = 9001\nstride = 1\n").is_ok());
        // ...but it must be a variable name.
        let err = with("[[gate.checks]]\nname = \"X\"\nkind = \"tcp\"\nport = \"not a key\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("not a port key"), "{err}");
        let err = with("[[gate.checks]]\nname = \"X\"\nkind = \"tcp\"\nport = \"KTRDR_DB_PORT\"\nafter = [\"Y\"]\n")
            .unwrap_err();
        assert!(err.to_string().contains("waits for `Y`"), "{err}");
    }

    #[test]
    fn the_readme_example_is_valid() {
        let readme = include_str!("../../README.md");
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

    /// A repository's `kinfra.toml` is untrusted: every path stays inside the checkout
    /// or the shared directory, every key is an environment variable name that kinfra
    /// does not write itself.
    #[test]
    fn a_repositorys_paths_and_keys_are_untrusted() {
        let copy = |from: &str, to: &str| {
            format!("[instance]\ncopy_files = [{{ from = \"{from}\", to = \"{to}\" }}]\n")
        };
        let refused = [
            copy("../outside", "x"),
            copy("x", "../../etc/cron.d/x"),
            copy("/etc/passwd", "x"),
            copy("x", "/tmp/x"),
            copy("a/../../b", "x"),
            copy("", "x"),
            copy("x", "a\\u000ab"),
            "[instance]\ncompose_files = [\"../other/docker-compose.yml\"]\n".into(),
            "[instance]\nenv_file = \"../.env\"\n".into(),
            "[local_prod]\ndir = \"../elsewhere\"\n".into(),
            "[shared]\nsubdirs = [{ name = \"..\", env_key = \"X_DIR\" }]\n".into(),
            "[shared]\nsubdirs = [{ name = \"a/b\", env_key = \"X_DIR\" }]\n".into(),
            "[shared]\nsubdirs = [{ name = \"data\", env_key = \"SLOT_NUMBER\" }]\n".into(),
            "[shared]\nsubdirs = [{ name = \"data\", env_key = \"1X\" }]\n".into(),
            "[shared]\nsubdirs = [{ name = \"data\", env_key = \"X;touch pwned\" }]\n".into(),
            "[shared]\nenv_key = \"INSTANCE_ID\"\n".into(),
            "[gate]\nchecks = []\n[ports.SLOT_NUMBER]\nlocal_prod = 47000\nsandbox = 47010\nstride = 10\n"
                .into(),
            "[gate]\nchecks = []\n[ports.\"A-B\"]\nlocal_prod = 47000\nsandbox = 47010\nstride = 10\n"
                .into(),
        ];
        for text in refused {
            let err = with(&text).expect_err(&text);
            assert!(!err.to_string().contains('\n'), "{err}");
        }
        for text in [
            copy("./a/b.example", "a/b"),
            "[shared]\nsubdirs = [{ name = \"data\", env_key = \"_X9\" }]\n".into(),
        ] {
            with(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }
}
