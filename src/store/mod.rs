//! Where the cache's facts live: one [`Store`] per key scheme (DESIGN.md sections 1 and
//! 5), chosen once at load, as redis-cell adapts Redis keys to its `Store`. The
//! handlers in `commands` speak of blobs, memberships and descriptors and keep the
//! semantics; a store says in which keys and fields those live, checks the user's key
//! permissions where Redis does not, and holds its scheme's fast paths (the `blob`
//! scheme reads a command's every field with one open and one `HashGet`).
//!
//! | fact | [`Distribution`] | [`Blob`] |
//! |---|---|---|
//! | a blob's meta and descriptor | hash `blobs::<digest>` | hash `<digest>` |
//! | `repo` holds `digest` | set `repository::<repo>::blobs` ∋ digest (+ reverse index) | field `repo:<repo>` of `<digest>` |
//! | its repository mediatype | hash `repository::<repo>::blobs::<digest>`, field `mediatype` | the value of `repo:<repo>` (`""`: none) |
//! | `repo`'s cached links (`meta`) | hash `repository::<repo>::links` | hash `<repo>` |
//! | a blob's cached bytes (`meta`) | field `data` of `blobs::<digest>` | field `data` of `<digest>` |

mod blob;
mod distribution;
pub mod meta;

use layercache_core::digest::{self, Digest};
use layercache_core::repo::Repo;
pub use layercache_core::value::RepoMediatype;

use crate::api::{self, ArgString, AsString, Ctx, Field, KeyType, RString, WriteKey};
use crate::config::{self, Scheme};
use crate::error::Error;

/// The hash fields of a blob (distribution's names), made Redis strings at load.
pub static PATH: Field = Field::new(c"path");
pub static LENGTH: Field = Field::new(c"length");
pub static DIGEST: Field = Field::new(c"digest");
pub static SIZE: Field = Field::new(c"size");
pub static MEDIATYPE: Field = Field::new(c"mediatype");
/// The empty value: of an index field, of a blob-scheme membership without a mediatype.
pub static EMPTY: Field = Field::new(c"");
/// The metadata cache's fields (`meta`): a blob's bytes; a links hash's generation, its
/// writes in flight and when they lapse.
pub static DATA: Field = Field::new(c"data");
pub static GEN: Field = Field::new(c"gen");
pub static HOLD: Field = Field::new(c"hold");
pub static WRITES: Field = Field::new(c"writes");
static FIELDS: [&Field; 10] = [&PATH, &LENGTH, &DIGEST, &SIZE, &MEDIATYPE, &EMPTY, &DATA, &GEN, &HOLD, &WRITES];

/// A validated repository argument and its Redis string.
#[derive(Clone, Copy)]
pub struct RepoArg<'a> {
    pub repo: Repo<'a>,
    pub arg: ArgString,
}

/// A validated digest argument and its Redis string.
#[derive(Clone, Copy)]
pub struct DigestArg<'a> {
    pub digest: Digest<'a>,
    pub arg: ArgString,
}

/// The validated descriptor arguments `desc-digest size mediatype`.
pub struct NewDescriptor {
    pub digest: ArgString,
    pub size: ArgString,
    pub mediatype: ArgString,
}

/// A blob's layer meta.
pub struct Meta<'c> {
    pub path: RString<'c>,
    pub length: i64,
}

/// A blob's descriptor: the stored canonical digest, size and mediatype.
pub struct Descriptor<'c> {
    pub digest: RString<'c>,
    pub size: i64,
    pub mediatype: Option<RString<'c>>,
}

/// What REPOSTAT needs of a blob a repository holds.
pub struct RepoView<'c> {
    pub descriptor: Option<Descriptor<'c>>,
    pub mediatype: RepoMediatype<RString<'c>>,
}

