//! Loading the module (DESIGN.md section 4): at startup or with MODULE LOAD, its
//! arguments and their refusals, the refusal in cluster mode with the distribution
//! scheme, and what depends on the server version. Run against every server of
//! `make test-matrix`; on Redis 6.x this is the only suite that runs, since the module
//! must refuse to load there.

mod common;

use common::*;
use redis::Value;

/// What depends on the server version: the only tests `make test-matrix` runs on
/// Redis 6.x (`versions::`), where the module must refuse to load.
mod versions {
    use super::*;

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

    const READS: [&str; 8] = [
        "layercache.link",
        "layercache.data",
        "layercache.contains",
        "layercache.mcontains",
        "layercache.meta",
        "layercache.lookup",
        "layercache.stat",
        "layercache.repostat",
    ];
    const WRITES: [&str; 13] = [
        "layercache.linkset",
        "layercache.linkdrop",
        "layercache.linkdone",
        "layercache.setdata",
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
            let slow = matches!(
                cmd,
                "layercache.mcontains"
                    | "layercache.purge"
                    | "layercache.droprepo"
                    | "layercache.index"
                    | "layercache.linkdrop"
                    | "layercache.linkdone"
            );
            if slow {
                vec![kind]
            } else {
                vec![kind, "@fast"]
            }
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
    assert_eq!(
        run(&mut c, &["CONFIG", "GET", "layercache.ttl"]).unwrap(),
        Value::Array(vec![Value::BulkString(b"layercache.ttl".to_vec()), Value::BulkString(b"30".to_vec()),])
    );
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
