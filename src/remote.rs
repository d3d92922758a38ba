//! Sandboxes on other hosts: the per-user index of them
//! (`<state_root>/remote-instances.json`, kept apart from the registry, whose entries
//! ktrdr's tool reads with exactly six fields), and what kinfra does for them here —
//! bring the repository to the host (a checkout kept there per origin, fed by `git
//! push` over the host's ssh connection), run the host's kinfra, list every host in
//! parallel, fetch work back.
//!
//! On the host, the sandbox is an ordinary kinfra sandbox of that checkout: its own
//! registry, worktree, env file, compose up and gate, and destroy's safety rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, Exit};
use crate::hosts::{self, Host, HostError, remote_kinfra};
use crate::process::{Cmd, shell_quote};

/// The index format this kinfra writes.
pub const VERSION: u32 = 1;
/// Where a host keeps the checkouts kinfra made (relative to its HOME).
pub const REMOTE_CHECKOUTS: &str = ".local/share/kinfra/checkouts";

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("cannot read `{}`: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the remote instance index `{}` is corrupt: {problem}", .path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("cannot write `{}`: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("an instance `{id}` already exists on host `{host}`")]
    Taken { id: String, host: String },
    #[error("`{0}` is not a sandbox on another host")]
    NotRemote(String),
    #[error("git failed: {0}")]
    Git(String),
    #[error("the host's kinfra answered something unreadable: {0}")]
    BadAnswer(String),
    /// A `sandbox create` option that has no meaning on another host.
    #[error("{flag} cannot be given with --host {host}: {why}")]
    NotWithHost {
        flag: &'static str,
        host: String,
        why: &'static str,
    },
}

impl Diagnostic for RemoteError {
    fn exit(&self) -> Exit {
        match self {
            RemoteError::Host(e) => e.exit(),
            RemoteError::Taken { .. } => Exit::Conflict,
            RemoteError::NotRemote(_) => Exit::NotFound,
            RemoteError::Git(_) | RemoteError::BadAnswer(_) => Exit::External,
            RemoteError::NotWithHost { .. } => Exit::Usage,
            _ => Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RemoteError::Host(e) => e.hint(),
            RemoteError::Taken { .. } => {
                Some("sandbox names are unique across hosts: pick another name".into())
            }
            RemoteError::NotRemote(_) => {
                Some("`kinfra sandbox list` shows every instance and its host".into())
            }
            RemoteError::Corrupt { path, .. } => Some(format!(
                "nothing was changed; fix `{}` by hand or move it aside",
                path.display()
            )),
            RemoteError::NotWithHost { flag, .. } => Some(format!(
                "leave out {flag}, or create the sandbox on this machine (without --host)"
            )),
            _ => None,
        }
    }
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

/// One sandbox on another host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEntry {
    pub instance_id: String,
    /// The name given to `create`.
    pub name: String,
    pub host: String,
    pub project: String,
    /// The host's checkout of the repository (the sandbox's main repository there).
    pub checkout: String,
    /// The sandbox's directory on the host.
    pub path: String,
    pub branch: String,
    pub created_at: String,
    /// The local main repository it came from (where `fetch` brings its work).
    pub local_repo: String,
}

/// `remote-instances.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteIndex {
    pub schema_version: u32,
    #[serde(default)]
    pub instances: BTreeMap<String, RemoteEntry>,
}

impl Default for RemoteIndex {
    fn default() -> Self {
        RemoteIndex {
            schema_version: VERSION,
            instances: BTreeMap::new(),
        }
    }
}

pub fn index_path() -> Result<PathBuf> {
    Ok(crate::index::state_root()
        .map_err(HostError::from)?
        .join("remote-instances.json"))
}

impl RemoteIndex {
    /// A missing file is an empty index. Never writes.
    pub fn load() -> Result<RemoteIndex> {
        let path = index_path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RemoteError::Corrupt {
                path: path.clone(),
                problem: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RemoteIndex::default()),
            Err(source) => Err(RemoteError::Read { path, source }),
        }
    }

    /// The remote sandbox named `name` (its id, or the name given to create).
    pub fn find(&self, name: &str) -> Option<&RemoteEntry> {
        self.instances.get(name).or_else(|| {
            let mut by_name = self.instances.values().filter(|e| e.name == name);
            match (by_name.next(), by_name.next()) {
                (Some(e), None) => Some(e),
                _ => None,
            }
        })
    }

    pub fn on_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a RemoteEntry> + 'a {
        self.instances.values().filter(move |e| e.host == host)
    }
}

