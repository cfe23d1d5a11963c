//! The index learns plain-command writes (DESIGN.md section 1, README "Registries that
//! use plain commands"): what a stock registry writes under distribution's key names
//! is indexed, so PURGE leaves none of its keys, and `layercache.ttl` reaches them.
//! `distribution` scheme only.

mod common;

use common::*;
use redis::{Connection, Value};

const JSON: &str = "application/json";

fn distribution(module_args: &[&str]) -> Server {
    let mut options = Options::scheme(Scheme::Distribution);
    options.module_args.extend(module_args.iter().map(|a| a.to_string()));
    Server::with(options)
}


/// distribution 2.8's repository-scoped SetDescriptor, command for command.
fn registry_set_descriptor(c: &mut Connection, repo: &str, digest: &str, size: u64) {
    cmd(c, &["SADD", &format!("repository::{repo}::blobs"), digest]);
    cmd(c, &["HMSET", &format!("blobs::{digest}"), "digest", digest, "size", &size.to_string()]);
    cmd(c, &["HSETNX", &format!("blobs::{digest}"), "mediatype", JSON]);
    cmd(c, &["HSET", &format!("repository::{repo}::blobs::{digest}"), "mediatype", JSON]);
}

fn keys_of(c: &mut Connection, digest: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg(format!("*{digest}*")).query(c).unwrap();
    keys.sort();
    keys
}

fn indexed(c: &mut Connection, digest: &str) -> Vec<String> {
    let mut repos: Vec<String> = redis::cmd("HKEYS").arg(format!("layercache::repos::{digest}")).query(c).unwrap();
    repos.sort();
    repos
}

#[test]
fn plain_writes_are_indexed_and_purge_leaves_no_key() {
    let s = distribution(&[]);
    let mut c = s.client();
    registry_set_descriptor(&mut c, "team/a", D1, 1);
    registry_set_descriptor(&mut c, "team/b", D1, 1);
    // An older registry: SADD alone, several members at once, one of them no digest.
    cmd(&mut c, &["SADD", "repository::old/app::blobs", D1, D2, "not-a-digest"]);
    // In a transaction and from a script, too.
    let _: Value = redis::pipe().atomic().cmd("SADD").arg("repository::multi/app::blobs").arg(D1).query(&mut c).unwrap();
    cmd(&mut c, &["EVAL", "return redis.call('SADD', KEYS[1], ARGV[1])", "1", "repository::lua/app::blobs", D1]);
    assert_eq!(indexed(&mut c, D1), ["lua/app", "multi/app", "old/app", "team/a", "team/b"]);
    assert_eq!(indexed(&mut c, D2), ["old/app"]);

    assert_eq!(cmd(&mut c, &["LAYERCACHE.PURGE", D1]), Value::Int(1));
    assert_eq!(keys_of(&mut c, D1), Vec::<String>::new(), "no key of the purged digest");
    // The other digest and the odd member stay.
    let left: Vec<String> = redis::cmd("SMEMBERS").arg("repository::old/app::blobs").query(&mut c).unwrap();
    assert_eq!(left.len(), 2);
}

/// On Redis 7.0 the learned writes wait for the event loop; a PURGE pipelined right
/// behind the registry's writes still finds them.
#[test]
fn purge_pipelined_behind_plain_writes_is_complete() {
    let s = distribution(&[]);
    let mut c = s.client();
    let mut pipe = redis::pipe();
    for repo in ["p/a", "p/b", "p/c"] {
        pipe.cmd("SADD").arg(format!("repository::{repo}::blobs")).arg(D3).ignore();
        pipe.cmd("HSET").arg(format!("repository::{repo}::blobs::{D3}")).arg("mediatype").arg(JSON).ignore();
    }
    pipe.cmd("LAYERCACHE.PURGE").arg(D3);
    let (purged,): (i64,) = pipe.query(&mut c).unwrap();
    assert_eq!(purged, 1);
    assert_eq!(keys_of(&mut c, D3), Vec::<String>::new());
}

#[test]
fn ttl_reaches_the_keys_plain_commands_write() {
    let s = distribution(&["ttl", "500"]);
    let mut c = s.client();
    registry_set_descriptor(&mut c, "team/a", D1, 1);
    cmd(&mut c, &["SADD", "repository::old/app::blobs", D2]);
    // Keys outside distribution's names are left alone.
    cmd(&mut c, &["HSET", "other::hash", "f", "v"]);
    cmd(&mut c, &["SADD", "repository::not a repo::blobs", D2]);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert_eq!(keys.len(), 8, "{keys:?}");
    for key in &keys {
        let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut c).unwrap();
        if key == "other::hash" || key.contains("not a repo") {
            assert_eq!(ttl, -1, "{key}");
        } else {
            assert!(ttl > 400 && ttl <= 500, "{key}: {ttl}");
        }
    }
}

