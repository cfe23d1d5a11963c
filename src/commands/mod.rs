//! The command handlers, flat as Redis's own `t_set.c`: parse, then ask the store,
//! then reply. A handler either replies itself and returns how many hits and misses it
//! saw, or returns an error that `lib.rs` turns into the reply, having changed
//! nothing: the store checks every key before its first write.
//!
//! The handlers hold the semantics, once for both key schemes; `store` says where each
//! fact lives (DESIGN.md sections 1 and 5).

use std::collections::HashSet;

use layercache_core::repo::Repo;
use layercache_core::{digest, value};

use crate::api::{Args, Ctx, RString};
use crate::command_info::Id;
use crate::error::Error;
use crate::store::{store, Descriptor, DigestArg, Meta, NewDescriptor, RepoArg};

mod meta;
pub use meta::DATA_BYTES;
use meta::{data, link, linkdone, linkdrop, linkset, setdata};

/// Hits and misses of one call, for `INFO layercache`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub hits: u64,
    pub misses: u64,
}

const HIT: Tally = Tally { hits: 1, misses: 0 };
const MISS: Tally = Tally { hits: 0, misses: 1 };
const WRITE: Tally = Tally { hits: 0, misses: 0 };

fn hit_if(found: bool) -> Tally {
    if found {
        HIT
    } else {
        MISS
    }
}

pub type Handler = fn(&Ctx, &Args) -> Result<Tally, Error>;

/// The handler of each command of the table (`command_info`).
pub const fn handler(id: Id) -> Handler {
    match id {
        Id::Add => add,
        Id::Contains => contains,
        Id::MContains => mcontains,
        Id::SetMeta => setmeta,
        Id::Meta => meta,
        Id::Lookup => lookup,
        Id::Stat => stat,
        Id::SetDescriptor => setdescriptor,
        Id::Clear => clear,
        Id::RepoStat => repostat,
        Id::RepoSetDescriptor => reposetdescriptor,
        Id::RepoClear => repoclear,
        Id::Purge => purge,
        Id::DropRepo => droprepo,
        Id::Index => index,
        Id::Link => link,
        Id::LinkSet => linkset,
        Id::LinkDrop => linkdrop,
        Id::LinkDone => linkdone,
        Id::Data => data,
        Id::SetData => setdata,
    }
}

/// `LAYERCACHE.ADD repo digest`
pub fn add(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let (repo, digest) = (repo_arg(args, 1)?, digest_arg(args, 2)?);
    let added = store().add(ctx, repo, digest)?;
    ctx.reply_integer(added as i64);
    Ok(WRITE)
}

/// `LAYERCACHE.CONTAINS repo digest`
pub fn contains(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let (repo, digest) = (repo_arg(args, 1)?, digest_arg(args, 2)?);
    let held = store().contains(ctx, repo, digest)?;
    ctx.reply_integer(held as i64);
    Ok(hit_if(held))
}

/// `LAYERCACHE.MCONTAINS repo digest [digest ...]`
pub fn mcontains(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let repo = repo_arg(args, 1)?;
    let digests = (2..args.len()).map(|i| digest_arg(args, i)).collect::<Result<Vec<_>, _>>()?;
    let held = store().mcontains(ctx, repo, &digests)?;
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
    store().set_meta(ctx, digest, args.arg(2), args.arg(3))?;
    ctx.reply_ok();
    Ok(WRITE)
}

/// `LAYERCACHE.META digest`
pub fn meta(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let meta = store().meta(ctx, digest_arg(args, 1)?)?;
    Ok(reply_meta(ctx, meta))
}

/// `LAYERCACHE.LOOKUP repo digest`: the meta, when the repository holds the blob (the
/// registry's fetch path in one round trip).
pub fn lookup(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let (repo, digest) = (repo_arg(args, 1)?, digest_arg(args, 2)?);
    let meta = store().lookup(ctx, repo, digest)?;
    Ok(reply_meta(ctx, meta))
}

/// `LAYERCACHE.STAT digest [WITHTTL]`
pub fn stat(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let digest = digest_arg(args, 1)?;
    let with_ttl = with_ttl(args, 2)?;
    let descriptor = store().stat(ctx, digest)?;
    let ttl = (with_ttl && descriptor.is_some()).then(|| store().expiry(ctx, None, digest));
    Ok(reply_descriptor(ctx, descriptor.as_ref(), Extras { ttl, ..Extras::default() }))
}

