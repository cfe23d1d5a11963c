//! The `blob` scheme (DESIGN.md section 5): one hash per blob, keyed by the digest
//! itself, with a field `repo:<repo>` per repository that holds it (its value the
//! repository's mediatype, `""` for none). Every key is a command argument, declared
//! through key specs, so Redis checks ACL key rules and routes in a cluster itself, and
//! a key name is the argument's own string. Each command opens its one key once and
//! reads all it needs with one `HashGet`.

use layercache_core::keys;

use super::{
    delete_descriptor, descriptor_of, expect_types, meta_of, write_descriptor, write_meta, write_one, Descriptor, DigestArg, Meta,
    NewDescriptor, RepoArg, RepoMediatype, RepoView, Store, DIGEST, EMPTY, LENGTH, MEDIATYPE, PATH, SIZE,
};
use crate::api::{call, ArgString, AsString, Ctx, KeyType, RString};
use crate::error::Error;

pub struct Blob;

/// `repo:<repo>`, the field that says `repo` holds the blob.
fn field<'c>(ctx: &'c Ctx, repo: RepoArg) -> RString<'c> {
    ctx.string(keys::repo_field(repo.repo).as_bytes())
}

impl Store for Blob {
    fn keys_are_arguments(&self) -> bool {
        true
    }

    fn contains(&self, ctx: &Ctx, repo: RepoArg, digest: DigestArg) -> Result<bool, Error> {
        ctx.hash_exists(&digest.arg, &field(ctx, repo))
    }

    fn mcontains(&self, ctx: &Ctx, repo: RepoArg, digests: &[DigestArg]) -> Result<Vec<bool>, Error> {
        let field = field(ctx, repo);
        digests.iter().map(|d| ctx.hash_exists(&d.arg, &field)).collect()
    }

    fn add(&self, ctx: &Ctx, repo: RepoArg, digest: DigestArg) -> Result<bool, Error> {
        let field = field(ctx, repo);
        write_one(ctx, &digest.arg, |blob| blob.hsetnx(&field, &EMPTY))
    }

    fn meta<'c>(&self, ctx: &'c Ctx, digest: DigestArg) -> Result<Option<Meta<'c>>, Error> {
        let Some([path, length]) = ctx.hash_get(&digest.arg, [&PATH, &LENGTH])? else {
            return Ok(None);
        };
        meta_of(&digest.arg, path, length)
    }

    fn lookup<'c>(&self, ctx: &'c Ctx, repo: RepoArg, digest: DigestArg) -> Result<Option<Meta<'c>>, Error> {
        let field = field(ctx, repo);
        let Some([Some(_), path, length]) = ctx.hash_get(&digest.arg, [&field, &PATH, &LENGTH])? else {
            return Ok(None);
        };
        meta_of(&digest.arg, path, length)
    }

    fn set_meta(&self, ctx: &Ctx, digest: DigestArg, path: ArgString, length: ArgString) -> Result<(), Error> {
        write_one(ctx, &digest.arg, |blob| write_meta(blob, path, length))
    }

    fn stat<'c>(&self, ctx: &'c Ctx, digest: DigestArg) -> Result<Option<Descriptor<'c>>, Error> {
        let Some([d, size, mediatype]) = ctx.hash_get(&digest.arg, [&DIGEST, &SIZE, &MEDIATYPE])? else {
            return Ok(None);
        };
        descriptor_of(&digest.arg, d, size, mediatype)
    }

    fn set_descriptor(&self, ctx: &Ctx, digest: DigestArg, descriptor: &NewDescriptor) -> Result<(), Error> {
        // One key, one write: a wrong type fails it before anything is written.
        write_one(ctx, &digest.arg, |blob| write_descriptor(blob, None, descriptor))
    }

    fn clear(&self, ctx: &Ctx, digest: DigestArg) -> Result<bool, Error> {
        delete_descriptor(ctx, &digest.arg)
    }

    fn expiry(&self, ctx: &Ctx, _repo: Option<RepoArg>, digest: DigestArg) -> Option<i64> {
        ctx.pttl(&digest.arg)
    }

    fn repo_stat<'c>(&self, ctx: &'c Ctx, repo: RepoArg, digest: DigestArg) -> Result<Option<RepoView<'c>>, Error> {
        let field = field(ctx, repo);
        let Some([Some(held), d, size, mediatype]) = ctx.hash_get(&digest.arg, [&field, &DIGEST, &SIZE, &MEDIATYPE])? else {
            return Ok(None);
        };
        let descriptor = descriptor_of(&digest.arg, d, size, mediatype)?;
        let mediatype = if held.as_bytes().is_empty() { RepoMediatype::Missing } else { RepoMediatype::Set(held) };
        Ok(Some(RepoView { descriptor, mediatype }))
    }

    fn repo_set_descriptor(&self, ctx: &Ctx, repo: RepoArg, digests: &[DigestArg], descriptor: &NewDescriptor) -> Result<(), Error> {
        let field = field(ctx, repo);
        expect_types(ctx, digests.iter().map(|d| (&d.arg as &dyn AsString, KeyType::Hash)))?;
        for d in digests {
            write_one(ctx, &d.arg, |blob| write_descriptor(blob, Some((&field, &descriptor.mediatype)), descriptor))?;
        }
        Ok(())
    }

    fn repo_clear(&self, ctx: &Ctx, repo: RepoArg, digest: DigestArg) -> Result<bool, Error> {
        let field = field(ctx, repo);
        if !ctx.hash_exists(&digest.arg, &field)? {
            return Ok(false);
        }
        // A removal leaves the key's expiry as it was (DESIGN.md section 4).
        ctx.open_write(&digest.arg).hdel(&[&field])?;
        delete_descriptor(ctx, &digest.arg)?;
        Ok(true)
    }

    /// The digest's one key is all there is, unlinked (freed in the background, as
    /// DESIGN.md section 5 says).
    fn purge(&self, ctx: &Ctx, digests: &[DigestArg]) -> Result<u64, Error> {
        expect_types(ctx, digests.iter().map(|d| (&d.arg as &dyn AsString, KeyType::Hash)))?;
        let mut doomed: Vec<_> = digests.iter().map(|d| d.arg.as_string()).collect();
        Ok(call!(ctx, c"UNLINK", c"!v", doomed.as_mut_ptr(), doomed.len()).integer()? as u64)
    }

    /// This scheme keeps no per-repository index.
    fn drop_repo(&self, _: &Ctx, _: RepoArg) -> Result<i64, Error> {
        Err(Error::Refused("ERR DROPREPO needs scheme distribution".into()))
    }

    /// The repository name itself, as the digest is a blob's: the key is the argument.
    fn links_key<'c>(&self, ctx: &'c Ctx, repo: RepoArg, _: u64) -> Result<RString<'c>, Error> {
        Ok(ctx.string(repo.repo.as_bytes()))
    }

    fn blob_key<'c>(&self, ctx: &'c Ctx, digest: DigestArg, _: u64) -> Result<RString<'c>, Error> {
        Ok(ctx.string(digest.digest.as_bytes()))
    }

    /// Nothing to learn: plain-command registries write distribution's keys.
    fn index(&self, _: &Ctx, _: &[u8], _: i64) -> Result<(Vec<u8>, i64), Error> {
        Err(Error::Refused("ERR INDEX needs scheme distribution".into()))
    }
}
