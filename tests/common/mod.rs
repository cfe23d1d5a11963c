//! Test servers: a real redis-server (`$REDIS_SERVER`, default `redis-server` on PATH)
//! on a free loopback port, with the module (`$LAYERCACHE_MODULE`, default the debug
//! build) loaded, in a temporary directory. Dropping a [`Server`] stops it, so servers
//! stop even when a test fails.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use redis::{Connection, Value};

pub const D1: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
pub const D2: &str = "sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
pub const D3: &str = "sha256:fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13";

/// Every command the module registers (its tests' one list of them).
pub const COMMANDS: [&str; 15] = [
    "layercache.add",
    "layercache.contains",
    "layercache.mcontains",
    "layercache.setmeta",
    "layercache.meta",
    "layercache.lookup",
    "layercache.stat",
    "layercache.setdescriptor",
    "layercache.clear",
    "layercache.repostat",
    "layercache.reposetdescriptor",
    "layercache.repoclear",
    "layercache.purge",
    "layercache.droprepo",
    "layercache.index",
];

/// A valid sha256 digest for any `n`.
pub fn digest(n: u64) -> String {
    format!("sha256:{:064x}", n)
}

pub fn module_path() -> PathBuf {
    match std::env::var_os("LAYERCACHE_MODULE") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/liblayercache.so"),
    }
}

pub fn server_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// How to start a server: with or without the module, and extra arguments.
pub struct Options {
    pub module: bool,
    pub module_args: Vec<String>,
    pub args: Vec<String>,
    pub dir: Option<tempfile::TempDir>,
}

impl Default for Options {
    /// The module with the key scheme of `$LAYERCACHE_SCHEME` (default distribution).
    fn default() -> Self {
        Options { module: true, module_args: vec!["scheme".into(), scheme().name().into()], args: vec![], dir: None }
    }
}

impl Options {
    /// For tests of one scheme's key layout, whatever `$LAYERCACHE_SCHEME` says.
    pub fn scheme(scheme: Scheme) -> Self {
        Options { module_args: vec!["scheme".into(), scheme.name().into()], ..Options::default() }
    }
}

/// The key scheme the module runs with (DESIGN.md sections 1 and 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Distribution,
    Blob,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Distribution => "distribution",
            Scheme::Blob => "blob",
        }
    }
}

/// `$LAYERCACHE_SCHEME`: the scheme the scheme-independent suites run in.
pub fn scheme() -> Scheme {
    match std::env::var("LAYERCACHE_SCHEME").as_deref() {
        Ok("blob") => Scheme::Blob,
        Ok("distribution") | Err(_) => Scheme::Distribution,
        Ok(other) => panic!("LAYERCACHE_SCHEME must be distribution or blob, not {other}"),
    }
}

/// The hash of a blob in the current scheme.
pub fn blob_key(digest: &str) -> String {
    match scheme() {
        Scheme::Distribution => format!("blobs::{digest}"),
        Scheme::Blob => digest.to_string(),
    }
}

/// Whether `repo` holds `digest`, read with plain commands.
pub fn holds(c: &mut Connection, repo: &str, digest: &str) -> bool {
    match scheme() {
        Scheme::Distribution => redis::cmd("SISMEMBER").arg(format!("repository::{repo}::blobs")).arg(digest).query(c).unwrap(),
        Scheme::Blob => redis::cmd("HEXISTS").arg(digest).arg(format!("repo:{repo}")).query(c).unwrap(),
    }
}

/// The repository's mediatype for `digest`, read with plain commands (None: no field).
pub fn repo_mediatype(c: &mut Connection, repo: &str, digest: &str) -> Option<String> {
    match scheme() {
        Scheme::Distribution => {
            redis::cmd("HGET").arg(format!("repository::{repo}::blobs::{digest}")).arg("mediatype").query(c).unwrap()
        }
        Scheme::Blob => redis::cmd("HGET").arg(digest).arg(format!("repo:{repo}")).query(c).unwrap(),
    }
}

impl Server {
    /// A replica of `primary`, with or without the module, once its link is up; with a
    /// connection to it.
    pub fn replica_of(primary: &Server, module: bool) -> (Server, Connection) {
        let replica = Server::with(Options {
            module,
            args: vec!["--replicaof".into(), "127.0.0.1".into(), primary.port.to_string()],
            ..Options::default()
        });
        let mut r = replica.client();
        wait_until("the replica link", || info_field(&mut r, "replication", "master_link_status") == "up");
        (replica, r)
    }

    /// A server with the module loaded.
    pub fn start() -> Server {
        Server::with(Options::default())
    }

    pub fn with(options: Options) -> Server {
        Server::try_with(options).unwrap_or_else(|log| panic!("redis-server did not start:\n{log}"))
    }