/// Change the index under its lock: reload, change, write atomically.
pub fn update<T>(
    reporter: &dyn crate::report::Reporter,
    change: impl FnOnce(&mut RemoteIndex) -> Result<T>,
) -> Result<T> {
    let path = index_path()?;
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    let _guard =
        crate::lock::exclusive(Path::new(&lock), crate::lock::timeout_from_env(), reporter)
            .map_err(HostError::from)?;
    let mut index = RemoteIndex::load()?;
    let out = change(&mut index)?;
    let text = serde_json::to_string_pretty(&index).map_err(|e| RemoteError::Corrupt {
        path: path.clone(),
        problem: e.to_string(),
    })?;
    crate::fsutil::write_atomically(&path, format!("{text}\n").as_bytes()).map_err(|source| {
        RemoteError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(out)
}

/// A short, stable key for a repository: its project and a hash of its origin URL (or
/// of its main directory when it has no origin), naming its checkout on every host.
pub fn repo_key(project: &str, origin: Option<&str>, main: &Path) -> String {
    let text = origin.map_or_else(|| main.display().to_string(), str::to_string);
    // FNV-1a: stable across builds and platforms, which std's hasher is not.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{}-{:012x}",
        crate::slug::slugify(project),
        h & 0xffff_ffff_ffff
    )
}

/// How the repository reached the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reached {
    /// The checkout was there already.
    Existing,
    /// Cloned from origin by the host.
    ClonedOrigin,
    /// Origin is unreachable from the host: made empty and filled by push from here.
    Pushed,
}

/// Make the host's checkout `<HOME>/<REMOTE_CHECKOUTS>/<key>/<dir>` exist: a clone of
/// origin when the host reaches it, else an empty repository with the same origin URL
/// (so the host's kinfra sees the same project), to be filled by push.
pub fn ensure_checkout(host: &Host, checkout: &str, origin: Option<&str>) -> Result<Reached> {
    let q = shell_quote(checkout);
    let script = format!(
        "if [ -d {q}/.git ]; then echo existing; exit 0; fi; \
         mkdir -p \"$(dirname {q})\"; \
         {clone} \
         git init -q {q} && {set_origin} echo pushed",
        clone = match origin {
            Some(o) => format!(
                "if GIT_TERMINAL_PROMPT=0 git clone -q --no-checkout -- {o} {q} 2>/dev/null; then echo cloned; exit 0; fi; rm -rf {q};",
                o = shell_quote(o)
            ),
            None => String::new(),
        },
        set_origin = match origin {
            Some(o) => format!("git -C {q} remote add origin {} &&", shell_quote(o)),
            None => String::new(),
        },
    );
    let out = host.run(&script, Duration::from_secs(300))?;
    Ok(match out.trim().lines().last().unwrap_or("") {
        "existing" => Reached::Existing,
        "cloned" => Reached::ClonedOrigin,
        _ => Reached::Pushed,
    })
}

/// `git push` of `commit` to `refs/heads/<branch>` in the host's checkout, over the
/// host's shared ssh connection. Never forced: a branch the host has with other work
/// is refused by git, and nothing is overwritten.
pub fn push_commit(
    host: &Host,
    local_repo: &Path,
    checkout: &str,
    commit: &str,
    branch: &str,
) -> Result<()> {
    let url = format!("{}{}", host.url.to_url(), checkout);
    crate::git::git(local_repo)
        .env("GIT_SSH_COMMAND", host.git_ssh_command()?)
        .args(["push", "-q", &url, &format!("{commit}:refs/heads/{branch}")])
        .timeout(Duration::from_secs(600))
        .run()
        .map_err(|e| RemoteError::Git(e.to_string()))?;
    Ok(())
}

