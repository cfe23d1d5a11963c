//! The thin layer over the Redis module C API that the commands use. Every `unsafe`
//! block the commands need lives here; the handlers see safe types: [`Ctx`], [`Args`],
//! [`RString`], [`Reply`] and [`User`].

use std::ffi::{c_int, c_longlong, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use redis_module::raw;

pub use raw::{RedisModuleCtx, RedisModuleString};

use crate::error::Error;

/// Key permission flags for [`User::check`]: RM_ACLCheckKeyPermissions accepts only
/// the ACCESS / INSERT / UPDATE / DELETE key-spec flags (EINVAL otherwise).
pub const KEY_READ: u64 = raw::REDISMODULE_CMD_KEY_ACCESS as u64;
pub const KEY_INSERT: u64 = raw::REDISMODULE_CMD_KEY_INSERT as u64;
pub const KEY_UPDATE: u64 = raw::REDISMODULE_CMD_KEY_UPDATE as u64;
pub const KEY_DELETE: u64 = raw::REDISMODULE_CMD_KEY_DELETE as u64;

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

/// The context of one command invocation.
pub struct Ctx(*mut RedisModuleCtx);

impl Ctx {
    /// # Safety
    /// `ctx` is the context Redis passed to the running command.
    pub unsafe fn new(ctx: *mut RedisModuleCtx) -> Self {
        Ctx(ctx)
    }

    pub fn as_ptr(&self) -> *mut RedisModuleCtx {
        self.0
    }

    /// A Redis string holding `bytes` (a key name), freed on drop.
    pub fn string(&self, bytes: &[u8]) -> RString<'_> {
        // SAFETY: Redis copies `bytes`; the pointer and length describe a live slice.
        let ptr = unsafe { raw::RedisModule_CreateString.unwrap()(self.0, bytes.as_ptr().cast(), bytes.len()) };
        RString { ctx: self, ptr }
    }

    /// The user running this command, or `None` where there is none to check
    /// (a client without a user, such as AOF loading).
    pub fn user(&self) -> Option<User> {
        // SAFETY: valid ctx; the name is freed before returning.
        unsafe {
            let name = raw::RedisModule_GetCurrentUserName.unwrap()(self.0);
            if name.is_null() {
                return None;
            }
            let user = raw::RedisModule_GetModuleUserFromUserName.unwrap()(name);
            raw::RedisModule_FreeString.unwrap()(self.0, name);
            (!user.is_null()).then(|| User(user))
        }
    }

    /// The type of the key, without creating it.
    pub fn key_type(&self, key: &RString) -> KeyType {
        // SAFETY: valid ctx and key name; the handle is closed before returning.
        let t = unsafe {
            let handle = raw::RedisModule_OpenKey.unwrap()(self.0, key.ptr, raw::REDISMODULE_READ as c_int);
            let t = raw::RedisModule_KeyType.unwrap()(handle);
            raw::RedisModule_CloseKey.unwrap()(handle);
            t
        };
        match t as isize {
            raw::REDISMODULE_KEYTYPE_EMPTY => KeyType::Empty,
            raw::REDISMODULE_KEYTYPE_SET => KeyType::Set,
            raw::REDISMODULE_KEYTYPE_HASH => KeyType::Hash,
            _ => KeyType::Other,
        }
    }

    /// Opens `key` for reading and runs `read` on it if it holds a hash: `Ok(None)` when
    /// the key does not exist, WRONGTYPE when it holds something else.
    fn read_hash<T>(&self, key: &RString, read: impl FnOnce(*mut raw::RedisModuleKey) -> T) -> Result<Option<T>, Error> {
        // SAFETY: valid ctx and key name; the handle is closed before returning.
        unsafe {
            let handle = raw::RedisModule_OpenKey.unwrap()(self.0, key.ptr, raw::REDISMODULE_READ as c_int);
            let result = match raw::RedisModule_KeyType.unwrap()(handle) as isize {
                raw::REDISMODULE_KEYTYPE_EMPTY => Ok(None),
                raw::REDISMODULE_KEYTYPE_HASH => Ok(Some(read(handle))),
                _ => Err(Error::WrongType),
            };
            raw::RedisModule_CloseKey.unwrap()(handle);
            result
        }
    }

    /// Reads `fields` of the hash at `key`: `Ok(None)` when the key does not exist,
    /// otherwise one entry per field (`None` where the field is absent).
    pub fn hash_get<const N: usize>(&self, key: &RString, fields: [&dyn AsField; N]) -> Result<Option<[Option<RString<'_>>; N]>, Error> {
        self.read_hash(key, |handle| {
            fields.map(|field| {
                let mut value: *mut RedisModuleString = ptr::null_mut();
                // SAFETY: an open hash key; one field string, one output slot and the
                // NULL terminator.
                unsafe {
                    raw::RedisModule_HashGet.unwrap()(
                        handle,
                        raw::REDISMODULE_HASH_NONE as c_int,
                        field.field(),
                        &mut value as *mut *mut RedisModuleString,
                        ptr::null_mut::<RedisModuleString>(),
                    )
                };
                (!value.is_null()).then(|| RString { ctx: self, ptr: value })
            })
        })
    }

    /// Whether the hash at `key` has `field` (false when the key does not exist).
    pub fn hash_exists(&self, key: &RString, field: &dyn AsField) -> Result<bool, Error> {
        let exists = self.read_hash(key, |handle| {
            let mut exists: c_int = 0;
            // SAFETY: an open hash key; one field string, REDISMODULE_HASH_EXISTS's int
            // output slot and the NULL terminator.
            unsafe {
                raw::RedisModule_HashGet.unwrap()(
                    handle,
                    raw::REDISMODULE_HASH_EXISTS as c_int,
                    field.field(),
                    &mut exists as *mut c_int,
                    ptr::null_mut::<RedisModuleString>(),
                )
            };
            exists != 0
        })?;
        Ok(exists == Some(true))
    }

    pub fn reply_integer(&self, n: i64) {
        // SAFETY: valid ctx.
        unsafe { raw::RedisModule_ReplyWithLongLong.unwrap()(self.0, n as c_longlong) };
    }

    pub fn reply_null(&self) {
        // SAFETY: valid ctx.
        unsafe { raw::RedisModule_ReplyWithNull.unwrap()(self.0) };
    }

    pub fn reply_ok(&self) {
        // SAFETY: valid ctx; static C string.
        unsafe { raw::RedisModule_ReplyWithSimpleString.unwrap()(self.0, c"OK".as_ptr()) };
    }

    pub fn reply_array(&self, len: usize) {
        // SAFETY: valid ctx.
        unsafe { raw::RedisModule_ReplyWithArray.unwrap()(self.0, len as _) };
    }

    pub fn reply_string(&self, s: &RString) {
        // SAFETY: valid ctx and string.
        unsafe { raw::RedisModule_ReplyWithString.unwrap()(self.0, s.ptr) };
    }

    pub fn reply_bytes(&self, bytes: &[u8]) {
        // SAFETY: valid ctx; pointer and length describe a live slice, which Redis copies.
        unsafe { raw::RedisModule_ReplyWithStringBuffer.unwrap()(self.0, bytes.as_ptr().cast(), bytes.len()) };
    }

    pub fn reply_error(&self, message: &str) {
        // Error text comes from our own messages and key names; a NUL would cut it short.
        let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: valid ctx; NUL-terminated message.
        unsafe { raw::RedisModule_ReplyWithError.unwrap()(self.0, message.as_ptr()) };
    }

    pub fn reply_wrong_arity(&self) {
        // SAFETY: valid ctx.
        unsafe { raw::RedisModule_WrongArity.unwrap()(self.0) };
    }
}

