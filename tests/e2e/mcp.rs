//! `kinfra mcp`: scripted MCP sessions over the real binary's stdin/stdout
//! (initialize, notifications/initialized, tools/list, tool calls), the scope and
//! local-prod refusals, wrong arguments, `exec` only with `--allow-exec`, and
//! `sandbox create --mcp`. The tools that need a running stack run against one real
//! test stack (Docker, see stack.rs), several calls in one session.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Env, exit};
use crate::stack::{SLOT_SHELL, Stack};

/// How long one answer may take (an `up` of the test stack included).
const ANSWER: Duration = Duration::from_secs(120);

/// A running `kinfra mcp`: requests written as JSON lines, stdout read line by line
/// (every line must be JSON-RPC).
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: u64,
}

impl Session {
    fn start(mut cmd: Command) -> Session {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kinfra mcp");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut s = Session {
            child,
            stdin,
            lines,
            next_id: 0,
        };
        let init = s.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "kinfra-e2e", "version": "0"}
            }),
        );
        assert_eq!(init["result"]["serverInfo"]["name"], "kinfra", "{init}");
        assert!(
            init["result"]["capabilities"]["tools"].is_object(),
            "{init}"
        );
        s.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        s
    }

    fn send(&mut self, msg: &Value) {
        let stdin = self.stdin.as_mut().expect("session open");
        writeln!(stdin, "{msg}").expect("write to kinfra mcp");
        stdin.flush().expect("flush");
    }

    /// Send a request; its response (notifications before it are skipped).
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let msg = self.next(method);
            if msg["id"] == json!(id) {
                return msg;
            }
            assert!(msg.get("method").is_some(), "unexpected message: {msg}");
        }
    }

    /// The next message on stdout, which must be JSON-RPC.
    fn next(&mut self, waiting_for: &str) -> Value {
        let line = self
            .lines
            .recv_timeout(ANSWER)
            .unwrap_or_else(|e| panic!("no answer to `{waiting_for}` ({e})"));
        let msg: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line:?}"));
        assert_eq!(msg["jsonrpc"], "2.0", "not JSON-RPC: {line}");
        msg
    }

    fn tools(&mut self) -> Vec<String> {
        let list = self.request("tools/list", json!({}));
        let mut names: Vec<String> = list["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tool list: {list}"))
            .iter()
            .map(|t| t["name"].as_str().expect("tool name").to_string())
            .collect();
        names.sort();
        names
    }

    /// `tools/call`: the whole response (`result` or `error`).
    fn call(&mut self, tool: &str, args: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": args}))
    }

    /// A call that must succeed: its structured content.
    #[track_caller]
    fn ok(&mut self, tool: &str, args: Value) -> Value {
        let resp = self.call(tool, args);
        let result = &resp["result"];
        assert_eq!(result["isError"], false, "`{tool}` failed: {resp}");
        assert!(
            result["content"][0]["text"].is_string(),
            "`{tool}` has no text rendering: {resp}"
        );
        assert_eq!(result["structuredContent"]["schema_version"], 1, "{resp}");
        result["structuredContent"].clone()
    }

    /// A call that must be a tool error: its structured content (message, exit).
    #[track_caller]
    fn tool_error(&mut self, tool: &str, args: Value) -> Value {
        let resp = self.call(tool, args);
        assert_eq!(
            resp["result"]["isError"], true,
            "`{tool}` did not fail: {resp}"
        );
        resp["result"]["structuredContent"].clone()
    }

    /// A call that must be a JSON-RPC error: the error object.
    #[track_caller]
    fn rpc_error(&mut self, tool: &str, args: Value) -> Value {
        let resp = self.call(tool, args);
        assert!(resp.get("result").is_none(), "`{tool}` answered: {resp}");
        resp["error"].clone()
    }

    /// Close stdin; the server must end on its own, with exit 0.
    fn close(mut self) {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for kinfra mcp") {
                assert!(status.success(), "kinfra mcp ended with {status}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kinfra mcp did not end when stdin closed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Nothing after the last answer on stdout either.
        while let Ok(line) = self.lines.try_recv() {
            let msg: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line:?}"));
            assert_eq!(msg["jsonrpc"], "2.0", "{line}");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn mcp(env: &Env, cwd: &Path, args: &[&str]) -> Session {
    let mut all = vec!["mcp"];
    all.extend(args);
    Session::start(env.kinfra_cmd(cwd, &all))
}

const TOOLS: [&str; 9] = [
    "down", "env", "logs", "ports", "restart", "status", "up", "urls", "wait",
];

/// The read-only tools answer about the instance the server started in, with the
/// shapes of the `--json` outputs; another instance is refused naming the scope;
/// wrong arguments are JSON-RPC errors and the session goes on.
#[test]
fn a_session_answers_about_its_own_instance_only() {
    let env = Env::new();
    let a = env.create_sandbox("a");
    env.create_sandbox("b");
    let (id_a, id_b) = (env.id_of("a"), env.id_of("b"));

    let mut s = mcp(&env, &a, &[]);
    assert_eq!(
        s.tools(),
        TOOLS,
        "exec is not even listed without --allow-exec"
    );

    let st = s.ok("status", json!({}));
    assert_eq!(st["instance_id"], id_a.as_str());
    assert_eq!(st["kind"], "sandbox");
    let slot = st["slot"].as_u64().expect("slot");
    let ports = s.ok("ports", json!({}));
    assert_eq!(ports["slots"][0]["slot"], slot);
    assert_eq!(ports["slots"].as_array().map(Vec::len), Some(1));
    let api = ports["slots"][0]["ports"]["KTRDR_API_PORT"]
        .as_u64()
        .expect("the API port");
    assert_eq!(st["ports"]["KTRDR_API_PORT"], api, "status and ports agree");
    let urls = s.ok("urls", json!({}));
    assert!(
        urls["urls"]["KTRDR_API_PORT"]
            .as_str()
            .is_some_and(|u| u.contains(&api.to_string())),
        "{urls}"
    );
    let envs = s.ok("env", json!({"instance": id_a}));
    assert_eq!(envs["env"]["KTRDR_API_PORT"], api.to_string());
    assert_eq!(envs["instance_id"], id_a.as_str());

    // Another instance: refused, naming the scope; for every tool that takes one.
    for tool in [
        "status", "env", "urls", "ports", "logs", "wait", "up", "down",
    ] {
        let e = s.tool_error(tool, json!({"instance": id_b}));
        assert_eq!(e["exit"], "refused", "{tool}: {e}");
        assert_eq!(e["code"], exit::REFUSED, "{tool}: {e}");
        let msg = e["error"].as_str().unwrap_or_default();
        assert!(msg.contains(&id_a) && msg.contains(&id_b), "{tool}: {e}");
    }
    let e = s.tool_error("restart", json!({"instance": "no-such", "service": "x"}));
    assert_eq!(e["exit"], "refused", "{e}");

    // Wrong arguments: JSON-RPC errors, and the server goes on.
    let e = s.rpc_error("logs", json!({"tail": "many"}));
    assert_eq!(e["code"], -32602, "{e}");
    let e = s.rpc_error("logs", json!({"tail": 0}));
    assert_eq!(e["code"], -32602, "{e}");
    let e = s.rpc_error("restart", json!({}));
    assert_eq!(e["code"], -32602, "a missing service: {e}");
    let e = s.rpc_error("status", json!({"instanse": id_a}));
    assert_eq!(e["code"], -32602, "an unknown argument: {e}");
    let e = s.rpc_error("wait", json!({"timeout": -1}));
    assert_eq!(e["code"], -32602, "{e}");
    let e = s.rpc_error("destroy", json!({}));
    assert!(e["code"].is_i64(), "no destroy tool: {e}");
    let e = s.rpc_error("exec", json!({"service": "backend", "command": ["id"]}));
    assert!(e["code"].is_i64(), "no exec without --allow-exec: {e}");
    // Not a request at all: a JSON-RPC error, and the session goes on.
    s.send(&json!("garbage"));
    let e = s.next("garbage");
    assert!(e["error"]["code"].is_i64(), "{e}");
    assert_eq!(s.ok("status", json!({}))["instance_id"], id_a.as_str());
    s.close();
}

#[test]
fn the_server_refuses_to_start_outside_an_instance() {
    let env = Env::new();
    let run = env.kinfra(&env.main, &["mcp"]);
    run.assert_code(exit::USAGE);
    assert!(run.stdout.is_empty(), "stdout is JSON-RPC only: {run:?}");
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{run:?}");
    assert!(errors[0].contains("no instance here"), "{run:?}");
    // An unknown --instance: not found.
    let run = env.kinfra(&env.main, &["mcp", "--instance", "nope"]);
    run.assert_code(exit::NOT_FOUND);
}

/// `--instance` scopes the server from any directory; `--allow-exec` lists exec.
#[test]
fn instance_and_allow_exec_from_anywhere() {
    let env = Env::new();
    env.create_sandbox("a");
    let id = env.id_of("a");
    let mut s = mcp(&env, &env.main, &["--instance", &id, "--allow-exec"]);
    let mut with_exec: Vec<&str> = TOOLS.to_vec();
    with_exec.push("exec");
    with_exec.sort_unstable();
    assert_eq!(s.tools(), with_exec);
    assert_eq!(s.ok("env", json!({}))["instance_id"], id.as_str());
    let e = s.rpc_error("exec", json!({"service": "backend", "command": []}));
    assert_eq!(e["code"], -32602, "an empty argv: {e}");
    let e = s.rpc_error("exec", json!({"service": "backend", "command": "id"}));
    assert_eq!(e["code"], -32602, "a string, not an argv array: {e}");
    s.close();
}

/// local-prod is read-only over MCP: its state can be read, never changed.
#[test]
fn local_prod_is_read_only() {
    let env = Env::new();
    env.kinfra(&env.main, &["local-prod", "create"])
        .assert_code(0);
    let prod = env.sibling("ktrdr-prod");
    let mut s = mcp(&env, &prod, &["--allow-exec"]);
    assert_eq!(s.ok("status", json!({}))["kind"], "local-prod");
    for (tool, args) in [
        ("up", json!({})),
        ("down", json!({})),
        ("restart", json!({"service": "backend"})),
        ("exec", json!({"service": "backend", "command": ["id"]})),
    ] {
        let e = s.tool_error(tool, args);
        assert_eq!(e["exit"], "refused", "{tool}: {e}");
        assert!(
            e["error"].as_str().is_some_and(|m| m.contains("read-only")),
            "{tool}: {e}"
        );
    }
    s.close();
}

/// `sandbox create --mcp` writes `.mcp.json` naming the sandbox; destroy treats it
/// as kinfra's file while it is as written, and as work once someone edits it.
#[test]
fn create_mcp_writes_the_config_and_destroy_does_not_count_it_as_work() {
    let env = Env::new();
    let run = env.kinfra(&env.main, &["sandbox", "create", "a", "--mcp"]);
    run.assert_code(0);
    let path = std::path::PathBuf::from(run.stdout.trim());
    let id = env.id_of("a");
    let text = std::fs::read_to_string(path.join(".mcp.json")).expect(".mcp.json written");
    let v: Value = serde_json::from_str(&text).expect(".mcp.json is JSON");
    let server = &v["mcpServers"]["kinfra"];
    assert_eq!(server["args"], json!(["mcp", "--instance", id]));
    let command = server["command"].as_str().expect("command");
    assert!(Path::new(command).is_file(), "{command}");
    // An agent started with that file reaches the sandbox.
    let mut s = Session::start({
        let mut cmd = Command::new(command);
        env.apply(&mut cmd);
        cmd.current_dir(&env.main).args(["mcp", "--instance", &id]);
        cmd
    });
    assert_eq!(s.ok("status", json!({}))["instance_id"], id.as_str());
    s.close();
    env.kinfra(&env.main, &["sandbox", "destroy", &id, "--yes"])
        .assert_code(0);
    assert!(!path.exists());

    // Edited (another server added): the user's work, so destroy refuses.
    env.kinfra(&env.main, &["sandbox", "create", "b", "--mcp"])
        .assert_code(0);
    let b = env.sibling(&env.id_of("b"));
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(b.join(".mcp.json")).unwrap()).unwrap();
    v["mcpServers"]["mine"] = json!({"command": "my-server"});
    std::fs::write(b.join(".mcp.json"), v.to_string()).unwrap();
    let run = env.kinfra(&env.main, &["sandbox", "destroy", &env.id_of("b"), "--yes"]);
    run.assert_code(exit::REFUSED);
    assert!(run.stderr.contains(".mcp.json"), "{run:?}");
    assert!(b.join(".mcp.json").is_file());
}

/// The tools that need a running stack, in one session against one test stack:
/// wait before up (not running), up, wait, logs, restart, exec (with its exit code),
/// status while running, down.
#[test]
fn the_tools_drive_a_running_stack() {
    let mut st = Stack::new("mcp", &[SLOT_SHELL]);
    let sb = st.create("m", SLOT_SHELL);
    let mut s = mcp(&st.env, &sb.path, &["--allow-exec"]);

    let e = s.tool_error("wait", json!({"timeout": 5}));
    assert_eq!(e["code"], exit::NOT_RUNNING, "{e}");

    let up = s.ok("up", json!({"timeout": 60}));
    assert_eq!(up["action"], "up");
    assert!(up["gate_seconds"].is_number(), "{up}");
    st.log("up over MCP");
    let w = s.ok("wait", json!({"timeout": 30}));
    assert!(w["gate_seconds"].is_number(), "{w}");

    let st_json = s.ok("status", json!({}));
    assert_eq!(st_json["state"], "running", "{st_json}");

    let logs = s.ok("logs", json!({"service": "backend", "tail": 50}));
    let lines = logs["lines"].as_array().expect("lines");
    assert!(
        lines
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains("listening on :8080"))),
        "{logs}"
    );
    let e = s.tool_error("logs", json!({"service": "nope"}));
    assert_eq!(e["code"], exit::NOT_FOUND, "{e}");

    let ex = s.ok(
        "exec",
        json!({"service": "backend", "command": ["cat", "/www/api/v1/health"]}),
    );
    assert_eq!(ex["exit_code"], 0, "{ex}");
    assert!(
        ex["stdout"].as_str().is_some_and(|o| o.contains("ok")),
        "{ex}"
    );
    let ex = s.ok(
        "exec",
        json!({"service": "backend", "command": ["sh", "-c", "echo oops >&2; exit 3"]}),
    );
    assert_eq!(ex["exit_code"], 3, "{ex}");
    assert!(
        ex["stderr"].as_str().is_some_and(|o| o.contains("oops")),
        "{ex}"
    );

    let r = s.ok("restart", json!({"service": "backend"}));
    assert_eq!(r["service"], "backend");
    s.ok("wait", json!({"timeout": 60}));

    let d = s.ok("down", json!({}));
    assert_eq!(d["action"], "down");
    let st_json = s.ok("status", json!({}));
    assert_eq!(st_json["state"], "stopped", "{st_json}");
    s.close();
}

/// SIGTERM (as Ctrl-C) ends a server whose client keeps stdin open: exit 130, soon.
#[test]
fn a_signal_ends_the_server() {
    let env = Env::new();
    let a = env.create_sandbox("a");
    let mut s = mcp(&env, &a, &[]);
    assert_eq!(s.tools(), TOOLS);
    let t = std::time::Instant::now();
    let pid = s.child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(kill.is_ok_and(|k| k.success()), "kill -TERM {pid}");
    let status = loop {
        if let Some(status) = s.child.try_wait().expect("wait for kinfra mcp") {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "kinfra mcp did not end on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(exit::INTERRUPTED), "{status}");
}
