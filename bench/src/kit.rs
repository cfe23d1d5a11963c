//! What every benchmark stands on: the dataset's names, a redis-server with the
//! module, connections, pipelined loading, and the errors they return.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) const REPOS: u64 = 1000;
pub(crate) const PER_REPO: u64 = 100;
pub(crate) const MEDIATYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const REPO_MEDIATYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Digest `n`: 64 decimal digits are valid hex, and redis-benchmark's 12-digit
/// `__rand_int__` after 52 zeros names the same digests.
pub(crate) fn digest(n: u64) -> String {
    format!("sha256:{n:064}")
}

pub(crate) fn repo(r: u64) -> String {
    format!("bench/r{r:012}")
}

pub(crate) const RAND_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000__rand_int__";

pub(crate) type Result<T> = std::result::Result<T, String>;

// ---------------------------------------------------------------------------------
// Servers and connections

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) _dir: PathBuf,
}

impl Server {
    /// redis-server with the release module, on `cpu` when given, or under `wrapper`.
    pub(crate) fn start(cpu: Option<u32>, wrapper: &[&str]) -> Result<Server> {
        Server::start_with(cpu, wrapper, &[])
    }

    /// `extra`: module arguments (`scheme blob`), then any `--name value` settings.
    pub(crate) fn start_with(cpu: Option<u32>, wrapper: &[&str], extra: &[&str]) -> Result<Server> {
        Server::spawn(cpu, wrapper, Some(extra))
    }

    /// redis-server without the module, with `--name value` settings.
    pub(crate) fn start_plain(cpu: Option<u32>, settings: &[&str]) -> Result<Server> {
        Server::spawn(cpu, &[], None).and_then(|server| {
            let mut c = server.connect()?;
            for pair in settings.chunks(2) {
                redis::cmd("CONFIG").arg("SET").arg(pair[0].trim_start_matches("--")).arg(pair[1]).query::<()>(&mut c).map_err(|e| e.to_string())?;
            }
            Ok(server)
        })
    }

    /// `module`: its arguments and settings, or `None` for a server without it.
    pub(crate) fn spawn(cpu: Option<u32>, wrapper: &[&str], module: Option<&[&str]>) -> Result<Server> {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let dir = std::env::temp_dir().join(format!("lcbench-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let module_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/liblayercache.so");
        let mut argv: Vec<String> = vec![];
        if let Some(cpu) = cpu {
            argv.extend(["taskset".into(), "-c".into(), cpu.to_string()]);
        }
        argv.extend(wrapper.iter().map(|s| s.to_string()));
        argv.push(std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()));
        argv.extend(["--port".into(), port.to_string(), "--bind".into(), "127.0.0.1".into()]);
        argv.extend(["--save".into(), "".into(), "--appendonly".into(), "no".into()]);
        argv.extend(["--dir".into(), dir.to_string_lossy().into_owned()]);
        if let Some(extra) = module {
            argv.extend(["--loadmodule".into(), module_path.to_string_lossy().into_owned()]);
            argv.extend(extra.iter().map(|s| s.to_string()));
        }
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", argv[0]))?;
        let server = Server { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(mut c) = server.connect() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return Ok(server);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("redis-server did not start".into())
    }

    pub(crate) fn connect(&self) -> Result<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection())
            .map_err(|e| e.to_string())
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(mut c) = self.connect() {
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut c);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

pub(crate) fn info_field(c: &mut redis::Connection, section: &str, field: &str) -> Result<String> {
    let info: String = redis::cmd("INFO").arg(section).query(c).map_err(|e| e.to_string())?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| format!("no {field} in INFO {section}"))
}

/// The server's CPU seconds so far (user + system).
pub(crate) fn server_cpu(c: &mut redis::Connection) -> Result<f64> {
    let user: f64 = info_field(c, "cpu", "used_cpu_user")?.parse().map_err(|_| "used_cpu_user")?;
    let sys: f64 = info_field(c, "cpu", "used_cpu_sys")?.parse().map_err(|_| "used_cpu_sys")?;
    Ok(user + sys)
}

pub(crate) fn pack(args: &[&str]) -> Vec<u8> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.get_packed_command()
}

/// Sends `commands` (packed) in pipelined batches and checks no reply is an error.
pub(crate) fn pipeline_all(c: &mut redis::Connection, commands: impl Iterator<Item = Vec<u8>>) -> Result<()> {
    let mut batch = Vec::new();
    let mut pending = 0;
    let flush = |c: &mut redis::Connection, batch: &mut Vec<u8>, pending: &mut usize| -> Result<()> {
        if *pending == 0 {
            return Ok(());
        }
        c.send_packed_command(batch).map_err(|e| e.to_string())?;
        for _ in 0..*pending {
            if let redis::Value::ServerError(e) = c.recv_response().map_err(|e| e.to_string())? {
                return Err(format!("{e:?}"));
            }
        }
        batch.clear();
        *pending = 0;
        Ok(())
    };
    for command in commands {
        batch.extend(command);
        pending += 1;
        if pending == 1000 {
            flush(c, &mut batch, &mut pending)?;
        }
    }
    flush(c, &mut batch, &mut pending)
}

/// Loads the dataset through the module: every repository holds its 100 digests, each
/// with meta and a descriptor (and the repository's mediatype).
pub(crate) fn load(c: &mut redis::Connection, repos: u64) -> Result<()> {
    LOADED_REPOS.store(repos, Ordering::Relaxed);
    let commands = (0..repos).flat_map(|r| (0..PER_REPO).map(move |k| (r, r * PER_REPO + k))).flat_map(|(r, n)| {
        let (repo, d) = (repo(r), digest(n));
        let path = format!("/docker/registry/v2/blobs/sha256/{}/{}/data", &d[7..9], &d[7..]);
        let size = (n * 7919 % 100_000_000).to_string();
        [
            pack(&["LAYERCACHE.REPOSETDESCRIPTOR", &repo, &d, &d, &size, REPO_MEDIATYPE]),
            pack(&["LAYERCACHE.SETMETA", &d, &path, &size]),
        ]
    });
    pipeline_all(c, commands)
}

/// How many repositories the dataset holds (fewer under callgrind).
pub(crate) static LOADED_REPOS: AtomicU64 = AtomicU64::new(REPOS);

pub(crate) fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())))
        .unwrap_or_else(|| "unknown CPU".into());
    // Not available_parallelism: the driver runs pinned to one CPU.
    let cores = std::fs::read_to_string("/proc/cpuinfo").map(|s| s.lines().filter(|l| l.starts_with("processor")).count()).unwrap_or(1);
    format!("{cpu}, {cores} cores (shared)")
}

pub(crate) fn redis_version() -> String {
    let out = Command::new(std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())).arg("--version").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().find_map(|w| w.strip_prefix("v=").map(String::from)))
        .unwrap_or_else(|| "?".into())
}
