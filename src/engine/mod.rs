//! The Docker Engine API, spoken directly over the daemon's socket instead of spawning
//! the `docker` CLI: typed reads (containers, volumes, networks, inspect, stats, info),
//! the event stream, and the few writes snapshots need (create/start/stop/wait/remove a
//! container, volumes, tar archives in and out of a container).
//!
//! Where the daemon is comes from `DOCKER_HOST` (`unix://` or plain `tcp://`; unset →
//! `unix:///var/run/docker.sock`). TLS, `ssh://` and non-default Docker contexts are
//! [`EngineError::Unsupported`]: callers fall back to the CLI for those. The API
//! version is negotiated once per [`Engine`]; every call then opens its own short
//! connection (a unix socket connects in microseconds), so an `Engine` is cheap to
//! clone and share between threads.

mod events;
mod filters;
mod http;
mod types;

#[cfg(test)]
mod tests_fake;
#[cfg(test)]
mod tests_live;

use std::fmt;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;

pub use events::{Event, EventKind, EventStopper, EventStream};
pub use filters::Filters;
pub use types::{
    ContainerConfig, ContainerDetails, ContainerState, ContainerSummary, Health, HealthState,
    HostConfig, Info, Ipam, IpamConfig, Labels, Mount, Network, PROJECT_LABEL, Port, SERVICE_LABEL,
    Stats, Version, Volume, exit_code_from_status, health_from_status,
};

use crate::error::{Diagnostic, Exit};
use filters::{Query, percent_encode};
use http::{Body, Head, Reader, RequestBody, Stream};

/// Where the daemon listens when `DOCKER_HOST` is unset.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The oldest API kinfra speaks (Docker 19.03).
pub const MIN_API: ApiVersion = ApiVersion {
    major: 1,
    minor: 40,
};
/// The newest API kinfra knows; newer daemons are spoken to in this version.
pub const MAX_API: ApiVersion = ApiVersion {
    major: 1,
    minor: 45,
};

/// Default limit on connecting (TCP only: a unix socket connects at once or fails).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default limit on waiting for each read of an answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Calls the daemon may legitimately take long over (killing a container, a stats
/// sample, which waits for a second reading) get at least this.
const SLOW_CALL: Duration = Duration::from_secs(30);
/// JSON answers larger than this are refused rather than held in memory.
const MAX_JSON: u64 = 256 * 1024 * 1024;
/// An error body is only read this far.
const MAX_ERROR_BODY: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the Docker daemon is not reachable at `{host}`: {reason}")]
    Unreachable {
        host: String,
        reason: String,
        timed_out: bool,
        /// The socket exists but this user may not use it.
        denied: bool,
    },
    #[error("{what} is not supported by kinfra's Docker API client")]
    Unsupported { what: String },
    #[error(
        "the Docker daemon at `{host}` speaks Docker API {server}; kinfra needs {MIN_API} or newer"
    )]
    TooOld { host: String, server: String },
    #[error("{kind} `{name}` does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("image `{0}` is not on this Docker host (kinfra never pulls images)")]
    ImageMissing(String),
    #[error("`{request}` failed (HTTP {status}): {message}")]
    Api {
        request: String,
        status: u16,
        message: String,
    },
    #[error("the Docker daemon at `{host}` answered `{request}` wrongly: {reason}")]
    Protocol {
        host: String,
        request: String,
        reason: String,
    },
    #[error("the Docker daemon at `{host}` closed the event stream")]
    EventsEnded { host: String },
    #[error("cannot read what `{request}` uploads: {reason}")]
    Upload { request: String, reason: String },
}

impl Diagnostic for EngineError {
    fn exit(&self) -> Exit {
        match self {
            EngineError::Unreachable {
                timed_out: true, ..
            } => Exit::TimedOut,
            EngineError::NotFound { .. } => Exit::NotFound,
            EngineError::Upload { .. } => Exit::Failure,
            _ => Exit::External,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            EngineError::Unreachable { denied: true, .. } => Some(
                "make sure this user may use the Docker socket (the `docker` group), then retry"
                    .into(),
            ),
            EngineError::Unreachable { .. } | EngineError::EventsEnded { .. } => {
                Some("start the Docker daemon (or check DOCKER_HOST), then retry".into())
            }
            EngineError::Unsupported { .. } => {
                Some("point DOCKER_HOST at a unix:// socket or a plain tcp:// address".into())
            }
            EngineError::TooOld { .. } => {
                Some("upgrade Docker Engine to 19.03 or newer, then retry".into())
            }
            EngineError::ImageMissing(image) => {
                Some(format!("build or pull `{image}` first, then retry"))
            }
            _ => None,
        }
    }
}