/// `git fetch` of the sandbox's branch and its rescue refs from the host into the local
/// repository: the branch under `refs/remotes/<host>/<branch>`, and the local branch of
/// that name made or fast-forwarded when it is absent or behind (never moved back or
/// sideways); rescue refs under the same names as on the host. Returns what arrived.
pub fn fetch_work(entry: &RemoteEntry, host: &Host) -> Result<Vec<String>> {
    let local = Path::new(&entry.local_repo);
    let url = format!("{}{}", host.url.to_url(), entry.checkout);
    let tracking = format!("refs/remotes/{}/{}", host.name, entry.branch);
    let rescue = format!("refs/kinfra/rescue/{}/", entry.instance_id);
    let out = crate::git::git(local)
        .env("GIT_SSH_COMMAND", host.git_ssh_command()?)
        .args([
            "fetch",
            "-q",
            "--no-tags",
            &url,
            &format!("+refs/heads/{}:{tracking}", entry.branch),
            &format!("+{rescue}*:{rescue}*"),
        ])
        .timeout(Duration::from_secs(600))
        .output()
        .map_err(|e| RemoteError::Git(e.to_string()))?;
    if !out.success() {
        if out.exit_code() == Some(128) && out.stderr.contains("Could not read from remote") {
            return Err(HostError::Unreachable {
                host: host.name.clone(),
                detail: crate::error::one_line(out.stderr.trim()),
            }
            .into());
        }
        return Err(RemoteError::Git(crate::error::one_line(out.stderr.trim())));
    }
    let mut got = vec![tracking.clone()];
    let head = format!("refs/heads/{}", entry.branch);
    let remote_tip = crate::git::git(local)
        .args(["rev-parse", "--verify", "-q", &tracking])
        .run()
        .map_err(|e| RemoteError::Git(e.to_string()))?;
    let remote_tip = remote_tip.trim();
    let local_tip = crate::git::branch_commit(local, &entry.branch)
        .map_err(|e| RemoteError::Git(e.to_string()))?;
    let advance = match &local_tip {
        None => true,
        Some(t) if t == remote_tip => false,
        Some(t) => crate::git::git(local)
            .args(["merge-base", "--is-ancestor", t, remote_tip])
            .output()
            .map(|o| o.success())
            .unwrap_or(false),
    };
    // A branch checked out here is left alone (its working tree would not follow).
    let checked_out = crate::git::worktree_list(local)
        .map(|l| l.iter().any(|w| w.branch.as_deref() == Some(head.as_str())))
        .unwrap_or(true);
    if advance && !checked_out {
        let mut cmd = crate::git::git(local).args(["update-ref", &head, remote_tip]);
        if let Some(old) = &local_tip {
            cmd = cmd.arg(old);
        }
        cmd.run().map_err(|e| RemoteError::Git(e.to_string()))?;
        got.push(head);
    }
    if let Ok(refs) = crate::git::refs_under(local, &rescue) {
        got.extend(refs.into_iter().map(|(r, _)| r));
    }
    Ok(got)
}

/// One row of the host's `kinfra sandbox list --json`, as far as kinfra here needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRow {
    pub instance_id: String,
    #[serde(default)]
    pub slot: u32,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub api_port: Option<u16>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub created_at: String,
}

#[derive(Debug, Deserialize)]
struct RemoteList {
    #[serde(default)]
    instances: Vec<RemoteRow>,
}

/// What one host answered to `list`.
#[derive(Debug, Clone)]
pub struct HostListing {
    pub host: String,
    pub rows: Result<Vec<RemoteRow>, String>,
    pub elapsed: Duration,
}

/// The shell line that lists the sandboxes of `checkouts` on a host in one round
/// trip: the host's kinfra run in each (a checkout that is gone answers nothing).
fn list_script(checkouts: &[&str]) -> String {
    let parts: Vec<String> = checkouts
        .iter()
        .map(|c| {
            format!(
                "(cd {} 2>/dev/null && {} 2>/dev/null); echo",
                shell_quote(c),
                remote_kinfra(&["sandbox", "list", "--json"])
            )
        })
        .collect();
    parts.join("; ")
}

/// Parse the concatenated JSON objects of [`list_script`].
pub fn parse_listings(text: &str) -> Result<Vec<RemoteRow>, String> {
    let mut rows: Vec<RemoteRow> = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<RemoteList>() {
        let list = value.map_err(|e| e.to_string())?;
        for r in list.instances {
            if !rows.iter().any(|x| x.instance_id == r.instance_id) {
                rows.push(r);
            }
        }
    }
    Ok(rows)
}

