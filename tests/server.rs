//! The module inside Redis (DESIGN.md section 4): replication and AOF as plain
//! commands, ACL on the real keys, maxmemory, command docs, cluster refusal, loading
//! and configuration.

mod common;


use common::*;
use redis::Value;

/// A burst of every kind of module write, over a few repositories and digests.
fn write_burst(c: &mut redis::Connection) {
    for n in 0..200u64 {
        let (repo, d) = (format!("team-{}/app", n % 7), digest(n));
        run(c, &["LAYERCACHE.ADD", &repo, &d]).unwrap();
        if n % 3 == 0 {
            run(c, &["LAYERCACHE.SETMETA", &d, &format!("/docker/registry/v2/blobs/sha256/{n}/data"), &n.to_string()]).unwrap();
        }
        if n % 4 == 0 {
            run(c, &["LAYERCACHE.REPOSETDESCRIPTOR", &repo, &d, &d, &n.to_string(), "application/octet-stream"]).unwrap();
        }
        if n % 5 == 0 {
            run(c, &["LAYERCACHE.SETDESCRIPTOR", &d, &d, &n.to_string(), "application/json"]).unwrap();
        }
    }
    let alias = format!("sha512:{}", "c".repeat(128));
    run(c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team-0/app", &alias, &digest(0), "0", "application/json"]).unwrap();
    run(c, &["LAYERCACHE.REPOCLEAR", "team-1/app", &digest(8)]).unwrap();
    run(c, &["LAYERCACHE.CLEAR", &digest(20)]).unwrap();
    run(c, &["LAYERCACHE.PURGE", &digest(12), &digest(13), &digest(14)]).unwrap();
    if scheme() == Scheme::Distribution {
        run(c, &["LAYERCACHE.DROPREPO", "team-6/app"]).unwrap();
    }
    run(c, &["CONFIG", "SET", "layercache.ttl", "3600"]).unwrap();
    run(c, &["LAYERCACHE.ADD", "team-ttl/app", &digest(500)]).unwrap();
}

#[test]
fn a_replica_without_the_module_holds_the_primary_data() {
    let primary = Server::start();
    let mut p = primary.client();
    let (_replica, mut r) = Server::replica_of(&primary, false);

    write_burst(&mut p);
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(10_000).query(&mut p).unwrap();
    assert_eq!(acked, 1, "the replica acknowledged the writes");
    // DUMP, where the encoding allows: the replica holds every hash's fields in the
    // primary's order, not only the same fields.
    let want = snapshot(&mut p);
    assert!(want.len() > 150, "the burst wrote {} keys", want.len());
    assert!(snapshot(&mut r) == want, "the replica's keyspace differs from the primary's");
    let touched = if scheme() == Scheme::Distribution { "repository::team-ttl/app::blobs".to_string() } else { digest(500) };
    let ttl: i64 = redis::cmd("TTL").arg(touched).query(&mut r).unwrap();
    assert!(ttl > 3500, "the expiry reached the replica: {ttl}");
}

#[test]
fn an_aof_replayed_without_the_module_holds_the_same_data() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"].map(String::from).to_vec();
    let primary = Server::with(Options { args: aof.clone(), ..Options::default() });
    let mut p = primary.client();
    write_burst(&mut p);
    let want = snapshot(&mut p);
    let dir = primary.stop();

    let plain = Server::with(Options { module: false, args: aof, dir: Some(dir), ..Options::default() });
    assert!(snapshot(&mut plain.client()) == want, "the replayed keyspace differs from the primary's");
}