/// An Engine API version, `1.41`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u16,
    pub minor: u16,
}

impl ApiVersion {
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let (major, minor) = text.trim().split_once('.')?;
        Some(ApiVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The version to speak to a daemon whose newest is `server`, or `None` if it is
/// older than [`MIN_API`].
pub fn negotiate(server: ApiVersion) -> Option<ApiVersion> {
    (server >= MIN_API).then(|| server.min(MAX_API))
}

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

impl Host {
    /// A `DOCKER_HOST` value: `unix:///path` or `tcp://host[:port]` (port 2375 by
    /// default). Anything else, `ssh://` and `https://` included, is unsupported.
    pub fn parse(text: &str) -> Result<Host, EngineError> {
        let unsupported = || EngineError::Unsupported {
            what: format!("`DOCKER_HOST={text}`"),
        };
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(unsupported());
            }
            return Ok(Host::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = text.strip_prefix("tcp://") {
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            if authority.contains(['/', '?', '#', '@']) {
                return Err(unsupported());
            }
            // The port follows the last colon, unless that colon is inside `[ipv6]`.
            let (host, port) = match authority.rfind(':') {
                Some(i) if !authority[i..].contains(']') => {
                    (&authority[..i], Some(&authority[i + 1..]))
                }
                _ => (authority, None),
            };
            return match port {
                _ if host.is_empty() => Err(unsupported()),
                None => Ok(Host::Tcp(format!("{host}:2375"))),
                Some(p) if p.parse::<u16>().is_ok() => Ok(Host::Tcp(authority.to_string())),
                Some(_) => Err(unsupported()),
            };
        }
        Err(unsupported())
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Unix(path) => write!(f, "unix://{}", path.display()),
            Host::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// Where the daemon is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub host: Host,
    pub connect_timeout: Duration,
    /// Limit on each read of an answer (not on the whole answer: a long archive keeps
    /// flowing).
    pub read_timeout: Duration,
}

impl Options {
    /// Default timeouts for `host`.
    pub fn new(host: Host) -> Options {
        Options {
            host,
            connect_timeout: CONNECT_TIMEOUT,
            read_timeout: READ_TIMEOUT,
        }
    }

    /// The daemon the `docker` CLI would use, from `DOCKER_HOST`, `DOCKER_CONTEXT`,
    /// `DOCKER_TLS_VERIFY` and the CLI's current context.
    pub fn from_env() -> Result<Options, EngineError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        resolve_host(var, load_current_context).map(Options::new)
    }
}

/// The host the `docker` CLI would talk to, given its environment (`env`) and its
/// config file's current context (read only when it matters). Mirrors the CLI: an
/// explicit `DOCKER_CONTEXT` wins, then `DOCKER_HOST`, then the config's context.
fn resolve_host(
    env: impl Fn(&str) -> Option<String>,
    current_context: impl FnOnce() -> Option<String>,
) -> Result<Host, EngineError> {
    let context = match env("DOCKER_CONTEXT") {
        Some(name) => Some(name),
        None if env("DOCKER_HOST").is_some() => None,
        None => current_context(),
    };
    if let Some(name) = context.filter(|n| n != "default") {
        return Err(EngineError::Unsupported {
            what: format!("the Docker context `{name}`"),
        });
    }
    for tls in ["DOCKER_TLS_VERIFY", "DOCKER_TLS"] {
        if env(tls).is_some() {
            return Err(EngineError::Unsupported {
                what: format!("TLS (`{tls}`)"),
            });
        }
    }
    match env("DOCKER_HOST") {
        Some(text) => Host::parse(&text),
        None => Ok(Host::Unix(PathBuf::from(DEFAULT_SOCKET))),
    }
}

/// `currentContext` from the docker CLI's config file, if set.
fn load_current_context() -> Option<String> {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".docker"),
    };
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    current_context_of(&text)
}

fn current_context_of(config_json: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(config_json).ok()?;
    let name = value.get("currentContext")?.as_str()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// Whether an I/O error is a read or write timeout.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// A container to create: image, command, volumes and labels. Nothing else is set, so
/// it has no ports and no restart policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewContainer {
    pub name: String,
    pub image: String,
    /// Empty: the image's default command.
    pub cmd: Vec<String>,
    /// Empty: the image's own entrypoint.
    pub entrypoint: Vec<String>,
    /// Named volumes and the paths they are mounted at.
    pub volumes: Vec<(String, String)>,
    /// Host paths (on the engine's side) bind-mounted read-only at container paths.
    pub binds: Vec<(String, String)>,
    pub labels: Labels,
}

