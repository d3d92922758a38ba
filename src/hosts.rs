//! Other machines that run sandboxes: the per-user list of hosts
//! (`<state_root>/hosts.toml`), the one way kinfra talks to a host (the system `ssh`,
//! one persistent connection per host through a control socket under the state
//! directory), and kinfra's own binary on each host (installed or updated by copying
//! the running one when the host can run it).
//!
//! The local machine is the host `local`, always present and never stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, Exit};
use crate::process::{Cmd, ProcessError, shell_quote};

/// The name of the local machine as a host.
pub const LOCAL: &str = "local";
/// Where kinfra keeps its binary on a host (relative to the remote HOME).
pub const REMOTE_BIN: &str = ".local/bin/kinfra";
/// An ssh config file passed to every `ssh` (`-F`), e.g. for test hosts.
pub const SSH_CONFIG_VAR: &str = "KINFRA_SSH_CONFIG";
/// How long `ssh` may take to connect before a host counts as unreachable.
pub const CONNECT_TIMEOUT_SECS: u32 = 5;
/// ssh's own exit code for "could not connect or authenticate".
const SSH_FAILED: i32 = 255;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("`{0}` is not a host address; expected `ssh://[user@]host[:port]`")]
    BadUrl(String),
    #[error("`{0}` cannot name a host (letters, digits, `-`, `_`, `.`; not `local`)")]
    BadName(String),
    #[error("a host named `{0}` is already registered")]
    Exists(String),
    #[error("no host named `{0}` is registered")]
    NotFound(String),
    #[error("host `{host}` has {count} registered instance(s): {names}")]
    HasInstances {
        host: String,
        count: usize,
        names: String,
    },
    #[error("host `{host}` is unreachable over ssh: {detail}")]
    Unreachable { host: String, detail: String },
    #[error("`{command}` on host `{host}` failed ({status}){}", if .stderr.trim().is_empty() { String::new() } else { format!(": {}", .stderr.trim()) })]
    Remote {
        host: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error(
        "kinfra on host `{host}` is {remote}, newer than this kinfra ({local}); refusing to downgrade it"
    )]
    RemoteNewer {
        host: String,
        remote: String,
        local: String,
    },
    #[error("host `{host}` cannot run this kinfra binary: {why}")]
    Incompatible { host: String, why: String },
    #[error("cannot read `{}`: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is not a valid hosts file: {problem}", .path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("cannot write `{}`: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(transparent)]
    Process(#[from] ProcessError),
}

impl Diagnostic for HostError {
    fn exit(&self) -> Exit {
        match self {
            HostError::BadUrl(_) | HostError::BadName(_) => Exit::Usage,
            HostError::Exists(_) => Exit::Conflict,
            HostError::NotFound(_) => Exit::NotFound,
            HostError::HasInstances { .. } | HostError::RemoteNewer { .. } => Exit::Refused,
            HostError::Unreachable { .. }
            | HostError::Remote { .. }
            | HostError::Incompatible { .. } => Exit::External,
            HostError::Read { .. } | HostError::Corrupt { .. } | HostError::Write { .. } => {
                Exit::Failure
            }
            HostError::Index(e) => e.exit(),
            HostError::Lock(e) => e.exit(),
            HostError::Process(_) => Exit::External,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            HostError::BadUrl(_) => Some("e.g. `kinfra hosts add box1 ssh://me@box1:22`".into()),
            HostError::BadName(_) => Some("pick a plain name like `box1`".into()),
            HostError::Exists(n) => {
                Some(format!("`kinfra hosts rm {n}` first, or pick another name"))
            }
            HostError::NotFound(_) => Some("`kinfra hosts list` shows the registered hosts".into()),
            HostError::HasInstances { host, .. } => Some(format!(
                "destroy them first, or `kinfra hosts rm {host} --force` to forget them (nothing is removed on the host)"
            )),
            HostError::Unreachable { host, .. } => Some(format!(
                "check that `ssh {host}` works without a password prompt (BatchMode), then retry; nothing was changed here"
            )),
            HostError::RemoteNewer { .. } => {
                Some("upgrade this kinfra to the host's version or newer".into())
            }
            HostError::Incompatible { .. } => Some(format!(
                "install kinfra on the host yourself at `~/{REMOTE_BIN}` (a build for its architecture and C library)"
            )),
            HostError::Corrupt { path, .. } => Some(format!(
                "nothing was changed; fix `{}` by hand",
                path.display()
            )),
            HostError::Index(e) => e.hint(),
            HostError::Lock(e) => e.hint(),
            _ => None,
        }
    }
}

