//! The per-user index of every project kinfra manages
//! (`$XDG_STATE_HOME/kinfra/projects.json`, by default
//! `~/.local/state/kinfra/projects.json`), and where per-project state lives:
//! `<state_root>/<project>/` for every project but ktrdr, whose state stays beside its
//! registry in `~/.ktrdr/sandbox/`.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::report::Reporter;

/// The index format this kinfra writes.
pub const VERSION: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("`HOME` is {0}, so kinfra cannot tell where to keep its state")]
    NoHome(&'static str),
    #[error("`{0}` cannot name a project directory")]
    BadName(String),
    #[error("cannot read the project index `{}`: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("the project index `{}` is corrupt: {problem}", .path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("the project index `{}` was written by a newer kinfra (version {version}); this one will not change it", .path.display())]
    Newer { path: PathBuf, version: u64 },
    #[error("cannot write the project index `{}`: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
}

impl crate::error::Diagnostic for IndexError {
    fn exit(&self) -> crate::error::Exit {
        use crate::error::Exit;
        match self {
            IndexError::NoHome(_) | IndexError::BadName(_) => Exit::Usage,
            IndexError::Newer { .. } => Exit::Refused,
            IndexError::Lock(e) => e.exit(),
            _ => Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            IndexError::NoHome(_) => Some(
                "set `HOME` to your home directory, or `XDG_STATE_HOME` to an absolute path".into(),
            ),
            IndexError::BadName(_) => {
                Some("set `project` in `kinfra.toml` to a plain name like `myapp`".into())
            }
            IndexError::Corrupt { path, .. } => Some(format!(
                "nothing was changed; fix `{}` by hand or move it aside (kinfra never treats it as empty)",
                path.display()
            )),
            IndexError::Newer { .. } => Some("upgrade kinfra".into()),
            IndexError::Lock(e) => e.hint(),
            _ => None,
        }
    }
}

/// One project kinfra manages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Project {
    /// The project's name (unique in the index; names its state directory).
    pub name: String,
    /// Its registry file.
    pub registry: PathBuf,
    /// Where its state (locks, kinfra's state file, snapshots) lives.
    pub state_dir: PathBuf,
    /// Its main repositories (a project may be cloned more than once).
    pub main_repos: Vec<PathBuf>,
    /// Its `kinfra.toml`, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    pub last_used: String,
    /// First port of the block its automatic ports come from (projects without a
    /// `kinfra.toml` port map), so two projects never hand out the same ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports_base: Option<u16>,
    /// Fields a newer kinfra wrote.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Blocks of automatic ports handed to projects: `PORT_BLOCKS` blocks of
/// `PORT_BLOCK_SIZE` ports from `PORT_BLOCKS_START` (24000..=31999: below the kernel's
/// range for outgoing connections, above the ktrdr layout's blocks).
pub const PORT_BLOCKS_START: u16 = 24_000;
pub const PORT_BLOCK_SIZE: u16 = 1_000;
pub const PORT_BLOCKS: u16 = 8;

/// The whole index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Index {
    pub version: u64,
    /// In the order first recorded.
    pub projects: Vec<Project>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            version: VERSION,
            projects: Vec::new(),
            other: Map::new(),
        }
    }
}

