//! The `distribution` scheme (DESIGN.md section 1): distribution's own keys, shared with
//! registries that write them with plain commands, plus layercache's reverse index
//! `layercache::repos::<digest>`. Key names are derived from the arguments, so this
//! store checks the calling user's key permissions itself, on the real names, before
//! touching a key; the index is kept on every caller's behalf, unchecked, except by
//! PURGE, an operator's command.

use std::iter::once;

use layercache_core::digest::{self, Digest};
use layercache_core::keys;
use layercache_core::repo::Repo;

mod learn;

use super::{
    meta, delete_descriptor, descriptor_of, expect_types, expire, expire_open, meta_of, write_descriptor, write_meta, write_one, Descriptor,
    DigestArg, Meta, NewDescriptor, RepoArg, RepoMediatype, RepoView, Store, DIGEST, EMPTY, LENGTH, MEDIATYPE, PATH, SIZE,
};
use crate::api::{call, ArgString, AsString, Ctx, KeyType, RString, WriteKey, KEY_DELETE, KEY_INSERT, KEY_READ, KEY_UPDATE};
use crate::error::Error;

pub struct Distribution;

const WRITE: u64 = KEY_INSERT | KEY_UPDATE;

/// `repository::<repo>::blobs`: the digests `repo` holds.
fn membership_set<'c>(ctx: &'c Ctx, repo: Repo) -> RString<'c> {
    ctx.string(keys::membership_set(repo).as_bytes())
}

/// `blobs::<digest>`: meta and descriptor.
fn blob_hash<'c>(ctx: &'c Ctx, digest: Digest) -> RString<'c> {
    ctx.string(keys::blob_hash(digest).as_bytes())
}

/// `repository::<repo>::blobs::<digest>`: the repository's mediatype.
fn repository_hash<'c>(ctx: &'c Ctx, repo: Repo, digest: Digest) -> RString<'c> {
    ctx.string(keys::repository_hash(repo, digest).as_bytes())
}

/// `layercache::repos::<digest>`: the reverse index.
fn reverse_index<'c>(ctx: &'c Ctx, digest: Digest) -> RString<'c> {
    ctx.string(keys::reverse_index(digest).as_bytes())
}

/// The user's access to `keys`, as each one's flags say (one user lookup per command).
fn check_acl<'k, 'c: 'k>(ctx: &Ctx, keys: impl IntoIterator<Item = (&'k RString<'c>, u64)>) -> Result<(), Error> {
    keys.into_iter().try_for_each(|(key, flags)| ctx.check_key(key, flags))
}

fn sismember(ctx: &Ctx, members: &RString, digest: ArgString) -> Result<bool, Error> {
    Ok(call!(ctx, c"SISMEMBER", c"ss", members.as_ptr(), digest.as_string()).integer()? == 1)
}

/// Records `repo` ∋ `digest` and its entry in the open `index` (whose type the caller
/// checked); true if the membership is new.
fn add_membership(ctx: &Ctx, members: &RString, index: &WriteKey, repo: RepoArg, digest: DigestArg) -> Result<bool, Error> {
    let added = call!(ctx, c"SADD", c"!ss", members.as_ptr(), digest.arg.as_string()).integer()?;
    index_entry(index, &repo.arg)?;
    Ok(added == 1)
}

/// The reverse index's one writer: `repo`'s entry in the open `index` (`HSETNX`; the
/// caller gives the key its expiry); true if it is new.
fn index_entry(index: &WriteKey, repo: &dyn AsString) -> Result<bool, Error> {
    index.hsetnx(repo, &EMPTY)
}

/// Around each command: one that writes first writes what was learned (on servers
/// without post-notification jobs it may still be pending), so PURGE sees it; and no
/// command's own writes are learned again.
#[inline(always)]
pub(super) fn command<T>(ctx: &Ctx, writes: bool, run: impl FnOnce() -> T) -> T {
    if writes {
        learn::apply(ctx);
    }
    learn::as_module(run)
}

/// DROPREPO's memberships: the set `members` of `repo`, its repository hashes and its
/// entries in the reverse indexes; how many digests it held.
fn drop_memberships(ctx: &Ctx, repo: RepoArg, members: &RString) -> Result<i64, Error> {
    let (mut held, mut repo_hashes, mut indexes) = (0, vec![], vec![]);
    ctx.for_each_member(members, |member| {
        held += 1;
        // A member that is not a digest names no key of ours.
        if let Ok(digest) = digest::parse(member) {
            repo_hashes.push(repository_hash(ctx, repo.repo, digest));
            indexes.push(reverse_index(ctx, digest));
        }
    });
    check_acl(ctx, repo_hashes.iter().map(|k| (k, KEY_DELETE)))?;
    expect_types(ctx, repo_hashes.iter().chain(&indexes).map(|k| (k as &dyn AsString, KeyType::Hash)))?;
    // The index entries go on the repository's behalf; their keys keep their expiry.
    for index in &indexes {
        ctx.open_write(index).hdel(&[&repo.arg])?;
    }
    let mut doomed: Vec<_> = once(members.as_ptr()).chain(repo_hashes.iter().map(RString::as_ptr)).collect();
    call!(ctx, c"DEL", c"!v", doomed.as_mut_ptr(), doomed.len()).check()?;
    Ok(held)
}

