//! Replication and durability (DESIGN.md section 4): the module's writes reach
//! replicas and the AOF as plain commands, so a replica or a replay without the module
//! holds the same data; acknowledged writes survive `kill -9`; and failover keeps
//! serving (README "Running it in your Redis"): a primary and a replica, both with the
//! module, watched by three Sentinels. A client that finds the primary through
//! Sentinel keeps getting correct `LAYERCACHE.*` replies after the primary dies and the
//! replica is promoted, and every write acknowledged by the replica (WAIT) is there.

mod common;

use common::*;
use redis::{Connection, Value};

const NAME: &str = "layercache";

/// A Sentinel on a free loopback port: the server binary in sentinel mode (Debian's
/// `redis-sentinel` is the same binary), stopped on drop.
struct Sentinel(Server);

impl Sentinel {
    fn start(primary_port: u16) -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {NAME} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {NAME} 1000\n\
                 sentinel failover-timeout {NAME} 10000\n\
                 sentinel parallel-syncs {NAME} 1\n"
            ),
        )
        .unwrap();
        let options = Options { module: false, config: Some(conf), args: vec!["--sentinel".into()], dir: Some(dir), ..Options::default() };
        Sentinel(Server::with(options))
    }

    fn client(&self) -> Option<Connection> {
        redis::Client::open(self.0.url()).ok()?.get_connection().ok()
    }

    /// The primary's port as this Sentinel knows it.
    fn primary_port(&self) -> Option<u16> {
        let mut c = self.client()?;
        let addr: Vec<String> = redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(NAME).query(&mut c).ok()?;
        addr.get(1)?.parse().ok()
    }

    fn count(&self, what: &str) -> usize {
        let Some(mut c) = self.client() else { return 0 };
        redis::cmd("SENTINEL").arg(what).arg(NAME).query::<Vec<Value>>(&mut c).map(|v| v.len()).unwrap_or(0)
    }
}

/// What a Sentinel-aware client does: ask a Sentinel for the primary and connect.
fn connect_through(sentinels: &[Sentinel]) -> Option<(u16, Connection)> {
    let port = sentinels.iter().find_map(Sentinel::primary_port)?;
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?.get_connection().ok()?;
    let role: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
    role.contains("role:master").then_some((port, c))
}


#[test]
fn a_promoted_replica_with_the_module_keeps_serving() {
    let primary = Server::start();
    let (replica, _) = Server::replica_of(&primary, true);
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(primary.port)).collect();
    wait_until("the sentinels to find the replica and each other", || {
        sentinels.iter().all(|s| s.count("replicas") == 1 && s.count("sentinels") == 2)
    });

    let (port, mut c) = connect_through(&sentinels).expect("the primary through Sentinel");
    assert_eq!(port, primary.port);
    for n in 0..300u64 {
        let (repo, d) = (format!("team-{}/app", n % 7), digest(n));
        cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", &repo, &d, &d, &n.to_string(), "application/json"]);
        cmd(&mut c, &["LAYERCACHE.SETMETA", &d, "/p", &n.to_string()]);
    }
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(10_000).query(&mut c).unwrap();
    assert_eq!(acked, 1, "the replica acknowledged the writes");
    drop(c);
    primary.kill();

    let mut promoted = None;
    wait_until("Sentinel to promote the replica", || {
        promoted = connect_through(&sentinels).filter(|(port, _)| *port == replica.port);
        promoted.is_some()
    });
    let (_, mut c) = promoted.unwrap();
    for n in 0..300u64 {
        let (repo, d) = (format!("team-{}/app", n % 7), digest(n));
        let descriptor = Value::Array(vec![
            Value::BulkString(d.clone().into_bytes()),
            Value::Int(n as i64),
            Value::BulkString(b"application/json".to_vec()),
        ]);
        assert_eq!(cmd(&mut c, &["LAYERCACHE.REPOSTAT", &repo, &d]), descriptor, "write {n}");
        let meta = Value::Array(vec![Value::BulkString(b"/p".to_vec()), Value::Int(n as i64)]);
        assert_eq!(cmd(&mut c, &["LAYERCACHE.LOOKUP", &repo, &d]), meta, "write {n}");
    }
    // And it takes writes.
    assert_eq!(cmd(&mut c, &["LAYERCACHE.ADD", "team-new/app", D1]), Value::Int(1));
    assert_eq!(cmd(&mut c, &["LAYERCACHE.CONTAINS", "team-new/app", D1]), Value::Int(1));
}

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
    let primary = Server::with(Options { args: aof.clone(), dir: Some(memory_dir()), ..Options::default() });
    let mut p = primary.client();
    write_burst(&mut p);
    let want = snapshot(&mut p);
    let dir = primary.stop();

    let plain = Server::with(Options { module: false, args: aof, dir: Some(dir), ..Options::default() });
    assert!(snapshot(&mut plain.client()) == want, "the replayed keyspace differs from the primary's");
}

/// Durability: with `appendfsync always`, a server killed with SIGKILL in the middle
/// of a stream of module writes keeps every write it acknowledged, with its expiry,
/// whether it restarts with the module or without it.
#[test]
fn acknowledged_writes_survive_kill_9_with_and_without_the_module() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"].map(String::from).to_vec();
    let mut options = Options { args: aof.clone(), dir: Some(memory_dir()), ..Options::default() };
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
        let mut options = Options { module, args: aof.clone(), dir: Some(memory_dir()), ..Options::default() };
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
