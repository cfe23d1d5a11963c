//! The blob-descriptor commands (DESIGN.md section 2, second table) against a real
//! redis-server: distribution's cache suite step by step, its CVE regression, interop
//! with plain commands, PURGE and DROPREPO.

mod common;

use common::*;
use redis::{Connection, Value};

const OCTET: &str = "application/octet-stream";
const JSON: &str = "application/json";

/// The reply of STAT / REPOSTAT for a descriptor.
fn desc(digest: &str, size: i64, mediatype: &str) -> Value {
    Value::Array(vec![bulk(digest), Value::Int(size), bulk(mediatype)])
}

/// A digest of `algorithm` made of `prefix` padded with `1`s, as the suite writes them.
fn suite_digest(algorithm: &str, prefix: &str) -> String {
    let len = if algorithm == "sha384" { 96 } else { 64 };
    format!("{algorithm}:{prefix}{}", "1".repeat(len - prefix.len()))
}

/// distribution v3.1 `cachecheck.checkBlobDescriptorCacheEmptyRepository`.
#[test]
fn suite_empty_repository() {
    let s = Server::start();
    let mut c = s.client();
    let abc = suite_digest("sha384", "abc");
    // Empty store: a miss.
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", &abc]), Value::Nil);
    // An empty repository name is rejected.
    assert_eq!(
        error(&mut c, &[b"LAYERCACHE.REPOSTAT", b"", abc.as_bytes()]),
        "NAME_INVALID repository name must have at least one component"
    );
    // SetDescriptor under digest "": the digest is rejected before the (also invalid)
    // descriptor is looked at.
    assert_eq!(
        error(&mut c, &[b"LAYERCACHE.REPOSETDESCRIPTOR", b"foo/bar", b"", b"sha384:abc", b"10", OCTET.as_bytes()]),
        "DIGEST_INVALID invalid checksum digest format"
    );
    // An invalid descriptor (digest "") writes nothing.
    assert_eq!(
        error(&mut c, &[b"LAYERCACHE.REPOSETDESCRIPTOR", b"foo/bar", abc.as_bytes(), b"", b"10", OCTET.as_bytes()]),
        "DIGEST_INVALID invalid checksum digest format"
    );
    assert_eq!(cmd(&mut c, &["DBSIZE"]), Value::Int(0));
    // Stat of "" is an error, not a miss.
    assert_eq!(error(&mut c, &[b"LAYERCACHE.REPOSTAT", b"foo/bar", b""]), "DIGEST_INVALID invalid checksum digest format");
    // Uncached and empty repository: misses.
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "foo/bar", &suite_digest("sha384", "cba")]), Value::Nil);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "foo/bar", &abc]), Value::Nil);
}

/// distribution v3.1 `cachecheck.checkBlobDescriptorCacheSetAndRead`.
#[test]
fn suite_set_and_read() {
    let s = Server::start();
    let mut c = s.client();
    let local = suite_digest("sha384", "abc");
    let canonical = suite_digest("sha256", "abc");
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "foo/bar", &local, &canonical, "10", OCTET]), Value::Okay);
    let expected = desc(&canonical, 10, OCTET);
    // Through the repository, the provider, and the canonical digest.
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "foo/bar", &local]), expected);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", &local]), expected);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", &canonical]), expected);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "foo/bar", &canonical]), expected);

    // The repository mediatype overrides; the global one stays first-writer.
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "foo/bar", &local, &canonical, "10", JSON]), Value::Okay);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "foo/bar", &local]), desc(&canonical, 10, JSON));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", &local]), desc(&canonical, 10, OCTET));
}

/// distribution v3.1 `cachecheck.checkBlobDescriptorCacheClear`.
#[test]
fn suite_clear() {
    let s = Server::start();
    let mut c = s.client();
    let local = suite_digest("sha384", "def");
    let canonical = suite_digest("sha256", "def");
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "foo/bar", &local, &canonical, "10", OCTET]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "foo/bar", &local]), desc(&canonical, 10, OCTET));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOCLEAR", "foo/bar", &local]), Value::Int(1));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "foo/bar", &local]), Value::Nil);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOCLEAR", "foo/bar", &local]), Value::Int(0), "nothing left to clear");
}