impl Index {
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Index, IndexError> {
        let corrupt = |problem: String| IndexError::Corrupt {
            path: path.to_owned(),
            problem,
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if !value.is_object() {
            return Err(corrupt("the top level is not a JSON object".into()));
        }
        let index: Index = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        if let Some(p) = index.projects.iter().find(|p| p.name.is_empty()) {
            return Err(corrupt(format!(
                "a project without a name (registry `{}`)",
                p.registry.display()
            )));
        }
        Ok(index)
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    pub fn project(&self, name: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.name == name)
    }

    /// The port block of project `name`: the one recorded, else the first block not
    /// recorded for another project, starting from one picked by the name (so the first
    /// project of each name gets the same block on every machine).
    pub fn ports_base_for(&self, name: &str) -> u16 {
        if let Some(base) = self.project(name).and_then(|p| p.ports_base) {
            return base;
        }
        let taken: Vec<u16> = self
            .projects
            .iter()
            .filter(|p| p.name != name)
            .filter_map(|p| p.ports_base)
            .collect();
        let start = name
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % u32::from(PORT_BLOCKS);
        (0..PORT_BLOCKS)
            .map(|i| {
                let k = (u32::from(i) + start) % u32::from(PORT_BLOCKS);
                PORT_BLOCKS_START + PORT_BLOCK_SIZE * k as u16
            })
            .find(|b| !taken.contains(b))
            // More projects than blocks: share the picked one; preflight still
            // refuses a busy port.
            .unwrap_or(PORT_BLOCKS_START + PORT_BLOCK_SIZE * start as u16)
    }

    /// Projects whose registry file no longer exists (kept in the index; the caller
    /// decides what to tell the user).
    pub fn missing_registries(&self) -> Vec<&Project> {
        self.projects
            .iter()
            .filter(|p| !p.registry.exists())
            .collect()
    }

    /// Add `project`, or update the one of the same name: its paths and last use are
    /// replaced, its main repositories merged, fields a newer kinfra wrote kept.
    pub fn record(&mut self, project: Project) {
        match self.projects.iter_mut().find(|p| p.name == project.name) {
            None => self.projects.push(project),
            Some(known) => {
                let mut mains = std::mem::take(&mut known.main_repos);
                for main in project.main_repos {
                    if !mains.contains(&main) {
                        mains.push(main);
                    }
                }
                let mut other = std::mem::take(&mut known.other);
                other.extend(project.other);
                let ports_base = known.ports_base.or(project.ports_base);
                *known = Project {
                    main_repos: mains,
                    other,
                    ports_base,
                    ..project
                };
            }
        }
    }
}

/// `$XDG_STATE_HOME/kinfra` when that is absolute, else `$HOME/.local/state/kinfra`.
pub fn state_root() -> Result<PathBuf, IndexError> {
    state_root_from(
        std::env::var_os("HOME").as_deref(),
        std::env::var_os("XDG_STATE_HOME").as_deref(),
    )
}

/// [`state_root`] from the two variables' values. A relative `XDG_STATE_HOME` is
/// ignored, as the XDG spec says; a missing, empty or relative `HOME` is an error,
/// never `/` or the current directory.
pub fn state_root_from(home: Option<&OsStr>, xdg: Option<&OsStr>) -> Result<PathBuf, IndexError> {
    if let Some(xdg) = xdg.map(Path::new).filter(|p| p.is_absolute()) {
        return Ok(xdg.join("kinfra"));
    }
    let home = match home {
        None => return Err(IndexError::NoHome("not set")),
        Some(h) if h.is_empty() => return Err(IndexError::NoHome("empty")),
        Some(h) => Path::new(h),
    };
    if !home.is_absolute() {
        return Err(IndexError::NoHome("not an absolute path"));
    }
    Ok(home.join(".local/state/kinfra"))
}

/// `<state_root>/<name>/`: the state directory of a project other than ktrdr.
pub fn project_state_dir(name: &str) -> Result<PathBuf, IndexError> {
    project_state_dir_in(&state_root()?, name)
}

/// [`project_state_dir`] under a given root.
pub fn project_state_dir_in(root: &Path, name: &str) -> Result<PathBuf, IndexError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control);
    if !plain {
        return Err(IndexError::BadName(name.to_owned()));
    }
    Ok(root.join(name))
}

/// `<state_root>/projects.json`.
pub fn index_path() -> Result<PathBuf, IndexError> {
    Ok(state_root()?.join("projects.json"))
}

/// Read the index; a missing file is an empty index. Never writes.
pub fn load() -> Result<Index, IndexError> {
    load_from(&index_path()?)
}

