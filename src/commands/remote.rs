//! Commands on a sandbox that lives on another host: `kinfra sandbox <cmd> NAME ...` is
//! run by the host's kinfra (`ssh HOST kinfra sandbox <cmd> NAME ...` in the sandbox's
//! directory there), with the terminal attached; `destroy` first fetches the sandbox's
//! branch into the local repository; `kinfra sandbox fetch NAME` does only that.

use std::ffi::OsString;

use crate::error::Result;
use crate::hosts::HostsFile;
use crate::output;
use crate::remote::{self, RemoteEntry, RemoteIndex};

/// `sandbox` subcommands that act on one instance by name.
const BY_NAME: &[&str] = &[
    "up", "down", "status", "logs", "shell", "env", "url", "path", "destroy",
];
/// Options of those commands that take a value (so the value is not the NAME).
const VALUED: &[&str] = &["--timeout", "--tail", "--since", "--service", "--config"];

/// The command (`sandbox SUB`, or `wait`) and its arguments, when argv is `kinfra
/// [GLOBAL...] sandbox SUB ARGS...` or `kinfra [GLOBAL...] wait ARGS...` and names a
/// sandbox of the remote index (by `--instance` or by the first positional).
pub fn target(argv: &[OsString]) -> Option<(String, Vec<String>, RemoteEntry)> {
    let words: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The first word that is neither a global option nor `--config`'s value.
    let mut first = 0;
    while let Some(w) = words.get(first) {
        if w == "--config" {
            first += 2;
        } else if w.starts_with('-') {
            first += 1;
        } else {
            break;
        }
    }
    words.get(first)?;
    let (sub, rest) = if words[first] == "wait" {
        ("wait".to_string(), words[first + 1..].to_vec())
    } else if words[first] == "sandbox" {
        let sub = words.get(first + 1)?.clone();
        if !BY_NAME.contains(&sub.as_str()) {
            return None;
        }
        (sub, words[first + 2..].to_vec())
    } else {
        return None;
    };
    let name = instance_word(&rest)?;
    let index = RemoteIndex::load().ok()?;
    let entry = index.find(&name)?.clone();
    Some((sub, rest, entry))
}

/// `--instance NAME`, else the first positional word.
fn instance_word(rest: &[String]) -> Option<String> {
    let mut i = 0;
    let mut first = None;
    while i < rest.len() {
        let w = &rest[i];
        if let Some(v) = w.strip_prefix("--instance=") {
            return Some(v.to_string());
        }
        if w == "--instance" {
            return rest.get(i + 1).cloned();
        }
        if VALUED.contains(&w.as_str()) {
            i += 2;
            continue;
        }
        if w == "--" {
            first = first.or_else(|| rest.get(i + 1).cloned());
            break;
        }
        if !w.starts_with('-') && first.is_none() {
            first = Some(w.clone());
        }
        i += 1;
    }
    first
}

/// Run `kinfra sandbox SUB ARGS` on the sandbox's host.
pub fn forward(sub: &str, rest: &[String], entry: &RemoteEntry) -> Result<u8> {
    let host = HostsFile::load()?.host(&entry.host)?;
    if sub == "destroy" {
        return destroy(rest, entry, &host);
    }
    if sub == "path" {
        // Where it is, as ssh and scp name it.
        output::data(&format!("{}:{}", entry.host, entry.path));
        return Ok(0);
    }
    let tty = matches!(sub, "shell") || (sub == "logs" && output::interactive());
    let mut args = if sub == "wait" {
        vec!["wait"]
    } else {
        vec!["sandbox", sub]
    };
    args.extend(rest.iter().map(String::as_str));
    Ok(remote::run_attached(&host, &entry.path, &args, tty)?)
}

/// Fetch first (refused when the host does not answer: nothing is removed, the
/// sandbox stays registered), then the host's destroy with its own safety rules, then
/// any rescue ref it made; forget the sandbox here only when the host destroyed it.
fn destroy(rest: &[String], entry: &RemoteEntry, host: &crate::hosts::Host) -> Result<u8> {
    let dry_run = rest.iter().any(|a| a == "--dry-run");
    if !dry_run {
        let got = remote::fetch_work(entry, host).map_err(|e| {
            crate::error::Error::from(e).with_hint(format!(
                "nothing was destroyed and `{}` stays registered; retry when host `{}` answers",
                entry.instance_id, entry.host
            ))
        })?;
        output::done(&format!("fetched {}", got.join(", ")));
    }
    let mut args = vec!["sandbox", "destroy"];
    args.extend(rest.iter().map(String::as_str));
    let code = remote::run_attached(host, &entry.checkout, &args, output::interactive())?;
    if code != 0 || dry_run {
        return Ok(code);
    }
    match remote::fetch_work(entry, host) {
        Ok(got) => {
            let rescues: Vec<&String> = got.iter().filter(|r| r.contains("/rescue/")).collect();
            if !rescues.is_empty() {
                output::done(&format!(
                    "fetched rescue ref(s): {}",
                    rescues
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Err(e) => output::warn(&format!("could not fetch rescue refs after destroy: {e}")),
    }
    remote::update(&output::Term::new(), |idx| {
        idx.instances.remove(&entry.instance_id);
        Ok(())
    })?;
    Ok(0)
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra sandbox fetch my-feature   # its branch as refs/remotes/HOST/BRANCH (and the local branch when absent or behind)")]
pub struct FetchArgs {
    /// The sandbox on another host (id or the name given to create).
    pub name: String,
}

/// `kinfra sandbox fetch NAME`.
pub fn fetch(args: &FetchArgs) -> Result<u8> {
    let index = RemoteIndex::load()?;
    let entry = index
        .find(&args.name)
        .ok_or_else(|| remote::RemoteError::NotRemote(args.name.clone()))?;
    let host = HostsFile::load()?.host(&entry.host)?;
    let got = remote::fetch_work(entry, &host)?;
    output::done(&format!("fetched {}", got.join(", ")));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn the_instance_is_the_flag_or_the_first_positional() {
        assert_eq!(instance_word(&words("x --json")).as_deref(), Some("x"));
        assert_eq!(instance_word(&words("--json x y")).as_deref(), Some("x"));
        assert_eq!(
            instance_word(&words("--timeout 30 x")).as_deref(),
            Some("x")
        );
        assert_eq!(
            instance_word(&words("y --instance x")).as_deref(),
            Some("x")
        );
        assert_eq!(instance_word(&words("--instance=x")).as_deref(), Some("x"));
        assert_eq!(instance_word(&words("--json")), None);
    }
}
