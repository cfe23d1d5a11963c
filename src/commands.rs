//! The command handlers, flat as Redis's own `t_set.c`: parse, check permissions,
//! check key types, then read or write, then reply. Arity is checked before a handler
//! runs (see `dispatch`). A handler either replies itself and returns how many hits and
//! misses it saw, or returns an error that `dispatch` turns into the reply, having
//! changed nothing: every check comes before the first write.
//!
//! The handlers hold the semantics of both key schemes; `scheme` says where each fact
//! is stored.

use std::collections::HashSet;

use layercache_core::digest::{self, Digest};
use layercache_core::keys::Repo;
use layercache_core::{value, InputError};

use crate::api::{call, Args, Ctx, Field, KeyType, RString, KEY_DELETE, KEY_INSERT, KEY_READ, KEY_UPDATE};
use crate::config::{self, Scheme};
use crate::error::Error;
use crate::info;
use crate::learn;
use crate::scheme::{self, blob, check_acl, Holding};

/// The hash fields the commands read (distribution's names).
pub static PATH: Field = Field::new(c"path");
pub static LENGTH: Field = Field::new(c"length");
pub static DIGEST: Field = Field::new(c"digest");
pub static SIZE: Field = Field::new(c"size");
pub static MEDIATYPE: Field = Field::new(c"mediatype");
pub static FIELDS: [&Field; 5] = [&PATH, &LENGTH, &DIGEST, &SIZE, &MEDIATYPE];

/// Hits and misses of one call, for `INFO layercache`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub hits: u64,
    pub misses: u64,
}

const HIT: Tally = Tally { hits: 1, misses: 0 };
const MISS: Tally = Tally { hits: 0, misses: 1 };
const WRITE: Tally = Tally { hits: 0, misses: 0 };

pub type Handler = fn(&Ctx, &Args) -> Result<Tally, Error>;

/// `LAYERCACHE.ADD repo digest`
pub fn add(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let holding = holding_args(ctx, args, 1, 2, scheme::ADDING)?;
    check_acl(ctx, holding.acl(KEY_INSERT))?;
    expect_types(ctx, &holding.types())?;

    let added = holding.add(ctx)?;
    expire(ctx, holding.keys())?;
    ctx.reply_integer(added as i64);
    Ok(WRITE)
}

/// `LAYERCACHE.CONTAINS repo digest`
pub fn contains(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let holding = holding_args(ctx, args, 1, 2, scheme::MEMBERSHIP)?;
    check_acl(ctx, holding.acl(KEY_READ))?;

    let held = holding.exists(ctx)?;
    ctx.reply_integer(held as i64);
    Ok(if held { HIT } else { MISS })
}

/// `LAYERCACHE.MCONTAINS repo digest [digest ...]`
pub fn mcontains(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let repo = repo_arg(args, 1)?;
    let digests = (2..args.len()).map(|i| digest_arg(args, i)).collect::<Result<Vec<_>, _>>()?;
    let held = scheme::held_each(ctx, repo, &digests, args)?;
    ctx.reply_array(held.len());
    for &h in &held {
        ctx.reply_integer(h as i64);
    }
    let hits = held.iter().filter(|&&h| h).count() as u64;
    Ok(Tally { hits, misses: held.len() as u64 - hits })
}

/// `LAYERCACHE.SETMETA digest path length`
pub fn setmeta(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let digest = digest_arg(args, 1)?;
    value::check_path(args.bytes(2))?;
    value::parse_size(args.bytes(3), "length")?;
    let blob = blob(ctx, digest);
    check_acl(ctx, [(&blob, KEY_INSERT | KEY_UPDATE)])?;

    // One key, one HSET: a wrong type fails it before anything is written.
    // The length is canonical, so its argument bytes are what HSET of the number stores.
    call!(ctx, c"HSET", c"!scscs", blob.as_ptr(), c"path".as_ptr(), args.raw(2), c"length".as_ptr(), args.raw(3))
        .check()?;
    expire(ctx, [&blob])?;
    ctx.reply_ok();
    Ok(WRITE)
}

/// `LAYERCACHE.META digest`
pub fn meta(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let blob = blob(ctx, digest_arg(args, 1)?);
    check_acl(ctx, [(&blob, KEY_READ)])?;
    reply_meta(ctx, &blob)
}

