//! The port map: which host ports each slot publishes, and the proof that no two slots
//! share one.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One port key of the map, as written in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Human name for listings ("API").
    #[serde(default)]
    pub label: Option<String>,
    /// URL template with `{port}`, for ports worth opening in a browser.
    #[serde(default)]
    pub url: Option<String>,
    /// Slot 0's first port.
    pub local_prod: u32,
    /// How many consecutive ports slot 0 gets.
    #[serde(default = "one")]
    pub local_prod_count: u32,
    /// Slot 1's first port.
    pub sandbox: u32,
    /// Distance between consecutive slots' first ports.
    pub stride: u32,
    /// How many consecutive ports each sandbox slot gets.
    #[serde(default = "one")]
    pub count: u32,
    /// Slots from `above.slot` on take their ports from this second block instead
    /// (extending the first block's formula would run into other keys' ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<Block>,
}

/// A second block of ports for high slots: slot n ≥ `slot` gets
/// `base + stride * (n - slot)` (and the next `count - 1` ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    pub slot: u32,
    pub base: u32,
    pub stride: u32,
}

fn one() -> u32 {
    1
}

impl PortSpec {
    /// Keys are numbered (`KEY_1`…) when either kind of slot gets more than one port.
    fn numbered(&self) -> bool {
        self.count > 1 || self.local_prod_count > 1
    }
}

/// One port of one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotPort {
    /// The env key (`KTRDR_WORKER_PORT_2`).
    pub key: String,
    pub port: u16,
    /// The spec's key (`KTRDR_WORKER_PORT`).
    #[serde(skip)]
    pub group: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error("port {port} is used by both slot {slot_a} (`{key_a}`) and slot {slot_b} (`{key_b}`)")]
    Collision {
        port: u16,
        slot_a: u32,
        key_a: String,
        slot_b: u32,
        key_b: String,
    },
    #[error("`{key}` gives slot {slot} port {port}, outside 1..=65535")]
    OutOfRange { key: String, slot: u32, port: u64 },
    #[error("`{key}` has a count of 0")]
    ZeroCount { key: String },
}

/// The configured port keys, in config order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMap {
    pub specs: Vec<(String, PortSpec)>,
}

