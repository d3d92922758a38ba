//! The compose model: a typed, fast reader of the Docker Compose file(s) an instance is
//! about to run — which host ports are published (and from which variable), which
//! services have healthchecks or are one-shot jobs, which external networks and volumes
//! must exist, which bind-mount sources are used. It reads the files itself (no
//! `docker compose config` process) and keeps every node's file and line for errors.
//!
//! Reading follows compose: each file is parsed (anchors, aliases and `<<` merge keys
//! resolved), every string value is interpolated, then the files are merged in `-f`
//! order (see `merge_files` for the rules), then the typed model is built. Only what
//! kinfra uses is modelled; everything else is read past.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::interpolate::{self, InterpolateError, Substitution, VarRef};

/// Looks a variable up for interpolation (the environment compose would see).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Nesting deeper than this is refused (compose files nest about ten levels): reading
/// recurses once per level, and a thread's stack must not be the limit.
const MAX_DEPTH: usize = 64;
/// Lines whose structural prefix (blanks, `-`, `?`, `:`) is longer than this are refused
/// before parsing, because the YAML parser recurses once per level too (a block
/// scalar's content does not count). The parser itself stops flow nesting at 255.
const MAX_PREFIX: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ComposeFileError {
    #[error("cannot read `{}`: {source}", .file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is empty: a compose file needs at least `services:`", .file.display())]
    Empty { file: PathBuf },
    #[error("`{}:{line}`: {message}", .file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("`{}:{line}`: `{path}` must be {expected}", .file.display())]
    Shape {
        file: PathBuf,
        line: usize,
        path: String,
        expected: String,
    },
    #[error("`{}:{line}`: `{path}`: bad port `{spec}`: {reason}", .file.display())]
    Port {
        file: PathBuf,
        line: usize,
        path: String,
        spec: String,
        reason: String,
    },
    #[error("`{}:{line}`: `{path}`: bad volume `{spec}`: {reason}", .file.display())]
    Volume {
        file: PathBuf,
        line: usize,
        path: String,
        spec: String,
        reason: String,
    },
    #[error("`{}:{line}`: `{path}`: {source}", .file.display())]
    Interpolation {
        file: PathBuf,
        line: usize,
        path: String,
        source: Box<InterpolateError>,
    },
}

impl crate::error::Diagnostic for ComposeFileError {
    fn exit(&self) -> crate::error::Exit {
        crate::error::Exit::Failure
    }

    fn hint(&self) -> Option<String> {
        match self {
            ComposeFileError::Interpolation { source, .. } => {
                crate::error::Diagnostic::hint(source.as_ref())
            }
            ComposeFileError::Port { .. } => Some(
                "a port is `8080:80`, `127.0.0.1:8080:80/udp`, `80`, or a mapping with `target`"
                    .into(),
            ),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------
// The typed model
// ---------------------------------------------------------------------------------

/// What the compose files describe, merged.
#[derive(Debug, Clone, PartialEq)]
pub struct ComposeModel {
    /// The top-level `name:` (the project name when `-p` is not given).
    pub name: Option<String>,
    pub services: BTreeMap<String, Service>,
    pub volumes: BTreeMap<String, VolumeDef>,
    pub networks: BTreeMap<String, NetworkDef>,
    /// The files read, in `-f` order.
    pub files: Vec<PathBuf>,
    /// Variables used without a default while unset (they became ""), sorted, each once;
    /// compose warns about each.
    pub unset_variables: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub image: Option<String>,
    /// Has a `build:` section.
    pub build: bool,
    pub profiles: Vec<String>,
    pub ports: Vec<PortBinding>,
    pub healthcheck: Option<Healthcheck>,
    pub depends_on: Vec<Dependency>,
    pub restart: Option<String>,
    pub mounts: Vec<Mount>,
    /// Networks the service joins, as written (keys of the top-level `networks:`).
    pub networks: Vec<String>,
    pub network_mode: Option<String>,
    pub container_name: Option<String>,
    /// Where the service is first defined.
    pub file: PathBuf,
    pub line: usize,
}

impl Service {
    /// Whether the service runs with these profiles enabled (`*` enables every one).
    pub fn is_active(&self, profiles: &[String]) -> bool {
        self.profiles.is_empty()
            || profiles
                .iter()
                .any(|p| p == "*" || self.profiles.contains(p))
    }
}

/// An inclusive range of ports (one port when `start == end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn single(port: u16) -> PortRange {
        PortRange {
            start: port,
            end: port,
        }
    }

    /// How many ports.
    pub fn count(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    pub fn is_single(&self) -> bool {
        self.start == self.end
    }

    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One entry of a service's `ports:`.
#[derive(Debug, Clone, PartialEq)]
pub struct PortBinding {
    /// IPv4 or IPv6 address, brackets stripped; `None` = every interface.
    pub host_ip: Option<String>,
    /// `None` = an ephemeral port chosen by Docker.
    pub host: Option<PortRange>,
    pub container: PortRange,
    /// "tcp", "udp" or "sctp".
    pub protocol: String,
    /// The variable the host port came from, with its default as written
    /// (`${KTRDR_API_PORT:-8000}`); `None` for a literal.
    pub host_var: Option<VarRef>,
    pub file: PathBuf,
    pub line: usize,
}

impl PortBinding {
    /// The key under which compose treats two entries as the same one when merging.
    fn merge_key(&self) -> (&str, Option<PortRange>, PortRange, &str) {
        (
            self.host_ip.as_deref().unwrap_or("0.0.0.0"),
            self.host,
            self.container,
            &self.protocol,
        )
    }
}

impl fmt::Display for PortBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host_ip {
            Some(ip) if ip.contains(':') => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        match (&self.host, &self.host_ip) {
            (Some(h), _) => write!(f, "{h}:")?,
            (None, Some(_)) => write!(f, ":")?,
            (None, None) => {}
        }
        write!(f, "{}/{}", self.container, self.protocol)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Healthcheck {
    /// As compose runs it: `["CMD", …]`, `["CMD-SHELL", "…"]`, `["NONE"]`; empty when
    /// not given (the image's own test is kept).
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
    /// `disable: true` or a test of `["NONE"]`.
    pub disabled: bool,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A named volume (a key of the top-level `volumes:`).
    Volume {
        name: String,
    },
    /// A host path, resolved against the project directory, `~` expanded.
    Bind {
        source: PathBuf,
    },
    Tmpfs,
    /// A volume without a name (`- /data`).
    Anonymous,
    /// Another long-syntax `type` (`npipe`, `image`, `cluster`).
    Other {
        kind: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeDef {
    pub external: bool,
    /// `name:`, or the old `external: {name: …}`.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkDef {
    pub external: bool,
    /// `name:`, or the old `external: {name: …}`.
    pub name: Option<String>,
    pub driver: Option<String>,
    /// `ipam.config` lists at least one entry (fixed subnets can clash between copies).
    pub has_ipam_config: bool,
}

/// A top-level network or volume and the name Docker knows it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedResource {
    pub key: String,
    pub name: String,
}

/// One side of a [`PortConflict`].
#[derive(Debug, Clone, PartialEq)]
pub struct PortUse {
    pub service: String,
    pub binding: PortBinding,
}

/// Two bindings of one model that would publish the same host port.
#[derive(Debug, Clone, PartialEq)]
pub struct PortConflict {
    /// The first port both would publish.
    pub port: u16,
    pub protocol: String,
    pub first: PortUse,
    pub second: PortUse,
}

impl fmt::Display for PortConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |u: &PortUse| format!("{}:{}", u.binding.file.display(), u.binding.line);
        write!(
            f,
            "host port {}/{} is published by `{}` (`{}`) and by `{}` (`{}`)",
            self.port,
            self.protocol,
            self.first.service,
            at(&self.first),
            self.second.service,
            at(&self.second)
        )
    }
}

impl ComposeModel {
    /// Services that run with these profiles: those without profiles, plus those with
    /// one of them (`*` enables every profile).
    pub fn active_services<'a>(
        &'a self,
        profiles: &'a [String],
    ) -> impl Iterator<Item = &'a Service> + 'a {
        self.services.values().filter(|s| s.is_active(profiles))
    }

    /// Every port entry of the active services (an entry without a host port publishes
    /// an ephemeral one).
    pub fn published_ports<'a>(
        &'a self,
        profiles: &'a [String],
    ) -> impl Iterator<Item = (&'a Service, &'a PortBinding)> + 'a {
        self.active_services(profiles)
            .flat_map(|s| s.ports.iter().map(move |p| (s, p)))
    }

    /// External networks, with the name they must exist under.
    pub fn external_networks(&self) -> Vec<NamedResource> {
        self.networks
            .iter()
            .filter(|(_, n)| n.external)
            .map(|(k, n)| NamedResource {
                key: k.clone(),
                name: n.name.clone().unwrap_or_else(|| k.clone()),
            })
            .collect()
    }

    /// External volumes, with the name they must exist under.
    pub fn external_volumes(&self) -> Vec<NamedResource> {
        self.volumes
            .iter()
            .filter(|(_, v)| v.external)
            .map(|(k, v)| NamedResource {
                key: k.clone(),
                name: v.name.clone().unwrap_or_else(|| k.clone()),
            })
            .collect()
    }

    /// Named volumes the project owns, with the name compose gives them:
    /// `<project>_<key>` unless `name:` is set.
    pub fn project_volumes(&self, project: &str) -> Vec<NamedResource> {
        self.volumes
            .iter()
            .filter(|(_, v)| !v.external)
            .map(|(k, v)| NamedResource {
                key: k.clone(),
                name: v.name.clone().unwrap_or_else(|| format!("{project}_{k}")),
            })
            .collect()
    }

    /// Services that run to completion rather than stay up: one that another service
    /// waits on with `service_completed_successfully`, or one with `restart: "no"` and
    /// no ports.
    pub fn one_shot_jobs(&self) -> Vec<&Service> {
        self.services
            .values()
            .filter(|s| {
                let awaited = self.services.values().any(|o| {
                    o.depends_on.iter().any(|d| {
                        d.service == s.name && d.condition == Condition::CompletedSuccessfully
                    })
                });
                awaited || (s.restart.as_deref() == Some("no") && s.ports.is_empty())
            })
            .collect()
    }

    /// Pairs of bindings among the active services that would publish the same host
    /// port (same protocol, overlapping ports, and the same address or a wildcard).
    pub fn duplicate_host_ports(&self, profiles: &[String]) -> Vec<PortConflict> {
        let uses: Vec<(&Service, &PortBinding, PortRange)> = self
            .published_ports(profiles)
            .filter_map(|(s, p)| p.host.map(|h| (s, p, h)))
            .collect();
        let mut conflicts = Vec::new();
        for (i, (sa, a, ha)) in uses.iter().enumerate() {
            for (sb, b, hb) in &uses[i + 1..] {
                if a.protocol == b.protocol
                    && ha.overlaps(hb)
                    && ips_overlap(a.host_ip.as_deref(), b.host_ip.as_deref())
                {
                    conflicts.push(PortConflict {
                        port: ha.start.max(hb.start),
                        protocol: a.protocol.clone(),
                        first: PortUse {
                            service: sa.name.clone(),
                            binding: (*a).clone(),
                        },
                        second: PortUse {
                            service: sb.name.clone(),
                            binding: (*b).clone(),
                        },
                    });
                }
            }
        }
        conflicts
    }
}

