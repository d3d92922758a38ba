//! Every `--json` output, produced for real on the example stack with a running
//! sandbox, validates against its committed schema in docs/schemas/.

use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::stack::{SLOT_LOCAL_PROD_NEIGHBOUR, Stack};

fn validator(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/schemas")
        .join(format!("{name}.v1.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()))
}

/// The problems of `value` against schema `name` (empty: valid).
fn problems(name: &str, value: &serde_json::Value) -> Vec<String> {
    validator(name)
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[track_caller]
pub(crate) fn assert_valid(name: &str, stdout: &str) {
    let value: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {stdout}"));
    let found = problems(name, &value);
    assert!(found.is_empty(), "{name}: {found:#?}\n{value:#}");
}

#[test]
fn every_json_output_matches_its_schema() {
    let mut st = Stack::new("schemas", &[SLOT_LOCAL_PROD_NEIGHBOUR]);
    let sb = st.create("s", SLOT_LOCAL_PROD_NEIGHBOUR);
    st.up(&sb);
    let main = st.main.clone();
    let cases: Vec<(&str, &Path, Vec<&str>)> = vec![
        ("list", &main, vec!["sandbox", "list", "--json"]),
        ("status", &sb.path, vec!["sandbox", "status", "--json"]),
        ("ports", &main, vec!["ports", "--json"]),
        ("config-show", &main, vec!["config", "show", "--json"]),
        ("config-check", &main, vec!["config", "check", "--json"]),
        ("doctor", &main, vec!["doctor", "--json"]),
        ("rescue-list", &main, vec!["rescue", "list", "--json"]),
        (
            "reap",
            &main,
            vec!["reap", "--idle", "1d", "--dry-run", "--json"],
        ),
        ("hooks-list", &main, vec!["hooks", "list", "--json"]),
    ];
    for (name, cwd, args) in &cases {
        let run = st.kinfra(cwd, args);
        // doctor and config check exit non-zero when they find something; their JSON
        // is printed either way.
        assert!(!run.stdout.trim().is_empty(), "{name}: no output: {run:?}");
        assert_valid(name, &run.stdout);
    }
    let status: serde_json::Value =
        serde_json::from_str(&st.kinfra(&sb.path, &["sandbox", "status", "--json"]).stdout)
            .unwrap();
    assert!(
        !status["containers"].as_array().unwrap().is_empty(),
        "the running sandbox's containers are in the validated output: {status}"
    );

    // `list --watch --json`: the first lines.
    let mut child = crate::watch::spawn_watch(st.cmd(&main, &[]));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read a line");
    let _ = child.kill();
    let _ = child.wait();
    assert_valid("list-watch", &line);

    // A schema that accepted anything would prove nothing.
    let mut bad: serde_json::Value = serde_json::from_str(&line).unwrap();
    bad["event"] = "renamed".into();
    assert!(!problems("list-watch", &bad).is_empty());
    bad = serde_json::from_str(&line).unwrap();
    bad["schema_version"] = 2.into();
    assert!(!problems("list-watch", &bad).is_empty());
}
