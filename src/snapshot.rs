//! Data per instance: snapshots of an instance's named volumes (one tar archive per
//! volume plus a manifest under `<state>/snapshots/NAME/`), restoring one, and seeding a
//! new instance's volumes from another instance or a snapshot (`--data-from`).
//!
//! Everything goes through the Engine API's archive endpoints on helper containers that
//! are created (never pulled, never started to read) from an image the stack already has
//! on the engine, mounting the volume at [`MOUNT`]. Emptying a volume before a restore is
//! the one step that starts a helper (`/bin/sh -c 'rm -rf …'`): the service containers
//! still reference their volumes, so a volume cannot be removed and created again.
//!
//! Crash safety: a snapshot is written into `.tmp-NAME-<pid>/` beside its final place and
//! renamed when complete, so a killed `snapshot create` never shows up; a restore or a
//! copy records itself in the instance's state first (`operation`) and clears it when
//! done, so a killed one is reported by the next command on the instance and by `doctor`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::compose::model::{ComposeModel, MountKind};
use crate::config::Config;
use crate::engine::{Engine, EngineError, Labels};
use crate::error::{Diagnostic, Exit, Result};
use crate::report::Reporter;

/// Version of the manifest and of `snapshot list --json`.
pub const SCHEMA_VERSION: u32 = 1;
/// Where a helper container mounts the volume it copies.
pub const MOUNT: &str = "/kinfra-data";
const MANIFEST: &str = "manifest.json";
/// Label on every helper container (so a leftover one is recognisable).
pub const HELPER_LABEL: &str = "kinfra.data-helper";
/// Label on every helper container: the pid of the kinfra that made it (a helper of a
/// process that is gone, killed before it could remove it, is removed by the next one).
pub const HELPER_PID_LABEL: &str = "kinfra.data-helper.pid";
/// Compose's label naming a volume's key in its project.
pub const VOLUME_LABEL: &str = "com.docker.compose.volume";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("`{0}` is not a valid snapshot name (letters, digits, `.`, `_`, `-`; at most 100)")]
    InvalidName(String),
    #[error("no snapshot is called `{0}`")]
    NotFound(String),
    #[error("a snapshot called `{0}` already exists")]
    Exists(String),
    #[error("`{0}` has no named volumes to copy")]
    NoVolumes(String),
    #[error("volume `{volume}` of `{id}` does not exist yet")]
    VolumeMissing { id: String, volume: String },
    #[error("`{name}` holds volumes {} but `{id}` has {}", .snapshot.join(", "), .instance.join(", "))]
    Mismatch {
        name: String,
        id: String,
        snapshot: Vec<String>,
        instance: Vec<String>,
    },
    #[error("archive `{}` of snapshot `{name}` fails its checksum", .archive.display())]
    Checksum { name: String, archive: PathBuf },
    #[error("snapshot `{name}` is unreadable: {reason}")]
    BadManifest { name: String, reason: String },
    #[error("not enough space in `{}`: {need} bytes needed, {free} free", .dir.display())]
    NoSpace { dir: PathBuf, need: u64, free: u64 },
    #[error("cannot {what} `{}`: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{0}` cannot take its data from itself")]
    SelfSource(String),
    #[error("no image of `{id}` is on the engine to copy its volumes with (tried {})", .tried.join(", "))]
    NoImage { id: String, tried: Vec<String> },
    #[error("emptying volume `{volume}` failed (the helper exited with {code})")]
    Empty { volume: String, code: i64 },
    #[error("copying volume `{volume}` failed: {source}")]
    Copy { volume: String, source: EngineError },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Diagnostic for SnapshotError {
    fn exit(&self) -> Exit {
        use SnapshotError::*;
        match self {
            InvalidName(_) | SelfSource(_) => Exit::Usage,
            NotFound(_) => Exit::NotFound,
            Exists(_) => Exit::Conflict,
            Mismatch { .. } => Exit::Refused,
            NoVolumes(_)
            | VolumeMissing { .. }
            | Checksum { .. }
            | BadManifest { .. }
            | NoSpace { .. }
            | Io { .. } => Exit::Failure,
            NoImage { .. } | Empty { .. } | Copy { .. } => Exit::External,
            Engine(e) => e.exit(),
        }
    }

    fn hint(&self) -> Option<String> {
        use SnapshotError::*;
        Some(match self {
            InvalidName(_) => "use a name like `before-migration`".into(),
            NotFound(_) => "`kinfra snapshot list` shows the snapshots".into(),
            Exists(_) => "choose another `--name`, or `kinfra snapshot rm` the old one".into(),
            NoVolumes(_) => "only the compose project's own named volumes are copied (not external ones, not `name:` ones, not `[data] skip`)".into(),
            VolumeMissing { .. } => "start the instance once (`up`) so compose creates its volumes".into(),
            Mismatch { .. } => "restore it onto an instance of the same compose volumes, or take a new snapshot".into(),
            Checksum { .. } | BadManifest { .. } => "nothing was changed; the snapshot is damaged: `kinfra snapshot rm` it".into(),
            NoSpace { .. } => "free some space (`kinfra snapshot rm` old snapshots); the partial snapshot was removed".into(),
            Io { .. } => return None,
            SelfSource(_) => "name another instance, `local-prod`, or `snapshot:NAME`".into(),
            NoImage { .. } => "start the instance once (`up`) so its images are on the engine; kinfra never pulls".into(),
            Empty { .. } => "restore needs `/bin/sh` and `rm` in one of the stack's images".into(),
            Copy { .. } => "`kinfra doctor` says what state the instance is in".into(),
            Engine(e) => return e.hint(),
        })
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let path = path.to_owned();
    move |source| SnapshotError::Io { what, path, source }
}

// ---------------------------------------------------------------------------------
// Which volumes, which services, which images
// ---------------------------------------------------------------------------------

/// One volume copied: its key in the compose file and its name on the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataVolume {
    pub key: String,
    pub name: String,
}

