//! The reverse index learns what plain-command registries write (`distribution` scheme,
//! `layercache.learn yes`), so PURGE is complete for a stock registry's data too, and
//! `layercache.ttl` reaches the keys those registries write.
//!
//! - `HSET repository::<repo>::blobs::<digest> mediatype ...` (distribution's
//!   repository-scoped SetDescriptor): the key names the repository and the digest.
//! - `SADD repository::<repo>::blobs <digest> ...` (older registries write only this):
//!   a keyspace event names only the key, so a command filter notes the members of each
//!   such SADD, and the `sadd` event (which fires only when the command added
//!   something) takes them.
//! - `HSET blobs::<digest> ...`: nothing to index; only the TTL.
//!
//! Nothing is written inside a notification callback. On Redis 7.2+ and Valkey a
//! post-notification job writes right after the command, in the same transaction on
//! the replication stream; on Redis 7.0 they wait for a module timer of 0 ms (which
//! fires once the event loop is done with the commands at hand), and every layercache
//! write command first applies what is pending, so PURGE never misses a learned
//! membership. The writes go through the key API as the module's own do, replicated
//! as plain `HSETNX` and `PEXPIREAT`. Replicas
//! and AOF loading learn nothing: the primary's learned writes reach them.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use layercache_core::digest;
use layercache_core::keys::{self, parse_written, Repo, Written};
use redis_module::raw;

use crate::api::{call, Ctx, KeyType, RedisModuleCtx, RedisModuleString, KEY_INSERT, KEY_READ};
use crate::config;
use crate::error::Error;
use crate::store::{check_acl, EMPTY};

/// What the module has learned and not yet written.
struct Pending {
    /// (repository, digest) memberships to index.
    index: BTreeSet<(Vec<u8>, Vec<u8>)>,
    /// Keys written by plain commands, to give `layercache.ttl`.
    expire: BTreeSet<Vec<u8>>,
    /// The members of recent `SADD`s to membership sets, by key, until their `sadd`
    /// event takes them (a failed or discarded SADD leaves its entry to age out).
    sadds: VecDeque<(Vec<u8>, Vec<Vec<u8>>)>,
    /// A post-notification job (Redis 7.2+, Valkey) or a timer (Redis 7.0) is queued.
    scheduled: bool,
}

/// SADD entries kept at most: those of failed commands age out.
const MAX_SADDS: usize = 1024;

static PENDING: Mutex<Pending> =
    Mutex::new(Pending { index: BTreeSet::new(), expire: BTreeSet::new(), sadds: VecDeque::new(), scheduled: false });

/// Set by [`load`]: this server learns (the `distribution` scheme).
static LOADED: AtomicBool = AtomicBool::new(false);

/// Set while the module itself writes (its commands, and the learned writes): those
/// writes keep the index themselves and are not learned again.
static IN_MODULE: AtomicBool = AtomicBool::new(false);

