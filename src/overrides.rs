//! The compose override file kinfra writes for an instance and passes after the
//! project's own files (`-f`): a fixed subnet for each of its networks (so fifty
//! instances never exhaust the daemon's address pools: none of their networks takes a
//! pool subnet), and its resource budget as per-service limits. The project's files are
//! never changed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::config::{Budget, NetworkPlan};
use crate::error::{Diagnostic, Exit};
use crate::stack::Stack;

#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error(
        "the compose file has {count} networks; each instance has room for {per_slot} (`networks.per_slot`)"
    )]
    TooManyNetworks { count: usize, per_slot: u32 },
    #[error("slot {slot} has no subnet left in `{range}`")]
    OutOfRange { slot: u32, range: String },
    #[error("subnet {subnet} for network `{network}` is taken by Docker network `{holder}`")]
    SubnetTaken {
        subnet: String,
        network: String,
        holder: String,
    },
    #[error("cannot write `{}`: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Diagnostic for OverrideError {
    fn exit(&self) -> Exit {
        match self {
            OverrideError::SubnetTaken { .. } => Exit::Conflict,
            _ => Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            OverrideError::TooManyNetworks { .. } | OverrideError::OutOfRange { .. } => {
                "raise `networks.per_slot` or give `networks.range` a larger block in kinfra.toml"
                    .into()
            }
            OverrideError::SubnetTaken { holder, .. } => format!(
                "remove the network if it is left over (`docker network rm {holder}`), or move kinfra's subnets with `networks.range` in kinfra.toml"
            ),
            OverrideError::Write { .. } => return None,
        })
    }
}

/// One network's subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// The compose file's key for the network (`default` for the implicit one).
    pub network: String,
    pub cidr: String,
}

/// What the override file says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub subnets: Vec<Subnet>,
    /// Service → (memory bytes, cpus).
    pub limits: BTreeMap<String, (Option<u64>, Option<f64>)>,
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.subnets.is_empty() && self.limits.is_empty()
    }

    /// The override file's text (YAML, which compose merges over the project's files).
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# Written by kinfra for this instance; passed to compose after the project's\n# own files. Do not edit: it is written again on every `up`.\n",
        );
        if !self.limits.is_empty() {
            out.push_str("services:\n");
            for (service, (mem, cpus)) in &self.limits {
                out.push_str(&format!("  {}:\n", yaml_key(service)));
                if let Some(m) = mem {
                    out.push_str(&format!("    mem_limit: {m}\n"));
                }
                if let Some(c) = cpus {
                    out.push_str(&format!("    cpus: {c:.3}\n"));
                }
            }
        }
        if !self.subnets.is_empty() {
            out.push_str("networks:\n");
            for s in &self.subnets {
                out.push_str(&format!(
                    "  {}:\n    ipam:\n      config:\n        - subnet: {}\n",
                    yaml_key(&s.network),
                    s.cidr
                ));
            }
        }
        out
    }
}

fn yaml_key(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        key.to_string()
    } else {
        format!("'{}'", key.replace('\'', "''"))
    }
}

/// The networks of `stack` that need a subnet: every non-external network its active
/// services join (the implicit `default` one included), unless the file already gives
/// it an address configuration.
pub fn networks_needing_subnets(stack: &Stack) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for service in stack.model.active_services(&stack.profiles) {
        if service.network_mode.is_some() {
            continue;
        }
        let joined: Vec<String> = if service.networks.is_empty() {
            vec!["default".into()]
        } else {
            service.networks.clone()
        };
        for n in joined {
            let def = stack.model.networks.get(&n);
            let skip = def.is_some_and(|d| d.external || d.has_ipam_config);
            if !skip && !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// The subnets of `slot`'s networks: the `/24`s of `plan.range` numbered
/// `slot * per_slot + k`.
pub fn subnets(
    plan: &NetworkPlan,
    slot: u32,
    networks: &[String],
) -> Result<Vec<Subnet>, OverrideError> {
    if networks.len() > plan.per_slot as usize {
        return Err(OverrideError::TooManyNetworks {
            count: networks.len(),
            per_slot: plan.per_slot,
        });
    }
    let size = 1u64 << (24 - u32::from(plan.prefix_len));
    networks
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let index = u64::from(slot) * u64::from(plan.per_slot) + k as u64;
            if index >= size {
                return Err(OverrideError::OutOfRange {
                    slot,
                    range: plan.range.clone(),
                });
            }
            let base = u32::from(plan.base) as u64 + (index << 8);
            let addr = Ipv4Addr::from(u32::try_from(base).unwrap_or(u32::MAX));
            Ok(Subnet {
                network: n.clone(),
                cidr: format!("{addr}/24"),
            })
        })
        .collect()
}

