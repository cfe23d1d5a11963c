//! The command handlers, flat as Redis's own `t_set.c`: parse, check permissions,
//! check key types, then read or write, then reply. Arity is checked before a handler
//! runs (see `dispatch`). A handler either replies itself and returns how many hits and
//! misses it saw, or returns an error that `dispatch` turns into the reply, having
//! changed nothing: every check comes before the first write.

use layercache_core::digest::{self, Digest};
use layercache_core::keys::{self, Repo};
use layercache_core::{value, InputError};

use crate::api::{call, Args, Ctx, Field, KeyType, RString, KEY_DELETE, KEY_INSERT, KEY_READ, KEY_UPDATE};
use crate::error::Error;
use crate::{config, info};

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
    let (repo, digest) = (repo_arg(args, 1)?, digest_arg(args, 2)?);
    let members = ctx.string(keys::repository_blob_set(repo).as_bytes());
    let index = ctx.string(keys::digest_repos(digest).as_bytes());
    check_acl(ctx, &[(&members, KEY_INSERT)])?;
    // The first SADD fails on a wrong type by itself; the second must not be left to.
    expect_types(ctx, &[(&index, KeyType::Set)])?;

    let added = call!(ctx, c"SADD", c"!ss", members.as_ptr(), args.raw(2)).integer()?;
    call!(ctx, c"SADD", c"!ss", index.as_ptr(), args.raw(1)).check()?;
    expire(ctx, &[&members, &index])?;
    ctx.reply_integer(added);
    Ok(WRITE)
}

/// `LAYERCACHE.CONTAINS repo digest`
pub fn contains(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let (repo, _) = (repo_arg(args, 1)?, digest_arg(args, 2)?);
    let members = ctx.string(keys::repository_blob_set(repo).as_bytes());
    check_acl(ctx, &[(&members, KEY_READ)])?;

    let held = is_member(ctx, &members, args, 2)?;
    ctx.reply_integer(held as i64);
    Ok(if held { HIT } else { MISS })
}

/// `LAYERCACHE.MCONTAINS repo digest [digest ...]`
pub fn mcontains(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let repo = repo_arg(args, 1)?;
    for i in 2..args.len() {
        digest_arg(args, i)?;
    }
    let members = ctx.string(keys::repository_blob_set(repo).as_bytes());
    check_acl(ctx, &[(&members, KEY_READ)])?;

    let (digests, count) = args.raw_from(2);
    let reply = call!(ctx, c"SMISMEMBER", c"sv", members.as_ptr(), digests, count);
    let hits = reply.integers()?.filter(|&held| held == 1).count() as u64;
    ctx.reply_call(&reply);
    Ok(Tally { hits, misses: count as u64 - hits })
}

/// `LAYERCACHE.SETMETA digest path length`
pub fn setmeta(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let digest = digest_arg(args, 1)?;
    value::check_path(args.bytes(2))?;
    value::parse_size(args.bytes(3), "length")?;
    let blob = ctx.string(keys::blob_hash(digest).as_bytes());
    check_acl(ctx, &[(&blob, KEY_INSERT | KEY_UPDATE)])?;

    // One key, one HSET: a wrong type fails it before anything is written.
    // The length is canonical, so its argument bytes are what HSET of the number stores.
    call!(ctx, c"HSET", c"!scscs", blob.as_ptr(), c"path".as_ptr(), args.raw(2), c"length".as_ptr(), args.raw(3))
        .check()?;
    expire(ctx, &[&blob])?;
    ctx.reply_ok();
    Ok(WRITE)
}

/// `LAYERCACHE.META digest`
pub fn meta(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let digest = digest_arg(args, 1)?;
    let blob = ctx.string(keys::blob_hash(digest).as_bytes());
    check_acl(ctx, &[(&blob, KEY_READ)])?;
    reply_meta(ctx, &blob)
}

/// `LAYERCACHE.LOOKUP repo digest`
pub fn lookup(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let (repo, digest) = (repo_arg(args, 1)?, digest_arg(args, 2)?);
    let members = ctx.string(keys::repository_blob_set(repo).as_bytes());
    let blob = ctx.string(keys::blob_hash(digest).as_bytes());
    check_acl(ctx, &[(&members, KEY_READ), (&blob, KEY_READ)])?;

    if !is_member(ctx, &members, args, 2)? {
        ctx.reply_null();
        return Ok(MISS);
    }
    reply_meta(ctx, &blob)
}

