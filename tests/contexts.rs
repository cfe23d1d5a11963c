//! Every place a command can run (DESIGN.md section 4): a client, MULTI/EXEC, a Lua
//! script, a function, another module's `RedisModule_Call` without and with the ACL
//! flag `C`, AOF loading, and a replica with the module. Each runs the same script of
//! every command and must give a client's replies and leave a client's keyspace.

mod common;

use common::*;
use redis::{Connection, Value};

const OCTET: &str = "application/octet-stream";
const JSON: &str = "application/json";

/// Every command, hits and misses, bad input and a wrong type, in an order whose
/// replies depend on what came before.
fn script() -> Vec<Vec<String>> {
    let sha512 = format!("sha512:{}", "a".repeat(128));
    let d4 = digest(4);
    // A key of another type where ADD writes.
    let wrong = match scheme() {
        Scheme::Distribution => "repository::wrong/app::blobs".to_string(),
        Scheme::Blob => d4.clone(),
    };
    let lines: Vec<Vec<&str>> = vec![
        vec!["LAYERCACHE.ADD", "team/app", D1],
        vec!["LAYERCACHE.ADD", "team/app", D1],
        vec!["LAYERCACHE.CONTAINS", "team/app", D1],
        vec!["LAYERCACHE.CONTAINS", "team/other", D1],
        vec!["LAYERCACHE.MCONTAINS", "team/app", D1, D2, D1],
        vec!["LAYERCACHE.SETMETA", D1, "/docker/registry/v2/blobs/sha256/9f/data", "2797"],
        vec!["LAYERCACHE.META", D1],
        vec!["LAYERCACHE.META", D2],
        vec!["LAYERCACHE.LOOKUP", "team/app", D1],
        vec!["LAYERCACHE.LOOKUP", "team/other", D1],
        vec!["LAYERCACHE.SETDESCRIPTOR", D2, D2, "10", OCTET],
        vec!["LAYERCACHE.STAT", D2],
        vec!["LAYERCACHE.STAT", D3],
        vec!["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D2, D2, "10", JSON],
        vec!["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", &sha512, D3, "3", JSON],
        vec!["LAYERCACHE.REPOSTAT", "team/app", D2],
        vec!["LAYERCACHE.REPOSTAT", "team/app", &sha512],
        vec!["LAYERCACHE.REPOSTAT", "team/other", D2],
        vec!["LAYERCACHE.REPOSETDESCRIPTOR", "other/app", D2, D2, "10", OCTET],
        vec!["LAYERCACHE.REPOCLEAR", "team/app", D2],
        vec!["LAYERCACHE.REPOCLEAR", "team/app", D2],
        vec!["LAYERCACHE.CLEAR", D3],
        vec!["LAYERCACHE.CLEAR", D3],
        vec!["LAYERCACHE.ADD", "gone/app", D3],
        vec!["LAYERCACHE.DROPREPO", "gone/app"],
        vec!["LAYERCACHE.PURGE", D2, &sha512, D2],
        vec!["LAYERCACHE.ADD", "team/app", "sha256:abc"],
        vec!["LAYERCACHE.ADD", "Team/App", D1],
        vec!["LAYERCACHE.SETMETA", D1, "/p", "007"],
        vec!["SET", &wrong, "x"],
        vec!["LAYERCACHE.ADD", "wrong/app", &d4],
        vec!["LAYERCACHE.CONTAINS", "team/app", D1],
        vec!["LAYERCACHE.STAT", D1],
    ];
    lines.into_iter().map(|l| l.into_iter().map(String::from).collect()).collect()
}

/// A reply, errors included, as comparable text.
fn reply(result: redis::RedisResult<Value>) -> String {
    match result {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error {}", error_text(&e)),
    }
}

fn query(c: &mut Connection, args: &[String]) -> String {
    reply(redis::cmd(&args[0]).arg(&args[1..]).query(c))
}

/// Runs `args` through `how` on `c`.
fn through(c: &mut Connection, how: &str, args: &[String]) -> String {
    match how {
        "client" => query(c, args),
        "multi" => {
            run(c, &["MULTI"]).unwrap();
            assert_eq!(query(c, args), "simple-string(\"QUEUED\")");
            match redis::cmd("EXEC").query::<Value>(c) {
                Ok(Value::Array(mut replies)) if replies.len() == 1 => reply(Ok(replies.remove(0))),
                // The client hands an error inside EXEC's reply back as the error.
                Err(e) => reply(Err(e)),
                other => panic!("EXEC replied {other:?}"),
            }
        }
        // pcall hands errors back as they are; call would add the script's context.
        "eval" => reply(redis::cmd("EVAL").arg("return redis.pcall(unpack(ARGV))").arg(0).arg(args).query(c)),
        "fcall" => reply(redis::cmd("FCALL").arg("through").arg(0).arg(args).query(c)),
        "module" => reply(redis::cmd("CALLER.CALL").arg(args).query(c)),
        "module-as-user" => reply(redis::cmd("CALLER.CALLAS").arg(args).query(c)),
        other => unreachable!("{other}"),
    }
}

/// The function `through`, which runs its arguments as a command.
const FUNCTION: &str = "#!lua name=layercache_test\n\
                        redis.register_function('through', function(keys, args) return redis.pcall(unpack(args)) end)";

fn with_caller() -> Options {
    let mut options = Options::default();
    options.args.extend(["--loadmodule".into(), layercache_caller::PATH.into()]);
    options
}

/// The script's replies and final keyspace, through `how`.
fn run_script(how: &str) -> (Vec<String>, Vec<String>) {
    let s = Server::with(with_caller());
    let mut c = s.client();
    run(&mut c, &["FUNCTION", "LOAD", FUNCTION]).unwrap();
    let replies = script().iter().map(|args| through(&mut c, how, args)).collect();
    (replies, contents(&mut c))
}

#[test]
fn every_context_gives_a_clients_replies_and_keyspace() {
    let (want_replies, want_keys) = run_script("client");
    assert!(want_replies.iter().any(|r| r.starts_with("error DIGEST_INVALID")), "{want_replies:?}");
    assert!(want_replies.iter().any(|r| r.starts_with("error WRONGTYPE")), "{want_replies:?}");
    for how in ["multi", "eval", "fcall", "module", "module-as-user"] {
        let (replies, keys) = run_script(how);
        for ((line, got), want) in script().iter().zip(&replies).zip(&want_replies) {
            assert_eq!(got, want, "{how}: {line:?}");
        }
        assert_eq!(keys, want_keys, "{how}: keyspace");
    }
}

/// A replica that loads the module too (so it can be promoted) applies the primary's
/// writes, and its reads answer as the primary's.
#[test]
fn a_replica_with_the_module_holds_and_serves_the_primary_data() {
    let primary = Server::with(with_caller());
    let mut p = primary.client();
    let (_replica, mut r) = Server::replica_of(&primary, true);

    for args in script() {
        // Half through another module, half from a client: both replicate.
        let how = if args.len() % 2 == 0 { "module" } else { "client" };
        through(&mut p, how, &args);
    }
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(10_000).query(&mut p).unwrap();
    assert_eq!(acked, 1);
    assert_eq!(contents(&mut r), contents(&mut p));
    let reads = [
        ["LAYERCACHE.CONTAINS", "team/app", D1].as_slice(),
        &["LAYERCACHE.MCONTAINS", "team/app", D1, D2],
        &["LAYERCACHE.LOOKUP", "team/app", D1],
        &["LAYERCACHE.META", D1],
        &["LAYERCACHE.STAT", D1],
        &["LAYERCACHE.REPOSTAT", "other/app", D2],
    ];
    for args in reads {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        assert_eq!(query(&mut r, &args), query(&mut p, &args), "{args:?}");
    }
}

/// An AOF that holds module commands (written by hand or by a tool) loads with the
/// module: the loading client has no user, and the result is a client's.
#[test]
fn aof_loading_runs_module_commands() {
    let (_, want_keys) = run_script("client");
    let dir = tempfile::tempdir().unwrap();
    let mut aof = Vec::new();
    for args in script() {
        aof.extend(format!("*{}\r\n", args.len()).into_bytes());
        for a in &args {
            aof.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
        }
    }
    std::fs::write(dir.path().join("appendonly.aof"), aof).unwrap();
    let s = Server::with(Options { args: vec!["--appendonly".into(), "yes".into()], dir: Some(dir), ..Options::default() });
    let mut c = s.client();
    // The AOF's bad commands (bad input, WRONGTYPE) fail when replayed, as they did
    // when first run; everything else is applied.
    assert_eq!(contents(&mut c), want_keys);
}

/// A restricted user's key rules apply wherever the user's command runs: called by
/// another module with the `C` flag, from a script, from a function. Each denial is in
/// ACL LOG and writes nothing.
#[test]
fn a_restricted_users_key_rules_hold_in_every_context() {
    let s = Server::with(with_caller());
    let mut admin = s.client();
    let rules: &[&str] = match scheme() {
        Scheme::Distribution => &["~repository::team-a/*", "~blobs::*"],
        Scheme::Blob => &["%R~*"],
    };
    let mut setuser = vec!["ACL", "SETUSER", "team-a", "on", ">secret", "+@all"];
    setuser.extend(rules);
    run(&mut admin, &setuser).unwrap();
    run(&mut admin, &["LAYERCACHE.ADD", "team-b/app", D1]).unwrap();
    run(&mut admin, &["FUNCTION", "LOAD", FUNCTION]).unwrap();
    run(&mut admin, &["ACL", "LOG", "RESET"]).unwrap();
    let mut c = s.client_as("team-a", "secret");
    let before = snapshot(&mut admin);

    let denied: Vec<&[&str]> = vec![
        &["LAYERCACHE.ADD", "team-b/app", D2],
        &["LAYERCACHE.REPOSETDESCRIPTOR", "team-b/app", D2, D2, "1", JSON],
        &["LAYERCACHE.REPOCLEAR", "team-b/app", D1],
        &["LAYERCACHE.PURGE", D1],
    ];
    let contexts = ["module-as-user", "eval", "fcall"];
    for how in contexts {
        for args in &denied {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let e = through(&mut c, how, &args);
            // distribution: the module's NOPERM; blob: Redis's own check of the key
            // specs, in its words for a module call or a script.
            let redis_own = e.contains("acl verification failed") || e.contains("can't access at least one of the keys");
            assert!(e.starts_with("error NOPERM") || redis_own, "{how} {args:?}: {e}");
        }
    }
    assert!(snapshot(&mut admin) == before, "denied calls wrote nothing");
    // ACL LOG folds repeated entries into one with a count.
    let log: Vec<Vec<(String, Value)>> = redis::cmd("ACL").arg("LOG").query(&mut admin).unwrap();
    let logged: i64 = log.iter().flatten().filter(|(k, _)| k == "count").map(|(_, v)| redis::from_redis_value_ref::<i64>(v).unwrap()).sum();
    assert_eq!(logged, (denied.len() * contexts.len()) as i64, "every denial is in ACL LOG: {log:?}");
    // Without the flag, the call is the module's own, unrestricted.
    let added: i64 = redis::cmd("CALLER.CALL").arg(&["LAYERCACHE.ADD", "team-b/app", D2]).query(&mut c).unwrap();
    assert_eq!(added, 1);
}
