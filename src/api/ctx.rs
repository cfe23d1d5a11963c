//! [`Ctx`]: the context Redis passes to a command (or a load, an event, a job), the
//! replies made through it, and the ACL user it runs as.

use std::cell::OnceCell;
use std::ffi::{c_int, c_longlong, CString};

use redis_module::raw;

use super::string::RString;
use super::user::User;
use super::RedisModuleCtx;
use crate::error::Error;

/// A context Redis passed to the module, with the command's ACL user looked up at
/// most once.
pub struct Ctx {
    ptr: *mut RedisModuleCtx,
    user: OnceCell<Option<User>>,
}

impl Ctx {
    /// # Safety
    /// `ctx` is a context Redis passed to the running callback, or NULL where the
    /// module API accepts one (server-wide flags, logging).
    pub(super) unsafe fn new(ctx: *mut RedisModuleCtx) -> Self {
        Ctx { ptr: ctx, user: OnceCell::new() }
    }

    /// The raw context, for `call!`.
    pub fn as_ptr(&self) -> *mut RedisModuleCtx {
        self.ptr
    }

    /// A Redis string holding `bytes` (a key name), freed on drop.
    pub fn string(&self, bytes: &[u8]) -> RString<'_> {
        // SAFETY: Redis copies `bytes`; the pointer and length describe a live slice.
        let ptr = unsafe { raw::RedisModule_CreateString.unwrap()(self.ptr, bytes.as_ptr().cast(), bytes.len()) };
        RString::owned(self.ptr, ptr)
    }

    /// Whether this server is a replica or loading its data (AOF or RDB): then writes
    /// come from the primary or the file, not from clients.
    pub fn replica_or_loading(&self) -> bool {
        replica_or_loading_of(self.ptr)
    }

    /// Whether the server runs in Redis Cluster mode.
    pub fn cluster(&self) -> bool {
        flags(self.ptr) & raw::REDISMODULE_CTX_FLAGS_CLUSTER as c_int != 0
    }

    /// `Err(NoPerm)` unless the command's ACL user may access `key` as `flags` says
    /// (the user is looked up at the first check; a command that runs unrestricted
    /// passes every check). A denial goes to `ACL LOG`, as Redis logs its own.
    pub fn check_key(&self, key: &RString, flags: u64) -> Result<(), Error> {
        match self.user.get_or_init(|| User::of(self.ptr)) {
            Some(user) => user.check(self.ptr, key, flags),
            None => Ok(()),
        }
    }

    pub fn reply_integer(&self, n: i64) {
        // SAFETY: valid ctx.
        unsafe { raw::RedisModule_ReplyWithLongLong.unwrap()(self.ptr, n as c_longlong) };
    }

    pub fn reply_null(&self) {
        // SAFETY: valid ctx.
        unsafe { raw::RedisModule_ReplyWithNull.unwrap()(self.ptr) };
    }

    pub fn reply_ok(&self) {
        // SAFETY: valid ctx; static C string.
        unsafe { raw::RedisModule_ReplyWithSimpleString.unwrap()(self.ptr, c"OK".as_ptr()) };
    }

    pub fn reply_array(&self, len: usize) {
        // SAFETY: valid ctx.
        unsafe { raw::RedisModule_ReplyWithArray.unwrap()(self.ptr, len as _) };
    }

    pub fn reply_string(&self, s: &RString) {
        // SAFETY: valid ctx and string.
        unsafe { raw::RedisModule_ReplyWithString.unwrap()(self.ptr, s.as_ptr()) };
    }

    pub fn reply_bytes(&self, bytes: &[u8]) {
        // SAFETY: valid ctx; pointer and length describe a live slice, which Redis copies.
        unsafe { raw::RedisModule_ReplyWithStringBuffer.unwrap()(self.ptr, bytes.as_ptr().cast(), bytes.len()) };
    }

    pub fn reply_error(&self, message: &str) {
        // Error text comes from our own messages and key names; a NUL would cut it short.
        let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: valid ctx; NUL-terminated message.
        unsafe { raw::RedisModule_ReplyWithError.unwrap()(self.ptr, message.as_ptr()) };
    }
}

/// The server's clock, in Unix milliseconds (`RedisModule_Milliseconds`).
pub fn now_ms() -> i64 {
    // SAFETY: the function table is filled at load and never changes; no arguments.
    unsafe { raw::RedisModule_Milliseconds.unwrap()() }
}

fn flags(ctx: *mut RedisModuleCtx) -> c_int {
    // SAFETY: a live ctx, or NULL, which GetContextFlags accepts (server-wide flags).
    unsafe { raw::RedisModule_GetContextFlags.unwrap()(ctx) }
}

fn replica_or_loading_of(ctx: *mut RedisModuleCtx) -> bool {
    flags(ctx) & (raw::REDISMODULE_CTX_FLAGS_SLAVE | raw::REDISMODULE_CTX_FLAGS_LOADING) as c_int != 0
}

/// [`Ctx::replica_or_loading`] where there is no context (a command filter).
pub fn replica_or_loading() -> bool {
    replica_or_loading_of(std::ptr::null_mut())
}