/// `LAYERCACHE.LOOKUP repo digest`
pub fn lookup(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let holding = holding_args(ctx, args, 1, 2, scheme::MEMBERSHIP)?;
    let blob = blob(ctx, digest_arg(args, 2)?);
    check_acl(ctx, holding.acl(KEY_READ).chain([(&blob, KEY_READ)]))?;

    if !holding.exists(ctx)? {
        ctx.reply_null();
        return Ok(MISS);
    }
    reply_meta(ctx, &blob)
}

/// `LAYERCACHE.STAT digest`
pub fn stat(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let blob = blob(ctx, digest_arg(args, 1)?);
    check_acl(ctx, [(&blob, KEY_READ)])?;

    match descriptor(ctx, &blob)? {
        Some(found) => {
            found.reply(ctx, None);
            Ok(HIT)
        }
        None => {
            ctx.reply_null();
            Ok(MISS)
        }
    }
}

/// `LAYERCACHE.SETDESCRIPTOR digest desc-digest size mediatype`
pub fn setdescriptor(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let digest = digest_arg(args, 1)?;
    check_descriptor(args, 2)?;
    let blob = blob(ctx, digest);
    check_acl(ctx, [(&blob, KEY_INSERT | KEY_UPDATE)])?;

    // One key: the first write fails on a wrong type before anything is written.
    write_descriptor(ctx, &blob, args, 2)?;
    expire(ctx, [&blob])?;
    ctx.reply_ok();
    Ok(WRITE)
}

/// `LAYERCACHE.CLEAR digest`
pub fn clear(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let blob = blob(ctx, digest_arg(args, 1)?);
    check_acl(ctx, [(&blob, KEY_DELETE)])?;

    let removed = delete_descriptor(ctx, &blob)?;
    ctx.reply_integer(removed as i64);
    Ok(if removed { HIT } else { MISS })
}

/// `LAYERCACHE.REPOSTAT repo digest`: distribution's repository-scoped Stat
/// (membership, global descriptor, repository mediatype) in one step.
pub fn repostat(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let holding = holding_args(ctx, args, 1, 2, scheme::WITH_MEDIATYPE)?;
    let blob = blob(ctx, digest_arg(args, 2)?);
    check_acl(ctx, holding.acl(KEY_READ).chain([(&blob, KEY_READ)]))?;

    if !holding.exists(ctx)? {
        ctx.reply_null();
        return Ok(MISS);
    }
    let Some(found) = descriptor(ctx, &blob)? else {
        ctx.reply_null();
        return Ok(MISS);
    };
    // distribution treats a missing repository mediatype as an unknown blob; an empty
    // one leaves the global mediatype.
    let Some(mediatype) = holding.mediatype(ctx)? else {
        ctx.reply_null();
        return Ok(MISS);
    };
    let mediatype = (!mediatype.as_bytes().is_empty()).then_some(mediatype);
    found.reply(ctx, mediatype.as_ref());
    Ok(HIT)
}

/// `LAYERCACHE.REPOSETDESCRIPTOR repo digest desc-digest size mediatype`
pub fn reposetdescriptor(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let (repo, digest) = (repo_arg(args, 1)?, digest_arg(args, 2)?);
    let canonical = check_descriptor(args, 3)?;
    // A blob is written under every algorithm it is known by: a sha384 key for a
    // sha256 blob writes both. Two values of one algorithm cannot name one blob.
    let alias = match canonical {
        d if d == digest => None,
        d if d.algorithm() == digest.algorithm() => return Err(InputError::DigestMismatch.into()),
        d => Some(d),
    };
    let mut writes = vec![(Holding::new(ctx, repo, digest, args.raw(1), args.raw(2), scheme::ALL), blob(ctx, digest))];
    writes.extend(alias.map(|d| (Holding::new(ctx, repo, d, args.raw(1), args.raw(3), scheme::ALL), blob(ctx, d))));

    let (mut acl, mut types) = (vec![], vec![]);
    for (holding, blob) in &writes {
        acl.extend(holding.acl(KEY_INSERT | KEY_UPDATE));
        acl.push((blob, KEY_INSERT | KEY_UPDATE));
        types.extend(holding.types());
        types.push((blob, KeyType::Hash));
    }
    check_acl(ctx, acl)?;
    expect_types(ctx, &types)?;

    for (holding, blob) in &writes {
        holding.record(ctx, args.raw(5))?;
        write_descriptor(ctx, blob, args, 3)?;
        expire(ctx, holding.keys().chain([blob]))?;
    }
    ctx.reply_ok();
    Ok(WRITE)
}