/// `LAYERCACHE.SETDESCRIPTOR digest desc-digest size mediatype`
pub fn setdescriptor(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let digest = digest_arg(args, 1)?;
    let (_, descriptor) = descriptor_args(args, 2)?;
    store().set_descriptor(ctx, digest, &descriptor)?;
    ctx.reply_ok();
    Ok(WRITE)
}

/// `LAYERCACHE.CLEAR digest`
pub fn clear(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let removed = store().clear(ctx, digest_arg(args, 1)?)?;
    ctx.reply_integer(removed as i64);
    Ok(hit_if(removed))
}

/// `LAYERCACHE.REPOSTAT repo digest [WITHTTL] [WITHGLOBAL]`: distribution's
/// repository-scoped Stat (membership, global descriptor, repository mediatype) in one
/// step; WITHGLOBAL adds the global descriptor's own mediatype, so that one reply
/// answers the global Stat too (a blob HEAD asks both).
pub fn repostat(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let (repo, digest) = (repo_arg(args, 1)?, digest_arg(args, 2)?);
    let [with_ttl, with_global] = options(args, 3, [b"WITHTTL", b"WITHGLOBAL"])?;
    let view = store().repo_stat(ctx, repo, digest)?;
    let Some((descriptor, mediatype)) = view.and_then(|view| Some((view.descriptor?, view.mediatype.resolve()?))) else {
        return Ok(reply_descriptor(ctx, None, Extras::default()));
    };
    let extras =
        Extras { mediatype: mediatype.as_ref(), ttl: with_ttl.then(|| store().expiry(ctx, Some(repo), digest)), global: with_global };
    Ok(reply_descriptor(ctx, Some(&descriptor), extras))
}

/// Whether the optional `WITHTTL` is argument `i` (the last a Stat takes).
fn with_ttl(args: &Args, i: usize) -> Result<bool, Error> {
    options(args, i, [b"WITHTTL"]).map(|[ttl]| ttl)
}

/// Which of the optional words `names` the arguments from `first` on are: each at most
/// once, in any order; anything else is a syntax error.
fn options<const N: usize>(args: &Args, first: usize, names: [&[u8]; N]) -> Result<[bool; N], Error> {
    let mut given = [false; N];
    for i in first..args.len() {
        match names.iter().position(|name| args.bytes(i).eq_ignore_ascii_case(name)) {
            Some(j) if !given[j] => given[j] = true,
            _ => return Err(Error::Refused("ERR syntax error".into())),
        }
    }
    Ok(given)
}

/// `LAYERCACHE.REPOSETDESCRIPTOR repo digest desc-digest size mediatype`
pub fn reposetdescriptor(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let (repo, digest) = (repo_arg(args, 1)?, digest_arg(args, 2)?);
    let (canonical, descriptor) = descriptor_args(args, 3)?;
    let both = [digest, canonical];
    let digests = match digest::alias(digest.digest, canonical.digest)? {
        None => &both[..1],
        Some(_) => &both[..],
    };
    store().repo_set_descriptor(ctx, repo, digests, &descriptor)?;
    ctx.reply_ok();
    Ok(WRITE)
}

/// `LAYERCACHE.REPOCLEAR repo digest`: the membership, the repository mediatype and
/// the global descriptor go in one step, so another repository re-caching the digest
/// cannot make it visible here again (CVE-2026-35172).
pub fn repoclear(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let (repo, digest) = (repo_arg(args, 1)?, digest_arg(args, 2)?);
    let held = store().repo_clear(ctx, repo, digest)?;
    ctx.reply_integer(held as i64);
    Ok(hit_if(held))
}

/// `LAYERCACHE.PURGE digest [digest ...]`: removes every key of each digest, after
/// garbage collection deleted the blob.
pub fn purge(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let mut seen = HashSet::with_capacity(args.len());
    let mut digests = Vec::with_capacity(args.len());
    for i in 1..args.len() {
        let digest = digest_arg(args, i)?;
        if seen.insert(digest.digest.as_bytes()) {
            digests.push(digest); // a repeated digest counts once
        }
    }
    let purged = store().purge(ctx, &digests)?;
    ctx.reply_integer(purged as i64);
    Ok(Tally { hits: purged, misses: digests.len() as u64 - purged })
}

/// `LAYERCACHE.DROPREPO repo`: removes a deleted repository from the cache.
pub fn droprepo(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let held = store().drop_repo(ctx, repo_arg(args, 1)?)?;
    ctx.reply_integer(held);
    Ok(WRITE)
}

