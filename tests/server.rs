//! The module inside Redis (DESIGN.md section 4): maxmemory, command info and docs,
//! and keyspace statistics as the plain commands count them. ACL, TTL, INFO, loading
//! and replication have suites of their own.

mod common;

use common::*;
use redis::Value;

#[test]
fn at_maxmemory_writes_get_oom_and_reads_answer() {
    let s = Server::start();
    let mut c = s.client();
    run(&mut c, &["LAYERCACHE.ADD", "team/app", D1]).unwrap();
    run(&mut c, &["LAYERCACHE.SETMETA", D1, "/p", "1"]).unwrap();
    run(&mut c, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]).unwrap();
    run(&mut c, &["CONFIG", "SET", "maxmemory", "1"]).unwrap();
    let before = snapshot(&mut c);

    let oom = "OOM command not allowed when used memory > 'maxmemory'.";
    assert_eq!(error(&mut c, &[b"LAYERCACHE.ADD", b"team/app", D2.as_bytes()]), oom);
    assert_eq!(error(&mut c, &[b"LAYERCACHE.SETMETA", D2.as_bytes(), b"/p", b"1"]), oom);

    assert_eq!(run(&mut c, &["LAYERCACHE.CONTAINS", "team/app", D1]).unwrap(), Value::Int(1));
    assert_eq!(run(&mut c, &["LAYERCACHE.MCONTAINS", "team/app", D1, D2]).unwrap(), Value::Array(vec![Value::Int(1), Value::Int(0)]));
    let meta = Value::Array(vec![Value::BulkString(b"/p".to_vec()), Value::Int(1)]);
    assert_eq!(run(&mut c, &["LAYERCACHE.META", D1]).unwrap(), meta);
    assert_eq!(run(&mut c, &["LAYERCACHE.LOOKUP", "team/app", D1]).unwrap(), meta);
    assert!(snapshot(&mut c) == before);

    // Descriptor writes are refused too; removals, which free memory, still run.
    let desc = [D1.as_bytes(), b"1", b"application/json"];
    assert_eq!(error(&mut c, &[&[&b"LAYERCACHE.SETDESCRIPTOR"[..], D1.as_bytes()][..], &desc[..]].concat()), oom);
    assert_eq!(error(&mut c, &[&[&b"LAYERCACHE.REPOSETDESCRIPTOR"[..], b"team/app", D1.as_bytes()][..], &desc[..]].concat()), oom);
    assert_eq!(run(&mut c, &["LAYERCACHE.STAT", D1]).unwrap(), Value::Nil);
    assert_eq!(run(&mut c, &["LAYERCACHE.REPOSTAT", "team/app", D1]).unwrap(), Value::Nil);
    assert_eq!(run(&mut c, &["LAYERCACHE.CLEAR", D1]).unwrap(), Value::Int(0));
    assert_eq!(run(&mut c, &["LAYERCACHE.REPOCLEAR", "team/app", D1]).unwrap(), Value::Int(1));
    if scheme() == Scheme::Distribution {
        assert_eq!(run(&mut c, &["LAYERCACHE.DROPREPO", "team/app"]).unwrap(), Value::Int(0));
    }
    assert_eq!(run(&mut c, &["LAYERCACHE.PURGE", D1]).unwrap(), Value::Int(1));
    assert_eq!(run(&mut c, &["DBSIZE"]).unwrap(), Value::Int(0));
}