/// CVE-2026-35172: a blob cleared from repository A must stay invisible there when
/// repository B caches it again.
#[test]
fn cve_2026_35172_cleared_blob_stays_cleared() {
    let s = Server::start();
    let mut c = s.client();
    for repo in ["team/a", "team/b"] {
        cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", repo, D1, D1, "10", OCTET]);
    }
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOCLEAR", "team/a", D1]), Value::Int(1));
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/b", D1, D1, "10", OCTET]);

    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/a", D1]), Value::Nil);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.CONTAINS", "team/a", D1]), Value::Int(0));
    assert!(!holds(&mut c, "team/a", D1));
    assert_eq!(repo_mediatype(&mut c, "team/a", D1), None);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/b", D1]), desc(D1, 10, OCTET));

    // distribution v3.1's scoped Clear (SISMEMBER, then HDEL of the global descriptor)
    // leaves the membership behind, and the blob comes back: the bug this prevents.
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/a", D2, D2, "10", OCTET]);
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/b", D2, D2, "10", OCTET]);
    cmd(&mut c, &["HDEL", &blob_key(D2), "digest", "size", "mediatype"]);
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/b", D2, D2, "10", OCTET]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/a", D2]), desc(D2, 10, OCTET));
}

#[test]
fn stat_setdescriptor_and_clear() {
    let s = Server::start();
    let mut c = s.client();
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", D1]), Value::Nil);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.CLEAR", D1]), Value::Int(0));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.SETDESCRIPTOR", D1, D1, "42", OCTET]), Value::Okay);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", D1]), desc(D1, 42, OCTET));
    // digest and size overwritten, mediatype first writer wins.
    assert_eq!(cmd(&mut c, &["LAYERCACHE.SETDESCRIPTOR", D1, D1, "43", JSON]), Value::Okay);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", D1]), desc(D1, 43, OCTET));

    // CLEAR removes the descriptor and keeps the layer meta.
    cmd(&mut c, &["LAYERCACHE.SETMETA", D1, "/p", "43"]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.CLEAR", D1]), Value::Int(1));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", D1]), Value::Nil);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.META", D1]), Value::Array(vec![bulk("/p"), Value::Int(43)]));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.CLEAR", D1]), Value::Int(0));
}

