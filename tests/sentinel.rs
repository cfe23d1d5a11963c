//! Failover keeps serving (DESIGN.md section 4, README "Running it in your Redis"): a
//! primary and a replica, both with the module, watched by three Sentinels. A client
//! that finds the primary through Sentinel keeps getting correct `LAYERCACHE.*` replies
//! after the primary dies and the replica is promoted, and every write acknowledged
//! by the replica (WAIT) is there.

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

fn query(c: &mut Connection, args: &[&str]) -> Value {
    redis::cmd(args[0]).arg(&args[1..]).query(c).unwrap()
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
        query(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", &repo, &d, &d, &n.to_string(), "application/json"]);
        query(&mut c, &["LAYERCACHE.SETMETA", &d, "/p", &n.to_string()]);
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
        assert_eq!(query(&mut c, &["LAYERCACHE.REPOSTAT", &repo, &d]), descriptor, "write {n}");
        let meta = Value::Array(vec![Value::BulkString(b"/p".to_vec()), Value::Int(n as i64)]);
        assert_eq!(query(&mut c, &["LAYERCACHE.LOOKUP", &repo, &d]), meta, "write {n}");
    }
    // And it takes writes.
    assert_eq!(query(&mut c, &["LAYERCACHE.ADD", "team-new/app", D1]), Value::Int(1));
    assert_eq!(query(&mut c, &["LAYERCACHE.CONTAINS", "team-new/app", D1]), Value::Int(1));
}