impl PortMap {
    /// Every port of `slot` (0 = local-prod), in config order; checked against range.
    pub fn for_slot(&self, slot: u32) -> Result<Vec<SlotPort>, PortError> {
        let mut out = Vec::new();
        for (key, spec) in &self.specs {
            let (first, count) = if slot == 0 {
                (u64::from(spec.local_prod), spec.local_prod_count)
            } else if let Some(b) = spec.above.filter(|b| slot >= b.slot) {
                (
                    u64::from(b.base) + u64::from(b.stride) * u64::from(slot - b.slot),
                    spec.count,
                )
            } else {
                (
                    u64::from(spec.sandbox) + u64::from(spec.stride) * u64::from(slot - 1),
                    spec.count,
                )
            };
            if count == 0 {
                return Err(PortError::ZeroCount { key: key.clone() });
            }
            for i in 0..count {
                let port = first + u64::from(i);
                let env_key = if spec.numbered() {
                    format!("{key}_{}", i + 1)
                } else {
                    key.clone()
                };
                let port = u16::try_from(port)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| PortError::OutOfRange {
                        key: env_key.clone(),
                        slot,
                        port,
                    })?;
                out.push(SlotPort {
                    key: env_key,
                    port,
                    group: key.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Refuse a map in which two slots of 0..=`slots` (or two keys of one slot) share a
    /// port.
    pub fn validate(&self, slots: u32) -> Result<(), PortError> {
        let mut seen: HashMap<u16, (u32, String)> = HashMap::new();
        for slot in 0..=slots {
            for p in self.for_slot(slot)? {
                if let Some((slot_a, key_a)) = seen.get(&p.port) {
                    return Err(PortError::Collision {
                        port: p.port,
                        slot_a: *slot_a,
                        key_a: key_a.clone(),
                        slot_b: slot,
                        key_b: p.key,
                    });
                }
                seen.insert(p.port, (slot, p.key));
            }
        }
        Ok(())
    }

    /// The spec a slot port came from.
    pub fn spec(&self, group: &str) -> Option<&PortSpec> {
        self.specs.iter().find(|(k, _)| k == group).map(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn ktrdr() -> PortMap {
        Config::builtin().ports
    }

    fn port(map: &PortMap, slot: u32, key: &str) -> u16 {
        map.for_slot(slot)
            .unwrap()
            .into_iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("slot {slot} has no {key}"))
            .port
    }

    #[test]
    fn every_port_of_every_slot_matches_the_spec_table() {
        let map = ktrdr();
        for n in 0..=10u16 {
            let base = |p0: u16, step: u16| if n == 0 { p0 } else { p0 + step * n };
            assert_eq!(port(&map, n.into(), "KTRDR_API_PORT"), base(8000, 1));
            assert_eq!(port(&map, n.into(), "KTRDR_DB_PORT"), base(5432, 1));
            assert_eq!(port(&map, n.into(), "KTRDR_GRAFANA_PORT"), base(3000, 1));
            assert_eq!(port(&map, n.into(), "KTRDR_JAEGER_UI_PORT"), base(16686, 1));
            assert_eq!(
                port(&map, n.into(), "KTRDR_JAEGER_OTLP_GRPC_PORT"),
                base(4317, 10)
            );
            assert_eq!(
                port(&map, n.into(), "KTRDR_JAEGER_OTLP_HTTP_PORT"),
                base(4318, 10)
            );
            assert_eq!(port(&map, n.into(), "KTRDR_PROMETHEUS_PORT"), base(9090, 1));
            let workers: Vec<u16> = map
                .for_slot(n.into())
                .unwrap()
                .into_iter()
                .filter(|p| p.key.starts_with("KTRDR_WORKER_PORT_"))
                .map(|p| p.port)
                .collect();
            if n == 0 {
                assert_eq!(workers, (5003..=5010).collect::<Vec<_>>());
            } else {
                let first = 5011 + 10 * (n - 1);
                assert_eq!(workers, (first..first + 4).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn key_counts_per_slot() {
        let map = ktrdr();
        assert_eq!(map.for_slot(0).unwrap().len(), 15);
        assert_eq!(map.for_slot(3).unwrap().len(), 11);
        let keys: Vec<String> = map
            .for_slot(0)
            .unwrap()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert!(keys.contains(&"KTRDR_WORKER_PORT_8".to_string()));
    }

    #[test]
    fn no_port_appears_twice_over_slots_0_to_10() {
        ktrdr().validate(10).unwrap();
        let mut all: Vec<u16> = (0..=10)
            .flat_map(|s| ktrdr().for_slot(s).unwrap())
            .map(|p| p.port)
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn a_collision_names_the_port_and_both_slots() {
        let mut map = ktrdr();
        // Stride 1 for the gRPC port makes slot 1's 4318 collide with slot 0's HTTP port.
        map.specs
            .iter_mut()
            .find(|(k, _)| k == "KTRDR_JAEGER_OTLP_GRPC_PORT")
            .unwrap()
            .1
            .sandbox = 4318;
        let err = map.validate(10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "port 4318 is used by both slot 0 (`KTRDR_JAEGER_OTLP_HTTP_PORT`) and slot 1 (`KTRDR_JAEGER_OTLP_GRPC_PORT`)"
        );
    }

    #[test]
    fn fifty_ktrdr_slots_keep_the_seed_map_and_never_collide() {
        let map = ktrdr();
        map.validate(99).unwrap();
        // Slots 1..=10 are the seed map's; slot 11 starts the second block.
        assert_eq!(port(&map, 10, "KTRDR_API_PORT"), 8010);
        assert_eq!(port(&map, 11, "KTRDR_API_PORT"), 22_000);
        assert_eq!(port(&map, 11, "KTRDR_WORKER_PORT_4"), 22_010);
        assert_eq!(port(&map, 50, "KTRDR_API_PORT"), 22_780);
        let all: Vec<u16> = (0..=50)
            .flat_map(|s| map.for_slot(s).unwrap())
            .map(|p| p.port)
            .collect();
        let mut dedup = all.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len());
    }

    #[test]
    fn out_of_range_ports_are_refused() {
        let mut map = ktrdr();
        map.specs[0].1.sandbox = 65_530;
        let err = map.validate(10).unwrap_err();
        assert!(matches!(err, PortError::OutOfRange { .. }), "{err}");
    }
}