/// The sandboxes of `index` on every host of `hosts`, asked in parallel (one thread
/// and one ssh round trip per host); a host that does not answer is reported, not
/// fatal.
pub fn list_hosts(hosts: &[Host], index: &RemoteIndex) -> Vec<HostListing> {
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|h| {
                let mut checkouts: Vec<&str> = index
                    .on_host(&h.name)
                    .map(|e| e.checkout.as_str())
                    .collect();
                checkouts.sort_unstable();
                checkouts.dedup();
                s.spawn(move || {
                    let start = Instant::now();
                    let rows = h
                        .run(&list_script(&checkouts), Duration::from_secs(60))
                        .map_err(|e| crate::error::one_line(&e.to_string()))
                        .and_then(|out| parse_listings(&out));
                    HostListing {
                        host: h.name.clone(),
                        rows,
                        elapsed: start.elapsed(),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(hosts)
            .map(|(h, host)| {
                h.join().unwrap_or_else(|_| HostListing {
                    host: host.name.clone(),
                    rows: Err("the listing thread failed".into()),
                    elapsed: Duration::ZERO,
                })
            })
            .collect()
    })
}

/// `cd <dir> && kinfra ARGS` on the host, as one shell line.
pub fn in_dir(dir: &str, args: &[&str]) -> String {
    format!("cd {} && {}", shell_quote(dir), remote_kinfra(args))
}

/// Run the host's kinfra with the terminal attached (progress and data stream
/// through); returns its exit code. ssh's own failure is `Unreachable`.
pub fn run_attached(host: &Host, dir: &str, args: &[&str], tty: bool) -> Result<u8> {
    let extra: &[&str] = if tty { &["-t"] } else { &[] };
    let status = host
        .ssh(extra, &in_dir(dir, args))?
        .no_timeout()
        .status(tty)
        .map_err(HostError::from)?;
    match status.code() {
        Some(255) => Err(HostError::Unreachable {
            host: host.name.clone(),
            detail: "ssh failed".into(),
        }
        .into()),
        Some(c) => Ok(u8::try_from(c).unwrap_or(1)),
        None => Ok(crate::error::Exit::Interrupted.code()),
    }
}

/// The host's `--json` report of a command (captured).
pub fn run_json(host: &Host, dir: &str, args: &[&str]) -> Result<serde_json::Value> {
    let out = host.run(&in_dir(dir, args), Duration::from_secs(120))?;
    serde_json::from_str(out.trim()).map_err(|e| RemoteError::BadAnswer(e.to_string()))
}

/// Install or update the host's kinfra if needed, telling the user what was done.
pub fn prepare_host(host: &Host, reporter: &dyn crate::report::Reporter) -> Result<hosts::Facts> {
    let facts = hosts::facts(host, false)?;
    match hosts::ensure_kinfra(host, &facts)? {
        hosts::Install::Current => {}
        hosts::Install::Copied { from: None } => {
            reporter.done(&format!("installed kinfra on host `{}`", host.name));
        }
        hosts::Install::Copied { from: Some(v) } => {
            reporter.done(&format!("updated kinfra on host `{}` (was {v})", host.name));
        }
    }
    Ok(facts)
}

/// The local commit a remote sandbox starts from: the tip of `branch` when it exists
/// here, else HEAD of the checkout `dir`.
pub fn start_commit(dir: &Path, main: &Path, branch: Option<&str>) -> Result<String> {
    if let Some(b) = branch
        && let Some(c) =
            crate::git::branch_commit(main, b).map_err(|e| RemoteError::Git(e.to_string()))?
    {
        return Ok(c);
    }
    crate::git::head_commit(dir)
        .map_err(|e| RemoteError::Git(e.to_string()))?
        .ok_or_else(|| RemoteError::Git("the repository has no commit yet".into()))
}

/// Move the host checkout's detached HEAD to `commit` so the host's kinfra reads that
/// commit's layout (its `kinfra.toml` and compose file).
pub fn checkout_detached(host: &Host, checkout: &str, commit: &str) -> Result<()> {
    let q = shell_quote(checkout);
    host.run(
        &format!(
            "git -C {q} checkout -q --force --detach {} && git -C {q} clean -q -fd",
            shell_quote(commit)
        ),
        Duration::from_secs(300),
    )?;
    Ok(())
}

/// `ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE ...`: a tunnel of its own (not through
/// the shared connection, whose master outlives the command), failing when a local
/// port cannot be bound, running until stopped.
pub fn tunnel(host: &Host, forwards: &[(u16, u16)]) -> Result<Cmd> {
    let mut cmd = Cmd::new("ssh")
        // ssh keeps the first value of an option: these win over the shared ones.
        .args(["-o", "ControlMaster=no", "-o", "ControlPath=none"])
        .args(host.ssh_options()?)
        .args(["-N", "-o", "ExitOnForwardFailure=yes"]);
    for (local, remote) in forwards {
        cmd = cmd
            .arg("-L")
            .arg(format!("127.0.0.1:{local}:127.0.0.1:{remote}"));
    }
    Ok(cmd.arg(host.url.destination()).no_timeout())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_keys_are_stable_and_differ_by_origin() {
        let a = repo_key("ktrdr", Some("git@x:me/ktrdr.git"), Path::new("/a"));
        assert_eq!(
            a,
            repo_key("ktrdr", Some("git@x:me/ktrdr.git"), Path::new("/b"))
        );
        assert_ne!(
            a,
            repo_key("ktrdr", Some("git@x:you/ktrdr.git"), Path::new("/a"))
        );
        assert!(a.starts_with("ktrdr-"));
    }

    #[test]
    fn listings_of_several_checkouts_are_concatenated() {
        let text = r#"{"schema_version":1,"instances":[{"instance_id":"a","slot":1,"status":"running"}]}
{"schema_version":1,"instances":[{"instance_id":"b","slot":2}]}
"#;
        let rows = parse_listings(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].instance_id, "b");
        assert!(parse_listings("{not json").is_err());
        assert!(parse_listings("").unwrap().is_empty());
    }

    #[test]
    fn names_find_by_id_then_unique_name() {
        let mut idx = RemoteIndex::default();
        for (id, name) in [("p--a", "a"), ("q--a", "a"), ("p--b", "b")] {
            idx.instances.insert(
                id.into(),
                RemoteEntry {
                    instance_id: id.into(),
                    name: name.into(),
                    host: "h".into(),
                    project: "p".into(),
                    checkout: String::new(),
                    path: String::new(),
                    branch: String::new(),
                    created_at: String::new(),
                    local_repo: String::new(),
                },
            );
        }
        assert_eq!(idx.find("p--a").unwrap().instance_id, "p--a");
        assert_eq!(idx.find("b").unwrap().instance_id, "p--b");
        assert!(idx.find("a").is_none(), "ambiguous");
    }
}

/// What `sandbox create --host HOST` will do.
#[derive(Debug, Clone)]
pub struct CreatePlan {
    pub id: String,
    pub name: String,
    pub project: String,
    pub branch: String,
    pub commit: String,
    pub local_repo: PathBuf,
    pub origin: Option<String>,
    pub key: String,
    pub host: Host,
}

/// What was made.
#[derive(Debug, Clone)]
pub struct CreatedRemote {
    pub entry: RemoteEntry,
    pub reached: Reached,
    pub slot: u32,
}

/// Check everything that can be checked here before the host is contacted: a valid
/// id that no instance here or on any host has, and the commit to start from.
pub fn plan_create(
    ctx: &crate::context::Ctx,
    name: &str,
    branch: Option<&str>,
    host: Host,
) -> crate::error::Result<CreatePlan> {
    let config = &ctx.config;
    let slug = crate::slug::slugify(name);
    if slug.is_empty() {
        return Err(crate::provision::ProvisionError::EmptyName(name.to_string()).into());
    }
    let id = format!("{}{slug}", config.sandbox_prefix);
    crate::provision::check_id(&id)?;
    let repo = ctx.require_repo()?;
    ctx.check_origin(repo)?;
    let main = repo.main_root.clone();
    let branch = branch.map_or_else(|| id.clone(), str::to_string);
    if !crate::gitfiles::is_valid_branch_name(&branch) {
        return Err(crate::provision::ProvisionError::InvalidBranch(branch).into());
    }
    if ctx.registry()?.contains(&id) {
        return Err(RemoteError::Taken {
            id,
            host: hosts::LOCAL.into(),
        }
        .into());
    }
    if let Some(e) = RemoteIndex::load()?.instances.get(&id) {
        return Err(RemoteError::Taken {
            id,
            host: e.host.clone(),
        }
        .into());
    }
    let commit = start_commit(&repo.toplevel, &main, Some(&branch))?;
    let origin = crate::git::origin_url(&main)?;
    let key = repo_key(&config.project_name, origin.as_deref(), &main);
    Ok(CreatePlan {
        id,
        name: name.to_string(),
        project: config.project_name.clone(),
        branch,
        commit,
        local_repo: main,
        origin,
        key,
        host,
    })
}

impl CreatePlan {
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!("host:     {}", self.host.name),
            format!("instance: {}", self.id),
            format!(
                "branch:   {} at {}",
                self.branch,
                &self.commit[..self.commit.len().min(12)]
            ),
            format!("checkout: ~/{REMOTE_CHECKOUTS}/{}/ on the host", self.key),
        ]
    }
}