/// Per-service limits that together stay within `budget`: the memory and the CPUs
/// divided equally among the services that run.
pub fn limits(budget: &Budget, stack: &Stack) -> BTreeMap<String, (Option<u64>, Option<f64>)> {
    if budget.memory.is_none() && budget.cpus.is_none() {
        return BTreeMap::new();
    }
    let services = stack.services();
    let n = services.len().max(1);
    services
        .into_iter()
        .map(|s| {
            (
                s,
                (
                    budget.memory.map(|m| m / n as u64),
                    budget.cpus.map(|c| (c / n as f64).max(0.01)),
                ),
            )
        })
        .collect()
}

/// Where the override file of `instance` lives (under kinfra's state directory, never
/// in the checkout).
pub fn path(state_dir: &Path, instance: &str) -> PathBuf {
    state_dir.join("overrides").join(format!("{instance}.yml"))
}

/// Write the file atomically; `None` when there is nothing to override (an old file is
/// removed then).
pub fn save(
    state_dir: &Path,
    instance: &str,
    o: &Overrides,
) -> Result<Option<PathBuf>, OverrideError> {
    let path = path(state_dir, instance);
    if o.is_empty() {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    let write_err = |source| OverrideError::Write {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    crate::fsutil::write_atomically(&path, o.render().as_bytes()).map_err(write_err)?;
    Ok(Some(path))
}

/// The first subnet of `subnets` that a Docker network not of `project` already uses.
pub fn taken_subnet(
    subnets: &[Subnet],
    project: &str,
    existing: &[crate::engine::Network],
) -> Option<OverrideError> {
    for s in subnets {
        for n in existing {
            let ours = n
                .labels
                .get(crate::docker::PROJECT_LABEL)
                .is_some_and(|p| p == project);
            if !ours && n.subnets().iter().any(|x| *x == s.cidr) {
                return Some(OverrideError::SubnetTaken {
                    subnet: s.cidr.clone(),
                    network: s.network.clone(),
                    holder: n.name.clone(),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> NetworkPlan {
        NetworkPlan::parse("10.200.0.0/16", 4).unwrap()
    }

    fn stack(text: &str) -> Stack {
        Stack::parse(Path::new("/w/compose.yml"), text, &|_| None, Vec::new()).unwrap()
    }

    #[test]
    fn every_slot_gets_its_own_subnets() {
        let nets = vec!["default".to_string(), "back".to_string()];
        let s1 = subnets(&plan(), 1, &nets).unwrap();
        assert_eq!(s1[0].cidr, "10.200.4.0/24");
        assert_eq!(s1[1].cidr, "10.200.5.0/24");
        let s50 = subnets(&plan(), 50, &nets).unwrap();
        assert_eq!(s50[0].cidr, "10.200.200.0/24");
        assert!(matches!(
            subnets(&plan(), 64, &nets),
            Err(OverrideError::OutOfRange { .. })
        ));
        let five: Vec<String> = (0..5).map(|i| format!("n{i}")).collect();
        assert!(matches!(
            subnets(&plan(), 1, &five),
            Err(OverrideError::TooManyNetworks { .. })
        ));
    }

    #[test]
    fn the_implicit_default_network_and_joined_ones_need_subnets_external_ones_not() {
        let s = stack(
            "services:\n  a:\n    image: x\n  b:\n    image: x\n    networks: [back, obs]\n  c:\n    image: x\n    network_mode: host\nnetworks:\n  back: {}\n  obs:\n    external: true\n",
        );
        assert_eq!(networks_needing_subnets(&s), vec!["default", "back"]);
    }

    #[test]
    fn a_budget_is_shared_by_the_services() {
        let s = stack("services:\n  a:\n    image: x\n  b:\n    image: x\n");
        let b = Budget {
            memory: Some(1 << 30),
            cpus: Some(2.0),
        };
        let l = limits(&b, &s);
        assert_eq!(l["a"], (Some(1 << 29), Some(1.0)));
        let text = Overrides {
            subnets: vec![Subnet {
                network: "default".into(),
                cidr: "10.200.4.0/24".into(),
            }],
            limits: l,
        }
        .render();
        assert!(
            text.contains("  a:\n    mem_limit: 536870912\n    cpus: 1.000\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  default:\n    ipam:\n      config:\n        - subnet: 10.200.4.0/24\n"
            ),
            "{text}"
        );
    }
}
