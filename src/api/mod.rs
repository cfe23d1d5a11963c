//! The thin layer over the Redis module C API: every `unsafe` block of the module is
//! in this directory (the crate denies `unsafe_op_in_unsafe_fn` and documents each
//! block with a `SAFETY:` line), and the rest of the crate sees safe types.
//!
//! - `ctx`: [`Ctx`], the context of a command (or of a load, an event, a job), its
//!   replies and its ACL user lookup;
//! - `string`: Redis strings ([`RString`], [`ArgString`], [`Field`]) and [`Args`];
//! - `key`: reading keys ([`KeyType`], hash fields, set members) and [`WriteKey`],
//!   the writes that replicate and signal as the plain commands do;
//! - `call`: `call!` (`RedisModule_Call`) and its [`Reply`];
//! - `user`: the ACL [`User`] and its key checks;
//! - `module`: the load entry point, command registration from the command table,
//!   the command callbacks, and `INFO`;
//! - `config`: `CONFIG GET/SET` settings;
//! - `events`: keyspace events, the command filter, and work after a notification.

mod call;
mod config;
mod ctx;
mod events;
mod key;
mod module;
mod string;
mod user;

use std::ffi::{c_int, CStr, CString};

use redis_module::raw;
use redis_module::raw::{RedisModuleCtx, RedisModuleString};

pub(crate) use call::call;
pub use call::Reply;
pub use config::{load_configs, register_bool, register_enum, register_numeric, BoolConfig, EnumConfig, NumericConfig};
pub use ctx::{now_ms, replica_or_loading, Ctx};
pub use events::{after_notification, announce_dataset_events, register_filter, subscribe_to_writes, FilterArgs};
pub use key::{KeyType, WriteKey};
pub(crate) use module::module;
pub use module::{callbacks, on_load, register_command, register_info, Commands, InfoCtx, MAX_COMMANDS};
pub use string::{name_of, ArgString, Args, AsString, Field, RString};

/// Key permission flags for [`Ctx::check_key`]: RM_ACLCheckKeyPermissions accepts only
/// the ACCESS / INSERT / UPDATE / DELETE key-spec flags (EINVAL otherwise).
pub const KEY_READ: u64 = raw::REDISMODULE_CMD_KEY_ACCESS as u64;
pub const KEY_INSERT: u64 = raw::REDISMODULE_CMD_KEY_INSERT as u64;
pub const KEY_UPDATE: u64 = raw::REDISMODULE_CMD_KEY_UPDATE as u64;
pub const KEY_DELETE: u64 = raw::REDISMODULE_CMD_KEY_DELETE as u64;

const OK: c_int = raw::REDISMODULE_OK as c_int;
const ERR: c_int = raw::REDISMODULE_ERR as c_int;

/// Writes `message` to the Redis log at `level` ("warning", "notice", ...), as the
/// module when `ctx` is given, else as "module".
pub fn log(ctx: Option<&Ctx>, level: &CStr, message: &str) {
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    let ctx = ctx.map_or(std::ptr::null_mut(), Ctx::as_ptr);
    // SAFETY: the function table is filled at load and never changes.
    if let Some(log) = unsafe { raw::RedisModule_Log } {
        // SAFETY: ctx is live or NULL; "%s" takes one C string.
        unsafe { log(ctx, level.as_ptr(), c"%s".as_ptr(), message.as_ptr()) };
    }
}
