//! Where each scheme keeps the cache's facts (DESIGN.md sections 1 and 5). The command
//! handlers say what to read and write — a blob's hash, a repository holding a blob and
//! its mediatype — and this file says in which keys and fields, so the semantics exist
//! once for both schemes.
//!
//! | fact | `distribution` | `blob` |
//! |---|---|---|
//! | blob hash | `blobs::<digest>` | `<digest>` |
//! | `repo` holds `digest` | `repository::<repo>::blobs` ∋ digest (+ reverse index) | field `repo:<repo>` of `<digest>` |
//! | its repository mediatype | `repository::<repo>::blobs::<digest>` field `mediatype` | the value of `repo:<repo>` (`""`: none) |

use layercache_core::digest::{self, Digest};
use layercache_core::keys::{self, Repo};

use crate::api::{call, Args, Ctx, KeyType, RString, RedisModuleString, KEY_DELETE, KEY_READ};
use crate::commands::{expect_types, MEDIATYPE};
use crate::config::{self, Scheme};
use crate::error::Error;

/// The hash of `digest`: meta (`path`, `length`) and descriptor (`digest`, `size`,
/// `mediatype`).
pub fn blob<'c>(ctx: &'c Ctx, digest: Digest) -> RString<'c> {
    match config::scheme() {
        Scheme::Distribution => ctx.string(keys::blob_hash(digest).as_bytes()),
        Scheme::Blob => ctx.string(digest.as_bytes()),
    }
}

/// Access to the keys of a command: in `distribution` the module checks the user's
/// key permissions itself (its key names are not arguments); in `blob` Redis has
/// already checked them through the key specs, before the command ran.
pub fn check_acl<'k, 'c: 'k>(ctx: &Ctx, keys: impl IntoIterator<Item = (&'k RString<'c>, u64)>) -> Result<(), Error> {
    if config::scheme() == Scheme::Blob {
        return Ok(());
    }
    let Some(user) = ctx.user() else { return Ok(()) };
    keys.into_iter().try_for_each(|(key, flags)| user.check(ctx, key, flags))
}

/// Which parts of a holding a command touches, so that only their key names are made.
#[derive(Clone, Copy)]
pub struct Parts {
    /// The reverse index (writes keep it).
    pub index: bool,
    /// The repository's mediatype.
    pub mediatype: bool,
}

/// CONTAINS, LOOKUP: the membership alone.
pub const MEMBERSHIP: Parts = Parts { index: false, mediatype: false };
/// REPOSTAT: the membership and the mediatype.
pub const WITH_MEDIATYPE: Parts = Parts { index: false, mediatype: true };
/// ADD: the membership and the reverse index.
pub const ADDING: Parts = Parts { index: true, mediatype: false };
/// REPOSETDESCRIPTOR, REPOCLEAR: everything.
pub const ALL: Parts = Parts { index: true, mediatype: true };

/// "`repo` holds `digest`", with the repository's mediatype for it.
pub enum Holding<'c> {
    Distribution {
        /// `repository::<repo>::blobs`, holding the digest.
        members: RString<'c>,
        /// `layercache::repos::<digest>`, the reverse index, with a field per repository.
        index: Option<RString<'c>>,
        /// `repository::<repo>::blobs::<digest>`, with field `mediatype`.
        scoped: Option<RString<'c>>,
        repo: *mut RedisModuleString,
        digest: *mut RedisModuleString,
    },
    Blob {
        /// `<digest>`.
        blob: RString<'c>,
        /// `repo:<repo>`.
        field: RString<'c>,
    },
}

impl<'c> Holding<'c> {
    /// `repo` and `digest` parsed from the arguments whose Redis strings are `repo_arg`
    /// and `digest_arg`; `parts` says which keys the command will touch.
    pub fn new(
        ctx: &'c Ctx,
        repo: Repo,
        digest: Digest,
        repo_arg: *mut RedisModuleString,
        digest_arg: *mut RedisModuleString,
        parts: Parts,
    ) -> Self {
        match config::scheme() {
            Scheme::Distribution => Holding::Distribution {
                members: ctx.string(keys::repository_blob_set(repo).as_bytes()),
                index: parts.index.then(|| ctx.string(keys::digest_repos(digest).as_bytes())),
                scoped: parts.mediatype.then(|| ctx.string(keys::repository_blob_hash(repo, digest).as_bytes())),
                repo: repo_arg,
                digest: digest_arg,
            },
            Scheme::Blob => Holding::Blob { blob: blob(ctx, digest), field: ctx.string(keys::repo_field(repo).as_bytes()) },
        }
    }