/// A hash field name, made a Redis string once at load ([`Field::init`]) so that reads
/// do not build one per call.
pub struct Field {
    name: &'static CStr,
    string: AtomicPtr<RedisModuleString>,
}

impl Field {
    pub const fn new(name: &'static CStr) -> Self {
        Field { name, string: AtomicPtr::new(ptr::null_mut()) }
    }

    /// Creates the string; called once per field from `RedisModule_OnLoad`.
    pub fn init(&self) {
        let bytes = self.name.to_bytes();
        // SAFETY: a NULL ctx makes a string outside automatic memory, which lives
        // as long as the module.
        let string = unsafe { raw::RedisModule_CreateString.unwrap()(ptr::null_mut(), bytes.as_ptr().cast(), bytes.len()) };
        self.string.store(string, Ordering::Relaxed);
    }
}

/// A hash field name: a [`Field`] made at load, or an [`RString`] made per call.
pub trait AsField {
    fn field(&self) -> *mut RedisModuleString;
}

impl AsField for Field {
    fn field(&self) -> *mut RedisModuleString {
        self.string.load(Ordering::Relaxed)
    }
}

impl AsField for RString<'_> {
    fn field(&self) -> *mut RedisModuleString {
        self.ptr
    }
}

/// What a key holds, as far as layercache cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Empty,
    Set,
    Hash,
    Other,
}

/// The arguments of one command, `args[0]` being the command name.
pub struct Args<'a>(&'a [*mut RedisModuleString]);

impl<'a> Args<'a> {
    /// # Safety
    /// `argv` and `argc` are the arguments Redis passed to the running command.
    pub unsafe fn new(argv: *mut *mut RedisModuleString, argc: c_int) -> Self {
        if argv.is_null() || argc <= 0 {
            return Args(&[]);
        }
        Args(std::slice::from_raw_parts(argv, argc as usize))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The bytes of argument `i` (empty past the end).
    pub fn bytes(&self, i: usize) -> &'a [u8] {
        match self.0.get(i) {
            Some(&s) => bytes_of(s),
            None => &[],
        }
    }

    /// Argument `i` as the Redis string, to hand to `call!` without a copy.
    pub fn raw(&self, i: usize) -> *mut RedisModuleString {
        self.0.get(i).copied().unwrap_or(ptr::null_mut())
    }

    /// Arguments `i..` as an argv pointer and count, for `call!`'s `v` format.
    pub fn raw_from(&self, i: usize) -> (*mut *mut RedisModuleString, usize) {
        match self.0.get(i..) {
            Some(rest) => (rest.as_ptr().cast_mut(), rest.len()),
            None => (ptr::null_mut(), 0),
        }
    }
}

