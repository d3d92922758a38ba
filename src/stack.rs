//! An instance's stack as its compose file describes it: which host ports it publishes
//! (and from which variables), which variables it reads, which services and external
//! resources it needs. kinfra reads this instead of trusting a built-in picture, and
//! assigns a port per slot to every published port variable the layout does not
//! (automatic ports).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::compose::model::{self, ComposeFileError, ComposeModel, PortConflict};
use crate::config::Config;
use crate::error::{Diagnostic, Exit};
use crate::ports::SlotPort;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    File(#[from] ComposeFileError),
    #[error("service `{service}` publishes the literal host port {port} (`{}:{line}`); two sandboxes cannot both publish it", .file.display())]
    LiteralPort {
        service: String,
        port: String,
        file: PathBuf,
        line: usize,
    },
    #[error("{0}")]
    Duplicate(String),
    #[error("no free automatic port for `{var}` on slot {slot} (ports {first}..={last} are taken)")]
    NoAutoPort {
        var: String,
        slot: u32,
        first: u32,
        last: u32,
    },
    #[error("port {port} of `{key}` is {why}")]
    Shared { port: u16, key: String, why: String },
}

impl Diagnostic for StackError {
    fn exit(&self) -> Exit {
        match self {
            StackError::File(e) => e.exit(),
            StackError::Shared { .. } => Exit::Conflict,
            _ => Exit::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            StackError::File(e) => return e.hint(),
            StackError::LiteralPort { port, .. } => format!(
                "publish it from a variable with a default, e.g. `\"${{MY_PORT:-{}}}:…\"`: kinfra then gives every instance its own port",
                port.split(':').next().unwrap_or(port)
            ),
            StackError::Duplicate(_) => "give each service its own host port".into(),
            StackError::NoAutoPort { .. } => {
                "raise `auto_ports.per_slot` in kinfra.toml, or list the variable under `[ports]`".into()
            }
            StackError::Shared { .. } => {
                "every instance needs its own ports: fix the env file or kinfra.toml (`kinfra config check` shows the layout)".into()
            }
        })
    }
}

/// A variable that gives a published host port its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortVar {
    pub name: String,
    /// Its default as written, when it is a port number.
    pub default: Option<u16>,
    pub service: String,
}

/// One published host port as it will be bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub service: String,
    /// The variable it comes from (`None`: a literal).
    pub var: Option<String>,
    pub port: u16,
    pub host_ip: Option<String>,
    pub protocol: String,
}

/// The compose file(s) of an instance, read.
#[derive(Debug, Clone)]
pub struct Stack {
    pub model: ComposeModel,
    pub profiles: Vec<String>,
    /// Every variable the files read.
    pub reads: BTreeSet<String>,
}

impl Stack {
    /// Read `files` with `lookup` for interpolation; `profiles` are the ones kinfra
    /// starts the instance with.
    pub fn load(
        files: &[PathBuf],
        lookup: &dyn Fn(&str) -> Option<String>,
        profiles: Vec<String>,
    ) -> Result<Stack, StackError> {
        let reads = RefCell::new(BTreeSet::new());
        let recording = |name: &str| {
            reads.borrow_mut().insert(name.to_string());
            lookup(name)
        };
        let model = model::load(files, &recording)?;
        Ok(Stack {
            model,
            profiles,
            reads: reads.into_inner(),
        })
    }

    /// [`Stack::load`] from text (a compose file read from a commit).
    pub fn parse(
        path: &Path,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
        profiles: Vec<String>,
    ) -> Result<Stack, StackError> {
        let reads = RefCell::new(BTreeSet::new());
        let recording = |name: &str| {
            reads.borrow_mut().insert(name.to_string());
            lookup(name)
        };
        let model = model::parse_str(path, text, &recording)?;
        Ok(Stack {
            model,
            profiles,
            reads: reads.into_inner(),
        })
    }

    /// The compose file of the checkout at `root` (defaults only), read with the
    /// sandbox profiles and with local-prod's; `None` without a compose file.
    pub fn of_checkout(config: &Config, root: &Path) -> Result<Option<(Stack, Stack)>, StackError> {
        let Some(file) = crate::compose::find_file(root, &config.compose_files) else {
            return Ok(None);
        };
        let files = [file];
        let sandbox = Stack::load(&files, &|_| None, Vec::new())?;
        let prod = Stack::load(&files, &|_| None, vec![config.local_prod_profile.clone()])?;
        Ok(Some((sandbox, prod)))
    }