/// Make the sandbox on the host. Nothing is written here until the host's kinfra has
/// made it; a host that does not answer leaves nothing behind locally.
pub fn execute_create(
    plan: &CreatePlan,
    flags: &[&str],
    reporter: &dyn crate::report::Reporter,
) -> Result<CreatedRemote> {
    let host = &plan.host;
    let facts = prepare_host(host, reporter)?;
    let dir_name = plan.local_repo.file_name().map_or_else(
        || plan.project.clone(),
        |n| n.to_string_lossy().into_owned(),
    );
    let checkout = format!("{}/{REMOTE_CHECKOUTS}/{}/{dir_name}", facts.home, plan.key);
    let reached = ensure_checkout(host, &checkout, plan.origin.as_deref())?;
    reporter.note(&format!(
        "pushing {} ({}) to host `{}`",
        plan.branch,
        &plan.commit[..plan.commit.len().min(12)],
        host.name
    ));
    push_commit(
        host,
        &plan.local_repo,
        &checkout,
        &plan.commit,
        &plan.branch,
    )?;
    checkout_detached(host, &checkout, &plan.commit)?;
    let mut args = vec![
        "sandbox",
        "create",
        plan.name.as_str(),
        "--branch",
        plan.branch.as_str(),
    ];
    args.extend(flags);
    // The host's progress streams to our stderr; its data (the path) is read below.
    let out = host.run_captured(&in_dir(&checkout, &args), Duration::from_secs(1800))?;
    // The host's hints name its paths and commands; ours follow.
    for line in out.stderr.lines().filter(|l| !l.starts_with("hint:")) {
        reporter.note(&format!("{}: {line}", host.name));
    }
    if !out.success() {
        return Err(HostError::Remote {
            host: host.name.clone(),
            command: format!("kinfra {}", args.join(" ")),
            status: crate::process::describe_status(out.status),
            stderr: out.stderr,
        }
        .into());
    }
    let path = out.stdout.trim().lines().last().unwrap_or("").to_string();
    let listed = run_json(host, &checkout, &["sandbox", "list", "--json"])?;
    let slot = listed["instances"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["instance_id"] == plan.id.as_str()))
        .and_then(|r| r["slot"].as_u64())
        .and_then(|s| u32::try_from(s).ok())
        .unwrap_or(0);
    let entry = RemoteEntry {
        instance_id: plan.id.clone(),
        name: plan.name.clone(),
        host: host.name.clone(),
        project: plan.project.clone(),
        checkout,
        path,
        branch: plan.branch.clone(),
        created_at: crate::timefmt::now_iso(),
        local_repo: plan.local_repo.display().to_string(),
    };
    update(reporter, |idx| {
        if let Some(e) = idx.instances.get(&entry.instance_id) {
            return Err(RemoteError::Taken {
                id: entry.instance_id.clone(),
                host: e.host.clone(),
            });
        }
        idx.instances
            .insert(entry.instance_id.clone(), entry.clone());
        Ok(())
    })?;
    Ok(CreatedRemote {
        entry,
        reached,
        slot,
    })
}
