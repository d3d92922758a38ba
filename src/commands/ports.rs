//! `kinfra ports [SLOT] [--json]`

use serde_json::json;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this slot (0 = local-prod).
    pub slot: Option<u32>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let config = &ctx.config;
    let slots: Vec<u32> = match args.slot {
        Some(s) if s > config.slot_count => {
            return Err(Error::usage(format!(
                "slot {s} is outside 0..={}",
                config.slot_count
            )));
        }
        Some(s) => vec![s],
        None => (0..=config.slot_count).collect(),
    };
    let mut per_slot = Vec::new();
    for s in &slots {
        per_slot.push((
            *s,
            config
                .ports
                .for_slot(*s)
                .map_err(|e| Error::failure(e.to_string()))?,
        ));
    }
    if args.json {
        let slots: Vec<_> = per_slot
            .iter()
            .map(|(s, ports)| {
                let map: serde_json::Map<String, serde_json::Value> = ports
                    .iter()
                    .map(|p| (p.key.clone(), json!(p.port)))
                    .collect();
                json!({"slot": s, "ports": map})
            })
            .collect();
        output::data(&json!({"schema_version": 1, "slots": slots}).to_string());
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
    for (group, _) in &config.ports.specs {
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
