//! Keys through the key API: reading them as bookkeeping or as a command's read
//! ([`KeyType`], hash fields, set members), and [`WriteKey`], the writes that
//! replicate, notify and signal as the plain commands do.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;

use redis_module::raw;

use super::ctx::Ctx;
use super::string::{bytes_of, AsString, RString};
use super::RedisModuleString;
use crate::error::Error;

/// How bookkeeping opens a key: for writing, which on every supported server counts no
/// keyspace hit or miss and sends no `keymiss` (Redis 7.0 has no NONOTIFY / NOSTATS
/// modes), and without touching its LRU / LFU.
const QUIET_OPEN: c_int = (raw::REDISMODULE_WRITE | raw::REDISMODULE_OPEN_KEY_NOTOUCH) as c_int;

/// What a key holds, as far as layercache cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Empty,
    Set,
    Hash,
    Other,
}

impl Ctx {
    /// The type of the key, without creating it. Opened for writing, so that the check
    /// counts no keyspace hit or miss, sends no `keymiss` and leaves the LRU as it is:
    /// it is bookkeeping, not a read (the module sets
    /// `REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED`, so closing signals nothing).
    pub fn key_type(&self, key: &dyn AsString) -> KeyType {
        // SAFETY: valid ctx and key name; the handle is closed before returning.
        let t = unsafe {
            let handle = raw::RedisModule_OpenKey.unwrap()(self.as_ptr(), key.as_string(), QUIET_OPEN);
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

    /// The milliseconds until `key` expires, read as bookkeeping; `None` when it has no
    /// expiry or does not exist (Redis 8.2 cannot ask an empty key for its expiry).
    pub fn pttl(&self, key: &dyn AsString) -> Option<i64> {
        // SAFETY: valid ctx and key name; the handle is closed before returning.
        let ms = unsafe {
            let handle = raw::RedisModule_OpenKey.unwrap()(self.as_ptr(), key.as_string(), QUIET_OPEN);
            let empty = raw::RedisModule_KeyType.unwrap()(handle) as isize == raw::REDISMODULE_KEYTYPE_EMPTY;
            let ms = if empty { -1 } else { raw::RedisModule_GetExpire.unwrap()(handle) };
            raw::RedisModule_CloseKey.unwrap()(handle);
            ms
        };
        (ms >= 0).then_some(ms)
    }

    /// Calls `each` with every member of the set, or every field name of the hash, at
    /// `key` (nothing when the key does not exist), read as bookkeeping: no keyspace
    /// stats, no LRU touch. The bytes live for the call only.
    pub fn for_each_member(&self, key: &RString, mut each: impl FnMut(&[u8])) {
        type Each<'f> = &'f mut dyn FnMut(&[u8]);
        extern "C" fn visit(_key: *mut raw::RedisModuleKey, field: *mut RedisModuleString, _value: *mut RedisModuleString, each: *mut c_void) {
            // SAFETY: `each` is the `Each` passed below; `field` lives for this call.
            unsafe { (*each.cast::<Each>())(bytes_of(field)) };
        }
        let mut each: Each = &mut each;
        // SAFETY: valid ctx and key name; the cursor and handle are freed before
        // returning; `each` outlives the scan.
        unsafe {
            let handle = raw::RedisModule_OpenKey.unwrap()(self.as_ptr(), key.as_ptr(), QUIET_OPEN);
            let t = raw::RedisModule_KeyType.unwrap()(handle) as isize;
            if t == raw::REDISMODULE_KEYTYPE_SET || t == raw::REDISMODULE_KEYTYPE_HASH {
                let cursor = raw::RedisModule_ScanCursorCreate.unwrap()();
                while raw::RedisModule_ScanKey.unwrap()(handle, cursor, Some(visit), (&mut each as *mut Each).cast()) != 0 {}
                raw::RedisModule_ScanCursorDestroy.unwrap()(cursor);
            }
            raw::RedisModule_CloseKey.unwrap()(handle);
        }
    }

    /// Opens `key` for reading and runs `read` on it if it holds a hash: `Ok(None)` when
    /// the key does not exist, WRONGTYPE when it holds something else.
    fn read_hash<T>(&self, key: &dyn AsString, read: impl FnOnce(*mut raw::RedisModuleKey) -> T) -> Result<Option<T>, Error> {
        // SAFETY: valid ctx and key name; the handle is closed before returning.
        unsafe {
            let handle = raw::RedisModule_OpenKey.unwrap()(self.as_ptr(), key.as_string(), raw::REDISMODULE_READ as c_int);
            let result = match raw::RedisModule_KeyType.unwrap()(handle) as isize {
                raw::REDISMODULE_KEYTYPE_EMPTY => Ok(None),
                raw::REDISMODULE_KEYTYPE_HASH => Ok(Some(read(handle))),
                _ => Err(Error::WrongType),
            };
            raw::RedisModule_CloseKey.unwrap()(handle);
            result
        }
    }

    /// Reads `fields` of the hash at `key` in one `RedisModule_HashGet`: `Ok(None)` when
    /// the key does not exist, otherwise one entry per field (`None` where it is absent).
    pub fn hash_get<const N: usize>(&self, key: &dyn AsString, fields: [&dyn AsString; N]) -> Result<Option<[Option<RString<'_>>; N]>, Error> {
        self.read_hash(key, |handle| {
            let mut values = [ptr::null_mut::<RedisModuleString>(); N];
            let f = |i: usize| fields[i].as_string();
            let null = ptr::null_mut::<RedisModuleString>();
            // SAFETY: the function table is filled once at load and never changes.
            let get = unsafe { raw::RedisModule_HashGet.unwrap() };
            let none = raw::REDISMODULE_HASH_NONE as c_int;
            let [v0, v1, v2, v3] = match &mut values[..] {
                [a] => [a as *mut _, null.cast(), null.cast(), null.cast()],
                [a, b] => [a as *mut _, b as *mut _, null.cast(), null.cast()],
                [a, b, c] => [a as *mut _, b as *mut _, c as *mut _, null.cast()],
                [a, b, c, d] => [a as *mut _, b as *mut _, c as *mut _, d as *mut _],
                _ => unreachable!("hash_get reads 1 to 4 fields"),
            };
            // SAFETY: an open hash key; N field strings each with its output slot, then
            // the NULL terminator (HashGet stops at the first NULL field).
            unsafe {
                match N {
                    1 => get(handle, none, f(0), v0, null),
                    2 => get(handle, none, f(0), v0, f(1), v1, null),
                    3 => get(handle, none, f(0), v0, f(1), v1, f(2), v2, null),
                    _ => get(handle, none, f(0), v0, f(1), v1, f(2), v2, f(3), v3, null),
                }
            };
            values.map(|value| (!value.is_null()).then(|| RString::owned(self.as_ptr(), value)))
        })
    }

    /// Whether the hash at `key` has `field` (false when the key does not exist).
    pub fn hash_exists(&self, key: &dyn AsString, field: &dyn AsString) -> Result<bool, Error> {
        let exists = self.read_hash(key, |handle| {
            let mut exists: c_int = 0;
            // SAFETY: an open hash key; one field string, REDISMODULE_HASH_EXISTS's int
            // output slot and the NULL terminator.
            unsafe {
                raw::RedisModule_HashGet.unwrap()(
                    handle,
                    raw::REDISMODULE_HASH_EXISTS as c_int,
                    field.as_string(),
                    &mut exists as *mut c_int,
                    ptr::null_mut::<RedisModuleString>(),
                )
            };
            exists != 0
        })?;
        Ok(exists == Some(true))
    }

}

/// A key opened for writing through the key API, closed on drop. Each write does what
/// the plain command would around it: it is replicated as that command (so replicas
/// and the AOF need no module), sends its keyspace event, signals the key modified
/// (WATCH, client-side caching) and counts as a change for save points.
/// It borrows the key's name, which the write replicates and signals.
pub struct WriteKey<'c, 'k> {
    ctx: &'c Ctx,
    name: &'k dyn AsString,
    handle: *mut raw::RedisModuleKey,
}

impl Ctx {
    pub fn open_write<'k>(&self, key: &'k dyn AsString) -> WriteKey<'_, 'k> {
        // SAFETY: valid ctx and key name; the handle is closed on drop.
        let handle = unsafe { raw::RedisModule_OpenKey.unwrap()(self.as_ptr(), key.as_string(), raw::REDISMODULE_WRITE as c_int) };
        WriteKey { ctx: self, name: key, handle }
    }
}

impl WriteKey<'_, '_> {
    /// WRONGTYPE unless the key holds a hash or nothing: what each write checks first.
    pub fn expect_hash(&self) -> Result<(), Error> {
        // SAFETY: an open key handle.
        match unsafe { raw::RedisModule_KeyType.unwrap()(self.handle) } as isize {
            raw::REDISMODULE_KEYTYPE_EMPTY | raw::REDISMODULE_KEYTYPE_HASH => Ok(()),
            _ => Err(Error::WrongType),
        }
    }