/// The storage of one key scheme.
pub trait Store: Sync {
    /// At load: what the scheme needs beyond its commands, or why it cannot run here.
    fn on_load(&self, _ctx: &Ctx) -> Result<(), String> {
        Ok(())
    }
    /// Whether the commands name their keys as arguments (declared to Redis as key
    /// specs, so that it checks ACL key patterns and routes in a cluster).
    fn keys_are_arguments(&self) -> bool {
        false
    }
    /// Whether `repo` holds `digest`.
    fn contains(&self, ctx: &Ctx, repo: RepoArg, digest: DigestArg) -> Result<bool, Error>;
    /// Whether `repo` holds each of `digests` (arguments `first..`).
    fn mcontains(&self, ctx: &Ctx, repo: RepoArg, digests: &[DigestArg]) -> Result<Vec<bool>, Error>;
    /// Records that `repo` holds `digest`; true if it is new.
    fn add(&self, ctx: &Ctx, repo: RepoArg, digest: DigestArg) -> Result<bool, Error>;
    fn meta<'c>(&self, ctx: &'c Ctx, digest: DigestArg) -> Result<Option<Meta<'c>>, Error>;
    /// The meta of `digest` when `repo` holds it.
    fn lookup<'c>(&self, ctx: &'c Ctx, repo: RepoArg, digest: DigestArg) -> Result<Option<Meta<'c>>, Error>;
    fn set_meta(&self, ctx: &Ctx, digest: DigestArg, path: ArgString, length: ArgString) -> Result<(), Error>;
    fn stat<'c>(&self, ctx: &'c Ctx, digest: DigestArg) -> Result<Option<Descriptor<'c>>, Error>;
    /// distribution's setDescriptor: `digest` and `size` overwritten, `mediatype` only
    /// if absent (first writer wins).
    fn set_descriptor(&self, ctx: &Ctx, digest: DigestArg, descriptor: &NewDescriptor) -> Result<(), Error>;
    /// Removes the descriptor (the meta stays); true if there was one.
    fn clear(&self, ctx: &Ctx, digest: DigestArg) -> Result<bool, Error>;
    /// The milliseconds until the first key a STAT (`repo` None) or REPOSTAT of
    /// `digest` reads expires; `None` when none of them expires.
    fn expiry(&self, ctx: &Ctx, repo: Option<RepoArg>, digest: DigestArg) -> Option<i64>;
    /// The descriptor and the repository's mediatype, or `None` unless `repo` holds it.
    fn repo_stat<'c>(&self, ctx: &'c Ctx, repo: RepoArg, digest: DigestArg) -> Result<Option<RepoView<'c>>, Error>;
    /// Records that `repo` holds each of `digests`, with the descriptor and the
    /// repository mediatype, in one step (every check before the first write).
    fn repo_set_descriptor(&self, ctx: &Ctx, repo: RepoArg, digests: &[DigestArg], descriptor: &NewDescriptor) -> Result<(), Error>;
    /// Removes the membership, the repository mediatype and the descriptor, if `repo`
    /// holds `digest`; true if it did.
    fn repo_clear(&self, ctx: &Ctx, repo: RepoArg, digest: DigestArg) -> Result<bool, Error>;
    /// Removes every key of each digest; returns how many had any cache state.
    fn purge(&self, ctx: &Ctx, digests: &[DigestArg]) -> Result<u64, Error>;
    /// Removes a repository's memberships and mediatypes; returns how many digests it held.
    fn drop_repo(&self, ctx: &Ctx, repo: RepoArg) -> Result<i64, Error>;
    /// One `LAYERCACHE.INDEX` page: the next cursor and how many memberships were new.
    fn index(&self, ctx: &Ctx, cursor: &[u8], count: i64) -> Result<(Vec<u8>, i64), Error>;
    /// The hash of `repo`'s cached links, once the user may access it as `flags` say
    /// (`api::KEY_*`).
    fn links_key<'c>(&self, ctx: &'c Ctx, repo: RepoArg, flags: u64) -> Result<RString<'c>, Error>;
    /// The blob's hash, whose field `data` holds its cached bytes, once the user may
    /// access it as `flags` say.
    fn blob_key<'c>(&self, ctx: &'c Ctx, digest: DigestArg, flags: u64) -> Result<RString<'c>, Error>;
}

/// Makes the field names and sets the scheme's store up; called once at load, after
/// the settings.
pub fn load(ctx: &Ctx) -> Result<(), String> {
    FIELDS.iter().for_each(|field| field.init());
    store().on_load(ctx)
}

/// Runs one command's handler, `run` (a command that writes when `writes`), with its
/// scheme's bookkeeping around it (the `distribution` scheme's learning). Static, not
/// a `Store` method, so that it costs the commands nothing they do not use.
#[inline(always)]
pub fn command<T>(ctx: &Ctx, writes: bool, run: impl FnOnce() -> T) -> T {
    match config::scheme() {
        Scheme::Distribution => distribution::command(ctx, writes, run),
        Scheme::Blob => run(),
    }
}

