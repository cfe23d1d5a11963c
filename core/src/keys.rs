//! Key names of the `distribution` scheme (DESIGN.md section 1), one helper per key,
//! as in distribution's `registry/storage/cache/redis/redis.go`, and the one field name
//! of the `blob` scheme (section 5), whose keys are the digests themselves.
//!
//! Names are built on the stack: the inputs are validated [`Repo`] and [`Digest`]
//! values whose lengths are bounded, so a name always fits in [`MAX_KEY`] bytes and the
//! hot path allocates nothing.

use arrayvec::ArrayVec;

use crate::digest::{self, Digest};
use crate::repo::{self, Repo};

/// The longest key name: `repository::<repo>::blobs::<digest>`.
pub const MAX_KEY: usize = "repository::".len() + repo::MAX_LEN + "::blobs::".len() + digest::MAX_PARSED_LEN;

/// A key name held on the stack (not zeroed first: it runs on every command).
pub struct KeyName(ArrayVec<u8, MAX_KEY>);

impl KeyName {
    /// Inlined into each name's builder, whose parts are an array of known length.
    #[inline(always)]
    fn of<const N: usize>(parts: [&[u8]; N]) -> Self {
        let mut key = ArrayVec::new();
        for part in parts {
            // Validated inputs always fit; a part that would not is left out, never a panic.
            let _ = key.try_extend_from_slice(part);
        }
        KeyName(key)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for KeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// `repository::<repo>::blobs`: SET of the digests `repo` holds (membership).
pub fn membership_set(repo: Repo) -> KeyName {
    KeyName::of([b"repository::", repo.as_bytes(), b"::blobs"])
}

/// `blobs::<digest>`: HASH of the blob's meta (`path`, `length`) and descriptor
/// (`digest`, `size`, `mediatype`).
pub fn blob_hash(digest: Digest) -> KeyName {
    KeyName::of([b"blobs::", digest.as_bytes()])
}

/// `repository::<repo>::blobs::<digest>`: HASH with the repository's `mediatype`.
pub fn repository_hash(repo: Repo, digest: Digest) -> KeyName {
    KeyName::of([b"repository::", repo.as_bytes(), b"::blobs::", digest.as_bytes()])
}

/// `repository::<repo>::links`: HASH of the repository's cached links (the metadata
/// cache, DESIGN.md section 7): a field per link path, and `gen`, `hold` and `writes` (the module's `store::meta` says why).
pub fn links(repo: Repo) -> KeyName {
    KeyName::of([b"repository::", repo.as_bytes(), b"::links"])
}

/// `layercache::repos::<digest>`: HASH whose fields are the repositories holding
/// `digest` (values `""`): layercache's reverse index, under a prefix of its own so that
/// registry users granted `~blobs::*` never see which other repositories hold a blob.
/// A hash, as it stays listpack-encoded where a small set of names does not (Redis 7.0:
/// 196 against 333 bytes per digest).
pub fn reverse_index(digest: Digest) -> KeyName {
    KeyName::of([b"layercache::repos::", digest.as_bytes()])
}

/// Scheme `blob`: the field of a blob's hash that says `repo` holds the blob; its
/// value is the repository's mediatype (`""` for none).
pub fn repo_field(repo: Repo) -> KeyName {
    KeyName::of([b"repo:", repo.as_bytes()])
}

/// A key that plain-command registries write under distribution's names, as the
/// module recognises it when it learns their writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written<'a> {
    /// `repository::<repo>::blobs`
    Membership(Repo<'a>),
    /// `repository::<repo>::blobs::<digest>`
    RepositoryHash(Repo<'a>, Digest<'a>),
    /// `blobs::<digest>`
    BlobHash(Digest<'a>),
}

/// Which of distribution's keys `key` is, if it is one with a valid repository and
/// digest. A repository name never holds `::`, so the first one after the prefix ends it.
pub fn parse_written(key: &[u8]) -> Option<Written<'_>> {
    if let Some(rest) = key.strip_prefix(b"repository::") {
        let end = rest.windows(2).position(|w| w == b"::")?;
        let (repo, tail) = rest.split_at(end);
        let repo = Repo::parse(repo).ok()?;
        return match tail.strip_prefix(b"::blobs")? {
            b"" => Some(Written::Membership(repo)),
            tail => Some(Written::RepositoryHash(repo, digest::parse(tail.strip_prefix(b"::")?).ok()?)),
        };
    }
    let digest = digest::parse(key.strip_prefix(b"blobs::")?).ok()?;
    Some(Written::BlobHash(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let digest = digest::parse(d.as_bytes()).unwrap();
        let repo = Repo::parse(b"library/ubuntu").unwrap();
        assert_eq!(membership_set(repo).as_bytes(), b"repository::library/ubuntu::blobs");
        assert_eq!(blob_hash(digest).as_bytes(), format!("blobs::{d}").as_bytes());
        assert_eq!(repository_hash(repo, digest).as_bytes(), format!("repository::library/ubuntu::blobs::{d}").as_bytes());
        assert_eq!(reverse_index(digest).as_bytes(), format!("layercache::repos::{d}").as_bytes());
        assert_eq!(links(repo).as_bytes(), b"repository::library/ubuntu::links");
        assert_eq!(repo_field(repo).as_bytes(), b"repo:library/ubuntu");
    }

    #[test]
    fn longest_inputs_fit() {
        let d = format!("sha512:{}", "0".repeat(128));
        let r = format!("a/{}", "b".repeat(repo::MAX_LEN - 2));
        let (digest, repo) = (digest::parse(d.as_bytes()).unwrap(), Repo::parse(r.as_bytes()).unwrap());
        assert_eq!(repository_hash(repo, digest).as_bytes().len(), 12 + r.len() + 9 + d.len());
    }

    #[test]
    fn written_keys() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let digest = digest::parse(d.as_bytes()).unwrap();
        let repo = Repo::parse(b"registry.local:5000/library/ubuntu").unwrap();
        let cases: [(String, Option<Written>); 9] = [
            ("repository::registry.local:5000/library/ubuntu::blobs".into(), Some(Written::Membership(repo))),
            (format!("repository::registry.local:5000/library/ubuntu::blobs::{d}"), Some(Written::RepositoryHash(repo, digest))),
            (format!("blobs::{d}"), Some(Written::BlobHash(digest))),
            (format!("layercache::repos::{d}"), None),
            (format!("blobs::{d}::repos"), None),
            ("repository::Bad/Name::blobs".into(), None),
            ("repository::a::blobsx".into(), None),
            ("repository::a::blobs::sha256:abc".into(), None),
            ("repository::a".into(), None),
        ];
        for (n, (key, want)) in cases.iter().enumerate() {
            assert_eq!(parse_written(key.as_bytes()), *want, "case {n}: {key}");
        }
    }
}