/// Whether two host addresses can collide: the same one, or a wildcard of its family,
/// or no address (every interface).
fn ips_overlap(a: Option<&str>, b: Option<&str>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return true;
    };
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => {
            x == y || (x.is_ipv4() == y.is_ipv4() && (x.is_unspecified() || y.is_unspecified()))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------

/// Read the compose files in `-f` order, later ones overriding earlier ones.
pub fn load(files: &[PathBuf], lookup: Lookup<'_>) -> Result<ComposeModel, ComposeFileError> {
    let mut texts = Vec::with_capacity(files.len());
    for file in files {
        let bytes = std::fs::read(file).map_err(|source| ComposeFileError::Read {
            file: file.clone(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| ComposeFileError::Syntax {
            file: file.clone(),
            line: line_of_byte(e.as_bytes(), e.utf8_error().valid_up_to()),
            message: "not UTF-8 text".into(),
        })?;
        texts.push(text);
    }
    let sources: Vec<(&Path, &str)> = files
        .iter()
        .zip(&texts)
        .map(|(f, t)| (f.as_path(), t.as_str()))
        .collect();
    parse_sources(&sources, lookup)
}

/// Read one compose file's text; `path` is for messages and resolving relative paths.
pub fn parse_str(
    path: &Path,
    text: &str,
    lookup: Lookup<'_>,
) -> Result<ComposeModel, ComposeFileError> {
    parse_sources(&[(path, text)], lookup)
}

/// Several files' texts, in `-f` order.
pub fn parse_sources(
    sources: &[(&Path, &str)],
    lookup: Lookup<'_>,
) -> Result<ComposeModel, ComposeFileError> {
    let files: Vec<PathBuf> = sources.iter().map(|(p, _)| p.to_path_buf()).collect();
    let mut unset = Vec::new();
    let mut root = Node::new(Value::Map(Vec::new()), 0, 0);
    for (index, (_, text)) in sources.iter().enumerate() {
        let mut reader = Reader {
            file: index,
            files: &files,
            lookup,
            unset: &mut unset,
        };
        for doc in reader.read_docs(text)? {
            merge_files(&mut root, doc, &files)?;
        }
    }
    unset.sort();
    unset.dedup();
    let project_dir = files
        .first()
        .and_then(|f| f.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let home = lookup("HOME").or_else(|| std::env::var("HOME").ok());
    let builder = Builder {
        files: &files,
        project_dir: &project_dir,
        home: home.as_deref(),
    };
    let mut model = builder.model(&root)?;
    model.unset_variables = unset;
    Ok(model)
}

fn line_of_byte(bytes: &[u8], at: usize) -> usize {
    bytes[..at.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

// ---------------------------------------------------------------------------------
// The untyped tree: YAML with anchors and merge keys resolved, strings interpolated
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    None,
    /// `!reset`: remove what earlier files set.
    Reset,
    /// `!override`: replace what earlier files set instead of merging.
    Override,
}

#[derive(Debug, Clone)]
struct Node {
    value: Value,
    /// Index into the model's files.
    file: usize,
    line: usize,
    tag: Tag,
}

#[derive(Debug, Clone)]
enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Interpolated text, and what each top-level reference produced in it.
    Str(String, Vec<Substitution>),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    line: usize,
    value: Node,
}

impl Node {
    fn new(value: Value, file: usize, line: usize) -> Node {
        Node {
            value,
            file,
            line,
            tag: Tag::None,
        }
    }

    fn str(text: String, file: usize, line: usize) -> Node {
        Node::new(Value::Str(text, Vec::new()), file, line)
    }

    fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// A scalar as text (numbers and booleans as YAML writes them).
    fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s, _) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(..) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Where a node sits, for messages (`services.backend.ports[2]`); built on the stack
/// and rendered only when an error needs it.
#[derive(Clone, Copy)]
struct At<'a> {
    parent: Option<&'a At<'a>>,
    seg: Seg<'a>,
}

#[derive(Clone, Copy)]
enum Seg<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> At<'a> {
    const ROOT: At<'static> = At {
        parent: None,
        seg: Seg::Root,
    };

    fn key(&'a self, key: &'a str) -> At<'a> {
        At {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }

    fn index(&'a self, i: usize) -> At<'a> {
        At {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut at = Some(self);
        while let Some(a) = at {
            segs.push(a.seg);
            at = a.parent;
        }
        let mut out = String::new();
        for seg in segs.iter().rev() {
            match seg {
                Seg::Root => {}
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        if out.is_empty() {
            out.push_str("(top level)");
        }
        out
    }
}

/// Turns one file's YAML into [`Node`]s.
struct Reader<'a> {
    file: usize,
    files: &'a [PathBuf],
    lookup: Lookup<'a>,
    unset: &'a mut Vec<String>,
}

impl Reader<'_> {
    fn path(&self) -> PathBuf {
        self.files.get(self.file).cloned().unwrap_or_default()
    }

    fn syntax(&self, line: usize, message: impl Into<String>) -> ComposeFileError {
        ComposeFileError::Syntax {
            file: self.path(),
            line,
            message: message.into(),
        }
    }

    /// The file's documents (usually one), each a non-empty mapping.
    fn read_docs(&mut self, text: &str) -> Result<Vec<Node>, ComposeFileError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if let Some(line) = too_deep_line(text) {
            return Err(self.syntax(line, "nested too deeply for a compose file"));
        }
        let docs = MarkedYaml::load_from_str(text).map_err(|e| {
            self.syntax(
                e.marker().line().max(1),
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        let mut out = Vec::new();
        for doc in &docs {
            if matches!(doc.data, YamlData::BadValue) {
                continue; // an empty document
            }
            let node = self.convert(doc, &At::ROOT, 0)?;
            match node.value {
                Value::Null => {}
                Value::Map(_) => out.push(node),
                _ => {
                    return Err(self.syntax(
                        node.line,
                        format!("the top level must be a mapping, not {}", node.kind()),
                    ));
                }
            }
        }
        if out.is_empty() {
            return Err(ComposeFileError::Empty { file: self.path() });
        }
        Ok(out)
    }

    fn convert(
        &mut self,
        y: &MarkedYaml<'_>,
        at: &At<'_>,
        depth: usize,
    ) -> Result<Node, ComposeFileError> {
        let line = y.span.start.line();
        if depth > MAX_DEPTH {
            return Err(self.syntax(line, "nested too deeply for a compose file"));
        }
        let value = match &y.data {
            YamlData::Value(s) => self.scalar(s, line, at)?,
            YamlData::Representation(s, _, _) => self.string(s, line, at)?,
            YamlData::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(self.convert(item, &at.index(i), depth + 1)?);
                }
                Value::Seq(out)
            }
            YamlData::Mapping(map) => {
                let mut entries: Vec<Entry> = Vec::with_capacity(map.len());
                let mut merges = Vec::new();
                for (k, v) in map {
                    let key = self.key(k)?;
                    if key == "<<" {
                        merges.push(v);
                        continue;
                    }
                    let value = self.convert(v, &at.key(&key), depth + 1)?;
                    entries.push(Entry {
                        key,
                        line: k.span.start.line(),
                        value,
                    });
                }
                for m in merges {
                    let source = self.convert(m, &at.key("<<"), depth + 1)?;
                    self.merge_key(&mut entries, source, at)?;
                }
                Value::Map(entries)
            }
            YamlData::Tagged(tag, inner) => {
                let mut node = self.convert(inner, at, depth + 1)?;
                if node.line == 0 {
                    node.line = line;
                }
                if tag.handle == "!" {
                    match tag.suffix.as_str() {
                        "reset" => node.tag = Tag::Reset,
                        "override" => node.tag = Tag::Override,
                        _ => {}
                    }
                }
                return Ok(node);
            }
            YamlData::Alias(_) | YamlData::BadValue => {
                return Err(self.syntax(line, format!("`{}`: invalid value", at.render())));
            }
        };
        Ok(Node::new(value, self.file, line))
    }

    fn scalar(
        &mut self,
        s: &Scalar<'_>,
        line: usize,
        at: &At<'_>,
    ) -> Result<Value, ComposeFileError> {
        Ok(match s {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::Int(*i),
            Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
            Scalar::String(text) => self.string(text, line, at)?,
        })
    }

    fn string(&mut self, text: &str, line: usize, at: &At<'_>) -> Result<Value, ComposeFileError> {
        let done = interpolate::interpolate(text, self.lookup).map_err(|source| {
            ComposeFileError::Interpolation {
                file: self.path(),
                line,
                path: at.render(),
                source: Box::new(source),
            }
        })?;
        self.unset.extend(done.unset);
        Ok(Value::Str(done.value, done.substitutions))
    }

    /// A mapping key as text; keys are not interpolated (as in compose).
    fn key(&self, k: &MarkedYaml<'_>) -> Result<String, ComposeFileError> {
        let data = match &k.data {
            YamlData::Tagged(_, inner) => &inner.data,
            d => d,
        };
        match data {
            YamlData::Value(Scalar::String(s)) => Ok(s.to_string()),
            YamlData::Value(Scalar::Integer(i)) => Ok(i.to_string()),
            YamlData::Value(Scalar::FloatingPoint(f)) => Ok(f.to_string()),
            YamlData::Value(Scalar::Boolean(b)) => Ok(b.to_string()),
            YamlData::Value(Scalar::Null) => Ok("null".into()),
            YamlData::Representation(s, _, _) => Ok(s.to_string()),
            _ => Err(self.syntax(
                k.span.start.line(),
                "a mapping key must be a plain value, not a list or a mapping",
            )),
        }
    }

    /// YAML merge keys: keys written in the mapping win; among several sources
    /// (`<<: [*a, *b]`) the earlier wins.
    fn merge_key(
        &self,
        entries: &mut Vec<Entry>,
        source: Node,
        at: &At<'_>,
    ) -> Result<(), ComposeFileError> {
        let line = source.line;
        let sources = match source.value {
            Value::Map(m) => vec![m],
            Value::Seq(items) => {
                let mut maps = Vec::with_capacity(items.len());
                for item in items {
                    match item.value {
                        Value::Map(m) => maps.push(m),
                        _ => return Err(self.merge_shape(line, at)),
                    }
                }
                maps
            }
            _ => return Err(self.merge_shape(line, at)),
        };
        for map in sources {
            for e in map {
                if !entries.iter().any(|x| x.key == e.key) {
                    entries.push(e);
                }
            }
        }
        Ok(())
    }

    fn merge_shape(&self, line: usize, at: &At<'_>) -> ComposeFileError {
        ComposeFileError::Shape {
            file: self.path(),
            line,
            path: format!("{}.<<", at.render())
                .trim_start_matches('.')
                .to_string(),
            expected: "a mapping or a list of mappings".into(),
        }
    }
}

/// The first line (1-based) whose structural prefix is too long for the parser's
/// recursion, skipping block scalars' content (which may be indented at will).
fn too_deep_line(text: &str) -> Option<usize> {
    let mut block_indent: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let rest = line.trim_start_matches(' ');
        let indent = line.len() - rest.len();
        if let Some(parent) = block_indent {
            if rest.is_empty() || indent > parent {
                continue;
            }
            block_indent = None;
        }
        let prefix = line.len() - line.trim_start_matches([' ', '\t', '-', '?', ':']).len();
        if prefix > MAX_PREFIX {
            return Some(n + 1);
        }
        if opens_block_scalar(rest) {
            block_indent = Some(indent);
        }
    }
    None
}

/// Whether a line ends with a block scalar indicator (`key: |`, `- >-`, `|2 # note`).
fn opens_block_scalar(line: &str) -> bool {
    let line = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    let last = line.trim_end().rsplit([' ', '\t']).next().unwrap_or("");
    let mut chars = last.chars();
    matches!(chars.next(), Some('|' | '>')) && chars.all(|c| matches!(c, '-' | '+' | '0'..='9'))
}

// ---------------------------------------------------------------------------------
// Merging files
// ---------------------------------------------------------------------------------

/// How one service attribute merges with the same attribute of an earlier file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Mappings key by key, lists appended, scalars replaced.
    Deep,
    /// The later value replaces the earlier (`command`, `entrypoint`, `healthcheck.test`).
    Replace,
    /// Both turned into `KEY=VALUE` lists and appended (`environment`, `labels`, …).
    ToList,
    /// A list of names turned into a mapping, then merged key by key.
    DependsOn,
    Networks,
    /// `build: ./dir` is `build: {context: ./dir}`.
    Build,
    /// The options are merged only when both files use the same driver.
    Logging,
    /// `healthcheck`: deep, but its `test` is replaced.
    Healthcheck,
}

fn service_rule(key: &str) -> Rule {
    match key {
        "command" | "entrypoint" => Rule::Replace,
        "annotations" | "dns" | "dns_opt" | "dns_search" | "env_file" | "label_file"
        | "environment" | "extra_hosts" | "labels" | "sysctls" | "tmpfs" => Rule::ToList,
        "depends_on" => Rule::DependsOn,
        "networks" => Rule::Networks,
        "build" => Rule::Build,
        "logging" => Rule::Logging,
        "healthcheck" => Rule::Healthcheck,
        _ => Rule::Deep,
    }
}

/// Merge one more file (or document) into what the earlier ones gave, the way compose
/// merges `-f` files: services by name; mappings key by key; lists appended (`ports` and
/// `volumes` then keep one entry per binding or target, later wins); scalars replaced;
/// `command`, `entrypoint` and `healthcheck.test` replaced; `environment`, `labels` and
/// the like appended as `KEY=VALUE` lists; `depends_on` and service `networks` merged
/// by name whether written as lists or mappings; a null changes nothing; `!reset`
/// removes and `!override` replaces.
fn merge_files(base: &mut Node, over: Node, files: &[PathBuf]) -> Result<(), ComposeFileError> {
    Merger { files }.merge_at(base, over, &At::ROOT, Level::Root)
}

/// Where in the file a mapping sits, to pick the merge rule of its keys.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Services,
    Service,
    Resources,
    Resource,
    Other,
}

struct Merger<'a> {
    files: &'a [PathBuf],
}