#[test]
fn learning_switched_off_leaves_plain_writes_alone() {
    let s = distribution(&["ttl", "500", "learn", "no"]);
    let mut c = s.client();
    assert_eq!(cmd(&mut c, &["CONFIG", "GET", "layercache.learn"]), Value::Array(vec![
        Value::BulkString(b"layercache.learn".to_vec()),
        Value::BulkString(b"no".to_vec()),
    ]));
    registry_set_descriptor(&mut c, "team/a", D1, 1);
    assert_eq!(indexed(&mut c, D1), Vec::<String>::new());
    let ttl: i64 = redis::cmd("TTL").arg(format!("blobs::{D1}")).query(&mut c).unwrap();
    assert_eq!(ttl, -1);
    // PURGE then finds no repository: the registry's membership stays.
    cmd(&mut c, &["LAYERCACHE.PURGE", D1]);
    assert_eq!(cmd(&mut c, &["SISMEMBER", "repository::team/a::blobs", D1]), Value::Int(1));
    // Switched on at run time, it learns again.
    cmd(&mut c, &["CONFIG", "SET", "layercache.learn", "yes"]);
    registry_set_descriptor(&mut c, "team/b", D1, 1);
    assert_eq!(indexed(&mut c, D1), ["team/b"]);
}

/// Learned writes replicate as plain commands: a replica without the module holds the
/// same index and the same expiry.
#[test]
fn learned_writes_reach_a_replica_without_the_module() {
    let primary = distribution(&["ttl", "500"]);
    let mut p = primary.client();
    let (_replica, mut r) = Server::replica_of(&primary, false);
    for n in 0..50 {
        registry_set_descriptor(&mut p, &format!("team-{}/app", n % 4), &digest(n), n);
    }
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(10_000).query(&mut p).unwrap();
    assert_eq!(acked, 1);
    assert_eq!(contents(&mut r), contents(&mut p));
    assert_eq!(indexed(&mut r, &digest(4)), ["team-0/app"]);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut r).unwrap();
    for key in &keys {
        let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut r).unwrap();
        assert!(ttl > 400, "{key}: {ttl} on the replica");
    }
}

/// Data written before the module was loaded: LAYERCACHE.INDEX walks it a page at a
/// time, after which PURGE is complete.
#[test]
fn index_walks_memberships_written_before_the_module() {
    let s = Server::with(Options { module: false, args: vec!["--enable-module-command".into(), "yes".into()], ..Options::default() });
    let mut c = s.client();
    for n in 0..300u64 {
        registry_set_descriptor(&mut c, &format!("team-{}/app", n % 10), &digest(n % 30), n);
    }
    cmd(&mut c, &["SADD", "repository::old/app::blobs", &digest(0), &digest(1)]);
    cmd(&mut c, &["MODULE", "LOAD", module_path().to_str().unwrap(), "scheme", "distribution"]);

    let (mut cursor, mut indexed_total, mut calls) = ("0".to_string(), 0, 0);
    loop {
        let (next, indexed): (String, i64) = redis::cmd("LAYERCACHE.INDEX").arg(&cursor).arg(7).query(&mut c).unwrap();
        indexed_total += indexed;
        calls += 1;
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    assert!(calls > 5, "bounded pages: {calls} calls");
    // 30 digests, each in one of the 10 repositories (n % 30 → n % 10), and the old one's 2.
    assert_eq!(indexed_total, 30 + 2);
    assert_eq!(indexed(&mut c, &digest(0)), ["old/app", "team-0/app"]);
    // A second pass finds nothing new.
    let (_, again): (String, i64) = redis::cmd("LAYERCACHE.INDEX").arg(0).arg(10_000).query(&mut c).unwrap();
    assert_eq!(again, 0);

    let all: Vec<String> = (0..30).map(digest).collect();
    let mut purge = redis::cmd("LAYERCACHE.PURGE");
    purge.arg(&all);
    let purged: i64 = purge.query(&mut c).unwrap();
    assert_eq!(purged, 30);
    let left: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert_eq!(left, Vec::<String>::new(), "nothing of the purged digests remains");
}

#[test]
fn index_rejects_bad_arguments_and_the_blob_scheme() {
    let s = distribution(&[]);
    let mut c = s.client();
    for (args, want) in [
        (vec!["LAYERCACHE.INDEX", "-1"], "ERR invalid cursor"),
        (vec!["LAYERCACHE.INDEX", "x"], "ERR invalid cursor"),
        (vec!["LAYERCACHE.INDEX", "0", "0"], "ERR count must be 1..10000"),
        (vec!["LAYERCACHE.INDEX", "0", "10001"], "ERR count must be 1..10000"),
        (vec!["LAYERCACHE.INDEX", "0", "10", "x"], "ERR syntax error"),
        (vec!["LAYERCACHE.INDEX"], "ERR wrong number of arguments for 'layercache.index' command"),
    ] {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(error(&mut c, &bytes), want, "{args:?}");
    }
    let blob = Server::with(Options::scheme(Scheme::Blob));
    let mut b = blob.client();
    assert_eq!(error(&mut b, &[b"LAYERCACHE.INDEX", b"0"]), "ERR INDEX needs scheme distribution");
}