fn pending() -> std::sync::MutexGuard<'static, Pending> {
    PENDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f` as the module's own writing.
pub fn as_module<T>(f: impl FnOnce() -> T) -> T {
    let outer = IN_MODULE.swap(true, Ordering::Relaxed);
    let result = f();
    IN_MODULE.store(outer, Ordering::Relaxed);
    result
}

/// Whether this server learns now: the setting, and not a replica or loading (the
/// primary's learned writes reach those).
fn learning(ctx: *mut RedisModuleCtx) -> bool {
    if !config::learn() || IN_MODULE.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: RedisModule_GetContextFlags accepts NULL for server-wide flags.
    let flags = unsafe { raw::RedisModule_GetContextFlags.unwrap()(ctx) };
    flags & (raw::REDISMODULE_CTX_FLAGS_SLAVE | raw::REDISMODULE_CTX_FLAGS_LOADING) as c_int == 0
}

/// Subscribes to plain writes; called at load in the `distribution` scheme.
///
/// # Safety
/// `ctx` is the load context.
pub unsafe fn load(ctx: *mut RedisModuleCtx) -> Result<(), String> {
    LOADED.store(true, Ordering::Relaxed);
    let types = raw::REDISMODULE_NOTIFY_HASH | raw::REDISMODULE_NOTIFY_SET;
    if raw::RedisModule_SubscribeToKeyspaceEvents.unwrap()(ctx, types, Some(on_write)) == raw::REDISMODULE_ERR as c_int {
        return Err("cannot subscribe to keyspace events".into());
    }
    // Our own RedisModule_Call commands are never a registry's SADD.
    let noself = raw::REDISMODULE_CMDFILTER_NOSELF as c_int;
    if raw::RedisModule_RegisterCommandFilter.unwrap()(ctx, Some(note_sadd), noself).is_null() {
        return Err("cannot register the SADD command filter".into());
    }
    Ok(())
}

/// The command filter: notes the members of `SADD repository::<repo>::blobs ...`.
extern "C" fn note_sadd(filter: *mut raw::RedisModuleCommandFilterCtx) {
    // SAFETY: a live filter context; argument strings live for this call.
    let arg = |i: c_int| unsafe {
        let s = raw::RedisModule_CommandFilterArgGet.unwrap()(filter, i);
        if s.is_null() {
            &[][..]
        } else {
            let mut len = 0;
            let p = raw::RedisModule_StringPtrLen.unwrap()(s, &mut len);
            std::slice::from_raw_parts(p.cast::<u8>(), len)
        }
    };
    // SAFETY: a live filter context.
    let argc = unsafe { raw::RedisModule_CommandFilterArgsCount.unwrap()(filter) };
    if argc < 3 || !arg(0).eq_ignore_ascii_case(b"sadd") || !learning(ptr::null_mut()) {
        return;
    }
    let key = arg(1);
    if !matches!(parse_written(key), Some(Written::Members(_))) {
        return;
    }
    let digests = (2..argc).map(arg).filter(|d| digest::parse(d).is_ok()).map(<[u8]>::to_vec).collect();
    let mut pending = pending();
    if pending.sadds.len() == MAX_SADDS {
        pending.sadds.pop_front();
    }
    pending.sadds.push_back((key.to_vec(), digests));
}

/// The keyspace-event callback: records what a plain write taught, writes nothing.
extern "C" fn on_write(ctx: *mut RedisModuleCtx, _type: c_int, event: *const std::ffi::c_char, key: *mut RedisModuleString) -> c_int {
    if !learning(ctx) {
        return raw::REDISMODULE_OK as c_int;
    }
    // SAFETY: Redis passes a NUL-terminated event name and a live key string.
    let (event, key) = unsafe {
        let mut len = 0;
        let p = raw::RedisModule_StringPtrLen.unwrap()(key, &mut len);
        (CStr::from_ptr(event).to_bytes(), std::slice::from_raw_parts(p.cast::<u8>(), len))
    };
    let ttl = config::ttl() > 0;
    let mut pending = pending();
    let before = (pending.index.len(), pending.expire.len());
    match (event, parse_written(key)) {
        (b"hset", Some(Written::Scoped(repo, digest))) => {
            pending.index.insert((repo.as_bytes().to_vec(), digest.as_bytes().to_vec()));
        }
        (b"sadd", Some(Written::Members(repo))) => {
            let mut kept = VecDeque::with_capacity(pending.sadds.len());
            for (sadd_key, digests) in std::mem::take(&mut pending.sadds) {
                if sadd_key == key {
                    pending.index.extend(digests.into_iter().map(|d| (repo.as_bytes().to_vec(), d)));
                } else {
                    kept.push_back((sadd_key, digests));
                }
            }
            pending.sadds = kept;
        }
        (b"hset", Some(Written::Blob(_))) => {}
        _ => return raw::REDISMODULE_OK as c_int,
    }
    if ttl {
        pending.expire.insert(key.to_vec());
    }
    let grew = (pending.index.len(), pending.expire.len()) != before;
    if grew && !pending.scheduled {
        pending.scheduled = schedule(ctx);
    }
    raw::REDISMODULE_OK as c_int
}

/// Arranges for `apply` to run: a post-notification job where the server has them,
/// else (Redis 7.0) a module timer of 0 ms, which fires once the event loop is done
/// with the commands at hand (a before-sleep hook would cost every iteration a module
/// context, and cannot unsubscribe itself safely).
fn schedule(ctx: *mut RedisModuleCtx) -> bool {
    // SAFETY: called from a keyspace-event callback with its ctx; no private data.
    unsafe {
        match raw::RedisModule_AddPostNotificationJob {
            Some(add_job) => add_job(ctx, Some(post_job), ptr::null_mut(), None) == raw::REDISMODULE_OK as c_int,
            None => {
                raw::RedisModule_CreateTimer.unwrap()(ctx, 0, Some(timer), ptr::null_mut());
                true
            }
        }
    }
}

extern "C" fn post_job(ctx: *mut RedisModuleCtx, _pd: *mut c_void) {
    pending().scheduled = false;
    // SAFETY: the job's context, live for this call.
    apply(&unsafe { Ctx::new(ctx) });
}

extern "C" fn timer(ctx: *mut RedisModuleCtx, _data: *mut c_void) {
    pending().scheduled = false;
    // SAFETY: the timer's context, live for this call.
    apply(&unsafe { Ctx::new(ctx) });
}

/// Writes what is pending: the learned index entries and the expiry of learned keys.
pub fn apply(ctx: &Ctx) {
    if !LOADED.load(Ordering::Relaxed) {
        return; // the `blob` scheme learns nothing: no lock to take
    }
    let (index, expire) = {
        let mut pending = pending();
        if pending.index.is_empty() && pending.expire.is_empty() {
            return;
        }
        (std::mem::take(&mut pending.index), std::mem::take(&mut pending.expire))
    };
    // The setting or the role may have changed since the events.
    if !learning(ctx.as_ptr()) {
        return;
    }
    let ttl = config::ttl();
    as_module(|| {
        for (repo, digest) in &index {
            let (Ok(repo), Ok(digest)) = (Repo::parse(repo), digest::parse(digest)) else { continue };
            record(ctx, repo, digest, ttl);
        }
        if ttl > 0 {
            for key in &expire {
                let key = ctx.string(key);
                ctx.open_write(&key).expire(ttl);
            }
        }
    });
}

/// Indexes one membership (a no-op when it is indexed already, or when the index key
/// holds another type); true if it was new. Written as the module's own writes are
/// (`api::WriteKey`), so replicated as `HSETNX` and `PEXPIREAT`.
pub fn record(ctx: &Ctx, repo: Repo, digest: digest::Digest, ttl: i64) -> bool {
    let name = ctx.string(keys::digest_repos(digest).as_bytes());
    let index = ctx.open_write(&name);
    let Ok(added) = index.hsetnx(&ctx.string(repo.as_bytes()), &EMPTY) else { return false };
    if ttl > 0 {
        index.expire(ttl);
    }
    added
}

/// For `LAYERCACHE.INDEX`: one `SCAN` page of distribution's repository keys from
/// `cursor`, indexing the memberships their sets and repository hashes show (work
/// bounded by `count` keys and the members of the sets among them). Returns the next
/// cursor and how many memberships were newly indexed.
pub fn index_page(ctx: &Ctx, cursor: &[u8], count: i64) -> Result<(Vec<u8>, i64), Error> {
    let (next, keys) = call!(
        ctx,
        c"SCAN",
        c"bcccl",
        cursor.as_ptr(),
        cursor.len(),
        c"MATCH".as_ptr(),
        c"repository::*".as_ptr(),
        c"COUNT".as_ptr(),
        count as std::ffi::c_longlong,
    )
    .scan_page()?;
    let ttl = config::ttl();
    let mut indexed = 0;
    for name in &keys {
        let mut found: Vec<(Repo, digest::Digest)> = vec![];
        let mut members = vec![];
        match parse_written(name) {
            Some(Written::Scoped(repo, digest)) => found.push((repo, digest)),
            Some(Written::Members(repo)) => {
                let key = ctx.string(name);
                if ctx.key_type(&key) == KeyType::Set {
                    ctx.for_each_member(&key, |m| members.push(m.to_vec()));
                }
                found.extend(members.iter().filter_map(|m| digest::parse(m).ok()).map(|d| (repo, d)));
            }
            _ => continue,
        }
        let key = ctx.string(name);
        let indexes: Vec<_> = found.iter().map(|(_, d)| ctx.string(keys::digest_repos(*d).as_bytes())).collect();
        check_acl(ctx, std::iter::once((&key, KEY_READ)).chain(indexes.iter().map(|k| (k, KEY_INSERT))))?;
        indexed += found.iter().filter(|(repo, digest)| record(ctx, *repo, *digest, ttl)).count() as i64;
    }
    Ok((next, indexed))
}
