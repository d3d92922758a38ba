//! Zero configuration: the layout of a compose project that is not ktrdr and has no
//! `kinfra.toml`, derived from its compose file. Every published `${VAR:-default}`
//! host port becomes an automatic port (local-prod keeps the default; sandboxes get
//! ports from the project's own block); the names come from the repository's
//! directory; state lives under the per-user kinfra state directory, never at a path
//! built from the project's name in the home directory.

use std::path::{Path, PathBuf};

use crate::compose::model::ComposeModel;
use crate::config::{
    AutoPortsLayer, Base, GateLayer, InstanceLayer, Layer, LocalProdLayer, NetworksLayer,
    ProjectLayer, SecretsLayer, SharedLayer, SlotsLayer, StateLayer,
};
use crate::index::{PORT_BLOCK_SIZE, PORT_BLOCKS_START};

/// Compose file names looked for, in compose's own order.
pub const COMPOSE_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The project name for a repository directory: its name as a compose project name.
pub fn project_name(main_repo: &Path) -> String {
    let base = main_repo
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let slug = crate::slug::slugify(&base);
    let slug: String = slug.chars().take(40).collect();
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        "project".into()
    } else {
        slug
    }
}

/// The compose file of a checkout, by compose's own names.
pub fn find_compose_file(root: &Path) -> Option<PathBuf> {
    COMPOSE_FILES
        .iter()
        .map(|n| root.join(n))
        .find(|p| p.is_file())
}

/// The derived layout. `state_dir` is the project's directory under the per-user state
/// root; `ports_base` the first port of its block.
pub fn layout(
    name: &str,
    compose_file: &str,
    model: Option<&ComposeModel>,
    state_dir: &Path,
    ports_base: u16,
) -> Layer {
    // Room for every published variable of the file (and some that appear later).
    let vars = model.map_or(0, |m| {
        m.published_ports(&["*".to_string()])
            .filter(|(_, b)| b.host_var.is_some())
            .count()
    });
    let per_slot = (vars.div_ceil(10) * 10).clamp(10, 90) as u32;
    let slots = (u32::from(PORT_BLOCK_SIZE) / per_slot - 1).min(10);
    Layer {
        base: Some(Base::Compose),
        project: Some(ProjectLayer {
            name: Some(name.to_string()),
            sandbox_prefix: Some(format!("{name}--")),
            repo_check: Some(String::new()),
        }),
        state: Some(StateLayer {
            dir: Some(state_dir.display().to_string()),
            registry: Some("instances.json".into()),
        }),
        instance: Some(InstanceLayer {
            env_file: Some(".env.sandbox".into()),
            compose_files: Some(vec![compose_file.to_string()]),
            copy_files: Some(Vec::new()),
            disposable: None,
        }),
        slots: Some(SlotsLayer { count: Some(slots) }),
        local_prod: Some(LocalProdLayer {
            dir: Some(format!("{name}-prod")),
            id: Some(format!("{name}-prod")),
            profile: Some("local-prod".into()),
        }),
        shared: Some(SharedLayer {
            dir: Some(state_dir.join("shared").display().to_string()),
            env_key: Some("KINFRA_SHARED_DIR".into()),
            subdirs: Some(Vec::new()),
        }),
        auto_ports: Some(AutoPortsLayer {
            base: Some(u32::from(ports_base)),
            per_slot: Some(per_slot),
        }),
        ports: Some(toml::map::Map::new()),
        gate: Some(GateLayer {
            timeout: Some(120),
            checks: Some(Vec::new()),
        }),
        secrets: Some(SecretsLayer {
            timeout: Some(15),
            items: Some(Vec::new()),
        }),
        // Each project its own /16 of 10.201..10.208 (by its port block), clear of
        // ktrdr's 10.200.0.0/16 and of Docker's default pools.
        networks: Some(NetworksLayer {
            enabled: Some(true),
            range: Some(format!(
                "10.{}.0.0/16",
                201 + u32::from(ports_base.saturating_sub(PORT_BLOCKS_START) / PORT_BLOCK_SIZE) % 8
            )),
            per_slot: Some(2),
        }),
        budget: None,
        hooks: None,
        data: Some(crate::config::DataLayer {
            skip: Some(Vec::new()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_directory() {
        assert_eq!(project_name(Path::new("/w/My App")), "my-app");
        assert_eq!(project_name(Path::new("/w/docker")), "docker");
        assert_eq!(project_name(Path::new("/w/!!!")), "project");
    }

    #[test]
    fn a_derived_layout_resolves_and_keeps_state_out_of_the_home_directory() {
        let layer = layout(
            "docker",
            "compose.yaml",
            None,
            Path::new("/home/me/.local/state/kinfra/docker"),
            24_000,
        );
        let config = crate::config::Config::resolve_over(
            layer,
            crate::config::Source::Derived {
                compose_file: "/w/docker/compose.yaml".into(),
            },
            None,
        )
        .unwrap();
        assert_eq!(config.sandbox_prefix, "docker--");
        assert_eq!(config.local_prod_id, "docker-prod");
        assert_eq!(
            config.registry_path,
            Path::new("/home/me/.local/state/kinfra/docker/instances.json")
        );
        assert!(config.ports.specs.is_empty());
        assert_eq!(config.auto_ports.block(1), 24_010..24_020);
    }
}
