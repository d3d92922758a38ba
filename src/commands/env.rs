//! `kinfra env` (the current directory's instance), `kinfra sandbox env [NAME]` and
//! `kinfra local-prod env`: the instance's env file as `export` lines for `eval`. Every
//! value is single-quoted, so `eval "$(kinfra env)"` can never run anything.

use crate::context::Ctx;
use crate::error::Result;
use crate::instance::{self, Kind, Selector};
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  eval \"$(kinfra env)\" && echo $KTRDR_API_PORT")]
pub struct Args {}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  eval \"$(kinfra sandbox env my-feature)\"     # from any directory
  kinfra local-prod env | grep PORT")]
pub struct InstanceArgs {
    /// The instance (id or the name given to create), from any directory; default: the
    /// one you are in (local-prod: the registered one).
    #[arg(add = clap_complete::ArgValueCandidates::new(super::completions::instance_names))]
    pub name: Option<String>,
    #[command(flatten)]
    pub instance: super::InstanceArg,
}

pub fn run(ctx: &Ctx, _args: &Args) -> Result<u8> {
    print(ctx, &Selector::Here, None)
}

pub fn run_for(ctx: &Ctx, args: &InstanceArgs, kind: Kind) -> Result<u8> {
    let sel = super::selector(&args.instance, args.name.as_deref())?;
    print(ctx, &sel, Some(kind))
}

fn print(ctx: &Ctx, sel: &Selector, kind: Option<Kind>) -> Result<u8> {
    let found = instance::select(ctx, sel, kind)?;
    for (key, value) in found.inst.env.to_map() {
        output::data(&export_line(&key, &value));
    }
    Ok(0)
}

/// `export KEY='value'`, with `'` written as `'\''`. Keys that are not shell names are
/// skipped (the env file reader accepts more than a shell does).
pub fn export_line(key: &str, value: &str) -> String {
    let is_name = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !is_name {
        return format!(
            "# skipped `{}`: not a shell variable name",
            key.escape_debug()
        );
    }
    format!("export {key}='{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_can_never_run_anything() {
        for hostile in ["$(touch /tmp/x)", "`id`", "a'b", "x; rm -rf /", "\n$(id)\n"] {
            let line = export_line("K", hostile);
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{line}\nprintf %s \"$K\""))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), hostile, "{line}");
        }
        assert!(export_line("A-B", "1").starts_with('#'));
        assert!(export_line("X=$(id)", "1").starts_with('#'));
    }
}