/// [`load`] from a given file.
pub fn load_from(path: &Path) -> Result<Index, IndexError> {
    match std::fs::read(path) {
        Ok(bytes) => Index::parse(path, &bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
        Err(source) => Err(IndexError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Record `project` (see [`Index::record`]) under the index's lock, atomically;
/// returns the index as written.
pub fn record(project: Project, reporter: &dyn Reporter) -> Result<Index, IndexError> {
    record_at(&index_path()?, project, reporter)
}

/// [`record`] into a given file.
pub fn record_at(
    path: &Path,
    project: Project,
    reporter: &dyn Reporter,
) -> Result<Index, IndexError> {
    if project.name.is_empty() {
        return Err(IndexError::BadName(String::new()));
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let _guard = crate::lock::exclusive(
        Path::new(&lock_path),
        crate::lock::timeout_from_env(),
        reporter,
    )?;
    let mut index = load_from(path)?;
    if index.version > VERSION {
        return Err(IndexError::Newer {
            path: path.to_owned(),
            version: index.version,
        });
    }
    let before = index.clone();
    index.record(project);
    if index != before {
        crate::registry::write_through_links(path, index.to_json().as_bytes()).map_err(
            |source| IndexError::Write {
                path: path.to_owned(),
                source,
            },
        )?;
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Diagnostic, Exit};
    use crate::report::Silent;

    fn project(name: &str, registry: &Path, main: &str, used: &str) -> Project {
        Project {
            name: name.into(),
            registry: registry.to_owned(),
            state_dir: registry.parent().unwrap().to_owned(),
            main_repos: vec![PathBuf::from(main)],
            config: None,
            last_used: used.into(),
            ports_base: None,
            other: Map::new(),
        }
    }

    #[test]
    fn every_project_gets_its_own_port_block_and_keeps_it() {
        let mut index = Index::default();
        let a = index.ports_base_for("app");
        assert_eq!(index.ports_base_for("app"), a, "stable");
        let mut p = project("app", Path::new("/s/app/instances.json"), "/w/app", "t");
        p.ports_base = Some(a);
        index.record(p);
        let mut bases = vec![a];
        for name in ["b", "c", "d", "e", "f", "g", "h"] {
            let base = index.ports_base_for(name);
            assert!(!bases.contains(&base), "{name} got a taken block {base}");
            assert!(
                (PORT_BLOCKS_START..PORT_BLOCKS_START + PORT_BLOCKS * PORT_BLOCK_SIZE)
                    .contains(&base)
            );
            let mut p = project(name, Path::new("/s/x/instances.json"), "/w/x", "t");
            p.ports_base = Some(base);
            index.record(p);
            bases.push(base);
        }
        assert_eq!(index.ports_base_for("app"), a);
    }

    #[test]
    fn state_root_follows_xdg_then_home_and_never_guesses() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(
            state_root_from(os("/home/me"), None).unwrap(),
            Path::new("/home/me/.local/state/kinfra")
        );
        assert_eq!(
            state_root_from(os("/home/me"), os("/var/st")).unwrap(),
            Path::new("/var/st/kinfra")
        );
        // A relative XDG_STATE_HOME is invalid per the spec: ignored.
        assert_eq!(
            state_root_from(os("/home/me"), os("rel")).unwrap(),
            Path::new("/home/me/.local/state/kinfra")
        );
        assert_eq!(
            state_root_from(None, os("/x")).unwrap(),
            Path::new("/x/kinfra")
        );
        for (home, word) in [(None, "not set"), (os(""), "empty"), (os("me"), "absolute")] {
            let err = state_root_from(home, None).unwrap_err();
            assert_eq!(err.exit(), Exit::Usage);
            assert!(err.to_string().contains(word), "{err}");
            assert!(err.hint().unwrap().contains("HOME"));
        }
    }

    #[test]
    fn project_directories_are_plain_names() {
        let root = Path::new("/st/kinfra");
        assert_eq!(
            project_state_dir_in(root, "myapp").unwrap(),
            Path::new("/st/kinfra/myapp")
        );
        for bad in ["", ".", "..", "a/b", "a\nb"] {
            assert!(project_state_dir_in(root, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn record_then_load_merges_by_name_and_reports_missing_registries() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("state/kinfra/projects.json");
        let reg_a = dir.path().join("a/instances.json");
        std::fs::create_dir_all(reg_a.parent().unwrap()).unwrap();
        std::fs::write(&reg_a, "{}").unwrap();
        let reg_b = dir.path().join("b/instances.json");

        assert_eq!(load_from(&index).unwrap(), Index::default());
        record_at(&index, project("a", &reg_a, "/src/a", "t1"), &Silent).unwrap();
        record_at(&index, project("b", &reg_b, "/src/b", "t2"), &Silent).unwrap();
        let mut again = project("a", &reg_a, "/src/a-clone", "t3");
        again.config = Some("/src/a-clone/kinfra.toml".into());
        record_at(&index, again, &Silent).unwrap();

        let loaded = load_from(&index).unwrap();
        let names: Vec<&str> = loaded.projects.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let a = loaded.project("a").unwrap();
        assert_eq!(
            a.main_repos,
            [PathBuf::from("/src/a"), PathBuf::from("/src/a-clone")]
        );
        assert_eq!(a.last_used, "t3");
        assert_eq!(
            a.config.as_deref(),
            Some(Path::new("/src/a-clone/kinfra.toml"))
        );
        // b's registry was never created: reported, still listed.
        let missing: Vec<&str> = loaded
            .missing_registries()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(missing, ["b"]);
        assert!(crate::fsutil::leftover_temp_files(&index).is_empty());
    }

    #[test]
    fn unknown_fields_survive_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("projects.json");
        std::fs::write(
            &path,
            r#"{"version": 1, "projects": [{"name": "a", "registry": "/r", "state_dir": "/s",
                "main_repos": [], "last_used": "t", "hosts": ["nas"]}], "future": true}"#,
        )
        .unwrap();
        let idx = record_at(&path, project("b", Path::new("/rb/x"), "/m", "t"), &Silent).unwrap();
        assert_eq!(idx.other["future"], Value::Bool(true));
        let text = std::fs::read_to_string(&path).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["projects"][0]["hosts"][0], "nas");
        assert_eq!(back["future"], true);

        std::fs::write(&path, "{\"projects\": [").unwrap();
        let err =
            record_at(&path, project("c", Path::new("/r/x"), "/m", "t"), &Silent).unwrap_err();
        assert!(err.to_string().contains("is corrupt"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"projects\": [");

        std::fs::write(&path, "{\"version\": 9}").unwrap();
        let err =
            record_at(&path, project("c", Path::new("/r/x"), "/m", "t"), &Silent).unwrap_err();
        assert_eq!(err.exit(), Exit::Refused);
    }
}
