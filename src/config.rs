//! Module configuration (`CONFIG GET/SET layercache.*`, also `loadmodule` arguments).

use std::ffi::{c_char, c_int, c_longlong, c_void};
use std::sync::atomic::{AtomicI64, Ordering};

use redis_module::raw;

use crate::api::{RedisModuleCtx, RedisModuleString};

/// `layercache.ttl`: seconds of expiry on every key a write touches; 0 = none.
static TTL: AtomicI64 = AtomicI64::new(0);

/// Ten years: longer is almost certainly a unit mistake (milliseconds?).
pub const MAX_TTL: i64 = 10 * 365 * 24 * 3600;

pub fn ttl() -> i64 {
    TTL.load(Ordering::Relaxed)
}

/// Applies `loadmodule` arguments (`ttl <seconds>`), then registers the settings so
/// that `CONFIG SET` and `layercache.*` lines in redis.conf work.
pub fn load(ctx: *mut RedisModuleCtx, args: &[&[u8]]) -> Result<(), String> {
    let mut ttl = 0;
    let mut pairs = args.chunks(2);
    for pair in &mut pairs {
        match pair {
            [b"ttl", value] => ttl = parse_ttl(value)?,
            [name, _] => return Err(format!("unknown argument '{}'", String::from_utf8_lossy(name))),
            [name] => return Err(format!("argument '{}' needs a value", String::from_utf8_lossy(name))),
            _ => {}
        }
    }
    TTL.store(ttl, Ordering::Relaxed);
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