    /// After a change: the keyspace event and the modified-key signal of the command.
    fn changed(&self, kind: c_int, event: &CStr) {
        // SAFETY: valid ctx, static event name, live key name.
        unsafe {
            raw::RedisModule_NotifyKeyspaceEvent.unwrap()(self.ctx.as_ptr(), kind, event.as_ptr(), self.name.as_string());
            raw::RedisModule_SignalModifiedKey.unwrap()(self.ctx.as_ptr(), self.name.as_string());
        }
    }

    /// Replicates `command key args...` (up to eight arguments; built on the stack, as
    /// this runs on every write). Replicating also counts it as a change.
    fn replicate(&self, command: &CStr, args: &[*mut RedisModuleString]) {
        let mut argv = [ptr::null_mut::<RedisModuleString>(); 9];
        argv[0] = self.name.as_string();
        let mut len = 1;
        for (slot, &arg) in argv[1..].iter_mut().zip(args) {
            *slot = arg;
            len += 1;
        }
        // SAFETY: valid ctx, static command name; "v" takes an array of live strings
        // and its length.
        unsafe { raw::RedisModule_Replicate.unwrap()(self.ctx.as_ptr(), command.as_ptr(), c"v".as_ptr(), argv.as_mut_ptr(), len) };
    }

    /// `HSET key field value [field value ...]` (one to four pairs), in one
    /// `RedisModule_HashSet` and replicated as one `HSET`.
    pub fn hset(&self, pairs: &[(&dyn AsString, &dyn AsString)]) -> Result<(), Error> {
        self.expect_hash()?;
        let mut args = [ptr::null_mut::<RedisModuleString>(); 8];
        for (slot, s) in args.iter_mut().zip(pairs.iter().flat_map(|(f, v)| [f.as_string(), v.as_string()])) {
            *slot = s;
        }
        let [a, b, c, d, e, f, g, h] = args;
        let none = raw::REDISMODULE_HASH_NONE as c_int;
        let null = ptr::null_mut::<RedisModuleString>();
        // SAFETY: the function table is filled once at load and never changes.
        let set = unsafe { raw::RedisModule_HashSet.unwrap() };
        // SAFETY: a key open for writing holding a hash or nothing; field and value
        // strings in pairs, then the NULL terminator.
        unsafe {
            match pairs.len() {
                1 => set(self.handle, none, a, b, null),
                2 => set(self.handle, none, a, b, c, d, null),
                3 => set(self.handle, none, a, b, c, d, e, f, null),
                4 => set(self.handle, none, a, b, c, d, e, f, g, h, null),
                _ => unreachable!("hset writes one to four fields"),
            }
        };
        self.replicate(c"HSET", &args[..pairs.len() * 2]);
        self.changed(raw::REDISMODULE_NOTIFY_HASH, c"hset");
        Ok(())
    }

