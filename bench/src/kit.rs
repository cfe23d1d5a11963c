//! What every benchmark stands on: the dataset's names, a redis-server with the
//! module, connections, pipelined loading, and the errors they return.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) const REPOS: u64 = 1000;
pub(crate) const PER_REPO: u64 = 100;
pub(crate) const MEDIATYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const REPO_MEDIATYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

pub(crate) fn repo(r: u64) -> String {
    format!("bench/r{r:012}")
}

pub(crate) const RAND_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000__rand_int__";

pub(crate) use layercache_kit::{digest, info_field, write_section, Rng, Server};
use layercache_kit::Options;

pub(crate) type Result<T> = std::result::Result<T, String>;

/// redis-server with the release module (`module`: its arguments, then any `--name
/// value` settings), or without it (`None`); on `cpu` when given, under `wrapper`.
pub(crate) fn start(cpu: Option<u32>, wrapper: &[&str], module: Option<&[&str]>) -> Result<Server> {
    let mut prefix: Vec<String> = cpu.map(|cpu| vec!["taskset".into(), "-c".into(), cpu.to_string()]).unwrap_or_default();
    prefix.extend(wrapper.iter().map(|s| s.to_string()));
    Server::try_with(Options {
        module: module.is_some(),
        module_args: module.unwrap_or_default().iter().map(|s| s.to_string()).collect(),
        module_path: Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/liblayercache.so"),
        wrapper: prefix,
        ..Options::default()
    })
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