    /// Whether the files read `var`.
    pub fn reads(&self, var: &str) -> bool {
        self.reads.contains(var)
    }

    /// Names of the services that run with the instance's profiles.
    pub fn services(&self) -> Vec<String> {
        self.model
            .active_services(&self.profiles)
            .map(|s| s.name.clone())
            .collect()
    }

    pub fn has_service(&self, name: &str) -> bool {
        self.model
            .services
            .get(name)
            .is_some_and(|s| s.is_active(&self.profiles))
    }

    /// Variables that give a published host port its number, each once (first use).
    pub fn port_vars(&self) -> Vec<PortVar> {
        let mut out: Vec<PortVar> = Vec::new();
        for (service, binding) in self.model.published_ports(&self.profiles) {
            let Some(var) = &binding.host_var else {
                continue;
            };
            if out.iter().any(|v| v.name == var.name) {
                continue;
            }
            out.push(PortVar {
                name: var.name.clone(),
                default: var.default_value().and_then(|d| d.trim().parse().ok()),
                service: service.name.clone(),
            });
        }
        out
    }

    /// Published ports whose host side is written as a number, not a variable.
    pub fn literal_ports(&self) -> Vec<StackError> {
        self.model
            .published_ports(&self.profiles)
            .filter(|(_, b)| b.host.is_some() && b.host_var.is_none())
            .map(|(s, b)| StackError::LiteralPort {
                service: s.name.clone(),
                port: b.to_string(),
                file: b.file.clone(),
                line: b.line,
            })
            .collect()
    }

    /// Two services (or two entries) of the files publishing the same host port.
    pub fn duplicates(&self) -> Vec<PortConflict> {
        self.model.duplicate_host_ports(&self.profiles)
    }

    /// Every host port the stack binds, as interpolated.
    pub fn published(&self) -> Vec<Published> {
        let mut out = Vec::new();
        for (service, b) in self.model.published_ports(&self.profiles) {
            let Some(range) = b.host else { continue };
            for port in range.start..=range.end {
                out.push(Published {
                    service: service.name.clone(),
                    var: b.host_var.as_ref().map(|v| v.name.clone()),
                    port,
                    host_ip: b.host_ip.clone(),
                    protocol: b.protocol.clone(),
                });
            }
        }
        out
    }

    /// The published ports as the preflight checks them (one per port number).
    pub fn published_slot_ports(&self) -> Vec<SlotPort> {
        let mut out: Vec<SlotPort> = Vec::new();
        for p in self.published() {
            if p.protocol != "tcp" || out.iter().any(|q| q.port == p.port) {
                continue;
            }
            let key = p
                .var
                .clone()
                .unwrap_or_else(|| format!("{} (literal)", p.service));
            out.push(SlotPort {
                group: key.clone(),
                key,
                port: p.port,
            });
        }
        out
    }
}

