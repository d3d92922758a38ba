//! The rows of `sandbox list`: every registered instance with its live state from one
//! Docker read for all of them, its branch read from the checkout's git files (no git
//! process per instance), and whether it is the one the current directory is in.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::instance::Kind;
use crate::registry::{Entry, Registry, canonical};
use crate::state::{InstanceState, State as Known};
use crate::status::{self, Container, State};

/// One row of `list --json` (and of the table, and of `list --watch --json` lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ListRow {
    pub instance_id: String,
    pub kind: Kind,
    pub slot: u32,
    pub path: String,
    pub created_at: String,
    pub is_worktree: bool,
    pub parent_repo: Option<String>,
    pub branch: Option<String>,
    pub api_port: Option<u16>,
    /// `running`, `partial x/y`, `stopped`, `never started`, `stopped (idle)`,
    /// `queued`, `missing`, `unknown`.
    pub status: String,
    /// The worst healthcheck result among its running containers (`unhealthy` over
    /// `starting` over `healthy`); `null` when none of them has a healthcheck.
    pub health: Option<status::Health>,
    /// The directory is gone.
    pub stale: bool,
    /// The current directory is inside this instance.
    pub current: bool,
}

/// `list --json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ListReport {
    pub schema_version: u32,
    pub instances: Vec<ListRow>,
    /// Why live status is unknown, when Docker could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_error: Option<String>,
}

/// A row of `list --json` with the host it lives on (`local` for this machine).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HostedRow {
    #[serde(flatten)]
    pub row: ListRow,
    pub host: String,
}

/// How a registered host answered `list`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HostAnswer {
    pub name: String,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

/// `list --json`: this machine's instances and, with hosts registered, the sandboxes on
/// them and how each host answered.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HostedReport {
    pub schema_version: u32,
    pub instances: Vec<HostedRow>,
    /// Why live status is unknown, when Docker could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostAnswer>,
}