#[test]
fn acl_key_patterns_apply_to_the_real_keys() {
    let s = Server::with(Options::scheme(Scheme::Distribution));
    let mut admin = s.client();
    run(&mut admin, &["ACL", "SETUSER", "team-a", "on", ">secret", "~repository::team-a/*", "+@all"]).unwrap();
    run(&mut admin, &["LAYERCACHE.SETMETA", D1, "/p", "1"]).unwrap();
    let mut c = s.client_as("team-a", "secret");

    assert_eq!(run(&mut c, &["LAYERCACHE.ADD", "team-a/app", D1]).unwrap(), Value::Int(1));
    assert_eq!(run(&mut c, &["LAYERCACHE.CONTAINS", "team-a/app", D1]).unwrap(), Value::Int(1));
    assert_eq!(run(&mut c, &["LAYERCACHE.MCONTAINS", "team-a/app", D1, D2]).unwrap(), Value::Array(vec![Value::Int(1), Value::Int(0)]));

    let before = snapshot(&mut admin);
    let denied = "NOPERM this user has no permissions to access one of the keys this command touches";
    for cmd in ["LAYERCACHE.ADD", "LAYERCACHE.CONTAINS", "LAYERCACHE.MCONTAINS", "LAYERCACHE.LOOKUP"] {
        assert_eq!(error(&mut c, &[cmd.as_bytes(), b"team-b/app", D1.as_bytes()]), denied, "{cmd}");
    }
    // The global blob hash is outside the user's pattern too.
    let blob_denied = denied;
    assert_eq!(error(&mut c, &[b"LAYERCACHE.META", D1.as_bytes()]), blob_denied);
    assert_eq!(error(&mut c, &[b"LAYERCACHE.SETMETA", D1.as_bytes(), b"/q", b"2"]), blob_denied);
    assert_eq!(error(&mut c, &[b"LAYERCACHE.LOOKUP", b"team-a/app", D1.as_bytes()]), blob_denied);
    // The descriptor commands, on a repository the user may not touch.
    let desc = [D1.as_bytes(), b"1", b"application/json"];
    for args in [
        [&[&b"LAYERCACHE.REPOSTAT"[..], b"team-b/app", D1.as_bytes()][..]].concat(),
        [&[&b"LAYERCACHE.REPOSETDESCRIPTOR"[..], b"team-b/app", D1.as_bytes()][..], &desc[..]].concat(),
        [&[&b"LAYERCACHE.REPOCLEAR"[..], b"team-b/app", D1.as_bytes()][..]].concat(),
        [&[&b"LAYERCACHE.DROPREPO"[..], b"team-b/app"][..]].concat(),
    ] {
        assert_eq!(error(&mut c, &args), denied, "{}", String::from_utf8_lossy(args[0]));
    }
    for args in [
        [&[&b"LAYERCACHE.STAT"[..], D1.as_bytes()][..]].concat(),
        [&[&b"LAYERCACHE.SETDESCRIPTOR"[..], D1.as_bytes()][..], &desc[..]].concat(),
        [&[&b"LAYERCACHE.CLEAR"[..], D1.as_bytes()][..]].concat(),
        [&[&b"LAYERCACHE.PURGE"[..], D1.as_bytes()][..]].concat(),
    ] {
        assert_eq!(error(&mut c, &args), blob_denied, "{}", String::from_utf8_lossy(args[0]));
    }
    assert!(snapshot(&mut admin) == before, "denied commands wrote nothing");
}

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

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) | Value::Set(items) => items.iter().flat_map(strings).collect(),
        Value::SimpleString(s) => vec![s.clone()],
        Value::BulkString(b) => vec![String::from_utf8_lossy(b).into_owned()],
        _ => vec![],
    }
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
        ("layercache.stat", 2, &["readonly", "fast"], "write", &["digest"]),
        ("layercache.setdescriptor", 5, &["write", "denyoom", "fast"], "readonly", &["digest", "desc-digest", "size", "mediatype"]),
        ("layercache.clear", 2, &["write", "fast"], "denyoom", &["digest"]),
        ("layercache.repostat", 3, &["readonly", "fast"], "write", &["repo", "digest"]),
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

#[test]
fn info_section_lists_every_command() {
    let s = Server::start();
    let mut c = s.client();
    let info: String = redis::cmd("INFO").arg("layercache").query(&mut c).unwrap();
    assert!(info.contains("# layercache"), "{info}");
    assert!(info.contains("layercache_purged_digests:0"), "{info}");
    for cmd in COMMANDS.map(|c| c.trim_start_matches("layercache.")) {
        for field in ["calls", "hits", "misses", "rejected"] {
            assert!(info.contains(&format!("layercache_{cmd}_{field}:0")), "{cmd}_{field} in {info}");
        }
    }
}

