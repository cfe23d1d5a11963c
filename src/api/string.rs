//! Redis strings: [`RString`] (made per call), [`Field`] (made once at load),
//! [`ArgString`] (a command argument used as it is), and the command's [`Args`].

use std::ffi::{c_int, c_longlong, CStr};
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use redis_module::raw;

use super::{RedisModuleCtx, RedisModuleString};

/// A Redis string to name a key or a field: a [`Field`] made at load, an [`RString`]
/// made per call, or an [`ArgString`], a command argument used as it is.
pub trait AsString {
    fn as_string(&self) -> *mut RedisModuleString;
}

/// A Redis string owned by the module, freed on drop; it lives no longer than the
/// context `'c` it was made in.
pub struct RString<'c> {
    ctx: *mut RedisModuleCtx,
    ptr: *mut RedisModuleString,
    _ctx: PhantomData<&'c ()>,
}

impl RString<'_> {
    /// Takes ownership of `ptr`, a string made in `ctx` (or handed over by Redis).
    pub(super) fn owned(ctx: *mut RedisModuleCtx, ptr: *mut RedisModuleString) -> Self {
        RString { ctx, ptr, _ctx: PhantomData }
    }

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
        unsafe { raw::RedisModule_FreeString.unwrap()(self.ctx, self.ptr) };
    }
}

impl AsString for RString<'_> {
    fn as_string(&self) -> *mut RedisModuleString {
        self.ptr
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

    /// Creates the string; called once per field at load.
    pub fn init(&self) {
        let bytes = self.name.to_bytes();
        // SAFETY: a NULL ctx makes a string outside automatic memory, which lives
        // as long as the module.
        let string = unsafe { raw::RedisModule_CreateString.unwrap()(ptr::null_mut(), bytes.as_ptr().cast(), bytes.len()) };
        self.string.store(string, Ordering::Relaxed);
    }
}

impl AsString for Field {
    fn as_string(&self) -> *mut RedisModuleString {
        self.string.load(Ordering::Relaxed)
    }
}

/// A command argument's own Redis string, used as a key or field name without a copy
/// (in the `blob` scheme a digest argument is its key).
#[derive(Clone, Copy)]
pub struct ArgString(*mut RedisModuleString);

impl AsString for ArgString {
    fn as_string(&self) -> *mut RedisModuleString {
        self.0
    }
}

/// The arguments of one command, `args[0]` being the command name.
pub struct Args<'a>(&'a [*mut RedisModuleString]);

impl<'a> Args<'a> {
    /// # Safety
    /// `argv` and `argc` are the arguments Redis passed to the running command.
    pub(super) unsafe fn new(argv: *mut *mut RedisModuleString, argc: c_int) -> Self {
        if argv.is_null() || argc <= 0 {
            return Args(&[]);
        }
        // SAFETY: Redis passes `argc` live strings at `argv`, for the command's run.
        Args(unsafe { std::slice::from_raw_parts(argv, argc as usize) })
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

    /// Argument `i`'s own Redis string, a key or field name or a `call!` argument
    /// without a copy (NULL past the end).
    pub fn arg(&self, i: usize) -> ArgString {
        ArgString(self.0.get(i).copied().unwrap_or(ptr::null_mut()))
    }
}

/// The bytes of a live Redis string.
pub fn bytes_of<'a>(s: *const RedisModuleString) -> &'a [u8] {
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

/// The name of a key or field, for an error message.
pub fn name_of(key: &dyn AsString) -> String {
    String::from_utf8_lossy(bytes_of(key.as_string())).into_owned()
}
