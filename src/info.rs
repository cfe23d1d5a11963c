//! `INFO layercache`: per-command calls, hits, misses and rejected inputs, the digests
//! PURGE removed, and the bytes of manifests SETDATA stored. Plain relaxed counters: commands run on the main thread and
//! INFO needs no snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::api::InfoCtx;
use crate::command_info::{Id, COMMANDS, COUNT};
use crate::commands::{Tally, DATA_BYTES};
use crate::error::Error;

pub struct Stats {
    calls: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
}

pub static STATS: [Stats; COUNT] = [const { Stats::new() }; COUNT];

impl Stats {
    const fn new() -> Self {
        Stats { calls: AtomicU64::new(0), hits: AtomicU64::new(0), misses: AtomicU64::new(0), rejected: AtomicU64::new(0) }
    }

    /// Counts one call: its hits and misses, or a rejected input (a bad argument, a
    /// syntax error, a command of the other key scheme; Redis answers a wrong arity
    /// before the module runs). Other errors (WRONGTYPE, NOPERM) count as calls only.
    pub fn record(&self, result: &Result<Tally, Error>) {
        self.calls.fetch_add(1, Relaxed);
        match result {
            Ok(tally) => {
                self.hits.fetch_add(tally.hits, Relaxed);
                self.misses.fetch_add(tally.misses, Relaxed);
            }
            Err(Error::Input(_) | Error::Refused(_)) => {
                self.rejected.fetch_add(1, Relaxed);
            }
            Err(_) => {}
        }
    }
}

/// The module's `INFO` section (`INFO`, `INFO layercache`, crash reports).
pub fn write(info: &InfoCtx) {
    info.section();
    let mut purged = 0;
    for (command, stats) in COMMANDS.iter().zip(&STATS) {
        let name = command.name.to_string_lossy();
        let short = name.trim_start_matches("layercache.");
        for (field, counter) in [
            ("calls", &stats.calls),
            ("hits", &stats.hits),
            ("misses", &stats.misses),
            ("rejected", &stats.rejected),
        ] {
            info.field(&format!("{short}_{field}"), counter.load(Relaxed));
        }
        if command.id == Id::Purge {
            purged = stats.hits.load(Relaxed); // a PURGE hit is a digest it removed
        }
    }
    info.field("purged_digests", purged);
    info.field("setdata_bytes", DATA_BYTES.load(Relaxed));
}
