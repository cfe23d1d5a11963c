//! Module configuration (`CONFIG GET/SET layercache.*`, also `loadmodule` arguments).

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};

use crate::api::{self, BoolConfig, Ctx, EnumConfig, NumericConfig};

/// `layercache.ttl`: seconds of expiry on every key a write touches; 0 = none.
static TTL: AtomicI64 = AtomicI64::new(0);

/// `layercache.learn`: whether the index (and `layercache.ttl`) follows plain-command
/// writes under distribution's key names (`distribution` scheme only).
static LEARN: AtomicBool = AtomicBool::new(true);

pub fn learn() -> bool {
    LEARN.load(Ordering::Relaxed)
}

/// The key scheme (DESIGN.md sections 1 and 5), fixed at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// distribution's keys: a set per repository, a hash per blob, a hash per
    /// (repository, blob), and the reverse index.
    Distribution = 0,
    /// One hash per blob, keyed by the digest itself: every command names its keys,
    /// so it runs in Redis Cluster.
    Blob = 1,
}

/// `layercache.scheme`, as an [`Scheme`] discriminant.
static SCHEME: AtomicI32 = AtomicI32::new(Scheme::Distribution as i32);

pub fn scheme() -> Scheme {
    if SCHEME.load(Ordering::Relaxed) == Scheme::Blob as i32 {
        Scheme::Blob
    } else {
        Scheme::Distribution
    }
}

/// Ten years: longer is almost certainly a unit mistake (milliseconds?).
pub const MAX_TTL: i64 = 10 * 365 * 24 * 3600;

pub fn ttl() -> i64 {
    TTL.load(Ordering::Relaxed)
}

/// Applies `loadmodule` arguments (`ttl <seconds>`, `scheme distribution|blob`,
/// `learn yes|no`), then registers the settings so that `CONFIG GET/SET` and
/// `layercache.*` lines in redis.conf work.
pub fn load(ctx: &Ctx, args: &[&[u8]]) -> Result<(), String> {
    let (mut ttl, mut scheme, mut learn) = (0, Scheme::Distribution, true);
    let lossy = String::from_utf8_lossy;
    let mut args = args.iter();
    while let Some(&name) = args.next() {
        let Some(&value) = args.next() else { return Err(format!("argument '{}' needs a value", lossy(name))) };
        match (name, value) {
            (b"ttl", value) => ttl = parse_ttl(value)?,
            (b"scheme", b"distribution") => scheme = Scheme::Distribution,
            (b"scheme", b"blob") => scheme = Scheme::Blob,
            (b"scheme", other) => return Err(format!("scheme must be distribution or blob, got '{}'", lossy(other))),
            (b"learn", b"yes") => learn = true,
            (b"learn", b"no") => learn = false,
            (b"learn", other) => return Err(format!("learn must be yes or no, got '{}'", lossy(other))),
            (name, _) => return Err(format!("unknown argument '{}'", lossy(name))),
        }
    }
    TTL.store(ttl, Ordering::Relaxed);
    SCHEME.store(scheme as i32, Ordering::Relaxed);
    LEARN.store(learn, Ordering::Relaxed);
    api::register_numeric(ctx, &TTL_CONFIG)?;
    api::register_enum(ctx, &SCHEME_CONFIG)?;
    api::register_bool(ctx, &LEARN_CONFIG)?;
    api::load_configs(ctx)
}

static TTL_CONFIG: NumericConfig = NumericConfig {
    name: c"ttl",
    min: 0,
    max: MAX_TTL,
    get: ttl,
    // Redis has already checked the bounds.
    set: |value| TTL.store(value, Ordering::Relaxed),
};

/// Immutable: set at load only (by a `layercache.scheme` line in redis.conf).
static SCHEME_CONFIG: EnumConfig = EnumConfig {
    name: c"scheme",
    names: &[c"distribution", c"blob"],
    values: &[Scheme::Distribution as c_int, Scheme::Blob as c_int],
    immutable: true,
    get: || scheme() as c_int,
    set: |value| SCHEME.store(value, Ordering::Relaxed),
};

static LEARN_CONFIG: BoolConfig =
    BoolConfig { name: c"learn", get: learn, set: |value| LEARN.store(value, Ordering::Relaxed) };

fn parse_ttl(value: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| (0..=MAX_TTL).contains(n))
        .ok_or_else(|| format!("ttl must be 0..{MAX_TTL} seconds, got '{}'", String::from_utf8_lossy(value)))
}
