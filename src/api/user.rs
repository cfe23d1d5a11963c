//! The ACL user a command runs as, and its key checks.

use std::ffi::c_int;

use redis_module::raw;

use super::call::Reply;
use super::string::RString;
use super::RedisModuleCtx;
use crate::error::Error;

/// The ACL user running a command (NULL: a user deleted or disabled meanwhile, who
/// may access nothing).
pub struct User(*mut raw::RedisModuleUser);

impl User {
    /// The ACL user the command of `ctx` runs as, or `None` when it runs
    /// unrestricted: the primary's link on a replica, AOF loading, or another
    /// module's `RedisModule_Call` without the `C` flag (a client with no user).
    pub(super) fn of(ctx: *mut RedisModuleCtx) -> Option<User> {
        // SAFETY: valid ctx; every name string is freed before returning.
        unsafe {
            // RedisModule_GetCurrentUserName dereferences the client's user, which is
            // NULL for a module's temporary client: ask by client ID first, which
            // answers for every connected client and says ENOTSUP for "no user" (the
            // primary's link on a replica: Redis obeys it unchecked, as it does plain
            // commands).
            let id = raw::RedisModule_GetClientId.unwrap()(ctx);
            let mut name = raw::RedisModule_GetClientUserNameById.unwrap()(ctx, id);
            if name.is_null() {
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) {
                    return None;
                }
                // A client Redis does not list: AOF loading's runs unchecked too.
                let flags = raw::RedisModule_GetContextFlags.unwrap()(ctx);
                if flags & (raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING) as c_int != 0
                    || !Self::client_has_user(ctx)
                {
                    return None;
                }
                name = raw::RedisModule_GetCurrentUserName.unwrap()(ctx);
            }
            let user = raw::RedisModule_GetModuleUserFromUserName.unwrap()(name);
            raw::RedisModule_FreeString.unwrap()(ctx, name);
            // A user deleted meanwhile is no user at all: deny rather than skip.
            Some(User(user))
        }
    }

    /// For a client Redis does not list (a script's or a module call's): whether it
    /// runs as a user. `RedisModule_Call` with the `C` flag fails with ENOTSUP when
    /// the client has none, before it looks the command up; an unknown command name
    /// makes that the only thing the call does (ENOENT otherwise).
    fn client_has_user(ctx: *mut RedisModuleCtx) -> bool {
        // SAFETY: valid ctx; static C strings; the reply, if any, is freed.
        let reply = unsafe { raw::RedisModule_Call.unwrap()(ctx, c"layercache.|user-probe".as_ptr(), c"C".as_ptr()) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        drop(Reply::from_raw(reply));
        errno != Some(libc::ENOTSUP)
    }

    /// `Err(NoPerm)` unless the user may access `key` as `flags` says. A denial goes
    /// to `ACL LOG`, as Redis logs its own; the reply names no key, as the key may
    /// be one the user may not even read.
    pub(super) fn check(&self, ctx: *mut RedisModuleCtx, key: &RString, flags: u64) -> Result<(), Error> {
        if self.0.is_null() {
            return Err(Error::NoPerm);
        }
        // SAFETY: live user, ctx and key name.
        unsafe {
            if raw::RedisModule_ACLCheckKeyPermissions.unwrap()(self.0, key.as_ptr(), flags as c_int) == raw::REDISMODULE_OK as c_int {
                return Ok(());
            }
            raw::RedisModule_ACLAddLogEntry.unwrap()(ctx, self.0, key.as_ptr(), raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY);
        }
        Err(Error::NoPerm)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own this user handle and free it once.
            unsafe { raw::RedisModule_FreeModuleUser.unwrap()(self.0) };
        }
    }
}
