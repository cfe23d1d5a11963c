//! Module settings (`CONFIG GET/SET <module>.<name>`, `loadmodule` lines in
//! redis.conf): each is a static description whose getter and setter are plain Rust
//! functions, handed to Redis as the callbacks' private data.

use std::ffi::{c_char, c_int, c_longlong, c_void, CStr};

use redis_module::raw;

use super::ctx::Ctx;
use super::{RedisModuleString, ERR, OK};

/// An integer setting in `min..=max` (Redis checks the bounds before `set`).
pub struct NumericConfig {
    pub name: &'static CStr,
    pub min: i64,
    pub max: i64,
    pub get: fn() -> i64,
    pub set: fn(i64),
}

/// A yes/no setting.
pub struct BoolConfig {
    pub name: &'static CStr,
    pub get: fn() -> bool,
    pub set: fn(bool),
}

/// One of `names`, each standing for the value at the same place in `values`; fixed
/// at load when `immutable`.
pub struct EnumConfig {
    pub name: &'static CStr,
    pub names: &'static [&'static CStr],
    pub values: &'static [c_int],
    pub immutable: bool,
    pub get: fn() -> c_int,
    pub set: fn(c_int),
}

fn flags(immutable: bool) -> u32 {
    if immutable {
        raw::REDISMODULE_CONFIG_IMMUTABLE
    } else {
        raw::REDISMODULE_CONFIG_DEFAULT
    }
}

fn registered(status: c_int, name: &CStr) -> Result<(), String> {
    if status == ERR {
        return Err(format!("cannot register the setting {}", name.to_string_lossy()));
    }
    Ok(())
}

/// The setting's private data: the static description itself.
fn privdata<T>(config: &'static T) -> *mut c_void {
    (config as *const T).cast_mut().cast()
}

/// # Safety
/// `privdata` is what [`privdata`] made of a `&'static T`.
unsafe fn config<'a, T>(privdata: *mut c_void) -> &'a T {
    // SAFETY: a pointer to a static, as the caller promises.
    unsafe { &*privdata.cast::<T>() }
}

pub fn register_numeric(ctx: &Ctx, c: &'static NumericConfig) -> Result<(), String> {
    extern "C" fn get(_name: *const c_char, privdata: *mut c_void) -> c_longlong {
        // SAFETY: registered below with a NumericConfig as private data.
        (unsafe { config::<NumericConfig>(privdata) }.get)()
    }
    extern "C" fn set(_name: *const c_char, value: c_longlong, privdata: *mut c_void, _err: *mut *mut RedisModuleString) -> c_int {
        // SAFETY: registered below with a NumericConfig as private data.
        (unsafe { config::<NumericConfig>(privdata) }.set)(value);
        OK
    }
    let default = (c.get)();
    // SAFETY: the load context; a static name; callbacks of the C signatures, whose
    // private data is a static NumericConfig.
    let status = unsafe {
        raw::RedisModule_RegisterNumericConfig.unwrap()(
            ctx.as_ptr(),
            c.name.as_ptr(),
            default,
            flags(false),
            c.min,
            c.max,
            Some(get),
            Some(set),
            None,
            privdata(c),
        )
    };
    registered(status, c.name)
}

pub fn register_bool(ctx: &Ctx, c: &'static BoolConfig) -> Result<(), String> {
    extern "C" fn get(_name: *const c_char, privdata: *mut c_void) -> c_int {
        // SAFETY: registered below with a BoolConfig as private data.
        (unsafe { config::<BoolConfig>(privdata) }.get)() as c_int
    }
    extern "C" fn set(_name: *const c_char, value: c_int, privdata: *mut c_void, _err: *mut *mut RedisModuleString) -> c_int {
        // SAFETY: registered below with a BoolConfig as private data.
        (unsafe { config::<BoolConfig>(privdata) }.set)(value != 0);
        OK
    }
    let default = (c.get)() as c_int;
    // SAFETY: as in `register_numeric`, with a static BoolConfig.
    let status = unsafe {
        raw::RedisModule_RegisterBoolConfig.unwrap()(
            ctx.as_ptr(),
            c.name.as_ptr(),
            default,
            flags(false),
            Some(get),
            Some(set),
            None,
            privdata(c),
        )
    };
    registered(status, c.name)
}

pub fn register_enum(ctx: &Ctx, c: &'static EnumConfig) -> Result<(), String> {
    extern "C" fn get(_name: *const c_char, privdata: *mut c_void) -> c_int {
        // SAFETY: registered below with an EnumConfig as private data.
        (unsafe { config::<EnumConfig>(privdata) }.get)()
    }
    extern "C" fn set(_name: *const c_char, value: c_int, privdata: *mut c_void, _err: *mut *mut RedisModuleString) -> c_int {
        // SAFETY: registered below with an EnumConfig as private data.
        (unsafe { config::<EnumConfig>(privdata) }.set)(value);
        OK
    }
    let mut names: Vec<*const c_char> = c.names.iter().map(|n| n.as_ptr()).collect();
    let len = names.len().min(c.values.len()) as c_int;
    // SAFETY: as in `register_numeric`, with a static EnumConfig; Redis copies the
    // names and values.
    let status = unsafe {
        raw::RedisModule_RegisterEnumConfig.unwrap()(
            ctx.as_ptr(),
            c.name.as_ptr(),
            (c.get)(),
            flags(c.immutable),
            names.as_mut_ptr(),
            c.values.as_ptr(),
            len,
            Some(get),
            Some(set),
            None,
            privdata(c),
        )
    };
    registered(status, c.name)
}

/// Applies the registered settings' redis.conf lines and `CONFIG` state; called once,
/// after the last registration.
pub fn load_configs(ctx: &Ctx) -> Result<(), String> {
    // SAFETY: the load context.
    if unsafe { raw::RedisModule_LoadConfigs.unwrap()(ctx.as_ptr()) } == ERR {
        return Err("cannot load the module's settings".into());
    }
    Ok(())
}
