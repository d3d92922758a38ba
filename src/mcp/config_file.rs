//! `.mcp.json`, which `sandbox create --mcp` writes in the new worktree so an agent
//! started there finds a `kinfra mcp` server scoped to that sandbox. It is kinfra's
//! file: destroy treats it like the env file (not work to keep) while it still has the
//! shape kinfra writes.

use std::path::Path;

/// The file's name at the worktree's top.
pub const CONFIG_FILE: &str = ".mcp.json";

/// The file's text: one server, `kinfra`, running `<command> mcp --instance <id>`.
pub fn render(command: &str, id: &str) -> String {
    let value = serde_json::json!({
        "mcpServers": {
            "kinfra": {
                "command": command,
                "args": ["mcp", "--instance", id],
            }
        }
    });
    // A JSON value of strings always renders.
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// Write the file in `dir` (the new sandbox's worktree) for instance `id`, naming the
/// running kinfra binary (or `kinfra` when its path is unknown).
pub fn write(dir: &Path, id: &str) -> Result<std::path::PathBuf, crate::fsutil::FsError> {
    let command = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
        .unwrap_or_else(|| "kinfra".into());
    let path = dir.join(CONFIG_FILE);
    crate::fsutil::write_atomically(&path, render(&command, id).as_bytes())
        .map_err(crate::fsutil::fs_err("write", &path))?;
    Ok(path)
}

/// Whether the file at `path` is exactly what [`render`] writes (for any command and
/// instance): someone's own servers or edits make it theirs.
pub fn is_ours(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    let server = &value["mcpServers"]["kinfra"];
    let (Some(command), Some(args)) = (server["command"].as_str(), server["args"].as_array())
    else {
        return false;
    };
    let [_, _, id] = args.as_slice() else {
        return false;
    };
    let Some(id) = id.as_str() else {
        return false;
    };
    text == render(command, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_names_the_instance_and_only_its_own_shape_is_ours() {
        let text = render("/usr/bin/kinfra", "hello--a");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["mcpServers"]["kinfra"]["command"], "/usr/bin/kinfra");
        assert_eq!(
            v["mcpServers"]["kinfra"]["args"],
            serde_json::json!(["mcp", "--instance", "hello--a"])
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(&path, &text).unwrap();
        assert!(is_ours(&path));
        // Another server added: the user's file now.
        let mut edited = v.clone();
        edited["mcpServers"]["other"] = serde_json::json!({"command": "x"});
        std::fs::write(&path, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
        assert!(!is_ours(&path));
        std::fs::write(&path, "not json").unwrap();
        assert!(!is_ours(&path));
        assert!(!is_ours(&dir.path().join("missing")));
    }
}
