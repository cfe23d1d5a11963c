//! The thin layer over the Redis module C API that the commands use. Every `unsafe`
//! block the commands need lives here; the handlers see safe types: [`Ctx`], [`Args`],
//! [`RString`], [`Reply`] and [`User`].

use std::cell::OnceCell;
use std::ffi::{c_int, c_longlong, c_void, CStr, CString};
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

/// How bookkeeping opens a key: for writing, which on every supported server counts no
/// keyspace hit or miss and sends no `keymiss` (Redis 7.0 has no NONOTIFY / NOSTATS
/// modes), and without touching its LRU / LFU.
const QUIET_OPEN: c_int = (raw::REDISMODULE_WRITE | raw::REDISMODULE_OPEN_KEY_NOTOUCH) as c_int;

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

/// The context of one command invocation, with its ACL user looked up at most once.
pub struct Ctx {
    ptr: *mut RedisModuleCtx,
    user: OnceCell<Option<User>>,
}

impl Ctx {
    /// # Safety
    /// `ctx` is the context Redis passed to the running command.
    pub unsafe fn new(ctx: *mut RedisModuleCtx) -> Self {
        Ctx { ptr: ctx, user: OnceCell::new() }
    }

    pub fn as_ptr(&self) -> *mut RedisModuleCtx {
        self.ptr
    }