impl Store for Distribution {
    fn on_load(&self, ctx: &Ctx) -> Result<(), String> {
        if ctx.cluster() {
            return Err("the distribution key scheme derives key names from arguments, which Redis Cluster cannot route; \
                        load the module with `scheme blob` (loadmodule liblayercache.so scheme blob) to run in a cluster"
                .into());
        }
        learn::load(ctx)
    }

    fn contains(&self, ctx: &Ctx, repo: RepoArg, digest: DigestArg) -> Result<bool, Error> {
        let members = membership_set(ctx, repo.repo);
        check_acl(ctx, [(&members, KEY_READ)])?;
        sismember(ctx, &members, digest.arg)
    }

    fn mcontains(&self, ctx: &Ctx, repo: RepoArg, digests: &[DigestArg]) -> Result<Vec<bool>, Error> {
        let members = membership_set(ctx, repo.repo);
        check_acl(ctx, [(&members, KEY_READ)])?;
        let mut argv: Vec<_> = digests.iter().map(|d| d.arg.as_string()).collect();
        let reply = call!(ctx, c"SMISMEMBER", c"sv", members.as_ptr(), argv.as_mut_ptr(), argv.len());
        let held = reply.integers()?.map(|held| held == 1).collect();
        Ok(held)
    }

    fn add(&self, ctx: &Ctx, repo: RepoArg, digest: DigestArg) -> Result<bool, Error> {
        let (members, index) = (membership_set(ctx, repo.repo), reverse_index(ctx, digest.digest));
        check_acl(ctx, [(&members, KEY_INSERT)])?;
        // The index's type is checked before the SADD, the set's by the SADD.
        let index = ctx.open_write(&index);
        index.expect_hash()?;
        let added = add_membership(ctx, &members, &index, repo, digest)?;
        expire(ctx, [&members as &dyn AsString])?;
        expire_open(&index);
        Ok(added)
    }