#[test]
fn stat_needs_digest_and_size_and_reads_the_stored_digest() {
    let s = Server::start();
    let mut c = s.client();
    let blob = blob_key(D1);
    // Only the old "length" field (pre-descriptor data): a miss, as in distribution.
    cmd(&mut c, &["HSET", &blob, "digest", D1, "length", "5"]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", D1]), Value::Nil);
    // No mediatype: "".
    cmd(&mut c, &["HSET", &blob, "size", "5"]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", D1]), desc(D1, 5, ""));
    // The stored canonical digest, not the lookup key.
    cmd(&mut c, &["HSET", &blob, "digest", D2]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", D1]), desc(D2, 5, ""));
    // Stored values that are not a size or a digest: corrupt.
    cmd(&mut c, &["HSET", &blob, "size", "five"]);
    assert_eq!(error(&mut c, &[b"LAYERCACHE.STAT", D1.as_bytes()]), format!("ERR corrupt cache entry {blob}"));
    cmd(&mut c, &["HSET", &blob, "size", "5", "digest", "sha256:short"]);
    assert_eq!(error(&mut c, &[b"LAYERCACHE.STAT", D1.as_bytes()]), format!("ERR corrupt cache entry {blob}"));
}

#[test]
fn repostat_needs_membership_descriptor_and_repository_mediatype() {
    let s = Server::with(Options::scheme(Scheme::Distribution));
    let mut c = s.client();
    let scoped = format!("repository::team/app::blobs::{D1}");
    cmd(&mut c, &["LAYERCACHE.SETDESCRIPTOR", D1, D1, "7", OCTET]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/app", D1]), Value::Nil, "no membership");
    cmd(&mut c, &["LAYERCACHE.ADD", "team/app", D1]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/app", D1]), Value::Nil, "no repository mediatype field");
    cmd(&mut c, &["HSET", &scoped, "mediatype", ""]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/app", D1]), desc(D1, 7, OCTET), "empty: the global one");
    cmd(&mut c, &["HSET", &scoped, "mediatype", JSON]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/app", D1]), desc(D1, 7, JSON));
    cmd(&mut c, &["LAYERCACHE.CLEAR", D1]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/app", D1]), Value::Nil, "no global descriptor");
}

/// WITHGLOBAL: a REPOSTAT hit carries, last, the global descriptor's own mediatype,
/// so that it answers STAT as well (a blob HEAD asks both); after WITHTTL's element
/// whatever the order the options came in; a miss stays null.
#[test]
fn repostat_withglobal_answers_stat_too() {
    let s = Server::start();
    let mut c = s.client();
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D1, D1, "7", OCTET]);
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/other", D1, D1, "7", JSON]);
    let with_global = |c: &mut Connection, repo: &str, mediatype: &str, global: &str| {
        let reply = cmd(c, &["LAYERCACHE.REPOSTAT", repo, D1, "WITHGLOBAL"]);
        let stat = cmd(c, &["LAYERCACHE.STAT", D1]);
        assert_eq!(stat, desc(D1, 7, global), "{repo}: STAT");
        assert_eq!(reply, Value::Array(vec![bulk(D1), Value::Int(7), bulk(mediatype), bulk(global)]), "{repo}");
    };
    // The first writer's mediatype is the global one; team/other sees its own.
    with_global(&mut c, "team/app", OCTET, OCTET);
    with_global(&mut c, "team/other", JSON, OCTET);
    // WITHTTL's element comes before, in either order; case does not matter.
    for options in [["WITHTTL", "WITHGLOBAL"], ["withglobal", "withttl"]] {
        let reply = cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/other", D1, options[0], options[1]]);
        assert_eq!(reply, Value::Array(vec![bulk(D1), Value::Int(7), bulk(JSON), Value::Int(-1), bulk(OCTET)]), "{options:?}");
    }
    // A global descriptor without a mediatype: "" as STAT says it.
    cmd(&mut c, &["HDEL", &blob_key(D1), "mediatype"]);
    with_global(&mut c, "team/other", JSON, "");
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/none", D1, "WITHGLOBAL"]), Value::Nil, "a miss");
    for bad in [&["WITHGLOBAL", "WITHGLOBAL"][..], &["WITHTTL", "WITHTTL"], &["WITHGLOBAL", "x"], &["GLOBAL"]] {
        let args: Vec<&[u8]> =
            [&b"LAYERCACHE.REPOSTAT"[..], b"team/app", D1.as_bytes()].into_iter().chain(bad.iter().map(|w| w.as_bytes())).collect();
        assert_eq!(error(&mut c, &args), "ERR syntax error", "{bad:?}");
    }
    assert_eq!(error(&mut c, &[b"LAYERCACHE.STAT", D1.as_bytes(), b"WITHGLOBAL"]), "ERR syntax error", "STAT has no WITHGLOBAL");
}

#[test]
fn reposetdescriptor_aliases_and_mismatches() {
    let s = Server::with(Options::scheme(Scheme::Distribution));
    let mut c = s.client();
    let sha512 = format!("sha512:{}", "b".repeat(128));
    // Same digest: one set of keys.
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D1, D1, "1", OCTET]);
    assert_eq!(
        contents(&mut c),
        vec![
            format!("blobs::{D1} hash [\"digest={D1}\", \"mediatype={OCTET}\", \"size=1\"]"),
            format!("layercache::repos::{D1} hash [\"team/app=\"]"),
            format!("repository::team/app::blobs set [\"{D1}\"]"),
            format!("repository::team/app::blobs::{D1} hash [\"mediatype={OCTET}\"]"),
        ]
    );
    // Another algorithm: written under both.
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", &sha512, D2, "2", JSON]);
    for key in [&sha512, D2] {
        assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/app", key]), desc(D2, 2, JSON), "{key}");
        assert_eq!(cmd(&mut c, &["HKEYS", &format!("layercache::repos::{key}")]), Value::Array(vec![bulk("team/app")]));
    }
    // Same algorithm, different value: rejected, nothing written.
    let before = snapshot(&mut c);
    assert_eq!(
        error(&mut c, &[b"LAYERCACHE.REPOSETDESCRIPTOR", b"team/app", D1.as_bytes(), D3.as_bytes(), b"1", OCTET.as_bytes()]),
        "DIGEST_INVALID digests differ but algorithm does not"
    );
    assert!(snapshot(&mut c) == before);
}

/// Data written by plain commands in distribution's exact order is read by the module,
/// and the module's writes are read by plain commands.
#[test]
fn interop_with_distribution_plain_commands() {
    let s = Server::with(Options::scheme(Scheme::Distribution));
    let mut c = s.client();
    let (members, blob, scoped) =
        ("repository::library/ubuntu::blobs".to_string(), format!("blobs::{D1}"), format!("repository::library/ubuntu::blobs::{D1}"));
    cmd(&mut c, &["SADD", &members, D1]);
    cmd(&mut c, &["HMSET", &blob, "digest", D1, "size", "2797"]);
    cmd(&mut c, &["HSETNX", &blob, "mediatype", OCTET]);
    cmd(&mut c, &["HSET", &scoped, "mediatype", JSON]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", D1]), desc(D1, 2797, OCTET));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "library/ubuntu", D1]), desc(D1, 2797, JSON));

    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "library/debian", D2, D2, "31", JSON]);
    assert_eq!(
        cmd(&mut c, &["HMGET", &format!("blobs::{D2}"), "digest", "size", "mediatype"]),
        Value::Array(vec![bulk(D2), bulk("31"), bulk(JSON)])
    );
    assert_eq!(cmd(&mut c, &["HGET", &format!("repository::library/debian::blobs::{D2}"), "mediatype"]), bulk(JSON));
    assert_eq!(cmd(&mut c, &["SISMEMBER", "repository::library/debian::blobs", D2]), Value::Int(1));
}

fn keys_mentioning(c: &mut Connection, digest: &str) -> Vec<String> {
    let mut found: Vec<String> = redis::cmd("KEYS").arg(format!("*{digest}*")).query(c).unwrap();
    let sets: Vec<String> = redis::cmd("KEYS").arg("repository::*::blobs").query(c).unwrap();
    for set in sets {
        if redis::cmd("SISMEMBER").arg(&set).arg(digest).query::<bool>(c).unwrap() {
            found.push(format!("{set} holds it"));
        }
    }
    found
}

#[test]
fn purge_leaves_no_key_of_the_digest() {
    let s = Server::start();
    let mut c = s.client();
    cmd(&mut c, &["LAYERCACHE.SETMETA", D1, "/p", "1"]);
    cmd(&mut c, &["LAYERCACHE.ADD", "team/one", D1]);
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/two", D1, D1, "1", OCTET]);
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/three", D1, D1, "1", JSON]);
    // A neighbour that must survive.
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/two", D2, D2, "2", OCTET]);
    let neighbour = desc(D2, 2, OCTET);
    assert!(!keys_mentioning(&mut c, D1).is_empty());

    assert_eq!(cmd(&mut c, &["LAYERCACHE.PURGE", D1, D3, D1]), Value::Int(1), "D1 had state (counted once), D3 none");
    assert_eq!(keys_mentioning(&mut c, D1), Vec::<String>::new());
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/two", D2]), neighbour);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.PURGE", D1]), Value::Int(0));

    // A digest with only a blob hash (no repositories) has state too.
    cmd(&mut c, &["LAYERCACHE.SETMETA", D3, "/p", "1"]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.PURGE", D3]), Value::Int(1));
    assert_eq!(cmd(&mut c, &["EXISTS", &blob_key(D3)]), Value::Int(0));
}

#[test]
fn droprepo_removes_the_repository_only() {
    let s = Server::with(Options::scheme(Scheme::Distribution));
    let mut c = s.client();
    for d in [D1, D2] {
        cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/gone", d, d, "1", OCTET]);
    }
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/kept", D1, D1, "1", JSON]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.DROPREPO", "team/gone"]), Value::Int(2));
    let mut left: Vec<String> = redis::cmd("KEYS").arg("*team/gone*").query(&mut c).unwrap();
    left.sort();
    assert_eq!(left, Vec::<String>::new());
    assert_eq!(cmd(&mut c, &["HKEYS", &format!("layercache::repos::{D1}")]), Value::Array(vec![bulk("team/kept")]));
    assert_eq!(cmd(&mut c, &["EXISTS", &format!("layercache::repos::{D2}")]), Value::Int(0));
    // Descriptors are global and stay.
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", D2]), desc(D2, 1, OCTET));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/kept", D1]), desc(D1, 1, JSON));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.DROPREPO", "team/gone"]), Value::Int(0));
}