/// `LAYERCACHE.REPOCLEAR repo digest`: the membership, the repository mediatype and
/// the global descriptor go in one step, so another repository re-caching the digest
/// cannot make it visible here again (CVE-2026-35172).
pub fn repoclear(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let holding = holding_args(ctx, args, 1, 2, scheme::ALL)?;
    let blob = blob(ctx, digest_arg(args, 2)?);
    check_acl(ctx, holding.acl(KEY_DELETE).chain([(&blob, KEY_DELETE)]))?;

    if !holding.exists(ctx)? {
        ctx.reply_integer(0);
        return Ok(MISS);
    }
    let mut types = holding.types();
    types.push((&blob, KeyType::Hash));
    expect_types(ctx, &types)?;
    // A removal leaves the remaining keys' expiry as it was (DESIGN.md section 4).
    holding.remove(ctx)?;
    delete_descriptor(ctx, &blob)?;
    ctx.reply_integer(1);
    Ok(HIT)
}

/// `LAYERCACHE.PURGE digest [digest ...]`: removes every key of each digest, after
/// garbage collection deleted the blob.
pub fn purge(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let mut seen = HashSet::with_capacity(args.len());
    let mut digests: Vec<(Digest, usize)> = Vec::with_capacity(args.len());
    for i in 1..args.len() {
        let digest = digest_arg(args, i)?;
        if seen.insert(digest.as_bytes()) {
            digests.push((digest, i)); // a repeated digest counts once
        }
    }
    let purged = scheme::purge(ctx, &digests, args)?;
    info::count_purged(purged);
    ctx.reply_integer(purged as i64);
    Ok(Tally { hits: purged, misses: digests.len() as u64 - purged })
}

/// `LAYERCACHE.DROPREPO repo`: removes a deleted repository from the cache. Only the
/// `distribution` scheme keeps the per-repository index this needs.
pub fn droprepo(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let repo = repo_arg(args, 1)?;
    if config::scheme() == Scheme::Blob {
        return Err(Error::Redis("ERR DROPREPO needs scheme distribution".into()));
    }
    let held = scheme::drop_repo(ctx, repo, args)?;
    ctx.reply_integer(held);
    Ok(WRITE)
}

/// `LAYERCACHE.INDEX cursor [count]`: indexes memberships that plain commands wrote
/// before the module learned them (`distribution` only), one `SCAN` page per call.
pub fn index(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    if config::scheme() == Scheme::Blob {
        return Err(Error::Redis("ERR INDEX needs scheme distribution".into()));
    }
    // SCAN checks the cursor's range; here only its shape.
    let cursor = args.bytes(1);
    if cursor.is_empty() || cursor.len() > 20 || !cursor.iter().all(u8::is_ascii_digit) {
        return Err(Error::Redis("ERR invalid cursor".into()));
    }
    let count = match args.len() {
        2 => 100,
        3 => value::parse_size(args.bytes(2), "count").ok().filter(|n| (1..=MAX_INDEX_COUNT).contains(n)).ok_or_else(|| {
            Error::Redis(format!("ERR count must be 1..{MAX_INDEX_COUNT}"))
        })?,
        _ => return Err(Error::Redis("ERR syntax error".into())),
    };
    let (next, indexed) = learn::index_page(ctx, cursor, count)?;
    ctx.reply_array(2);
    ctx.reply_bytes(&next);
    ctx.reply_integer(indexed);
    Ok(WRITE)
}

/// The most keys one INDEX call scans.
const MAX_INDEX_COUNT: i64 = 10_000;

/// A descriptor read from a blob hash: the stored canonical digest, size and mediatype.
struct Descriptor<'c> {
    digest: RString<'c>,
    size: i64,
    mediatype: Option<RString<'c>>,
}

impl Descriptor<'_> {
    /// Replies `[digest, size, mediatype]`, with `mediatype` in place of the stored
    /// one when given, and `""` when there is none.
    fn reply(&self, ctx: &Ctx, mediatype: Option<&RString>) {
        ctx.reply_array(3);
        ctx.reply_string(&self.digest);
        ctx.reply_integer(self.size);
        match mediatype.or(self.mediatype.as_ref()) {
            Some(m) => ctx.reply_string(m),
            None => ctx.reply_bytes(b""),
        }
    }
}