    fn meta<'c>(&self, ctx: &'c Ctx, digest: DigestArg) -> Result<Option<Meta<'c>>, Error> {
        let blob = blob_hash(ctx, digest.digest);
        check_acl(ctx, [(&blob, KEY_READ)])?;
        let Some([path, length]) = ctx.hash_get(&blob, [&PATH, &LENGTH])? else {
            return Ok(None);
        };
        meta_of(&blob, path, length)
    }

    fn lookup<'c>(&self, ctx: &'c Ctx, repo: RepoArg, digest: DigestArg) -> Result<Option<Meta<'c>>, Error> {
        let (members, blob) = (membership_set(ctx, repo.repo), blob_hash(ctx, digest.digest));
        check_acl(ctx, [(&members, KEY_READ), (&blob, KEY_READ)])?;
        if !sismember(ctx, &members, digest.arg)? {
            return Ok(None);
        }
        let Some([path, length]) = ctx.hash_get(&blob, [&PATH, &LENGTH])? else {
            return Ok(None);
        };
        meta_of(&blob, path, length)
    }

    fn set_meta(&self, ctx: &Ctx, digest: DigestArg, path: ArgString, length: ArgString) -> Result<(), Error> {
        let blob = blob_hash(ctx, digest.digest);
        check_acl(ctx, [(&blob, WRITE)])?;
        // One key, one HSET: a wrong type fails it before anything is written.
        write_one(ctx, &blob, |blob| write_meta(blob, path, length))
    }

    fn stat<'c>(&self, ctx: &'c Ctx, digest: DigestArg) -> Result<Option<Descriptor<'c>>, Error> {
        let blob = blob_hash(ctx, digest.digest);
        check_acl(ctx, [(&blob, KEY_READ)])?;
        let Some([d, size, mediatype]) = ctx.hash_get(&blob, [&DIGEST, &SIZE, &MEDIATYPE])? else {
            return Ok(None);
        };
        descriptor_of(&blob, d, size, mediatype)
    }

    fn set_descriptor(&self, ctx: &Ctx, digest: DigestArg, descriptor: &NewDescriptor) -> Result<(), Error> {
        let blob = blob_hash(ctx, digest.digest);
        check_acl(ctx, [(&blob, WRITE)])?;
        // One key, one write: a wrong type fails it before anything is written.
        write_one(ctx, &blob, |blob| write_descriptor(blob, None, descriptor))
    }

    fn clear(&self, ctx: &Ctx, digest: DigestArg) -> Result<bool, Error> {
        let blob = blob_hash(ctx, digest.digest);
        check_acl(ctx, [(&blob, KEY_DELETE)])?;
        delete_descriptor(ctx, &blob)
    }

    fn expiry(&self, ctx: &Ctx, repo: Option<RepoArg>, digest: DigestArg) -> Option<i64> {
        let blob = ctx.pttl(&blob_hash(ctx, digest.digest));
        let Some(repo) = repo else { return blob };
        let members = ctx.pttl(&membership_set(ctx, repo.repo));
        let repo_hash = ctx.pttl(&repository_hash(ctx, repo.repo, digest.digest));
        [blob, members, repo_hash].into_iter().flatten().min()
    }

    fn repo_stat<'c>(&self, ctx: &'c Ctx, repo: RepoArg, digest: DigestArg) -> Result<Option<RepoView<'c>>, Error> {
        let (members, blob) = (membership_set(ctx, repo.repo), blob_hash(ctx, digest.digest));
        let repo_hash = repository_hash(ctx, repo.repo, digest.digest);
        check_acl(ctx, [(&members, KEY_READ), (&repo_hash, KEY_READ), (&blob, KEY_READ)])?;
        if !sismember(ctx, &members, digest.arg)? {
            return Ok(None);
        }
        let descriptor = match ctx.hash_get(&blob, [&DIGEST, &SIZE, &MEDIATYPE])? {
            Some([d, size, mediatype]) => descriptor_of(&blob, d, size, mediatype)?,
            None => None,
        };
        if descriptor.is_none() {
            return Ok(Some(RepoView { descriptor, mediatype: RepoMediatype::Missing }));
        }
        let mediatype = match ctx.hash_get(&repo_hash, [&MEDIATYPE])? {
            Some([Some(m)]) if m.as_bytes().is_empty() => RepoMediatype::Empty,
            Some([Some(m)]) => RepoMediatype::Set(m),
            _ => RepoMediatype::Missing,
        };
        Ok(Some(RepoView { descriptor, mediatype }))
    }

    fn repo_set_descriptor(&self, ctx: &Ctx, repo: RepoArg, digests: &[DigestArg], descriptor: &NewDescriptor) -> Result<(), Error> {
        let members = membership_set(ctx, repo.repo);
        let keys: Vec<_> = digests
            .iter()
            .map(|d| (reverse_index(ctx, d.digest), repository_hash(ctx, repo.repo, d.digest), blob_hash(ctx, d.digest)))
            .collect();
        check_acl(ctx, once((&members, WRITE)).chain(keys.iter().flat_map(|(_, repo_hash, blob)| [(repo_hash, WRITE), (blob, WRITE)])))?;
        // The SADD checks the set's type before it writes.
        expect_types(
            ctx,
            keys.iter().flat_map(|(index, repo_hash, blob)| {
                [(index as &dyn AsString, KeyType::Hash), (repo_hash, KeyType::Hash), (blob, KeyType::Hash)]
            }),
        )?;
        for (d, (index, repo_hash, blob)) in digests.iter().zip(&keys) {
            let written = [ctx.open_write(index), ctx.open_write(repo_hash), ctx.open_write(blob)];
            let [index, repo_hash, blob] = &written;
            add_membership(ctx, &members, index, repo, *d)?;
            repo_hash.hset(&[(&MEDIATYPE, &descriptor.mediatype)])?;
            write_descriptor(blob, None, descriptor)?;
            expire(ctx, [&members as &dyn AsString])?;
            written.iter().for_each(expire_open);
        }
        Ok(())
    }

    fn repo_clear(&self, ctx: &Ctx, repo: RepoArg, digest: DigestArg) -> Result<bool, Error> {
        let (members, blob) = (membership_set(ctx, repo.repo), blob_hash(ctx, digest.digest));
        let (index, repo_hash) = (reverse_index(ctx, digest.digest), repository_hash(ctx, repo.repo, digest.digest));
        check_acl(ctx, [(&members, KEY_DELETE), (&repo_hash, KEY_DELETE), (&blob, KEY_DELETE)])?;
        if !sismember(ctx, &members, digest.arg)? {
            return Ok(false);
        }
        expect_types(ctx, [(&index as &dyn AsString, KeyType::Hash), (&repo_hash, KeyType::Hash), (&blob, KeyType::Hash)])?;
        // A removal leaves the remaining keys' expiry as it was (DESIGN.md section 4).
        call!(ctx, c"SREM", c"!ss", members.as_ptr(), digest.arg.as_string()).check()?;
        call!(ctx, c"DEL", c"!s", repo_hash.as_ptr()).check()?;
        ctx.open_write(&index).hdel(&[&repo.arg])?;
        delete_descriptor(ctx, &blob)?;
        Ok(true)
    }

    /// Finds the repositories through the reverse index. Reads everything first (which
    /// keys exist, of what type, what the user may delete), then writes.
    fn purge(&self, ctx: &Ctx, digests: &[DigestArg]) -> Result<u64, Error> {
        let plans = digests.iter().map(|&d| Purge::read(ctx, d)).collect::<Result<Vec<_>, _>>()?;
        check_acl(ctx, plans.iter().flat_map(Purge::acl))?;
        expect_types(ctx, plans.iter().flat_map(Purge::types))?;
        let mut purged = 0;
        for plan in &plans {
            purged += plan.write(ctx)? as u64;
        }
        Ok(purged)
    }

    /// The repository's cached links go too (their generation stays, so that no fill
    /// read before the drop is stored after it).
    fn drop_repo(&self, ctx: &Ctx, repo: RepoArg) -> Result<i64, Error> {
        let (members, links) = (membership_set(ctx, repo.repo), self.links_key(ctx, repo, KEY_DELETE)?);
        check_acl(ctx, [(&members, KEY_DELETE)])?;
        expect_types(ctx, [(&links as &dyn AsString, KeyType::Hash)])?;
        let held = match ctx.key_type(&members) {
            KeyType::Empty => 0,
            KeyType::Set => drop_memberships(ctx, repo, &members)?,
            _ => return Err(Error::WrongType),
        };
        if ctx.key_type(&links) != KeyType::Empty {
            meta::link_drop(ctx, &links, &[b""], 0)?;
        }
        Ok(held)
    }

    fn links_key<'c>(&self, ctx: &'c Ctx, repo: RepoArg, flags: u64) -> Result<RString<'c>, Error> {
        let links = ctx.string(keys::links(repo.repo).as_bytes());
        check_acl(ctx, [(&links, flags)])?;
        Ok(links)
    }

    fn blob_key<'c>(&self, ctx: &'c Ctx, digest: DigestArg, flags: u64) -> Result<RString<'c>, Error> {
        let blob = blob_hash(ctx, digest.digest);
        check_acl(ctx, [(&blob, flags)])?;
        Ok(blob)
    }

    fn index(&self, ctx: &Ctx, cursor: &[u8], count: i64) -> Result<(Vec<u8>, i64), Error> {
        learn::index_page(ctx, cursor, count)
    }
}

