//! Slots: which numbers a sandbox may take, which one a new instance gets (under the
//! registry lock, so concurrent creates never share one), and whether its host ports
//! are free to publish.

use crate::config::Config;
use crate::error::{Diagnostic, Exit};
use crate::ports::SlotPort;
use crate::registry::{Registry, SlotHolder};
use crate::status::Container;

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("slot 0 is reserved for local-prod; sandboxes use slots 1..={count}")]
    Reserved { count: u32 },
    #[error("slot {value} is invalid; sandboxes use slots 1..={count}")]
    OutOfRange { value: i64, count: u32 },
    #[error("slot {slot} is in use by {holder}")]
    InUse { slot: u32, holder: String },
    #[error("all {count} sandbox slots are in use ({})", .holders.join(", "))]
    Exhausted { count: u32, holders: Vec<String> },
    #[error("port conflict on slot {slot}: {}", join(.conflicts))]
    PortsBusy {
        slot: u32,
        conflicts: Vec<PortConflict>,
    },
    #[error("no free sandbox slot has free ports ({})", .tried.iter().map(|(s, c)| format!("slot {s}: {}", join(c))).collect::<Vec<_>>().join("; "))]
    NoSlotWithFreePorts {
        tried: Vec<(u32, Vec<PortConflict>)>,
    },
}

fn join(conflicts: &[PortConflict]) -> String {
    conflicts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Diagnostic for SlotError {
    fn exit(&self) -> Exit {
        match self {
            SlotError::Reserved { .. } | SlotError::OutOfRange { .. } => Exit::Usage,
            _ => Exit::Conflict,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            SlotError::Reserved { .. } => {
                "use `kinfra local-prod create` for slot 0, or pick another slot".into()
            }
            SlotError::OutOfRange { .. } => "omit --slot to take the lowest free slot".into(),
            SlotError::InUse { .. } => {
                "omit --slot to take the lowest free slot, or destroy that sandbox first".into()
            }
            SlotError::Exhausted { .. } => {
                "destroy a sandbox you no longer need (`kinfra sandbox destroy NAME`)".into()
            }
            SlotError::PortsBusy { .. } => {
                "stop what holds the port (`kinfra sandbox list` shows running instances), or choose another slot with --slot".into()
            }
            SlotError::NoSlotWithFreePorts { .. } => {
                "stop what holds those ports, then retry".into()
            }
        })
    }
}

/// Who holds a busy port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A running container of a registered instance.
    Instance { container: String, project: String },
    /// A running container of some other compose project.
    Project { container: String, project: String },
    /// Not a container Docker knows about (or Docker could not be asked).
    Outside,
}

/// A host port that something else already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConflict {
    pub port: u16,
    pub key: String,
    pub holder: Holder,
}

impl std::fmt::Display for PortConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let owner = match &self.holder {
            Holder::Instance { container, project } => {
                format!("container `{container}` of kinfra instance `{project}`")
            }
            Holder::Project { container, project } => {
                format!("container `{container}` of compose project `{project}`")
            }
            Holder::Outside => "a process outside Docker".to_string(),
        };
        write!(f, "{} ({}) is held by {owner}", self.port, self.key)
    }
}

/// A `--slot` value checked against 1..=count.
pub fn sandbox_slot(value: i64, count: u32) -> Result<u32, SlotError> {
    if value == 0 {
        return Err(SlotError::Reserved { count });
    }
    u32::try_from(value)
        .ok()
        .filter(|s| (1..=count).contains(s))
        .ok_or(SlotError::OutOfRange { value, count })
}

/// The busy ports among `ports`, each with its holder when Docker knows it. Ports
/// published by `own_project`'s running containers are not conflicts.
pub fn port_conflicts(
    ports: &[SlotPort],
    own_project: Option<&str>,
    registry: &Registry,
) -> Vec<PortConflict> {
    let busy = crate::preflight::busy(ports);
    if busy.is_empty() {
        return Vec::new();
    }
    // One Docker call names every holder; without Docker the ports are just "in use".
    let containers = crate::status::all_containers().unwrap_or_default();
    conflicts_given(&busy, &containers, own_project, registry)
}

/// [`port_conflicts`] once the busy ports and the running containers are known.
pub fn conflicts_given(
    busy: &[SlotPort],
    containers: &[Container],
    own_project: Option<&str>,
    registry: &Registry,
) -> Vec<PortConflict> {
    let holder = |port: u16| {
        containers
            .iter()
            .find(|c| c.is_running() && c.host_ports.contains(&port))
    };
    busy.iter()
        .filter(|p| holder(p.port).is_none_or(|c| Some(c.project.as_str()) != own_project))
        .map(|p| PortConflict {
            port: p.port,
            key: p.key.clone(),
            holder: match holder(p.port) {
                Some(c) if registry.all().any(|e| e.instance_id == c.project) => Holder::Instance {
                    container: c.name.clone(),
                    project: c.project.clone(),
                },
                Some(c) => Holder::Project {
                    container: c.name.clone(),
                    project: c.project.clone(),
                },
                None => Holder::Outside,
            },
        })
        .collect()
}

