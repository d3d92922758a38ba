//! kinfra's end-to-end tests, one binary: every module drives the real `kinfra` binary
//! against real git repositories (and, for the stack tests, a real Docker engine).

mod common;

mod agents;
mod bad_input;
mod compat;
mod compose_stack;
mod concurrency;
mod crash;
mod density;
mod fuzz;
mod hooks;
mod hosts;
mod mcp;
mod paths;
mod registry_v2;
mod safety;
mod schemas;
mod screens;
mod snapshot;
mod stack;
mod stress;
mod top;
mod upstream;
mod watch;