    /// `HSET key pairs...` and `HSETNX key field value` in one write: `field` joins the
    /// `HSET` when the hash lacks it, so the replicas get one `HSET` that leaves them
    /// with the same fields in the same order (one to three pairs).
    pub fn hset_with_nx(&self, pairs: &[(&dyn AsString, &dyn AsString)], nx: (&dyn AsString, &dyn AsString)) -> Result<(), Error> {
        // `hset` checks the type; `has_field` reads only a hash.
        let mut all: [(&dyn AsString, &dyn AsString); 4] = [nx; 4];
        all[..pairs.len()].copy_from_slice(pairs);
        let len = if self.has_field(nx.0) { pairs.len() } else { pairs.len() + 1 };
        self.hset(&all[..len])
    }

    /// Whether the hash open here has `field` (false when the key does not exist).
    fn has_field(&self, field: &dyn AsString) -> bool {
        let mut exists: c_int = 0;
        // SAFETY: an open key handle, read only if it holds a hash; one field, its
        // output slot, then NULL.
        unsafe {
            if raw::RedisModule_KeyType.unwrap()(self.handle) as isize == raw::REDISMODULE_KEYTYPE_HASH {
                raw::RedisModule_HashGet.unwrap()(
                    self.handle,
                    raw::REDISMODULE_HASH_EXISTS as c_int,
                    field.as_string(),
                    &mut exists as *mut c_int,
                    ptr::null_mut::<RedisModuleString>(),
                );
            }
        }
        exists != 0
    }