/// What of an instance's data is copied, and what it takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataSet {
    pub project: String,
    pub volumes: Vec<DataVolume>,
    /// Volumes not copied, each with why.
    pub not_copied: Vec<(String, String)>,
    /// Active services that mount a copied volume (stopped for the copy).
    pub services: Vec<String>,
    /// Images to create helper containers from, best first.
    pub images: Vec<String>,
}

impl DataSet {
    pub fn keys(&self) -> Vec<String> {
        self.volumes.iter().map(|v| v.key.clone()).collect()
    }

    /// The engine name of the volume `key`.
    pub fn name_of(&self, key: &str) -> Option<&str> {
        self.volumes
            .iter()
            .find(|v| v.key == key)
            .map(|v| v.name.as_str())
    }
}

/// The data of compose project `project`: its own named volumes but the skipped ones,
/// external ones and fixed-name ones (shared with whatever else uses that name).
pub fn data_set(
    model: &ComposeModel,
    profiles: &[String],
    project: &str,
    skip: &[String],
) -> DataSet {
    let mut set = DataSet {
        project: project.to_string(),
        ..DataSet::default()
    };
    for (key, def) in &model.volumes {
        if def.external {
            set.not_copied
                .push((key.clone(), "external (not the instance's own)".into()));
        } else if let Some(name) = &def.name {
            set.not_copied.push((
                key.clone(),
                format!("fixed name `{name}` (shared by every instance)"),
            ));
        } else if skip.contains(key) {
            set.not_copied
                .push((key.clone(), "skipped by `[data] skip`".into()));
        } else {
            set.volumes.push(DataVolume {
                key: key.clone(),
                name: format!("{project}_{key}"),
            });
        }
    }
    let copied = |k: &str| set.volumes.iter().any(|v| v.key == k);
    let mut mounting = Vec::new();
    let mut others = Vec::new();
    for svc in model.active_services(profiles) {
        let mounts = svc
            .mounts
            .iter()
            .any(|m| matches!(&m.kind, MountKind::Volume { name } if copied(name)));
        let mut images = Vec::new();
        if let Some(image) = &svc.image {
            images.push(image.clone());
        } else if svc.build {
            // The names Compose v2 and v1 give a built image.
            images.push(format!("{project}-{}", svc.name));
            images.push(format!("{project}_{}", svc.name));
        }
        if mounts {
            set.services.push(svc.name.clone());
            mounting.extend(images);
        } else {
            others.extend(images);
        }
    }
    for image in mounting.into_iter().chain(others) {
        if !set.images.contains(&image) {
            set.images.push(image);
        }
    }
    set
}

/// The data of a resolved instance, read from its compose file as compose sees it.
pub fn data_set_of(target: &crate::lifecycle::Target) -> Result<DataSet> {
    let config = &target.ctx.config;
    let stack = crate::lifecycle::load_stack(config, target, &target.project.env)?;
    Ok(data_set(
        &stack.model,
        &stack.profiles,
        target.id(),
        &config.data_skip,
    ))
}

/// Plan lines saying what is copied and what is not.
pub fn describe_set(set: &DataSet) -> Vec<String> {
    let mut lines = Vec::new();
    for v in &set.volumes {
        lines.push(format!("    volume `{}` ({})", v.key, v.name));
    }
    for (key, why) in &set.not_copied {
        lines.push(format!("    not copied: `{key}`: {why}"));
    }
    lines
}

// ---------------------------------------------------------------------------------
// The archive on disk
// ---------------------------------------------------------------------------------

/// `manifest.json` of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Manifest {
    pub schema_version: u32,
    pub name: String,
    /// The instance it was taken of, and its kind (`sandbox`, `local-prod`).
    pub source_instance: String,
    pub kind: String,
    pub volumes: Vec<ArchiveEntry>,
    /// UTC, RFC 3339.
    pub created: String,
    pub kinfra_version: String,
}

/// One volume's archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArchiveEntry {
    /// The compose volume name (key).
    pub key: String,
    /// The engine volume it was read from.
    pub volume: String,
    /// File name in the snapshot directory.
    pub archive: String,
    /// Bytes of the archive.
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.volumes.iter().map(|v| v.key.clone()).collect();
        keys.sort();
        keys
    }

    pub fn total_size(&self) -> u64 {
        self.volumes.iter().map(|v| v.size).sum()
    }
}

