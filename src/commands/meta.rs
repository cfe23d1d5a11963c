//! The metadata cache's handlers (DESIGN.md section 7): LINK, LINKSET, LINKDROP,
//! LINKDONE over a repository's links, DATA and SETDATA over a blob's bytes. The
//! generation and writes-in-flight rules are `store::meta`'s.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use layercache_core::{digest, link, value, InputError};

use super::{digest_arg, hit_if, repo_arg, with_ttl, Tally, HIT, MISS, WRITE};
use crate::api::{Args, Ctx, KEY_DELETE, KEY_INSERT, KEY_READ, KEY_UPDATE};
use crate::error::Error;
use crate::store::{meta, store};

/// `LAYERCACHE.LINK repo path [WITHTTL]`: `[gen, entry]` of the metadata cache (entry
/// null: not cached; `""`: cached as absent), with WITHTTL the key's milliseconds left.
pub fn link(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let repo = repo_arg(args, 1)?;
    link::check(args.bytes(2))?;
    let with_ttl = with_ttl(args, 3)?;
    let key = store().links_key(ctx, repo, KEY_READ)?;
    let found = meta::link(ctx, &key, &args.arg(2))?;
    ctx.reply_array(if with_ttl { 3 } else { 2 });
    ctx.reply_integer(found.gen);
    match &found.value {
        Some(value) => ctx.reply_string(value),
        None => ctx.reply_null(),
    }
    if with_ttl {
        ctx.reply_integer(ctx.pttl(&key).unwrap_or(-1));
    }
    Ok(hit_if(found.value.is_some()))
}

/// `LAYERCACHE.LINKSET repo gen path value`: a fill, stored only if the generation is
/// still `gen` and no write is in flight (1), else refused (0). `value` is the link's digest, or
/// `""` for a link storage does not have.
pub fn linkset(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let repo = repo_arg(args, 1)?;
    let gen = value::parse_size(args.bytes(2), "gen")?;
    link::check(args.bytes(3))?;
    link_value(args.bytes(4))?;
    let key = store().links_key(ctx, repo, KEY_INSERT | KEY_UPDATE)?;
    let stored = meta::link_set(ctx, &key, gen, args.arg(3), args.arg(4))?;
    ctx.reply_integer(stored as i64);
    Ok(WRITE)
}

/// `LAYERCACHE.LINKDROP repo hold-ms path [path ...]`: removes the links at or under
/// each path (`""`: all) and bumps the generation; with `hold-ms` > 0 a registry's
/// write to them begins, and no fill is stored until LINKDONE or `hold-ms`.
pub fn linkdrop(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let repo = repo_arg(args, 1)?;
    let hold = value::parse_size(args.bytes(2), "hold")?;
    if hold > meta::MAX_HOLD_MS {
        return Err(InputError::Size { field: "hold", reason: "over 3600000 ms" }.into());
    }
    let prefixes = (3..args.len()).map(|i| link::check_prefix(args.bytes(i))).collect::<Result<Vec<_>, _>>()?;
    let key = store().links_key(ctx, repo, KEY_DELETE | KEY_UPDATE)?;
    let removed = meta::link_drop(ctx, &key, &prefixes, hold)?;
    ctx.reply_integer(removed);
    Ok(WRITE)
}

/// `LAYERCACHE.LINKDONE repo path [value]`: the write LINKDROP began has ended; its
/// links go again and, with `value` (`path` a link), the value written is stored when
/// no other write is in flight (1), else not (0).
pub fn linkdone(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let repo = repo_arg(args, 1)?;
    let path = link::check_prefix(args.bytes(2))?;
    let value = match args.len() {
        3 => None,
        4 => {
            link::check(path)?;
            link_value(args.bytes(3))?;
            Some(args.arg(3))
        }
        _ => return Err(Error::Refused("ERR syntax error".into())),
    };
    let key = store().links_key(ctx, repo, KEY_DELETE | KEY_UPDATE)?;
    let stored = meta::link_done(ctx, &key, path, value)?;
    ctx.reply_integer(stored as i64);
    Ok(WRITE)
}

/// A link's value: its digest, or `""` for a link storage does not have.
fn link_value(bytes: &[u8]) -> Result<(), Error> {
    if !bytes.is_empty() {
        digest::parse(bytes)?;
    }
    Ok(())
}

/// `LAYERCACHE.DATA digest [WITHTTL]`: the blob's cached bytes, or null; with WITHTTL
/// `[bytes, ttl]`.
pub fn data(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let digest = digest_arg(args, 1)?;
    let with_ttl = with_ttl(args, 2)?;
    let key = store().blob_key(ctx, digest, KEY_READ)?;
    let Some(bytes) = meta::data(ctx, &key)? else {
        ctx.reply_null();
        return Ok(MISS);
    };
    if with_ttl {
        ctx.reply_array(2);
    }
    ctx.reply_string(&bytes);
    if with_ttl {
        ctx.reply_integer(ctx.pttl(&key).unwrap_or(-1));
    }
    Ok(HIT)
}

/// The bytes SETDATA has stored since the module loaded (`INFO layercache`).
pub static DATA_BYTES: AtomicU64 = AtomicU64::new(0);

/// The largest blob SETDATA keeps: distribution's limit on a manifest.
const MAX_DATA: usize = 4 << 20;

/// `LAYERCACHE.SETDATA digest bytes`: keeps a blob's bytes (a manifest), which must
/// hash to the digest.
pub fn setdata(ctx: &Ctx, args: &Args) -> Result<Tally, Error> {
    let digest = digest_arg(args, 1)?;
    let bytes = args.bytes(2);
    if bytes.len() > MAX_DATA {
        return Err(InputError::Size { field: "data", reason: "over 4194304 bytes" }.into());
    }
    if !digest::matches(digest.digest, bytes) {
        return Err(InputError::DigestContent.into());
    }
    let key = store().blob_key(ctx, digest, KEY_INSERT | KEY_UPDATE)?;
    meta::set_data(ctx, &key, args.arg(2))?;
    DATA_BYTES.fetch_add(bytes.len() as u64, Relaxed);
    ctx.reply_ok();
    Ok(WRITE)
}