    /// `HSETNX key field value`: true if the field was set.
    pub fn hsetnx(&self, field: &dyn AsString, value: &dyn AsString) -> Result<bool, Error> {
        self.expect_hash()?;
        // SAFETY: as in `hset`; with NX and COUNT_ALL the count is the fields set.
        let set = unsafe {
            raw::RedisModule_HashSet.unwrap()(
                self.handle,
                (raw::REDISMODULE_HASH_NX | raw::REDISMODULE_HASH_COUNT_ALL) as c_int,
                field.as_string(),
                value.as_string(),
                ptr::null_mut::<RedisModuleString>(),
            )
        };
        if set > 0 {
            self.replicate(c"HSETNX", &[field.as_string(), value.as_string()]);
            self.changed(raw::REDISMODULE_NOTIFY_HASH, c"hset");
        }
        Ok(set > 0)
    }

    /// `HDEL key field [field ...]` (up to three): how many were removed. The key goes
    /// when its last field does.
    pub fn hdel(&self, fields: &[&dyn AsString]) -> Result<i64, Error> {
        self.expect_hash()?;
        let del = raw::REDISMODULE_HASH_DELETE as *mut RedisModuleString;
        let null = ptr::null_mut::<RedisModuleString>();
        let none = raw::REDISMODULE_HASH_NONE as c_int;
        // SAFETY: the function table is filled once at load and never changes.
        let remove = unsafe { raw::RedisModule_HashSet.unwrap() };
        let f = |i: usize| fields[i].as_string();
        // SAFETY: as in `hset`, each field with the DELETE marker as its value.
        let removed = unsafe {
            match fields.len() {
                1 => remove(self.handle, none, f(0), del, null),
                2 => remove(self.handle, none, f(0), del, f(1), del, null),
                3 => remove(self.handle, none, f(0), del, f(1), del, f(2), del, null),
                _ => unreachable!("hdel removes one to three fields"),
            }
        };
        if removed > 0 {
            let mut args = [ptr::null_mut::<RedisModuleString>(); 3];
            for (slot, f) in args.iter_mut().zip(fields) {
                *slot = f.as_string();
            }
            self.replicate(c"HDEL", &args[..fields.len()]);
            self.changed(raw::REDISMODULE_NOTIFY_HASH, c"hdel");
            // SAFETY: an open key handle.
            if unsafe { raw::RedisModule_KeyType.unwrap()(self.handle) } as isize == raw::REDISMODULE_KEYTYPE_EMPTY {
                // SAFETY: valid ctx, static event name, live key name.
                unsafe { raw::RedisModule_NotifyKeyspaceEvent.unwrap()(self.ctx.as_ptr(), raw::REDISMODULE_NOTIFY_GENERIC, c"del".as_ptr(), self.name.as_string()) };
            }
        }
        Ok(removed as i64)
    }

    /// `EXPIRE key seconds`, replicated as Redis replicates it: `PEXPIREAT` with the
    /// absolute time, so replicas and the AOF expire the key when the primary does.
    pub fn expire(&self, seconds: i64) {
        // SAFETY: an open key handle; a key that does not exist is left alone.
        unsafe {
            if raw::RedisModule_KeyType.unwrap()(self.handle) as isize == raw::REDISMODULE_KEYTYPE_EMPTY
                || raw::RedisModule_SetExpire.unwrap()(self.handle, seconds * 1000) != raw::REDISMODULE_OK as c_int
            {
                return;
            }
            let at = raw::RedisModule_GetAbsExpire.unwrap()(self.handle);
            let at = raw::RedisModule_CreateStringFromLongLong.unwrap()(self.ctx.as_ptr(), at);
            self.replicate(c"PEXPIREAT", &[at]);
            raw::RedisModule_FreeString.unwrap()(self.ctx.as_ptr(), at);
        }
        self.changed(raw::REDISMODULE_NOTIFY_GENERIC, c"expire");
    }
}

impl Drop for WriteKey<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: we own this handle and close it once.
        unsafe { raw::RedisModule_CloseKey.unwrap()(self.handle) };
    }
}