/// What PURGE removes for one digest.
struct Purge<'c> {
    digest: ArgString,
    blob: RString<'c>,
    index: RString<'c>,
    /// Each indexed repository's membership set and repository hash.
    repos: Vec<(RString<'c>, RString<'c>)>,
    had_state: bool,
}

impl<'c> Purge<'c> {
    /// Reads the digest's keys; WRONGTYPE when its blob or index is not a hash (the
    /// repositories' keys are checked with the rest, in `types`).
    fn read(ctx: &'c Ctx, digest: DigestArg) -> Result<Self, Error> {
        let (blob, index) = (blob_hash(ctx, digest.digest), reverse_index(ctx, digest.digest));
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
                    repos.push((membership_set(ctx, repo), repository_hash(ctx, repo, digest.digest)));
                }
            });
        }
        let had_state = blob_type != KeyType::Empty || index_type != KeyType::Empty;
        Ok(Purge { digest: digest.arg, blob, index, repos, had_state })
    }

    /// PURGE removes other repositories' data, so it is for a user who may delete the
    /// index too (an operator's, not a tenant's): a tenant learns nothing of which other
    /// repositories hold the blob, whether they do or not.
    fn acl(&self) -> impl Iterator<Item = (&RString<'c>, u64)> {
        [(&self.index, KEY_DELETE), (&self.blob, KEY_DELETE)]
            .into_iter()
            .chain(self.repos.iter().flat_map(|(members, repo_hash)| [(members, KEY_DELETE), (repo_hash, KEY_DELETE)]))
    }

    fn types(&self) -> impl Iterator<Item = (&dyn AsString, KeyType)> {
        self.repos.iter().flat_map(|(members, repo_hash)| [(members as &dyn AsString, KeyType::Set), (repo_hash, KeyType::Hash)])
    }

    /// Removes it all; returns whether the digest had any cache state. A removal leaves
    /// the other keys' expiry as it was.
    fn write(&self, ctx: &Ctx) -> Result<bool, Error> {
        let mut doomed = vec![self.blob.as_ptr(), self.index.as_ptr()];
        for (members, repo_hash) in &self.repos {
            call!(ctx, c"SREM", c"!ss", members.as_ptr(), self.digest.as_string()).check()?;
            doomed.push(repo_hash.as_ptr());
        }
        call!(ctx, c"DEL", c"!v", doomed.as_mut_ptr(), doomed.len()).check()?;
        Ok(self.had_state)
    }
}