/// `LAYERCACHE.STAT digest`
pub fn stat(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let digest = digest_arg(args, 1)?;
    let blob = ctx.string(keys::blob_hash(digest).as_bytes());
    check_acl(ctx, &[(&blob, KEY_READ)])?;

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
    let blob = ctx.string(keys::blob_hash(digest).as_bytes());
    check_acl(ctx, &[(&blob, KEY_INSERT | KEY_UPDATE)])?;

    // One key: the first write fails on a wrong type before anything is written.
    write_descriptor(ctx, &blob, args, 2)?;
    expire(ctx, &[&blob])?;
    ctx.reply_ok();
    Ok(WRITE)
}

/// `LAYERCACHE.CLEAR digest`
pub fn clear(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let digest = digest_arg(args, 1)?;
    let blob = ctx.string(keys::blob_hash(digest).as_bytes());
    check_acl(ctx, &[(&blob, KEY_DELETE)])?;

    let removed = delete_descriptor(ctx, &blob)?;
    ctx.reply_integer(removed as i64);
    Ok(if removed { HIT } else { MISS })
}

/// `LAYERCACHE.REPOSTAT repo digest`: distribution's repository-scoped Stat
/// (membership, global descriptor, repository mediatype) in one step.
pub fn repostat(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let (repo, digest) = (repo_arg(args, 1)?, digest_arg(args, 2)?);
    let members = ctx.string(keys::repository_blob_set(repo).as_bytes());
    let blob = ctx.string(keys::blob_hash(digest).as_bytes());
    let scoped = ctx.string(keys::repository_blob_hash(repo, digest).as_bytes());
    check_acl(ctx, &[(&members, KEY_READ), (&blob, KEY_READ), (&scoped, KEY_READ)])?;

    if !is_member(ctx, &members, args, 2)? {
        ctx.reply_null();
        return Ok(MISS);
    }
    let Some(found) = descriptor(ctx, &blob)? else {
        ctx.reply_null();
        return Ok(MISS);
    };
    // distribution treats a missing repository mediatype field as an unknown blob.
    let Some([Some(mediatype)]) = ctx.hash_get(&scoped, [&MEDIATYPE])? else {
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
    let members = ctx.string(keys::repository_blob_set(repo).as_bytes());
    let mut writes = vec![Scoped::new(ctx, repo, digest, 2)];
    writes.extend(alias.map(|d| Scoped::new(ctx, repo, d, 3)));

    let mut acl = vec![(&members, KEY_INSERT)];
    let mut types = vec![];
    for w in &writes {
        acl.extend([(&w.blob, KEY_INSERT | KEY_UPDATE), (&w.scoped, KEY_INSERT | KEY_UPDATE)]);
        types.extend([(&w.blob, KeyType::Hash), (&w.scoped, KeyType::Hash), (&w.index, KeyType::Set)]);
    }
    check_acl(ctx, &acl)?;
    // The membership SADD comes first and fails on a wrong type by itself.
    expect_types(ctx, &types)?;

    for w in &writes {
        call!(ctx, c"SADD", c"!ss", members.as_ptr(), args.raw(w.digest_arg)).check()?;
        write_descriptor(ctx, &w.blob, args, 3)?;
        call!(ctx, c"HSET", c"!scs", w.scoped.as_ptr(), c"mediatype".as_ptr(), args.raw(5)).check()?;
        call!(ctx, c"SADD", c"!ss", w.index.as_ptr(), args.raw(1)).check()?;
        expire(ctx, &[&w.blob, &w.scoped, &w.index])?;
    }
    expire(ctx, &[&members])?;
    ctx.reply_ok();
    Ok(WRITE)
}

/// The keys REPOSETDESCRIPTOR writes for one digest (argument `digest_arg`).
struct Scoped<'c> {
    digest_arg: usize,
    blob: RString<'c>,
    scoped: RString<'c>,
    index: RString<'c>,
}

impl<'c> Scoped<'c> {
    fn new(ctx: &'c Ctx, repo: Repo, digest: Digest, digest_arg: usize) -> Self {
        Scoped {
            digest_arg,
            blob: ctx.string(keys::blob_hash(digest).as_bytes()),
            scoped: ctx.string(keys::repository_blob_hash(repo, digest).as_bytes()),
            index: ctx.string(keys::digest_repos(digest).as_bytes()),
        }
    }
}

