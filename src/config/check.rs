//! `config check`: the layout compared with the compose file it will run — ports two
//! instances would share, literal host ports, gate checks for services the file does
//! not have, and layout keys nothing publishes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Config;
use crate::stack::{self, Stack};

/// One thing `config check` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
    /// Two slots (or a slot and a literal) would publish the same host port.
    SharedPort {
        port: u16,
        first: String,
        second: String,
    },
    /// A service publishes a literal host port: every sandbox would publish it.
    LiteralPort { message: String },
    /// A service publishes the same host port twice.
    DuplicatePort { message: String },
    /// A gate check names a service the compose file does not have.
    MissingService { check: String, service: String },
    /// A built-in gate check whose service the compose file does not have: dropped.
    DroppedCheck { check: String, service: String },
    /// A gate check probes a key neither the layout nor the compose file has.
    UnknownCheckPort { check: String, key: String },
    /// A layout port key no service publishes (kept in the env file, never checked).
    UnusedKey { key: String },
    /// A port variable the layout does not assign: it gets automatic ports.
    AutomaticPort { key: String, slot1: u16 },
}

impl Finding {
    /// Errors make `config check` fail; the rest are notes.
    pub fn is_error(&self) -> bool {
        !matches!(
            self,
            Finding::UnusedKey { .. }
                | Finding::AutomaticPort { .. }
                | Finding::DroppedCheck { .. }
        )
    }

    pub fn message(&self) -> String {
        match self {
            Finding::SharedPort {
                port,
                first,
                second,
            } => format!("port {port} is published by both {first} and {second}"),
            Finding::LiteralPort { message } | Finding::DuplicatePort { message } => {
                message.clone()
            }
            Finding::MissingService { check, service } => {
                format!(
                    "gate check `{check}` needs service `{service}`, which the compose file does not have"
                )
            }
            Finding::DroppedCheck { check, service } => format!(
                "built-in gate check `{check}` is skipped: the compose file has no service `{service}`"
            ),
            Finding::UnknownCheckPort { check, key } => format!(
                "gate check `{check}` probes `{key}`, which neither the layout nor the compose file assigns"
            ),
            Finding::UnusedKey { key } => {
                format!(
                    "layout key `{key}` is published by no service (written to the env file, never checked)"
                )
            }
            Finding::AutomaticPort { key, slot1 } => {
                format!("`{key}` is not in the layout: it gets automatic ports ({slot1} on slot 1)")
            }
        }
    }
}

/// Compare `config` with the compose file `sandbox` (sandbox profiles) and `prod`
/// (local-prod's profile) read.
pub fn check(config: &Config, sandbox: &Stack, prod: &Stack) -> Vec<Finding> {
    let mut out = Vec::new();
    for d in sandbox.duplicates().into_iter().chain(prod.duplicates()) {
        let f = Finding::DuplicatePort {
            message: d.to_string(),
        };
        if !out.contains(&f) {
            out.push(f);
        }
    }
    for lit in sandbox.literal_ports() {
        out.push(Finding::LiteralPort {
            message: lit.to_string(),
        });
    }
    // Every slot's published ports, each port owned once.
    let mut owner: BTreeMap<u16, String> = BTreeMap::new();
    for slot in 0..=config.slot_count {
        let st = if slot == 0 { prod } else { sandbox };
        let Ok(ports) = crate::provision::published_ports(config, Some(st), slot) else {
            continue;
        };
        // (Literal ports are reported on their own: every slot would share them.)
        let here = ports
            .into_iter()
            .map(|p| (p.port, format!("slot {slot} (`{}`)", p.key)));
        for (port, who) in here {
            if let Some(first) = owner.get(&port) {
                let f = Finding::SharedPort {
                    port,
                    first: first.clone(),
                    second: who,
                };
                out.push(f);
            } else {
                owner.insert(port, who);
            }
        }
    }
    let vars = sandbox.port_vars();
    let mut known: Vec<String> = config.layout_keys();
    known.extend(vars.iter().map(|v| v.name.clone()));
    for spec in &config.gate_checks {
        if let Some(service) = &spec.service
            && !sandbox.model.services.contains_key(service)
        {
            let (check, service) = (spec.name.clone(), service.clone());
            out.push(if config.gate_checks_builtin {
                Finding::DroppedCheck { check, service }
            } else {
                Finding::MissingService { check, service }
            });
        } else if !known.contains(&spec.port) {
            out.push(Finding::UnknownCheckPort {
                check: spec.name.clone(),
                key: spec.port.clone(),
            });
        }
    }
    let published: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
    let prod_vars = prod.port_vars();
    if let Ok(ports) = config.ports.for_slot(1) {
        for p in ports {
            let used =
                published.contains(&p.key.as_str()) || prod_vars.iter().any(|v| v.name == p.key);
            if !used {
                out.push(Finding::UnusedKey { key: p.key });
            }
        }
    }
    if let Ok(auto) = stack::assign_auto_ports(config, 1, &vars, &BTreeMap::new()) {
        for (key, port) in auto {
            out.push(Finding::AutomaticPort { key, slot1: port });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn stack(text: &str, profiles: &[&str]) -> Stack {
        Stack::parse(
            Path::new("/w/docker-compose.yml"),
            text,
            &|_| None,
            profiles.iter().map(|p| p.to_string()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn todays_ktrdr_passes_with_notes_only() {
        let text = include_str!("../../tests/fixtures/compose/ktrdr-today.yml");
        let config = Config::builtin();
        let found = check(&config, &stack(text, &[]), &stack(text, &["local-prod"]));
        let errors: Vec<String> = found
            .iter()
            .filter(|f| f.is_error())
            .map(Finding::message)
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        // The built-in Observability check names `jaeger`, gone from today's file.
        assert!(
            found
                .iter()
                .any(|f| matches!(f, Finding::DroppedCheck { service, .. } if service == "jaeger"))
        );
        assert!(
            found
                .iter()
                .any(|f| matches!(f, Finding::UnusedKey { key } if key == "KTRDR_GRAFANA_PORT"))
        );
        assert!(found.iter().any(
            |f| matches!(f, Finding::AutomaticPort { key, .. } if key == "KTRDR_DESIGN_AGENT_PORT")
        ));
    }

    #[test]
    fn a_configured_check_for_a_missing_service_is_an_error() {
        let text = include_str!("../../tests/fixtures/compose/ktrdr-today.yml");
        let mut config = Config::builtin();
        config.gate_checks_builtin = false;
        let found = check(&config, &stack(text, &[]), &stack(text, &["local-prod"]));
        assert!(
            found
                .iter()
                .any(|f| f.is_error() && matches!(f, Finding::MissingService { .. }))
        );
    }

    #[test]
    fn a_literal_port_is_an_error() {
        let text = "services:\n  web:\n    image: x\n    ports:\n      - \"9000:80\"\n";
        let mut config = Config::builtin();
        config.gate_checks.clear();
        let found = check(&config, &stack(text, &[]), &stack(text, &["local-prod"]));
        assert!(
            found
                .iter()
                .any(|f| matches!(f, Finding::LiteralPort { .. })),
            "{found:?}"
        );
    }
}