/// The store of the configured scheme (fixed at load).
pub fn store() -> &'static dyn Store {
    match config::scheme() {
        Scheme::Distribution => &distribution::Distribution,
        Scheme::Blob => &blob::Blob,
    }
}

// Helpers both stores use.

fn corrupt(key: &dyn AsString) -> Error {
    Error::Corrupt(api::name_of(key))
}

/// Meta from a blob hash's `path` and `length` (`None` when either is missing).
fn meta_of<'c>(key: &dyn AsString, path: Option<RString<'c>>, length: Option<RString<'c>>) -> Result<Option<Meta<'c>>, Error> {
    let (Some(path), Some(length)) = (path, length) else {
        return Ok(None);
    };
    let length = length.to_integer().ok_or_else(|| corrupt(key))?;
    Ok(Some(Meta { path, length }))
}

/// A descriptor from a blob hash's `digest`, `size` and `mediatype` (`None` when the
/// digest or the size is missing: distribution reads that as an unknown blob).
fn descriptor_of<'c>(
    key: &dyn AsString,
    digest: Option<RString<'c>>,
    size: Option<RString<'c>>,
    mediatype: Option<RString<'c>>,
) -> Result<Option<Descriptor<'c>>, Error> {
    let (Some(digest), Some(size)) = (digest, size) else {
        return Ok(None);
    };
    let size = size.to_integer().filter(|&n| n >= 0).ok_or_else(|| corrupt(key))?;
    digest::parse(digest.as_bytes()).map_err(|_| corrupt(key))?;
    Ok(Some(Descriptor { digest, size, mediatype }))
}

/// distribution's setDescriptor on the open blob hash `blob`, after `first` (a
/// membership field in the `blob` scheme): `HSET digest .. size ..`, `HSETNX mediatype
/// ..`, as one replicated `HSET`.
fn write_descriptor(blob: &WriteKey, first: Option<(&dyn AsString, &dyn AsString)>, d: &NewDescriptor) -> Result<(), Error> {
    let nx = (&MEDIATYPE as &dyn AsString, &d.mediatype as &dyn AsString);
    let descriptor: [(&dyn AsString, &dyn AsString); 2] = [(&DIGEST, &d.digest), (&SIZE, &d.size)];
    match first {
        None => blob.hset_with_nx(&descriptor, nx),
        Some(first) => blob.hset_with_nx(&[first, descriptor[0], descriptor[1]], nx),
    }
}

/// Removes the descriptor fields of the blob hash `key`, keeping its meta; true if any
/// was there.
fn delete_descriptor(ctx: &Ctx, key: &dyn AsString) -> Result<bool, Error> {
    Ok(ctx.open_write(key).hdel(&[&DIGEST, &SIZE, &MEDIATYPE])? > 0)
}

/// `HSET <blob> path <path> length <length>`.
fn write_meta(blob: &WriteKey, path: ArgString, length: ArgString) -> Result<(), Error> {
    // The length is canonical, so its argument bytes are what HSET of the number stores.
    blob.hset(&[(&PATH, &path), (&LENGTH, &length)])
}

/// Each key must hold `want` or not exist; checked before any write so that a
/// WRONGTYPE leaves the keyspace as it was.
fn expect_types<'k>(ctx: &Ctx, keys: impl IntoIterator<Item = (&'k dyn AsString, KeyType)>) -> Result<(), Error> {
    for (key, want) in keys {
        match ctx.key_type(key) {
            KeyType::Empty => {}
            found if found == want => {}
            _ => return Err(Error::WrongType),
        }
    }
    Ok(())
}

/// Gives every key a write touched the configured expiry (`layercache.ttl`); a key the
/// write removed is simply not there to expire. Removals never call it.
fn expire<'k>(ctx: &Ctx, keys: impl IntoIterator<Item = &'k dyn AsString>) -> Result<(), Error> {
    if config::ttl() > 0 {
        for key in keys {
            expire_open(&ctx.open_write(key));
        }
    }
    Ok(())
}

/// A write to one key: opened once, written (each write checks the type first), then
/// given the configured expiry through the same handle.
fn write_one<T>(ctx: &Ctx, key: &dyn AsString, write: impl FnOnce(&WriteKey) -> Result<T, Error>) -> Result<T, Error> {
    let key = ctx.open_write(key);
    let written = write(&key)?;
    expire_open(&key);
    Ok(written)
}

/// [`expire`] of a key the write has open.
fn expire_open(key: &WriteKey) {
    let ttl = config::ttl();
    if ttl > 0 {
        key.expire(ttl);
    }
}
