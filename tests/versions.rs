//! Behaviour that depends on the server version. Run against every server of
//! `make test-matrix`; on Redis 6.x this is the only suite that runs, since the module
//! must refuse to load there.

mod common;

use common::*;
use redis::Value;

/// On Redis 7.0+ the module loads; on 6.x it refuses, at startup and at run time,
/// with a log line that says why, and the server keeps serving (RedisJSON, built on
/// the same crate, aborts Redis 6.x at load instead).
#[test]
fn loads_on_redis_7_and_refuses_older_servers_cleanly() {
    let version = server_version();
    let why = "layercache: not loaded: needs Redis 7.0 or newer";
    if version.major >= 7 {
        let s = Server::start();
        assert_eq!(run(&mut s.client(), &["LAYERCACHE.CONTAINS", "a/b", D1]).unwrap(), Value::Int(0));
        assert!(!s.log().contains(why));
        return;
    }
    let log = Server::try_with(Options::default()).err().expect("Redis 6 must refuse the module at startup");
    assert!(log.contains(why), "{log}");
    assert!(!log.contains("crashed by signal"), "{log}");

    let s = Server::with(Options { module: false, ..Options::default() });
    let mut c = s.client();
    let path = module_path().to_string_lossy().into_owned();
    assert!(run(&mut c, &["MODULE", "LOAD", &path]).is_err(), "MODULE LOAD must fail on Redis 6");
    assert_eq!(run(&mut c, &["PING"]).unwrap(), Value::SimpleString("PONG".into()));
    assert_eq!(run(&mut c, &["SET", "still", "serving"]).unwrap(), Value::Okay);
    assert!(s.log().contains(why), "{}", s.log());
}

fn acl_category(c: &mut redis::Connection, category: &str) -> Vec<String> {
    redis::cmd("ACL").arg("CAT").arg(category).query(c).unwrap()
}

const READS: [&str; 6] = [
    "layercache.contains",
    "layercache.mcontains",
    "layercache.meta",
    "layercache.lookup",
    "layercache.stat",
    "layercache.repostat",
];
const WRITES: [&str; 9] = [
    "layercache.add",
    "layercache.setmeta",
    "layercache.setdescriptor",
    "layercache.clear",
    "layercache.reposetdescriptor",
    "layercache.repoclear",
    "layercache.purge",
    "layercache.droprepo",
    "layercache.index",
];

/// On Redis 7.2+ (and Valkey) the commands carry ACL categories, so `+@read` means
/// what it says; on 7.0, which cannot set them, the module loads without.
#[test]
fn acl_categories_where_the_server_supports_them() {
    let version = server_version();
    if version.major < 7 {
        return; // the module does not load there: see the test above
    }
    let mut all: Vec<&str> = READS.iter().chain(&WRITES).copied().collect();
    all.sort();
    let mut commands = COMMANDS.to_vec();
    commands.sort();
    assert_eq!(all, commands, "every command is a read or a write");
    let s = Server::start();
    let mut c = s.client();
    let expected = |cmd: &str| -> Vec<&str> {
        let kind = if READS.contains(&cmd) { "@read" } else { "@write" };
        let slow = matches!(cmd, "layercache.mcontains" | "layercache.purge" | "layercache.droprepo" | "layercache.index");
        if slow { vec![kind] } else { vec![kind, "@fast"] }
    };
    for cmd in READS.iter().chain(&WRITES) {
        let info = run(&mut c, &["COMMAND", "INFO", cmd]).unwrap();
        let Value::Array(entries) = &info else { panic!("{info:?}") };
        let Some(Value::Array(entry)) = entries.first() else { panic!("{cmd}: {info:?}") };
        let categories: Vec<String> = match entry.get(6) {
            Some(Value::Array(items) | Value::Set(items)) => items
                .iter()
                .map(|v| match v {
                    Value::SimpleString(s) => s.clone(),
                    Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect(),
            other => panic!("{cmd}: no categories entry: {other:?}"),
        };
        let want: Vec<String> = if version.has_7_2_api() { expected(cmd).iter().map(|s| s.to_string()).collect() } else { vec![] };
        assert_eq!(categories, want, "{cmd} ACL categories on {} {}.{}", version.product, version.major, version.minor);
    }
    if !version.has_7_2_api() {
        return; // 7.0 cannot set them; the module loaded without
    }
    // ACL CAT lists module commands from Redis 8 and in Valkey; Redis 7.2-7.4 list only
    // the built-in commands there, though `+@read` applies to module commands too.
    if version.product == "Valkey" || version.major >= 8 {
        let (read, write) = (acl_category(&mut c, "read"), acl_category(&mut c, "write"));
        for cmd in READS {
            assert!(read.iter().any(|r| r == cmd) && !write.iter().any(|r| r == cmd), "{cmd} in @read only: {read:?}");
        }
        for cmd in WRITES {
            assert!(write.iter().any(|r| r == cmd) && !read.iter().any(|r| r == cmd), "{cmd} in @write only: {write:?}");
        }
    }

    run(&mut c, &["LAYERCACHE.SETDESCRIPTOR", D1, D1, "1", "application/json"]).unwrap();
    run(&mut c, &["ACL", "SETUSER", "reader", "on", ">pw", "~*", "+@read"]).unwrap();
    let mut reader = s.client_as("reader", "pw");
    assert_eq!(run(&mut reader, &["LAYERCACHE.CONTAINS", "a/b", D1]).unwrap(), Value::Int(0));
    assert!(run(&mut reader, &["LAYERCACHE.STAT", D1]).is_ok());
    let before = snapshot(&mut c);
    for (cmd, args) in [("LAYERCACHE.ADD", &["a/b", D1][..]), ("LAYERCACHE.PURGE", &[D1][..])] {
        let mut full = vec![cmd.as_bytes()];
        full.extend(args.iter().map(|a| a.as_bytes()));
        let e = error(&mut reader, &full);
        assert!(e.starts_with("NOPERM"), "{cmd}: {e}");
    }
    assert!(snapshot(&mut c) == before);
}