    /// Starts a server; `Err` holds its log when it exits instead of serving.
    pub fn try_with(mut options: Options) -> Result<Server, String> {
        let mut dir = options.dir.take().unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(server_binary());
            cmd.arg("--port").arg(port.to_string())
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir").arg(dir.path())
                .arg("--logfile").arg(dir.path().join("redis.log"));
            if options.module {
                cmd.arg("--loadmodule").arg(module_path()).args(&options.module_args);
            }
            cmd.args(&options.args).stdout(Stdio::null()).stderr(Stdio::null());
            let child = cmd.spawn().expect("spawn redis-server (set REDIS_SERVER)");
            let mut server = Server { child, port, dir };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(log) if log.contains("Address already in use") => {
                    dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("tempdir"));
                    continue;
                }
                Err(log) => return Err(log),
            }
        }
        Err("no free port after 5 attempts".into())
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log());
            }
            if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection()) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return Ok(());
                }
            }
            sleep(Duration::from_millis(20));
        }
        Err(format!("not ready after 20 s\n{}", self.log()))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }

    /// A connection authenticated as `user` (password `pass`).
    pub fn client_as(&self, user: &str, pass: &str) -> Connection {
        let url = format!("redis://{user}:{pass}@127.0.0.1:{}/", self.port);
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Stops the server (SHUTDOWN NOSAVE, then kill) and hands back its directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    /// Kills the server with SIGKILL, as a crash or an OOM killer would, and hands back
    /// its directory.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    fn shutdown(&mut self) {
        if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection()) {
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut c);
        }
        // Long enough for a server under valgrind to write its leak report.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    /// Shuts the server down cleanly (so that a server under valgrind reports its
    /// leaks), killing it if it does not stop.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.shutdown();
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Runs a command given as strings; returns the raw reply (errors as `Err`).
pub fn run(c: &mut Connection, args: &[&str]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

/// Runs a command that must fail; returns the full error text (code first).
pub fn error(c: &mut Connection, args: &[&[u8]]) -> String {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<Value>(c) {
        Ok(v) => panic!("{:?} succeeded with {v:?}", String::from_utf8_lossy(&args.concat())),
        Err(e) => error_text(&e),
    }
}

/// The error as the server sent it: `CODE message`.
pub fn error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// Every key with its DUMP, sorted: a fingerprint of the keyspace. A hashtable's DUMP
/// follows its bucket order, which incremental rehashing changes on reads, so for those
/// the logical contents stand in.
pub fn snapshot(c: &mut Connection) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(c).unwrap();
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let encoding: String = redis::cmd("OBJECT").arg("ENCODING").arg(&k).query(c).unwrap();
            let fingerprint: Vec<u8> = if encoding == "hashtable" {
                contents_of(c, &String::from_utf8_lossy(&k)).into_bytes()
            } else {
                redis::cmd("DUMP").arg(&k).query(c).unwrap()
            };
            (k, fingerprint)
        })
        .collect()
}

/// Every key with its type and contents (members and fields sorted), comparable
/// across servers, where DUMP of a hashtable-encoded set is not.
pub fn contents(c: &mut Connection) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(c).unwrap();
    keys.sort();
    keys.into_iter().map(|k| contents_of(c, &k)).collect()
}

fn contents_of(c: &mut Connection, key: &str) -> String {
    let kind: String = redis::cmd("TYPE").arg(key).query(c).unwrap();
    let mut items: Vec<String> = match kind.as_str() {
        "set" => redis::cmd("SMEMBERS").arg(key).query(c).unwrap(),
        "hash" => {
            let pairs: Vec<(String, String)> = redis::cmd("HGETALL").arg(key).query(c).unwrap();
            pairs.into_iter().map(|(f, v)| format!("{f}={v}")).collect()
        }
        other => vec![format!("<{other}>")],
    };
    items.sort();
    format!("{key} {kind} {items:?}")
}

/// The server build under test, from `$REDIS_SERVER --version`.
pub struct Version {
    /// "Redis" or "Valkey".
    pub product: String,
    pub major: u32,
    pub minor: u32,
}

impl Version {
    /// Whether the server has Redis 7.2's module API (ACL categories for module
    /// commands). Valkey forked from Redis 7.2.
    pub fn has_7_2_api(&self) -> bool {
        self.product == "Valkey" || (self.major, self.minor) >= (7, 2)
    }
}

pub fn server_version() -> Version {
    let out = Command::new(server_binary()).arg("--version").output().expect("run $REDIS_SERVER --version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "Redis server v=7.0.15 sha=..." / "Valkey server v=9.1.2 ..."
    let product = text.split_whitespace().next().unwrap_or_default().to_string();
    let numbers: Vec<u32> = text
        .split_once("v=")
        .map(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit() && c != '.').next().unwrap_or_default())
        .unwrap_or_default()
        .split('.')
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers.as_slice() {
        [major, minor, ..] => Version { product, major: *major, minor: *minor },
        _ => panic!("cannot read the version of {}: {text}", server_binary()),
    }
}

/// A field of `INFO <section>`.
pub fn info_field(c: &mut Connection, section: &str, field: &str) -> String {
    let info: String = redis::cmd("INFO").arg(section).query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
        .trim()
        .to_string()
}

/// The counter `layercache_<name>` of `INFO layercache`.
pub fn info_counter(c: &mut Connection, name: &str) -> u64 {
    info_field(c, "layercache", &format!("layercache_{name}")).parse().unwrap()
}

/// Polls `done` until it holds; fails the test after 60 s.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(20));
    }
}
