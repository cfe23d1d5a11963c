//! `INFO layercache`: per-command calls, hits, misses and rejected inputs, and the
//! digests PURGE removed. Plain relaxed counters: commands run on the main thread and
//! INFO needs no snapshot.

use std::ffi::{c_int, CString};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use redis_module::raw;

use crate::command_info::{COMMANDS, COUNT};
use crate::commands::Tally;
use crate::error::Error;

pub struct Stats {
    calls: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
}

pub static STATS: [Stats; COUNT] = [const { Stats::new() }; COUNT];

/// Digests PURGE found cache state for and removed.
static PURGED_DIGESTS: AtomicU64 = AtomicU64::new(0);

pub fn count_purged(n: u64) {
    PURGED_DIGESTS.fetch_add(n, Relaxed);
}

impl Stats {
    const fn new() -> Self {
        Stats { calls: AtomicU64::new(0), hits: AtomicU64::new(0), misses: AtomicU64::new(0), rejected: AtomicU64::new(0) }
    }

    /// Counts one call: its hits and misses, or a rejected input (a bad argument;
    /// Redis answers a wrong arity before the module runs). Other errors (WRONGTYPE,
    /// NOPERM) count as calls only.
    pub fn record(&self, result: &Result<Tally, Error>) {
        self.calls.fetch_add(1, Relaxed);
        match result {
            Ok(tally) => {
                self.hits.fetch_add(tally.hits, Relaxed);
                self.misses.fetch_add(tally.misses, Relaxed);
            }
            Err(Error::Input(_)) => {
                self.rejected.fetch_add(1, Relaxed);
            }
            Err(_) => {}
        }
    }
}

/// The INFO callback Redis calls for `INFO`, `INFO layercache` and crash reports.
pub extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    // SAFETY: ctx is the live info context; field names are NUL-terminated.
    unsafe {
        raw::RedisModule_InfoAddSection.unwrap()(ctx, c"".as_ptr());
        for (command, stats) in COMMANDS.iter().zip(&STATS) {
            let name = command.name.to_string_lossy();
            let short = name.trim_start_matches("layercache.");
            for (field, counter) in [
                ("calls", &stats.calls),
                ("hits", &stats.hits),
                ("misses", &stats.misses),
                ("rejected", &stats.rejected),
            ] {
                let Ok(field) = CString::new(format!("{short}_{field}")) else { continue };
                raw::RedisModule_InfoAddFieldULongLong.unwrap()(ctx, field.as_ptr(), counter.load(Relaxed));
            }
        }
        raw::RedisModule_InfoAddFieldULongLong.unwrap()(ctx, c"purged_digests".as_ptr(), PURGED_DIGESTS.load(Relaxed));
    }
}