    /// The keys to check the user's access to, as `flags` (`KEY_READ`, `KEY_INSERT`...).
    /// The reverse index is kept on the commands' behalf and not checked.
    pub fn acl(&self, flags: u64) -> impl Iterator<Item = (&RString<'c>, u64)> {
        let keys = match self {
            Holding::Distribution { members, scoped, .. } => [Some(members), scoped.as_ref()],
            Holding::Blob { .. } => [None, None],
        };
        keys.into_iter().flatten().map(move |key| (key, flags))
    }

    /// The keys whose type a write must check first. The membership set is not among
    /// them: every command touches it first (SISMEMBER or SADD), which fails on a wrong
    /// type before anything is written.
    pub fn types(&self) -> Vec<(&RString<'c>, KeyType)> {
        match self {
            Holding::Distribution { index, scoped, .. } => {
                index.iter().chain(scoped).map(|k| (k, KeyType::Hash)).collect()
            }
            Holding::Blob { blob, .. } => vec![(blob, KeyType::Hash)],
        }
    }

    /// Every key a write touches, for the expiry.
    pub fn keys(&self) -> impl Iterator<Item = &RString<'c>> {
        let keys = match self {
            Holding::Distribution { members, index, scoped, .. } => [Some(members), index.as_ref(), scoped.as_ref()],
            Holding::Blob { blob, .. } => [Some(blob), None, None],
        };
        keys.into_iter().flatten()
    }

    pub fn exists(&self, ctx: &Ctx) -> Result<bool, Error> {
        match self {
            Holding::Distribution { members, digest, .. } => {
                Ok(call!(ctx, c"SISMEMBER", c"ss", members.as_ptr(), *digest).integer()? == 1)
            }
            Holding::Blob { blob, field } => ctx.hash_exists(blob, field),
        }
    }

    /// Records the holding (keeping a mediatype already there); true if it is new.
    pub fn add(&self, ctx: &Ctx) -> Result<bool, Error> {
        match self {
            Holding::Distribution { members, index, repo, digest, .. } => {
                let added = call!(ctx, c"SADD", c"!ss", members.as_ptr(), *digest).integer()?;
                if let Some(index) = index {
                    call!(ctx, c"HSET", c"!ssc", index.as_ptr(), *repo, c"".as_ptr()).check()?;
                }
                Ok(added == 1)
            }
            Holding::Blob { blob, field } => {
                Ok(call!(ctx, c"HSETNX", c"!ssc", blob.as_ptr(), field.as_ptr(), c"".as_ptr()).integer()? == 1)
            }
        }
    }

    /// The repository's mediatype: `None` when there is none (distribution: no field;
    /// blob: `""`), `Some("")` in distribution when the field is empty.
    pub fn mediatype(&self, ctx: &'c Ctx) -> Result<Option<RString<'c>>, Error> {
        Ok(match self {
            Holding::Distribution { scoped: Some(scoped), .. } => match ctx.hash_get(scoped, [&MEDIATYPE])? {
                Some([mediatype]) => mediatype,
                None => None,
            },
            Holding::Distribution { scoped: None, .. } => None,
            Holding::Blob { blob, field } => match ctx.hash_get(blob, [field])? {
                Some([Some(mediatype)]) if !mediatype.as_bytes().is_empty() => Some(mediatype),
                _ => None,
            },
        })
    }

    /// Records the holding with the repository's mediatype.
    pub fn record(&self, ctx: &Ctx, mediatype: *mut RedisModuleString) -> Result<(), Error> {
        match self {
            Holding::Distribution { scoped, .. } => {
                self.add(ctx)?;
                if let Some(scoped) = scoped {
                    call!(ctx, c"HSET", c"!scs", scoped.as_ptr(), c"mediatype".as_ptr(), mediatype).check()?;
                }
            }
            Holding::Blob { blob, field } => {
                call!(ctx, c"HSET", c"!sss", blob.as_ptr(), field.as_ptr(), mediatype).check()?;
            }
        }
        Ok(())
    }

    /// Removes the holding and the repository's mediatype.
    pub fn remove(&self, ctx: &Ctx) -> Result<(), Error> {
        match self {
            Holding::Distribution { members, index, scoped, repo, digest } => {
                call!(ctx, c"SREM", c"!ss", members.as_ptr(), *digest).check()?;
                if let Some(scoped) = scoped {
                    call!(ctx, c"DEL", c"!s", scoped.as_ptr()).check()?;
                }
                if let Some(index) = index {
                    call!(ctx, c"HDEL", c"!ss", index.as_ptr(), *repo).check()?;
                }
            }
            Holding::Blob { blob, field } => {
                call!(ctx, c"HDEL", c"!ss", blob.as_ptr(), field.as_ptr()).check()?;
            }
        }
        Ok(())
    }
}