/// The descriptor in `blob`, or `None` when `digest` or `size` is missing (distribution
/// reads a missing `size` as an unknown blob).
fn descriptor<'c>(ctx: &'c Ctx, blob: &RString) -> Result<Option<Descriptor<'c>>, Error> {
    let Some([Some(digest), Some(size), mediatype]) = ctx.hash_get(blob, [&DIGEST, &SIZE, &MEDIATYPE])? else {
        return Ok(None);
    };
    let size = size.to_integer().filter(|&n| n >= 0).ok_or_else(|| corrupt(blob))?;
    digest::parse(digest.as_bytes()).map_err(|_| corrupt(blob))?;
    Ok(Some(Descriptor { digest, size, mediatype }))
}

/// Validates the descriptor arguments `desc-digest size mediatype` at `first..`;
/// returns the descriptor's digest.
fn check_descriptor<'a>(args: &Args<'a>, first: usize) -> Result<Digest<'a>, Error> {
    let canonical = digest_arg(args, first)?;
    value::parse_size(args.bytes(first + 1), "size")?;
    value::check_mediatype(args.bytes(first + 2))?;
    Ok(canonical)
}

/// distribution's setDescriptor: `digest` and `size` overwritten, `mediatype` only if
/// absent (first writer wins). The arguments `desc-digest size mediatype` start at `first`.
fn write_descriptor(ctx: &Ctx, blob: &RString, args: &Args, first: usize) -> Result<(), Error> {
    call!(ctx, c"HSET", c"!scscs", blob.as_ptr(), c"digest".as_ptr(), args.raw(first), c"size".as_ptr(), args.raw(first + 1))
        .check()?;
    call!(ctx, c"HSETNX", c"!scs", blob.as_ptr(), c"mediatype".as_ptr(), args.raw(first + 2)).check()?;
    Ok(())
}

/// Removes the descriptor fields of `blob`, keeping its meta; true if any was there.
fn delete_descriptor(ctx: &Ctx, blob: &RString) -> Result<bool, Error> {
    let removed = call!(ctx, c"HDEL", c"!sccc", blob.as_ptr(), c"digest".as_ptr(), c"size".as_ptr(), c"mediatype".as_ptr())
        .integer()?;
    Ok(removed > 0)
}

/// Replies `[path, length]` from the blob hash, or null when either is missing.
fn reply_meta(ctx: &Ctx, blob: &RString) -> Result<Tally, Error> {
    match ctx.hash_get(blob, [&PATH, &LENGTH])? {
        Some([Some(path), Some(length)]) => {
            let length = length.to_integer().ok_or_else(|| corrupt(blob))?;
            ctx.reply_array(2);
            ctx.reply_string(&path);
            ctx.reply_integer(length);
            Ok(HIT)
        }
        _ => {
            ctx.reply_null();
            Ok(MISS)
        }
    }
}

/// The holding named by the repository and digest arguments `repo_at` and `digest_at`.
fn holding_args<'c>(ctx: &'c Ctx, args: &Args, repo_at: usize, digest_at: usize, parts: scheme::Parts) -> Result<Holding<'c>, Error> {
    let (repo, digest) = (repo_arg(args, repo_at)?, digest_arg(args, digest_at)?);
    Ok(Holding::new(ctx, repo, digest, args.raw(repo_at), args.raw(digest_at), parts))
}

fn repo_arg<'a>(args: &Args<'a>, i: usize) -> Result<Repo<'a>, Error> {
    Ok(Repo::parse(args.bytes(i))?)
}

fn digest_arg<'a>(args: &Args<'a>, i: usize) -> Result<Digest<'a>, Error> {
    Ok(digest::parse(args.bytes(i))?)
}

/// Each key must hold `want` or not exist; checked before any write so that a
/// WRONGTYPE leaves the keyspace as it was.
pub fn expect_types(ctx: &Ctx, keys: &[(&RString, KeyType)]) -> Result<(), Error> {
    for (key, want) in keys {
        match ctx.key_type(key) {
            KeyType::Empty => {}
            found if found == *want => {}
            _ => return Err(Error::WrongType),
        }
    }
    Ok(())
}

/// Gives every key a write touched the configured expiry (`layercache.ttl`); a key the
/// write removed is simply not there to expire.
pub fn expire<'k, 'c: 'k>(ctx: &Ctx, keys: impl IntoIterator<Item = &'k RString<'c>>) -> Result<(), Error> {
    let ttl = config::ttl();
    if ttl > 0 {
        for key in keys {
            call!(ctx, c"EXPIRE", c"!sl", key.as_ptr(), ttl).check()?;
        }
    }
    Ok(())
}

fn corrupt(key: &RString) -> Error {
    Error::Corrupt(String::from_utf8_lossy(key.as_bytes()).into_owned())
}