/// In the `blob` scheme an empty repository field is membership without a repository
/// mediatype, so REPOSTAT misses (DESIGN.md section 5).
#[test]
fn blob_scheme_repostat_needs_a_repository_mediatype() {
    let s = Server::with(Options::scheme(Scheme::Blob));
    let mut c = s.client();
    cmd(&mut c, &["LAYERCACHE.SETDESCRIPTOR", D1, D1, "7", OCTET]);
    cmd(&mut c, &["LAYERCACHE.ADD", "team/app", D1]);
    assert_eq!(cmd(&mut c, &["HGET", D1, "repo:team/app"]), bulk(""));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/app", D1]), Value::Nil, "membership only");
    cmd(&mut c, &["HSET", D1, "repo:team/app", JSON]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/app", D1]), desc(D1, 7, JSON));
    // ADD keeps a mediatype that is there.
    assert_eq!(cmd(&mut c, &["LAYERCACHE.ADD", "team/app", D1]), Value::Int(0));
    assert_eq!(cmd(&mut c, &["HGET", D1, "repo:team/app"]), bulk(JSON));
}

/// The `blob` layout: one hash per digest, aliases under both, read back by plain
/// commands; DROPREPO is refused there.
#[test]
fn blob_scheme_layout_and_droprepo() {
    let s = Server::with(Options::scheme(Scheme::Blob));
    let mut c = s.client();
    let sha512 = format!("sha512:{}", "b".repeat(128));
    cmd(&mut c, &["LAYERCACHE.SETMETA", D1, "/p", "1"]);
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", &sha512, D1, "1", OCTET]);
    cmd(&mut c, &["LAYERCACHE.ADD", "team/other", D1]);
    assert_eq!(
        contents(&mut c),
        vec![
            format!("{D1} hash [\"digest={D1}\", \"length=1\", \"mediatype={OCTET}\", \"path=/p\", \"repo:team/app={OCTET}\", \"repo:team/other=\", \"size=1\"]"),
            format!("{sha512} hash [\"digest={D1}\", \"mediatype={OCTET}\", \"repo:team/app={OCTET}\", \"size=1\"]"),
        ]
    );
    // Written with plain commands, read by the module.
    cmd(&mut c, &["HSET", D2, "digest", D2, "size", "9", "mediatype", JSON, "repo:team/plain", OCTET]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/plain", D2]), desc(D2, 9, OCTET));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.CONTAINS", "team/plain", D2]), Value::Int(1));

    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOCLEAR", "team/app", D1]), Value::Int(1));
    assert_eq!(contents(&mut c)[1], format!("{D1} hash [\"length=1\", \"path=/p\", \"repo:team/other=\"]"));
    let before = snapshot(&mut c);
    assert_eq!(error(&mut c, &[b"LAYERCACHE.DROPREPO", b"team/app"]), "ERR DROPREPO needs scheme distribution");
    assert!(snapshot(&mut c) == before);

    // The scheme shows, and cannot change at run time.
    assert_eq!(cmd(&mut c, &["CONFIG", "GET", "layercache.scheme"]), Value::Array(vec![bulk("layercache.scheme"), bulk("blob")]));
    assert!(run(&mut c, &["CONFIG", "SET", "layercache.scheme", "distribution"]).is_err());
}

