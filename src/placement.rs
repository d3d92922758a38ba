//! `--host auto`: the host a new sandbox goes to — the one with the most free slots,
//! then the most free memory, among this machine and every registered host that
//! answers (asked in parallel, one round trip each).

use crate::context::Ctx;
use crate::error::Result;
use crate::hosts::{self, Host, HostsFile};
use crate::remote::RemoteIndex;

/// A candidate's free slots and free memory (MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Room {
    pub free_slots: u32,
    pub mem_mb: u64,
}

/// Index of the roomiest candidate; ties go to the earlier one (this machine first).
pub fn roomiest(rooms: &[Option<Room>]) -> Option<usize> {
    let mut best: Option<(usize, Room)> = None;
    for (i, r) in rooms.iter().enumerate() {
        if let Some(r) = r
            && best.is_none_or(|(_, b)| *r > b)
        {
            best = Some((i, *r));
        }
    }
    best.map(|(i, _)| i)
}

fn local_mem_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// `None` is this machine.
pub fn pick(ctx: &Ctx) -> Result<Option<Host>> {
    let file = HostsFile::load()?;
    let index = RemoteIndex::load()?;
    let candidates = file.all();
    let slot_count = ctx.config.slot_count;
    let used_here = u32::try_from(ctx.registry()?.all().count()).unwrap_or(u32::MAX);
    let mut rooms = vec![Some(Room {
        free_slots: slot_count.saturating_sub(used_here),
        mem_mb: local_mem_mb(),
    })];
    let remote: Vec<Option<Room>> = std::thread::scope(|s| {
        let handles: Vec<_> = candidates
            .iter()
            .map(|h| s.spawn(move || hosts::facts(h, true).ok()))
            .collect();
        handles
            .into_iter()
            .zip(&candidates)
            .map(|(handle, h)| {
                let facts = handle.join().ok().flatten()?;
                let used = u32::try_from(index.on_host(&h.name).count()).unwrap_or(u32::MAX);
                Some(Room {
                    free_slots: slot_count.saturating_sub(used),
                    mem_mb: facts.mem_available_mb.unwrap_or(0),
                })
            })
            .collect()
    });
    rooms.extend(remote);
    Ok(match roomiest(&rooms) {
        Some(0) | None => None,
        Some(i) => candidates.get(i - 1).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roomiest_wins_slots_first_then_memory() {
        let r = |free_slots, mem_mb| Some(Room { free_slots, mem_mb });
        assert_eq!(roomiest(&[r(2, 9000), r(5, 100), r(5, 200), None]), Some(2));
        assert_eq!(roomiest(&[r(3, 1), r(3, 1)]), Some(0));
        assert_eq!(roomiest(&[None, None]), None);
    }
}