#[test]
fn command_info_and_docs_describe_every_command() {
    let s = Server::start();
    let mut c = s.client();
    // name, arity, flags that must be there, flag that must not, argument names.
    let table: &[(&str, i64, &[&str], &str, &[&str])] = &[
        ("layercache.add", 3, &["write", "denyoom", "fast"], "readonly", &["repo", "digest"]),
        ("layercache.contains", 3, &["readonly", "fast"], "write", &["repo", "digest"]),
        ("layercache.mcontains", -3, &["readonly"], "fast", &["repo", "digest"]),
        ("layercache.setmeta", 4, &["write", "denyoom", "fast"], "readonly", &["digest", "path", "length"]),
        ("layercache.meta", 2, &["readonly", "fast"], "write", &["digest"]),
        ("layercache.lookup", 3, &["readonly", "fast"], "write", &["repo", "digest"]),
        ("layercache.stat", -2, &["readonly", "fast"], "write", &["digest", "WITHTTL"]),
        ("layercache.setdescriptor", 5, &["write", "denyoom", "fast"], "readonly", &["digest", "desc-digest", "size", "mediatype"]),
        ("layercache.clear", 2, &["write", "fast"], "denyoom", &["digest"]),
        ("layercache.repostat", -3, &["readonly", "fast"], "write", &["repo", "digest", "WITHTTL", "WITHGLOBAL"]),
        (
            "layercache.reposetdescriptor",
            6,
            &["write", "denyoom", "fast"],
            "readonly",
            &["repo", "digest", "desc-digest", "size", "mediatype"],
        ),
        ("layercache.repoclear", 3, &["write", "fast"], "denyoom", &["repo", "digest"]),
        ("layercache.purge", -2, &["write"], "fast", &["digest"]),
        ("layercache.droprepo", 2, &["write"], "fast", &["repo"]),
        ("layercache.index", -2, &["write"], "fast", &["cursor", "count"]),
        ("layercache.link", -3, &["readonly", "fast"], "write", &["repo", "path", "WITHTTL"]),
        ("layercache.linkset", 5, &["write", "denyoom", "fast"], "readonly", &["repo", "gen", "path", "value"]),
        ("layercache.linkdrop", -4, &["write"], "fast", &["repo", "hold-ms", "path"]),
        ("layercache.linkdone", -3, &["write"], "fast", &["repo", "path", "value"]),
        ("layercache.data", -2, &["readonly", "fast"], "write", &["digest", "WITHTTL"]),
        ("layercache.setdata", 3, &["write", "denyoom", "fast"], "readonly", &["digest", "bytes"]),
    ];
    let described: Vec<&str> = table.iter().map(|row| row.0).collect();
    assert_eq!(described, COMMANDS, "the table describes every command");
    let listed: Vec<String> = redis::cmd("COMMAND").arg("LIST").arg("FILTERBY").arg("MODULE").arg("layercache").query(&mut c).unwrap();
    let mut listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    listed.sort();
    let mut all = COMMANDS.to_vec();
    all.sort();
    assert_eq!(listed, all, "the module registers exactly these");
    for &(name, arity, flags, absent, args) in table {
        let info = run(&mut c, &["COMMAND", "INFO", name]).unwrap();
        let Value::Array(entries) = &info else { panic!("{name}: {info:?}") };
        let Some(Value::Array(entry)) = entries.first() else { panic!("{name} is not registered: {info:?}") };
        assert_eq!(entry.get(1), Some(&Value::Int(arity)), "{name} arity");
        let have = strings(&entry[2]);
        for flag in flags {
            assert!(have.iter().any(|f| f == flag), "{name} lacks flag {flag}: {have:?}");
        }
        assert!(!have.iter().any(|f| f == absent), "{name} has flag {absent}: {have:?}");

        let docs = strings(&run(&mut c, &["COMMAND", "DOCS", name]).unwrap());
        let after = |key: &str| docs.iter().position(|s| s == key).and_then(|i| docs.get(i + 1)).cloned();
        assert!(after("summary").is_some_and(|s| s.len() > 20), "{name} summary: {docs:?}");
        assert!(after("complexity").is_some_and(|s| s.starts_with("O(")), "{name} complexity: {docs:?}");
        assert!(after("since").is_some(), "{name} since: {docs:?}");
        let names: Vec<&String> = docs.windows(2).filter(|w| w[0] == "name").map(|w| &w[1]).collect();
        assert_eq!(names, args.to_vec().iter().collect::<Vec<_>>(), "{name} arguments");
    }
}