/// For MCONTAINS: whether `repo` holds each of `digests` (arguments 2..).
pub fn held_each(ctx: &Ctx, repo: Repo, digests: &[Digest], args: &Args) -> Result<Vec<bool>, Error> {
    match config::scheme() {
        Scheme::Distribution => {
            let members = ctx.string(keys::repository_blob_set(repo).as_bytes());
            check_acl(ctx, [(&members, KEY_READ)])?;
            let (argv, count) = args.raw_from(2);
            let reply = call!(ctx, c"SMISMEMBER", c"sv", members.as_ptr(), argv, count);
            let held = reply.integers()?.map(|held| held == 1).collect();
            Ok(held)
        }
        Scheme::Blob => {
            let field = ctx.string(keys::repo_field(repo).as_bytes());
            digests.iter().map(|&digest| ctx.hash_exists(&blob(ctx, digest), &field)).collect()
        }
    }
}

/// For PURGE: removes every key of each digest (argument index alongside); returns how
/// many had any cache state. `distribution` finds the repositories through the
/// reverse index; in `blob` the digest's one key is all there is, unlinked (freed in
/// the background, as DESIGN.md section 5 says).
pub fn purge(ctx: &Ctx, digests: &[(Digest, usize)], args: &Args) -> Result<u64, Error> {
    if config::scheme() == Scheme::Blob {
        let keys: Vec<RString> = digests.iter().map(|&(digest, _)| blob(ctx, digest)).collect();
        expect_types(ctx, &keys.iter().map(|k| (k, KeyType::Hash)).collect::<Vec<_>>())?;
        let mut doomed: Vec<_> = keys.iter().map(RString::as_ptr).collect();
        return Ok(call!(ctx, c"UNLINK", c"!v", doomed.as_mut_ptr(), doomed.len()).integer()? as u64);
    }
    // Read everything first: which keys exist, of what type, and what the user may
    // delete. Only then write.
    let plans = digests.iter().map(|&(digest, arg)| Purge::read(ctx, digest, arg)).collect::<Result<Vec<_>, _>>()?;
    check_acl(ctx, plans.iter().flat_map(Purge::acl))?;
    expect_types(ctx, &plans.iter().flat_map(Purge::types).collect::<Vec<_>>())?;
    let mut purged = 0;
    for plan in &plans {
        purged += plan.write(ctx, args)? as u64;
    }
    Ok(purged)
}

/// What PURGE removes for one digest in `distribution`.
struct Purge<'c> {
    digest_arg: usize,
    blob: RString<'c>,
    index: RString<'c>,
    /// Each indexed repository's membership set and repository hash.
    repos: Vec<(RString<'c>, RString<'c>)>,
    had_state: bool,
}

