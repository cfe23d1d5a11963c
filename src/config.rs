//! Module configuration (`CONFIG GET/SET layercache.*`, also `loadmodule` arguments).

use std::ffi::{c_char, c_int, c_longlong, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};

use redis_module::raw;

use crate::api::{RedisModuleCtx, RedisModuleString};

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
pub fn load(ctx: *mut RedisModuleCtx, args: &[&[u8]]) -> Result<(), String> {
    let (mut ttl, mut scheme, mut learn) = (0, Scheme::Distribution, true);
    let mut pairs = args.chunks(2);
    for pair in &mut pairs {
        match pair {
            [b"ttl", value] => ttl = parse_ttl(value)?,
            [b"scheme", b"distribution"] => scheme = Scheme::Distribution,
            [b"scheme", b"blob"] => scheme = Scheme::Blob,
            [b"learn", b"yes"] => learn = true,
            [b"learn", b"no"] => learn = false,
            [b"learn", other] => return Err(format!("learn must be yes or no, got '{}'", String::from_utf8_lossy(other))),
            [b"scheme", other] => {
                return Err(format!("scheme must be distribution or blob, got '{}'", String::from_utf8_lossy(other)))
            }
            [name, _] => return Err(format!("unknown argument '{}'", String::from_utf8_lossy(name))),
            [name] => return Err(format!("argument '{}' needs a value", String::from_utf8_lossy(name))),
            _ => {}
        }
    }
    TTL.store(ttl, Ordering::Relaxed);
    SCHEME.store(scheme as i32, Ordering::Relaxed);
    LEARN.store(learn, Ordering::Relaxed);
    // SAFETY: valid ctx at load time; the callbacks have the C signatures Redis expects.
    let status = unsafe {
        raw::RedisModule_RegisterNumericConfig.unwrap()(
            ctx,
            c"ttl".as_ptr(),
            ttl,
            raw::REDISMODULE_CONFIG_DEFAULT,
            0,
            MAX_TTL,
            Some(get_ttl),
            Some(set_ttl),
            None,
            std::ptr::null_mut(),
        )
    };
    if status != raw::REDISMODULE_OK as c_int {
        return Err("cannot register layercache.ttl".into());
    }
    let mut names = [c"distribution".as_ptr(), c"blob".as_ptr()];
    let values = [Scheme::Distribution as c_int, Scheme::Blob as c_int];
    // SAFETY: valid ctx at load time; Redis copies the names and values.
    let status = unsafe {
        raw::RedisModule_RegisterEnumConfig.unwrap()(
            ctx,
            c"scheme".as_ptr(),
            scheme as c_int,
            raw::REDISMODULE_CONFIG_IMMUTABLE,
            names.as_mut_ptr(),
            values.as_ptr(),
            values.len() as c_int,
            Some(get_scheme),
            Some(set_scheme),
            None,
            std::ptr::null_mut(),
        )
    };
    if status != raw::REDISMODULE_OK as c_int {
        return Err("cannot register layercache.scheme".into());
    }
    // SAFETY: valid ctx at load time; the callbacks have the C signatures Redis expects.
    let status = unsafe {
        raw::RedisModule_RegisterBoolConfig.unwrap()(
            ctx,
            c"learn".as_ptr(),
            learn as c_int,
            raw::REDISMODULE_CONFIG_DEFAULT,
            Some(get_learn),
            Some(set_learn),
            None,
            std::ptr::null_mut(),
        )
    };
    if status != raw::REDISMODULE_OK as c_int {
        return Err("cannot register layercache.learn".into());
    }
    // SAFETY: valid ctx at load time.
    if unsafe { raw::RedisModule_LoadConfigs.unwrap()(ctx) } != raw::REDISMODULE_OK as c_int {
        return Err("cannot load layercache.* settings".into());
    }
    Ok(())
}

fn parse_ttl(value: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| (0..=MAX_TTL).contains(n))
        .ok_or_else(|| format!("ttl must be 0..{MAX_TTL} seconds, got '{}'", String::from_utf8_lossy(value)))
}

extern "C" fn get_ttl(_name: *const c_char, _privdata: *mut c_void) -> c_longlong {
    ttl()
}

extern "C" fn set_ttl(
    _name: *const c_char,
    value: c_longlong,
    _privdata: *mut c_void,
    _err: *mut *mut RedisModuleString,
) -> c_int {
    // Redis has already checked the 0..=MAX_TTL bounds given at registration.
    TTL.store(value, Ordering::Relaxed);
    raw::REDISMODULE_OK as c_int
}

extern "C" fn get_learn(_name: *const c_char, _privdata: *mut c_void) -> c_int {
    learn() as c_int
}

extern "C" fn set_learn(_name: *const c_char, value: c_int, _privdata: *mut c_void, _err: *mut *mut RedisModuleString) -> c_int {
    LEARN.store(value != 0, Ordering::Relaxed);
    raw::REDISMODULE_OK as c_int
}

extern "C" fn get_scheme(_name: *const c_char, _privdata: *mut c_void) -> c_int {
    scheme() as c_int
}

/// Called at load only (the setting is immutable), for a `layercache.scheme` line in
/// redis.conf.
extern "C" fn set_scheme(_name: *const c_char, value: c_int, _privdata: *mut c_void, _err: *mut *mut RedisModuleString) -> c_int {
    SCHEME.store(value, Ordering::Relaxed);
    raw::REDISMODULE_OK as c_int
}