impl Merger<'_> {
    fn mismatch(&self, over: &Node, base: &Node, at: &At<'_>) -> ComposeFileError {
        ComposeFileError::Shape {
            file: self.files.get(over.file).cloned().unwrap_or_default(),
            line: over.line,
            path: at.render(),
            expected: format!(
                "{} as in the file it overrides, not {}",
                base.kind(),
                over.kind()
            ),
        }
    }

    /// Merge `over` into `base`, both sitting at `level`.
    fn merge_at(
        &self,
        base: &mut Node,
        over: Node,
        at: &At<'_>,
        level: Level,
    ) -> Result<(), ComposeFileError> {
        if over.is_null() && over.tag == Tag::None {
            return Ok(());
        }
        match (&mut base.value, over.value) {
            (Value::Map(b), Value::Map(o)) => self.merge_entries(b, o, at, level),
            (Value::Seq(b), Value::Seq(o)) => {
                b.extend(o.into_iter().map(settle));
                Ok(())
            }
            (Value::Map(_) | Value::Seq(_), value) => {
                let over = Node { value, ..over };
                Err(self.mismatch(&over, base, at))
            }
            (_, value) => {
                *base = settle(Node { value, ..over });
                Ok(())
            }
        }
    }

    fn merge_entries(
        &self,
        base: &mut Vec<Entry>,
        over: Vec<Entry>,
        at: &At<'_>,
        level: Level,
    ) -> Result<(), ComposeFileError> {
        for e in over {
            let pos = base.iter().position(|b| b.key == e.key);
            match (e.value.tag, pos) {
                (Tag::Reset, Some(i)) => {
                    base.remove(i);
                }
                (Tag::Reset, None) => {}
                (Tag::Override, Some(i)) => base[i] = settle_entry(e),
                (_, None) => base.push(settle_entry(e)),
                (Tag::None, Some(i)) => {
                    let child_at = at.key(&e.key);
                    let slot = &mut base[i].value;
                    match level {
                        Level::Root => {
                            let next = match e.key.as_str() {
                                "services" => Level::Services,
                                "networks" | "volumes" | "secrets" | "configs" => Level::Resources,
                                _ => Level::Other,
                            };
                            self.merge_at(slot, e.value, &child_at, next)?;
                        }
                        Level::Services => {
                            self.merge_at(slot, e.value, &child_at, Level::Service)?
                        }
                        Level::Resources => {
                            self.merge_at(slot, e.value, &child_at, Level::Resource)?
                        }
                        Level::Resource if e.key == "labels" => merge_as_lists(slot, e.value),
                        Level::Service => {
                            self.merge_service_attr(slot, e.value, &e.key, &child_at)?
                        }
                        _ => self.merge_at(slot, e.value, &child_at, Level::Other)?,
                    }
                }
            }
        }
        Ok(())
    }

    fn merge_service_attr(
        &self,
        base: &mut Node,
        over: Node,
        key: &str,
        at: &At<'_>,
    ) -> Result<(), ComposeFileError> {
        if over.is_null() {
            return Ok(());
        }
        match service_rule(key) {
            Rule::Deep => self.merge_at(base, over, at, Level::Other),
            Rule::Replace => {
                *base = settle(over);
                Ok(())
            }
            Rule::ToList => {
                merge_as_lists(base, over);
                Ok(())
            }
            Rule::DependsOn => {
                names_to_map(base, true);
                let mut over = over;
                names_to_map(&mut over, true);
                self.merge_at(base, over, at, Level::Other)
            }
            Rule::Networks => {
                names_to_map(base, false);
                let mut over = over;
                names_to_map(&mut over, false);
                self.merge_at(base, over, at, Level::Other)
            }
            Rule::Build => {
                build_to_map(base);
                let mut over = over;
                build_to_map(&mut over);
                self.merge_at(base, over, at, Level::Other)
            }
            Rule::Logging => {
                let driver = |n: &Node| n.get("driver").and_then(Node::scalar_text);
                match (driver(base), driver(&over)) {
                    (Some(a), Some(b)) if a != b => {
                        *base = settle(over);
                        Ok(())
                    }
                    _ => self.merge_at(base, over, at, Level::Other),
                }
            }
            Rule::Healthcheck => match (&mut base.value, over.value) {
                (Value::Map(b), Value::Map(o)) => {
                    for e in o {
                        match b.iter().position(|x| x.key == e.key) {
                            Some(i) if e.key == "test" && e.value.tag != Tag::Reset => {
                                if !e.value.is_null() {
                                    b[i] = settle_entry(e);
                                }
                            }
                            _ => self.merge_entries(b, vec![e], at, Level::Other)?,
                        }
                    }
                    Ok(())
                }
                (_, value) => self.merge_at(base, Node { value, ..over }, at, Level::Other),
            },
        }
    }
}

/// Drop `!reset` entries and forget tags in a subtree that is taken as it is.
fn settle(mut node: Node) -> Node {
    node.tag = Tag::None;
    node.value = match node.value {
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .filter(|e| e.value.tag != Tag::Reset)
                .map(settle_entry)
                .collect(),
        ),
        Value::Seq(items) => Value::Seq(items.into_iter().map(settle).collect()),
        v => v,
    };
    node
}

fn settle_entry(e: Entry) -> Entry {
    Entry {
        value: settle(e.value),
        ..e
    }
}

/// `KEY: value` mappings become `KEY=value` lists (sorted), then the lists are appended.
fn merge_as_lists(base: &mut Node, over: Node) {
    let over = settle(over);
    to_list(base);
    let mut over = over;
    to_list(&mut over);
    match (&mut base.value, over.value) {
        (Value::Seq(b), Value::Seq(o)) => b.extend(o),
        (_, value) => *base = Node { value, ..over },
    }
}

fn to_list(node: &mut Node) {
    let (file, line) = (node.file, node.line);
    match &mut node.value {
        Value::Map(entries) => {
            let mut items: Vec<Node> = entries
                .iter()
                .map(|e| {
                    let text = match e.value.scalar_text() {
                        Some(v) => format!("{}={v}", e.key),
                        None => e.key.clone(),
                    };
                    Node::str(text, file, e.line)
                })
                .collect();
            items.sort_by(|a, b| match (&a.value, &b.value) {
                (Value::Str(x, _), Value::Str(y, _)) => x.cmp(y),
                _ => std::cmp::Ordering::Equal,
            });
            node.value = Value::Seq(items);
        }
        Value::Str(..) | Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
            let item = Node::new(std::mem::replace(&mut node.value, Value::Null), file, line);
            node.value = Value::Seq(vec![item]);
        }
        _ => {}
    }
}

/// A list of names becomes a mapping of name → defaults (`depends_on` gets
/// `condition: service_started, required: true`; `networks` gets null).
fn names_to_map(node: &mut Node, dependency: bool) {
    let Value::Seq(items) = &node.value else {
        return;
    };
    let entries = items
        .iter()
        .filter_map(|item| {
            let name = item.scalar_text()?;
            let (file, line) = (item.file, item.line);
            let value = if dependency {
                Node::new(
                    Value::Map(vec![
                        Entry {
                            key: "condition".into(),
                            line,
                            value: Node::str("service_started".into(), file, line),
                        },
                        Entry {
                            key: "required".into(),
                            line,
                            value: Node::new(Value::Bool(true), file, line),
                        },
                    ]),
                    file,
                    line,
                )
            } else {
                Node::new(Value::Null, file, line)
            };
            Some(Entry {
                key: name,
                line,
                value,
            })
        })
        .collect();
    node.value = Value::Map(entries);
}

fn build_to_map(node: &mut Node) {
    if let Value::Str(..) = node.value {
        let (file, line) = (node.file, node.line);
        let context = Node::new(std::mem::replace(&mut node.value, Value::Null), file, line);
        node.value = Value::Map(vec![Entry {
            key: "context".into(),
            line,
            value: context,
        }]);
    }
}

// ---------------------------------------------------------------------------------
// The typed model from the merged tree
// ---------------------------------------------------------------------------------

struct Builder<'a> {
    files: &'a [PathBuf],
    project_dir: &'a Path,
    home: Option<&'a str>,
}