    /// A Redis string holding `bytes` (a key name), freed on drop.
    pub fn string(&self, bytes: &[u8]) -> RString<'_> {
        // SAFETY: Redis copies `bytes`; the pointer and length describe a live slice.
        let ptr = unsafe { raw::RedisModule_CreateString.unwrap()(self.ptr, bytes.as_ptr().cast(), bytes.len()) };
        RString { ctx: self, ptr }
    }

    /// The ACL user the command runs as, or `None` when it runs unrestricted: the
    /// primary's link on a replica, AOF loading, or another module's
    /// `RedisModule_Call` without the `C` flag (a client with no user).
    pub fn user(&self) -> Option<&User> {
        self.user.get_or_init(|| self.find_user()).as_ref()
    }

    fn find_user(&self) -> Option<User> {
        // SAFETY: valid ctx; every name string is freed before returning.
        unsafe {
            // RedisModule_GetCurrentUserName dereferences the client's user, which is
            // NULL for a module's temporary client: ask by client ID first, which
            // answers for every connected client and says ENOTSUP for "no user" (the
            // primary's link on a replica: Redis obeys it unchecked, as it does plain
            // commands).
            let id = raw::RedisModule_GetClientId.unwrap()(self.ptr);
            let mut name = raw::RedisModule_GetClientUserNameById.unwrap()(self.ptr, id);
            if name.is_null() {
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) {
                    return None;
                }
                // A client Redis does not list: AOF loading's runs unchecked too.
                let flags = raw::RedisModule_GetContextFlags.unwrap()(self.ptr);
                if flags & (raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING) as c_int != 0
                    || !self.client_has_user()
                {
                    return None;
                }
                name = raw::RedisModule_GetCurrentUserName.unwrap()(self.ptr);
            }
            let user = raw::RedisModule_GetModuleUserFromUserName.unwrap()(name);
            raw::RedisModule_FreeString.unwrap()(self.ptr, name);
            // A user deleted meanwhile is no user at all: deny rather than skip.
            Some(User(user))
        }
    }

    /// For a client Redis does not list (a script's or a module call's): whether it
    /// runs as a user. `RedisModule_Call` with the `C` flag fails with ENOTSUP when
    /// the client has none, before it looks the command up; an unknown command name
    /// makes that the only thing the call does (ENOENT otherwise).
    fn client_has_user(&self) -> bool {
        // SAFETY: valid ctx; static C strings; the reply, if any, is freed.
        let reply = unsafe { raw::RedisModule_Call.unwrap()(self.ptr, c"layercache.|user-probe".as_ptr(), c"C".as_ptr()) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        drop(Reply::from_raw(reply));
        errno != Some(libc::ENOTSUP)
    }

    /// The type of the key, without creating it. Opened for writing, so that the check
    /// counts no keyspace hit or miss, sends no `keymiss` and leaves the LRU as it is:
    /// it is bookkeeping, not a read (the module sets
    /// `REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED`, so closing signals nothing).
    pub fn key_type(&self, key: &dyn AsString) -> KeyType {
        // SAFETY: valid ctx and key name; the handle is closed before returning.
        let t = unsafe {
            let handle = raw::RedisModule_OpenKey.unwrap()(self.ptr, key.as_string(), QUIET_OPEN);
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
            let handle = raw::RedisModule_OpenKey.unwrap()(self.ptr, key.ptr, QUIET_OPEN);
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
            let handle = raw::RedisModule_OpenKey.unwrap()(self.ptr, key.as_string(), raw::REDISMODULE_READ as c_int);
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
            values.map(|value| (!value.is_null()).then(|| RString { ctx: self, ptr: value }))
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
        unsafe { raw::RedisModule_ReplyWithString.unwrap()(self.ptr, s.ptr) };
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
        let handle = unsafe { raw::RedisModule_OpenKey.unwrap()(self.ptr, key.as_string(), raw::REDISMODULE_WRITE as c_int) };
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
            raw::RedisModule_NotifyKeyspaceEvent.unwrap()(self.ctx.ptr, kind, event.as_ptr(), self.name.as_string());
            raw::RedisModule_SignalModifiedKey.unwrap()(self.ctx.ptr, self.name.as_string());
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
        unsafe { raw::RedisModule_Replicate.unwrap()(self.ctx.ptr, command.as_ptr(), c"v".as_ptr(), argv.as_mut_ptr(), len) };
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
        let (none, remove) = (raw::REDISMODULE_HASH_NONE as c_int, unsafe { raw::RedisModule_HashSet.unwrap() });
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
                unsafe { raw::RedisModule_NotifyKeyspaceEvent.unwrap()(self.ctx.ptr, raw::REDISMODULE_NOTIFY_GENERIC, c"del".as_ptr(), self.name.as_string()) };
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
            let at = raw::RedisModule_CreateStringFromLongLong.unwrap()(self.ctx.ptr, at);
            self.replicate(c"PEXPIREAT", &[at]);
            raw::RedisModule_FreeString.unwrap()(self.ctx.ptr, at);
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

/// A Redis string to name a key or a field: a [`Field`] made at load, an [`RString`]
/// made per call, or an [`ArgString`], a command argument used as it is.
pub trait AsString {
    fn as_string(&self) -> *mut RedisModuleString;
}

impl AsString for Field {
    fn as_string(&self) -> *mut RedisModuleString {
        self.string.load(Ordering::Relaxed)
    }
}

impl AsString for RString<'_> {
    fn as_string(&self) -> *mut RedisModuleString {
        self.ptr
    }
}

/// A command argument's own Redis string, used as a key or field name without a copy
/// (in the `blob` scheme a digest argument is its key).
#[derive(Clone, Copy)]
pub struct ArgString(pub *mut RedisModuleString);

impl AsString for ArgString {
    fn as_string(&self) -> *mut RedisModuleString {
        self.0
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

    /// Argument `i`'s own Redis string, a key or field name or a `call!` argument
    /// without a copy (NULL past the end).
    pub fn arg(&self, i: usize) -> ArgString {
        ArgString(self.0.get(i).copied().unwrap_or(ptr::null_mut()))
    }
}

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
        unsafe { raw::RedisModule_FreeString.unwrap()(self.ctx.ptr, self.ptr) };
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

/// The ACL user running a command (NULL: a user deleted or disabled meanwhile, who
/// may access nothing).
pub struct User(*mut raw::RedisModuleUser);

impl User {
    /// `Err(NoPerm)` unless the user may access `key` as `flags` says. A denial goes
    /// to `ACL LOG`, as Redis logs its own; the reply names no key, as the key may
    /// be one the user may not even read.
    pub fn check(&self, ctx: &Ctx, key: &RString, flags: u64) -> Result<(), Error> {
        if self.0.is_null() {
            return Err(Error::NoPerm);
        }
        // SAFETY: live user, ctx and key name.
        unsafe {
            if raw::RedisModule_ACLCheckKeyPermissions.unwrap()(self.0, key.ptr, flags as c_int) == raw::REDISMODULE_OK as c_int {
                return Ok(());
            }
            raw::RedisModule_ACLAddLogEntry.unwrap()(ctx.ptr, self.0, key.ptr, raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY);
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

/// Writes `message` to the Redis log at `level` ("warning", "notice", ...).
pub fn log(ctx: *mut RedisModuleCtx, level: &CStr, message: &str) {
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    if let Some(log) = unsafe { raw::RedisModule_Log } {
        // SAFETY: ctx may be NULL (Redis then logs as "module"); "%s" takes one C string.
        unsafe { log(ctx, level.as_ptr(), c"%s".as_ptr(), message.as_ptr()) };
    }
}