impl<'c> Purge<'c> {
    /// Reads the digest's keys; WRONGTYPE when its blob or index is not a hash (the
    /// repositories' keys are checked with the rest, in `types`).
    fn read(ctx: &'c Ctx, digest: Digest, digest_arg: usize) -> Result<Self, Error> {
        let blob = blob(ctx, digest);
        let index = ctx.string(keys::digest_repos(digest).as_bytes());
        let (blob_type, index_type) = (ctx.key_type(&blob), ctx.key_type(&index));
        if [blob_type, index_type].iter().any(|t| !matches!(t, KeyType::Empty | KeyType::Hash)) {
            return Err(Error::WrongType);
        }
        // Only names we could have written; anything else a plain client put in the
        // index names no key of ours.
        let mut repos = vec![];
        if index_type == KeyType::Hash {
            ctx.for_each_member(&index, |name| {
                if let Ok(repo) = Repo::parse(name) {
                    repos.push((
                        ctx.string(keys::repository_blob_set(repo).as_bytes()),
                        ctx.string(keys::repository_blob_hash(repo, digest).as_bytes()),
                    ));
                }
            });
        }
        let had_state = blob_type != KeyType::Empty || index_type != KeyType::Empty;
        Ok(Purge { digest_arg, blob, index, repos, had_state })
    }

    /// PURGE removes other repositories' data, so it is for a user who may delete
    /// the index too (an operator's, not a tenant's): a tenant learns nothing of
    /// which other repositories hold the blob, whether they do or not.
    fn acl(&self) -> impl Iterator<Item = (&RString<'c>, u64)> {
        [(&self.index, KEY_DELETE), (&self.blob, KEY_DELETE)]
            .into_iter()
            .chain(self.repos.iter().flat_map(|(members, scoped)| [(members, KEY_DELETE), (scoped, KEY_DELETE)]))
    }

    fn types(&self) -> impl Iterator<Item = (&RString<'c>, KeyType)> {
        self.repos.iter().flat_map(|(members, scoped)| [(members, KeyType::Set), (scoped, KeyType::Hash)])
    }

    /// Removes it all; returns whether the digest had any cache state. A removal
    /// leaves the other keys' expiry as it was.
    fn write(&self, ctx: &Ctx, args: &Args) -> Result<bool, Error> {
        let mut doomed = vec![self.blob.as_ptr(), self.index.as_ptr()];
        for (members, scoped) in &self.repos {
            call!(ctx, c"SREM", c"!ss", members.as_ptr(), args.raw(self.digest_arg)).check()?;
            doomed.push(scoped.as_ptr());
        }
        call!(ctx, c"DEL", c"!v", doomed.as_mut_ptr(), doomed.len()).check()?;
        Ok(self.had_state)
    }
}

/// For DROPREPO (`distribution` only): removes the repository's membership set, its
/// repository hashes and its entries in the reverse indexes; returns how many digests
/// it held.
pub fn drop_repo(ctx: &Ctx, repo: Repo, args: &Args) -> Result<i64, Error> {
    let members = ctx.string(keys::repository_blob_set(repo).as_bytes());
    check_acl(ctx, [(&members, KEY_DELETE)])?;
    match ctx.key_type(&members) {
        KeyType::Empty => return Ok(0),
        KeyType::Set => {}
        _ => return Err(Error::WrongType),
    }

    let (mut held, mut scoped, mut indexes) = (0, vec![], vec![]);
    ctx.for_each_member(&members, |member| {
        held += 1;
        // A member that is not a digest names no key of ours.
        if let Ok(digest) = digest::parse(member) {
            scoped.push(ctx.string(keys::repository_blob_hash(repo, digest).as_bytes()));
            indexes.push(ctx.string(keys::digest_repos(digest).as_bytes()));
        }
    });
    check_acl(ctx, scoped.iter().map(|k| (k, KEY_DELETE)))?;
    let types: Vec<_> = scoped.iter().chain(&indexes).map(|k| (k, KeyType::Hash)).collect();
    expect_types(ctx, &types)?;

    // The index entries go on the repository's behalf; their keys keep their expiry.
    for index in &indexes {
        call!(ctx, c"HDEL", c"!ss", index.as_ptr(), args.raw(1)).check()?;
    }
    let mut doomed: Vec<_> = std::iter::once(members.as_ptr()).chain(scoped.iter().map(RString::as_ptr)).collect();
    call!(ctx, c"DEL", c"!v", doomed.as_mut_ptr(), doomed.len()).check()?;
    Ok(held)
}