impl Builder<'_> {
    fn file(&self, node: &Node) -> PathBuf {
        self.files.get(node.file).cloned().unwrap_or_default()
    }

    fn shape(&self, node: &Node, at: &At<'_>, expected: &str) -> ComposeFileError {
        ComposeFileError::Shape {
            file: self.file(node),
            line: node.line,
            path: at.render(),
            expected: format!("{expected}, not {}", node.kind()),
        }
    }

    fn model(&self, root: &Node) -> Result<ComposeModel, ComposeFileError> {
        let mut model = ComposeModel {
            name: None,
            services: BTreeMap::new(),
            volumes: BTreeMap::new(),
            networks: BTreeMap::new(),
            files: self.files.to_vec(),
            unset_variables: Vec::new(),
        };
        let at = At::ROOT;
        if let Some(n) = root.get("name") {
            model.name = self.string(n, &at.key("name"))?;
        }
        if let Some(services) = root.get("services") {
            let at = at.key("services");
            for e in self.entries(services, &at)? {
                let service = self.service(e, &at.key(&e.key))?;
                model.services.insert(e.key.clone(), service);
            }
        }
        if let Some(volumes) = root.get("volumes") {
            let at = at.key("volumes");
            for e in self.entries(volumes, &at)? {
                let at = at.key(&e.key);
                let (external, name) = self.resource(&e.value, &at)?;
                model
                    .volumes
                    .insert(e.key.clone(), VolumeDef { external, name });
            }
        }
        if let Some(networks) = root.get("networks") {
            let at = at.key("networks");
            for e in self.entries(networks, &at)? {
                let at = at.key(&e.key);
                let (external, name) = self.resource(&e.value, &at)?;
                let driver = match e.value.get("driver") {
                    Some(d) => self.string(d, &at.key("driver"))?,
                    None => None,
                };
                let has_ipam_config = e
                    .value
                    .get("ipam")
                    .and_then(|i| i.get("config"))
                    .is_some_and(|c| matches!(&c.value, Value::Seq(s) if !s.is_empty()));
                model.networks.insert(
                    e.key.clone(),
                    NetworkDef {
                        external,
                        name,
                        driver,
                        has_ipam_config,
                    },
                );
            }
        }
        Ok(model)
    }

    /// A mapping's entries; null is an empty mapping.
    fn entries<'n>(&self, node: &'n Node, at: &At<'_>) -> Result<&'n [Entry], ComposeFileError> {
        match &node.value {
            Value::Map(entries) => Ok(entries),
            Value::Null => Ok(&[]),
            _ => Err(self.shape(node, at, "a mapping")),
        }
    }

    /// A list's items; null is an empty list.
    fn items<'n>(&self, node: &'n Node, at: &At<'_>) -> Result<&'n [Node], ComposeFileError> {
        match &node.value {
            Value::Seq(items) => Ok(items),
            Value::Null => Ok(&[]),
            _ => Err(self.shape(node, at, "a list")),
        }
    }

    /// A string (numbers accepted as written); null is `None`.
    fn string(&self, node: &Node, at: &At<'_>) -> Result<Option<String>, ComposeFileError> {
        match &node.value {
            Value::Null => Ok(None),
            Value::Str(s, _) => Ok(Some(s.clone())),
            Value::Int(_) | Value::Float(_) => Ok(node.scalar_text()),
            _ => Err(self.shape(node, at, "a string")),
        }
    }

    fn strings(&self, node: &Node, at: &At<'_>) -> Result<Vec<String>, ComposeFileError> {
        let mut out = Vec::new();
        for (i, item) in self.items(node, at)?.iter().enumerate() {
            let at = at.index(i);
            match self.string(item, &at)? {
                Some(s) => out.push(s),
                None => return Err(self.shape(item, &at, "a string")),
            }
        }
        Ok(out)
    }

    /// A boolean; after interpolation `"true"`/`"false"` strings count too.
    fn boolean(&self, node: &Node, at: &At<'_>) -> Result<Option<bool>, ComposeFileError> {
        match &node.value {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            Value::Str(s, _) => match s.to_ascii_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(self.shape(node, at, "`true` or `false`")),
            },
            _ => Err(self.shape(node, at, "`true` or `false`")),
        }
    }

    /// `external:` (a boolean, or the old `{name: …}`) and `name:` of a volume or network.
    fn resource(
        &self,
        node: &Node,
        at: &At<'_>,
    ) -> Result<(bool, Option<String>), ComposeFileError> {
        self.entries(node, at)?;
        let mut name = match node.get("name") {
            Some(n) => self.string(n, &at.key("name"))?,
            None => None,
        };
        let external = match node.get("external") {
            None => false,
            Some(ext) => {
                let at = at.key("external");
                match &ext.value {
                    Value::Map(_) => {
                        if let Some(n) = ext.get("name") {
                            let old = self.string(n, &at.key("name"))?;
                            name = name.or(old);
                        }
                        true
                    }
                    _ => self.boolean(ext, &at)?.unwrap_or(false),
                }
            }
        };
        Ok((external, name))
    }

    fn service(&self, entry: &Entry, at: &At<'_>) -> Result<Service, ComposeFileError> {
        let node = &entry.value;
        if !matches!(node.value, Value::Map(_)) {
            return Err(self.shape(node, at, "a mapping"));
        }
        let field = |key: &str| node.get(key);
        let string_field = |key: &str| -> Result<Option<String>, ComposeFileError> {
            match field(key) {
                Some(n) => self.string(n, &at.key(key)),
                None => Ok(None),
            }
        };
        let mut profiles = match field("profiles") {
            Some(n) => self.strings(n, &at.key("profiles"))?,
            None => Vec::new(),
        };
        dedup_in_order(&mut profiles);
        let ports = match field("ports") {
            Some(n) => self.ports(n, &at.key("ports"))?,
            None => Vec::new(),
        };
        let healthcheck = match field("healthcheck") {
            Some(n) if !n.is_null() => Some(self.healthcheck(n, &at.key("healthcheck"))?),
            _ => None,
        };
        let depends_on = match field("depends_on") {
            Some(n) => self.depends_on(n, &at.key("depends_on"))?,
            None => Vec::new(),
        };
        let mut mounts = match field("volumes") {
            Some(n) => self.mounts(n, &at.key("volumes"))?,
            None => Vec::new(),
        };
        if let Some(n) = field("tmpfs") {
            let at = at.key("tmpfs");
            let targets = match &n.value {
                Value::Str(..) => self.string(n, &at)?.into_iter().collect(),
                _ => self.strings(n, &at)?,
            };
            for t in targets {
                let target = t.split(':').next().unwrap_or("").to_string();
                mounts.push(Mount {
                    kind: MountKind::Tmpfs,
                    target,
                    read_only: false,
                });
            }
        }
        let networks = match field("networks") {
            Some(n) => match &n.value {
                Value::Map(entries) => entries.iter().map(|e| e.key.clone()).collect(),
                _ => self.strings(n, &at.key("networks"))?,
            },
            None => Vec::new(),
        };
        Ok(Service {
            name: entry.key.clone(),
            image: string_field("image")?,
            build: field("build").is_some_and(|b| !b.is_null()),
            profiles,
            ports,
            healthcheck,
            depends_on,
            restart: string_field("restart")?,
            mounts,
            networks,
            network_mode: string_field("network_mode")?,
            container_name: string_field("container_name")?,
            file: self.file(node),
            line: entry.line,
        })
    }

    // --- ports -------------------------------------------------------------------

    fn ports(&self, node: &Node, at: &At<'_>) -> Result<Vec<PortBinding>, ComposeFileError> {
        let mut out: Vec<PortBinding> = Vec::new();
        for (i, item) in self.items(node, at)?.iter().enumerate() {
            let at = at.index(i);
            let binding = self.port(item, &at)?;
            // Compose keeps one entry per (ip, host, container, protocol), later wins.
            match out
                .iter()
                .position(|p| p.merge_key() == binding.merge_key())
            {
                Some(j) => out[j] = binding,
                None => out.push(binding),
            }
        }
        Ok(out)
    }

    fn port_error(&self, node: &Node, at: &At<'_>, spec: &str, reason: String) -> ComposeFileError {
        ComposeFileError::Port {
            file: self.file(node),
            line: node.line,
            path: at.render(),
            spec: spec.to_string(),
            reason,
        }
    }

    fn port(&self, node: &Node, at: &At<'_>) -> Result<PortBinding, ComposeFileError> {
        let binding = |host_ip, host, container, protocol, host_var| PortBinding {
            host_ip,
            host,
            container,
            protocol,
            host_var,
            file: self.file(node),
            line: node.line,
        };
        match &node.value {
            Value::Int(i) => {
                let spec = i.to_string();
                let container = parse_range(&spec, "container port")
                    .map_err(|r| self.port_error(node, at, &spec, r))?;
                Ok(binding(None, None, container, "tcp".into(), None))
            }
            Value::Str(spec, subs) => {
                let p = parse_short_port(spec)
                    .map_err(|r| self.port_error(node, at, spec, with_source(r, subs)))?;
                let host_var = whole_var(subs, &p.host_span);
                Ok(binding(
                    p.host_ip,
                    p.host,
                    p.container,
                    p.protocol,
                    host_var,
                ))
            }
            Value::Map(_) => self.long_port(node, at),
            _ => Err(self.shape(node, at, "a string, a number or a mapping")),
        }
    }

    fn long_port(&self, node: &Node, at: &At<'_>) -> Result<PortBinding, ComposeFileError> {
        let spec_of = |n: &Node| n.scalar_text().unwrap_or_default();
        let Some(target) = node.get("target") else {
            return Err(self.port_error(node, at, "", "`target` is missing".into()));
        };
        let target_at = at.key("target");
        let target_text = match &target.value {
            Value::Int(_) | Value::Str(..) => spec_of(target),
            _ => return Err(self.shape(target, &target_at, "a port number")),
        };
        let container = parse_range(&target_text, "container port")
            .map_err(|r| self.port_error(target, &target_at, &target_text, r))?;
        let (host, host_var) = match node.get("published") {
            None => (None, None),
            Some(p) => {
                let pat = at.key("published");
                match &p.value {
                    Value::Null => (None, None),
                    Value::Int(_) | Value::Str(..) => {
                        let text = spec_of(p);
                        let subs: &[Substitution] = match &p.value {
                            Value::Str(_, subs) => subs,
                            _ => &[],
                        };
                        let host = if text.is_empty() {
                            None
                        } else {
                            parse_host(&text).map_err(|r| {
                                self.port_error(p, &pat, &text, with_source(r, subs))
                            })?
                        };
                        (host, whole_var(subs, &(0..text.len())))
                    }
                    _ => return Err(self.shape(p, &pat, "a port number or range")),
                }
            }
        };
        if let Some(h) = host {
            check_lengths(&h, &container).map_err(|r| self.port_error(node, at, "", r))?;
        }
        let host_ip = match node.get("host_ip") {
            Some(n) => match self.string(n, &at.key("host_ip"))? {
                Some(ip) if !ip.is_empty() => Some(
                    parse_ip(&ip).map_err(|r| self.port_error(n, &at.key("host_ip"), &ip, r))?,
                ),
                _ => None,
            },
            None => None,
        };
        let protocol = match node.get("protocol") {
            Some(n) => match self.string(n, &at.key("protocol"))? {
                Some(p) => parse_protocol(&p)
                    .map_err(|r| self.port_error(n, &at.key("protocol"), &p, r))?,
                None => "tcp".into(),
            },
            None => "tcp".into(),
        };
        Ok(PortBinding {
            host_ip,
            host,
            container,
            protocol,
            host_var,
            file: self.file(node),
            line: node.line,
        })
    }

    // --- healthcheck, depends_on ----------------------------------------------------

    fn healthcheck(&self, node: &Node, at: &At<'_>) -> Result<Healthcheck, ComposeFileError> {
        self.entries(node, at)?;
        let test = match node.get("test") {
            None => Vec::new(),
            Some(t) => match &t.value {
                Value::Null => Vec::new(),
                Value::Str(s, _) => vec!["CMD-SHELL".to_string(), s.clone()],
                Value::Seq(_) => self.strings(t, &at.key("test"))?,
                _ => return Err(self.shape(t, &at.key("test"), "a string or a list")),
            },
        };
        let duration = |key: &str| -> Result<Option<Duration>, ComposeFileError> {
            let Some(n) = node.get(key) else {
                return Ok(None);
            };
            let at = at.key(key);
            match &n.value {
                Value::Null => Ok(None),
                Value::Str(s, _) => parse_duration(s)
                    .map(Some)
                    .ok_or_else(|| self.shape(n, &at, "a duration like `30s` or `1m30s`")),
                _ => Err(self.shape(n, &at, "a duration like `30s` or `1m30s`")),
            }
        };
        let retries = match node.get("retries") {
            None => None,
            Some(n) => match &n.value {
                Value::Null => None,
                Value::Int(i) => Some(
                    u32::try_from(*i).map_err(|_| self.shape(n, &at.key("retries"), "a count"))?,
                ),
                Value::Str(s, _) => Some(
                    s.parse::<u32>()
                        .map_err(|_| self.shape(n, &at.key("retries"), "a count"))?,
                ),
                _ => return Err(self.shape(n, &at.key("retries"), "a count")),
            },
        };
        let disable = match node.get("disable") {
            Some(n) => self.boolean(n, &at.key("disable"))?.unwrap_or(false),
            None => false,
        };
        let disabled = disable || test.first().is_some_and(|t| t == "NONE");
        Ok(Healthcheck {
            interval: duration("interval")?,
            timeout: duration("timeout")?,
            start_period: duration("start_period")?,
            start_interval: duration("start_interval")?,
            test,
            retries,
            disabled,
            line: node.line,
        })
    }

    fn depends_on(&self, node: &Node, at: &At<'_>) -> Result<Vec<Dependency>, ComposeFileError> {
        match &node.value {
            Value::Null => Ok(Vec::new()),
            Value::Seq(_) => Ok(self
                .strings(node, at)?
                .into_iter()
                .map(|service| Dependency {
                    service,
                    condition: Condition::Started,
                    required: true,
                })
                .collect()),
            Value::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for e in entries {
                    let at = at.key(&e.key);
                    self.entries(&e.value, &at)?;
                    let condition = match e.value.get("condition") {
                        None => Condition::Started,
                        Some(c) => match self.string(c, &at.key("condition"))?.as_deref() {
                            None | Some("service_started") => Condition::Started,
                            Some("service_healthy") => Condition::Healthy,
                            Some("service_completed_successfully") => {
                                Condition::CompletedSuccessfully
                            }
                            Some(_) => {
                                return Err(self.shape(
                                    c,
                                    &at.key("condition"),
                                    "`service_started`, `service_healthy` or `service_completed_successfully`",
                                ));
                            }
                        },
                    };
                    let required = match e.value.get("required") {
                        Some(r) => self.boolean(r, &at.key("required"))?.unwrap_or(true),
                        None => true,
                    };
                    out.push(Dependency {
                        service: e.key.clone(),
                        condition,
                        required,
                    });
                }
                Ok(out)
            }
            _ => Err(self.shape(node, at, "a list or a mapping")),
        }
    }

    // --- volumes ---------------------------------------------------------------------

    fn mounts(&self, node: &Node, at: &At<'_>) -> Result<Vec<Mount>, ComposeFileError> {
        let mut out: Vec<Mount> = Vec::new();
        for (i, item) in self.items(node, at)?.iter().enumerate() {
            let at = at.index(i);
            let mount = match &item.value {
                Value::Str(spec, _) => parse_short_volume(spec, self.project_dir, self.home)
                    .map_err(|r| self.volume_error(item, &at, spec, r))?,
                Value::Map(_) => self.long_volume(item, &at)?,
                _ => return Err(self.shape(item, &at, "a string or a mapping")),
            };
            // Compose keeps one mount per target, later wins.
            match out.iter().position(|m| m.target == mount.target) {
                Some(j) => out[j] = mount,
                None => out.push(mount),
            }
        }
        Ok(out)
    }

    fn volume_error(
        &self,
        node: &Node,
        at: &At<'_>,
        spec: &str,
        reason: String,
    ) -> ComposeFileError {
        ComposeFileError::Volume {
            file: self.file(node),
            line: node.line,
            path: at.render(),
            spec: spec.to_string(),
            reason,
        }
    }

    fn long_volume(&self, node: &Node, at: &At<'_>) -> Result<Mount, ComposeFileError> {
        let get = |key: &str| -> Result<Option<String>, ComposeFileError> {
            match node.get(key) {
                Some(n) => self.string(n, &at.key(key)),
                None => Ok(None),
            }
        };
        let kind = get("type")?;
        let source = get("source")?.filter(|s| !s.is_empty());
        let Some(target) = get("target")?.filter(|t| !t.is_empty()) else {
            return Err(self.volume_error(node, at, "", "`target` is missing".into()));
        };
        let read_only = match node.get("read_only") {
            Some(n) => self.boolean(n, &at.key("read_only"))?.unwrap_or(false),
            None => false,
        };
        let kind = match kind.as_deref() {
            None => {
                return Err(self.volume_error(node, at, &target, "`type` is missing".into()));
            }
            Some("volume") => match source {
                Some(name) => MountKind::Volume { name },
                None => MountKind::Anonymous,
            },
            Some("bind") => match source {
                Some(s) => MountKind::Bind {
                    source: resolve_path(&s, self.project_dir, self.home),
                },
                None => {
                    return Err(self.volume_error(
                        node,
                        at,
                        &target,
                        "a bind mount needs a `source`".into(),
                    ));
                }
            },
            Some("tmpfs") => MountKind::Tmpfs,
            Some(other) => MountKind::Other {
                kind: other.to_string(),
            },
        };
        Ok(Mount {
            kind,
            target,
            read_only,
        })
    }
}