/// Bookkeeping is invisible (DESIGN.md section 4): a module write counts the keyspace
/// hits and misses, and sends the `keymiss` events, of the plain commands it replaces,
/// and a type check does not touch a key's LFU counter.
#[test]
fn module_writes_count_keyspace_stats_as_the_plain_commands_do() {
    let s = Server::with(Options {
        args: vec!["--notify-keyspace-events".into(), "Em".into(), "--maxmemory-policy".into(), "allkeys-lfu".into()],
        ..Options::default()
    });
    let mut c = s.client();
    let mut events = s.client();
    run(&mut events, &["SUBSCRIBE", "__keyevent@0__:keymiss"]).unwrap();
    let stats = |c: &mut redis::Connection| (info_field(c, "stats", "keyspace_hits"), info_field(c, "stats", "keyspace_misses"));

    // ADD and REPOSETDESCRIPTOR on an empty keyspace, then their plain equivalents
    // (distribution's SADD / HSET / HSETNX): the counters move alike, by nothing.
    let before = stats(&mut c);
    run(&mut c, &["LAYERCACHE.ADD", "team/app", D1]).unwrap();
    run(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D2, D2, "1", "application/json"]).unwrap();
    run(&mut c, &["LAYERCACHE.PURGE", D2, D3]).unwrap();
    assert_eq!(stats(&mut c), before, "module writes");
    run(&mut c, &["SADD", "plain::set", D1]).unwrap();
    run(&mut c, &["HSET", "plain::hash", "digest", D2, "size", "1"]).unwrap();
    run(&mut c, &["HSETNX", "plain::hash", "mediatype", "application/json"]).unwrap();
    run(&mut c, &["DEL", "plain::gone"]).unwrap();
    assert_eq!(stats(&mut c), before, "plain writes");
    // A read of a missing key is a miss, for both.
    run(&mut c, &["LAYERCACHE.STAT", D3]).unwrap();
    assert_ne!(stats(&mut c), before, "a read counts");
    // Exactly one keymiss: the STAT's.
    events.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
    let first: redis::Msg = events.as_pubsub().get_message().unwrap();
    assert_eq!(first.get_payload::<String>().unwrap(), blob_key(D3));
    assert!(events.as_pubsub().get_message().is_err(), "no other keymiss");

    // A WRONGTYPE write type-checks keys without touching their LFU counters.
    run(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D1, D1, "1", "application/json"]).unwrap();
    let bad = match scheme() {
        Scheme::Distribution => format!("repository::team/app::blobs::{D3}"),
        Scheme::Blob => D3.to_string(),
    };
    run(&mut c, &["SET", &bad, "x"]).unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    let freqs = |c: &mut redis::Connection| -> Vec<i64> {
        keys.iter().map(|k| redis::cmd("OBJECT").arg("FREQ").arg(k).query(c).unwrap()).collect()
    };
    let freq_before = freqs(&mut c);
    let e = error(&mut c, &[b"LAYERCACHE.REPOSETDESCRIPTOR", b"team/app", D3.as_bytes(), D3.as_bytes(), b"1", b"application/json"]);
    assert!(e.starts_with("WRONGTYPE"), "{e}");
    assert_eq!(freqs(&mut c), freq_before);
}

/// What Redis does not tell tracking clients (Redis 7.0 sends nothing for SWAPDB), the
/// module announces on `__layercache__:events`, for client-side caches to empty.
#[test]
fn swapdb_is_announced_on_the_events_channel() {
    let s = Server::start();
    let mut c = s.client();
    let mut events = s.client();
    run(&mut events, &["SUBSCRIBE", "__layercache__:events"]).unwrap();
    assert_eq!(run(&mut c, &["SWAPDB", "0", "1"]).unwrap(), Value::Okay);
    events.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
    let message: redis::Msg = events.as_pubsub().get_message().unwrap();
    assert_eq!(message.get_channel_name(), "__layercache__:events");
    assert_eq!(message.get_payload::<String>().unwrap(), "swapdb 0 1");
}
