//! The one way kinfra starts a subprocess: argv only (never a shell), stdin null unless
//! interactive, and every non-interactive command bounded in time. A command that runs
//! too long, or is running when kinfra gets Ctrl-C or SIGTERM, is stopped as a whole
//! process group: SIGTERM, a grace period, then SIGKILL.
//!
//! Interactive commands (`shell`, `logs -f`) stay in the terminal's foreground process
//! group, so Ctrl-C reaches them directly; kinfra keeps waiting and returns their status.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::envvars::EnvError;
pub use crate::envvars::Timeouts;
use crate::interrupt::{Events, Interrupt};

/// How long a stopped command gets between SIGTERM and SIGKILL, unless set per command.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// A failed or unstartable subprocess, with enough detail to act on.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("`{program}` was not found on PATH")]
    NotFound { program: String },
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` did not finish within {} and was stopped", format_duration(*.timeout))]
    TimedOut {
        command: String,
        timeout: Duration,
        /// The variable that set the limit, if one did (for the hint).
        setting: Option<&'static str>,
    },
    #[error("`{command}` was stopped because kinfra was interrupted")]
    Interrupted { command: String },
    /// A `KINFRA_TIMEOUT_*` variable has a value that cannot be used.
    #[error(transparent)]
    Settings(#[from] EnvError),
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {}", trimmed.lines().collect::<Vec<_>>().join(" | "))
    }
}

/// `30s`, `0.25s`: a limit as a user would write it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        let text = format!("{:.3}", d.as_secs_f64());
        format!("{}s", text.trim_end_matches('0'))
    }
}

/// Captured result of a finished command.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code; `None` when the command was killed by a signal.
    pub fn exit_code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Which per-kind limit (`envvars::Timeouts`) applies to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// git and docker queries (`KINFRA_TIMEOUT_READ`, default 30 s).
    Read,
    /// git commands that copy or check out files (`KINFRA_TIMEOUT_COMPOSE`).
    Git,
    /// compose `up` / `down` (`KINFRA_TIMEOUT_COMPOSE`, default 10 min).
    Compose,
}

impl TimeoutKind {
    fn of(self, t: &Timeouts) -> Duration {
        match self {
            TimeoutKind::Read => t.read(),
            TimeoutKind::Git => t.git(),
            TimeoutKind::Compose => t.compose(),
        }
    }

    fn setting(self) -> &'static str {
        match self {
            TimeoutKind::Read => crate::envvars::TIMEOUT_READ,
            TimeoutKind::Git | TimeoutKind::Compose => crate::envvars::TIMEOUT_COMPOSE,
        }
    }
}

/// How long a command may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// Non-interactive: the long (compose) limit, so no outside call runs for ever.
    /// Interactive: none; the user is there to end it.
    Default,
    Fixed(Duration),
    Kind(TimeoutKind),
    Unlimited,
}

/// The limit in force and the variable that set it (`None`: no limit).
type LimitSetting = Option<(Duration, Option<&'static str>)>;

/// A command to run: program, args, working directory, environment changes, limits.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    limit: Limit,
    grace: Duration,
    interrupt: Option<Interrupt>,
    stdout_to_stderr: bool,
    stdin_file: Option<PathBuf>,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            limit: Limit::Default,
            grace: DEFAULT_GRACE,
            interrupt: None,
            stdout_to_stderr: false,
            stdin_file: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env_remove.push(key.as_ref().to_owned());
        self
    }

    /// Stop the command after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.limit = Limit::Fixed(timeout);
        self
    }

    /// Stop the command after the configured limit for its kind.
    pub fn timeout_kind(mut self, kind: TimeoutKind) -> Self {
        self.limit = Limit::Kind(kind);
        self
    }

    /// No time limit, even when not interactive (a command the user ends).
    pub fn no_timeout(mut self) -> Self {
        self.limit = Limit::Unlimited;
        self
    }

    /// Time between SIGTERM and SIGKILL when the command is stopped (default 2 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Watch `interrupt` instead of kinfra's signals (tests simulate Ctrl-C with it).
    pub fn interrupt_by(mut self, interrupt: &Interrupt) -> Self {
        self.interrupt = Some(interrupt.clone());
        self
    }

    /// Send the child's stdout to our stderr (progress of a subprocess is not data).
    pub fn stdout_to_stderr(mut self) -> Self {
        self.stdout_to_stderr = true;
        self
    }

    /// Feed this file to the command's stdin (captured runs only: [`Cmd::output`]).
    pub fn stdin_file(mut self, path: impl AsRef<Path>) -> Self {
        self.stdin_file = Some(path.as_ref().to_owned());
        self
    }

    /// The command line as a user would type it, for messages.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(self.args.iter())
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn build(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        for key in &self.env_remove {
            cmd.env_remove(key);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn interrupt(&self) -> &Interrupt {
        self.interrupt
            .as_ref()
            .unwrap_or_else(|| Interrupt::global())
    }

    /// The limit in force and the variable that set it.
    fn resolve_limit(
        &self,
        interactive: bool,
    ) -> Result<Option<(Duration, Option<&'static str>)>, ProcessError> {
        Ok(match self.limit {
            Limit::Fixed(d) => Some((d, None)),
            Limit::Unlimited => None,
            Limit::Default if interactive => None,
            Limit::Default => Some((
                Timeouts::current()?.compose(),
                Some(crate::envvars::TIMEOUT_COMPOSE),
            )),
            Limit::Kind(kind) => Some((kind.of(&Timeouts::current()?), Some(kind.setting()))),
        })
    }

    fn interrupted(&self) -> ProcessError {
        ProcessError::Interrupted {
            command: self.display(),
        }
    }

    fn spawn_error(&self, source: std::io::Error) -> ProcessError {
        ProcessError::Spawn {
            command: self.display(),
            source,
        }
    }

    /// Start the child; in its own process group unless it is interactive.
    fn spawn(&self, mut cmd: Command, own_group: bool) -> Result<Child, ProcessError> {
        use std::os::unix::process::CommandExt;
        // A Ctrl-C that nobody has acted on yet: starting more work would ignore it.
        // (Once reported, cleanup commands run; a further Ctrl-C stops them too.)
        let interrupt = self.interrupt();
        if interrupt.unreported() {
            interrupt.mark_reported(interrupt.events());
            return Err(self.interrupted());
        }
        if own_group {
            // Own process group: a stop reaches grandchildren too, and the terminal's
            // Ctrl-C reaches only kinfra, which decides.
            cmd.process_group(0);
        }
        cmd.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ProcessError::NotFound {
                    program: self.program.to_string_lossy().into_owned(),
                }
            } else {
                self.spawn_error(source)
            }
        })
    }

    /// Start the child non-interactive, in its own group, stdout and stderr piped; its
    /// time limit.
    /// Also the signals seen just before the start: any later one counts as the child's
    /// time (a Ctrl-C right after the start is never folded into "before").
    fn spawn_piped(&self) -> Result<(Child, LimitSetting, Events), ProcessError> {
        let limit = self.resolve_limit(false)?;
        let mut cmd = self.build();
        let stdin = match &self.stdin_file {
            Some(path) => {
                Stdio::from(std::fs::File::open(path).map_err(|source| self.spawn_error(source))?)
            }
            None => Stdio::null(),
        };
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let seen = self.interrupt().events();
        Ok((self.spawn(cmd, true)?, limit, seen))
    }

    /// Run with stdout and stderr captured; a non-zero exit is *not* an error here.
    pub fn output(&self) -> Result<Output, ProcessError> {
        let (mut child, limit, seen) = self.spawn_piped()?;
        // Read both pipes on threads so a chatty child never blocks on a full pipe.
        let out_thread = drain(child.stdout.take());
        let err_thread = drain(child.stderr.take());
        // Done only when the pipes are closed too: a grandchild may still hold them.
        let pipes_closed = || out_thread.is_finished() && err_thread.is_finished();
        let status = self.supervise(&mut child, seen, false, limit, &pipes_closed)?;
        let stdout = out_thread.join().unwrap_or_default();
        let stderr = err_thread.join().unwrap_or_default();
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Run with stdout and stderr read line by line as they come, each line handed to
    /// `on_line` (from reader threads); a non-zero exit is *not* an error here.
    pub fn output_lines(
        &self,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<ExitStatus, ProcessError> {
        use std::io::BufRead;
        let (mut child, limit, seen) = self.spawn_piped()?;
        let (out, err) = (child.stdout.take(), child.stderr.take());
        std::thread::scope(|scope| {
            let lines = |pipe: Option<Box<dyn Read + Send>>| {
                scope.spawn(move || {
                    if let Some(p) = pipe {
                        for line in std::io::BufReader::new(p)
                            .split(b'\n')
                            .map_while(Result::ok)
                        {
                            on_line(String::from_utf8_lossy(&line).trim_end_matches('\r'));
                        }
                    }
                })
            };
            let out_thread = lines(out.map(|p| Box::new(p) as Box<dyn Read + Send>));
            let err_thread = lines(err.map(|p| Box::new(p) as Box<dyn Read + Send>));
            // Done only when the pipes are closed too: a grandchild may still hold them.
            let pipes_closed = || out_thread.is_finished() && err_thread.is_finished();
            self.supervise(&mut child, seen, false, limit, &pipes_closed)
        })
    }

    /// Run captured and require success; returns stdout.
    pub fn run(&self) -> Result<String, ProcessError> {
        let out = self.output()?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(ProcessError::Failed {
                command: self.display(),
                status: describe_status(out.status),
                stderr: out.stderr,
            })
        }
    }

    /// Run with the terminal attached (stdin inherited only when `interactive`);
    /// returns the exit status. An interactive child has no time limit unless one is
    /// set, and a Ctrl-C is its own to handle: kinfra waits and returns its status.
    pub fn status(&self, interactive: bool) -> Result<ExitStatus, ProcessError> {
        let limit = self.resolve_limit(interactive)?;
        let mut cmd = self.build();
        cmd.stdin(if interactive {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
        if self.stdout_to_stderr {
            use std::os::fd::AsFd;
            if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
                cmd.stdout(Stdio::from(fd));
            }
        }
        // An interactive child must stay in the terminal's foreground group. Signals
        // are counted from just before it starts: a Ctrl-C that reaches it before the
        // first look is still the child's, not kinfra's.
        let seen = self.interrupt().events();
        let mut child = self.spawn(cmd, !interactive)?;
        #[cfg(test)]
        tests::late_first_look();
        self.supervise(&mut child, seen, interactive, limit, &|| true)
    }

    /// Like [`Cmd::status`] (non-interactive), but a non-zero exit is an error.
    pub fn run_streamed(&self) -> Result<(), ProcessError> {
        let status = self.status(false)?;
        if status.success() {
            Ok(())
        } else {
            Err(ProcessError::Failed {
                command: self.display(),
                status: describe_status(status),
                stderr: String::new(),
            })
        }
    }

    /// Wait for the child (and `done`), stopping it on a timeout or an interruption.
    fn supervise(
        &self,
        child: &mut Child,
        mut seen: Events,
        interactive: bool,
        limit: Option<(Duration, Option<&'static str>)>,
        done: &dyn Fn() -> bool,
    ) -> Result<ExitStatus, ProcessError> {
        let interrupt = self.interrupt();
        let started = Instant::now();
        let mut exited = None;
        let mut pause = Duration::from_micros(250);
        loop {
            if exited.is_none() {
                exited = match child.try_wait() {
                    Ok(status) => status,
                    Err(source) => {
                        self.stop(child, !interactive, None);
                        return Err(self.spawn_error(source));
                    }
                };
            }
            let now = interrupt.events();
            if let Some(status) = exited
                && done()
            {
                if interactive && now.ints > seen.ints {
                    // The Ctrl-C that ended the child was the child's.
                    interrupt.absorb(now.ints - seen.ints);
                }
                return Ok(status);
            }
            let stop_now = if interactive {
                // Ctrl-C went to the child as well (same process group); it is the
                // child's to handle. SIGTERM was meant for kinfra alone: pass it on.
                if now.ints > seen.ints {
                    interrupt.absorb(now.ints - seen.ints);
                }
                now.terms > seen.terms
            } else {
                now.total() > seen.total()
            };
            seen = now;
            if stop_now {
                self.stop(child, !interactive, exited);
                interrupt.mark_reported(interrupt.events());
                return Err(self.interrupted());
            }
            if let Some((timeout, setting)) = limit
                && started.elapsed() >= timeout
            {
                self.stop(child, !interactive, exited);
                return Err(ProcessError::TimedOut {
                    command: self.display(),
                    timeout,
                    setting,
                });
            }
            std::thread::sleep(pause);
            // Quick commands (most git queries) are seen to end within a few ms; long
            // ones are polled every 20 ms.
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// SIGTERM, up to the grace period for it to end, then SIGKILL; reaps the child.
    /// `group`: the child leads its own process group, and the whole group is stopped.
    /// A further signal to kinfra during the grace period kills at once.
    fn stop(&self, child: &mut Child, group: bool, mut exited: Option<ExitStatus>) {
        let Ok(raw) = i32::try_from(child.id()) else {
            return;
        };
        let pid = Pid::from_raw(raw);
        // Members of the group left: the leader (even as an unreaped zombie), or the
        // grandchildren that outlived it.
        let alive = |exited: Option<ExitStatus>| {
            if group {
                killpg(pid, None).is_ok()
            } else {
                exited.is_none()
            }
        };
        let send = |signal: Signal, exited: Option<ExitStatus>| {
            if group {
                let _ = killpg(pid, signal);
            } else if exited.is_none() {
                let _ = kill(pid, signal);
            }
        };
        send(Signal::SIGTERM, exited);
        let interrupt = self.interrupt();
        let signals = interrupt.events().total();
        let until = Instant::now() + self.grace;
        while Instant::now() < until && interrupt.events().total() == signals {
            if exited.is_none() {
                exited = child.try_wait().ok().flatten();
            }
            if !alive(exited) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Whatever is left of the group (a grandchild that trapped SIGTERM, say).
        if alive(exited) {
            send(Signal::SIGKILL, exited);
        }
        if exited.is_none() {
            let _ = child.wait();
        }
    }
}

/// Read a pipe to its end on a thread.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// "exit code 3" or "killed by signal 9".
pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".to_string(),
    }
}

/// Quote an argument for display the way a POSIX shell would need it.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl crate::error::Diagnostic for ProcessError {
    fn exit(&self) -> crate::error::Exit {
        match self {
            ProcessError::TimedOut { .. } => crate::error::Exit::TimedOut,
            ProcessError::Interrupted { .. } => crate::error::Exit::Interrupted,
            ProcessError::Settings(e) => e.exit(),
            _ => crate::error::Exit::External,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ProcessError::TimedOut {
                setting: Some(name),
                ..
            } => Some(format!(
                "if it needs longer, raise `{name}` (seconds) and retry"
            )),
            ProcessError::Settings(e) => e.hint(),
            _ => None,
        }
    }
}

/// Whether an executable `name` is in a directory of `PATH` (found, not run).
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(name))))
}

/// Whether `path` is a file someone may execute.
pub fn executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::Signal as Sig;
    use std::path::PathBuf;

    fn sh(script: &str) -> Cmd {
        Cmd::new("sh").args(["-c", script])
    }

    fn q(p: &Path) -> String {
        shell_quote(&p.display().to_string())
    }

    /// Wait up to 10 s for `path` to exist; its content, trimmed.
    fn wait_for_file(path: &Path) -> String {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(text) = std::fs::read_to_string(path)
                && text.ends_with('\n')
            {
                return text.trim().to_string();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("`{}` never appeared", path.display());
    }

    /// Gone, or a zombie nobody reaps (PID 1 in a container may not).
    fn gone(pid: i32) -> bool {
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            let dead = kill(Pid::from_raw(pid), None).is_err()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')));
            if dead || Instant::now() >= until {
                return dead;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Simulate `signal` on `interrupt` after `delay`, from another thread.
    fn simulate_later(interrupt: &Interrupt, signal: Sig, delay: Duration) {
        let i = interrupt.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            i.simulate(signal);
        });
    }

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("abc-1/x.y"), "abc-1/x.y");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn formats_durations_as_seconds() {
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_millis(250)), "0.25s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn captures_output_and_exit_code() {
        let out = sh("echo out; echo err >&2; exit 3").output().unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.exit_code(), Some(3));
        let out = sh("kill -9 $$").output().unwrap();
        assert_eq!(out.exit_code(), None);
        assert_eq!(describe_status(out.status), "killed by signal 9");
    }

    #[test]
    fn failure_names_command_status_and_stderr() {
        let err = sh("echo boom >&2; exit 4").run().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`sh -c 'echo boom >&2; exit 4'`"), "{msg}");
        assert!(msg.contains("exit code 4"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }

    #[test]
    fn timeout_kills_the_process_group() {
        let started = Instant::now();
        let err = sh("sleep 30 & sleep 30")
            .timeout(Duration::from_millis(200))
            .output()
            .unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }));
        assert_eq!(
            err.to_string(),
            "`sh -c 'sleep 30 & sleep 30'` did not finish within 0.2s and was stopped"
        );
        assert_eq!(
            crate::error::Diagnostic::exit(&err),
            crate::error::Exit::TimedOut
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_child_ignoring_term_is_killed_after_the_grace() {
        let started = Instant::now();
        let err = sh("trap '' TERM; while :; do sleep 0.05; done")
            .timeout(Duration::from_millis(200))
            .grace(Duration::from_millis(500))
            .output()
            .unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err}");
        assert!(
            took >= Duration::from_millis(700),
            "killed before the grace: {took:?}"
        );
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn a_child_that_exits_on_term_ends_within_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("term");
        let started = Instant::now();
        let err = sh(&format!(
            "trap 'echo cleaned > {}; exit 0' TERM; while :; do sleep 0.05; done",
            q(&marker)
        ))
        .timeout(Duration::from_millis(200))
        .grace(Duration::from_secs(10))
        .output()
        .unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        // It ran its own clean-up: it got SIGTERM, not SIGKILL.
        assert_eq!(wait_for_file(&marker), "cleaned");
    }

    #[test]
    fn stopping_reaches_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let err = sh(&format!("sleep 30 & echo $! > {}; wait", q(&pidfile)))
            .timeout(Duration::from_millis(300))
            .grace(Duration::from_millis(300))
            .output()
            .unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err}");
        let pid: i32 = wait_for_file(&pidfile).parse().unwrap();
        assert!(gone(pid), "grandchild {pid} still runs");
    }

    #[test]
    fn a_grandchild_holding_the_pipes_cannot_hang_output() {
        // The leader exits at once; a grandchild that ignores SIGTERM keeps stdout open.
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let started = Instant::now();
        let err = sh(&format!(
            "(trap '' TERM; sleep 30) & echo $! > {}; exit 0",
            q(&pidfile)
        ))
        .timeout(Duration::from_millis(300))
        .grace(Duration::from_millis(200))
        .output()
        .unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let pid: i32 = wait_for_file(&pidfile).parse().unwrap();
        assert!(gone(pid), "grandchild {pid} still runs");
    }

    #[test]
    fn an_interruption_is_forwarded_as_term_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("term");
        let interrupt = Interrupt::detached();
        simulate_later(&interrupt, Sig::Int, Duration::from_millis(200));
        let started = Instant::now();
        let err = sh(&format!(
            "trap 'echo got-term > {}; exit 0' TERM; while :; do sleep 0.05; done",
            q(&marker)
        ))
        .interrupt_by(&interrupt)
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            err.to_string(),
            format!(
                "`sh -c 'trap '\\''echo got-term > {}; exit 0'\\'' TERM; while :; do sleep 0.05; done'` \
                 was stopped because kinfra was interrupted",
                marker.display()
            )
        );
        assert_eq!(
            crate::error::Diagnostic::exit(&err),
            crate::error::Exit::Interrupted
        );
        assert_eq!(wait_for_file(&marker), "got-term");
    }

    #[test]
    fn streamed_commands_are_interrupted_too() {
        let interrupt = Interrupt::detached();
        simulate_later(&interrupt, Sig::Term, Duration::from_millis(100));
        let err = sh("sleep 30")
            .interrupt_by(&interrupt)
            .run_streamed()
            .unwrap_err();
        assert!(matches!(err, ProcessError::Interrupted { .. }), "{err}");
    }

    #[test]
    fn a_second_interruption_during_the_grace_kills_at_once() {
        let interrupt = Interrupt::detached();
        simulate_later(&interrupt, Sig::Int, Duration::from_millis(100));
        simulate_later(&interrupt, Sig::Int, Duration::from_millis(400));
        let started = Instant::now();
        let err = sh("trap '' TERM; while :; do sleep 0.05; done")
            .interrupt_by(&interrupt)
            .grace(Duration::from_secs(20))
            .output()
            .unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, ProcessError::Interrupted { .. }), "{err}");
        assert!(took >= Duration::from_millis(350), "{took:?}");
        assert!(
            took < Duration::from_secs(3),
            "waited out the grace: {took:?}"
        );
    }

    #[test]
    fn no_new_command_starts_after_an_unreported_interruption_but_cleanup_may_run() {
        let interrupt = Interrupt::detached();
        interrupt.simulate(Sig::Int);
        let err = Cmd::new("true")
            .interrupt_by(&interrupt)
            .output()
            .unwrap_err();
        assert!(matches!(err, ProcessError::Interrupted { .. }), "{err}");
        // Reported now: clean-up commands run.
        let out = Cmd::new("true").interrupt_by(&interrupt).output().unwrap();
        assert!(out.success());
        assert!(interrupt.requested());
    }

    #[test]
    fn ctrl_c_during_an_interactive_child_is_the_childs() {
        let interrupt = Interrupt::detached();
        simulate_later(&interrupt, Sig::Int, Duration::from_millis(100));
        let status = sh("sleep 0.4; exit 7")
            .interrupt_by(&interrupt)
            .status(true)
            .unwrap();
        assert_eq!(status.code(), Some(7));
        assert!(!interrupt.requested());
        assert!(Cmd::new("true").interrupt_by(&interrupt).output().is_ok());
    }

    #[test]
    fn sigterm_during_an_interactive_child_is_passed_on() {
        let interrupt = Interrupt::detached();
        simulate_later(&interrupt, Sig::Term, Duration::from_millis(100));
        let started = Instant::now();
        let err = sh("sleep 30")
            .interrupt_by(&interrupt)
            .status(true)
            .unwrap_err();
        assert!(matches!(err, ProcessError::Interrupted { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn interactive_children_have_no_default_limit() {
        let cmd = Cmd::new("true");
        assert_eq!(cmd.resolve_limit(true).unwrap(), None);
        let fixed = cmd.clone().timeout(Duration::from_secs(3));
        assert_eq!(
            fixed.resolve_limit(true).unwrap(),
            Some((Duration::from_secs(3), None))
        );
        assert_eq!(cmd.clone().no_timeout().resolve_limit(false).unwrap(), None);
        let t = Timeouts::default();
        assert_eq!(TimeoutKind::Read.of(&t), Duration::from_secs(30));
        assert_eq!(TimeoutKind::Compose.of(&t), Duration::from_secs(600));
        assert_eq!(TimeoutKind::Read.setting(), "KINFRA_TIMEOUT_READ");
    }

    #[test]
    fn a_timeout_set_by_a_variable_hints_at_it() {
        let err = ProcessError::TimedOut {
            command: "docker ps".into(),
            timeout: Duration::from_secs(30),
            setting: Some(crate::envvars::TIMEOUT_READ),
        };
        assert_eq!(
            crate::error::Diagnostic::hint(&err).as_deref(),
            Some("if it needs longer, raise `KINFRA_TIMEOUT_READ` (seconds) and retry")
        );
    }

    #[test]
    fn missing_program_is_named() {
        let err = Cmd::new("kinfra-no-such-program").output().unwrap_err();
        assert!(matches!(err, ProcessError::NotFound { .. }));
    }

    // Real signals, in a copy of this test binary (so they cannot disturb other tests):
    // the parent starts `signal_helper` and signals it like a terminal would.

    const HELPER_DIR: &str = "KINFRA_TEST_SIGNAL_HELPER_DIR";
    const HELPER_MODE: &str = "KINFRA_TEST_SIGNAL_HELPER_MODE";

    #[test]
    fn signal_helper() {
        // Does nothing unless started by the tests below.
        let Some(dir) = std::env::var_os(HELPER_DIR).map(PathBuf::from) else {
            return;
        };
        crate::interrupt::install().unwrap();
        crate::interrupt::install().unwrap();
        let pidfile = q(&dir.join("pid"));
        let marker = q(&dir.join("term"));
        let result = match std::env::var(HELPER_MODE).as_deref() {
            Ok("captured") => {
                let err = sh(&format!(
                    "trap 'echo got-term > {marker}; exit 0' TERM; echo $$ > {pidfile}; \
                     while :; do sleep 0.05; done"
                ))
                .timeout(Duration::from_secs(20))
                .output()
                .unwrap_err();
                format!("{:?}", crate::error::Diagnostic::exit(&err))
            }
            _ => {
                let status = sh(&format!(
                    "trap 'exit 7' INT; echo $$ > {pidfile}; while :; do sleep 0.05; done"
                ))
                .status(true)
                .unwrap();
                format!("{:?} {}", status.code(), crate::interrupt::requested())
            }
        };
        std::fs::write(dir.join("result"), format!("{result}\n")).unwrap();
    }

    /// Set in a helper: kinfra looks at its child only this long after starting it, so a
    /// Ctrl-C always arrives before the first look (the window a busy machine opens).
    const LATE_FIRST_LOOK: &str = "KINFRA_TEST_LATE_FIRST_LOOK_MS";

    pub(super) fn late_first_look() {
        if let Some(ms) = std::env::var(LATE_FIRST_LOOK)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }

    /// Run `signal_helper` in `mode`; once its child runs, send SIGINT to the helper
    /// (or, `to_group`, to the helper's process group, as a terminal's Ctrl-C does).
    fn run_helper(mode: &str, to_group: bool) -> (String, PathBuf, tempfile::TempDir) {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "process::tests::signal_helper",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_DIR, dir.path())
            .env(HELPER_MODE, mode)
            .env(LATE_FIRST_LOOK, "300")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        wait_for_file(&dir.path().join("pid"));
        let pid = Pid::from_raw(helper.id() as i32);
        if to_group {
            killpg(pid, Signal::SIGINT).unwrap();
        } else {
            kill(pid, Signal::SIGINT).unwrap();
        }
        let until = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = helper.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= until {
                let _ = killpg(pid, Signal::SIGKILL);
                panic!("the helper did not end after SIGINT");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "helper: {status:?}");
        let result = wait_for_file(&dir.path().join("result"));
        let marker = dir.path().join("term");
        (result, marker, dir)
    }

    #[test]
    fn sigint_stops_a_captured_child_with_term() {
        let (result, marker, _dir) = run_helper("captured", false);
        assert_eq!(result, "Interrupted");
        assert_eq!(wait_for_file(&marker), "got-term");
    }

    #[test]
    fn ctrl_c_reaches_an_interactive_child_and_kinfra_waits_for_it() {
        let (result, _, _dir) = run_helper("interactive", true);
        // The child's own exit status, and kinfra itself was not asked to stop.
        assert_eq!(result, "Some(7) false");
    }
}
