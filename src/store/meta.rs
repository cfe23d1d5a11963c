//! The metadata cache (DESIGN.md section 7), over the keys each scheme's [`Store`]
//! names: a repository's links in one hash (a field per link path), and a blob's
//! bytes in its hash's field `data`. The same for both schemes, so here once.
//!
//! Why a generation: a registry fills the cache with what it read from storage, and
//! that read may predate a write another instance has made since. LINK answers the
//! hash's generation (`gen`) beside the entry; LINKSET stores only while it is
//! unchanged; every drop bumps it.
//!
//! Why writes in flight: a registry brackets each storage write to links with LINKDROP
//! (a write begins: its links dropped, `writes` + 1, `hold` at least `hold-ms` away)
//! and LINKDONE (it ended: its links dropped again, `writes` - 1). While a write is in
//! flight no fill is stored, so a LINKDONE that never arrives (a registry killed, Redis
//! unreachable) cannot leave a fill of the old value behind: the count lapses at
//! `hold`, by when the storage write is over. LINKDONE may store the value just written
//! (a mount's link), but only when no other write is in flight: two writers of one
//! link cannot leave the older's value.

use layercache_core::link;

use super::{corrupt, expire_open, write_one, DATA, GEN, HOLD, WRITES};
use crate::api::{now_ms, ArgString, AsString, Ctx, RString};
use crate::error::Error;

/// A link as LINK reads it: the hash's generation, and the entry (`None`: not cached;
/// empty: cached as absent).
pub struct Link<'c> {
    pub gen: i64,
    pub value: Option<RString<'c>>,
}

/// The most a LINKDROP may hold fills for: an hour.
pub const MAX_HOLD_MS: i64 = 3_600_000;

/// A counter field of the links hash at `key` (absent: 0).
fn counter(key: &RString, value: Option<RString>) -> Result<i64, Error> {
    value.map_or(Ok(0), |v| v.to_integer().filter(|&n| n >= 0).ok_or_else(|| corrupt(key)))
}

/// What the links hash says of itself: its generation, and the writes in flight (the
/// count, lapsed at the hold's end).
#[derive(Default, Clone, Copy)]
struct State {
    gen: i64,
    hold: i64,
    writes: i64,
}

impl State {
    fn read(ctx: &Ctx, key: &RString) -> Result<Option<State>, Error> {
        let Some([gen, hold, writes]) = ctx.hash_get(key, [&GEN, &HOLD, &WRITES])? else {
            return Ok(None);
        };
        Ok(Some(State { gen: counter(key, gen)?, hold: counter(key, hold)?, writes: counter(key, writes)? }))
    }

    /// The state after one more drop: the generation bumped (one stored at the largest
    /// number is corrupt, never wrapped round to an old one).
    fn bumped(mut self, key: &RString) -> Result<State, Error> {
        self.gen = self.gen.checked_add(1).ok_or_else(|| corrupt(key))?;
        Ok(self)
    }

    /// The writes in flight now: none once the hold has ended.
    fn in_flight(&self, now: i64) -> i64 {
        if self.hold > now {
            self.writes
        } else {
            0
        }
    }
}

/// LINK: the entry at `path` of the links hash at `key`, and its generation.
pub fn link<'c>(ctx: &'c Ctx, key: &RString, path: &dyn AsString) -> Result<Link<'c>, Error> {
    let Some([gen, value]) = ctx.hash_get(key, [&GEN, path])? else {
        return Ok(Link { gen: 0, value: None });
    };
    Ok(Link { gen: counter(key, gen)?, value })
}

/// LINKSET: stores `value` at `path` if the generation is still `gen` and no write is
/// in flight; true if it did.
pub fn link_set(ctx: &Ctx, key: &RString, gen: i64, path: ArgString, value: ArgString) -> Result<bool, Error> {
    let state = State::read(ctx, key)?.unwrap_or_default();
    if state.gen != gen || state.in_flight(now_ms()) > 0 {
        return Ok(false);
    }
    write_one(ctx, key, |links| links.hset(&[(&path, &value)]))?;
    Ok(true)
}

