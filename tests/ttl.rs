//! `layercache.ttl` (DESIGN.md section 4): every key a write touches gets the
//! expiry, reads leave it, removals keep what they leave as it was; set by CONFIG
//! SET or a loadmodule argument.

mod common;

use common::*;
use redis::{Connection, Value};

const OCTET: &str = "application/octet-stream";

fn pttl(c: &mut Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(c).unwrap()
}

#[test]
fn ttl_applies_to_every_written_key_and_reads_leave_it() {
    let s = Server::start();
    let mut c = s.client();
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D1, D1, "1", OCTET]);
    assert_eq!(pttl(&mut c, &blob_key(D1)), -1, "ttl 0: no expiry");

    assert_eq!(cmd(&mut c, &["CONFIG", "SET", "layercache.ttl", "100"]), Value::Okay);
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D1, D1, "1", OCTET]);
    cmd(&mut c, &["LAYERCACHE.ADD", "team/app", D2]);
    cmd(&mut c, &["LAYERCACHE.SETMETA", D2, "/p", "1"]);
    cmd(&mut c, &["LAYERCACHE.SETDESCRIPTOR", D3, D3, "1", OCTET]);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert_eq!(keys.len(), if scheme() == Scheme::Distribution { 7 } else { 3 });
    for key in &keys {
        let ms = pttl(&mut c, key);
        assert!(ms > 90_000 && ms <= 100_000, "{key}: {ms}");
    }
    // Reads never change a TTL.
    let blob = blob_key(D1);
    cmd(&mut c, &["PEXPIRE", &blob, "50000"]);
    cmd(&mut c, &["LAYERCACHE.STAT", D1]);
    cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/app", D1]);
    assert!(pttl(&mut c, &blob) <= 50_000);
    // A write refreshes it.
    cmd(&mut c, &["LAYERCACHE.SETDESCRIPTOR", D1, D1, "1", OCTET]);
    assert!(pttl(&mut c, &blob) > 90_000);

    for bad in ["-1", "315360001", "ten"] {
        assert!(run(&mut c, &["CONFIG", "SET", "layercache.ttl", bad]).is_err(), "{bad}");
    }
    assert_eq!(cmd(&mut c, &["CONFIG", "GET", "layercache.ttl"]), Value::Array(vec![bulk("layercache.ttl"), bulk("100")]));
}

#[test]
fn ttl_from_loadmodule_argument() {
    let mut options = Options::default();
    options.module_args.extend(["ttl".into(), "60".into()]);
    let s = Server::with(options);
    let mut c = s.client();
    cmd(&mut c, &["LAYERCACHE.ADD", "team/app", D1]);
    let ms = pttl(&mut c, if scheme() == Scheme::Distribution { "repository::team/app::blobs" } else { D1 });
    assert!(ms > 50_000 && ms <= 60_000, "{ms}");
}

/// Removals never extend a key's lifetime (DESIGN.md section 4): what CLEAR, REPOCLEAR,
/// PURGE and DROPREPO leave keeps the expiry it had.
#[test]
fn removals_keep_the_expiry_of_what_they_leave() {
    let s = Server::start();
    let mut c = s.client();
    cmd(&mut c, &["CONFIG", "SET", "layercache.ttl", "1000"]);
    for repo in ["team/a", "team/b"] {
        for d in [D1, D2, D3] {
            cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", repo, d, d, "1", OCTET]);
            cmd(&mut c, &["LAYERCACHE.SETMETA", d, "/p", "1"]);
        }
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    for key in &keys {
        cmd(&mut c, &["PEXPIRE", key, "500000"]);
    }
    let mut removals = vec![
        vec!["LAYERCACHE.REPOCLEAR", "team/a", D1],
        vec!["LAYERCACHE.CLEAR", D2],
        vec!["LAYERCACHE.PURGE", D3],
    ];
    if scheme() == Scheme::Distribution {
        removals.push(vec!["LAYERCACHE.DROPREPO", "team/b"]);
    }
    for args in removals {
        assert!(matches!(cmd(&mut c, &args), Value::Int(1) | Value::Int(2)), "{args:?}");
        let left: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        assert!(!left.is_empty());
        for key in &left {
            let ms = pttl(&mut c, key);
            assert!(ms > 0 && ms <= 500_000, "{args:?} left {key} with {ms} ms");
        }
    }
}

/// WITHTTL: a Stat's hit carries the milliseconds until the first key it was read
/// from expires (-1 when none does), for a cache that keeps the reply (the Go
/// provider's local tier); a miss stays null; anything else after it is a syntax error.
#[test]
fn withttl_gives_the_first_expiry_of_the_keys_read() {
    let s = Server::start();
    let mut c = s.client();
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D1, D1, "1", OCTET]);
    let ttl = |c: &mut Connection, args: &[&str]| match cmd(c, args) {
        Value::Array(v) if v.len() == 4 => match v[3] {
            Value::Int(ms) => ms,
            ref other => panic!("{args:?}: fourth element {other:?}"),
        },
        other => panic!("{args:?}: {other:?}"),
    };
    let stat = ["LAYERCACHE.STAT", D1, "WITHTTL"];
    let repostat = ["LAYERCACHE.REPOSTAT", "team/app", D1, "withttl"];
    assert_eq!(ttl(&mut c, &stat), -1);
    assert_eq!(ttl(&mut c, &repostat), -1);
    // Each key a REPOSTAT reads: the blob's (STAT's too), and in the distribution scheme
    // the repository's set and hash.
    let mut keys = vec![(blob_key(D1), true)];
    if scheme() == Scheme::Distribution {
        keys.push(("repository::team/app::blobs".to_string(), false));
        keys.push((format!("repository::team/app::blobs::{D1}"), false));
    }
    for (n, (key, read_by_stat)) in keys.iter().enumerate() {
        let limit = 50_000 - 1000 * n as i64;
        cmd(&mut c, &["PEXPIRE", key, &limit.to_string()]);
        let ms = ttl(&mut c, &repostat);
        assert!(ms > limit - 5000 && ms <= limit, "{key}: {ms}");
        if *read_by_stat {
            let ms = ttl(&mut c, &stat);
            assert!(ms > limit - 5000 && ms <= limit, "STAT, {key}: {ms}");
        }
    }
    assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/other", D1, "WITHTTL"]), Value::Nil);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.STAT", D2, "WITHTTL"]), Value::Nil);
    for bad in [&["LAYERCACHE.STAT", D1, "WITHTTLS"][..], &["LAYERCACHE.STAT", D1, "WITHTTL", "x"], &["LAYERCACHE.REPOSTAT", "team/app", D1, "TTL"]] {
        assert_eq!(error_text(&run(&mut c, bad).unwrap_err()), "ERR syntax error", "{bad:?}");
    }
}