/// The automatic ports `slot` needs for `vars`: the ones `existing` (an env file)
/// already holds are kept; every other variable the layout does not assign gets slot
/// 0's compose default when nothing else can hold that port, else the first free port
/// of the slot's block. Returns only the new assignments.
pub fn assign_auto_ports(
    config: &Config,
    slot: u32,
    vars: &[PortVar],
    existing: &BTreeMap<String, String>,
) -> Result<Vec<(String, u16)>, StackError> {
    let layout_keys = config.layout_keys();
    let mut taken: BTreeSet<u32> = existing
        .iter()
        .filter(|(k, _)| !layout_keys.contains(k))
        .filter_map(|(_, v)| v.parse::<u32>().ok())
        .collect();
    // Every layout port of every slot, and every slot's block, is off limits for a
    // default.
    let mut layout_ports: BTreeSet<u32> = BTreeSet::new();
    for s in 0..=config.slot_count {
        if let Ok(ps) = config.ports.for_slot(s) {
            layout_ports.extend(ps.iter().map(|p| u32::from(p.port)));
        }
    }
    let blocks = config.auto_ports.block(0).start..config.auto_ports.block(config.slot_count).end;
    let mut new = Vec::new();
    for var in vars {
        if layout_keys.contains(&var.name) || existing.contains_key(&var.name) {
            continue;
        }
        let default = var.default.map(u32::from).filter(|d| {
            slot == 0 && !layout_ports.contains(d) && !blocks.contains(d) && !taken.contains(d)
        });
        let port = match default {
            Some(d) => d,
            None => {
                let block = config.auto_ports.block(slot);
                block
                    .clone()
                    .find(|p| !taken.contains(p) && *p <= 65_535)
                    .ok_or(StackError::NoAutoPort {
                        var: var.name.clone(),
                        slot,
                        first: block.start,
                        last: block.end - 1,
                    })?
            }
        };
        taken.insert(port);
        let port = u16::try_from(port).map_err(|_| StackError::NoAutoPort {
            var: var.name.clone(),
            slot,
            first: config.auto_ports.block(slot).start,
            last: config.auto_ports.block(slot).end - 1,
        })?;
        new.push((var.name.clone(), port));
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: &str = include_str!("../tests/fixtures/compose/ktrdr-today.yml");
    const SEED: &str = include_str!("../tests/fixtures/compose/ktrdr-seed.yml");

    fn stack(text: &str, profiles: &[&str]) -> Stack {
        Stack::parse(
            Path::new("/w/x/docker-compose.sandbox.yml"),
            text,
            &|_| None,
            profiles.iter().map(|p| p.to_string()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn todays_ktrdr_gets_its_agent_ports_per_slot() {
        let config = Config::builtin();
        let s = stack(TODAY, &[]);
        let vars = s.port_vars();
        let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
        assert!(names.contains(&"KTRDR_DESIGN_AGENT_PORT"), "{names:?}");
        assert!(names.contains(&"KTRDR_ASSESSMENT_AGENT_PORT"), "{names:?}");
        let none = BTreeMap::new();
        let slot1 = assign_auto_ports(&config, 1, &vars, &none).unwrap();
        // Services in name order: assessment-agent-1 before design-agent-1.
        assert_eq!(
            slot1,
            vec![
                ("KTRDR_ASSESSMENT_AGENT_PORT".to_string(), 20_010),
                ("KTRDR_DESIGN_AGENT_PORT".to_string(), 20_011)
            ]
        );
        let slot0 = assign_auto_ports(&config, 0, &vars, &none).unwrap();
        // 5020 belongs to nobody: local-prod keeps the standard port.
        assert_eq!(slot0[0], ("KTRDR_ASSESSMENT_AGENT_PORT".to_string(), 5_020));
        // Slot 0's design-agent default 5010 is the seed map's KTRDR_WORKER_PORT_8.
        assert_eq!(slot0[1], ("KTRDR_DESIGN_AGENT_PORT".to_string(), 20_000));
        assert!(s.literal_ports().is_empty());
        assert!(s.duplicates().is_empty());
    }

    #[test]
    fn the_seed_era_file_needs_no_automatic_port() {
        let config = Config::builtin();
        for profiles in [&[][..], &["local-prod"][..]] {
            let s = stack(SEED, profiles);
            let new = assign_auto_ports(&config, 3, &s.port_vars(), &BTreeMap::new()).unwrap();
            assert!(new.is_empty(), "{new:?}");
        }
    }

    #[test]
    fn assignments_already_in_the_env_file_are_kept_and_new_ones_avoid_them() {
        let config = Config::builtin();
        let vars = vec![
            PortVar {
                name: "A".into(),
                default: Some(9),
                service: "s".into(),
            },
            PortVar {
                name: "B".into(),
                default: None,
                service: "s".into(),
            },
        ];
        let existing = BTreeMap::from([("A".to_string(), "20020".to_string())]);
        let new = assign_auto_ports(&config, 2, &vars, &existing).unwrap();
        assert_eq!(new, vec![("B".to_string(), 20_021)]);
    }

    #[test]
    fn literal_ports_are_found_with_their_line() {
        let s = stack(
            "services:\n  web:\n    image: x\n    ports:\n      - \"9000:80\"\n      - \"${P:-81}:81\"\n",
            &[],
        );
        let lits = s.literal_ports();
        assert_eq!(lits.len(), 1);
        let msg = lits[0].to_string();
        assert!(
            msg.contains("`web`") && msg.contains("9000") && msg.contains(":5"),
            "{msg}"
        );
    }
}
