//! The one way kinfra starts a subprocess: argv only (never a shell), stdin null unless
//! interactive, optional timeout that kills the child's whole process group.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
    #[error("`{command}` did not finish within {}s and was killed", .timeout.as_secs())]
    TimedOut { command: String, timeout: Duration },
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {}", trimmed.lines().collect::<Vec<_>>().join(" | "))
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
}

/// A command to run: program, args, working directory, environment changes, timeout.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    timeout: Option<Duration>,
    stdout_to_stderr: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            timeout: None,
            stdout_to_stderr: false,
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

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Send the child's stdout to our stderr (progress of a subprocess is not data).
    pub fn stdout_to_stderr(mut self) -> Self {
        self.stdout_to_stderr = true;
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

    fn spawn(&self, mut cmd: Command) -> Result<Child, ProcessError> {
        use std::os::unix::process::CommandExt;
        // Own process group, so a timeout can kill grandchildren too.
        cmd.process_group(0);
        cmd.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ProcessError::NotFound {
                    program: self.program.to_string_lossy().into_owned(),
                }
            } else {
                ProcessError::Spawn {
                    command: self.display(),
                    source,
                }
            }
        })
    }

    /// Run with stdout and stderr captured; a non-zero exit is *not* an error here.
    pub fn output(&self) -> Result<Output, ProcessError> {
        let mut cmd = self.build();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.spawn(cmd)?;
        // Read both pipes on threads so a chatty child never blocks on a full pipe.
        let mut out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take();
        let out_thread = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = out_pipe.as_mut() {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        });
        let err_thread = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = err_pipe.as_mut() {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        });
        let status = self.wait(&mut child)?;
        let stdout = out_thread.join().unwrap_or_default();
        let stderr = err_thread.join().unwrap_or_default();
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
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
    /// returns the exit status.
    pub fn status(&self, interactive: bool) -> Result<ExitStatus, ProcessError> {
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
        if interactive {
            // An interactive child must stay in the terminal's foreground group.
            let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
                command: self.display(),
                source,
            })?;
            return child.wait().map_err(|source| ProcessError::Spawn {
                command: self.display(),
                source,
            });
        }
        let mut child = self.spawn(cmd)?;
        self.wait(&mut child)
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

    fn wait(&self, child: &mut Child) -> Result<ExitStatus, ProcessError> {
        let Some(timeout) = self.timeout else {
            return child.wait().map_err(|source| ProcessError::Spawn {
                command: self.display(),
                source,
            });
        };
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    kill_group(child);
                    let _ = child.wait();
                    return Err(ProcessError::TimedOut {
                        command: self.display(),
                        timeout,
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(source) => {
                    return Err(ProcessError::Spawn {
                        command: self.display(),
                        source,
                    });
                }
            }
        }
    }
}

fn kill_group(child: &Child) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
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
            _ => crate::error::Exit::External,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("abc-1/x.y"), "abc-1/x.y");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn captures_output_and_exit_code() {
        let out = Cmd::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .output()
            .unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn failure_names_command_status_and_stderr() {
        let err = Cmd::new("sh")
            .args(["-c", "echo boom >&2; exit 4"])
            .run()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`sh -c 'echo boom >&2; exit 4'`"), "{msg}");
        assert!(msg.contains("exit code 4"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }

    #[test]
    fn timeout_kills_the_process_group() {
        let started = Instant::now();
        let err = Cmd::new("sh")
            .args(["-c", "sleep 30 & sleep 30"])
            .timeout(Duration::from_millis(200))
            .output()
            .unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_program_is_named() {
        let err = Cmd::new("kinfra-no-such-program").output().unwrap_err();
        assert!(matches!(err, ProcessError::NotFound { .. }));
    }
}
