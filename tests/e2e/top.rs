//! `kinfra top` driven in a detached tmux session on its own socket (under the test's
//! TMPDIR): the first screen at 80x24, the one-line message on a smaller terminal, `q`
//! quitting with exit 0, and the refusal without a terminal.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{Env, kinfra_dir};

/// A tmux server of this test alone; killed (its socket only) when dropped.
struct Tmux<'a> {
    env: &'a Env,
    socket: String,
}

impl<'a> Tmux<'a> {
    fn new(env: &'a Env) -> Tmux<'a> {
        Tmux {
            env,
            socket: format!("kinfra-top-{}", env.tag),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("tmux");
        self.env.apply(&mut cmd);
        cmd.env("TMUX_TMPDIR", self.env.tmp())
            .env("TERM", "xterm-256color")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args);
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run tmux (apt-get install tmux): {e}"))
    }

    /// `kinfra top` in a new detached `w`x`h` session, started in `cwd`; the pane stays
    /// after it exits so its exit status can be read.
    fn start(&self, cwd: &Path, w: u16, h: u16) {
        let kinfra = kinfra_dir().join("kinfra");
        let (w, h) = (w.to_string(), h.to_string());
        let out = self.run(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            &w,
            "-y",
            &h,
            "-c",
            cwd.to_str().unwrap(),
            "sh",
            "-c",
            "\"$0\" top; echo $? > \"$1\"",
            kinfra.to_str().unwrap(),
            self.status_file().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        let out = self.run(&["set-option", "-t", "top", "remain-on-exit", "on"]);
        assert!(out.status.success(), "tmux set-option: {out:?}");
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "top"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[track_caller]
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` on the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The exit status of `kinfra top`, once it exited (written by the shell that ran
    /// it: tmux 3.3 does not always report a dead pane's status).
    fn exit_status(&self) -> Option<String> {
        std::fs::read_to_string(self.status_file())
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    fn status_file(&self) -> std::path::PathBuf {
        self.env.tmp().join(format!("{}.status", self.socket))
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(out.status.success(), "tmux send-keys: {out:?}");
    }
}

impl Drop for Tmux<'_> {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The built-in layout's ids (`ktrdr--NAME`) are the same on every run, so the screen
/// can be compared as it is; nothing here starts containers.
#[test]
fn top_first_screen_then_q_quits() {
    let env = Env::builtin();
    env.kinfra(&env.main, &["sandbox", "create", "topsnap", "--slot", "3"])
        .assert_code(0);
    let tmux = Tmux::new(&env);
    tmux.start(&env.main, 80, 24);
    tmux.wait_for("ktrdr--topsnap");
    // The first screen without the (empty) trailing lines tmux pads with.
    let screen = tmux.wait_for("q quit");
    let screen: Vec<&str> = screen.lines().map(str::trim_end).collect();
    insta::assert_snapshot!("top_first_screen", screen.join("\n"));

    tmux.keys(&["j", "k"]);
    // `u` runs `kinfra sandbox up` on the selected instance, its output in the log
    // pane (this layout has no compose file here, so it fails and says so).
    tmux.keys(&["u"]);
    tmux.wait_for("kinfra sandbox up --instance ktrdr--topsnap");
    tmux.wait_for("--instance ktrdr--topsnap` exited with");
    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = tmux.exit_status() {
            break s;
        }
        assert!(Instant::now() < deadline, "`q` did not end kinfra top");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, "0");
    // The alternate screen is left: the dashboard is gone from the pane.
    assert!(!tmux.screen().contains("q quit"), "{}", tmux.screen());
}

#[test]
fn top_on_a_small_terminal_says_so_and_esc_quits() {
    let env = Env::new();
    let tmux = Tmux::new(&env);
    tmux.start(&env.main, 60, 20);
    tmux.wait_for("terminal too small (need 80x24)");
    tmux.keys(&["Escape"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.exit_status().is_none() {
        assert!(Instant::now() < deadline, "Esc did not end kinfra top");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(tmux.exit_status().as_deref(), Some("0"));
}

#[test]
fn top_without_a_terminal_is_a_usage_error() {
    let env = Env::new();
    env.kinfra(&env.main, &["top"])
        .assert_code(2)
        .assert_stderr_contains("needs a terminal");
}