pub type Result<T, E = HostError> = std::result::Result<T, E>;

/// `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshUrl {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl SshUrl {
    pub fn parse(text: &str) -> Result<SshUrl> {
        let bad = || HostError::BadUrl(text.to_string());
        let rest = text.strip_prefix("ssh://").ok_or_else(bad)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (hostport, None),
        };
        let plain = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !plain(host) || user.as_deref().is_some_and(|u| !plain(u)) || port == Some(0) {
            return Err(bad());
        }
        Ok(SshUrl {
            user,
            host: host.to_string(),
            port,
        })
    }

    /// `[user@]host` for ssh.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// `ssh://[user@]host[:port]` (also git's form, with a path appended).
    pub fn to_url(&self) -> String {
        match self.port {
            Some(p) => format!("ssh://{}:{p}", self.destination()),
            None => format!("ssh://{}", self.destination()),
        }
    }
}

/// Whether `name` can name a host.
pub fn valid_name(name: &str) -> bool {
    name != LOCAL
        && !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// One registered host, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub added_at: String,
}

/// `hosts.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostsFile {
    #[serde(default)]
    pub hosts: BTreeMap<String, HostEntry>,
}

/// `<state_root>/hosts.toml`.
pub fn hosts_path() -> Result<PathBuf> {
    Ok(crate::index::state_root()?.join("hosts.toml"))
}

impl HostsFile {
    /// Read the hosts file; a missing file holds no hosts. Never writes.
    pub fn load() -> Result<HostsFile> {
        Self::load_from(&hosts_path()?)
    }

    pub fn load_from(path: &Path) -> Result<HostsFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(HostError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let file: HostsFile = toml::from_str(&text).map_err(|e| HostError::Corrupt {
            path: path.to_owned(),
            problem: crate::error::one_line(&e.to_string()),
        })?;
        for (name, entry) in &file.hosts {
            if !valid_name(name) {
                return Err(HostError::Corrupt {
                    path: path.to_owned(),
                    problem: format!("`{name}` cannot name a host"),
                });
            }
            SshUrl::parse(&entry.url).map_err(|_| HostError::Corrupt {
                path: path.to_owned(),
                problem: format!("host `{name}`: `{}` is not an ssh:// address", entry.url),
            })?;
        }
        Ok(file)
    }

    /// The host named `name` (never `local`).
    pub fn host(&self, name: &str) -> Result<Host> {
        let entry = self
            .hosts
            .get(name)
            .ok_or_else(|| HostError::NotFound(name.to_string()))?;
        Ok(Host {
            name: name.to_string(),
            url: SshUrl::parse(&entry.url)?,
        })
    }

    /// Every registered host, by name.
    pub fn all(&self) -> Vec<Host> {
        self.hosts
            .keys()
            .filter_map(|n| self.host(n).ok())
            .collect()
    }
}

/// Change the hosts file under its lock: reload, change, write atomically.
pub fn update<T>(
    reporter: &dyn crate::report::Reporter,
    change: impl FnOnce(&mut HostsFile) -> Result<T>,
) -> Result<T> {
    let path = hosts_path()?;
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    let _guard =
        crate::lock::exclusive(Path::new(&lock), crate::lock::timeout_from_env(), reporter)?;
    let mut file = HostsFile::load_from(&path)?;
    let out = change(&mut file)?;
    let text = toml::to_string(&file).map_err(|e| HostError::Corrupt {
        path: path.clone(),
        problem: e.to_string(),
    })?;
    let header = "# Hosts kinfra runs sandboxes on (`kinfra hosts add|rm`).\n";
    crate::fsutil::write_atomically(&path, format!("{header}{text}").as_bytes()).map_err(
        |source| HostError::Write {
            path: path.clone(),
            source,
        },
    )?;
    Ok(out)
}

