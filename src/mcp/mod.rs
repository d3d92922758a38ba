//! `kinfra mcp`: a Model Context Protocol server over stdio, scoped to one instance.
//!
//! The tools (`status`, `urls`, `env`, `ports`, `logs`, `restart`, `up`, `down`, `wait`,
//! and `exec` only with `--allow-exec`) call the same synchronous domain functions as
//! the commands, on tokio's blocking pool; tokio lives in this module only. stdout
//! carries JSON-RPC and nothing else: progress goes to stderr through the terminal
//! reporter, which never writes to stdout.
//!
//! Scope: the instance given with `--instance`, else the one the server started in.
//! A call naming another instance is refused; local-prod is read-only here (no `up`,
//! `down`, `restart` or `exec`).

mod config_file;
mod server;
mod tools;

pub use config_file::{
    CONFIG_FILE, is_ours, render as render_config_file, write as write_config_file,
};

use crate::context::Ctx;
use crate::error::{Diagnostic, Error, Exit, Result};
use crate::instance::{self, Kind, Selector};

/// What `kinfra mcp` was started with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--instance`: the instance the server is scoped to (default: the one here).
    pub instance: Option<String>,
    /// `--allow-exec`: offer the `exec` tool.
    pub allow_exec: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("no instance here to serve: {reason}")]
    NoInstance { reason: String },
    #[error("instance `{asked}` is out of scope: this server is scoped to `{scope}`")]
    OutOfScope { asked: String, scope: String },
    #[error("`{tool}` is refused for local-prod `{id}`: it is read-only over MCP")]
    ReadOnly { tool: String, id: String },
    #[error("cannot start the MCP server: {0}")]
    Runtime(String),
}

impl Diagnostic for McpError {
    fn exit(&self) -> Exit {
        match self {
            McpError::NoInstance { .. } => Exit::Usage,
            McpError::OutOfScope { .. } | McpError::ReadOnly { .. } => Exit::Refused,
            McpError::Runtime(_) => Exit::Failure,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            McpError::NoInstance { .. } => Some(
                "start it inside an instance's checkout, or name one: `kinfra mcp --instance ID`"
                    .into(),
            ),
            McpError::OutOfScope { scope, .. } => Some(format!(
                "leave `instance` out (it defaults to `{scope}`), or start another server with `kinfra mcp --instance ID`"
            )),
            McpError::ReadOnly { .. } => {
                Some("run it from a terminal: `kinfra local-prod …`".into())
            }
            McpError::Runtime(_) => None,
        }
    }
}

/// The instance a server answers about: fixed when it starts.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The context the server started in (for resolving names).
    pub ctx: Ctx,
    pub id: String,
    pub kind: Kind,
}

impl Scope {
    /// Work out the scope: `--instance`, else the instance around the current directory
    /// (none there: a usage error, the server does not start).
    pub fn resolve(ctx: &Ctx, opts: &Options) -> Result<Scope> {
        let found = match &opts.instance {
            Some(name) => instance::select(ctx, &Selector::Named(name.clone()), None)?,
            None => instance::select(ctx, &Selector::Here, None).map_err(|e| {
                Error::from(McpError::NoInstance {
                    reason: e.message.clone(),
                })
            })?,
        };
        Ok(Scope {
            ctx: ctx.clone(),
            id: found.inst.id().to_string(),
            kind: found.inst.kind,
        })
    }

    /// Refuse a call that names another instance (by id or by the name given to
    /// `create`); no name is this scope.
    pub fn check(&self, asked: Option<&str>) -> Result<()> {
        let Some(asked) = asked else {
            return Ok(());
        };
        if asked == self.id {
            return Ok(());
        }
        let same = instance::select(&self.ctx, &Selector::Named(asked.to_string()), None)
            .is_ok_and(|f| f.inst.id() == self.id);
        if same {
            return Ok(());
        }
        Err(McpError::OutOfScope {
            asked: asked.to_string(),
            scope: self.id.clone(),
        }
        .into())
    }

    /// Refuse a state change of local-prod.
    pub fn writable(&self, tool: &str) -> Result<()> {
        if self.kind == Kind::LocalProd {
            return Err(McpError::ReadOnly {
                tool: tool.to_string(),
                id: self.id.clone(),
            }
            .into());
        }
        Ok(())
    }

    /// The instance, freshly resolved (its env file may have changed since the start).
    pub fn found(&self) -> Result<instance::Found> {
        instance::select(
            &self.ctx,
            &Selector::Named(self.id.clone()),
            Some(self.kind),
        )
    }

    /// The instance ready for compose calls.
    pub fn target(&self) -> Result<crate::lifecycle::Target> {
        crate::lifecycle::resolve(&self.ctx, self.kind, &Selector::Named(self.id.clone()))
    }
}

/// Serve MCP on stdin/stdout until the client closes stdin.
pub fn serve(ctx: &Ctx, opts: &Options) -> Result<u8> {
    let scope = Scope::resolve(ctx, opts)?;
    crate::output::note(&format!(
        "kinfra mcp: serving `{}` ({}) on stdio{}",
        scope.id,
        scope.kind,
        if opts.allow_exec {
            ", exec allowed"
        } else {
            ""
        }
    ));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| McpError::Runtime(e.to_string()))?;
    let served = runtime.block_on(server::run(scope, opts.allow_exec));
    // A read of stdin may still be pending (after a signal), which nothing can cancel:
    // wait for the tools still running (a while at most), never for that read.
    let started = std::time::Instant::now();
    while server::tools_running() && started.elapsed() < SHUTDOWN {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    runtime.shutdown_background();
    served?;
    crate::interrupt::check()?;
    Ok(0)
}

/// How long a stopping server waits for the tools still running.
const SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(30);