#[test]
fn refuses_to_load_in_cluster_mode_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = dir.path().join("nodes.conf").to_string_lossy().into_owned();
    let log = Server::try_with(Options {
        args: vec!["--cluster-enabled".into(), "yes".into(), "--cluster-config-file".into(), nodes],
        dir: Some(dir),
        ..Options::scheme(Scheme::Distribution)
    })
    .err()
    .expect("a cluster-enabled server must not start with the distribution scheme");
    assert!(log.contains("layercache: not loaded") && log.contains("Redis Cluster"), "{log}");
    assert!(log.contains("scheme blob"), "the log names the fix: {log}");
}

/// Redis 7 refuses `MODULE LOAD` unless `enable-module-command` allows it.
fn module_command() -> Vec<String> {
    vec!["--enable-module-command".into(), "local".into()]
}

#[test]
fn module_load_into_a_running_server() {
    let s = Server::with(Options { module: false, args: module_command(), ..Options::default() });
    let mut c = s.client();
    assert!(error(&mut c, &[b"LAYERCACHE.CONTAINS", b"a/b", D1.as_bytes()]).starts_with("ERR unknown command"));
    let path = module_path().to_string_lossy().into_owned();
    assert_eq!(run(&mut c, &["MODULE", "LOAD", &path, "ttl", "30", "scheme", scheme().name()]).unwrap(), Value::Okay);
    assert_eq!(run(&mut c, &["LAYERCACHE.ADD", "a/b", D1]).unwrap(), Value::Int(1));
    assert_eq!(run(&mut c, &["CONFIG", "GET", "layercache.ttl"]).unwrap(), Value::Array(vec![
        Value::BulkString(b"layercache.ttl".to_vec()),
        Value::BulkString(b"30".to_vec()),
    ]));
    let modules = strings(&run(&mut c, &["MODULE", "LIST"]).unwrap());
    assert!(modules.iter().any(|m| m == "layercache"), "{modules:?}");
}

#[test]
fn bad_load_arguments_refuse_the_module_with_a_reason() {
    let cases: &[(&[&str], &str)] = &[
        (&["ttl", "-1"], "ttl must be 0..315360000 seconds, got '-1'"),
        (&["ttl", "1e3"], "ttl must be 0..315360000 seconds, got '1e3'"),
        (&["ttl", "315360001"], "ttl must be 0..315360000 seconds, got '315360001'"),
        (&["ttl"], "argument 'ttl' needs a value"),
        (&["colour", "blue"], "unknown argument 'colour'"),
        (&["scheme", "compact"], "scheme must be distribution or blob, got 'compact'"),
    ];
    for (args, reason) in cases {
        let log = Server::try_with(Options { module_args: args.iter().map(|a| a.to_string()).collect(), ..Options::default() })
            .err()
            .unwrap_or_else(|| panic!("loaded with {args:?}"));
        assert!(log.contains(&format!("layercache: not loaded: {reason}")), "{args:?}: {log}");
    }
    // And at run time, into a live server that keeps serving.
    let s = Server::with(Options { module: false, args: module_command(), ..Options::default() });
    let mut c = s.client();
    let path = module_path().to_string_lossy().into_owned();
    assert!(run(&mut c, &["MODULE", "LOAD", &path, "ttl", "-1"]).is_err());
    assert!(s.log().contains("layercache: not loaded: ttl must be"));
    assert_eq!(run(&mut c, &["PING"]).unwrap(), Value::SimpleString("PONG".into()));
}