/// `<state>/snapshots`.
pub fn snapshots_dir(config: &Config) -> PathBuf {
    config.state_dir.join("snapshots")
}

pub fn check_name(name: &str) -> Result<(), SnapshotError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::InvalidName(name.to_string()))
    }
}

/// The default name: `<instance>-<UTC time>`.
pub fn default_name(instance_id: &str) -> String {
    format!("{instance_id}-{}", crate::timefmt::now_compact())
}

/// A snapshot on disk: its directory and manifest.
#[derive(Debug, Clone)]
pub struct Stored {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// Load the snapshot `name`.
pub fn load(config: &Config, name: &str) -> Result<Stored, SnapshotError> {
    check_name(name)?;
    let dir = snapshots_dir(config).join(name);
    let path = dir.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SnapshotError::NotFound(name.to_string()));
        }
        Err(e) => return Err(io("read", &path)(e)),
    };
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| SnapshotError::BadManifest {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
    if manifest.schema_version != SCHEMA_VERSION {
        return Err(SnapshotError::BadManifest {
            name: name.to_string(),
            reason: format!(
                "schema_version {} is not {SCHEMA_VERSION}",
                manifest.schema_version
            ),
        });
    }
    for v in &manifest.volumes {
        if v.archive.contains('/') || v.archive.starts_with('.') {
            return Err(SnapshotError::BadManifest {
                name: name.to_string(),
                reason: format!("archive name `{}` leaves the snapshot", v.archive),
            });
        }
    }
    Ok(Stored { dir, manifest })
}

/// Every complete snapshot, oldest first (temporary directories of a create in progress
/// or killed are not snapshots).
pub fn list(config: &Config) -> Result<Vec<Stored>, SnapshotError> {
    let dir = snapshots_dir(config);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", &dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if let Ok(stored) = load(config, &name) {
            out.push(stored);
        }
    }
    out.sort_by(|a, b| {
        a.manifest
            .created
            .cmp(&b.manifest.created)
            .then(a.manifest.name.cmp(&b.manifest.name))
    });
    Ok(out)
}

/// Remove the snapshot `name`.
pub fn remove(config: &Config, name: &str) -> Result<(), SnapshotError> {
    let stored = load(config, name)?;
    std::fs::remove_dir_all(&stored.dir).map_err(io("remove", &stored.dir))
}

/// Temporary directories of snapshot creates whose process is gone.
pub fn leftover_temp_dirs(config: &Config) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(snapshots_dir(config)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with(".tmp-") && !pid_alive(temp_pid(&name))
        })
        .collect()
}

fn temp_pid(name: &str) -> Option<i32> {
    name.rsplit('-').next()?.parse().ok()
}

fn pid_alive(pid: Option<i32>) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let Some(pid) = pid.filter(|&p| p > 0) else {
        return false;
    };
    matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(Errno::EPERM))
}