/// What can outlive a PURGE (README, "Garbage collection"): when a digest's index key
/// expired or was evicted before a repository's membership set did, PURGE cannot find
/// that repository. CONTAINS and MCONTAINS there keep answering 1 until the set goes
/// (its TTL, eviction, REPOCLEAR or DROPREPO); LOOKUP, META, STAT and REPOSTAT miss, as
/// the blob hash they need is gone.
#[test]
fn a_membership_whose_index_is_gone_outlives_purge_in_contains_only() {
    if scheme() == Scheme::Blob {
        return; // one key per blob: PURGE removes all of it
    }
    let s = Server::start();
    let mut c = s.client();
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D1, D1, "1", OCTET]);
    cmd(&mut c, &["LAYERCACHE.SETMETA", D1, "/p", "1"]);
    // As eviction or expiry would: the index goes first.
    cmd(&mut c, &["DEL", &format!("layercache::repos::{D1}")]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.PURGE", D1]), Value::Int(1));

    assert_eq!(cmd(&mut c, &["LAYERCACHE.CONTAINS", "team/app", D1]), Value::Int(1));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.MCONTAINS", "team/app", D1]), Value::Array(vec![Value::Int(1)]));
    for args in [
        vec!["LAYERCACHE.LOOKUP", "team/app", D1],
        vec!["LAYERCACHE.META", D1],
        vec!["LAYERCACHE.STAT", D1],
        vec!["LAYERCACHE.REPOSTAT", "team/app", D1],
    ] {
        assert_eq!(cmd(&mut c, &args), Value::Nil, "{args:?}");
    }
    // REPOCLEAR removes what is left.
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOCLEAR", "team/app", D1]), Value::Int(1));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.CONTAINS", "team/app", D1]), Value::Int(0));
}
