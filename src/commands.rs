//! The command handlers, flat as Redis's own `t_set.c`: parse, check permissions,
//! check key types, then read or write, then reply. Arity is checked before a handler
//! runs (see `dispatch`). A handler either replies itself and returns how many hits and
//! misses it saw, or returns an error that `dispatch` turns into the reply, having
//! changed nothing: every check comes before the first write.

use layercache_core::digest::{self, Digest};
use layercache_core::keys::{self, Repo};
use layercache_core::value;

use crate::api::{call, Args, Ctx, KeyType, RString, KEY_INSERT, KEY_READ, KEY_UPDATE};
use crate::config;
use crate::error::Error;

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
    expect_types(ctx, &[(&members, KeyType::Set), (&index, KeyType::Set)])?;

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
    expect_types(ctx, &[(&blob, KeyType::Hash)])?;

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

/// Replies `[path, length]` from the blob hash, or null when either is missing.
fn reply_meta(ctx: &Ctx, blob: &RString) -> Result<Tally, Error> {
    match ctx.hash_get(blob, [c"path", c"length"])? {
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

/// Gives every key a write touched the configured expiry (`layercache.ttl`).
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