/// In the blob scheme the keys are the digest arguments, declared through key specs,
/// so Redis's own ACL key rules apply: `%R~sha256:*` may read, not write.
#[test]
fn blob_scheme_acl_through_key_specs() {
    let s = Server::with(Options::scheme(Scheme::Blob));
    let mut admin = s.client();
    run(&mut admin, &["LAYERCACHE.SETMETA", D1, "/p", "1"]).unwrap();
    run(&mut admin, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D1, D1, "1", "application/json"]).unwrap();
    run(&mut admin, &["ACL", "SETUSER", "reader", "on", ">pw", "%R~sha256:*", "+@all"]).unwrap();
    run(&mut admin, &["ACL", "SETUSER", "writer", "on", ">pw", "~sha256:*", "+@all"]).unwrap();
    let mut reader = s.client_as("reader", "pw");
    for read in [
        &["LAYERCACHE.CONTAINS", "team/app", D1][..],
        &["LAYERCACHE.MCONTAINS", "team/app", D1, D2],
        &["LAYERCACHE.META", D1],
        &["LAYERCACHE.LOOKUP", "team/app", D1],
        &["LAYERCACHE.STAT", D1],
        &["LAYERCACHE.REPOSTAT", "team/app", D1],
    ] {
        assert!(run(&mut reader, read).is_ok(), "{read:?}");
    }
    let before = snapshot(&mut admin);
    for write in [
        &["LAYERCACHE.ADD", "team/app", D2][..],
        &["LAYERCACHE.SETMETA", D1, "/q", "2"],
        &["LAYERCACHE.SETDESCRIPTOR", D1, D1, "2", "application/json"],
        &["LAYERCACHE.CLEAR", D1],
        &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D1, D1, "2", "application/json"],
        &["LAYERCACHE.REPOCLEAR", "team/app", D1],
        &["LAYERCACHE.PURGE", D1],
    ] {
        let args: Vec<&[u8]> = write.iter().map(|a| a.as_bytes()).collect();
        let e = error(&mut reader, &args);
        assert!(e.starts_with("NOPERM"), "{write:?}: {e}");
    }
    assert!(snapshot(&mut admin) == before, "denied writes changed nothing");
    let mut writer = s.client_as("writer", "pw");
    assert_eq!(run(&mut writer, &["LAYERCACHE.ADD", "team/app", D2]).unwrap(), Value::Int(1));
    // Keys outside the pattern stay out of reach.
    let other = format!("sha512:{}", "c".repeat(128));
    assert!(error(&mut writer, &[b"LAYERCACHE.ADD", b"team/app", other.as_bytes()]).starts_with("NOPERM"));
}

