//! What a user reads: every help text, and the human output of the commands that need no
//! running stack, as insta snapshots (`tests/e2e/snapshots/`). A change to any of them
//! shows as a diff to review (`cargo insta review`, or `INSTA_UPDATE=always` to accept).
//!
//! The variable parts (the test's temporary root, its unique tag, ages) are replaced by
//! fixed words before comparing.

use std::path::Path;

use crate::common::Env;

/// The subcommands a help text lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line == "Commands:" {
            inside = true;
            continue;
        }
        if inside {
            if line.is_empty() || !line.starts_with(' ') {
                break;
            }
            // A command line is indented by two spaces; wrapped descriptions by more.
            if line.starts_with("  ") && !line.starts_with("   ") {
                let name = line.split_whitespace().next().unwrap_or_default();
                if name != "help" {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

/// Every command path (`[]`, `["sandbox"]`, `["sandbox", "create"]`, ...) with its help.
fn help_texts(env: &Env, dir: &Path) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut queue = vec![Vec::<String>::new()];
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let run = env.kinfra(dir, &args);
        run.assert_code(0);
        for sub in subcommands(&run.stdout) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
        out.push((path, run.stdout));
    }
    out.sort();
    out
}

/// The output with the test's own variable parts replaced by fixed words.
fn stable(env: &Env, text: &str) -> String {
    let root = crate::common::canon(env.root.path());
    let text = text
        .replace(&root.display().to_string(), "[ROOT]")
        .replace(&env.root.path().display().to_string(), "[ROOT]")
        .replace(&env.tag, "[TAG]");
    without_times(&text)
}

/// RFC 3339 time stamps (`2026-11-28T23:13:48.341942+00:00`) replaced by `[TIME]`.
fn without_times(text: &str) -> String {
    let bytes = text.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let is_stamp = bytes.len() - i >= shape.len()
            && shape.iter().zip(&bytes[i..]).all(|(s, b)| match s {
                b'd' => b.is_ascii_digit(),
                s => s == b,
            });
        if is_stamp {
            let mut end = i + shape.len();
            let digit = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_digit);
            if bytes.get(end) == Some(&b'.') && digit(end + 1) {
                end += 1;
                while digit(end) {
                    end += 1;
                }
            }
            if bytes.get(end) == Some(&b'Z') {
                end += 1;
            } else if matches!(bytes.get(end), Some(b'+' | b'-'))
                && digit(end + 1)
                && digit(end + 2)
                && bytes.get(end + 3) == Some(&b':')
            {
                end += 6;
            }
            out.push_str("[TIME]");
            i = end;
        } else {
            let ch = text[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[test]
fn time_stamps_are_replaced() {
    assert_eq!(
        without_times("at 2026-11-28T23:13:48.341942+00:00' and 2026-01-02T03:04:05Z."),
        "at [TIME]' and [TIME]."
    );
}

#[test]
fn every_help_text() {
    let env = Env::new();
    let texts = help_texts(&env, env.root.path());
    assert!(
        texts.len() > 20,
        "expected every command's help, found {}",
        texts.len()
    );
    for (path, text) in texts {
        let name = if path.is_empty() {
            "help".to_string()
        } else {
            format!("help-{}", path.join("-"))
        };
        insta::assert_snapshot!(name, text);
    }
}

#[test]
fn human_output_of_commands_without_a_stack() {
    let env = Env::new();
    env.create_sandbox("feat-a");
    env.create_sandbox("feat-b");
    let out = |args: &[&str]| {
        let run = env.kinfra(&env.main, args);
        format!(
            "$ kinfra {}\n[exit {}]\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            run.code,
            stable(&env, &run.stdout),
            stable(&env, &run.stderr)
        )
    };
    insta::assert_snapshot!("ports", out(&["ports"]));
    insta::assert_snapshot!("sandbox-path", out(&["sandbox", "path", "feat-a"]));
    insta::assert_snapshot!("sandbox-env", out(&["sandbox", "env", "feat-a"]));
    insta::assert_snapshot!(
        "sandbox-destroy-dry-run",
        out(&["sandbox", "destroy", "feat-b", "--dry-run"])
    );
    insta::assert_snapshot!("config-check", out(&["config", "check"]));
    insta::assert_snapshot!("rescue-list-empty", out(&["rescue", "list"]));
    insta::assert_snapshot!(
        "error-unknown-instance",
        out(&["sandbox", "status", "no-such-sandbox"])
    );
    insta::assert_snapshot!(
        "error-usage",
        out(&["sandbox", "create", "feat-a", "--no-such-flag"])
    );
}
