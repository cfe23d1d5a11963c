//! A real redis-server (`$REDIS_SERVER`, default `redis-server` on PATH) on a free
//! loopback port, with the module (`$LAYERCACHE_MODULE`, default the debug build)
//! loaded in the key scheme of `$LAYERCACHE_SCHEME`, in a temporary directory.
//! Dropping a [`Server`] stops it, so servers stop even when a test fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use redis::Connection;

use crate::data::{info_field, wait_until};

/// `$LAYERCACHE_MODULE`, else the workspace's debug build.
pub fn module_path() -> PathBuf {
    match std::env::var_os("LAYERCACHE_MODULE") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/liblayercache.so"),
    }
}

pub fn server_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// A new temporary directory in memory (`/dev/shm` where there is one), for servers
/// that fsync on every write (`appendfsync always`): what they prove is that Redis wrote
/// the module's writes before replying, which a stalled disk on a shared machine would
/// only delay past the tests' bounds.
pub fn memory_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("layercache-").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// How to start a server: with or without the module, and extra arguments.
pub struct Options {
    pub module: bool,
    /// The module's own arguments (`scheme blob`, `ttl 60`).
    pub module_args: Vec<String>,
    pub module_path: PathBuf,
    /// Server settings, `--name value ...`.
    pub args: Vec<String>,
    /// A directory to start in (a restart), else a new temporary one.
    pub dir: Option<tempfile::TempDir>,
    /// A command the server runs under (`taskset -c 0`, `valgrind --tool=callgrind`).
    pub wrapper: Vec<String>,
    /// A configuration file, given before the other arguments (a Sentinel's).
    pub config: Option<PathBuf>,
}

impl Default for Options {
    /// The module with the key scheme of `$LAYERCACHE_SCHEME` (default distribution).
    fn default() -> Self {
        Options {
            module: true,
            module_args: vec!["scheme".into(), scheme().name().into()],
            module_path: module_path(),
            args: vec![],
            dir: None,
            wrapper: vec![],
            config: None,
        }
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
        wait_until("the replica link", || info_field(&mut r, "replication", "master_link_status").as_deref() == Ok("up"));
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
            let mut cmd = match options.wrapper.split_first() {
                Some((wrapper, wrapper_args)) => {
                    let mut cmd = Command::new(wrapper);
                    cmd.args(wrapper_args).arg(server_binary());
                    cmd
                }
                None => Command::new(server_binary()),
            };
            cmd.args(&options.config);
            cmd.arg("--port").arg(port.to_string())
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir").arg(dir.path())
                .arg("--logfile").arg(dir.path().join("redis.log"));
            if options.module {
                cmd.arg("--loadmodule").arg(&options.module_path).args(&options.module_args);
            }
            cmd.args(&options.args).stdout(Stdio::null()).stderr(Stdio::null());
            let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e} (set REDIS_SERVER)", server_binary()))?;
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
        // Long enough for a server under valgrind to start.
        let deadline = Instant::now() + Duration::from_secs(60);
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
        Err(format!("not ready after 60 s\n{}", self.log()))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> Connection {
        self.connect().unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url()))
    }

    pub fn connect(&self) -> Result<Connection, String> {
        redis::Client::open(self.url()).and_then(|c| c.get_connection()).map_err(|e| e.to_string())
    }

    /// A connection authenticated as `user` (password `pass`).
    pub fn client_as(&self, user: &str, pass: &str) -> Connection {
        let url = format!("redis://{user}:{pass}@127.0.0.1:{}/", self.port);
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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