fn bytes_of<'a>(s: *const RedisModuleString) -> &'a [u8] {
    let mut len = 0;
    // SAFETY: `s` is a live Redis string; Redis returns its buffer and length, valid
    // for as long as the string lives (the command for arguments, the RString else).
    unsafe {
        let p = raw::RedisModule_StringPtrLen.unwrap()(s, &mut len);
        if p.is_null() {
            return &[];
        }
        std::slice::from_raw_parts(p.cast(), len)
    }
}

/// A Redis string owned by the module, freed on drop.
pub struct RString<'c> {
    ctx: &'c Ctx,
    ptr: *mut RedisModuleString,
}

impl RString<'_> {
    pub fn as_ptr(&self) -> *mut RedisModuleString {
        self.ptr
    }

    pub fn as_bytes(&self) -> &[u8] {
        bytes_of(self.ptr)
    }

    /// The value as a long long, if it is one (Redis's own `string2ll` rules).
    pub fn to_integer(&self) -> Option<i64> {
        let mut n: c_longlong = 0;
        // SAFETY: live string, valid output pointer.
        let status = unsafe { raw::RedisModule_StringToLongLong.unwrap()(self.ptr, &mut n) };
        (status == raw::REDISMODULE_OK as c_int).then_some(n)
    }
}

impl Drop for RString<'_> {
    fn drop(&mut self) {
        // SAFETY: we own this string and free it once.
        unsafe { raw::RedisModule_FreeString.unwrap()(self.ctx.0, self.ptr) };
    }
}

/// A reply of `RedisModule_Call`, freed on drop.
pub struct Reply(*mut raw::RedisModuleCallReply);

impl Reply {
    pub fn from_raw(reply: *mut raw::RedisModuleCallReply) -> Self {
        Reply(reply)
    }

    /// The integer reply, or the error Redis returned.
    pub fn integer(&self) -> Result<i64, Error> {
        self.check()?;
        // SAFETY: a live, non-error reply.
        Ok(unsafe { raw::RedisModule_CallReplyInteger.unwrap()(self.0) })
    }

    /// The elements of an array reply of integers (SMISMEMBER).
    pub fn integers(&self) -> Result<impl Iterator<Item = i64> + '_, Error> {
        self.check()?;
        // SAFETY: a live, non-error reply; elements are borrowed from it.
        let len = unsafe { raw::RedisModule_CallReplyLength.unwrap()(self.0) };
        Ok((0..len).map(move |i| unsafe {
            let element = raw::RedisModule_CallReplyArrayElement.unwrap()(self.0, i);
            if element.is_null() {
                0
            } else {
                raw::RedisModule_CallReplyInteger.unwrap()(element)
            }
        }))
    }

    /// The elements of an array reply of strings (SMEMBERS), borrowed from the reply.
    pub fn strings(&self) -> Result<impl Iterator<Item = &[u8]> + '_, Error> {
        self.check()?;
        // SAFETY: a live, non-error reply; elements and their bytes are borrowed from it.
        let len = unsafe { raw::RedisModule_CallReplyLength.unwrap()(self.0) };
        Ok((0..len).map(move |i| unsafe {
            let element = raw::RedisModule_CallReplyArrayElement.unwrap()(self.0, i);
            let mut len = 0;
            let p = if element.is_null() { ptr::null() } else { raw::RedisModule_CallReplyStringPtr.unwrap()(element, &mut len) };
            if p.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(p.cast::<u8>(), len)
            }
        }))
    }

    /// `Ok` unless the call failed or replied with an error.
    pub fn check(&self) -> Result<&Self, Error> {
        if self.0.is_null() {
            return Err(Error::Redis(format!("ERR layercache internal call failed ({})", std::io::Error::last_os_error())));
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

/// The ACL user running a command.
pub struct User(*mut raw::RedisModuleUser);

impl User {
    /// `Err(NoPerm)` unless the user may access `key` as `flags` says.
    pub fn check(&self, key: &RString, flags: u64) -> Result<(), Error> {
        // SAFETY: live user and key name.
        let status = unsafe { raw::RedisModule_ACLCheckKeyPermissions.unwrap()(self.0, key.ptr, flags as c_int) };
        if status == raw::REDISMODULE_OK as c_int {
            Ok(())
        } else {
            Err(Error::NoPerm(String::from_utf8_lossy(key.as_bytes()).into_owned()))
        }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        // SAFETY: we own this user handle and free it once.
        unsafe { raw::RedisModule_FreeModuleUser.unwrap()(self.0) };
    }
}

/// Writes `message` to the Redis log at `level` ("warning", "notice", ...).
pub fn log(ctx: *mut RedisModuleCtx, level: &CStr, message: &str) {
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    if let Some(log) = unsafe { raw::RedisModule_Log } {
        // SAFETY: ctx may be NULL (Redis then logs as "module"); "%s" takes one C string.
        unsafe { log(ctx, level.as_ptr(), c"%s".as_ptr(), message.as_ptr()) };
    }
}