/// A remote host and the way to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub url: SshUrl,
}

/// 12 hex digits of FNV-1a over `text`: stable across builds and platforms, which
/// std's hasher is not.
pub fn short_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

/// Longest socket path ssh accepts, less the 17 characters it appends while setting
/// the socket up.
const MAX_CONTROL_PATH: usize = 104 - 17;

/// The directory of the hosts' control sockets: `<state_root>/ssh`, or when that is
/// too long for a socket path, `/tmp/kinfra-ssh-<uid>` (made 0700).
fn control_dir() -> Result<PathBuf> {
    let dir = crate::index::state_root()?.join("ssh");
    if dir.as_os_str().len() + 1 + 12 <= MAX_CONTROL_PATH {
        return Ok(dir);
    }
    let uid = std::fs::metadata(
        crate::index::state_root()?
            .parent()
            .unwrap_or(Path::new("/")),
    )
    .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
    .unwrap_or(0);
    Ok(std::env::temp_dir().join(format!("kinfra-ssh-{uid}")))
}

impl Host {
    /// ssh's options: batch mode, a connect timeout, one shared connection per host.
    pub fn ssh_options(&self) -> Result<Vec<String>> {
        let dir = control_dir()?;
        std::fs::create_dir_all(&dir).map_err(|source| HostError::Write {
            path: dir.clone(),
            source,
        })?;
        // The sockets open connections as this user: nobody else may reach them.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let mut args = Vec::new();
        if let Some(cfg) = std::env::var_os(SSH_CONFIG_VAR).filter(|v| !v.is_empty()) {
            args.push("-F".to_string());
            args.push(cfg.to_string_lossy().into_owned());
        }
        for opt in [
            "BatchMode=yes".to_string(),
            format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}"),
            "ServerAliveInterval=5".to_string(),
            "ServerAliveCountMax=2".to_string(),
            "ControlMaster=auto".to_string(),
            // One socket per destination, named short enough for a socket path.
            format!(
                "ControlPath={}/{}",
                dir.display(),
                short_hash(&format!("{}:{:?}", self.url.destination(), self.url.port))
            ),
            "ControlPersist=60".to_string(),
        ] {
            args.push("-o".into());
            args.push(opt);
        }
        if let Some(p) = self.url.port {
            args.push("-p".into());
            args.push(p.to_string());
        }
        Ok(args)
    }

    /// `ssh OPTIONS [extra] DEST -- remote` (`remote` is one shell command line).
    pub fn ssh(&self, extra: &[&str], remote: &str) -> Result<Cmd> {
        Ok(Cmd::new("ssh")
            .args(self.ssh_options()?)
            .args(extra)
            .arg(self.url.destination())
            .arg("--")
            .arg(remote))
    }

    /// The `ssh ...` command line git uses to reach this host (GIT_SSH_COMMAND).
    pub fn git_ssh_command(&self) -> Result<String> {
        let mut words = vec!["ssh".to_string()];
        // git passes its own `-p PORT` from the URL.
        let mut opts = self.ssh_options()?;
        if let Some(i) = opts.iter().position(|a| a == "-p") {
            opts.drain(i..i + 2);
        }
        words.extend(opts.iter().map(|a| shell_quote(a)));
        Ok(words.join(" "))
    }

    /// Run `remote` (a shell command line) on the host and capture its output; a
    /// non-zero exit is returned, not an error; ssh's own failure is `Unreachable`.
    pub fn run_captured(&self, remote: &str, timeout: Duration) -> Result<crate::process::Output> {
        let out = self.ssh(&[], remote)?.timeout(timeout).output();
        let out = match out {
            Ok(o) => o,
            Err(ProcessError::TimedOut { .. }) => {
                return Err(HostError::Unreachable {
                    host: self.name.clone(),
                    detail: format!(
                        "no answer within {}",
                        crate::process::format_duration(timeout)
                    ),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if out.exit_code() == Some(SSH_FAILED) {
            return Err(HostError::Unreachable {
                host: self.name.clone(),
                detail: crate::error::one_line(out.stderr.trim()),
            });
        }
        Ok(out)
    }

    /// Like [`Host::run_captured`], requiring success; returns stdout.
    pub fn run(&self, remote: &str, timeout: Duration) -> Result<String> {
        let out = self.run_captured(remote, timeout)?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(HostError::Remote {
                host: self.name.clone(),
                command: remote.to_string(),
                status: crate::process::describe_status(out.status),
                stderr: out.stderr,
            })
        }
    }
}

/// The shell words that run the host's kinfra with `args`.
pub fn remote_kinfra(args: &[&str]) -> String {
    let mut words = vec![format!("\"$HOME\"/{REMOTE_BIN}")];
    words.extend(args.iter().map(|a| shell_quote(a)));
    words.join(" ")
}

/// `kinfra 1.2.3` -> (1, 2, 3).
pub fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let v = text.split_whitespace().nth(1)?;
    let v = v.split(['-', '+']).next()?;
    let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// `ldd (Debian GLIBC 2.36-9) 2.36` or `glibc 2.36` -> (2, 36).
pub fn parse_glibc(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().next()?;
    let word = line.split_whitespace().last()?;
    let (major, minor) = word.split_once('.')?;
    let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// What one round trip learns about a host (`hosts check`, self-install).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub home: String,
    pub arch: String,
    pub glibc: Option<String>,
    pub kinfra: Option<String>,
    /// Size of the host's kinfra binary (a rebuild of the same version differs).
    pub kinfra_size: Option<u64>,
    pub docker: Option<String>,
    pub compose: Option<String>,
    pub mem_available_mb: Option<u64>,
    pub disk_free_mb: Option<u64>,
    pub networks: Option<u64>,
}

/// The script that prints [`Facts`] as `key=value` lines: what self-install needs,
/// and with `full` what `hosts check` shows too (Docker and Compose answer slowly).
fn facts_script(full: bool) -> String {
    let base = format!(
        "echo home=\"$HOME\"; echo arch=\"$(uname -m)\"; \
         echo glibc=\"$(getconf GNU_LIBC_VERSION 2>/dev/null)\"; \
         echo kinfra=\"$(\"$HOME\"/{REMOTE_BIN} --version 2>/dev/null)\"; \
         echo kinfra_size=\"$(wc -c < \"$HOME\"/{REMOTE_BIN} 2>/dev/null)\""
    );
    if !full {
        return base;
    }
    format!(
        "{base}; echo docker=\"$(docker version --format '{{{{.Server.Version}}}}' 2>/dev/null)\"; \
         echo compose=\"$(docker compose version --short 2>/dev/null || docker-compose version --short 2>/dev/null)\"; \
         echo mem=\"$(awk '/^MemAvailable:/ {{print int($2/1024)}}' /proc/meminfo 2>/dev/null)\"; \
         echo disk=\"$(df -Pk \"$HOME\" 2>/dev/null | awk 'NR==2 {{print int($4/1024)}}')\"; \
         echo networks=\"$(docker network ls -q 2>/dev/null | wc -l)\""
    )
}

pub fn parse_facts(text: &str) -> Facts {
    let mut f = Facts::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let opt = || (!v.is_empty()).then(|| v.to_string());
        match k {
            "home" => f.home = v.to_string(),
            "arch" => f.arch = v.to_string(),
            "glibc" => f.glibc = opt(),
            "kinfra" => f.kinfra = opt(),
            "kinfra_size" => f.kinfra_size = v.parse().ok(),
            "docker" => f.docker = opt(),
            "compose" => f.compose = opt(),
            "mem" => f.mem_available_mb = v.parse().ok(),
            "disk" => f.disk_free_mb = v.parse().ok(),
            "networks" => f.networks = v.parse().ok(),
            _ => {}
        }
    }
    f
}

/// One round trip: what the host has (`full`: Docker, Compose, memory, disk too).
pub fn facts(host: &Host, full: bool) -> Result<Facts> {
    let out = host.run(&facts_script(full), Duration::from_secs(30))?;
    Ok(parse_facts(&out))
}

/// This kinfra's version line (`kinfra X.Y.Z`).
pub fn local_version() -> String {
    format!("kinfra {}", env!("CARGO_PKG_VERSION"))
}

/// The C library this binary runs with, as `(major, minor)`.
fn local_glibc() -> Option<(u64, u64)> {
    let out = Cmd::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .timeout(Duration::from_secs(5))
        .run()
        .ok()?;
    parse_glibc(&out)
}

/// What [`ensure_kinfra`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Install {
    /// The host's kinfra is this version.
    Current,
    /// Copied (first install, or an update from the older version named).
    Copied { from: Option<String> },
}