fn dedup_in_order(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|s| seen.insert(s.clone()));
}

// ---------------------------------------------------------------------------------
// Pure parsers
// ---------------------------------------------------------------------------------

/// A short-syntax port entry, split.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ShortPort {
    host_ip: Option<String>,
    host: Option<PortRange>,
    /// Where the host port sits in the text (empty when absent).
    host_span: Range<usize>,
    container: PortRange,
    protocol: String,
}

/// `[[ip:]host:]container[/protocol]`, the ip possibly in brackets (`[::1]:8080:80`)
/// or a bare IPv6 address; an empty host is an ephemeral port (`127.0.0.1::80`).
fn parse_short_port(spec: &str) -> Result<ShortPort, String> {
    let (body, protocol) = match spec.rfind('/') {
        Some(i) => (&spec[..i], parse_protocol(&spec[i + 1..])?),
        None => (spec, "tcp".to_string()),
    };
    let (host_ip, host_span, container_text) = if let Some(inner) = body.strip_prefix('[') {
        let close = inner
            .find(']')
            .ok_or_else(|| "unclosed `[` around the host IP".to_string())?;
        let ip = &inner[..close];
        let after = &inner[close + 1..];
        let rest = after
            .strip_prefix(':')
            .ok_or_else(|| "expected `[ip]:host:container`".to_string())?;
        let colon = rest
            .find(':')
            .ok_or_else(|| "expected `[ip]:host:container`".to_string())?;
        let host_start = 1 + close + 2;
        (Some(ip), host_start..host_start + colon, &rest[colon + 1..])
    } else {
        match body.rfind(':') {
            None => (None, 0..0, body),
            Some(c) => {
                let host_start = body[..c].rfind(':').map_or(0, |i| i + 1);
                let ip = (host_start > 0).then(|| &body[..host_start - 1]);
                (ip, host_start..c, &body[c + 1..])
            }
        }
    };
    let host_ip = match host_ip {
        Some(ip) => Some(parse_ip(ip)?),
        None => None,
    };
    if container_text.is_empty() {
        return Err("no container port".into());
    }
    let container = parse_range(container_text, "container port")?;
    let host = parse_host(&body[host_span.clone()])?;
    if let Some(h) = &host {
        check_lengths(h, &container)?;
    }
    Ok(ShortPort {
        host_ip,
        host,
        host_span: if host.is_some() {
            host_span
        } else {
            host_span.start..host_span.start
        },
        container,
        protocol,
    })
}

/// The host side: empty or `0` is an ephemeral port.
fn parse_host(text: &str) -> Result<Option<PortRange>, String> {
    if text.is_empty() || text == "0" {
        return Ok(None);
    }
    parse_range(text, "host port").map(Some)
}

fn check_lengths(host: &PortRange, container: &PortRange) -> Result<(), String> {
    if !container.is_single() && host.count() != container.count() {
        return Err(format!(
            "host ports {host} and container ports {container} are not the same length"
        ));
    }
    Ok(())
}

/// `80` or `5000-5005`, each between 1 and 65535.
fn parse_range(text: &str, what: &str) -> Result<PortRange, String> {
    let number = |s: &str| -> Result<u16, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{what} `{s}` is not a number"));
        }
        match s.parse::<u32>() {
            Ok(n @ 1..=65535) => Ok(n as u16),
            _ => Err(format!("{what} `{s}` is not between 1 and 65535")),
        }
    };
    match text.split_once('-') {
        None => number(text).map(PortRange::single),
        Some((a, b)) => {
            let (start, end) = (number(a)?, number(b)?);
            if start > end {
                return Err(format!("{what} range `{text}` ends before it starts"));
            }
            Ok(PortRange { start, end })
        }
    }
}

fn parse_protocol(text: &str) -> Result<String, String> {
    let p = text.to_ascii_lowercase();
    match p.as_str() {
        "tcp" | "udp" | "sctp" => Ok(p),
        _ => Err(format!(
            "unknown protocol `{text}` (expected `tcp`, `udp` or `sctp`)"
        )),
    }
}

/// An IPv4 or IPv6 address, brackets stripped.
fn parse_ip(text: &str) -> Result<String, String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|_| bare.to_string())
        .map_err(|_| format!("`{text}` is not an IP address"))
}

/// Name the variable a bad value came from, so the message points at what to fix.
fn with_source(reason: String, subs: &[Substitution]) -> String {
    match subs {
        [] => reason,
        [one] => format!("{reason} (from `{}`)", one.var),
        _ => {
            let vars: Vec<String> = subs.iter().map(|s| format!("`{}`", s.var)).collect();
            format!("{reason} (from {})", vars.join(", "))
        }
    }
}

/// The reference that produced exactly `span` of the interpolated text, if one did.
fn whole_var(subs: &[Substitution], span: &Range<usize>) -> Option<VarRef> {
    subs.iter()
        .find(|s| s.output == *span)
        .map(|s| s.var.clone())
}

/// `name:/path`, `./dir:/path:ro`, `/abs:/path`, `~/x:/path`, or `/path` (anonymous).
fn parse_short_volume(spec: &str, project_dir: &Path, home: Option<&str>) -> Result<Mount, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => (None, *target, ""),
        [source, target] => (Some(*source), *target, ""),
        [source, target, options] => (Some(*source), *target, *options),
        _ => return Err("too many `:` (expected `source:target[:options]`)".into()),
    };
    if target.is_empty() {
        return Err("no target path in the container".into());
    }
    let read_only = options.split(',').any(|o| o == "ro");
    let kind = match source {
        None => MountKind::Anonymous,
        Some("") => return Err("empty source before `:`".into()),
        Some(s) if is_file_path(s) => MountKind::Bind {
            source: resolve_path(s, project_dir, home),
        },
        Some(s) => MountKind::Volume {
            name: s.to_string(),
        },
    };
    Ok(Mount {
        kind,
        target: target.to_string(),
        read_only,
    })
}

/// Compose's rule: a source starting with `.`, `/` or `~` is a host path; anything
/// else names a volume.
fn is_file_path(source: &str) -> bool {
    source.starts_with(['.', '/', '~'])
}

