//! `call!`, the module's `RedisModule_Call`, and its [`Reply`].

use std::ffi::c_int;
use std::ptr;

use redis_module::raw;

use crate::error::Error;

/// Calls `RedisModule_Call` with a static command name and format, returning a
/// [`Reply`]. Put `!` in the format for writes: Redis then replicates the plain
/// command (wrapped in MULTI/EXEC with the command's other writes).
macro_rules! call {
    ($ctx:expr, $cmd:literal, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        let ctx: &$crate::api::Ctx = $ctx;
        // SAFETY: the command name and format are static C strings, and every
        // argument matches its format letter (s: RedisModuleString, c: C string,
        // l: long long, v: argv pointer and count).
        let reply = unsafe {
            redis_module::raw::RedisModule_Call.unwrap()(ctx.as_ptr(), $cmd.as_ptr(), $fmt.as_ptr() $(, $arg)*)
        };
        $crate::api::Reply::from_raw(reply)
    }};
}
pub(crate) use call;

/// A reply of `RedisModule_Call`, freed on drop.
pub struct Reply(*mut raw::RedisModuleCallReply);

impl Reply {
    pub fn from_raw(reply: *mut raw::RedisModuleCallReply) -> Self {
        Reply(reply)
    }

    /// The integer reply, or the error Redis returned.
    pub fn integer(&self) -> Result<i64, Error> {
        if !self.0.is_null() {
            // SAFETY: a live reply; anything but an integer reads as LLONG_MIN, so the
            // common case needs no type check.
            let n = unsafe { raw::RedisModule_CallReplyInteger.unwrap()(self.0) };
            if n != i64::MIN {
                return Ok(n);
            }
        }
        self.check()?;
        // SAFETY: a live, non-error reply.
        Ok(unsafe { raw::RedisModule_CallReplyInteger.unwrap()(self.0) })
    }

    /// The elements of an array reply of integers (SMISMEMBER).
    pub fn integers(&self) -> Result<impl Iterator<Item = i64> + '_, Error> {
        self.check()?;
        // SAFETY: a live, non-error reply; elements are borrowed from it.
        let len = unsafe { raw::RedisModule_CallReplyLength.unwrap()(self.0) };
        // SAFETY: as above; each element is borrowed from the live reply.
        Ok((0..len).map(move |i| unsafe {
            let element = raw::RedisModule_CallReplyArrayElement.unwrap()(self.0, i);
            if element.is_null() {
                0
            } else {
                raw::RedisModule_CallReplyInteger.unwrap()(element)
            }
        }))
    }

    /// A `SCAN` reply: the next cursor and the keys of this page.
    pub fn scan_page(&self) -> Result<(Vec<u8>, Vec<Vec<u8>>), Error> {
        self.check()?;
        // SAFETY: a live, non-error reply; elements and their bytes are borrowed from
        // it and copied before it is freed.
        unsafe {
            let element = |reply: *mut raw::RedisModuleCallReply, i: usize| raw::RedisModule_CallReplyArrayElement.unwrap()(reply, i);
            let bytes = |reply: *mut raw::RedisModuleCallReply| -> Vec<u8> {
                let mut len = 0;
                let p = if reply.is_null() { ptr::null() } else { raw::RedisModule_CallReplyStringPtr.unwrap()(reply, &mut len) };
                if p.is_null() { vec![] } else { std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec() }
            };
            let cursor = bytes(element(self.0, 0));
            let keys = element(self.0, 1);
            let count = if keys.is_null() { 0 } else { raw::RedisModule_CallReplyLength.unwrap()(keys) };
            Ok((cursor, (0..count).map(|i| bytes(element(keys, i))).collect()))
        }
    }

    /// `Ok` unless the call failed or replied with an error.
    pub fn check(&self) -> Result<&Self, Error> {
        if self.0.is_null() {
            return Err(Error::Internal(format!("ERR layercache internal call failed ({})", std::io::Error::last_os_error())));
        }
        // SAFETY: a live reply.
        unsafe {
            if raw::RedisModule_CallReplyType.unwrap()(self.0) == raw::REDISMODULE_REPLY_ERROR as c_int {
                let mut len = 0;
                let p = raw::RedisModule_CallReplyStringPtr.unwrap()(self.0, &mut len);
                let text = std::slice::from_raw_parts(p.cast::<u8>(), len);
                return Err(Error::Redis(String::from_utf8_lossy(text).into_owned()));
            }
        }
        Ok(self)
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own this reply and free it once.
            unsafe { raw::RedisModule_FreeCallReply.unwrap()(self.0) };
        }
    }
}