/// `LAYERCACHE.REPOCLEAR repo digest`: the membership, the repository hash and the
/// global descriptor go in one step, so another repository re-caching the digest
/// cannot make it visible here again (CVE-2026-35172).
pub fn repoclear(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let (repo, digest) = (repo_arg(args, 1)?, digest_arg(args, 2)?);
    let members = ctx.string(keys::repository_blob_set(repo).as_bytes());
    let blob = ctx.string(keys::blob_hash(digest).as_bytes());
    let scoped = ctx.string(keys::repository_blob_hash(repo, digest).as_bytes());
    let index = ctx.string(keys::digest_repos(digest).as_bytes());
    check_acl(ctx, &[(&members, KEY_DELETE), (&blob, KEY_DELETE), (&scoped, KEY_DELETE)])?;

    if !is_member(ctx, &members, args, 2)? {
        ctx.reply_integer(0);
        return Ok(MISS);
    }
    expect_types(ctx, &[(&blob, KeyType::Hash), (&scoped, KeyType::Hash), (&index, KeyType::Set)])?;
    call!(ctx, c"SREM", c"!ss", members.as_ptr(), args.raw(2)).check()?;
    call!(ctx, c"DEL", c"!s", scoped.as_ptr()).check()?;
    delete_descriptor(ctx, &blob)?;
    call!(ctx, c"SREM", c"!ss", index.as_ptr(), args.raw(1)).check()?;
    expire(ctx, &[&members, &blob, &index])?;
    ctx.reply_integer(1);
    Ok(HIT)
}

/// `LAYERCACHE.PURGE digest [digest ...]`: removes every key of each digest (after
/// garbage collection deleted the blob): its blob hash, and through the reverse index
/// every repository's membership and repository hash, then the index itself.
pub fn purge(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let digests = (1..args.len()).map(|i| digest_arg(args, i)).collect::<Result<Vec<_>, _>>()?;

    // Read everything first: which keys exist, of what type, and what the user may
    // delete. Only then write.
    let mut plans = Vec::with_capacity(digests.len());
    for (k, &digest) in digests.iter().enumerate() {
        if digests[..k].contains(&digest) {
            continue; // counted once
        }
        let plan = Purge::read(ctx, digest, k + 1)?;
        check_acl(ctx, &plan.acl())?;
        expect_types(ctx, &plan.types())?;
        plans.push(plan);
    }
    let mut purged = 0;
    for plan in &plans {
        purged += plan.write(ctx, args)? as u64;
    }
    info::count_purged(purged);
    ctx.reply_integer(purged as i64);
    Ok(Tally { hits: purged, misses: plans.len() as u64 - purged })
}

/// What PURGE removes for one digest.
struct Purge<'c> {
    digest_arg: usize,
    blob: RString<'c>,
    index: RString<'c>,
    /// Each indexed repository's membership set and repository hash.
    repos: Vec<(RString<'c>, RString<'c>)>,
    had_state: bool,
}

impl<'c> Purge<'c> {
    fn read(ctx: &'c Ctx, digest: Digest, digest_arg: usize) -> Result<Self, Error> {
        let blob = ctx.string(keys::blob_hash(digest).as_bytes());
        let index = ctx.string(keys::digest_repos(digest).as_bytes());
        let blob_type = ctx.key_type(&blob);
        let index_type = ctx.key_type(&index);
        let mut repos = vec![];
        if index_type == KeyType::Set {
            let names = call!(ctx, c"SMEMBERS", c"s", index.as_ptr());
            // Only names we could have written; anything else a plain client put in
            // the index names no key of ours.
            for repo in names.strings()?.filter_map(|name| Repo::parse(name).ok()) {
                repos.push((
                    ctx.string(keys::repository_blob_set(repo).as_bytes()),
                    ctx.string(keys::repository_blob_hash(repo, digest).as_bytes()),
                ));
            }
        }
        let had_state = blob_type != KeyType::Empty || index_type != KeyType::Empty;
        Ok(Purge { digest_arg, blob, index, repos, had_state })
    }

    fn acl(&self) -> Vec<(&RString<'c>, u64)> {
        let mut acl = vec![(&self.blob, KEY_DELETE)];
        for (members, scoped) in &self.repos {
            acl.extend([(members, KEY_DELETE), (scoped, KEY_DELETE)]);
        }
        acl
    }