/// The slot a new sandbox gets, and the free slots passed over because a port of
/// theirs was busy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub slot: u32,
    pub skipped: Vec<(u32, Vec<PortConflict>)>,
}

/// Pick `wanted` if it is free and its ports are free (else refuse), or the lowest free
/// slot whose ports are free. `conflicts_of(slot)` checks one slot's ports.
pub fn choose(
    registry: &Registry,
    config: &Config,
    wanted: Option<u32>,
    mut conflicts_of: impl FnMut(u32) -> Vec<PortConflict>,
) -> Result<Choice, SlotError> {
    // A slot claimed in ktrdr's v2 pool is as taken as a registered instance's.
    let claims = registry.pool_claims();
    if let Some(slot) = wanted {
        if let Some(holder) = registry.holder(slot, &claims) {
            return Err(SlotError::InUse {
                slot,
                holder: holder.describe(),
            });
        }
        let conflicts = conflicts_of(slot);
        if !conflicts.is_empty() {
            return Err(SlotError::PortsBusy { slot, conflicts });
        }
        return Ok(Choice {
            slot,
            skipped: Vec::new(),
        });
    }
    let free: Vec<u32> = (1..=config.slot_count)
        .filter(|s| registry.holder(*s, &claims).is_none())
        .collect();
    if free.is_empty() {
        let holders = (1..=config.slot_count)
            .filter_map(|s| {
                registry.holder(s, &claims).map(|h| match h {
                    SlotHolder::Instance(e) => format!("{s}: {}", e.instance_id),
                    SlotHolder::Pool(c) => format!("{s}: ktrdr's pool ({})", c.claimed_by),
                })
            })
            .collect();
        return Err(SlotError::Exhausted {
            count: config.slot_count,
            holders,
        });
    }
    let mut skipped = Vec::new();
    for slot in free {
        let conflicts = conflicts_of(slot);
        if conflicts.is_empty() {
            return Ok(Choice { slot, skipped });
        }
        skipped.push((slot, conflicts));
    }
    if let [(slot, conflicts)] = skipped.as_slice() {
        return Err(SlotError::PortsBusy {
            slot: *slot,
            conflicts: conflicts.clone(),
        });
    }
    Err(SlotError::NoSlotWithFreePorts { tried: skipped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Entry;

    fn registry_with(slots: &[u32]) -> Registry {
        let mut reg = Registry::default();
        for &slot in slots {
            reg.instances.push(Entry {
                instance_id: format!("ktrdr--s{slot}"),
                slot,
                path: format!("/w/s{slot}"),
                created_at: String::new(),
                is_worktree: true,
                parent_repo: Some("/w/ktrdr".into()),
            });
        }
        reg
    }

    fn busy(slot: u32) -> Vec<PortConflict> {
        vec![PortConflict {
            port: 8000 + u16::try_from(slot).unwrap(),
            key: "KTRDR_API_PORT".into(),
            holder: Holder::Outside,
        }]
    }

    #[test]
    fn slot_values_are_checked() {
        assert!(matches!(
            sandbox_slot(0, 10),
            Err(SlotError::Reserved { .. })
        ));
        assert!(matches!(
            sandbox_slot(11, 10),
            Err(SlotError::OutOfRange { .. })
        ));
        assert!(matches!(
            sandbox_slot(-1, 10),
            Err(SlotError::OutOfRange { .. })
        ));
        assert_eq!(sandbox_slot(10, 10).unwrap(), 10);
    }

    #[test]
    fn the_lowest_free_slot_with_free_ports_is_chosen_and_skips_are_said() {
        let config = Config::builtin();
        let reg = registry_with(&[1, 3]);
        let choice = choose(&reg, &config, None, |s| {
            if s == 2 { busy(s) } else { Vec::new() }
        })
        .unwrap();
        assert_eq!(choice.slot, 4);
        assert_eq!(choice.skipped.len(), 1);
        assert_eq!(choice.skipped[0].0, 2);
    }

    #[test]
    fn an_explicit_slot_refuses_instead_of_moving_on() {
        let config = Config::builtin();
        let reg = registry_with(&[1]);
        let err = choose(&reg, &config, Some(2), busy).unwrap_err();
        assert!(matches!(err, SlotError::PortsBusy { slot: 2, .. }), "{err}");
        assert_eq!(err.exit(), Exit::Conflict);
        let err = choose(&reg, &config, Some(1), |_| Vec::new()).unwrap_err();
        assert!(err.to_string().contains("in use by `ktrdr--s1`"), "{err}");
    }

    #[test]
    fn exhaustion_lists_every_holder() {
        let mut config = Config::builtin();
        config.slot_count = 2;
        let reg = registry_with(&[1, 2]);
        let err = choose(&reg, &config, None, |_| Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "all 2 sandbox slots are in use (1: ktrdr--s1, 2: ktrdr--s2)"
        );
    }
}