/// Whether a host's kinfra needs a copy of this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Current,
    Copy,
}

/// What this binary is, to compare with a host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me<'a> {
    /// `kinfra X.Y.Z`.
    pub version: &'a str,
    pub arch: &'a str,
    pub glibc: Option<(u64, u64)>,
    /// Size of the binary (same version, other build: copied again).
    pub size: Option<u64>,
}

/// Pure: what to do about the host's kinfra, given what it has and what this binary is.
pub fn decide(host: &str, facts: &Facts, me: &Me) -> Result<Decision> {
    let (local, arch, glibc) = (me.version, me.arch, me.glibc);
    let mine = parse_version(local);
    if let Some(remote) = &facts.kinfra {
        match (parse_version(remote), mine) {
            (Some(r), Some(m)) if r == m && (me.size.is_none() || facts.kinfra_size == me.size) => {
                return Ok(Decision::Current);
            }
            (Some(r), Some(m)) if r == m => {}
            (Some(r), Some(m)) if r > m => {
                return Err(HostError::RemoteNewer {
                    host: host.to_string(),
                    remote: remote.clone(),
                    local: local.to_string(),
                });
            }
            _ => {}
        }
    }
    let incompatible = |why: String| HostError::Incompatible {
        host: host.to_string(),
        why,
    };
    if facts.arch != arch {
        return Err(incompatible(format!(
            "it is `{}`, this binary is built for `{arch}`",
            facts.arch
        )));
    }
    match (facts.glibc.as_deref().and_then(parse_glibc), glibc) {
        (Some(t), Some(m)) if t < m => Err(incompatible(format!(
            "its C library is glibc {}.{}, this binary needs glibc {}.{} or newer",
            t.0, t.1, m.0, m.1
        ))),
        (None, _) => Err(incompatible(
            "it has no GNU C library (`getconf GNU_LIBC_VERSION` answers nothing)".into(),
        )),
        _ => Ok(Decision::Copy),
    }
}

