//! The instance registry (`instances.json`): ktrdr's v1 format, written byte-compatibly
//! with the Python tool, but changed only under an exclusive lock with an atomic rename,
//! and never mistaken for empty when it cannot be parsed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How long a command waits for another kinfra command's registry lock by default.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read registry `{}`: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("registry `{}` is corrupt: {problem}", .path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("cannot write registry `{}`: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot lock `{}`: {source}", .path.display())]
    Lock { path: PathBuf, source: io::Error },
    #[error("another kinfra command held `{}` for more than {}s", .path.display(), .waited.as_secs())]
    LockTimeout { path: PathBuf, waited: Duration },
}

/// One registered instance: exactly the six fields the ktrdr tool reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub instance_id: String,
    pub slot: u32,
    pub path: String,
    pub created_at: String,
    pub is_worktree: bool,
    pub parent_repo: Option<String>,
}

impl Entry {
    pub fn path(&self) -> &Path {
        Path::new(&self.path)
    }
}

/// The whole registry file.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    pub version: u64,
    pub local_prod: Option<Entry>,
    /// Sandboxes, in file order.
    pub instances: Vec<Entry>,
    /// Top-level keys this version does not know, kept as read.
    pub extra: Map<String, Value>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            version: 1,
            local_prod: None,
            instances: Vec::new(),
            extra: Map::new(),
        }
    }
}

impl Registry {
    /// Read the registry; a missing file is an empty registry. Never writes anything.
    pub fn load(path: &Path) -> Result<Registry, RegistryError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Registry::default()),
            Err(source) => Err(RegistryError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Registry, RegistryError> {
        let corrupt = |problem: String| RegistryError::Corrupt {
            path: path.to_owned(),
            problem,
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let Value::Object(mut top) = value else {
            return Err(corrupt("the top level is not a JSON object".into()));
        };
        let version = match top.shift_remove("version") {
            None => 1,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| corrupt(format!("`version` is {v}, not a number")))?,
        };
        if version != 1 {
            return Err(corrupt(format!(
                "`version` is {version}; this kinfra reads version 1"
            )));
        }
        let local_prod = match top.shift_remove("local_prod") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value::<Entry>(v)
                    .map_err(|e| corrupt(format!("`local_prod`: {e}")))?,
            ),
        };
        let mut instances = Vec::new();
        match top.shift_remove("instances") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (key, v) in map {
                    let entry: Entry = serde_json::from_value(v)
                        .map_err(|e| corrupt(format!("entry `{key}`: {e}")))?;
                    if entry.instance_id != key {
                        return Err(corrupt(format!(
                            "entry `{key}` has `instance_id` `{}`",
                            entry.instance_id
                        )));
                    }
                    instances.push(entry);
                }
            }
            Some(_) => return Err(corrupt("`instances` is not an object".into())),
        }
        Ok(Registry {
            version,
            local_prod,
            instances,
            extra: top,
        })
    }

    /// The file's text, exactly as Python's `json.dump(data, f, indent=2)` writes it.
    pub fn to_json(&self) -> String {
        let mut top = Map::new();
        top.insert("version".into(), Value::from(self.version));
        top.insert(
            "local_prod".into(),
            self.local_prod.as_ref().map_or(Value::Null, entry_value),
        );
        let instances: Map<String, Value> = self
            .instances
            .iter()
            .map(|e| (e.instance_id.clone(), entry_value(e)))
            .collect();
        top.insert("instances".into(), Value::Object(instances));
        for (k, v) in &self.extra {
            top.insert(k.clone(), v.clone());
        }
        crate::pyjson::to_string_indent2(&Value::Object(top))
    }

    pub fn sandbox(&self, instance_id: &str) -> Option<&Entry> {
        self.instances.iter().find(|e| e.instance_id == instance_id)
    }

    /// Every entry, sandboxes first, then local-prod.
    pub fn all(&self) -> impl Iterator<Item = &Entry> {
        self.instances.iter().chain(self.local_prod.iter())
    }

    /// The entry (sandbox or local-prod) registered at `path` (compared canonically).
    pub fn at_path(&self, path: &Path) -> Option<&Entry> {
        let want = canonical(path);
        self.all().find(|e| canonical(e.path()) == want)
    }

    /// Which sandbox holds `slot`.
    pub fn slot_holder(&self, slot: u32) -> Option<&Entry> {
        self.instances.iter().find(|e| e.slot == slot)
    }

    /// Lowest free slot in 1..=count.
    pub fn free_slot(&self, count: u32) -> Option<u32> {
        (1..=count).find(|s| self.slot_holder(*s).is_none())
    }

    pub fn insert_sandbox(&mut self, entry: Entry) {
        self.remove_sandbox(&entry.instance_id.clone());
        self.instances.push(entry);
    }

    pub fn remove_sandbox(&mut self, instance_id: &str) -> Option<Entry> {
        let idx = self
            .instances
            .iter()
            .position(|e| e.instance_id == instance_id)?;
        Some(self.instances.remove(idx))
    }
}

