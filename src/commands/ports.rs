//! `kinfra ports [SLOT] [--json]`

use std::collections::BTreeMap;

use serde::Serialize;

use crate::context::Ctx;
use crate::error::{Diagnostic, Exit, Result};
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra ports            # every slot, one column each
  kinfra ports 3          # slot 3's ports
  kinfra ports --json

In a checkout with a compose file, its port variables the layout does not assign are
shown with their automatic ports.")]
pub struct Args {
    /// Only this slot (0 = local-prod).
    pub slot: Option<u32>,
    /// Print one JSON object (`schema_version` 1) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("slot {slot} is outside 0..={count}")]
struct NoSuchSlot {
    slot: u32,
    count: u32,
}

impl Diagnostic for NoSuchSlot {
    fn exit(&self) -> Exit {
        Exit::Usage
    }
    fn hint(&self) -> Option<String> {
        Some("slot 0 is local-prod; sandboxes use 1..=`slots.count`".into())
    }
}

/// `ports --json` (also the `ports` tool of `kinfra mcp`).
#[derive(Serialize, schemars::JsonSchema)]
pub struct PortsReport {
    pub schema_version: u32,
    pub slots: Vec<SlotPorts>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct SlotPorts {
    pub slot: u32,
    pub ports: BTreeMap<String, u16>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let config = &ctx.config;
    let slots: Vec<u32> = match args.slot {
        Some(s) if s > config.slot_count => {
            return Err(NoSuchSlot {
                slot: s,
                count: config.slot_count,
            }
            .into());
        }
        Some(s) => vec![s],
        None => (0..=config.slot_count).collect(),
    };
    // With a compose file here, its port variables the layout does not assign get
    // their automatic ports too.
    let stacks = compose_stacks(ctx)?;
    let mut per_slot = Vec::new();
    for s in &slots {
        let mut ports = config
            .ports
            .for_slot(*s)
            .map_err(crate::config::ConfigError::from)?;
        if let Some((sandbox, prod)) = &stacks {
            let st = if *s == 0 { prod } else { sandbox };
            let auto = crate::stack::assign_auto_ports(
                config,
                *s,
                &st.port_vars(),
                &std::collections::BTreeMap::new(),
            )?;
            ports.extend(auto.into_iter().map(|(key, port)| crate::ports::SlotPort {
                group: key.clone(),
                key,
                port,
            }));
        }
        per_slot.push((*s, ports));
    }
    if args.json {
        super::print_json(&PortsReport {
            schema_version: 1,
            slots: per_slot
                .iter()
                .map(|(s, ports)| SlotPorts {
                    slot: *s,
                    ports: ports.iter().map(|p| (p.key.clone(), p.port)).collect(),
                })
                .collect(),
        });
        return Ok(0);
    }
    if let [(slot, ports)] = per_slot.as_slice() {
        let rows: Vec<Vec<String>> = ports
            .iter()
            .map(|p| vec![p.key.clone(), p.port.to_string()])
            .collect();
        output::data(&format!("slot {slot}"));
        output::data(&output::table(&["KEY", "PORT"], &rows));
        return Ok(0);
    }
    // One row per port group, one column per slot; multi-port groups show a range.
    let mut header = vec!["KEY".to_string()];
    header.extend(per_slot.iter().map(|(s, _)| s.to_string()));
    let mut rows = Vec::new();
    let mut groups: Vec<String> = config.ports.specs.iter().map(|(k, _)| k.clone()).collect();
    for (_, ports) in &per_slot {
        for p in ports {
            if !groups.contains(&p.group) {
                groups.push(p.group.clone());
            }
        }
    }
    for group in &groups {
        let mut row = vec![group.clone()];
        for (_, ports) in &per_slot {
            let mine: Vec<u16> = ports
                .iter()
                .filter(|p| &p.group == group)
                .map(|p| p.port)
                .collect();
            row.push(match mine.as_slice() {
                [one] => one.to_string(),
                [first, .., last] => format!("{first}-{last}"),
                [] => "-".into(),
            });
        }
        rows.push(row);
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    output::data(&output::table(&header, &rows));
    Ok(0)
}

/// The compose file of the checkout around the current directory, if any.
pub fn compose_stacks(ctx: &Ctx) -> Result<Option<(crate::stack::Stack, crate::stack::Stack)>> {
    match &ctx.repo {
        Some(repo) => Ok(crate::stack::Stack::of_checkout(
            &ctx.config,
            &repo.toplevel,
        )?),
        None => Ok(None),
    }
}