/// Every registered instance, sorted by slot (local-prod's 0 first).
pub fn list(config: &Config, registry: &Registry, state: &Known, cwd: &Path) -> ListReport {
    // One Docker call for every instance.
    let (live, docker_error) = if registry.all().next().is_some() {
        match status::all_containers() {
            Ok(list) => (Some(status::by_project(list)), None),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    let here = Here::of(cwd);
    let mut instances: Vec<ListRow> = registry
        .instances
        .iter()
        .map(|e| (e, Kind::Sandbox))
        .chain(registry.local_prod.iter().map(|e| (e, Kind::LocalProd)))
        .map(|(entry, kind)| {
            let containers = live.as_ref().map(|m| {
                m.get(&entry.instance_id)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
            });
            row(
                config,
                entry,
                kind,
                containers,
                state.instance(&entry.instance_id),
                here.look_at(entry),
            )
        })
        .collect();
    instances.sort_by(|a, b| a.slot.cmp(&b.slot).then(a.instance_id.cmp(&b.instance_id)));
    ListReport {
        schema_version: 1,
        instances,
        docker_error,
    }
}

/// The current directory as the directories it is in (itself and each parent), by
/// device and inode: an instance is current when its directory is one of them however
/// either path is spelled (symlinks included), at one `stat` per instance.
struct Here(Vec<(u64, u64)>);

impl Here {
    fn of(cwd: &Path) -> Here {
        use std::os::unix::fs::MetadataExt;
        Here(
            canonical(cwd)
                .ancestors()
                .filter_map(|dir| std::fs::metadata(dir).ok())
                .map(|m| (m.dev(), m.ino()))
                .collect(),
        )
    }

    /// What a row needs from the instance's directory.
    fn look_at(&self, entry: &Entry) -> OnDisk {
        use std::os::unix::fs::MetadataExt;
        let path = entry.path();
        let dir = std::fs::metadata(path).ok().filter(|m| m.is_dir());
        OnDisk {
            exists: dir.is_some(),
            branch: dir.as_ref().and_then(|_| branch_of(path)),
            current: dir.is_some_and(|m| self.0.contains(&(m.dev(), m.ino()))),
        }
    }
}

/// What a row needs from the instance's directory.
struct OnDisk {
    exists: bool,
    branch: Option<String>,
    /// The current directory is in it.
    current: bool,
}

/// The row of one registered instance from its containers (`None`: Docker could not be
/// asked), or `None` when `instance_id` is not registered.
pub fn row_of(
    config: &Config,
    registry: &Registry,
    state: &Known,
    cwd: &Path,
    instance_id: &str,
    containers: Option<&[Container]>,
) -> Option<ListRow> {
    let (entry, kind) = registry
        .instances
        .iter()
        .map(|e| (e, Kind::Sandbox))
        .chain(registry.local_prod.iter().map(|e| (e, Kind::LocalProd)))
        .find(|(e, _)| e.instance_id == instance_id)?;
    Some(row(
        config,
        entry,
        kind,
        containers,
        state.instance(instance_id),
        Here::of(cwd).look_at(entry),
    ))
}

/// The worst health among running containers that have a healthcheck.
pub fn health_of(containers: &[Container]) -> Option<status::Health> {
    use status::Health;
    containers
        .iter()
        .filter(|c| c.is_running())
        .filter_map(|c| c.health)
        .max_by_key(|h| match h {
            Health::Healthy => 0,
            Health::Starting => 1,
            Health::Unhealthy => 2,
        })
}

fn row(
    config: &Config,
    entry: &Entry,
    kind: Kind,
    containers: Option<&[Container]>,
    known: Option<&InstanceState>,
    disk: OnDisk,
) -> ListRow {
    let exists = disk.exists;
    let state = match containers {
        _ if !exists => State::Missing,
        None => State::Unknown,
        Some(list) => State::of(list),
    };
    let api_key = config.ports.specs.first().map(|(k, _)| k.as_str());
    let api_port = api_key.and_then(|k| {
        config
            .ports
            .for_slot(entry.slot)
            .ok()?
            .into_iter()
            .find(|p| p.key == k || p.group == k)
            .map(|p| p.port)
    });
    ListRow {
        instance_id: entry.instance_id.clone(),
        kind,
        slot: entry.slot,
        path: entry.path.clone(),
        created_at: entry.created_at.clone(),
        is_worktree: entry.is_worktree,
        parent_repo: entry.parent_repo.clone(),
        branch: disk.branch,
        api_port,
        status: match (&state, known) {
            (State::Stopped, Some(k))
                if k.queued.as_ref().is_some_and(crate::upqueue::is_waiting) =>
            {
                "queued".into()
            }
            // kinfra created it and no `up` ever started it.
            (State::Stopped, Some(k)) if k.last_up.is_none() => "never started".into(),
            (State::Stopped, Some(k)) if k.stopped_by_reap.is_some() => "stopped (idle)".into(),
            _ => state.label(),
        },
        health: containers.and_then(health_of),
        stale: !exists,
        current: disk.current,
    }
}

/// The branch checked out in the checkout at `root`, read from its git files: `.git`
/// is a directory (a clone) or a `gitdir:` file (a linked worktree); `HEAD` there is
/// `ref: refs/heads/<branch>` or a detached commit (shown as its first 12 characters).
pub fn branch_of(root: &Path) -> Option<String> {
    let dot_git = root.join(".git");
    let git_dir: PathBuf = if dot_git.is_dir() {
        dot_git
    } else {
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let dir = PathBuf::from(text.trim().strip_prefix("gitdir:")?.trim());
        if dir.is_absolute() {
            dir
        } else {
            root.join(dir)
        }
    };
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    parse_head(&head)
}

/// `ref: refs/heads/x` → `x`; a commit id → its first 12 characters, marked detached.
pub fn parse_head(head: &str) -> Option<String> {
    let head = head.trim();
    if let Some(r) = head.strip_prefix("ref:") {
        let r = r.trim();
        return Some(r.strip_prefix("refs/heads/").unwrap_or(r).to_string());
    }
    (head.len() >= 12 && head.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| format!("(detached {})", &head[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_files_are_read() {
        assert_eq!(
            parse_head("ref: refs/heads/feature/x\n").as_deref(),
            Some("feature/x")
        );
        assert_eq!(
            parse_head("0123456789abcdef0123456789abcdef01234567\n").as_deref(),
            Some("(detached 0123456789ab)")
        );
        assert_eq!(parse_head("garbage"), None);
    }

    #[test]
    fn branch_of_a_linked_worktree_follows_its_gitdir_file() {
        let dir = tempfile::tempdir().unwrap();
        let gitdir = dir.path().join("main/.git/worktrees/wt");
        std::fs::create_dir_all(&gitdir).unwrap();
        std::fs::write(gitdir.join("HEAD"), "ref: refs/heads/topic\n").unwrap();
        let wt = dir.path().join("wt");
        std::fs::create_dir_all(&wt).unwrap();
        std::fs::write(wt.join(".git"), format!("gitdir: {}\n", gitdir.display())).unwrap();
        assert_eq!(branch_of(&wt).as_deref(), Some("topic"));
    }
}