/// The tenant scenario of DESIGN.md section 1: a registry user granted the global
/// descriptors (`~blobs::*`) and its own repositories learns nothing of, and can change
/// nothing of, another tenant's repositories, through the module or around it.
#[test]
fn a_tenant_sees_and_changes_nothing_of_another_tenant() {
    let s = Server::with(Options::scheme(Scheme::Distribution));
    let mut admin = s.client();
    run(&mut admin, &["ACL", "SETUSER", "team-a", "on", ">secret", "~blobs::*", "~repository::team-a/*", "+@all"]).unwrap();
    run(&mut admin, &["LAYERCACHE.REPOSETDESCRIPTOR", "team-b/secret", D1, D1, "1", "application/json"]).unwrap();
    let mut c = s.client_as("team-a", "secret");
    // team-a caches the same blob: the index learns it on team-a's behalf.
    assert_eq!(run(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team-a/app", D1, D1, "1", "application/json"]).unwrap(), Value::Okay);
    let index = format!("layercache::repos::{D1}");
    let indexed: Vec<String> = redis::cmd("HKEYS").arg(&index).query(&mut admin).unwrap();
    assert_eq!(indexed, ["team-b/secret", "team-a/app"]);
    let before = snapshot(&mut admin);

    // The index is outside the tenant's keys: no read, no write.
    for args in [
        vec!["HKEYS", &index],
        vec!["HGETALL", &index],
        vec!["DEL", &index],
        vec!["HSET", &index, "team-a/x", ""],
        vec!["LAYERCACHE.PURGE", D1],
        vec!["LAYERCACHE.DROPREPO", "team-b/secret"],
        vec!["LAYERCACHE.REPOSTAT", "team-b/secret", D1],
    ] {
        let e = run(&mut c, &args).map(|v| format!("{v:?}")).unwrap_or_else(|e| error_text(&e));
        assert!(e.starts_with("NOPERM"), "{args:?}: {e}");
        assert!(!e.contains("team-b"), "{args:?} names the other tenant: {e}");
    }
    // Every key under blobs:: is a hash, as tools that HGETALL them expect.
    let visible: Vec<String> = redis::cmd("KEYS").arg("blobs::*").query(&mut c).unwrap();
    assert_eq!(visible, [format!("blobs::{D1}")]);
    for key in &visible {
        let _: Vec<(String, String)> = redis::cmd("HGETALL").arg(key).query(&mut c).unwrap();
    }
    assert!(snapshot(&mut admin) == before, "the tenant changed nothing");
    // PURGE, an operator's command, still removes both tenants' data.
    assert_eq!(run(&mut admin, &["LAYERCACHE.PURGE", D1]).unwrap(), Value::Int(1));
    assert_eq!(contents(&mut admin), Vec::<String>::new());
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
    let freqs = |c: &mut redis::Connection| -> Vec<i64> { keys.iter().map(|k| redis::cmd("OBJECT").arg("FREQ").arg(k).query(c).unwrap()).collect() };
    let freq_before = freqs(&mut c);
    let e = error(&mut c, &[b"LAYERCACHE.REPOSETDESCRIPTOR", b"team/app", D3.as_bytes(), D3.as_bytes(), b"1", b"application/json"]);
    assert!(e.starts_with("WRONGTYPE"), "{e}");
    assert_eq!(freqs(&mut c), freq_before);
}

/// Durability: with `appendfsync always`, a server killed with SIGKILL in the middle
/// of a stream of module writes keeps every write it acknowledged, with its expiry,
/// whether it restarts with the module or without it.
#[test]
fn acknowledged_writes_survive_kill_9_with_and_without_the_module() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"].map(String::from).to_vec();
    let mut options = Options { args: aof.clone(), ..Options::default() };
    options.module_args.extend(["ttl".into(), "3600".into()]);
    let server = Server::with(options);
    let url = server.url();
    // The writer records each write once its reply has arrived, until the server dies.
    let writer = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut acked = vec![];
        for n in 0u64.. {
            let (repo, d) = (format!("team-{}/app", n % 5), digest(n));
            let result = match n % 3 {
                0 => run(&mut c, &["LAYERCACHE.ADD", &repo, &d]),
                1 => run(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", &repo, &d, &d, &n.to_string(), "application/json"]),
                _ => run(&mut c, &["LAYERCACHE.SETMETA", &d, "/p", &n.to_string()]),
            };
            if result.is_err() {
                return acked;
            }
            acked.push(n);
        }
        unreachable!()
    });
    let mut c = server.client();
    wait_until("a stream of writes", || info_counter(&mut c, "add_calls").unwrap_or(0) >= 1_000);
    let dir = server.kill();
    let acked = writer.join().unwrap();
    // About 3,000 writes had run when the server died; some replies were still in flight.
    assert!(acked.len() >= 2_000, "{} writes acknowledged", acked.len());

    for module in [true, false] {
        let mut options = Options { module, args: aof.clone(), dir: Some(tempfile::tempdir().unwrap()), ..Options::default() };
        copy_dir(dir.path(), options.dir.as_ref().unwrap().path());
        options.args.extend(["--appendfsync".into(), "everysec".into()]);
        let restarted = Server::with(options);
        let mut c = restarted.client();
        for &n in &acked {
            let (repo, d) = (format!("team-{}/app", n % 5), digest(n));
            match n % 3 {
                0 => assert!(holds(&mut c, &repo, &d), "ADD {n} lost (module: {module})"),
                1 => {
                    assert!(holds(&mut c, &repo, &d), "REPOSETDESCRIPTOR {n} lost (module: {module})");
                    let size: Option<String> = redis::cmd("HGET").arg(blob_key(&d)).arg("size").query(&mut c).unwrap();
                    assert_eq!(size, Some(n.to_string()));
                }
                _ => {
                    let length: Option<String> = redis::cmd("HGET").arg(blob_key(&d)).arg("length").query(&mut c).unwrap();
                    assert_eq!(length, Some(n.to_string()), "SETMETA {n} lost (module: {module})");
                }
            }
        }
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        for key in &keys {
            let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut c).unwrap();
            assert!(ttl > 3000 && ttl <= 3600, "{key}: TTL {ttl} after the restart (module: {module})");
        }
        println!("durability (module: {module}): {} acknowledged writes, {} keys, all present with TTL", acked.len(), keys.len());
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "redis.log" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
