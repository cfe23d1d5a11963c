//! The seed layer-info commands (DESIGN.md section 2, first table) against a real
//! redis-server: replies, hits and misses, and what each leaves in the keyspace.

mod common;

use common::*;
use redis::{Commands, Value};

#[test]
fn add_and_contains() {
    let s = Server::start();
    let mut c = s.client();
    let add = |c: &mut redis::Connection, repo: &str, d: &str| -> i64 {
        redis::cmd("LAYERCACHE.ADD").arg(repo).arg(d).query(c).unwrap()
    };
    let contains = |c: &mut redis::Connection, repo: &str, d: &str| -> i64 {
        redis::cmd("LAYERCACHE.CONTAINS").arg(repo).arg(d).query(c).unwrap()
    };
    assert_eq!(contains(&mut c, "library/ubuntu", D1), 0);
    assert_eq!(add(&mut c, "library/ubuntu", D1), 1);
    assert_eq!(add(&mut c, "library/ubuntu", D1), 0, "second ADD reports already present");
    assert_eq!(contains(&mut c, "library/ubuntu", D1), 1);
    assert_eq!(contains(&mut c, "library/debian", D1), 0, "membership is per repository");
    assert_eq!(contains(&mut c, "library/ubuntu", D2), 0);

    // The keyspace: distribution's membership set plus the reverse index, or the
    // blob's hash with a field for the repository.
    assert!(holds(&mut c, "library/ubuntu", D1) && !holds(&mut c, "library/debian", D1));
    let want = match scheme() {
        Scheme::Distribution => vec![
            format!("layercache::repos::{D1} hash [\"library/ubuntu=\"]"),
            format!("repository::library/ubuntu::blobs set [\"{D1}\"]"),
        ],
        Scheme::Blob => vec![format!("{D1} hash [\"repo:library/ubuntu=\"]")],
    };
    assert_eq!(contents(&mut c), want);
}

#[test]
fn mcontains_in_argument_order() {
    let s = Server::start();
    let mut c = s.client();
    for d in [D1, D3] {
        run(&mut c, &["LAYERCACHE.ADD", "team-a/app", d]).unwrap();
    }
    let held: Vec<i64> = redis::cmd("LAYERCACHE.MCONTAINS").arg("team-a/app").arg(&[D1, D2, D3, D1]).query(&mut c).unwrap();
    assert_eq!(held, vec![1, 0, 1, 1]);
    let none: Vec<i64> = redis::cmd("LAYERCACHE.MCONTAINS").arg("team-b/app").arg(D1).query(&mut c).unwrap();
    assert_eq!(none, vec![0]);
    // One bad digest rejects the whole call.
    let e = error(&mut c, &[b"LAYERCACHE.MCONTAINS", b"team-a/app", D1.as_bytes(), b"sha256:nope"]);
    assert_eq!(e, "DIGEST_INVALID invalid checksum digest length");
}

#[test]
fn setmeta_meta_and_lookup() {
    let s = Server::start();
    let mut c = s.client();
    assert_eq!(run(&mut c, &["LAYERCACHE.META", D1]).unwrap(), Value::Nil);
    assert_eq!(run(&mut c, &["LAYERCACHE.SETMETA", D1, "/docker/registry/v2/blobs/sha256/9f/data", "1048576"]).unwrap(), Value::Okay);
    let want = Value::Array(vec![bulk("/docker/registry/v2/blobs/sha256/9f/data"), Value::Int(1048576)]);
    assert_eq!(run(&mut c, &["LAYERCACHE.META", D1]).unwrap(), want);

    // SETMETA overwrites.
    run(&mut c, &["LAYERCACHE.SETMETA", D1, "/p2", "0"]).unwrap();
    assert_eq!(run(&mut c, &["LAYERCACHE.META", D1]).unwrap(), Value::Array(vec![bulk("/p2"), Value::Int(0)]));

    // LOOKUP: null unless the repository holds the digest and the meta exists.
    assert_eq!(run(&mut c, &["LAYERCACHE.LOOKUP", "library/ubuntu", D1]).unwrap(), Value::Nil);
    run(&mut c, &["LAYERCACHE.ADD", "library/ubuntu", D1]).unwrap();
    run(&mut c, &["LAYERCACHE.ADD", "library/ubuntu", D2]).unwrap();
    assert_eq!(run(&mut c, &["LAYERCACHE.LOOKUP", "library/ubuntu", D1]).unwrap(), Value::Array(vec![bulk("/p2"), Value::Int(0)]));
    assert_eq!(run(&mut c, &["LAYERCACHE.LOOKUP", "library/ubuntu", D2]).unwrap(), Value::Nil, "member without meta");
    assert_eq!(run(&mut c, &["LAYERCACHE.LOOKUP", "library/debian", D1]).unwrap(), Value::Nil, "meta without member");

    let fields: Vec<Option<String>> = redis::cmd("HMGET").arg(blob_key(D1)).arg(&["path", "length"]).query(&mut c).unwrap();
    assert_eq!(fields, vec![Some("/p2".into()), Some("0".into())]);
}