/// LINKDROP: removes every link at or under each of `prefixes` and bumps the
/// generation; with `hold_ms` > 0 a write begins: one more in flight, the hold at least
/// `hold_ms` from now. Returns how many links it removed.
pub fn link_drop(ctx: &Ctx, key: &RString, prefixes: &[&[u8]], hold_ms: i64) -> Result<i64, Error> {
    let state = State::read(ctx, key)?;
    let (now, mut next) = (now_ms(), state.unwrap_or_default().bumped(key)?);
    if hold_ms > 0 {
        next.writes = next.in_flight(now).saturating_add(1);
        next.hold = next.hold.max(now + hold_ms);
    }
    update(ctx, key, state.is_none(), next, prefixes, None)
}

/// LINKDONE: a write that LINKDROP began has ended: one fewer in flight, the links at
/// or under `prefix` removed, the generation bumped; with `value`, stored at `prefix`
/// (a link) when no other write is in flight. Returns whether it stored the value.
pub fn link_done(ctx: &Ctx, key: &RString, prefix: &[u8], value: Option<ArgString>) -> Result<bool, Error> {
    let state = State::read(ctx, key)?;
    let (now, mut next) = (now_ms(), state.unwrap_or_default().bumped(key)?);
    next.writes = (next.in_flight(now) - 1).max(0);
    let store = value.filter(|_| next.writes == 0);
    update(ctx, key, state.is_none(), next, &[prefix], store.as_ref())?;
    Ok(store.is_some())
}

/// Writes `next` to the links hash, then removes the links under `prefixes`, then
/// stores `value` at the first prefix. The state first, so that the key never empties
/// (and loses its expiry); a key this creates gets the configured expiry, an existing
/// one keeps its own. Returns how many links it removed.
fn update(ctx: &Ctx, key: &RString, new: bool, next: State, prefixes: &[&[u8]], value: Option<&ArgString>) -> Result<i64, Error> {
    // A link is one field; a directory needs the hash's field names.
    let mut doomed: Vec<Vec<u8>> = prefixes.iter().filter(|p| p.ends_with(b"/link")).map(|p| p.to_vec()).collect();
    if doomed.len() < prefixes.len() {
        ctx.for_each_member(key, |field| {
            if field.starts_with(b"_") && prefixes.iter().any(|p| !p.ends_with(b"/link") && link::is_under(field, p)) {
                doomed.push(field.to_vec());
            }
        });
    }
    let links = ctx.open_write(key);
    let number = |n: i64| ctx.string(n.to_string().as_bytes());
    let (gen, hold, writes) = (number(next.gen), number(next.hold), number(next.writes));
    links.hset(&[(&GEN, &gen), (&HOLD, &hold), (&WRITES, &writes)])?;
    if new {
        expire_open(&links);
    }
    let mut removed = 0;
    for chunk in doomed.chunks(3) {
        let names: Vec<RString> = chunk.iter().map(|f| ctx.string(f)).collect();
        let fields: Vec<&dyn AsString> = names.iter().map(|f| f as &dyn AsString).collect();
        removed += links.hdel(&fields)?;
    }
    if let (Some(value), Some(path)) = (value, prefixes.first()) {
        let path = ctx.string(path);
        links.hset(&[(&path, value)])?;
    }
    Ok(removed)
}

/// DATA: the blob's cached bytes.
pub fn data<'c>(ctx: &'c Ctx, key: &RString) -> Result<Option<RString<'c>>, Error> {
    Ok(ctx.hash_get(key, [&DATA])?.and_then(|[data]| data))
}

/// SETDATA: stores the blob's bytes (checked against its digest by the caller).
pub fn set_data(ctx: &Ctx, key: &RString, bytes: ArgString) -> Result<(), Error> {
    write_one(ctx, key, |blob| blob.hset(&[(&DATA, &bytes)]))
}
