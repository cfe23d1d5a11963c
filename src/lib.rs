//! layercache: a Redis module that serves a container registry's layer and
//! blob-descriptor cache as atomic `LAYERCACHE.*` commands over the keys CNCF
//! distribution writes (see DESIGN.md).
//!
//! Map of the crate:
//! - `commands`: the command handlers (what each command does);
//! - `command_info`: the static command table (flags, arity, docs);
//! - `api`: the thin layer over the Redis module C API (registration, settings and
//!   INFO call it directly, in `unsafe` blocks of their own);
//! - `error`: failures and their replies; `config`: `layercache.*` settings;
//! - `info`: `INFO layercache` counters;
//! - `store`: where each key scheme stores the cache's facts (one `Store` per scheme);
//! - `learn`: the reverse index learning plain-command writes;
//! - this file: loading, registration and the dispatch every command goes through.
//!
//! Validation and key naming live in the `layercache-core` crate, without Redis.

use std::ffi::c_int;
use std::panic::{self, AssertUnwindSafe};

use redis_module::alloc::RedisAlloc;
use redis_module::raw;

mod api;
mod command_info;
mod commands;
mod config;
mod error;
mod info;
mod learn;
mod store;

use api::{Args, Ctx, RedisModuleCtx, RedisModuleString};
use command_info::{ArgKind, Command, Keys, COMMANDS, COUNT};
use config::Scheme;
use error::Error;

/// Rust allocations are Redis allocations, so `used_memory` and `maxmemory` see them.
#[global_allocator]
static ALLOCATOR: RedisAlloc = RedisAlloc;

const OK: c_int = raw::REDISMODULE_OK as c_int;
const ERR: c_int = raw::REDISMODULE_ERR as c_int;

/// Runs command `I` of [`COMMANDS`]: the handler, then counters. Redis has checked the
/// arity (from the command info) before calling. A panic (a bug; never client input)
/// is logged and answered with an error instead of unwinding into Redis.
extern "C" fn dispatch<const I: usize>(
    ctx: *mut RedisModuleCtx,
    argv: *mut *mut RedisModuleString,
    argc: c_int,
) -> c_int {
    // I < COUNT: register() hands out only the first COUNT callbacks.
    let (command, stats) = (&COMMANDS[I], &info::STATS[I]);
    // SAFETY: Redis passes this command's live context and arguments.
    let (ctx, args) = unsafe { (Ctx::new(ctx), Args::new(argv, argc)) };
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        // On servers without post-notification jobs, what the module learned from
        // plain writes is written before any write of its own, so PURGE sees it.
        if command.writes() {
            learn::apply(&ctx);
        }
        learn::as_module(|| (command.handler)(&ctx, &args))
    }))
    .unwrap_or_else(|_| Err(Error::Redis("ERR layercache internal error, see the server log".into())));
    stats.record(&result);
    if let Err(e) = result {
        e.reply(&ctx);
    }
    OK
}

/// One callback per table entry, as `CreateCommand` takes no user data: `dispatch::<I>`
/// for the first `COUNT` of these indices.
macro_rules! callbacks {
    ($($i:literal)*) => { [$(dispatch::<$i> as CommandFn),*] };
}
type CommandFn = extern "C" fn(*mut RedisModuleCtx, *mut *mut RedisModuleString, c_int) -> c_int;
static CALLBACKS: [CommandFn; 24] = callbacks!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23);
const _: () = assert!(COUNT <= CALLBACKS.len(), "add callback indices for the new commands");

/// Called by Redis on `loadmodule` / `MODULE LOAD`.
///
/// # Safety
/// Redis calls it once per load with a valid context and arguments.
#[no_mangle]
pub unsafe extern "C" fn RedisModule_OnLoad(
    ctx: *mut RedisModuleCtx,
    argv: *mut *mut RedisModuleString,
    argc: c_int,
) -> c_int {
    // Nothing may allocate before this: the allocator is Redis's.
    if raw::Export_RedisModule_Init(ctx, c"layercache".as_ptr(), 1, raw::REDISMODULE_APIVER_1 as c_int) == ERR {
        return ERR;
    }
    match load(ctx, &Args::new(argv, argc)) {
        Ok(()) => OK,
        Err(reason) => {
            api::log(ctx, c"warning", &format!("layercache: not loaded: {reason}"));
            ERR
        }
    }
}

unsafe fn load(ctx: *mut RedisModuleCtx, args: &Args) -> Result<(), String> {
    // Redis 7.0 brought command info, ACL key checks and module configs; older
    // servers lack them, so refuse cleanly rather than fail at the first command.
    let (set_info, check_key) = (raw::RedisModule_SetCommandInfo, raw::RedisModule_ACLCheckKeyPermissions);
    if set_info.is_none() || check_key.is_none() {
        return Err("needs Redis 7.0 or newer (this server lacks RedisModule_SetCommandInfo)".into());
    }
    // A panic (a bug) goes to the Redis log, not to a stderr nobody reads; `dispatch`
    // then answers the command with an error.
    panic::set_hook(Box::new(|info| {
        api::log(std::ptr::null_mut(), c"warning", &format!("layercache: panic: {info}"));
    }));

    let load_args: Vec<&[u8]> = (0..args.len()).map(|i| args.bytes(i)).collect();
    config::load(ctx, &load_args)?;
    let cluster = raw::RedisModule_GetContextFlags.unwrap()(ctx) & raw::REDISMODULE_CTX_FLAGS_CLUSTER as c_int != 0;
    if cluster && config::scheme() == Scheme::Distribution {
        return Err("the distribution key scheme derives key names from arguments, which Redis Cluster cannot route; \
                    load the module with `scheme blob` (loadmodule liblayercache.so scheme blob) to run in a cluster"
            .into());
    }
    // Every write signals the keys it modifies itself (RedisModule_Call's commands do,
    // and `api::WriteKey` does as HSET would); a key opened for writing only to check
    // its type must not invalidate WATCH or client-side caching (`api::Ctx::key_type`).
    raw::RedisModule_SetModuleOptions.unwrap()(ctx, raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED as c_int);
    store::FIELDS.iter().for_each(|field| field.init());
    store::init();
    if config::scheme() == Scheme::Distribution {
        learn::load(ctx)?;
    }
    for (command, callback) in COMMANDS.iter().zip(CALLBACKS) {
        register(ctx, command, callback)?;
    }
    raw::RedisModule_RegisterInfoFunc.unwrap()(ctx, Some(info::info));
    Ok(())
}