impl NewContainer {
    pub fn new(name: &str, image: &str) -> NewContainer {
        NewContainer {
            name: name.to_string(),
            image: image.to_string(),
            ..NewContainer::default()
        }
    }

    pub fn cmd<S: AsRef<str>>(mut self, args: &[S]) -> NewContainer {
        self.cmd = args.iter().map(|a| a.as_ref().to_string()).collect();
        self
    }

    /// Run `args` instead of the image's entrypoint (the command is then appended).
    pub fn entrypoint<S: AsRef<str>>(mut self, args: &[S]) -> NewContainer {
        self.entrypoint = args.iter().map(|a| a.as_ref().to_string()).collect();
        self
    }

    /// Mount the named volume at `path`.
    pub fn volume(mut self, volume: &str, path: &str) -> NewContainer {
        self.volumes.push((volume.to_string(), path.to_string()));
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> NewContainer {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Bind-mount the engine's `source` read-only at `path` (the engine refuses to
    /// create the container when `source` does not exist on its side).
    pub fn bind(mut self, source: &str, path: &str) -> NewContainer {
        self.binds.push((source.to_string(), path.to_string()));
        self
    }

    fn to_json(&self) -> serde_json::Value {
        let mounts: Vec<_> = self
            .volumes
            .iter()
            .map(|(source, target)| {
                serde_json::json!({ "Type": "volume", "Source": source, "Target": target })
            })
            .chain(self.binds.iter().map(|(source, target)| {
                serde_json::json!({ "Type": "bind", "Source": source, "Target": target, "ReadOnly": true })
            }))
            .collect();
        let mut body = serde_json::json!({
            "Image": self.image,
            "Labels": self.labels,
            "HostConfig": { "Mounts": mounts },
        });
        if !self.cmd.is_empty() {
            body["Cmd"] = serde_json::json!(self.cmd);
        }
        if !self.entrypoint.is_empty() {
            body["Entrypoint"] = serde_json::json!(self.entrypoint);
        }
        body
    }
}

/// A tar stream of a path in a container, read as it arrives.
pub struct Archive {
    body: Body<Reader>,
}

impl Read for Archive {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}

/// An open exchange: the response head and its body.
struct Exchange {
    head: Head,
    body: Body<Reader>,
    control: Stream,
}

/// The source of an upload failed (not the daemon): kept apart from socket errors.
#[derive(Debug)]
struct SourceFailed(io::Error);

impl fmt::Display for SourceFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceFailed {}

/// Reads an upload's source, marking its errors so they are not blamed on the daemon.
struct MarkedSource<R>(R);

impl<R: Read> Read for MarkedSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                e
            } else {
                io::Error::other(SourceFailed(e))
            }
        })
    }
}

/// A client for one Docker daemon, its API version negotiated.
#[derive(Debug, Clone)]
pub struct Engine {
    options: Options,
    api: ApiVersion,
}

impl Engine {
    /// Connect to the daemon the environment names (see [`Options::from_env`]).
    pub fn connect() -> Result<Engine, EngineError> {
        Engine::connect_with(Options::from_env()?)
    }

    /// Connect to `options.host` and agree on an API version: the daemon's newest,
    /// capped at [`MAX_API`]; one older than [`MIN_API`] is refused.
    pub fn connect_with(options: Options) -> Result<Engine, EngineError> {
        let mut engine = Engine {
            options,
            api: MIN_API,
        };
        // `/_ping` names the API version in a header and costs ~0.3 ms; `/version`
        // asks containerd and runc for theirs (~13 ms on Docker 20.10), so it is only
        // the fallback for a daemon that sends no header.
        let exchange = engine.open_raw(
            "GET",
            "/_ping",
            "/_ping",
            RequestBody::None,
            engine.options.read_timeout,
        )?;
        let header = exchange.head.header("api-version").map(str::to_string);
        engine.drain("GET /_ping", exchange)?;
        let (text, request) = match header {
            Some(text) => (text, "GET /_ping"),
            None => (engine.version()?.api_version, "GET /version"),
        };
        let server = ApiVersion::parse(&text).ok_or_else(|| EngineError::Protocol {
            host: engine.options.host.to_string(),
            request: request.into(),
            reason: format!("the API version is `{text}`"),
        })?;
        engine.api = negotiate(server).ok_or_else(|| EngineError::TooOld {
            host: engine.options.host.to_string(),
            server: server.to_string(),
        })?;
        Ok(engine)
    }