/// `LAYERCACHE.INDEX cursor [count]`: indexes memberships that plain commands wrote
/// before the module learned them (`distribution` only), one `SCAN` page per call.
pub fn index(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    // SCAN checks the cursor's range; here only its shape.
    let cursor = args.bytes(1);
    if cursor.is_empty() || cursor.len() > 20 || !cursor.iter().all(u8::is_ascii_digit) {
        return Err(Error::Refused("ERR invalid cursor".into()));
    }
    let count = match args.len() {
        2 => 100,
        3 => value::parse_size(args.bytes(2), "count")
            .ok()
            .filter(|n| (1..=MAX_INDEX_COUNT).contains(n))
            .ok_or_else(|| Error::Refused(format!("ERR count must be 1..{MAX_INDEX_COUNT}").into()))?,
        _ => return Err(Error::Refused("ERR syntax error".into())),
    };
    let (next, indexed) = store().index(ctx, cursor, count)?;
    ctx.reply_array(2);
    ctx.reply_bytes(&next);
    ctx.reply_integer(indexed);
    Ok(WRITE)
}

/// The most keys one INDEX call scans.
const MAX_INDEX_COUNT: i64 = 10_000;

/// Replies `[path, length]`, or null.
fn reply_meta(ctx: &Ctx, meta: Option<Meta>) -> Tally {
    let Some(meta) = meta else {
        ctx.reply_null();
        return MISS;
    };
    ctx.reply_array(2);
    ctx.reply_string(&meta.path);
    ctx.reply_integer(meta.length);
    HIT
}

/// Replies `[digest, size, mediatype]`, with `mediatype` in place of the stored one
/// when given, and `""` when there is none; or null.
/// A Stat's reply: `[digest, size, mediatype]`, with WITHTTL (`ttl` given) a fourth
/// element, the milliseconds until the first key read expires (-1: none does); null
/// for a miss.
/// What a Stat's reply carries beyond the stored descriptor.
#[derive(Default)]
struct Extras<'a, 'c> {
    /// The repository's mediatype, in place of the descriptor's.
    mediatype: Option<&'a RString<'c>>,
    /// WITHTTL: the milliseconds until the first key read expires (None: none does).
    ttl: Option<Option<i64>>,
    /// WITHGLOBAL: the descriptor's own mediatype after all else.
    global: bool,
}

/// `[digest, size, mediatype, (ttl), (global mediatype)]`, or null; mediatype `""` when
/// absent.
fn reply_descriptor(ctx: &Ctx, descriptor: Option<&Descriptor>, extras: Extras) -> Tally {
    let Some(d) = descriptor else {
        ctx.reply_null();
        return MISS;
    };
    let reply_mediatype = |m: Option<&RString>| match m {
        Some(m) => ctx.reply_string(m),
        None => ctx.reply_bytes(b""),
    };
    ctx.reply_array(3 + extras.ttl.is_some() as usize + extras.global as usize);
    ctx.reply_string(&d.digest);
    ctx.reply_integer(d.size);
    reply_mediatype(extras.mediatype.or(d.mediatype.as_ref()));
    if let Some(ttl) = extras.ttl {
        ctx.reply_integer(ttl.unwrap_or(-1));
    }
    if extras.global {
        reply_mediatype(d.mediatype.as_ref());
    }
    HIT
}

/// Validates the descriptor arguments `desc-digest size mediatype` at `first..`.
fn descriptor_args<'a>(args: &Args<'a>, first: usize) -> Result<(DigestArg<'a>, NewDescriptor), Error> {
    let canonical = digest_arg(args, first)?;
    value::parse_size(args.bytes(first + 1), "size")?;
    value::check_mediatype(args.bytes(first + 2))?;
    Ok((canonical, NewDescriptor { digest: args.arg(first), size: args.arg(first + 1), mediatype: args.arg(first + 2) }))
}

fn repo_arg<'a>(args: &Args<'a>, i: usize) -> Result<RepoArg<'a>, Error> {
    Ok(RepoArg { repo: Repo::parse(args.bytes(i))?, arg: args.arg(i) })
}

fn digest_arg<'a>(args: &Args<'a>, i: usize) -> Result<DigestArg<'a>, Error> {
    Ok(DigestArg { digest: digest::parse(args.bytes(i))?, arg: args.arg(i) })
}
