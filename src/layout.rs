//! What an instance's env file holds, derived from the config, its id and its slot.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::ports::{PortError, SlotPort};

/// Env-file schema version written as `SANDBOX_VERSION`.
pub const SANDBOX_VERSION: &str = "1";

/// Every key of the env file for `instance_id` on `slot`.
pub fn env_vars(
    config: &Config,
    instance_id: &str,
    slot: u32,
    created_at: &str,
) -> Result<BTreeMap<String, String>, PortError> {
    let mut vars = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        vars.insert(k.to_string(), v);
    };
    set("COMPOSE_PROJECT_NAME", instance_id.to_string());
    set("CREATED_AT", created_at.to_string());
    set("INSTANCE_ID", instance_id.to_string());
    set("SANDBOX_VERSION", SANDBOX_VERSION.to_string());
    set("SLOT_NUMBER", slot.to_string());
    set(
        &config.shared_env_key,
        config.shared_dir.display().to_string(),
    );
    for sub in &config.shared_subdirs {
        set(
            &sub.env_key,
            config.shared_dir.join(&sub.name).display().to_string(),
        );
    }
    for p in config.ports.for_slot(slot)? {
        set(&p.key, p.port.to_string());
    }
    Ok(vars)
}

/// `Label: URL` lines for the ports that have a URL template.
pub fn urls(config: &Config, ports: &[SlotPort]) -> Vec<(String, String)> {
    ports
        .iter()
        .filter_map(|p| {
            let spec = config.ports.spec(&p.group)?;
            let url = spec.url.as_ref()?.replace("{port}", &p.port.to_string());
            Some((spec.label.clone().unwrap_or_else(|| p.key.clone()), url))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_has_20_keys_and_slot_0_has_24() {
        let c = Config::builtin();
        assert_eq!(env_vars(&c, "ktrdr--x", 3, "t").unwrap().len(), 20);
        assert_eq!(env_vars(&c, "ktrdr-prod", 0, "t").unwrap().len(), 24);
    }

    #[test]
    fn spec_example_for_slot_3() {
        let mut c = Config::builtin();
        c.shared_dir = "/home/me/.ktrdr/shared".into();
        let vars = env_vars(
            &c,
            "ktrdr--my-feature",
            3,
            "2026-01-20T16:29:14.123456+00:00",
        )
        .unwrap();
        let expected = "\
COMPOSE_PROJECT_NAME=ktrdr--my-feature
CREATED_AT=2026-01-20T16:29:14.123456+00:00
INSTANCE_ID=ktrdr--my-feature
KTRDR_API_PORT=8003
KTRDR_DATA_DIR=/home/me/.ktrdr/shared/data
KTRDR_DB_PORT=5435
KTRDR_GRAFANA_PORT=3003
KTRDR_JAEGER_OTLP_GRPC_PORT=4347
KTRDR_JAEGER_OTLP_HTTP_PORT=4348
KTRDR_JAEGER_UI_PORT=16689
KTRDR_MODELS_DIR=/home/me/.ktrdr/shared/models
KTRDR_PROMETHEUS_PORT=9093
KTRDR_SHARED_DIR=/home/me/.ktrdr/shared
KTRDR_STRATEGIES_DIR=/home/me/.ktrdr/shared/strategies
KTRDR_WORKER_PORT_1=5031
KTRDR_WORKER_PORT_2=5032
KTRDR_WORKER_PORT_3=5033
KTRDR_WORKER_PORT_4=5034
SANDBOX_VERSION=1
SLOT_NUMBER=3
";
        assert_eq!(crate::envfile::render(&vars), expected);
    }
}