#[test]
fn meta_with_only_one_field_is_a_miss() {
    let s = Server::start();
    let mut c = s.client();
    let _: () = c.hset(blob_key(D1), "path", "/p").unwrap();
    assert_eq!(run(&mut c, &["LAYERCACHE.META", D1]).unwrap(), Value::Nil);
    let _: () = c.hset(blob_key(D2), "length", "5").unwrap();
    assert_eq!(run(&mut c, &["LAYERCACHE.META", D2]).unwrap(), Value::Nil);
}

#[test]
fn corrupt_stored_length_is_an_error() {
    let s = Server::start();
    let mut c = s.client();
    let _: () = c.hset_multiple(blob_key(D1), &[("path", "/p"), ("length", "12abc")]).unwrap();
    let e = error(&mut c, &[b"LAYERCACHE.META", D1.as_bytes()]);
    assert_eq!(e, format!("ERR corrupt cache entry {}", blob_key(D1)));
}

/// distribution v2.0.0 `checkLayerInfoCache`, step by step, with valid digests.
#[test]
fn distribution_layer_info_cache_sequence() {
    let s = Server::start();
    let mut c = s.client();
    let (repo, path, length) = ("foo/bar", "/foo/bar/baz/layer", "1024");

    // Empty repository or digest: rejected by CONTAINS and ADD.
    for cmd in ["LAYERCACHE.CONTAINS", "LAYERCACHE.ADD"] {
        assert_eq!(error(&mut c, &[cmd.as_bytes(), b"", D1.as_bytes()]), "NAME_INVALID repository name must have at least one component");
        assert_eq!(error(&mut c, &[cmd.as_bytes(), repo.as_bytes(), b""]), "DIGEST_INVALID invalid checksum digest format");
    }
    // Unknown digest: not contained.
    assert_eq!(run(&mut c, &["LAYERCACHE.CONTAINS", repo, D1]).unwrap(), Value::Int(0));
    // Add, then it is contained.
    assert_eq!(run(&mut c, &["LAYERCACHE.ADD", repo, D1]).unwrap(), Value::Int(1));
    assert_eq!(run(&mut c, &["LAYERCACHE.CONTAINS", repo, D1]).unwrap(), Value::Int(1));
    // META of an empty digest is an error, not a miss.
    assert_eq!(error(&mut c, &[b"LAYERCACHE.META", b""]), "DIGEST_INVALID invalid checksum digest format");
    // META of a digest that only has membership: a miss.
    assert_eq!(run(&mut c, &["LAYERCACHE.META", D1]).unwrap(), Value::Nil);
    // SETMETA with an empty path is rejected.
    assert_eq!(error(&mut c, &[b"LAYERCACHE.SETMETA", D1.as_bytes(), b"", length.as_bytes()]), "ERR invalid path: empty");
    // SETMETA then META: the same path and length.
    assert_eq!(run(&mut c, &["LAYERCACHE.SETMETA", D1, path, length]).unwrap(), Value::Okay);
    assert_eq!(run(&mut c, &["LAYERCACHE.META", D1]).unwrap(), Value::Array(vec![bulk(path), Value::Int(1024)]));
}

/// Plain-command registries and the module share the same keys, both ways.
#[test]
fn interop_with_plain_commands() {
    let s = Server::start();
    let mut c = s.client();
    // Written with plain commands (in distribution's layout the way distribution
    // writes them)...
    match scheme() {
        Scheme::Distribution => {
            let _: () = c.sadd("repository::library/ubuntu::blobs", D1).unwrap();
        }
        Scheme::Blob => {
            let _: () = c.hset(D1, "repo:library/ubuntu", "").unwrap();
        }
    }
    let _: () = c.hset_multiple(blob_key(D1), &[("path", "/plain/path"), ("length", "77")]).unwrap();
    // ...read by the module.
    assert_eq!(run(&mut c, &["LAYERCACHE.CONTAINS", "library/ubuntu", D1]).unwrap(), Value::Int(1));
    assert_eq!(run(&mut c, &["LAYERCACHE.META", D1]).unwrap(), Value::Array(vec![bulk("/plain/path"), Value::Int(77)]));
    assert_eq!(run(&mut c, &["LAYERCACHE.LOOKUP", "library/ubuntu", D1]).unwrap(), Value::Array(vec![bulk("/plain/path"), Value::Int(77)]));

    // Written by the module...
    run(&mut c, &["LAYERCACHE.ADD", "library/debian", D2]).unwrap();
    run(&mut c, &["LAYERCACHE.SETMETA", D2, "/module/path", "123"]).unwrap();
    // ...read by plain commands.
    assert!(holds(&mut c, "library/debian", D2));
    let fields: Vec<Option<String>> = redis::cmd("HMGET").arg(blob_key(D2)).arg(&["path", "length"]).query(&mut c).unwrap();
    assert_eq!(fields, vec![Some("/module/path".into()), Some("123".into())]);
}

