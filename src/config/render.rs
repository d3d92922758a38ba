//! The effective layout written out: as TOML that can be saved as `kinfra.toml`
//! unchanged (it reproduces the same configuration), or as JSON for scripts.

use serde::Serialize;

use crate::config::{Config, Layer, Source};

/// The effective layout as a complete `kinfra.toml`.
pub fn to_toml(config: &Config) -> Result<String, toml::ser::Error> {
    let mut layer: Layer = config.layer.clone();
    layer.base = Some(config.base);
    let body = toml::to_string(&layer)?;
    Ok(format!(
        "# kinfra layout: {}.\n# Saved as kinfra.toml at the repository root, it gives the same configuration.\n\n{body}",
        config.source.describe()
    ))
}

/// `config show --json`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ConfigReport<'a> {
    pub schema_version: u32,
    pub source: &'a Source,
    pub registry: &'a std::path::Path,
    pub state_dir: &'a std::path::Path,
    /// The effective layout, keyed as in `kinfra.toml`.
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub layout: &'a Layer,
    /// The checks `up` runs, each with the service it needs (`null`: none named).
    pub gate: Vec<GateCheck>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct GateCheck {
    pub name: String,
    pub kind: String,
    pub service: Option<String>,
    /// Why a check of the layout is not run (its service is not in the compose file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_layout_round_trips_through_toml() {
        let config = Config::builtin();
        let text = to_toml(&config).unwrap();
        let again = Config::from_layers(Some(std::path::Path::new("kinfra.toml")), Some(&text))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again.ports, config.ports);
        assert_eq!(again.gate_checks, config.gate_checks);
        assert_eq!(again.secrets, config.secrets);
        assert_eq!(again.auto_ports, config.auto_ports);
        assert_eq!(again.registry_path, config.registry_path);
        assert_eq!(again.shared_subdirs, config.shared_subdirs);
        assert_eq!(again.copy_files, config.copy_files);
    }
}