    pub fn host(&self) -> &Host {
        &self.options.host
    }

    /// The API version every call uses.
    pub fn api_version(&self) -> ApiVersion {
        self.api
    }

    /// The same engine with another read timeout.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Engine {
        self.options.read_timeout = timeout;
        self
    }

    /// `GET /_ping`: the daemon answers.
    pub fn ping(&self) -> Result<(), EngineError> {
        self.call("GET", "/_ping", &Query::new()).map(|_| ())
    }

    /// `GET /version` (unversioned, so it works before negotiation).
    pub fn version(&self) -> Result<Version, EngineError> {
        let exchange = self.open_raw(
            "GET",
            "/version",
            "/version",
            RequestBody::None,
            self.options.read_timeout,
        )?;
        self.read_json("GET /version", exchange)
    }

    /// `GET /info`: host memory, CPUs, cgroup setup, engine release.
    pub fn info(&self) -> Result<Info, EngineError> {
        self.json("GET", "/info", &Query::new(), RequestBody::None)
    }

    /// Containers matching `filters`; stopped ones too when `all`.
    pub fn containers(
        &self,
        filters: &Filters,
        all: bool,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let mut query = Query::new();
        if all {
            query = query.pair("all", "1");
        }
        self.json(
            "GET",
            "/containers/json",
            &query.filters(filters),
            RequestBody::None,
        )
    }

    /// One container's details.
    pub fn container_inspect(&self, id: &str) -> Result<ContainerDetails, EngineError> {
        self.json(
            "GET",
            &format!("/containers/{}/json", percent_encode(id)),
            &Query::new(),
            RequestBody::None,
        )
        .map_err(|e| not_found(e, "container", id))
    }

    /// Volumes matching `filters`.
    pub fn volumes(&self, filters: &Filters) -> Result<Vec<Volume>, EngineError> {
        let list: types::VolumeList = self.json(
            "GET",
            "/volumes",
            &Query::new().filters(filters),
            RequestBody::None,
        )?;
        Ok(list.volumes)
    }

    /// Networks matching `filters`.
    pub fn networks(&self, filters: &Filters) -> Result<Vec<Network>, EngineError> {
        self.json(
            "GET",
            "/networks",
            &Query::new().filters(filters),
            RequestBody::None,
        )
    }

    /// One sample of a container's CPU, memory and network use. Takes about a second:
    /// the engine waits for a second reading to compute CPU use from.
    pub fn stats_once(&self, id: &str) -> Result<Stats, EngineError> {
        let path = format!("/containers/{}/stats", percent_encode(id));
        let exchange = self
            .open(
                "GET",
                &path,
                &Query::new().pair("stream", "false"),
                RequestBody::None,
                self.slow_timeout(),
            )
            .map_err(|e| not_found(e, "container", id))?;
        let raw: types::RawStats = self.read_json(&format!("GET {path}"), exchange)?;
        Ok(raw.summarize())
    }

    /// The container's cumulative counters (CPU time, network bytes, memory) in one fast
    /// read (`one-shot`: the engine does not wait for a second sample, so `cpu_percent`
    /// is 0).
    pub fn counters(&self, id: &str) -> Result<Stats, EngineError> {
        let path = format!("/containers/{}/stats", percent_encode(id));
        let exchange = self
            .open(
                "GET",
                &path,
                &Query::new()
                    .pair("stream", "false")
                    .pair("one-shot", "true"),
                RequestBody::None,
                self.slow_timeout(),
            )
            .map_err(|e| not_found(e, "container", id))?;
        let raw: types::RawStats = self.read_json(&format!("GET {path}"), exchange)?;
        Ok(raw.summarize())
    }

    /// Events matching `filters` from now on, or replayed from `since` first.
    pub fn events(
        &self,
        filters: &Filters,
        since: Option<SystemTime>,
    ) -> Result<EventStream, EngineError> {
        let mut query = Query::new().filters(filters);
        if let Some(since) = since {
            let t = since
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            query = query.pair("since", &format!("{}.{:09}", t.as_secs(), t.subsec_nanos()));
        }
        let exchange = self.open(
            "GET",
            "/events",
            &query,
            RequestBody::None,
            self.options.read_timeout,
        )?;
        Ok(EventStream::new(
            exchange.body,
            exchange.control,
            self.options.host.to_string(),
        ))
    }

    /// The id of some image the engine holds (any will do to create a probe container
    /// that is never started), if it holds one.
    pub fn any_image(&self) -> Result<Option<String>, EngineError> {
        let list: Vec<serde_json::Value> =
            self.json("GET", "/images/json", &Query::new(), RequestBody::None)?;
        Ok(list
            .iter()
            .find_map(|i| i["Id"].as_str().map(str::to_string)))
    }

    /// Create (never pull, never start) a container; its id.
    pub fn container_create(&self, spec: &NewContainer) -> Result<String, EngineError> {
        let body = serde_json::to_vec(&spec.to_json()).unwrap_or_default();
        let created: types::Created = self
            .json(
                "POST",
                "/containers/create",
                &Query::new().pair("name", &spec.name),
                RequestBody::Json(body),
            )
            .map_err(|e| match e {
                EngineError::Api {
                    status: 404,
                    ref message,
                    ..
                } if message.contains("image") => EngineError::ImageMissing(spec.image.clone()),
                other => other,
            })?;
        Ok(created.id)
    }

    /// Start a created or stopped container (already running is fine).
    pub fn container_start(&self, id: &str) -> Result<(), EngineError> {
        let path = format!("/containers/{}/start", percent_encode(id));
        self.call("POST", &path, &Query::new())
            .map(|_| ())
            .map_err(|e| not_found(e, "container", id))
    }

    /// Stop a container: SIGTERM, then SIGKILL after `grace` (already stopped is fine).
    pub fn container_stop(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        let path = format!("/containers/{}/stop", percent_encode(id));
        let query = Query::new().pair("t", &grace.as_secs().to_string());
        let exchange = self
            .open(
                "POST",
                &path,
                &query,
                RequestBody::None,
                grace + self.slow_timeout(),
            )
            .map_err(|e| not_found(e, "container", id))?;
        self.drain(&format!("POST {path}"), exchange)
    }

    /// Wait (at most `timeout`) until a container is not running; its exit code.
    pub fn container_wait(&self, id: &str, timeout: Duration) -> Result<i64, EngineError> {
        let path = format!("/containers/{}/wait", percent_encode(id));
        let exchange = self
            .open(
                "POST",
                &path,
                &Query::new().pair("condition", "not-running"),
                RequestBody::None,
                timeout,
            )
            .map_err(|e| not_found(e, "container", id))?;
        let result: types::WaitResult = self.read_json(&format!("POST {path}"), exchange)?;
        Ok(result.status_code)
    }

    /// Remove a container (`force`: even a running one, killing it). Its anonymous
    /// volumes stay.
    pub fn container_remove(&self, id: &str, force: bool) -> Result<(), EngineError> {
        let path = format!("/containers/{}", percent_encode(id));
        let query = Query::new().pair("force", if force { "1" } else { "0" });
        let exchange = self
            .open(
                "DELETE",
                &path,
                &query,
                RequestBody::None,
                self.slow_timeout(),
            )
            .map_err(|e| not_found(e, "container", id))?;
        self.drain(&format!("DELETE {path}"), exchange)
    }

    /// A tar stream of `path` in a container (started or not), streamed as read.
    pub fn archive_get(&self, id: &str, path: &str) -> Result<Archive, EngineError> {
        let exchange = self
            .open(
                "GET",
                &format!("/containers/{}/archive", percent_encode(id)),
                &Query::new().pair("path", path),
                RequestBody::None,
                self.options.read_timeout,
            )
            .map_err(|e| archive_not_found(e, id, path))?;
        Ok(Archive {
            body: exchange.body,
        })
    }

    /// Extract the tar stream `tar` into the directory `path` of a container (started
    /// or not), streamed as read.
    pub fn archive_put(&self, id: &str, path: &str, tar: impl Read) -> Result<(), EngineError> {
        let api_path = format!("/containers/{}/archive", percent_encode(id));
        let mut source = MarkedSource(tar);
        let exchange = self
            .open(
                "PUT",
                &api_path,
                &Query::new().pair("path", path),
                RequestBody::Stream(&mut source, "application/x-tar"),
                self.slow_timeout(),
            )
            .map_err(|e| archive_not_found(e, id, path))?;
        self.drain(&format!("PUT {api_path}"), exchange)
    }

    /// Create a volume (an existing one of that name is returned as it is).
    pub fn volume_create(&self, name: &str, labels: &Labels) -> Result<Volume, EngineError> {
        let body = serde_json::json!({ "Name": name, "Labels": labels });
        self.json(
            "POST",
            "/volumes/create",
            &Query::new(),
            RequestBody::Json(serde_json::to_vec(&body).unwrap_or_default()),
        )
    }

    /// The size in bytes of every volume the engine can measure (`GET /system/df`),
    /// by name. Slow on a daemon with many volumes: it measures them all.
    pub fn volume_sizes(&self) -> Result<std::collections::BTreeMap<String, u64>, EngineError> {
        let path = "/system/df";
        let exchange = self.open(
            "GET",
            path,
            &Query::new().pair("type", "volume"),
            RequestBody::None,
            self.slow_timeout(),
        )?;
        let usage: types::DiskUsage = self.read_json(&format!("GET {path}"), exchange)?;
        Ok(usage
            .volumes
            .into_iter()
            .filter_map(|v| {
                let size = u64::try_from(v.usage_data?.size).ok()?;
                Some((v.name, size))
            })
            .collect())
    }

    /// Remove a volume (it must not be in use).
    pub fn volume_remove(&self, name: &str) -> Result<(), EngineError> {
        let path = format!("/volumes/{}", percent_encode(name));
        self.call("DELETE", &path, &Query::new())
            .map(|_| ())
            .map_err(|e| not_found(e, "volume", name))
    }

    fn slow_timeout(&self) -> Duration {
        self.options.read_timeout.max(SLOW_CALL)
    }

    /// A versioned call whose answer is JSON.
    fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        query: &Query,
        body: RequestBody<'_>,
    ) -> Result<T, EngineError> {
        let exchange = self.open(method, path, query, body, self.options.read_timeout)?;
        self.read_json(&format!("{method} {path}"), exchange)
    }

    /// A versioned call without a body either way; its status.
    fn call(&self, method: &str, path: &str, query: &Query) -> Result<u16, EngineError> {
        let exchange = self.open(
            method,
            path,
            query,
            RequestBody::None,
            self.options.read_timeout,
        )?;
        let status = exchange.head.status;
        self.drain(&format!("{method} {path}"), exchange)?;
        Ok(status)
    }

    fn open(
        &self,
        method: &str,
        path: &str,
        query: &Query,
        body: RequestBody<'_>,
        read_timeout: Duration,
    ) -> Result<Exchange, EngineError> {
        let target = format!("/v{}{path}{}", self.api, query.as_str());
        self.open_raw(method, path, &target, body, read_timeout)
    }

    /// Send one request on a new connection and read the answer's head; an error
    /// status becomes [`EngineError::Api`] with the engine's message.
    fn open_raw(
        &self,
        method: &str,
        path: &str,
        target: &str,
        body: RequestBody<'_>,
        read_timeout: Duration,
    ) -> Result<Exchange, EngineError> {
        let request = format!("{method} {path}");
        let stream = Stream::connect(&self.options.host, self.options.connect_timeout)
            .map_err(|e| self.io_error(&request, &e, read_timeout))?;
        let control = stream
            .try_clone()
            .and_then(|c| c.set_timeouts(Some(read_timeout)).map(|()| c))
            .map_err(|e| self.io_error(&request, &e, read_timeout))?;
        let mut writer = stream
            .try_clone()
            .map_err(|e| self.io_error(&request, &e, read_timeout))?;
        let mut reader = BufReader::new(stream);
        let sent = http::write_request(&mut writer, method, target, body);
        if let Err(e) = &sent
            && is_source_error(e)
        {
            return Err(self.io_error(&request, e, read_timeout));
        }
        // The daemon may refuse an upload before reading all of it and close: its
        // answer says why better than the broken pipe does.
        let head = match (sent, http::read_head(&mut reader)) {
            (Ok(()), Ok(head)) => head,
            (Err(_), Ok(head)) if head.status >= 400 => head,
            (Err(e), _) | (Ok(()), Err(e)) => {
                return Err(self.io_error(&request, &e, read_timeout));
            }
        };
        let body = Body::new(&head, method, reader)
            .map_err(|e| self.io_error(&request, &e, read_timeout))?;
        let exchange = Exchange {
            head,
            body,
            control,
        };
        if exchange.head.status >= 400 {
            return Err(self.api_error(request, exchange));
        }
        Ok(exchange)
    }

    fn api_error(&self, request: String, exchange: Exchange) -> EngineError {
        let status = exchange.head.status;
        let mut text = Vec::new();
        let _ = exchange.body.take(MAX_ERROR_BODY).read_to_end(&mut text);
        let message = serde_json::from_slice::<types::ApiMessage>(&text)
            .map(|m| m.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&text).trim().to_string());
        EngineError::Api {
            request,
            status,
            message: crate::error::one_line(&message),
        }
    }

    fn read_json<T: DeserializeOwned>(
        &self,
        request: &str,
        exchange: Exchange,
    ) -> Result<T, EngineError> {
        let mut bytes = Vec::new();
        exchange
            .body
            .take(MAX_JSON)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io_error(request, &e, self.options.read_timeout))?;
        serde_json::from_slice(&bytes).map_err(|e| EngineError::Protocol {
            host: self.options.host.to_string(),
            request: request.to_string(),
            reason: format!("the answer is not the expected JSON: {e}"),
        })
    }

    /// Read and drop a body (so the daemon's answer is complete before we return).
    fn drain(&self, request: &str, exchange: Exchange) -> Result<(), EngineError> {
        io::copy(&mut exchange.body.take(MAX_JSON), &mut io::sink())
            .map(|_| ())
            .map_err(|e| self.io_error(request, &e, self.options.read_timeout))
    }

    fn io_error(&self, request: &str, e: &io::Error, read_timeout: Duration) -> EngineError {
        let host = self.options.host.to_string();
        if let Some(source) = e.get_ref().and_then(|s| s.downcast_ref::<SourceFailed>()) {
            return EngineError::Upload {
                request: request.to_string(),
                reason: source.to_string(),
            };
        }
        if e.kind() == io::ErrorKind::InvalidData {
            return EngineError::Protocol {
                host,
                request: request.to_string(),
                reason: e.to_string(),
            };
        }
        let timed_out = is_timeout(e);
        let reason = if timed_out {
            format!(
                "no answer to `{request}` within {}",
                short_duration(read_timeout)
            )
        } else {
            e.to_string()
        };
        EngineError::Unreachable {
            host,
            reason,
            timed_out,
            denied: e.kind() == io::ErrorKind::PermissionDenied,
        }
    }
}