/// Expand `~`, resolve against the project directory, and clean `.`/`..` lexically.
fn resolve_path(source: &str, project_dir: &Path, home: Option<&str>) -> PathBuf {
    let expanded = match (source.strip_prefix('~'), home) {
        (Some(""), Some(h)) => PathBuf::from(h),
        (Some(rest), Some(h)) if rest.starts_with('/') => {
            Path::new(h).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(source),
    };
    let joined = if expanded.is_absolute() {
        expanded
    } else {
        project_dir.join(expanded)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A Go-style duration (`30s`, `1m30s`, `1.5h`, `500ms`, `0`).
fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::interpolate::VarKind;
    use proptest::prelude::*;

    const FILE: &str = "/w/app/docker-compose.yml";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn parse(text: &str) -> ComposeModel {
        parse_str(Path::new(FILE), text, &no_env).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(text: &str) -> String {
        parse_str(Path::new(FILE), text, &no_env)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    }

    fn ports_of(text: &str, service: &str) -> Vec<PortBinding> {
        parse(text).services[service].ports.clone()
    }

    fn short(spec: &str) -> ShortPort {
        parse_short_port(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    fn fixture(name: &str) -> (PathBuf, String) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/compose")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        (path, text)
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    // --- ports ------------------------------------------------------------------

    #[test]
    fn short_port_forms() {
        let r = PortRange::single;
        let p = short("80");
        assert_eq!((p.host_ip, p.host, p.container), (None, None, r(80)));
        assert_eq!(p.protocol, "tcp");
        let p = short("8080:80");
        assert_eq!(
            (p.host_ip, p.host, p.container),
            (None, Some(r(8080)), r(80))
        );
        assert_eq!(p.host_span, 0..4);
        let p = short("127.0.0.1:8080:80");
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!((p.host, p.container), (Some(r(8080)), r(80)));
        assert_eq!(p.host_span, 10..14);
        let p = short("127.0.0.1::80");
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!((p.host, p.container), (None, r(80)));
        let p = short("8080:80/udp");
        assert_eq!((p.host, p.protocol.as_str()), (Some(r(8080)), "udp"));
        assert_eq!(short("9000:9000/SCTP").protocol, "sctp");
        let p = short("5000-5005:5000-5005");
        assert_eq!(
            p.host,
            Some(PortRange {
                start: 5000,
                end: 5005
            })
        );
        assert_eq!(
            p.container,
            PortRange {
                start: 5000,
                end: 5005
            }
        );
        // A host range for one container port: Docker picks one of them.
        let p = short("8000-8010:80");
        assert_eq!(
            p.host,
            Some(PortRange {
                start: 8000,
                end: 8010
            })
        );
        let p = short("0:80");
        assert_eq!(p.host, None);
    }

    #[test]
    fn short_port_ipv6() {
        let p = short("[::1]:8080:80");
        assert_eq!(p.host_ip.as_deref(), Some("::1"));
        assert_eq!(p.host, Some(PortRange::single(8080)));
        assert_eq!(p.host_span, 6..10);
        let p = short("[::]::80/udp");
        assert_eq!((p.host_ip.as_deref(), p.host), (Some("::"), None));
        assert_eq!(p.protocol, "udp");
        // Without brackets, everything before the last two fields is the address.
        let p = short("::1:8080:80");
        assert_eq!(p.host_ip.as_deref(), Some("::1"));
        assert_eq!(p.host, Some(PortRange::single(8080)));
        let p = short("[fe80::1]:5000-5001:5000-5001");
        assert_eq!(p.host_ip.as_deref(), Some("fe80::1"));
    }

    #[test]
    fn bad_short_ports_say_why() {
        let cases = [
            ("abc:80", "host port `abc` is not a number"),
            ("80:abc", "container port `abc` is not a number"),
            ("8080:", "no container port"),
            ("70000:80", "host port `70000` is not between 1 and 65535"),
            ("8080:0", "container port `0` is not between 1 and 65535"),
            ("8080:80/icmp", "unknown protocol `icmp`"),
            ("999.1.1.1:80:80", "`999.1.1.1` is not an IP address"),
            ("[::1:80:80", "unclosed `[`"),
            ("[::1]80:80", "expected `[ip]:host:container`"),
            ("5005-5000:80", "ends before it starts"),
            ("8080:80-81", "not the same length"),
            ("5000-5002:6000-6001", "not the same length"),
            ("", "no container port"),
            (":8080:80", "`` is not an IP address"),
        ];
        for (spec, why) in cases {
            let err = parse_short_port(spec).unwrap_err();
            assert!(err.contains(why), "{spec}: {err}");
        }
    }

    #[test]
    fn ports_in_a_file_short_and_long() {
        let text = r#"
services:
  web:
    image: nginx
    ports:
      - 80
      - "8080:80"
      - 127.0.0.1:8443:443/tcp
      - target: 9000
        published: 19000
        host_ip: "[::1]"
        protocol: udp
        mode: host
      - target: 7000
        published: "17000-17001"
      - target: "6000"
      - {target: 5000, published: ""}
"#;
        let ports = ports_of(text, "web");
        let shown: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            shown,
            [
                "80/tcp",
                "8080:80/tcp",
                "127.0.0.1:8443:443/tcp",
                "[::1]:19000:9000/udp",
                "17000-17001:7000/tcp",
                "6000/tcp",
                "5000/tcp",
            ]
        );
        assert_eq!(ports[1].line, 7);
        assert_eq!(ports[3].line, 9);
        assert!(ports.iter().all(|p| p.host_var.is_none()));
        assert_eq!(ports[0].file, Path::new(FILE));
    }

    #[test]
    fn host_port_variable_is_kept_with_its_default() {
        let text = r#"
services:
  backend:
    image: x
    ports:
      - "${KTRDR_API_PORT:-8000}:8000"
      - "127.0.0.1:${METRICS_PORT}:9100"
      - "${BIND_IP:-0.0.0.0}:7000:7000"
      - target: 5432
        published: ${KTRDR_DB_PORT:-5432}
      - "${WHOLE:-6000:6000}"
"#;
        let lookup = env(&[("KTRDR_API_PORT", "8003"), ("METRICS_PORT", "9101")]);
        let model = parse_str(Path::new(FILE), text, &lookup).unwrap();
        let ports = &model.services["backend"].ports;
        assert_eq!(ports[0].host, Some(PortRange::single(8003)));
        let var = ports[0].host_var.as_ref().unwrap();
        assert_eq!(var.name, "KTRDR_API_PORT");
        assert_eq!(var.kind, VarKind::DefaultIfUnsetOrEmpty);
        assert_eq!(var.default.as_deref(), Some("8000"));
        let var = ports[1].host_var.as_ref().unwrap();
        assert_eq!(
            (var.name.as_str(), var.kind),
            ("METRICS_PORT", VarKind::Plain)
        );
        assert_eq!(ports[1].host, Some(PortRange::single(9101)));
        // The variable gave the address, not the port.
        assert_eq!(ports[2].host_var, None);
        assert_eq!(ports[2].host_ip.as_deref(), Some("0.0.0.0"));
        assert_eq!(ports[3].host, Some(PortRange::single(5432)));
        assert_eq!(ports[3].host_var.as_ref().unwrap().name, "KTRDR_DB_PORT");
        // A variable that gives more than the host port is not the host port's variable.
        assert_eq!(ports[4].host_var, None);
    }

    #[test]
    fn unset_port_variable_without_default_is_ephemeral_and_reported() {
        let text = "services:\n  a:\n    image: x\n    ports: [\"${API_PORT}:80\"]\n";
        let model = parse(text);
        let p = &model.services["a"].ports[0];
        assert_eq!(p.host, None);
        assert_eq!(p.host_var.as_ref().unwrap().name, "API_PORT");
        assert_eq!(model.unset_variables, ["API_PORT"]);
    }

    #[test]
    fn bad_ports_name_file_line_and_entry() {
        let text = "services:\n  backend:\n    image: x\n    ports:\n      - \"8000:8000\"\n      - \"9000:9000\"\n      - [1, 2]\n";
        assert_eq!(
            parse_err(text),
            "`/w/app/docker-compose.yml:7`: `services.backend.ports[2]` must be a string, a number or a mapping, not a list"
        );
        let text = "services:\n  backend:\n    image: x\n    ports:\n      - \"${KTRDR_API_PORT:-abc}:8000\"\n";
        assert_eq!(
            parse_err(text),
            "`/w/app/docker-compose.yml:5`: `services.backend.ports[0]`: bad port `abc:8000`: host port `abc` is not a number (from `${KTRDR_API_PORT:-abc}`)"
        );
        let text = "services:\n  a:\n    ports:\n      - published: 80\n";
        assert!(parse_err(text).contains("`target` is missing"));
        let text = "services:\n  a:\n    ports:\n      - {target: 80, protocol: icmp}\n";
        assert!(parse_err(text).contains("unknown protocol `icmp`"));
        let text = "services:\n  a:\n    ports:\n      - {target: 80, published: x1}\n";
        assert!(parse_err(text).contains("host port `x1` is not a number"));
        let text = "services:\n  a:\n    ports: \"80:80\"\n";
        assert!(parse_err(text).contains("`services.a.ports` must be a list, not a string"));
    }

    #[test]
    fn same_binding_twice_is_one_entry() {
        let text = "services:\n  a:\n    image: x\n    ports: [\"8080:80\", \"0.0.0.0:8080:80\", {target: 80, published: 8080}]\n";
        let ports = ports_of(text, "a");
        assert_eq!(ports.len(), 1);
    }

    // --- interpolation in the model ---------------------------------------------

    #[test]
    fn every_string_value_is_interpolated() {
        let text = r#"
name: ${PROJECT:-demo}
services:
  app:
    image: "registry/${IMAGE:-app}:${TAG}"
    container_name: $NAME
    restart: ${RESTART-always}
"#;
        let lookup = env(&[("TAG", "1.2"), ("NAME", "app-1"), ("RESTART", "")]);
        let model = parse_str(Path::new(FILE), text, &lookup).unwrap();
        assert_eq!(model.name.as_deref(), Some("demo"));
        let app = &model.services["app"];
        assert_eq!(app.image.as_deref(), Some("registry/app:1.2"));
        assert_eq!(app.container_name.as_deref(), Some("app-1"));
        assert_eq!(app.restart.as_deref(), Some(""));
        assert!(model.unset_variables.is_empty());
    }

    #[test]
    fn unset_variables_are_listed_once_sorted() {
        let text = "x-a: $ZED\nservices:\n  a:\n    image: $IMG\n    environment:\n      - A=$IMG\n      - B=${ALPHA}\n";
        assert_eq!(parse(text).unset_variables, ["ALPHA", "IMG", "ZED"]);
    }

    #[test]
    fn required_variable_error_names_file_line_and_message() {
        let text = "services:\n  db:\n    image: x\n    environment:\n      PASSWORD: ${DB_PASSWORD:?set the database password}\n";
        assert_eq!(
            parse_err(text),
            "`/w/app/docker-compose.yml:5`: `services.db.environment.PASSWORD`: required variable `DB_PASSWORD` is missing a value: set the database password"
        );
        let text = "services:\n  db:\n    image: \"${BROKEN\"\n";
        assert_eq!(
            parse_err(text),
            "`/w/app/docker-compose.yml:3`: `services.db.image`: unclosed `${` in `${BROKEN`"
        );
    }

    #[test]
    fn interpolation_errors_carry_a_hint() {
        use crate::error::Diagnostic;
        let err = parse_str(
            Path::new(FILE),
            "services:\n  a:\n    image: ${X:?no}\n",
            &no_env,
        )
        .unwrap_err();
        assert_eq!(err.exit(), crate::error::Exit::Failure);
        assert!(err.hint().unwrap().contains("`X`"));
    }

    // --- YAML: anchors, aliases, merge keys, extensions ------------------------------

    #[test]
    fn anchors_and_merge_keys() {
        let text = r#"
x-common: &common
  image: base:1
  restart: always
  ports: ["8000:8000"]
x-logging: &logging
  restart: on-failure
  network_mode: host
services:
  one:
    <<: *common
  two:
    <<: *common
    image: two:2
  three:
    <<: [*logging, *common]
  four:
    <<: [*common, *logging]
    ports: *ports
x-ports: &ports ["9000:9000"]
"#;
        // An alias must follow its anchor: the last service refers forward.
        assert!(parse_err(text).contains("invalid"));
        let text = text.replace("    ports: *ports\n", "");
        let model = parse(&text);
        let s = &model.services;
        assert_eq!(s["one"].image.as_deref(), Some("base:1"));
        assert_eq!(s["one"].ports[0].host, Some(PortRange::single(8000)));
        // Keys written in the mapping win over merged ones.
        assert_eq!(s["two"].image.as_deref(), Some("two:2"));
        assert_eq!(s["two"].restart.as_deref(), Some("always"));
        // Among several sources, the earlier wins.
        assert_eq!(s["three"].restart.as_deref(), Some("on-failure"));
        assert_eq!(s["three"].network_mode.as_deref(), Some("host"));
        assert_eq!(s["four"].restart.as_deref(), Some("always"));
        // `x-` keys are not services, volumes or networks.
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn merged_values_keep_their_own_lines() {
        let text =
            "x-p: &p\n  ports:\n    - \"8000:8000\"\nservices:\n  a:\n    <<: *p\n    image: x\n";
        let model = parse(text);
        assert_eq!(model.services["a"].line, 5);
        assert_eq!(model.services["a"].ports[0].line, 3);
    }

    #[test]
    fn bad_merge_key_is_an_error() {
        let text = "services:\n  a:\n    <<: 3\n    image: x\n";
        assert_eq!(
            parse_err(text),
            "`/w/app/docker-compose.yml:3`: `services.a.<<` must be a mapping or a list of mappings"
        );
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let text = "services:\n  a:\n    image: x\n   bad: [\n";
        let err = parse_err(text);
        assert!(
            err.starts_with("`/w/app/docker-compose.yml:4`: invalid YAML: "),
            "{err}"
        );
        let err = parse_err("services:\n  a: {image: x\n");
        assert!(err.starts_with("`/w/app/docker-compose.yml:"), "{err}");
        let err = parse_err("services:\n  a:\n    image: x\n  a:\n    image: y\n");
        assert!(err.contains(":4`: invalid YAML: duplicated key"), "{err}");
    }

    #[test]
    fn wrong_shapes_name_the_path() {
        let cases = [
            ("- a\n- b\n", "the top level must be a mapping, not a list"),
            (
                "services: [a]\n",
                "`services` must be a mapping, not a list",
            ),
            (
                "services:\n  a: 3\n",
                "`services.a` must be a mapping, not a number",
            ),
            (
                "services:\n  a:\n    image: [x]\n",
                "`services.a.image` must be a string",
            ),
            (
                "services:\n  a:\n    profiles: prod\n",
                "`services.a.profiles` must be a list, not a string",
            ),
            (
                "services:\n  a:\n    depends_on: db\n",
                "`services.a.depends_on` must be a list or a mapping",
            ),
            (
                "services:\n  a:\n    depends_on:\n      db:\n        condition: done\n",
                "`services.a.depends_on.db.condition` must be `service_started`",
            ),
            (
                "services:\n  a:\n    healthcheck:\n      interval: soon\n",
                "`services.a.healthcheck.interval` must be a duration",
            ),
            (
                "services:\n  a:\n    healthcheck:\n      retries: -1\n",
                "`services.a.healthcheck.retries` must be a count",
            ),
            (
                "volumes:\n  v:\n    external: maybe\n",
                "`volumes.v.external` must be `true` or `false`",
            ),
            (
                "services:\n  ? [a]\n  : 1\n",
                "a mapping key must be a plain value",
            ),
        ];
        for (text, want) in cases {
            let err = parse_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn empty_files_are_errors() {
        assert_eq!(
            parse_err(""),
            "`/w/app/docker-compose.yml` is empty: a compose file needs at least `services:`"
        );
        assert!(parse_err("# only a comment\n").contains("is empty"));
        assert!(parse_err("---\n...\n").contains("is empty"));
        // A mapping with nothing in it is a (useless) compose file.
        assert!(parse("services:\n").services.is_empty());
    }

    #[test]
    fn several_documents_merge_in_order() {
        let model =
            parse("services:\n  a:\n    image: one\n---\nservices:\n  a:\n    image: two\n");
        assert_eq!(model.services["a"].image.as_deref(), Some("two"));
    }

    // --- services ------------------------------------------------------------------

    #[test]
    fn profiles_select_services() {
        let text = r#"
services:
  always: {image: x}
  prod: {image: x, profiles: [local-prod]}
  debug: {image: x, profiles: [debug, local-prod, debug]}
"#;
        let model = parse(text);
        let names = |profiles: &[&str]| -> Vec<String> {
            let profiles = strings(profiles);
            model
                .active_services(&profiles)
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names(&[]), ["always"]);
        assert_eq!(names(&["local-prod"]), ["always", "debug", "prod"]);
        assert_eq!(names(&["debug"]), ["always", "debug"]);
        assert_eq!(names(&["*"]), ["always", "debug", "prod"]);
        assert_eq!(model.services["debug"].profiles, ["debug", "local-prod"]);
    }

    #[test]
    fn healthchecks() {
        let text = r#"
services:
  a:
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost"]
      interval: 1m30s
      timeout: 500ms
      retries: 3
      start_period: 1.5s
      start_interval: 2s
  b:
    healthcheck:
      test: curl -f http://localhost
  c:
    healthcheck:
      disable: true
  d:
    healthcheck:
      test: ["NONE"]
  e:
    image: x
  f:
    healthcheck:
      interval: 10s
"#;
        let s = parse(text).services;
        let a = s["a"].healthcheck.as_ref().unwrap();
        assert_eq!(a.test, ["CMD", "curl", "-f", "http://localhost"]);
        assert_eq!(a.interval, Some(Duration::from_secs(90)));
        assert_eq!(a.timeout, Some(Duration::from_millis(500)));
        assert_eq!(a.retries, Some(3));
        assert_eq!(a.start_period, Some(Duration::from_millis(1500)));
        assert_eq!(a.start_interval, Some(Duration::from_secs(2)));
        assert!(!a.disabled);
        assert_eq!(a.line, 5);
        let b = s["b"].healthcheck.as_ref().unwrap();
        assert_eq!(b.test, ["CMD-SHELL", "curl -f http://localhost"]);
        assert!(s["c"].healthcheck.as_ref().unwrap().disabled);
        assert!(s["d"].healthcheck.as_ref().unwrap().disabled);
        assert!(s["e"].healthcheck.is_none());
        let f = s["f"].healthcheck.as_ref().unwrap();
        assert!(f.test.is_empty() && !f.disabled);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        for bad in ["", "5", "s", "1x", "1.2.3s", "-1s", "1 s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn dependencies_and_one_shot_jobs() {
        let text = r#"
services:
  migrate:
    image: x
  seed:
    image: x
    restart: "no"
  web:
    image: x
    restart: "no"
    ports: ["80:80"]
    depends_on:
      migrate:
        condition: service_completed_successfully
      db:
        condition: service_healthy
        required: false
      cache:
  db:
    image: x
    depends_on: [seed]
  cache:
    image: x
"#;
        let model = parse(text);
        let deps = &model.services["web"].depends_on;
        assert_eq!(
            deps,
            &[
                Dependency {
                    service: "migrate".into(),
                    condition: Condition::CompletedSuccessfully,
                    required: true
                },
                Dependency {
                    service: "db".into(),
                    condition: Condition::Healthy,
                    required: false
                },
                Dependency {
                    service: "cache".into(),
                    condition: Condition::Started,
                    required: true
                },
            ]
        );
        assert_eq!(
            model.services["db"].depends_on[0].condition,
            Condition::Started
        );
        let jobs: Vec<&str> = model
            .one_shot_jobs()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(jobs, ["migrate", "seed"]);
    }

    #[test]
    fn mounts_short_and_long() {
        let text = r#"
services:
  app:
    image: x
    volumes:
      - data:/var/lib/data
      - ./src:/app/src:ro
      - ../shared/./x:/shared:rw,z
      - /abs/path:/abs
      - ~/cache:/cache
      - /anonymous
      - type: bind
        source: ./conf
        target: /etc/app
        read_only: true
      - type: volume
        source: logs
        target: /logs
      - type: volume
        target: /scratch
      - type: tmpfs
        target: /run
      - type: image
        source: alpine
        target: /img
    tmpfs:
      - /tmp:size=64m
"#;
        let lookup = env(&[("HOME", "/home/me")]);
        let model = parse_str(Path::new(FILE), text, &lookup).unwrap();
        let got: Vec<(MountKind, &str, bool)> = model.services["app"]
            .mounts
            .iter()
            .map(|m| (m.kind.clone(), m.target.as_str(), m.read_only))
            .collect();
        let bind = |p: &str| MountKind::Bind {
            source: PathBuf::from(p),
        };
        let vol = |n: &str| MountKind::Volume { name: n.into() };
        assert_eq!(
            got,
            [
                (vol("data"), "/var/lib/data", false),
                (bind("/w/app/src"), "/app/src", true),
                (bind("/w/shared/x"), "/shared", false),
                (bind("/abs/path"), "/abs", false),
                (bind("/home/me/cache"), "/cache", false),
                (MountKind::Anonymous, "/anonymous", false),
                (bind("/w/app/conf"), "/etc/app", true),
                (vol("logs"), "/logs", false),
                (MountKind::Anonymous, "/scratch", false),
                (MountKind::Tmpfs, "/run", false),
                (
                    MountKind::Other {
                        kind: "image".into()
                    },
                    "/img",
                    false
                ),
                (MountKind::Tmpfs, "/tmp", false),
            ]
        );
    }

    #[test]
    fn bad_mounts_say_why() {
        let cases = [
            ("- a:b:c:d", "bad volume `a:b:c:d`: too many `:`"),
            ("- \"data:\"", "no target path"),
            ("- \":/x\"", "empty source"),
            (
                "- {type: bind, target: /x}",
                "a bind mount needs a `source`",
            ),
            ("- {source: x, target: /x}", "`type` is missing"),
            ("- {type: volume, source: x}", "`target` is missing"),
        ];
        for (item, want) in cases {
            let text = format!("services:\n  a:\n    volumes:\n      {item}\n");
            let err = parse_err(&text);
            assert!(err.contains(want), "{item}: {err}");
            assert!(
                err.contains(":4`: `services.a.volumes[0]`"),
                "{item}: {err}"
            );
        }
    }

    #[test]
    fn networks_and_misc_fields() {
        let text = r#"
services:
  a:
    image: x
    build: .
    networks: [front, back]
    container_name: a-1
  b:
    build:
      context: .
    networks:
      back:
        aliases: [bee]
      default:
    network_mode: "service:a"
"#;
        let s = parse(text).services;
        assert!(s["a"].build && s["b"].build);
        assert_eq!(s["a"].networks, ["front", "back"]);
        assert_eq!(s["b"].networks, ["back", "default"]);
        assert_eq!(s["b"].network_mode.as_deref(), Some("service:a"));
        assert_eq!(s["a"].container_name.as_deref(), Some("a-1"));
        assert_eq!((s["a"].line, s["b"].line), (3, 8));
    }

    // --- top-level resources -------------------------------------------------------

    #[test]
    fn external_resources_both_forms() {
        let text = r#"
volumes:
  data:
  named:
    name: my-data
  auth:
    external: true
  old:
    external:
      name: legacy-volume
  renamed:
    external: true
    name: real-volume
networks:
  default:
  obs:
    external: true
  old-net:
    external:
      name: legacy-net
  fixed:
    driver: bridge
    ipam:
      config:
        - subnet: 172.28.0.0/16
  empty-ipam:
    ipam:
      driver: default
"#;
        let model = parse(text);
        let pairs = |v: Vec<NamedResource>| -> Vec<(String, String)> {
            v.into_iter().map(|r| (r.key, r.name)).collect()
        };
        let p = |k: &str, n: &str| (k.to_string(), n.to_string());
        assert_eq!(
            pairs(model.external_volumes()),
            [
                p("auth", "auth"),
                p("old", "legacy-volume"),
                p("renamed", "real-volume")
            ]
        );
        assert_eq!(
            pairs(model.external_networks()),
            [p("obs", "obs"), p("old-net", "legacy-net")]
        );
        assert_eq!(
            pairs(model.project_volumes("ktrdr--x")),
            [p("data", "ktrdr--x_data"), p("named", "my-data")]
        );
        assert_eq!(model.networks["fixed"].driver.as_deref(), Some("bridge"));
        assert!(model.networks["fixed"].has_ipam_config);
        assert!(!model.networks["empty-ipam"].has_ipam_config);
        assert!(!model.networks["default"].external);
    }

    // --- port conflicts ---------------------------------------------------------------

    #[test]
    fn duplicate_host_ports_within_one_model() {
        let text = r#"
services:
  api:
    image: x
    ports:
      - "8000:8000"
      - "127.0.0.1:9000:9000"
      - "5353:53/udp"
  admin:
    image: x
    ports:
      - "127.0.0.1:8000:80"
      - "127.0.0.2:9000:9000"
      - "5353:53/tcp"
      - "80"
  batch:
    image: x
    profiles: [jobs]
    ports:
      - "7990-8010:7990-8010"
  twice:
    image: x
    ports:
      - "[::1]:6000:6000"
      - "[::1]:6000:7000"
      - "0.0.0.0:6001:6001"
      - "[::1]:6001:6002"
"#;
        let model = parse(text);
        let found = |profiles: &[&str]| -> Vec<String> {
            model
                .duplicate_host_ports(&strings(profiles))
                .iter()
                .map(|c| {
                    format!(
                        "{} {} {} {}",
                        c.port, c.protocol, c.first.service, c.second.service
                    )
                })
                .collect()
        };
        assert_eq!(found(&[]), ["8000 tcp admin api", "6000 tcp twice twice"]);
        assert_eq!(
            found(&["jobs"]),
            [
                "8000 tcp admin api",
                "8000 tcp admin batch",
                "8000 tcp api batch",
                "6000 tcp twice twice"
            ]
        );
        let c = &model.duplicate_host_ports(&[])[0];
        assert_eq!(
            c.to_string(),
            "host port 8000/tcp is published by `admin` (`/w/app/docker-compose.yml:12`) and by `api` (`/w/app/docker-compose.yml:6`)"
        );
    }

    #[test]
    fn addresses_overlap_when_equal_or_wildcard() {
        assert!(ips_overlap(None, Some("127.0.0.1")));
        assert!(ips_overlap(Some("0.0.0.0"), Some("127.0.0.1")));
        assert!(ips_overlap(Some("::"), Some("::1")));
        assert!(!ips_overlap(Some("::"), Some("127.0.0.1")));
        assert!(!ips_overlap(Some("127.0.0.1"), Some("127.0.0.2")));
        assert!(ips_overlap(Some("127.0.0.1"), Some("127.0.0.1")));
    }

    // --- several files -------------------------------------------------------------

    fn merged(base: &str, over: &str) -> ComposeModel {
        let a = Path::new("/w/app/compose.yml");
        let b = Path::new("/w/app/override/compose.override.yml");
        parse_sources(&[(a, base), (b, over)], &no_env).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn override_file_merges_like_compose() {
        let base = r#"
name: base
services:
  web:
    image: web:1
    command: ["serve", "--port", "80"]
    environment:
      A: "1"
      B: "2"
    ports: ["8080:80", "9090:90"]
    volumes: ["data:/data", "./conf:/conf"]
    depends_on: [db]
    networks: [front]
    profiles: [web]
    healthcheck:
      test: ["CMD", "true"]
      interval: 5s
  db:
    image: db:1
    ports: ["5432:5432"]
volumes:
  data:
networks:
  front:
"#;
        let over = r#"
name: over
services:
  web:
    image: web:2
    command: ["serve"]
    environment: ["B=3", "C=4"]
    ports: ["8080:80", "8443:443"]
    volumes: ["other:/data", "./logs:/logs"]
    depends_on:
      db:
        condition: service_healthy
      cache:
        condition: service_started
    networks:
      back:
    profiles: [extra]
    healthcheck:
      test: ["CMD", "false"]
      retries: 2
  cache:
    image: cache:1
  db:
    ports: !reset []
    restart: always
volumes:
  other:
    external: true
"#;
        let model = merged(base, over);
        assert_eq!(model.name.as_deref(), Some("over"));
        assert_eq!(
            model.files,
            [
                PathBuf::from("/w/app/compose.yml"),
                PathBuf::from("/w/app/override/compose.override.yml")
            ]
        );
        let web = &model.services["web"];
        assert_eq!(web.image.as_deref(), Some("web:2"));
        let ports: Vec<String> = web.ports.iter().map(|p| p.to_string()).collect();
        assert_eq!(ports, ["8080:80/tcp", "9090:90/tcp", "8443:443/tcp"]);
        // The merged-in duplicate is the later file's entry.
        assert!(web.ports[0].file.ends_with("compose.override.yml"));
        let targets: Vec<(&str, &MountKind)> = web
            .mounts
            .iter()
            .map(|m| (m.target.as_str(), &m.kind))
            .collect();
        assert_eq!(
            targets,
            [
                (
                    "/data",
                    &MountKind::Volume {
                        name: "other".into()
                    }
                ),
                (
                    "/conf",
                    &MountKind::Bind {
                        source: "/w/app/conf".into()
                    }
                ),
                // Relative paths resolve against the first file's directory.
                (
                    "/logs",
                    &MountKind::Bind {
                        source: "/w/app/logs".into()
                    }
                ),
            ]
        );
        let deps: Vec<(&str, Condition)> = web
            .depends_on
            .iter()
            .map(|d| (d.service.as_str(), d.condition))
            .collect();
        assert_eq!(
            deps,
            [("db", Condition::Healthy), ("cache", Condition::Started)]
        );
        assert_eq!(web.networks, ["front", "back"]);
        assert_eq!(web.profiles, ["web", "extra"]);
        let hc = web.healthcheck.as_ref().unwrap();
        assert_eq!(hc.test, ["CMD", "false"]);
        assert_eq!(hc.interval, Some(Duration::from_secs(5)));
        assert_eq!(hc.retries, Some(2));
        // A service first defined in the base keeps the base's file and line.
        assert_eq!(
            (web.file.as_path(), web.line),
            (Path::new("/w/app/compose.yml"), 4)
        );
        let db = &model.services["db"];
        assert!(db.ports.is_empty());
        assert_eq!(db.restart.as_deref(), Some("always"));
        assert_eq!(db.image.as_deref(), Some("db:1"));
        let cache = &model.services["cache"];
        assert!(cache.file.ends_with("compose.override.yml"));
        assert!(model.volumes["other"].external);
        assert!(!model.volumes["data"].external);
    }

    #[test]
    fn override_reset_and_replace() {
        let base = "services:\n  a:\n    image: x\n    ports: [\"80:80\"]\n    restart: always\n    healthcheck:\n      test: [CMD, \"true\"]\n  b:\n    image: y\n";
        let over = "services:\n  a:\n    ports: !override [\"81:81\"]\n    restart: !reset null\n    healthcheck: !reset {}\n  b: !reset\n";
        let model = merged(base, over);
        let a = &model.services["a"];
        let ports: Vec<String> = a.ports.iter().map(|p| p.to_string()).collect();
        assert_eq!(ports, ["81:81/tcp"]);
        assert_eq!(a.restart, None);
        assert!(a.healthcheck.is_none());
        assert!(!model.services.contains_key("b"));
        // In the first file, a reset is simply absent.
        let model = parse("services:\n  a:\n    image: x\n    restart: !reset always\n");
        assert_eq!(model.services["a"].restart, None);
    }

    #[test]
    fn override_null_changes_nothing_and_shapes_must_agree() {
        let model = merged(
            "services:\n  a:\n    image: x\n",
            "services:\n  a:\n    image:\n",
        );
        assert_eq!(model.services["a"].image.as_deref(), Some("x"));
        let a = Path::new("/w/a.yml");
        let b = Path::new("/w/b.yml");
        let err = parse_sources(
            &[
                (a, "services:\n  a:\n    ports: [\"80:80\"]\n"),
                (b, "services:\n  a:\n    ports: \"81:81\"\n"),
            ],
            &no_env,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`/w/b.yml:3`: `services.a.ports` must be a list as in the file it overrides, not a string"
        );
        // Mappings and lists mix where compose allows it.
        let model = merged(
            "services:\n  a:\n    build: ./a\n    environment: [A=1]\n    labels: {x: y}\n    networks: {n: {}}\n",
            "services:\n  a:\n    build: {dockerfile: Dockerfile.dev}\n    environment: {B: 2}\n    labels: [z=w]\n    networks: [m]\n",
        );
        assert!(model.services["a"].build);
        assert_eq!(model.services["a"].networks, ["n", "m"]);
    }

    #[test]
    fn load_reads_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("docker-compose.yml");
        let b = dir.path().join("docker-compose.override.yml");
        std::fs::write(
            &a,
            "services:\n  a:\n    image: one\n    volumes: [./d:/d]\n",
        )
        .unwrap();
        std::fs::write(&b, "services:\n  a:\n    image: two\n").unwrap();
        let model = load(&[a.clone(), b.clone()], &no_env).unwrap();
        assert_eq!(model.services["a"].image.as_deref(), Some("two"));
        assert_eq!(
            model.services["a"].mounts[0].kind,
            MountKind::Bind {
                source: dir.path().join("d")
            }
        );
        let missing = dir.path().join("nope.yml");
        let err = load(&[a, missing.clone()], &no_env).unwrap_err();
        assert!(matches!(err, ComposeFileError::Read { ref file, .. } if *file == missing));
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read `{}`: ", missing.display()))
        );
        std::fs::write(&b, b"services:\n  a:\n    image: \xff\n").unwrap();
        let err = load(&[b], &no_env).unwrap_err().to_string();
        assert!(err.ends_with(":3`: not UTF-8 text"), "{err}");
    }

    // --- the ktrdr fixtures ----------------------------------------------------------

    fn host_vars(model: &ComposeModel, profiles: &[&str]) -> Vec<(String, String, u16, u16)> {
        model
            .published_ports(&strings(profiles))
            .map(|(s, p)| {
                let var = p.host_var.as_ref().unwrap();
                assert_eq!(var.kind, VarKind::DefaultIfUnsetOrEmpty);
                (
                    s.name.clone(),
                    var.name.clone(),
                    var.default_value().unwrap().parse().unwrap(),
                    p.container.start,
                )
            })
            .collect()
    }

    #[test]
    fn ktrdr_today_fixture() {
        let (path, text) = fixture("ktrdr-today.yml");
        let lookup = env(&[("KTRDR_API_PORT", "8003"), ("KTRDR_DATA_DIR", "/srv/data")]);
        let model = parse_str(&path, &text, &lookup).unwrap();
        assert!(
            model.unset_variables.is_empty(),
            "{:?}",
            model.unset_variables
        );
        let names: Vec<&str> = model.services.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "assessment-agent-1",
                "backend",
                "backtest-worker-1",
                "backtest-worker-2",
                "db",
                "design-agent-1",
                "mcp-local",
                "training-worker-1",
                "training-worker-2"
            ]
        );
        let h = |s: &str, v: &str, d: u16, c: u16| (s.to_string(), v.to_string(), d, c);
        assert_eq!(
            host_vars(&model, &[]),
            [
                h(
                    "assessment-agent-1",
                    "KTRDR_ASSESSMENT_AGENT_PORT",
                    5020,
                    5020
                ),
                h("backend", "KTRDR_API_PORT", 8000, 8000),
                h("backtest-worker-1", "KTRDR_WORKER_PORT_1", 5003, 5003),
                h("backtest-worker-2", "KTRDR_WORKER_PORT_2", 5004, 5004),
                h("db", "KTRDR_DB_PORT", 5432, 5432),
                h("design-agent-1", "KTRDR_DESIGN_AGENT_PORT", 5010, 5010),
                h("training-worker-1", "KTRDR_WORKER_PORT_3", 5005, 5005),
                h("training-worker-2", "KTRDR_WORKER_PORT_4", 5006, 5006),
            ]
        );
        let backend = &model.services["backend"];
        assert_eq!(backend.ports[0].host, Some(PortRange::single(8003)));
        assert_eq!(backend.ports[0].host_ip, None);
        let with_health: Vec<&str> = model
            .services
            .values()
            .filter(|s| s.healthcheck.is_some())
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(with_health.len(), 8);
        assert!(!with_health.contains(&"mcp-local"));
        assert!(model.services.values().all(|s| s.profiles.is_empty()));
        assert_eq!(
            model.external_networks(),
            [NamedResource {
                key: "devops-ai-observability".into(),
                name: "devops-ai-observability".into()
            }]
        );
        assert_eq!(
            model.external_volumes(),
            [NamedResource {
                key: "ktrdr-agent-claude-auth".into(),
                name: "ktrdr-agent-claude-auth".into()
            }]
        );
        let owned: Vec<String> = model
            .project_volumes("ktrdr--x")
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(
            owned,
            [
                "ktrdr--x_pip-cache",
                "ktrdr--x_postgres_data",
                "ktrdr--x_uv-cache"
            ]
        );
        // Bind sources: the variable's value, or the default beside the file.
        let dir = path.parent().unwrap();
        let binds: Vec<&PathBuf> = backend
            .mounts
            .iter()
            .filter_map(|m| match &m.kind {
                MountKind::Bind { source } => Some(source),
                _ => None,
            })
            .collect();
        assert_eq!(
            binds,
            [
                &PathBuf::from("/srv/data"),
                &dir.join("models"),
                &dir.join("strategies")
            ]
        );
        assert_eq!(
            model.services["backtest-worker-1"].depends_on[0],
            Dependency {
                service: "backend".into(),
                condition: Condition::Healthy,
                required: true
            }
        );
        assert_eq!(
            model.services["design-agent-1"].networks,
            ["ktrdr-network", "devops-ai-observability"]
        );
        assert!(model.duplicate_host_ports(&[]).is_empty());
        assert!(model.one_shot_jobs().is_empty());
    }

    #[test]
    fn ktrdr_seed_fixture() {
        let (path, text) = fixture("ktrdr-seed.yml");
        let model = parse_str(&path, &text, &no_env).unwrap();
        assert!(
            model.unset_variables.is_empty(),
            "{:?}",
            model.unset_variables
        );
        let vars = |profiles: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = host_vars(&model, profiles)
                .into_iter()
                .map(|(_, var, default, _)| format!("{var}={default}"))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            vars(&[]),
            [
                "KTRDR_API_PORT=8000",
                "KTRDR_DB_PORT=5432",
                "KTRDR_GRAFANA_PORT=3000",
                "KTRDR_JAEGER_OTLP_GRPC_PORT=4317",
                "KTRDR_JAEGER_OTLP_HTTP_PORT=4318",
                "KTRDR_JAEGER_UI_PORT=16686",
                "KTRDR_PROMETHEUS_PORT=9090",
                "KTRDR_WORKER_PORT_1=5003",
                "KTRDR_WORKER_PORT_2=5004",
                "KTRDR_WORKER_PORT_3=5005",
                "KTRDR_WORKER_PORT_4=5006",
            ]
        );
        let local_prod = vars(&["local-prod"]);
        assert_eq!(local_prod.len(), 15);
        for n in 5..=8 {
            let want = format!("KTRDR_WORKER_PORT_{n}={}", 5002 + n);
            assert!(local_prod.contains(&want), "{want}");
        }
        let profiled: Vec<&str> = model
            .services
            .values()
            .filter(|s| s.profiles == ["local-prod"])
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            profiled,
            [
                "backtest-worker-3",
                "backtest-worker-4",
                "training-worker-3",
                "training-worker-4"
            ]
        );
        let jaeger: Vec<u16> = model.services["jaeger"]
            .ports
            .iter()
            .map(|p| p.container.start)
            .collect();
        assert_eq!(jaeger, [16686, 4317, 4318]);
        let db = model.services["db"].healthcheck.as_ref().unwrap();
        assert_eq!(db.test, ["CMD-SHELL", "nc -w 1 127.0.0.1 5432 </dev/null"]);
        let w = model.services["training-worker-4"]
            .healthcheck
            .as_ref()
            .unwrap();
        assert_eq!(w.retries, Some(15));
        assert_eq!(
            w.test.last().map(String::as_str),
            Some("http://127.0.0.1:5010/health")
        );
        assert!(model.external_networks().is_empty() && model.external_volumes().is_empty());
        assert!(
            model
                .duplicate_host_ports(&strings(&["local-prod"]))
                .is_empty()
        );
    }

    // --- robustness ------------------------------------------------------------------

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let deep_block = format!("{}x\n", "- ".repeat(5000));
        assert!(parse_err(&deep_block).contains(":1`: nested too deeply"));
        let mut indented = String::from("a:\n");
        for i in 1..1000 {
            indented.push_str(&format!("{}k:\n", " ".repeat(i)));
        }
        assert!(parse_err(&indented).contains("nested too deeply"));
        // Just under the limits still parses (and fits a test thread's stack).
        let nested = |levels: usize, flow: usize| {
            let mut text = String::from("x-deep:\n");
            for i in 1..levels {
                text.push_str(&format!("{}k:\n", "  ".repeat(i)));
            }
            let flow = format!("{}1{}", "[".repeat(flow), "]".repeat(flow));
            text.push_str(&format!("{}k: {flow}\nservices:\n", "  ".repeat(levels)));
            text
        };
        assert!(parse(&nested(MAX_PREFIX / 2, 10)).services.is_empty());
        // The parser's worst case within the limits: refused, and within a test
        // thread's stack.
        let err = parse_err(&nested(MAX_PREFIX / 2, 254));
        assert!(err.contains("nested too deeply"), "{err}");
        let flow = format!("x: {}1{}\n", "[".repeat(300), "]".repeat(300));
        assert!(parse_err(&flow).contains("invalid YAML"));
        // Block scalars may be indented at will.
        let script = format!(
            "services:\n  a:\n    command: |\n{}echo hi\n",
            " ".repeat(400)
        );
        assert!(parse(&script).services.contains_key("a"));
    }

    #[test]
    fn block_scalar_indicators() {
        for yes in ["key: |", "- >-", "x: |2 # note", "|", "a: >+"] {
            assert!(opens_block_scalar(yes), "{yes}");
        }
        for no in ["key: value", "a: b|", "x: '|'x", "- |x"] {
            assert!(!opens_block_scalar(no), "{no}");
        }
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(parse_err(&text).contains("invalid YAML"));
    }

    const NEAR_YAML: &[&str] = &[
        "services:",
        "\n",
        "  ",
        "    ",
        "- ",
        ": ",
        "web:",
        "ports:",
        "\"8080:80\"",
        "80",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&a ",
        "*a",
        "<<: ",
        "!reset ",
        "!override ",
        "${X:-1}",
        "${",
        "$$",
        "$",
        "volumes:",
        "./d:/d:ro",
        "target: ",
        "published: ",
        "healthcheck:",
        "test: ",
        "depends_on:",
        "condition: service_healthy",
        "external: ",
        "true",
        "null",
        "~",
        "|",
        ">-",
        "#",
        "'",
        "\"",
        "---",
        "x-a:",
        "[::1]:1:2/udp",
        "name:",
        "profiles:",
        "networks:",
        "- a",
        "::",
        "-",
        "?",
        "\t",
        "é",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_str(Path::new(FILE), &text, &no_env);
        }

        #[test]
        fn never_panics_on_near_yaml(picks in proptest::collection::vec(0..NEAR_YAML.len(), 0..80)) {
            let text: String = picks.iter().map(|&i| NEAR_YAML[i]).collect();
            let lookup = env(&[("X", "8080")]);
            if let Ok(model) = parse_str(Path::new(FILE), &text, &lookup) {
                let all = strings(&["*"]);
                let _ = model.duplicate_host_ports(&all);
                let _ = model.one_shot_jobs();
                let _ = model.project_volumes("p");
            }
        }

        #[test]
        fn short_ports_never_panic(spec in "[0-9a-f:\\[\\]/.\\-]{0,24}") {
            let _ = parse_short_port(&spec);
            let _ = parse_short_volume(&spec, Path::new("/w"), None);
        }
    }

    /// A figure, not an assertion: `cargo test --release --lib compose::model -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_parse_fixtures() {
        for name in ["ktrdr-today.yml", "ktrdr-seed.yml"] {
            let (path, text) = fixture(name);
            let runs = 200;
            let start = std::time::Instant::now();
            for _ in 0..runs {
                parse_str(&path, &text, &no_env).unwrap();
            }
            let each = start.elapsed() / runs;
            println!("{name}: {} lines parsed in {each:?}", text.lines().count());
        }
    }
}
