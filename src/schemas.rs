//! The JSON Schemas of every `--json` output, derived from the typed structs that
//! serialize it (so a schema cannot drift from its output) and committed under
//! `docs/schemas/<name>.v1.json` for scripts and agents. A test compares the committed
//! files with the derived ones; `KINFRA_UPDATE_SCHEMAS=1` rewrites them.

use schemars::{JsonSchema, generate::SchemaSettings};

/// Where the committed schemas live, from the repository root.
pub const DIR: &str = "docs/schemas";

fn schema<T: JsonSchema>(title: &str) -> serde_json::Value {
    // The contract of what kinfra writes (a field skipped when empty is not required).
    let generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>();
    schema.insert("title".into(), title.into());
    let mut value = schema.to_value();
    // This is version 1 of the output: a reader can tell from the file.
    if let Some(v) = value.pointer_mut("/properties/schema_version") {
        *v = serde_json::json!({ "type": "integer", "const": 1 });
    }
    value
}

/// Every output: its schema's name (`<name>.v1.json`) and the schema.
pub fn all() -> Vec<(&'static str, serde_json::Value)> {
    use crate::commands;
    vec![
        (
            "list",
            schema::<crate::listing::HostedReport>("kinfra sandbox list --json"),
        ),
        (
            "list-watch",
            schema::<crate::watch::WatchLine>("kinfra sandbox list --watch --json (one line)"),
        ),
        (
            "status",
            schema::<crate::inspect::StatusReport>("kinfra sandbox status --json"),
        ),
        (
            "ports",
            schema::<commands::ports::PortsReport>("kinfra ports --json"),
        ),
        (
            "doctor",
            schema::<commands::doctor::Report<'static>>("kinfra doctor --json"),
        ),
        (
            "config-show",
            schema::<crate::config::render::ConfigReport<'static>>("kinfra config show --json"),
        ),
        (
            "config-check",
            schema::<commands::config::CheckReport<'static>>("kinfra config check --json"),
        ),
        (
            "rescue-list",
            schema::<commands::rescue::ListReport>("kinfra rescue list --json"),
        ),
        ("reap", schema::<crate::reap::Report>("kinfra reap --json")),
        (
            "hooks-list",
            schema::<commands::hooks::ListReport>("kinfra hooks list --json"),
        ),
        (
            "snapshot-list",
            schema::<commands::snapshot::ListReport<'static>>("kinfra snapshot list --json"),
        ),
    ]
}

/// The file text of a schema: pretty JSON with a final newline.
pub fn render(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn committed_schemas_are_the_derived_ones() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(super::DIR);
        let update = std::env::var("KINFRA_UPDATE_SCHEMAS").is_ok_and(|v| v == "1");
        let mut stale = Vec::new();
        for (name, schema) in super::all() {
            let path = dir.join(format!("{name}.v1.json"));
            let want = super::render(&schema);
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            if have != want {
                if update {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, &want).unwrap();
                } else {
                    stale.push(path.display().to_string());
                }
            }
        }
        assert!(
            stale.is_empty(),
            "these schemas differ from the derived ones (KINFRA_UPDATE_SCHEMAS=1 cargo test --lib schemas rewrites them; a change that breaks scripts needs a v2): {stale:?}"
        );
    }
}