/// `5s`, `1.5s`, `250ms`.
fn short_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn is_source_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|s| s.is::<SourceFailed>())
}

/// A 404 about a named object becomes [`EngineError::NotFound`] (a 404 for an unknown
/// endpoint stays an API error).
fn not_found(e: EngineError, kind: &'static str, name: &str) -> EngineError {
    match e {
        EngineError::Api {
            status: 404,
            ref message,
            ..
        } if !message.contains("page not found") => EngineError::NotFound {
            kind,
            name: name.to_string(),
        },
        other => other,
    }
}

/// A 404 from the archive endpoints: the container, or the path in it.
fn archive_not_found(e: EngineError, id: &str, path: &str) -> EngineError {
    match e {
        EngineError::Api {
            status: 404,
            ref message,
            ..
        } if !message.contains("No such container") && !message.contains("page not found") => {
            EngineError::NotFound {
                kind: "path",
                name: format!("{path}` in container `{id}"),
            }
        }
        other => not_found(other, "container", id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn no_context() -> Option<String> {
        None
    }

    #[test]
    fn docker_host_is_parsed_like_the_cli() {
        assert_eq!(
            resolve_host(env(&[]), no_context).unwrap(),
            Host::Unix(DEFAULT_SOCKET.into())
        );
        assert_eq!(
            Host::parse("unix:///run/user/1000/docker.sock").unwrap(),
            Host::Unix("/run/user/1000/docker.sock".into())
        );
        assert_eq!(
            Host::parse("tcp://10.0.0.5:2376").unwrap(),
            Host::Tcp("10.0.0.5:2376".into())
        );
        assert_eq!(
            Host::parse("tcp://docker.local").unwrap(),
            Host::Tcp("docker.local:2375".into())
        );
        assert_eq!(
            Host::parse("tcp://[::1]").unwrap(),
            Host::Tcp("[::1]:2375".into())
        );
        assert_eq!(
            Host::parse("tcp://[::1]:2380/").unwrap(),
            Host::Tcp("[::1]:2380".into())
        );
        assert_eq!(
            Host::parse("tcp://localhost:2375").unwrap().to_string(),
            "tcp://localhost:2375"
        );
        for bad in [
            "ssh://me@box",
            "https://box:2376",
            "npipe:////./pipe/docker_engine",
            "fd://",
            "unix://",
            "tcp://",
            "tcp://host:port",
            "tcp://host:2375/prefix",
            "/var/run/docker.sock",
        ] {
            let e = Host::parse(bad).unwrap_err();
            assert!(matches!(e, EngineError::Unsupported { .. }), "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn tls_and_other_contexts_are_unsupported_and_docker_host_beats_the_config() {
        let e = resolve_host(
            env(&[("DOCKER_HOST", "tcp://h:2376"), ("DOCKER_TLS_VERIFY", "1")]),
            no_context,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "TLS (`DOCKER_TLS_VERIFY`) is not supported by kinfra's Docker API client"
        );
        assert_eq!(e.exit(), Exit::External);

        let remote = || Some("remote".to_string());
        let e = resolve_host(env(&[]), remote).unwrap_err();
        assert!(e.to_string().contains("context `remote`"), "{e}");
        // DOCKER_HOST wins over the config file's context, as in the CLI…
        assert_eq!(
            resolve_host(env(&[("DOCKER_HOST", "unix:///x.sock")]), remote).unwrap(),
            Host::Unix("/x.sock".into())
        );
        // …and DOCKER_CONTEXT over DOCKER_HOST.
        assert!(
            resolve_host(
                env(&[("DOCKER_HOST", "unix:///x.sock"), ("DOCKER_CONTEXT", "ci")]),
                no_context
            )
            .is_err()
        );
        assert_eq!(
            resolve_host(env(&[("DOCKER_CONTEXT", "default")]), remote).unwrap(),
            Host::Unix(DEFAULT_SOCKET.into())
        );
        assert_eq!(
            resolve_host(env(&[]), || Some("default".into())).unwrap(),
            Host::Unix(DEFAULT_SOCKET.into())
        );
        assert_eq!(
            current_context_of(r#"{"auths":{},"currentContext":"remote"}"#).as_deref(),
            Some("remote")
        );
        assert_eq!(current_context_of(r#"{"currentContext":""}"#), None);
        assert_eq!(current_context_of("{}"), None);
        assert_eq!(current_context_of("not json"), None);
    }

    #[test]
    fn api_versions_negotiate_down_to_ours_and_refuse_old_ones() {
        let v = |s: &str| ApiVersion::parse(s).unwrap();
        assert_eq!(negotiate(v("1.41")), Some(v("1.41")));
        assert_eq!(negotiate(v("1.40")), Some(v("1.40")));
        assert_eq!(negotiate(v("1.47")), Some(MAX_API));
        assert_eq!(negotiate(v("2.0")), Some(MAX_API));
        assert_eq!(negotiate(v("1.39")), None);
        assert!(v("1.9") < v("1.10"));
        assert_eq!(ApiVersion::parse("1"), None);
        assert_eq!(ApiVersion::parse("x.y"), None);
        assert_eq!(MAX_API.to_string(), "1.45");
    }

    #[test]
    fn new_containers_are_described_as_the_api_wants() {
        let spec = NewContainer::new("c", "kinfra-test/busybox:latest")
            .cmd(&["sh", "-c", "true"])
            .volume("v", "/data")
            .label("kinfra.test", "1");
        assert_eq!(
            spec.to_json(),
            serde_json::json!({
                "Image": "kinfra-test/busybox:latest",
                "Cmd": ["sh", "-c", "true"],
                "Labels": { "kinfra.test": "1" },
                "HostConfig": { "Mounts": [ { "Type": "volume", "Source": "v", "Target": "/data" } ] },
            })
        );
        assert!(NewContainer::new("c", "i").to_json().get("Cmd").is_none());
    }

    #[test]
    fn errors_have_their_exit_codes_and_hints() {
        let unreachable = |timed_out, denied| EngineError::Unreachable {
            host: "unix:///var/run/docker.sock".into(),
            reason: "x".into(),
            timed_out,
            denied,
        };
        let e = unreachable(false, false);
        assert_eq!(
            e.to_string(),
            "the Docker daemon is not reachable at `unix:///var/run/docker.sock`: x"
        );
        assert_eq!(e.exit(), Exit::External);
        assert_eq!(
            e.hint().as_deref(),
            Some("start the Docker daemon (or check DOCKER_HOST), then retry")
        );
        assert_eq!(unreachable(true, false).exit(), Exit::TimedOut);
        assert!(
            unreachable(false, true)
                .hint()
                .unwrap()
                .contains("`docker` group")
        );
        let e = EngineError::NotFound {
            kind: "container",
            name: "abc".into(),
        };
        assert_eq!(e.to_string(), "container `abc` does not exist");
        assert_eq!(e.exit(), Exit::NotFound);
        let e = EngineError::TooOld {
            host: "unix:///s".into(),
            server: "1.39".into(),
        };
        assert_eq!(
            e.to_string(),
            "the Docker daemon at `unix:///s` speaks Docker API 1.39; kinfra needs 1.40 or newer"
        );
    }
}
