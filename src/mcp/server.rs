//! The rmcp server: one tool per method, each checking its arguments, then running the
//! synchronous work of `tools` on tokio's blocking pool. Wrong arguments are JSON-RPC
//! errors (`-32602`); a refusal or a failure of the work is a tool error carrying the
//! same message, hint and exit code the command line would give.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::tools::{self, Answer, MAX_TAIL};
use super::{McpError, Scope};
use crate::error::{Error, Result};

/// A tool's arguments, checked against their type. Unlike the SDK's own wrapper (whose
/// failures become tool results), wrong arguments are a JSON-RPC error (`-32602`).
/// The tool macros take the input schema from a parameter type named `Parameters`.
pub struct Parameters<T>(pub T);

impl<T: JsonSchema> JsonSchema for Parameters<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

impl<S, T: serde::de::DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Parameters<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        let arguments = context.arguments.take().unwrap_or_default();
        serde_json::from_value(serde_json::Value::Object(arguments))
            .map(Parameters)
            .map_err(|e| bad(format!("invalid arguments for `{}`: {e}", context.name)))
    }
}

/// Arguments of the tools that take only the instance.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceOnly {
    /// The instance (id or the name given to create); default and only choice: the
    /// instance this server is scoped to.
    pub instance: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsArgs {
    /// The instance (default: the one this server is scoped to).
    pub instance: Option<String>,
    /// Only this compose service (default: every service).
    pub service: Option<String>,
    /// How many of the last lines per service (1..=10000, default 100).
    pub tail: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceArgs {
    /// The instance (default: the one this server is scoped to).
    pub instance: Option<String>,
    /// The compose service.
    pub service: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutArgs {
    /// The instance (default: the one this server is scoped to).
    pub instance: Option<String>,
    /// Seconds to wait for the startability gate (1..=86400, default: the gate's own).
    pub timeout: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecArgs {
    /// The instance (default: the one this server is scoped to).
    pub instance: Option<String>,
    /// The compose service whose running container runs the command.
    pub service: String,
    /// The command as an argv array (no shell), e.g. ["ls", "-l", "/data"].
    pub command: Vec<String>,
}

/// Tools running now (on the blocking pool).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Counts one running tool while it lives.
struct Running;

impl Running {
    fn start() -> Running {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a tool is still running.
pub fn tools_running() -> bool {
    RUNNING.load(Ordering::SeqCst) > 0
}

#[derive(Clone)]
pub struct KinfraServer {
    scope: Arc<Scope>,
    tool_router: ToolRouter<Self>,
}

fn bad(message: String) -> ErrorData {
    ErrorData::invalid_params(message, None)
}

fn check_timeout(timeout: Option<u64>) -> Result<(), ErrorData> {
    match timeout {
        Some(t) if t == 0 || t > 86_400 => {
            Err(bad("`timeout` must be in 1..=86400 seconds".into()))
        }
        _ => Ok(()),
    }
}

/// A tool's answer as MCP content: the text rendering, and the JSON as structured
/// content.
fn success(answer: Answer) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(answer.text)]);
    result.structured_content = Some(answer.json);
    result
}

/// A refusal or failure as a tool error: the message and hint as text, and as
/// structured content with the exit code the command line would end with.
fn failure(e: &Error) -> CallToolResult {
    let json = serde_json::json!({
        "schema_version": 1,
        "error": e.message,
        "hint": e.hint,
        "exit": e.exit,
        "code": e.code(),
    });
    let mut text = format!("error: {}", e.message);
    if let Some(h) = &e.hint {
        text.push_str(&format!("\nhint: {h}"));
    }
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.structured_content = Some(json);
    result
}

impl KinfraServer {
    pub fn new(scope: Scope, allow_exec: bool) -> KinfraServer {
        let mut tool_router = Self::tool_router();
        if !allow_exec {
            tool_router.remove_route("exec");
        }
        KinfraServer {
            scope: Arc::new(scope),
            tool_router,
        }
    }

    /// Check the instance against the scope, then run `work` on the blocking pool.
    async fn call<F>(&self, instance: Option<String>, work: F) -> Result<CallToolResult, ErrorData>
    where
        F: FnOnce(&Scope) -> Result<Answer> + Send + 'static,
    {
        let scope = Arc::clone(&self.scope);
        let done = tokio::task::spawn_blocking(move || {
            let _running = Running::start();
            scope.check(instance.as_deref())?;
            work(&scope)
        })
        .await;
        match done {
            Ok(Ok(answer)) => Ok(success(answer)),
            Ok(Err(e)) => {
                crate::output::warn(&format!("tool failed: {}", e.message));
                Ok(failure(&e))
            }
            Err(e) => Err(ErrorData::internal_error(
                format!("the tool stopped: {e}"),
                None,
            )),
        }
    }
}

#[tool_router]
impl KinfraServer {
    #[tool(
        description = "The instance's containers (state, health), the startability gate's checks run once, its ports and URLs: the JSON of `kinfra sandbox status --json`.",
        annotations(read_only_hint = true)
    )]
    async fn status(
        &self,
        Parameters(a): Parameters<InstanceOnly>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(a.instance, tools::status).await
    }

    #[tool(
        description = "The instance's URLs, one per port key (http://… for HTTP services, host:port for the others).",
        annotations(read_only_hint = true)
    )]
    async fn urls(
        &self,
        Parameters(a): Parameters<InstanceOnly>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(a.instance, tools::urls).await
    }

    #[tool(
        description = "The instance's environment (its env file: ports, ids), as a map and as `export` lines.",
        annotations(read_only_hint = true)
    )]
    async fn env(
        &self,
        Parameters(a): Parameters<InstanceOnly>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(a.instance, tools::env).await
    }

    #[tool(
        description = "The instance's host ports by key: the JSON of `kinfra ports --json` for its slot.",
        annotations(read_only_hint = true)
    )]
    async fn ports(
        &self,
        Parameters(a): Parameters<InstanceOnly>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(a.instance, tools::ports).await
    }

    #[tool(
        description = "The last log lines of the instance's services (or of one service).",
        annotations(read_only_hint = true)
    )]
    async fn logs(&self, Parameters(a): Parameters<LogsArgs>) -> Result<CallToolResult, ErrorData> {
        if a.tail.is_some_and(|t| t == 0 || t > MAX_TAIL) {
            return Err(bad(format!("`tail` must be in 1..={MAX_TAIL}")));
        }
        let (service, tail) = (a.service, a.tail);
        self.call(a.instance, move |s| {
            tools::logs(s, service.as_deref(), tail)
        })
        .await
    }

    #[tool(
        description = "Restart one service of the instance (not for local-prod).",
        annotations(destructive_hint = false, idempotent_hint = true)
    )]
    async fn restart(
        &self,
        Parameters(a): Parameters<ServiceArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let service = a.service;
        self.call(a.instance, move |s| tools::restart(s, &service))
            .await
    }

    #[tool(
        description = "Start the instance's containers and wait for its startability gate (not for local-prod).",
        annotations(destructive_hint = false, idempotent_hint = true)
    )]
    async fn up(
        &self,
        Parameters(a): Parameters<TimeoutArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        check_timeout(a.timeout)?;
        let timeout = a.timeout;
        self.call(a.instance, move |s| tools::up(s, timeout)).await
    }

    #[tool(
        description = "Stop the instance's containers, keeping its data (not for local-prod).",
        annotations(destructive_hint = false, idempotent_hint = true)
    )]
    async fn down(
        &self,
        Parameters(a): Parameters<InstanceOnly>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(a.instance, tools::down).await
    }

    #[tool(
        description = "Wait until the instance's startability gate passes; an error says why not (timed out, a service failed, not running).",
        annotations(read_only_hint = true)
    )]
    async fn wait(
        &self,
        Parameters(a): Parameters<TimeoutArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        check_timeout(a.timeout)?;
        let timeout = a.timeout;
        self.call(a.instance, move |s| tools::wait(s, timeout))
            .await
    }

    #[tool(
        description = "Run a command (argv array, no shell) in a running service container of the instance; its exit code, stdout and stderr (not for local-prod).",
        annotations(destructive_hint = true)
    )]
    async fn exec(&self, Parameters(a): Parameters<ExecArgs>) -> Result<CallToolResult, ErrorData> {
        if a.command.first().is_none_or(String::is_empty) {
            return Err(bad("`command` must name a program (argv array)".into()));
        }
        let (service, command) = (a.service, a.command);
        self.call(a.instance, move |s| tools::exec(s, &service, &command))
            .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for KinfraServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("kinfra", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "kinfra instance `{}` ({}): its status, URLs, env, ports and logs; {}",
                self.scope.id,
                self.scope.kind,
                if self.scope.kind == crate::instance::Kind::LocalProd {
                    "local-prod is read-only here"
                } else {
                    "up, down, restart and wait act on it"
                }
            ))
    }
}

/// Serve until the client closes stdin, or SIGINT/SIGTERM (kinfra turns them into a
/// flag, which is polled here).
pub async fn run(scope: Scope, allow_exec: bool) -> Result<()> {
    let server = KinfraServer::new(scope, allow_exec);
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Runtime(e.to_string()))?;
    let stop = running.cancellation_token();
    tokio::spawn(async move {
        while !crate::interrupt::requested() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        stop.cancel();
    });
    running
        .waiting()
        .await
        .map_err(|e| McpError::Runtime(e.to_string()))?;
    Ok(())
}