    fn types(&self) -> Vec<(&RString<'c>, KeyType)> {
        let mut types = vec![(&self.blob, KeyType::Hash), (&self.index, KeyType::Set)];
        for (members, scoped) in &self.repos {
            types.extend([(members, KeyType::Set), (scoped, KeyType::Hash)]);
        }
        types
    }

    /// Removes it all; returns whether the digest had any cache state.
    fn write(&self, ctx: &Ctx, args: &Args) -> Result<bool, Error> {
        let mut doomed = vec![self.blob.as_ptr(), self.index.as_ptr()];
        for (members, scoped) in &self.repos {
            call!(ctx, c"SREM", c"!ss", members.as_ptr(), args.raw(self.digest_arg)).check()?;
            expire(ctx, &[members])?;
            doomed.push(scoped.as_ptr());
        }
        call!(ctx, c"DEL", c"!v", doomed.as_mut_ptr(), doomed.len()).check()?;
        Ok(self.had_state)
    }
}

/// `LAYERCACHE.DROPREPO repo`: removes a deleted repository's membership set, its
/// repository hashes and its entries in the reverse indexes.
pub fn droprepo(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let repo = repo_arg(args, 1)?;
    let members = ctx.string(keys::repository_blob_set(repo).as_bytes());
    check_acl(ctx, &[(&members, KEY_DELETE)])?;
    if ctx.key_type(&members) == KeyType::Empty {
        ctx.reply_integer(0);
        return Ok(MISS);
    }

    let listed = call!(ctx, c"SMEMBERS", c"s", members.as_ptr());
    let mut held = 0;
    let (mut scoped, mut indexes) = (vec![], vec![]);
    for member in listed.strings()? {
        held += 1;
        // A member that is not a digest names no key of ours.
        if let Ok(digest) = digest::parse(member) {
            scoped.push(ctx.string(keys::repository_blob_hash(repo, digest).as_bytes()));
            indexes.push(ctx.string(keys::digest_repos(digest).as_bytes()));
        }
    }
    check_acl(ctx, &scoped.iter().map(|k| (k, KEY_DELETE)).collect::<Vec<_>>())?;
    let mut types: Vec<_> = scoped.iter().map(|k| (k, KeyType::Hash)).collect();
    types.extend(indexes.iter().map(|k| (k, KeyType::Set)));
    expect_types(ctx, &types)?;

    for index in &indexes {
        call!(ctx, c"SREM", c"!ss", index.as_ptr(), args.raw(1)).check()?;
        expire(ctx, &[index])?;
    }
    let mut doomed: Vec<_> = std::iter::once(members.as_ptr()).chain(scoped.iter().map(RString::as_ptr)).collect();
    call!(ctx, c"DEL", c"!v", doomed.as_mut_ptr(), doomed.len()).check()?;
    ctx.reply_integer(held);
    Ok(WRITE)
}

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

fn repo_arg<'a>(args: &Args<'a>, i: usize) -> Result<Repo<'a>, Error> {
    Ok(Repo::parse(args.bytes(i))?)
}

fn digest_arg<'a>(args: &Args<'a>, i: usize) -> Result<Digest<'a>, Error> {
    Ok(digest::parse(args.bytes(i))?)
}

/// `SISMEMBER members args[i]`
fn is_member(ctx: &Ctx, members: &RString, args: &Args, i: usize) -> Result<bool, Error> {
    Ok(call!(ctx, c"SISMEMBER", c"ss", members.as_ptr(), args.raw(i)).integer()? == 1)
}

/// Checks the calling user's permission on each key, as plain commands on those keys
/// would be checked.
fn check_acl(ctx: &Ctx, keys: &[(&RString, u64)]) -> Result<(), Error> {
    let Some(user) = ctx.user() else { return Ok(()) };
    keys.iter().try_for_each(|(key, flags)| user.check(key, *flags))
}

/// Each key must hold `want` or not exist; checked before any write so that a
/// WRONGTYPE leaves the keyspace as it was.
fn expect_types(ctx: &Ctx, keys: &[(&RString, KeyType)]) -> Result<(), Error> {
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
fn expire(ctx: &Ctx, keys: &[&RString]) -> Result<(), Error> {
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
