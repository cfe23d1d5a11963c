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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use layercache_core::digest;
use layercache_core::keys::{parse_written, Written};
use layercache_core::repo::Repo;

use super::{check_acl, index_entry, reverse_index};
use crate::api::{self, call, Ctx, FilterArgs, KeyType, KEY_INSERT, KEY_READ};
use crate::config;
use crate::error::Error;
use crate::store::write_one;

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
/// primary's learned writes reach those). `ctx`: the event's, if there is one.
fn learning(ctx: Option<&Ctx>) -> bool {
    if !config::learn() || IN_MODULE.load(Ordering::Relaxed) {
        return false;
    }
    !ctx.map_or_else(api::replica_or_loading, Ctx::replica_or_loading)
}

/// Subscribes to plain writes; called at load in the `distribution` scheme.
pub fn load(ctx: &Ctx) -> Result<(), String> {
    api::subscribe_to_writes(ctx, on_write)?;
    // Our own RedisModule_Call commands are never a registry's SADD.
    api::register_filter(ctx, note_sadd)
}

/// The command filter: notes the members of `SADD repository::<repo>::blobs ...`.
fn note_sadd(args: &FilterArgs) {
    let argc = args.len();
    if argc < 3 || !args.arg(0).eq_ignore_ascii_case(b"sadd") || !learning(None) {
        return;
    }
    let key = args.arg(1);
    if !matches!(parse_written(key), Some(Written::Membership(_))) {
        return;
    }
    let digests = (2..argc).map(|i| args.arg(i)).filter(|d| digest::parse(d).is_ok()).map(<[u8]>::to_vec).collect();
    let mut pending = pending();
    if pending.sadds.len() == MAX_SADDS {
        pending.sadds.pop_front();
    }
    pending.sadds.push_back((key.to_vec(), digests));
}

/// The keyspace-event callback: records what a plain write taught, writes nothing.
fn on_write(ctx: &Ctx, event: &[u8], key: &[u8]) {
    if !learning(Some(ctx)) {
        return;
    }
    let ttl = config::ttl() > 0;
    let mut pending = pending();
    let before = (pending.index.len(), pending.expire.len());
    match (event, parse_written(key)) {
        (b"hset", Some(Written::RepositoryHash(repo, digest))) => {
            pending.index.insert((repo.as_bytes().to_vec(), digest.as_bytes().to_vec()));
        }
        (b"sadd", Some(Written::Membership(repo))) => {
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
        (b"hset", Some(Written::BlobHash(_))) => {}
        _ => return,
    }
    if ttl {
        pending.expire.insert(key.to_vec());
    }
    let grew = (pending.index.len(), pending.expire.len()) != before;
    if grew && !pending.scheduled {
        pending.scheduled = api::after_notification(ctx, apply_scheduled);
    }
}

fn apply_scheduled(ctx: &Ctx) {
    pending().scheduled = false;
    apply(ctx);
}

/// Writes what is pending: the learned index entries and the expiry of learned keys.
pub fn apply(ctx: &Ctx) {
    let (index, expire) = {
        let mut pending = pending();
        if pending.index.is_empty() && pending.expire.is_empty() {
            return;
        }
        (std::mem::take(&mut pending.index), std::mem::take(&mut pending.expire))
    };
    // The setting or the role may have changed since the events.
    if !learning(Some(ctx)) {
        return;
    }
    let ttl = config::ttl();
    as_module(|| {
        for (repo, digest) in &index {
            let (Ok(repo), Ok(digest)) = (Repo::parse(repo), digest::parse(digest)) else { continue };
            record(ctx, repo, digest);
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
/// holds another type), with the configured expiry; true if it was new.
fn record(ctx: &Ctx, repo: Repo, digest: digest::Digest) -> bool {
    write_one(ctx, &reverse_index(ctx, digest), |index| index_entry(index, &ctx.string(repo.as_bytes()))).unwrap_or(false)
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
    let mut indexed = 0;
    for name in &keys {
        let mut found: Vec<(Repo, digest::Digest)> = vec![];
        let mut members = vec![];
        match parse_written(name) {
            Some(Written::RepositoryHash(repo, digest)) => found.push((repo, digest)),
            Some(Written::Membership(repo)) => {
                let key = ctx.string(name);
                if ctx.key_type(&key) == KeyType::Set {
                    ctx.for_each_member(&key, |m| members.push(m.to_vec()));
                }
                found.extend(members.iter().filter_map(|m| digest::parse(m).ok()).map(|d| (repo, d)));
            }
            _ => continue,
        }
        let key = ctx.string(name);
        let indexes: Vec<_> = found.iter().map(|(_, d)| reverse_index(ctx, *d)).collect();
        check_acl(ctx, std::iter::once((&key, KEY_READ)).chain(indexes.iter().map(|k| (k, KEY_INSERT))))?;
        indexed += found.iter().filter(|(repo, digest)| record(ctx, *repo, *digest)).count() as i64;
    }
    Ok((next, indexed))
}