/// Make sure the host runs this kinfra: install or update it by copying the running
/// binary when missing or older and the host's architecture and C library fit;
/// refuse to downgrade a newer one.
pub fn ensure_kinfra(host: &Host, facts: &Facts) -> Result<Install> {
    let exe = std::env::current_exe().map_err(|source| HostError::Read {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let version = local_version();
    let me = Me {
        version: &version,
        arch: std::env::consts::ARCH,
        glibc: local_glibc(),
        size: std::fs::metadata(&exe).ok().map(|m| m.len()),
    };
    if decide(&host.name, facts, &me)? == Decision::Current {
        return Ok(Install::Current);
    }
    let remote = format!(
        "set -e; d=\"$HOME\"/{dir}; mkdir -p \"$d\"; t=\"$d/.kinfra.$$\"; \
         cat > \"$t\"; chmod 0755 \"$t\"; mv -f \"$t\" \"$HOME\"/{REMOTE_BIN}",
        dir = Path::new(REMOTE_BIN)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    let out = host
        .ssh(&[], &remote)?
        .stdin_file(&exe)
        .timeout(Duration::from_secs(300))
        .output()?;
    if !out.success() {
        return Err(HostError::Remote {
            host: host.name.clone(),
            command: "copy kinfra".into(),
            status: crate::process::describe_status(out.status),
            stderr: out.stderr,
        });
    }
    Ok(Install::Copied {
        from: facts.kinfra.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_parse_with_user_and_port() {
        let u = SshUrl::parse("ssh://me@box1:2222").unwrap();
        assert_eq!(u.user.as_deref(), Some("me"));
        assert_eq!(u.host, "box1");
        assert_eq!(u.port, Some(2222));
        assert_eq!(u.destination(), "me@box1");
        assert_eq!(u.to_url(), "ssh://me@box1:2222");
        let u = SshUrl::parse("ssh://10.0.0.2").unwrap();
        assert_eq!((u.user, u.port), (None, None));
    }

    #[test]
    fn bad_ssh_urls_are_refused() {
        for bad in [
            "box1",
            "http://box1",
            "ssh://",
            "ssh://-oProxyCommand=x",
            "ssh://box1:0",
            "ssh://box1:99999",
            "ssh://a b",
            "ssh://me@",
        ] {
            assert!(SshUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names_are_plain_and_never_local() {
        assert!(valid_name("box-1.lan"));
        for bad in ["local", "", "-x", "a/b", "a b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn versions_and_glibc_parse() {
        assert_eq!(parse_version("kinfra 0.12.3"), Some((0, 12, 3)));
        assert_eq!(parse_version("kinfra 1.0.0-dev"), Some((1, 0, 0)));
        assert_eq!(parse_version("bash: kinfra: not found"), None);
        assert_eq!(parse_glibc("glibc 2.36"), Some((2, 36)));
        assert_eq!(
            parse_glibc("ldd (Debian GLIBC 2.36-9+deb12u4) 2.36\nCopyright"),
            Some((2, 36))
        );
    }

    #[test]
    fn a_newer_remote_kinfra_is_never_downgraded() {
        let facts = |kinfra: Option<&str>, arch: &str, glibc: Option<&str>| Facts {
            kinfra: kinfra.map(str::to_string),
            arch: arch.into(),
            glibc: glibc.map(str::to_string),
            ..Facts::default()
        };
        let me = Me {
            version: "kinfra 0.2.0",
            arch: "x86_64",
            glibc: Some((2, 36)),
            size: None,
        };
        let ok = Some("glibc 2.36");
        let d = |f: &Facts| decide("h", f, &me);
        assert_eq!(
            d(&facts(Some("kinfra 0.2.0"), "x86_64", ok)).unwrap(),
            Decision::Current
        );
        assert_eq!(d(&facts(None, "x86_64", ok)).unwrap(), Decision::Copy);
        assert_eq!(
            d(&facts(Some("kinfra 0.1.9"), "x86_64", ok)).unwrap(),
            Decision::Copy
        );
        let newer = d(&facts(Some("kinfra 0.10.0"), "x86_64", ok)).unwrap_err();
        assert!(matches!(newer, HostError::RemoteNewer { .. }), "{newer}");
        assert!(newer.to_string().contains("refusing to downgrade"));
        assert_eq!(newer.exit(), Exit::Refused);
        let arm = d(&facts(None, "aarch64", ok)).unwrap_err();
        assert!(matches!(arm, HostError::Incompatible { .. }));
        let old_libc = d(&facts(None, "x86_64", Some("glibc 2.31"))).unwrap_err();
        assert!(old_libc.to_string().contains("glibc 2.31"), "{old_libc}");
        let musl = d(&facts(None, "x86_64", None)).unwrap_err();
        assert!(matches!(musl, HostError::Incompatible { .. }));
        // Same version, another build: copied again.
        let sized = Me {
            size: Some(10),
            ..me.clone()
        };
        let mut f = facts(Some("kinfra 0.2.0"), "x86_64", ok);
        f.kinfra_size = Some(9);
        assert_eq!(decide("h", &f, &sized).unwrap(), Decision::Copy);
        f.kinfra_size = Some(10);
        assert_eq!(decide("h", &f, &sized).unwrap(), Decision::Current);
    }

    #[test]
    fn facts_parse_from_key_value_lines() {
        let f = parse_facts("home=/root\narch=x86_64\nglibc=glibc 2.36\nkinfra=\nmem=1024\n");
        assert_eq!(f.home, "/root");
        assert_eq!(f.kinfra, None);
        assert_eq!(f.mem_available_mb, Some(1024));
    }
}