unsafe fn register(ctx: *mut RedisModuleCtx, command: &Command, callback: CommandFn) -> Result<(), String> {
    let name = command.name;
    let failed = |what: &str| format!("cannot {what} {}", name.to_string_lossy());
    // Keys are arguments only in the blob scheme; there Redis routes by them.
    let keys = if config::scheme() == Scheme::Blob { command.keys } else { &[] };
    let first = keys.first().map_or(0, |k| k.first);
    let last = if keys.iter().any(|k| k.last < 0) { -1 } else { keys.iter().map(|k| k.last).max().unwrap_or(0) };
    let step = i32::from(first != 0);
    if raw::RedisModule_CreateCommand.unwrap()(ctx, name.as_ptr(), Some(callback), command.flags.as_ptr(), first, last, step)
        == ERR
    {
        return Err(failed("create"));
    }
    let handle = raw::RedisModule_GetCommand.unwrap()(ctx, name.as_ptr());
    if handle.is_null() {
        return Err(failed("find"));
    }
    if raw::RedisModule_SetCommandInfo.unwrap()(handle, &command_info(command, keys).info) == ERR {
        return Err(failed("set command info of"));
    }
    // ACL categories exist from Redis 7.2; on 7.0 the commands simply have none.
    if let Some(set_categories) = raw::RedisModule_SetCommandACLCategories {
        if set_categories(handle, command.acl.as_ptr()) == ERR {
            return Err(failed("set ACL categories of"));
        }
    }
    Ok(())
}

/// `RedisModuleCommandInfo` for one table entry; Redis copies it, so it only needs
/// to live through `SetCommandInfo`.
struct RawInfo {
    info: raw::RedisModuleCommandInfo,
    _args: Vec<raw::RedisModuleCommandArg>,
    _key_specs: Vec<raw::RedisModuleCommandKeySpec>,
}

static INFO_VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

fn command_info(command: &Command, keys: &[Keys]) -> RawInfo {
    let null = std::ptr::null();
    let mut args: Vec<raw::RedisModuleCommandArg> = command
        .args
        .iter()
        .zip(1..)
        .map(|(arg, position)| {
            let key_spec = keys.iter().position(|k| k.first == position);
            raw::RedisModuleCommandArg {
                name: arg.name.as_ptr(),
                type_: match (key_spec, arg.kind) {
                    (Some(_), _) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
                    (None, ArgKind::String) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
                    (None, ArgKind::Integer) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
                },
                key_spec_index: key_spec.map_or(-1, |i| i as c_int),
                token: null,
                summary: null,
                since: null,
                flags: if arg.multiple { raw::REDISMODULE_CMD_ARG_MULTIPLE as c_int } else { 0 }
                    | if arg.optional { raw::REDISMODULE_CMD_ARG_OPTIONAL as c_int } else { 0 },
                deprecated_since: null,
                subargs: std::ptr::null_mut(),
                display_text: null,
            }
        })
        .collect();
    // Both arrays end with a zeroed entry.
    // SAFETY: all-zero is a valid RedisModuleCommandArg (null pointers, zero ints).
    args.push(unsafe { std::mem::zeroed() });
    let mut key_specs: Vec<raw::RedisModuleCommandKeySpec> = keys
        .iter()
        .map(|k| raw::RedisModuleCommandKeySpec {
            notes: null,
            flags: k.flags,
            begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
            bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
                index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: k.first },
            },
            find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
            fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
                range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
                    // Relative to `first`: 0 is that one key, -1 runs to the last argument.
                    lastkey: if k.last < 0 { -1 } else { k.last - k.first },
                    keystep: 1,
                    limit: 0,
                },
            },
        })
        .collect();
    // SAFETY: all-zero is a valid RedisModuleCommandKeySpec (the terminator).
    key_specs.push(unsafe { std::mem::zeroed() });
    let info = raw::RedisModuleCommandInfo {
        version: &INFO_VERSION,
        summary: command.summary.as_ptr(),
        complexity: command.complexity.as_ptr(),
        since: command.since.as_ptr(),
        history: std::ptr::null_mut(),
        tips: null,
        arity: command.arity,
        key_specs: if keys.is_empty() { std::ptr::null_mut() } else { key_specs.as_mut_ptr() },
        args: args.as_mut_ptr(),
    };
    RawInfo { info, _args: args, _key_specs: key_specs }
}