/// Check every archive against its sha256 before anything is changed.
pub fn verify(stored: &Stored) -> Result<(), SnapshotError> {
    for v in &stored.manifest.volumes {
        let path = stored.dir.join(&v.archive);
        let mut file = std::fs::File::open(&path).map_err(io("read", &path))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(io("read", &path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        if hex(&hasher.finalize()) != v.sha256 {
            return Err(SnapshotError::Checksum {
                name: stored.manifest.name.clone(),
                archive: path,
            });
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes free for an unprivileged writer in the file system holding `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

// ---------------------------------------------------------------------------------
// Helper containers and copies through the engine
// ---------------------------------------------------------------------------------

static HELPERS: AtomicUsize = AtomicUsize::new(0);

/// A helper container mounting one volume; removed when dropped.
struct Helper<'a> {
    engine: &'a Engine,
    id: String,
}

impl<'a> Helper<'a> {
    /// Create (never start) a helper of the first image in `images` the engine has,
    /// mounting `volume` at [`MOUNT`]; `script` is what it would run if started.
    fn create(
        engine: &'a Engine,
        owner: &str,
        images: &[String],
        volume: &str,
        script: &str,
    ) -> Result<Helper<'a>, SnapshotError> {
        for image in images {
            let name = format!(
                "kinfra-data-{}-{}",
                std::process::id(),
                HELPERS.fetch_add(1, Ordering::Relaxed)
            );
            let spec = crate::engine::NewContainer::new(&name, image)
                .entrypoint(&["/bin/sh", "-c"])
                .cmd(&[script])
                .volume(volume, MOUNT)
                .label(HELPER_LABEL, owner)
                .label(HELPER_PID_LABEL, &std::process::id().to_string());
            match engine.container_create(&spec) {
                Ok(id) => return Ok(Helper { engine, id }),
                Err(EngineError::ImageMissing(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(SnapshotError::NoImage {
            id: owner.to_string(),
            tried: images.to_vec(),
        })
    }
}

impl Drop for Helper<'_> {
    fn drop(&mut self) {
        let _ = self.engine.container_remove(&self.id, true);
    }
}

/// Counts and hashes what passes through.
struct Tee<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Counts what is read.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

fn engine() -> Result<Engine, SnapshotError> {
    // Archives of large volumes take a while between chunks on a busy disk.
    let engine = Engine::connect()?.with_read_timeout(Duration::from_secs(600));
    remove_dead_helpers(&engine);
    Ok(engine)
}

/// [`remove_dead_helpers`] on the engine the environment names, if it answers: what
/// `destroy` does before removing volumes a killed copy's helper may still hold.
pub fn remove_dead_helpers_if_any() {
    if let Ok(engine) = Engine::connect() {
        remove_dead_helpers(&engine);
    }
}

/// Remove the helper containers of kinfra processes that are gone (killed half-way).
fn remove_dead_helpers(engine: &Engine) {
    let filters = crate::engine::Filters::new().label(HELPER_PID_LABEL);
    let Ok(helpers) = engine.containers(&filters, true) else {
        return;
    };
    for h in helpers {
        let pid = h
            .labels
            .get(HELPER_PID_LABEL)
            .and_then(|p| p.parse::<i32>().ok());
        if !pid_alive(pid) {
            let _ = engine.container_remove(&h.id, true);
        }
    }
}

/// Which of `volumes` do not exist on the engine.
fn missing_volumes(engine: &Engine, volumes: &[DataVolume]) -> Result<Vec<String>, SnapshotError> {
    let existing: Vec<String> = engine
        .volumes(&crate::engine::Filters::new())?
        .into_iter()
        .map(|v| v.name)
        .collect();
    Ok(volumes
        .iter()
        .filter(|v| !existing.contains(&v.name))
        .map(|v| v.name.clone())
        .collect())
}

/// The sizes of `names` as the engine measures them (unknown ones left out).
pub fn volume_sizes(names: &[String]) -> BTreeMap<String, u64> {
    let Ok(engine) = Engine::connect() else {
        return BTreeMap::new();
    };
    let engine = engine.with_read_timeout(Duration::from_secs(60));
    engine
        .volume_sizes()
        .map(|all| all.into_iter().filter(|(n, _)| names.contains(n)).collect())
        .unwrap_or_default()
}

/// `12.3 MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Labels compose puts on a project's volume, so `down -v` and destroy remove a volume
/// kinfra made like compose's own.
pub fn compose_labels(project: &str, key: &str) -> Labels {
    Labels::from([
        (
            crate::docker::PROJECT_LABEL.to_string(),
            project.to_string(),
        ),
        (VOLUME_LABEL.to_string(), key.to_string()),
    ])
}

/// Put `tar` into `vol`: a volume that exists is emptied first (a started helper runs
/// `rm -rf`); one that does not is created with compose's labels (no helper is started).
fn fill_volume(
    engine: &Engine,
    set: &DataSet,
    vol: &DataVolume,
    exists: bool,
    tar: impl Read,
) -> Result<u64, SnapshotError> {
    let helper = if exists {
        let script = format!("rm -rf {MOUNT}/..?* {MOUNT}/.[!.]* {MOUNT}/*");
        let helper = Helper::create(engine, &set.project, &set.images, &vol.name, &script)?;
        engine.container_start(&helper.id)?;
        let code = engine.container_wait(&helper.id, Duration::from_secs(600))?;
        if code != 0 {
            return Err(SnapshotError::Empty {
                volume: vol.name.clone(),
                code,
            });
        }
        helper
    } else {
        engine.volume_create(&vol.name, &compose_labels(&set.project, &vol.key))?;
        Helper::create(engine, &set.project, &set.images, &vol.name, "exit 0")?
    };
    let mut counted = Counted {
        inner: tar,
        bytes: 0,
    };
    engine
        .archive_put(&helper.id, "/", &mut counted)
        .map_err(|source| SnapshotError::Copy {
            volume: vol.name.clone(),
            source,
        })?;
    Ok(counted.bytes)
}

// ---------------------------------------------------------------------------------
// Stopping the services that mount the volumes
// ---------------------------------------------------------------------------------

/// Stops and starts the services that mount copied volumes.
pub trait Services {
    /// The services of `wanted` that are running now.
    fn running(&self, wanted: &[String]) -> Result<Vec<String>>;
    fn stop(&self, services: &[String], reporter: &dyn Reporter) -> Result<()>;
    fn start(&self, services: &[String], reporter: &dyn Reporter) -> Result<()>;
}

impl Services for crate::lifecycle::Target {
    fn running(&self, wanted: &[String]) -> Result<Vec<String>> {
        let mut out: Vec<String> = self
            .containers()?
            .into_iter()
            .filter(|c| c.state == crate::status::ContainerState::Running)
            .map(|c| c.service)
            .filter(|s| wanted.contains(s))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
    fn stop(&self, services: &[String], reporter: &dyn Reporter) -> Result<()> {
        let mut args = vec!["stop"];
        args.extend(services.iter().map(String::as_str));
        self.compose_streamed(&args, reporter)
    }
    fn start(&self, services: &[String], reporter: &dyn Reporter) -> Result<()> {
        let mut args = vec!["start"];
        args.extend(services.iter().map(String::as_str));
        self.compose_streamed(&args, reporter)
    }
}

/// Run `work` with the running services of `set` stopped (unless `live`), starting
/// them again afterwards whatever `work` returned.
fn with_services_stopped<T>(
    svc: &dyn Services,
    set: &DataSet,
    live: bool,
    reporter: &dyn Reporter,
    before_stop: impl FnOnce() -> Result<()>,
    work: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let stopped = if live || set.services.is_empty() {
        Vec::new()
    } else {
        svc.running(&set.services)?
    };
    if !stopped.is_empty() {
        before_stop()?;
        reporter.note(&format!(
            "stopping {} of `{}` for the copy",
            stopped.join(", "),
            set.project
        ));
        svc.stop(&stopped, reporter)?;
    }
    let result = work();
    if !stopped.is_empty() {
        reporter.note(&format!("starting {} again", stopped.join(", ")));
        let started = svc.start(&stopped, reporter);
        if result.is_ok() {
            started?;
        } else if let Err(e) = started {
            reporter.warn(&format!("starting them again failed: {e}"));
        }
    }
    result
}

// ---------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------

/// `snapshot create`: copy the volumes of `set` into the new snapshot `name`.
#[allow(clippy::too_many_arguments)]
pub fn create(
    config: &Config,
    svc: &dyn Services,
    set: &DataSet,
    source_kind: &str,
    name: &str,
    live: bool,
    reporter: &dyn Reporter,
) -> Result<Stored> {
    check_name(name)?;
    if set.volumes.is_empty() {
        return Err(SnapshotError::NoVolumes(set.project.clone()).into());
    }
    let root = snapshots_dir(config);
    let dir = root.join(name);
    if dir.exists() {
        return Err(SnapshotError::Exists(name.to_string()).into());
    }
    std::fs::create_dir_all(&root).map_err(io("create", &root))?;
    for stale in leftover_temp_dirs(config) {
        let _ = std::fs::remove_dir_all(stale);
    }
    let engine = engine()?;
    if let Some(volume) = missing_volumes(&engine, &set.volumes)?.into_iter().next() {
        return Err(SnapshotError::VolumeMissing {
            id: set.project.clone(),
            volume,
        }
        .into());
    }
    let names: Vec<String> = set.volumes.iter().map(|v| v.name.clone()).collect();
    let need: u64 = volume_sizes(&names).values().sum();
    if let Some(free) = free_space(&root)
        && need > free
    {
        return Err(SnapshotError::NoSpace {
            dir: root,
            need,
            free,
        }
        .into());
    }
    let tmp = root.join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
    // Services stopped for the copy stay stopped if this process is killed: the state
    // says so (status, doctor) until an `up` starts them.
    let marked = std::cell::Cell::new(false);
    let again = format!("kinfra {source_kind} up {}", set.project);
    let written = with_services_stopped(
        svc,
        set,
        live,
        reporter,
        || {
            marked.set(mark_if_free(
                config,
                &set.project,
                STOPPED_FOR_SNAPSHOT,
                &again,
                reporter,
            )?);
            Ok(())
        },
        || write_archives(&engine, set, &tmp, reporter).map_err(Into::into),
    );
    if marked.get() {
        unmark(config, &set.project, reporter)?;
    }
    let volumes = match written {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        name: name.to_string(),
        source_instance: set.project.clone(),
        kind: source_kind.to_string(),
        volumes,
        created: crate::timefmt::now_iso(),
        kinfra_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let finish = || -> Result<(), SnapshotError> {
        let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
        let path = tmp.join(MANIFEST);
        let mut f = std::fs::File::create(&path).map_err(io("write", &path))?;
        f.write_all(text.as_bytes()).map_err(io("write", &path))?;
        f.sync_all().map_err(io("write", &path))?;
        sync_dir(&tmp)?;
        std::fs::rename(&tmp, &dir).map_err(io("rename", &tmp))?;
        sync_dir(&root)
    };
    if let Err(e) = finish() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(no_space(e, &root).into());
    }
    Ok(Stored { dir, manifest })
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

/// An I/O error that is ENOSPC as [`SnapshotError::NoSpace`].
fn no_space(e: SnapshotError, root: &Path) -> SnapshotError {
    match &e {
        SnapshotError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            SnapshotError::NoSpace {
                dir: root.to_owned(),
                need: 0,
                free: free_space(root).unwrap_or(0),
            }
        }
        _ => e,
    }
}

fn write_archives(
    engine: &Engine,
    set: &DataSet,
    tmp: &Path,
    reporter: &dyn Reporter,
) -> Result<Vec<ArchiveEntry>, SnapshotError> {
    let root = tmp.parent().unwrap_or(tmp).to_owned();
    let mut out = Vec::new();
    for vol in &set.volumes {
        let file_name = format!("{}.tar", vol.key);
        let path = tmp.join(&file_name);
        let helper = Helper::create(engine, &set.project, &set.images, &vol.name, "exit 0")?;
        let mut archive =
            engine
                .archive_get(&helper.id, MOUNT)
                .map_err(|source| SnapshotError::Copy {
                    volume: vol.name.clone(),
                    source,
                })?;
        let file = std::fs::File::create(&path).map_err(io("write", &path))?;
        let mut tee = Tee {
            inner: std::io::BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        std::io::copy(&mut archive, &mut tee)
            .map_err(io("write", &path))
            .map_err(|e| no_space(e, &root))?;
        let Tee {
            inner,
            hasher,
            bytes,
        } = tee;
        let file = inner
            .into_inner()
            .map_err(|e| io("write", &path)(e.into_error()))
            .map_err(|e| no_space(e, &root))?;
        file.sync_all()
            .map_err(io("write", &path))
            .map_err(|e| no_space(e, &root))?;
        reporter.note(&format!(
            "copied volume `{}` ({})",
            vol.key,
            human_size(bytes)
        ));
        out.push(ArchiveEntry {
            key: vol.key.clone(),
            volume: vol.name.clone(),
            archive: file_name,
            size: bytes,
            sha256: hex(&hasher.finalize()),
        });
        crate::crashpoint::hit("snapshot:after-volume");
    }
    Ok(out)
}

/// Refuse a snapshot whose volumes are not the instance's.
pub fn check_fits(stored: &Stored, set: &DataSet) -> Result<(), SnapshotError> {
    let mut mine = set.keys();
    mine.sort();
    if stored.manifest.keys() != mine {
        return Err(SnapshotError::Mismatch {
            name: stored.manifest.name.clone(),
            id: set.project.clone(),
            snapshot: stored.manifest.keys(),
            instance: mine,
        });
    }
    Ok(())
}

/// `snapshot restore`: verify every archive, then replace each volume's contents.
pub fn restore(
    svc: &dyn Services,
    stored: &Stored,
    set: &DataSet,
    reporter: &dyn Reporter,
) -> Result<()> {
    check_fits(stored, set)?;
    verify(stored)?;
    let engine = engine()?;
    with_services_stopped(
        svc,
        set,
        false,
        reporter,
        || Ok(()),
        || restore_volumes(&engine, stored, set, reporter).map_err(Into::into),
    )
}

fn restore_volumes(
    engine: &Engine,
    stored: &Stored,
    set: &DataSet,
    reporter: &dyn Reporter,
) -> Result<(), SnapshotError> {
    let missing = missing_volumes(engine, &set.volumes)?;
    for entry in &stored.manifest.volumes {
        let Some(name) = set.name_of(&entry.key) else {
            continue;
        };
        let vol = DataVolume {
            key: entry.key.clone(),
            name: name.to_string(),
        };
        let path = stored.dir.join(&entry.archive);
        let file = std::fs::File::open(&path).map_err(io("read", &path))?;
        let exists = !missing.contains(&vol.name);
        let bytes = fill_volume(engine, set, &vol, exists, std::io::BufReader::new(file))?;
        reporter.note(&format!(
            "restored volume `{}` ({})",
            vol.key,
            human_size(bytes)
        ));
        crate::crashpoint::hit("restore:after-volume");
    }
    Ok(())
}

/// Refuse a source without volumes to copy, or whose volumes were never created, and a
/// target whose compose volumes are not the source's (checked before anything is made).
pub fn check_source(source: &DataSet, target_keys: &[String]) -> Result<(), SnapshotError> {
    if source.volumes.is_empty() {
        return Err(SnapshotError::NoVolumes(source.project.clone()));
    }
    let mut want = source.keys();
    want.sort();
    let mut have = target_keys.to_vec();
    have.sort();
    if want != have {
        return Err(SnapshotError::Mismatch {
            name: source.project.clone(),
            id: "the new sandbox".into(),
            snapshot: want,
            instance: have,
        });
    }
    let engine = engine()?;
    if let Some(volume) = missing_volumes(&engine, &source.volumes)?
        .into_iter()
        .next()
    {
        return Err(SnapshotError::VolumeMissing {
            id: source.project.clone(),
            volume,
        });
    }
    Ok(())
}

/// `--data-from INSTANCE`: copy the source's volumes straight into the target's
/// (stream to stream, nothing on disk). The source is only read.
pub fn copy_between(
    source_svc: &dyn Services,
    source: &DataSet,
    target: &DataSet,
    live: bool,
    reporter: &dyn Reporter,
) -> Result<()> {
    let mut want = source.keys();
    want.sort();
    let mut have = target.keys();
    have.sort();
    if want != have {
        return Err(SnapshotError::Mismatch {
            name: source.project.clone(),
            id: target.project.clone(),
            snapshot: want,
            instance: have,
        }
        .into());
    }
    if source.volumes.is_empty() {
        return Err(SnapshotError::NoVolumes(source.project.clone()).into());
    }
    let engine = engine()?;
    if let Some(volume) = missing_volumes(&engine, &source.volumes)?
        .into_iter()
        .next()
    {
        return Err(SnapshotError::VolumeMissing {
            id: source.project.clone(),
            volume,
        }
        .into());
    }
    let missing = missing_volumes(&engine, &target.volumes)?;
    with_services_stopped(
        source_svc,
        source,
        live,
        reporter,
        || Ok(()),
        || {
            for vol in &target.volumes {
                let Some(from) = source.name_of(&vol.key) else {
                    continue;
                };
                let helper =
                    Helper::create(&engine, &source.project, &source.images, from, "exit 0")?;
                let archive = engine.archive_get(&helper.id, MOUNT).map_err(|source| {
                    SnapshotError::Copy {
                        volume: from.to_string(),
                        source,
                    }
                })?;
                let exists = !missing.contains(&vol.name);
                let bytes = fill_volume(&engine, target, vol, exists, archive)?;
                reporter.note(&format!(
                    "copied volume `{}` ({})",
                    vol.key,
                    human_size(bytes)
                ));
                crate::crashpoint::hit("copy:after-volume");
            }
            Ok(())
        },
    )
}

// ---------------------------------------------------------------------------------
// Interrupted restores and copies
// ---------------------------------------------------------------------------------

/// A restore or copy that started on an instance and did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    pub instance: String,
    pub operation: String,
    pub started_at: String,
    /// The command that puts the instance's data in a known state again.
    pub command: String,
    /// The process doing it is still running.
    pub running: bool,
}

impl Interrupted {
    pub fn message(&self) -> String {
        if self.operation == STOPPED_FOR_SNAPSHOT {
            let how = if self.running {
                "is in progress"
            } else {
                "was interrupted"
            };
            return format!(
                "a snapshot of `{}` {how} (started {}): the services it stopped for the copy are stopped",
                self.instance, self.started_at
            );
        }
        if self.running {
            format!(
                "a {} into `{}` is in progress (since {})",
                self.operation, self.instance, self.started_at
            )
        } else {
            format!(
                "a {} into `{}` was interrupted (started {}): its volumes may be half-written",
                self.operation, self.instance, self.started_at
            )
        }
    }

    /// What to run about it (when it is not running any more).
    pub fn hint(&self) -> String {
        if self.operation == STOPPED_FOR_SNAPSHOT {
            format!("run `{}` to start them again", self.command)
        } else {
            format!("run `{}` to finish it", self.command)
        }
    }
}

/// The operation a `snapshot create` records while it holds services stopped.
pub const STOPPED_FOR_SNAPSHOT: &str = "snapshot";

/// [`mark`], unless another operation is already recorded on `id` (an unfinished
/// restore says more than this would): whether it was recorded.
fn mark_if_free(
    config: &Config,
    id: &str,
    operation: &str,
    command: &str,
    reporter: &dyn Reporter,
) -> Result<bool> {
    record(config, id, operation, command, false, reporter)
}

/// Record that `operation` starts writing into `id`'s volumes; `command` redoes it.
pub fn mark(
    config: &Config,
    id: &str,
    operation: &str,
    command: &str,
    reporter: &dyn Reporter,
) -> Result<()> {
    record(config, id, operation, command, true, reporter).map(|_| ())
}

/// Record `operation` on `id` (over another one only with `replace`), in one update of
/// the state: whether it was recorded.
fn record(
    config: &Config,
    id: &str,
    operation: &str,
    command: &str,
    replace: bool,
    reporter: &dyn Reporter,
) -> Result<bool> {
    let op = crate::state::Operation {
        name: operation.to_string(),
        started_at: crate::timefmt::now_iso(),
        other: serde_json::Map::from_iter([
            ("pid".to_string(), serde_json::json!(std::process::id())),
            ("command".to_string(), serde_json::json!(command)),
        ]),
    };
    let recorded = crate::registry::update_with_state(
        &config.registry_paths(),
        reporter,
        |_, state| -> Result<bool> {
            let mine = state.instance_mut(id);
            if mine.operation.is_some() && !replace {
                return Ok(false);
            }
            mine.operation = Some(op);
            Ok(true)
        },
    )?;
    Ok(recorded.value)
}

/// The operation on `id` finished.
pub fn unmark(config: &Config, id: &str, reporter: &dyn Reporter) -> Result<()> {
    crate::registry::update_with_state(
        &config.registry_paths(),
        reporter,
        |_, state| -> Result<()> {
            if state.instance(id).is_some() {
                state.instance_mut(id).operation = None;
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// The unfinished data operation on `id`, if any.
pub fn interrupted(config: &Config, id: &str) -> Option<Interrupted> {
    let (_, state) = crate::registry::load_with_state(&config.registry_paths()).ok()?;
    from_state(id, state.instance(id)?.operation.as_ref()?)
}

/// Every unfinished data operation recorded in the state.
pub fn all_interrupted(config: &Config) -> Vec<Interrupted> {
    let Ok((registry, state)) = crate::registry::load_with_state(&config.registry_paths()) else {
        return Vec::new();
    };
    registry
        .local_prod
        .iter()
        .chain(registry.instances.iter())
        .filter_map(|e| {
            let op = state.instance(&e.instance_id)?.operation.as_ref()?;
            from_state(&e.instance_id, op)
        })
        .collect()
}

fn from_state(id: &str, op: &crate::state::Operation) -> Option<Interrupted> {
    if !matches!(op.name.as_str(), "restore" | "copy" | STOPPED_FOR_SNAPSHOT) {
        return None;
    }
    let pid = op
        .other
        .get("pid")
        .and_then(|p| p.as_i64())
        .and_then(|p| i32::try_from(p).ok());
    Some(Interrupted {
        instance: id.to_string(),
        operation: op.name.clone(),
        started_at: op.started_at.clone(),
        command: op
            .other
            .get("command")
            .and_then(|c| c.as_str())
            .unwrap_or("kinfra snapshot restore NAME")
            .to_string(),
        running: pid.is_some_and(|p| p as u32 != std::process::id() && pid_alive(Some(p))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(text: &str) -> ComposeModel {
        crate::compose::model::parse_str(Path::new("/p/docker-compose.yml"), text, &|_| None)
            .unwrap()
    }

    #[test]
    fn copies_own_volumes_but_skipped_external_and_fixed_name_ones() {
        let m = model(
            "services:
  db:
    image: postgres:16
    volumes: [pg:/var/lib/postgresql/data]
  app:
    build: .
    volumes: [pip-cache:/root/.cache, shared:/s]
  web:
    image: nginx
volumes:
  pg:
  pip-cache:
  shared:
    external: true
  fixed:
    name: everyone
",
        );
        let set = data_set(&m, &[], "ktrdr--x", &["pip-cache".to_string()]);
        assert_eq!(
            set.volumes,
            vec![DataVolume {
                key: "pg".into(),
                name: "ktrdr--x_pg".into()
            }]
        );
        assert_eq!(set.services, vec!["db".to_string()]);
        assert_eq!(set.images[0], "postgres:16");
        assert!(set.images.contains(&"ktrdr--x-app".to_string()));
        let why: Vec<&str> = set.not_copied.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(why, ["fixed", "pip-cache", "shared"]);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("before-migration.1").is_ok());
        for bad in ["", ".hidden", "a/b", "../x", "a b", &"x".repeat(101)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_manifest_naming_a_path_outside_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::builtin();
        config.state_dir = dir.path().to_owned();
        let snap = snapshots_dir(&config).join("s");
        std::fs::create_dir_all(&snap).unwrap();
        let m = Manifest {
            schema_version: SCHEMA_VERSION,
            name: "s".into(),
            source_instance: "x".into(),
            kind: "sandbox".into(),
            volumes: vec![ArchiveEntry {
                key: "k".into(),
                volume: "x_k".into(),
                archive: "../../etc/passwd".into(),
                size: 1,
                sha256: String::new(),
            }],
            created: "2026-01-01T00:00:00Z".into(),
            kinfra_version: "0".into(),
        };
        std::fs::write(snap.join(MANIFEST), serde_json::to_string(&m).unwrap()).unwrap();
        assert!(matches!(
            load(&config, "s"),
            Err(SnapshotError::BadManifest { .. })
        ));
        // A temporary directory is never listed.
        std::fs::create_dir_all(snapshots_dir(&config).join(".tmp-t-1")).unwrap();
        assert!(list(&config).unwrap().is_empty());
    }

    #[test]
    fn a_changed_archive_fails_verification() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.tar"), b"hello").unwrap();
        let mut stored = Stored {
            dir: dir.path().to_owned(),
            manifest: Manifest {
                schema_version: SCHEMA_VERSION,
                name: "s".into(),
                source_instance: "x".into(),
                kind: "sandbox".into(),
                volumes: vec![ArchiveEntry {
                    key: "k".into(),
                    volume: "x_k".into(),
                    archive: "k.tar".into(),
                    size: 5,
                    sha256: hex(&Sha256::digest(b"hello")),
                }],
                created: String::new(),
                kinfra_version: String::new(),
            },
        };
        verify(&stored).unwrap();
        stored.manifest.volumes[0].sha256 = hex(&Sha256::digest(b"other"));
        assert!(matches!(
            verify(&stored),
            Err(SnapshotError::Checksum { .. })
        ));
    }

    /// Refuses on a machine without Docker too: nothing is asked of the engine first.
    struct NoServices;
    impl Services for NoServices {
        fn running(&self, _: &[String]) -> Result<Vec<String>> {
            panic!("nothing may be stopped")
        }
        fn stop(&self, _: &[String], _: &dyn Reporter) -> Result<()> {
            panic!("nothing may be stopped")
        }
        fn start(&self, _: &[String], _: &dyn Reporter) -> Result<()> {
            panic!("nothing may be started")
        }
    }

    #[test]
    fn an_instance_without_named_volumes_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::builtin();
        config.state_dir = dir.path().to_owned();
        let set = data_set(
            &model("services:\n  web:\n    image: nginx\n"),
            &[],
            "p",
            &[],
        );
        let err = create(
            &config,
            &NoServices,
            &set,
            "sandbox",
            "s",
            false,
            &crate::report::Silent,
        )
        .unwrap_err();
        assert!(err.message.contains("no named volumes"), "{}", err.message);
        assert!(!snapshots_dir(&config).exists());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(12_345_678), "12.3 MB");
    }
}