fn entry_value(entry: &Entry) -> Value {
    // Field order is the struct's, which is ktrdr's dataclass order.
    serde_json::to_value(entry).unwrap_or(Value::Null)
}

/// Canonical form when the path exists, else the path as given.
pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Holds the registry's exclusive lock while alive.
pub struct RegistryLock {
    _file: File,
}

/// Take the exclusive lock on `lock_path`, saying so when it takes more than a second,
/// and giving up after `KINFRA_LOCK_TIMEOUT` seconds (default 60).
pub fn lock(lock_path: &Path) -> Result<RegistryLock, RegistryError> {
    let lock_err = |source| RegistryError::Lock {
        path: lock_path.to_owned(),
        source,
    };
    if let Some(dir) = lock_path.parent() {
        std::fs::create_dir_all(dir).map_err(lock_err)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(lock_err)?;
    let timeout = std::env::var("KINFRA_LOCK_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(DEFAULT_LOCK_TIMEOUT, Duration::from_secs_f64);
    let started = Instant::now();
    let mut announced = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(RegistryLock { _file: file }),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(RegistryError::LockTimeout {
                path: lock_path.to_owned(),
                waited,
            });
        }
        if !announced && waited >= Duration::from_secs(1) {
            crate::output::note(&format!(
                "waiting for another kinfra command to release `{}`",
                lock_path.display()
            ));
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lock, reload, let `change` mutate, and write atomically if it changed anything.
/// When `change` fails, nothing is written.
pub fn update<T, E>(
    path: &Path,
    lock_path: &Path,
    change: impl FnOnce(&mut Registry) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<RegistryError>,
{
    let _guard = lock(lock_path)?;
    let mut registry = Registry::load(path)?;
    let before = registry.clone();
    let result = change(&mut registry)?;
    if registry != before {
        save(path, &registry)?;
    }
    Ok(result)
}

fn save(path: &Path, registry: &Registry) -> Result<(), RegistryError> {
    let write_err = |source| RegistryError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    crate::fsutil::write_atomically(path, registry.to_json().as_bytes()).map_err(write_err)
}

impl crate::error::Diagnostic for RegistryError {
    fn exit(&self) -> crate::error::Exit {
        match self {
            RegistryError::LockTimeout { .. } => crate::error::Exit::Conflict,
            _ => crate::error::Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Corrupt { path, .. } => Some(format!(
                "nothing was changed; fix `{}` by hand or restore it from a backup (kinfra never treats it as empty)",
                path.display()
            )),
            RegistryError::LockTimeout { .. } => Some(
                "wait for the other command to finish, or raise KINFRA_LOCK_TIMEOUT (seconds)"
                    .into(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the Python tool writes for one sandbox (json.dump, indent=2, no newline).
    const PYTHON_WRITTEN: &str = r#"{
  "version": 1,
  "local_prod": null,
  "instances": {
    "ktrdr--my-feature": {
      "instance_id": "ktrdr--my-feature",
      "slot": 3,
      "path": "/home/me/dev/ktrdr--my-feature",
      "created_at": "2026-01-20T16:29:14.123456+00:00",
      "is_worktree": true,
      "parent_repo": "/home/me/dev/ktrdr"
    }
  }
}"#;

    fn p() -> &'static Path {
        Path::new("/s/instances.json")
    }

    #[test]
    fn python_file_round_trips_byte_for_byte() {
        let reg = Registry::parse(p(), PYTHON_WRITTEN.as_bytes()).unwrap();
        assert_eq!(reg.instances.len(), 1);
        assert_eq!(reg.instances[0].slot, 3);
        assert_eq!(reg.to_json(), PYTHON_WRITTEN);
    }

    #[test]
    fn empty_registry_matches_python() {
        assert_eq!(
            Registry::default().to_json(),
            "{\n  \"version\": 1,\n  \"local_prod\": null,\n  \"instances\": {}\n}"
        );
    }

    #[test]
    fn unknown_top_level_keys_survive() {
        let text = r#"{"version": 1, "local_prod": null, "instances": {}, "slots": {"a": [1, 2]}}"#;
        let reg = Registry::parse(p(), text.as_bytes()).unwrap();
        let back = Registry::parse(p(), reg.to_json().as_bytes()).unwrap();
        assert_eq!(back.extra["slots"], serde_json::json!({"a": [1, 2]}));
    }

    #[test]
    fn corrupt_files_are_errors_not_empty() {
        for (text, needle) in [
            ("", "EOF"),
            ("{\"version\": 1, \"instances\": {", "EOF"),
            ("[]", "not a JSON object"),
            ("{\"version\": 2}", "version"),
            ("{\"instances\": []}", "not an object"),
        ] {
            let err = Registry::parse(p(), text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains("is corrupt"), "{err}");
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn an_entry_with_a_missing_or_extra_field_is_named() {
        let missing = r#"{"instances": {"a": {"instance_id": "a", "path": "/a",
            "created_at": "x", "is_worktree": true, "parent_repo": null}}}"#;
        let err = Registry::parse(p(), missing.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("entry `a`") && err.contains("missing field `slot`"),
            "{err}"
        );
        // Like the Python dataclass, `parent_repo` defaults to null when absent.
        let no_parent = r#"{"instances": {"a": {"instance_id": "a", "slot": 1, "path": "/a",
            "created_at": "x", "is_worktree": false}}}"#;
        assert!(Registry::parse(p(), no_parent.as_bytes()).is_ok());
        let extra = r#"{"instances": {"a": {"instance_id": "a", "slot": 1, "path": "/a",
            "created_at": "x", "is_worktree": true, "parent_repo": null, "x": 1}}}"#;
        let err = Registry::parse(p(), extra.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `x`"), "{err}");
    }

    #[test]
    fn non_ascii_is_escaped_like_python() {
        let mut reg = Registry::default();
        reg.instances.push(Entry {
            instance_id: "a".into(),
            slot: 1,
            path: "/home/jos\u{e9}/\u{1F600}".into(),
            created_at: "t".into(),
            is_worktree: false,
            parent_repo: None,
        });
        let json = reg.to_json();
        assert!(json.contains(r#""/home/jos\u00e9/\ud83d\ude00""#), "{json}");
        let back = Registry::parse(p(), json.as_bytes()).unwrap();
        assert_eq!(back, reg);
    }

    #[test]
    fn free_slot_fills_gaps() {
        let mut reg = Registry::default();
        for slot in [1, 2, 4] {
            reg.instances.push(Entry {
                instance_id: format!("i{slot}"),
                slot,
                path: format!("/p{slot}"),
                created_at: String::new(),
                is_worktree: true,
                parent_repo: None,
            });
        }
        assert_eq!(reg.free_slot(10), Some(3));
        assert_eq!(reg.free_slot(2), None);
    }

    #[test]
    fn load_of_a_missing_file_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/instances.json");
        assert_eq!(Registry::load(&path).unwrap(), Registry::default());
        assert!(!dir.path().join("sub").exists());
    }

    #[test]
    fn failed_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instances.json");
        std::fs::write(&path, PYTHON_WRITTEN).unwrap();
        let lock = dir.path().join("instances.json.lock");
        let res: Result<(), RegistryError> = update(&path, &lock, |reg| {
            reg.instances.clear();
            Err(RegistryError::Corrupt {
                path: PathBuf::new(),
                problem: "stop".into(),
            })
        });
        assert!(res.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), PYTHON_WRITTEN);
    }
}
