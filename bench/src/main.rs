//! `lcbench`: layercache against Redis's own commands, end to end, in one run.
//!
//! `lcbench throughput` starts a redis-server with the release module pinned to CPU 0
//! (run the driver itself on CPU 1: `scripts/bench.sh` does), loads 1,000 repositories
//! × 100 sha256 digests through the module (meta and descriptor on each), then measures
//! each module command and its native counterparts alternately, several runs each, and
//! writes the medians into BENCHMARKS.md. `lcbench instructions` counts instructions per
//! operation under callgrind. `lcbench memory` measures bytes per membership/descriptor.
//!
//! Where redis-benchmark can express a workload, it runs it; where it cannot (a hit on a
//! random repository's own digest, multi-command operations) this driver does: N
//! connections in lockstep, each sending one operation (or a pipeline of P) per round.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const REPOS: u64 = 1000;
const PER_REPO: u64 = 100;
const MEDIATYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const REPO_MEDIATYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Digest `n`: 64 decimal digits are valid hex, and redis-benchmark's 12-digit
/// `__rand_int__` after 52 zeros names the same digests.
fn digest(n: u64) -> String {
    format!("sha256:{n:064}")
}

fn repo(r: u64) -> String {
    format!("bench/r{r:012}")
}

const RAND_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000__rand_int__";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: u64| -> u64 {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let (runs, seconds) = (opt("--runs", 3), opt("--seconds", 2));
    let out = PathBuf::from("BENCHMARKS.md");
    let result = match args.first().map(String::as_str) {
        Some("throughput") => throughput(runs, seconds).map(|s| write_section(&out, "throughput", &s)),
        Some("memory") => memory().map(|s| write_section(&out, "memory", &s)),
        Some("schemes") => schemes(runs, seconds).map(|s| write_section(&out, "schemes", &s)),
        Some("criterion") => Ok(criterion_table(std::io::read_to_string(std::io::stdin()).unwrap_or_default()))
            .map(|s| write_section(&out, "criterion", &s)),
        Some("instructions") => instructions(opt("--ops", 4000)).map(|s| write_section(&out, "instructions", &s)),
        Some("large") => large(runs).map(|s| write_section(&out, "large", &s)),
        Some("learn") => learn_cost(runs).map(|s| write_section(&out, "learn", &s)),
        _ => Err("usage: lcbench throughput|memory|schemes|instructions|large|learn|criterion [--runs N] [--seconds S] [--ops N]".into()),
    };
    if let Err(e) = result {
        eprintln!("lcbench: {e}");
        std::process::exit(1);
    }
}

type Result<T> = std::result::Result<T, String>;

// ---------------------------------------------------------------------------------
// Servers and connections

struct Server {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Server {
    /// redis-server with the release module, on `cpu` when given, or under `wrapper`.
    fn start(cpu: Option<u32>, wrapper: &[&str]) -> Result<Server> {
        Server::start_with(cpu, wrapper, &[])
    }

    /// `extra`: module arguments (`scheme blob`), then any `--name value` settings.
    fn start_with(cpu: Option<u32>, wrapper: &[&str], extra: &[&str]) -> Result<Server> {
        Server::spawn(cpu, wrapper, Some(extra))
    }

    /// redis-server without the module, with `--name value` settings.
    fn start_plain(cpu: Option<u32>, settings: &[&str]) -> Result<Server> {
        Server::spawn(cpu, &[], None).and_then(|server| {
            let mut c = server.connect()?;
            for pair in settings.chunks(2) {
                redis::cmd("CONFIG").arg("SET").arg(pair[0].trim_start_matches("--")).arg(pair[1]).query::<()>(&mut c).map_err(|e| e.to_string())?;
            }
            Ok(server)
        })
    }

    /// `module`: its arguments and settings, or `None` for a server without it.
    fn spawn(cpu: Option<u32>, wrapper: &[&str], module: Option<&[&str]>) -> Result<Server> {
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

    fn connect(&self) -> Result<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection())
            .map_err(|e| e.to_string())
    }

    fn pid(&self) -> u32 {
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

fn info_field(c: &mut redis::Connection, section: &str, field: &str) -> Result<String> {
    let info: String = redis::cmd("INFO").arg(section).query(c).map_err(|e| e.to_string())?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| format!("no {field} in INFO {section}"))
}

/// The server's CPU seconds so far (user + system).
fn server_cpu(c: &mut redis::Connection) -> Result<f64> {
    let user: f64 = info_field(c, "cpu", "used_cpu_user")?.parse().map_err(|_| "used_cpu_user")?;
    let sys: f64 = info_field(c, "cpu", "used_cpu_sys")?.parse().map_err(|_| "used_cpu_sys")?;
    Ok(user + sys)
}

fn pack(args: &[&str]) -> Vec<u8> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.get_packed_command()
}

/// Sends `commands` (packed) in pipelined batches and checks no reply is an error.
fn pipeline_all(c: &mut redis::Connection, commands: impl Iterator<Item = Vec<u8>>) -> Result<()> {
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
fn load(c: &mut redis::Connection, repos: u64) -> Result<()> {
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

// ---------------------------------------------------------------------------------
// Workloads of the driver

/// A small xorshift generator: the driver needs speed and repeatability, not quality.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One operation: round trips in order, each a pipelined group of packed commands.
struct Op {
    trips: Vec<(Vec<u8>, usize)>,
}

fn op(trips: Vec<Vec<Vec<u8>>>) -> Op {
    Op { trips: trips.into_iter().map(|cmds| (cmds.concat(), cmds.len())).collect() }
}

struct Scripts {
    lookup: String,
    repostat: String,
    reposetdescriptor: String,
}

const LOOKUP_LUA: &str = "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then \
    local v = redis.call('HMGET', KEYS[2], 'path', 'length') \
    if v[1] and v[2] then return {v[1], tonumber(v[2])} end end return false";
const REPOSTAT_LUA: &str = "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return false end \
    local d = redis.call('HMGET', KEYS[2], 'digest', 'size', 'mediatype') \
    if not d[1] or not d[2] then return false end \
    local m = redis.call('HGET', KEYS[3], 'mediatype') \
    if not m then return false end \
    if m ~= '' then d[3] = m end \
    return {d[1], tonumber(d[2]), d[3] or ''}";
const REPOSETDESCRIPTOR_LUA: &str = "redis.call('SADD', KEYS[1], ARGV[1]) \
    redis.call('HSET', KEYS[2], 'digest', ARGV[2], 'size', ARGV[3]) \
    redis.call('HSETNX', KEYS[2], 'mediatype', ARGV[4]) \
    redis.call('HSET', KEYS[3], 'mediatype', ARGV[4]) return 'OK'";

/// A workload: builds one random operation.
type Build = fn(&mut Rng, &Scripts) -> Op;

/// A random repository and one of its own digests, with distribution's key names.
struct Pick {
    repo: String,
    digest: String,
    members: String,
    blob: String,
    scoped: String,
}

/// How many repositories the dataset holds (fewer under callgrind).
static LOADED_REPOS: AtomicU64 = AtomicU64::new(REPOS);

fn loaded_repos() -> u64 {
    LOADED_REPOS.load(Ordering::Relaxed)
}

fn pick(rng: &mut Rng) -> Pick {
    let r = rng.below(loaded_repos());
    let (repo, digest) = (repo(r), digest(r * PER_REPO + rng.below(PER_REPO)));
    Pick {
        members: format!("repository::{repo}::blobs"),
        blob: format!("blobs::{digest}"),
        scoped: format!("repository::{repo}::blobs::{digest}"),
        repo,
        digest,
    }
}

fn contains(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["LAYERCACHE.CONTAINS", &p.repo, &p.digest])]])
}
fn sismember(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["SISMEMBER", &p.members, &p.digest])]])
}
fn lookup(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["LAYERCACHE.LOOKUP", &p.repo, &p.digest])]])
}
fn lookup_pipelined(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["SISMEMBER", &p.members, &p.digest]), pack(&["HMGET", &p.blob, "path", "length"])]])
}
fn lookup_multi(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![
        pack(&["MULTI"]),
        pack(&["SISMEMBER", &p.members, &p.digest]),
        pack(&["HMGET", &p.blob, "path", "length"]),
        pack(&["EXEC"]),
    ]])
}
fn lookup_eval(rng: &mut Rng, s: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["EVALSHA", &s.lookup, "2", &p.members, &p.blob, &p.digest])]])
}
fn repostat(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["LAYERCACHE.REPOSTAT", &p.repo, &p.digest])]])
}
fn repostat_trips(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![
        vec![pack(&["SISMEMBER", &p.members, &p.digest])],
        vec![pack(&["HMGET", &p.blob, "digest", "size", "mediatype"])],
        vec![pack(&["HGET", &p.scoped, "mediatype"])],
    ])
}
fn repostat_eval(rng: &mut Rng, s: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["EVALSHA", &s.repostat, "3", &p.members, &p.blob, &p.scoped, &p.digest])]])
}
fn reposetdescriptor(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["LAYERCACHE.REPOSETDESCRIPTOR", &p.repo, &p.digest, &p.digest, "2797", REPO_MEDIATYPE])]])
}
fn reposetdescriptor_trips(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![
        vec![pack(&["SADD", &p.members, &p.digest])],
        vec![pack(&["HSET", &p.blob, "digest", &p.digest, "size", "2797"])],
        vec![pack(&["HSETNX", &p.blob, "mediatype", MEDIATYPE])],
        vec![pack(&["HSET", &p.scoped, "mediatype", REPO_MEDIATYPE])],
    ])
}
fn reposetdescriptor_eval(rng: &mut Rng, s: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&[
        "EVALSHA",
        &s.reposetdescriptor,
        "3",
        &p.members,
        &p.blob,
        &p.scoped,
        &p.digest,
        &p.digest,
        "2797",
        REPO_MEDIATYPE,
    ])]])
}
/// A repository and 20 digests, about half of them its own.
fn twenty(rng: &mut Rng) -> (String, Vec<String>) {
    let repos = loaded_repos();
    let r = rng.below(repos);
    let digests = (0..20)
        .map(|_| digest(if rng.below(2) == 0 { r * PER_REPO + rng.below(PER_REPO) } else { rng.below(repos * PER_REPO) }))
        .collect();
    (repo(r), digests)
}
fn mcontains(rng: &mut Rng, _: &Scripts) -> Op {
    let (repo, digests) = twenty(rng);
    let mut args = vec!["LAYERCACHE.MCONTAINS", &repo];
    args.extend(digests.iter().map(String::as_str));
    op(vec![vec![pack(&args)]])
}
fn sismember20(rng: &mut Rng, _: &Scripts) -> Op {
    let (repo, digests) = twenty(rng);
    let members = format!("repository::{repo}::blobs");
    op(vec![digests.iter().map(|d| pack(&["SISMEMBER", &members, d])).collect()])
}

/// Runs `build` operations on `clients` connections in lockstep, `pipeline` operations
/// per connection per round, for `seconds`. Returns (ops/s, server µs per op).
fn drive(server: &Server, build: Build, scripts: &Scripts, clients: usize, pipeline: usize, seconds: u64) -> Result<(f64, f64)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pool: Vec<Op> = (0..4096).map(|_| build(&mut rng, scripts)).collect();
    let mut conns = (0..clients).map(|_| server.connect()).collect::<Result<Vec<_>>>()?;
    let mut admin = server.connect()?;
    let trips = pool[0].trips.len();
    let (mut ops, mut next) = (0u64, 0usize);
    let cpu0 = server_cpu(&mut admin)?;
    let start = Instant::now();
    let mut buf = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        let round: Vec<usize> = (0..clients * pipeline).map(|i| (next + i) % pool.len()).collect();
        next = (next + round.len()) % pool.len();
        for trip in 0..trips {
            for (conn, batch) in conns.iter_mut().zip(round.chunks(pipeline)) {
                buf.clear();
                for &i in batch {
                    buf.extend_from_slice(&pool[i].trips[trip].0);
                }
                conn.send_packed_command(&buf).map_err(|e| e.to_string())?;
            }
            for (conn, batch) in conns.iter_mut().zip(round.chunks(pipeline)) {
                let replies: usize = batch.iter().map(|&i| pool[i].trips[trip].1).sum();
                for _ in 0..replies {
                    if let redis::Value::ServerError(e) = conn.recv_response().map_err(|e| e.to_string())? {
                        return Err(format!("error reply: {e:?}"));
                    }
                }
            }
        }
        ops += round.len() as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = server_cpu(&mut admin)? - cpu0;
    Ok((ops as f64 / elapsed, cpu * 1e6 / ops as f64))
}

/// Runs redis-benchmark with `command`; returns (ops/s, server µs per op).
fn redis_benchmark(server: &Server, command: &[&str], pipeline: usize, requests: u64) -> Result<(f64, f64)> {
    let mut admin = server.connect()?;
    let cpu0 = server_cpu(&mut admin)?;
    let out = Command::new("redis-benchmark")
        .args(["-p", &server.port.to_string(), "-c", "50", "-n", &requests.to_string(), "-P", &pipeline.to_string()])
        .args(["-r", &(REPOS * PER_REPO).to_string(), "--csv"])
        .args(command)
        .output()
        .map_err(|e| format!("redis-benchmark: {e}"))?;
    let cpu = server_cpu(&mut admin)? - cpu0;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .last()
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse::<f64>().ok())
        .ok_or_else(|| format!("cannot read redis-benchmark output: {text}"))?;
    Ok((rps, cpu * 1e6 / requests as f64))
}

// ---------------------------------------------------------------------------------
// The throughput table

enum How {
    Driver(Build, usize),
    Benchmark(&'static [&'static str], usize),
}

struct Variant {
    name: &'static str,
    how: How,
}

struct Row {
    title: &'static str,
    target: &'static str,
    /// The module variant first, then its native counterparts.
    variants: Vec<Variant>,
    /// Minimum module/native ops/s ratio per native variant (0: no target).
    min_ratio: Vec<f64>,
}

fn v(name: &'static str, how: How) -> Variant {
    Variant { name, how }
}

fn rows() -> Vec<Row> {
    use How::*;
    const META: &[&str] = &["LAYERCACHE.META", RAND_DIGEST];
    const HMGET_META: &[&str] = &["HMGET", "blobs::sha256:0000000000000000000000000000000000000000000000000000__rand_int__", "path", "length"];
    const STAT: &[&str] = &["LAYERCACHE.STAT", RAND_DIGEST];
    const HMGET_STAT: &[&str] =
        &["HMGET", "blobs::sha256:0000000000000000000000000000000000000000000000000000__rand_int__", "digest", "size", "mediatype"];
    const ADD: &[&str] = &["LAYERCACHE.ADD", "bench/r__rand_int__", RAND_DIGEST];
    const SADD: &[&str] = &["SADD", "repository::bench/r__rand_int__::blobs", RAND_DIGEST];
    const SETMETA: &[&str] = &["LAYERCACHE.SETMETA", RAND_DIGEST, "/docker/registry/v2/blobs/sha256/__rand_int__/data", "2797"];
    const HSET: &[&str] = &[
        "HSET",
        "blobs::sha256:0000000000000000000000000000000000000000000000000000__rand_int__",
        "path",
        "/docker/registry/v2/blobs/sha256/__rand_int__/data",
        "length",
        "2797",
    ];
    let mut rows = vec![];
    for p in [1, 16] {
        let mode = if p == 1 { "unpipelined, 50 clients" } else { "pipelined -P 16, 50 clients" };
        // Targets: unpipelined reads ≥ 0.95; pipelined CONTAINS ≥ 0.75, META and STAT ≥ 0.85.
        let (contains_min, read_min) = if p == 1 { (0.95, 0.95) } else { (0.75, 0.85) };
        rows.push(Row {
            title: leak(format!("CONTAINS vs SISMEMBER ({mode})")),
            target: leak(format!("≥ {contains_min}")),
            variants: vec![v("LAYERCACHE.CONTAINS", Driver(contains, p)), v("SISMEMBER", Driver(sismember, p))],
            min_ratio: vec![contains_min],
        });
        for (title, module, native, module_cmd, native_cmd, min) in [
            ("META vs HMGET path length", "LAYERCACHE.META", "HMGET path length", META, HMGET_META, read_min),
            ("STAT vs HMGET digest size mediatype", "LAYERCACHE.STAT", "HMGET digest size mediatype", STAT, HMGET_STAT, read_min),
            ("ADD vs SADD", "LAYERCACHE.ADD", "SADD", ADD, SADD, 0.0),
            ("SETMETA vs HSET", "LAYERCACHE.SETMETA", "HSET path length", SETMETA, HSET, 0.0),
        ] {
            rows.push(Row {
                title: leak(format!("{title} ({mode})")),
                target: if min > 0.0 { leak(format!("≥ {min}")) } else { "—" },
                variants: vec![v(module, Benchmark(module_cmd, p)), v(native, Benchmark(native_cmd, p))],
                min_ratio: vec![min],
            });
        }
    }
    rows.push(Row {
        title: "LOOKUP (unpipelined, 50 clients)",
        target: "—",
        variants: vec![
            v("LAYERCACHE.LOOKUP", Driver(lookup, 1)),
            v("SISMEMBER + HMGET, pipelined", Driver(lookup_pipelined, 1)),
            v("MULTI SISMEMBER HMGET EXEC", Driver(lookup_multi, 1)),
            v("EVALSHA (same logic in Lua)", Driver(lookup_eval, 1)),
        ],
        min_ratio: vec![0.0, 0.0, 0.0],
    });
    rows.push(Row {
        title: "REPOSTAT (unpipelined, 50 clients)",
        target: "≥ 2.5× three round trips, ≥ 2× EVALSHA",
        variants: vec![
            v("LAYERCACHE.REPOSTAT", Driver(repostat, 1)),
            v("SISMEMBER, HMGET, HGET: 3 round trips (distribution)", Driver(repostat_trips, 1)),
            v("EVALSHA (same logic in Lua)", Driver(repostat_eval, 1)),
        ],
        min_ratio: vec![2.5, 2.0],
    });
    rows.push(Row {
        title: "REPOSETDESCRIPTOR (unpipelined, 50 clients)",
        target: "≥ 3× four round trips",
        variants: vec![
            v("LAYERCACHE.REPOSETDESCRIPTOR", Driver(reposetdescriptor, 1)),
            v("SADD, HSET, HSETNX, HSET: 4 round trips (distribution)", Driver(reposetdescriptor_trips, 1)),
            v("EVALSHA (same writes in Lua)", Driver(reposetdescriptor_eval, 1)),
        ],
        min_ratio: vec![3.0, 0.0],
    });
    rows.push(Row {
        title: "MCONTAINS of 20 digests (unpipelined, 50 clients)",
        target: "—",
        variants: vec![v("LAYERCACHE.MCONTAINS (20)", Driver(mcontains, 1)), v("20 pipelined SISMEMBER", Driver(sismember20, 1))],
        min_ratio: vec![0.0],
    });
    rows
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn throughput(runs: u64, seconds: u64) -> Result<String> {
    // Plain commands stay plain: the module does not learn them here (`lcbench learn`
    // measures what learning costs).
    let server = Server::start_with(Some(0), &[], &["learn", "no"])?;
    let mut c = server.connect()?;
    eprintln!("lcbench: loading {REPOS} repositories × {PER_REPO} digests through the module");
    let t = Instant::now();
    load(&mut c, REPOS)?;
    eprintln!("lcbench: loaded {} keys in {:.1} s", redis::cmd("DBSIZE").query::<i64>(&mut c).map_err(|e| e.to_string())?, t.elapsed().as_secs_f64());
    let load_script = |c: &mut redis::Connection, body: &str| -> Result<String> {
        redis::cmd("SCRIPT").arg("LOAD").arg(body).query(c).map_err(|e| e.to_string())
    };
    let scripts = Scripts {
        lookup: load_script(&mut c, LOOKUP_LUA)?,
        repostat: load_script(&mut c, REPOSTAT_LUA)?,
        reposetdescriptor: load_script(&mut c, REPOSETDESCRIPTOR_LUA)?,
    };
    let version = info_field(&mut c, "server", "redis_version")?;

    let mut table = String::new();
    let _ = writeln!(table, "| operation | variant | ops/s (median) | ratio module / variant | server µs/op (median) | target | met |");
    let _ = writeln!(table, "|---|---|---:|---:|---:|---|---|");
    for row in rows() {
        eprintln!("lcbench: {}", row.title);
        let mut results: Vec<(Vec<f64>, Vec<f64>)> = row.variants.iter().map(|_| (vec![], vec![])).collect();
        for _ in 0..runs {
            for (variant, (rps, us)) in row.variants.iter().zip(results.iter_mut()) {
                let (r, u) = match variant.how {
                    How::Driver(build, p) => drive(&server, build, &scripts, 50, p, seconds)?,
                    How::Benchmark(command, p) => redis_benchmark(&server, command, p, if p == 1 { 100_000 } else { 1_000_000 })?,
                };
                rps.push(r);
                us.push(u);
            }
        }
        let medians: Vec<(f64, f64)> = results.into_iter().map(|(r, u)| (median(r), median(u))).collect();
        let module_rps = medians[0].0;
        for (i, (variant, (rps, us))) in row.variants.iter().zip(&medians).enumerate() {
            let (ratio, met) = if i == 0 {
                ("—".to_string(), String::new())
            } else {
                let ratio = module_rps / rps;
                let min = row.min_ratio.get(i - 1).copied().unwrap_or(0.0);
                (format!("{ratio:.2}"), if min > 0.0 { if ratio >= min { "met".into() } else { "**not met**".into() } } else { String::new() })
            };
            let (title, target) = if i == 0 { (row.title, row.target) } else { ("", "") };
            let _ = writeln!(table, "| {title} | {} | {rps:.0} | {ratio} | {us:.2} | {target} | {met} |", variant.name);
        }
    }
    let machine = machine();
    Ok(format!(
        "## Throughput\n\n\
         Machine: {machine}. Server: Redis {version}, pinned to CPU 0; clients pinned to CPU 1. \
         Dataset: {REPOS} repositories × {PER_REPO} sha256 digests loaded through the module, with meta and a \
         descriptor on every digest. Median of {runs} alternating runs per variant ({seconds} s each for the \
         driver, 100,000 requests unpipelined / 1,000,000 pipelined for redis-benchmark). \
         Server µs/op is the server's CPU time (user + system, `INFO cpu`) over the operations: the steadier \
         figure on shared cores. Ratio is module ops/s over the variant's ops/s (one operation = all the \
         commands of the variant).\n\n\
         Commands: `make bench` (`scripts/bench.sh throughput`): redis-benchmark \
         (`-c 50 -P 1|16 -r 100000 --csv`) for META, STAT, ADD, SETMETA and their natives; the `lcbench` driver \
         (50 connections in lockstep) for CONTAINS with a random repository's own digest, LOOKUP, REPOSTAT, \
         REPOSETDESCRIPTOR and MCONTAINS.\n\n{table}"
    ))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())))
        .unwrap_or_else(|| "unknown CPU".into());
    // Not available_parallelism: the driver runs pinned to one CPU.
    let cores = std::fs::read_to_string("/proc/cpuinfo").map(|s| s.lines().filter(|l| l.starts_with("processor")).count()).unwrap_or(1);
    format!("{cpu}, {cores} cores (shared)")
}

// ---------------------------------------------------------------------------------
// Large operations

/// Main-thread time since the last `CONFIG RESETSTAT` of the commands whose stats line
/// starts with `prefix`, in µs (`INFO commandstats`: time inside the commands, protocol
/// parsing excluded). The module's own calls (RedisModule_Call) are counted under their
/// commands too, and again inside the module command's time: the module side takes
/// `cmdstat_layercache.` alone.
fn command_usec(c: &mut redis::Connection, prefix: &str) -> Result<f64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(c).map_err(|e| e.to_string())?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with(prefix) && !l.starts_with("cmdstat_config") && !l.starts_with("cmdstat_info"))
        .filter_map(|l| l.split("usec=").nth(1)?.split(',').next()?.parse::<f64>().ok())
        .sum())
}

/// The µs of `commands` (sent pipelined) on a server that `setup` just filled.
fn timed(server: &Server, setup: &dyn Fn() -> Vec<Vec<u8>>, commands: Vec<Vec<u8>>) -> Result<f64> {
    let mut c = server.connect()?;
    redis::cmd("FLUSHALL").query::<()>(&mut c).map_err(|e| e.to_string())?;
    pipeline_all(&mut c, setup().into_iter())?;
    redis::cmd("CONFIG").arg("RESETSTAT").query::<()>(&mut c).map_err(|e| e.to_string())?;
    pipeline_all(&mut c, commands.into_iter())?;
    command_usec(&mut c, "cmdstat_layercache.")
}

/// `DEL` of `keys` in commands of 1,000 keys.
fn dels(keys: Vec<String>) -> Vec<Vec<u8>> {
    keys.chunks(1000)
        .map(|chunk| pack(&std::iter::once("DEL").chain(chunk.iter().map(String::as_str)).collect::<Vec<_>>()))
        .collect()
}

/// One large module command against the plain commands that do its work, pipelined:
/// read what to remove, then remove it.
struct Large {
    what: &'static str,
    setup: Box<dyn Fn() -> Vec<Vec<u8>>>,
    module: Vec<Vec<u8>>,
    plain: Box<dyn Fn(&mut redis::Connection) -> Result<Vec<Vec<u8>>>>,
    plain_text: &'static str,
}

fn large_cases() -> Vec<Large> {
    const MANY: u64 = 100_000;
    let held = |r: String, d: String| pack(&["LAYERCACHE.REPOSETDESCRIPTOR", &r, &d, &d, "1", MEDIATYPE]);
    vec![
        Large {
            what: "PURGE of 10,000 digests (each held by one of 100 repositories)",
            setup: Box::new(move || (0..10_000).map(|n| held(repo(n % 100), digest(n))).collect()),
            module: vec![pack(&std::iter::once("LAYERCACHE.PURGE".to_string()).chain((0..10_000).map(digest)).collect::<Vec<_>>().iter().map(String::as_str).collect::<Vec<_>>())],
            // The repositories of each digest are known from the setup (as the index
            // lists them); the plain side reads the index anyway, as PURGE does.
            plain: Box::new(|c| {
                let hkeys = (0..10_000).map(|n| pack(&["HKEYS", &format!("layercache::repos::{}", digest(n))]));
                pipeline_all(c, hkeys)?;
                let mut commands: Vec<Vec<u8>> =
                    (0..10_000).map(|n| pack(&["SREM", &format!("repository::{}::blobs", repo(n % 100)), &digest(n)])).collect();
                commands.extend(dels((0..10_000).flat_map(|n| {
                    let d = digest(n);
                    [format!("blobs::{d}"), format!("layercache::repos::{d}"), format!("repository::{}::blobs::{d}", repo(n % 100))]
                }).collect()));
                Ok(commands)
            }),
            plain_text: "10,000 HKEYS, 10,000 SREM, DEL of 30,000 keys",
        },
        Large {
            what: "PURGE of one digest held by 100,000 repositories",
            setup: Box::new(move || (0..MANY).map(|r| held(repo(r), digest(0))).collect()),
            module: vec![pack(&["LAYERCACHE.PURGE", &digest(0)])],
            plain: Box::new(|c| {
                pipeline_all(c, std::iter::once(pack(&["HKEYS", &format!("layercache::repos::{}", digest(0))])))?;
                let d = digest(0);
                let mut commands: Vec<Vec<u8>> = (0..MANY).map(|r| pack(&["SREM", &format!("repository::{}::blobs", repo(r)), &d])).collect();
                let mut keys = vec![format!("blobs::{d}"), format!("layercache::repos::{d}")];
                keys.extend((0..MANY).map(|r| format!("repository::{}::blobs::{d}", repo(r))));
                commands.extend(dels(keys));
                Ok(commands)
            }),
            plain_text: "HKEYS, 100,000 SREM, DEL of 100,002 keys",
        },
        Large {
            what: "DROPREPO of a repository holding 100,000 digests",
            setup: Box::new(move || (0..MANY).map(|n| held(repo(0), digest(n))).collect()),
            module: vec![pack(&["LAYERCACHE.DROPREPO", &repo(0)])],
            plain: Box::new(|c| {
                let r = repo(0);
                pipeline_all(c, std::iter::once(pack(&["SMEMBERS", &format!("repository::{r}::blobs")])))?;
                let mut commands: Vec<Vec<u8>> = (0..MANY).map(|n| pack(&["HDEL", &format!("layercache::repos::{}", digest(n)), &r])).collect();
                let mut keys = vec![format!("repository::{r}::blobs")];
                keys.extend((0..MANY).map(|n| format!("repository::{r}::blobs::{}", digest(n))));
                commands.extend(dels(keys));
                Ok(commands)
            }),
            plain_text: "SMEMBERS, 100,000 HDEL, DEL of 100,001 keys",
        },
        Large {
            what: "MCONTAINS of 1,000 digests (100 calls)",
            setup: Box::new(move || (0..1000).map(|n| held(repo(0), digest(n * 2))).collect()),
            module: (0..100)
                .map(|_| {
                    let args: Vec<String> = ["LAYERCACHE.MCONTAINS".to_string(), repo(0)].into_iter().chain((0..1000).map(digest)).collect();
                    pack(&args.iter().map(String::as_str).collect::<Vec<_>>())
                })
                .collect(),
            plain: Box::new(|_| {
                Ok((0..100)
                    .map(|_| {
                        let args: Vec<String> =
                            ["SMISMEMBER".to_string(), format!("repository::{}::blobs", repo(0))].into_iter().chain((0..1000).map(digest)).collect();
                        pack(&args.iter().map(String::as_str).collect::<Vec<_>>())
                    })
                    .collect())
            }),
            plain_text: "100 SMISMEMBER of 1,000 members",
        },
    ]
}

/// Main-thread time of the large multi-key commands against the plain commands doing
/// the same work, alternating, median of `runs`.
fn large(runs: u64) -> Result<String> {
    let server = Server::start(Some(0), &[])?;
    let mut table = String::from("| operation | module µs | plain commands | plain µs | module / plain |\n|---|---:|---|---:|---:|\n");
    for case in large_cases() {
        let (mut module, mut plain) = (vec![], vec![]);
        for _ in 0..runs {
            module.push(timed(&server, &*case.setup, case.module.clone())?);
            // The plain side's reads run (and are timed) on the filled keyspace too.
            let mut c = server.connect()?;
            redis::cmd("FLUSHALL").query::<()>(&mut c).map_err(|e| e.to_string())?;
            pipeline_all(&mut c, (case.setup)().into_iter())?;
            redis::cmd("CONFIG").arg("RESETSTAT").query::<()>(&mut c).map_err(|e| e.to_string())?;
            let removals = (case.plain)(&mut c)?;
            pipeline_all(&mut c, removals.into_iter())?;
            plain.push(command_usec(&mut c, "cmdstat_")?);
        }
        let (m, p) = (median(module), median(plain));
        eprintln!("lcbench: {}: module {m:.0} µs, plain {p:.0} µs", case.what);
        let _ = writeln!(table, "| {} | {m:.0} | {} | {p:.0} | {:.2} |", case.what, case.plain_text, m / p);
    }
    Ok(format!(
        "## Large operations\n\n{}. Main-thread time per call: the `usec` of `INFO commandstats` (time inside \
         the commands, so protocol parsing is not counted for either side): the module command's own line \
         (which includes its inner calls), and the sum over every command of the plain side. The plain \
         side is the commands that do the same work, pipelined: read the index (or the repository's set), then \
         remove. Median of {runs} runs, each on a freshly loaded keyspace. Target: module ≤ 1.5× plain.\n\n\
         Command: `make bench` (`lcbench large`).\n\n{table}",
        machine()
    ))
}

// ---------------------------------------------------------------------------------
// What learning plain writes costs

/// Server CPU per repository-scoped SetDescriptor written with plain commands, as
/// distribution 2.8 writes it (SADD, HMSET, HSETNX, HSET), without the module and with
/// it learning (or not), alternating, median of `runs`.
fn learn_cost(runs: u64) -> Result<String> {
    const WRITES: u64 = 50_000;
    let variants: [(&str, Option<&[&str]>); 4] = [
        ("no module", None),
        ("module, `learn no`", Some(&["learn", "no"])),
        ("module, `learn yes`, `ttl 0`", Some(&["learn", "yes"])),
        ("module, `learn yes`, `ttl 3600`", Some(&["learn", "yes", "ttl", "3600"])),
    ];
    let mut per: Vec<Vec<f64>> = vec![vec![]; variants.len()];
    for _ in 0..runs {
        for (i, (_, module)) in variants.iter().enumerate() {
            let server = match module {
                None => Server::start_plain(Some(0), &[])?,
                Some(args) => Server::start_with(Some(0), &[], args)?,
            };
            let mut c = server.connect()?;
            let writes = (0..WRITES).flat_map(|n| {
                let (r, d) = (repo(n % 1000), digest(n));
                [
                    pack(&["SADD", &format!("repository::{r}::blobs"), &d]),
                    pack(&["HMSET", &format!("blobs::{d}"), "digest", &d, "size", "2797"]),
                    pack(&["HSETNX", &format!("blobs::{d}"), "mediatype", MEDIATYPE]),
                    pack(&["HSET", &format!("repository::{r}::blobs::{d}"), "mediatype", REPO_MEDIATYPE]),
                ]
            });
            let before = server_cpu(&mut c)?;
            pipeline_all(&mut c, writes)?;
            per[i].push((server_cpu(&mut c)? - before) * 1e6 / WRITES as f64);
        }
    }
    let base = median(per[0].clone());
    let mut table = String::from("| server | µs of server CPU per SetDescriptor | over no module |\n|---|---:|---:|\n");
    for ((label, _), xs) in variants.iter().zip(per) {
        let m = median(xs);
        eprintln!("lcbench: learn: {label}: {m:.2} µs");
        let _ = writeln!(table, "| {label} | {m:.2} | {:+.2} µs ({:.2}×) |", m - base, m / base);
    }
    Ok(format!(
        "## Learning plain writes\n\n{}. {WRITES} repository-scoped SetDescriptors written with plain commands \
         as distribution 2.8 writes them (`SADD`, `HMSET`, `HSETNX`, `HSET`, pipelined 1,000 at a time), each a new \
         digest in one of 1,000 repositories. Server CPU (user + system, `INFO cpu`) per SetDescriptor, median of \
         {runs} alternating runs. With learning, each SetDescriptor also writes the index (`HSETNX \
         layercache::repos::<digest>`), and with `ttl` an `EXPIRE` per key written.\n\n\
         Command: `make bench` (`lcbench learn`).\n\n{table}",
        machine()
    ))
}

// ---------------------------------------------------------------------------------
// Memory

fn used_memory(c: &mut redis::Connection) -> Result<f64> {
    info_field(c, "memory", "used_memory")?.parse().map_err(|_| "used_memory".into())
}

fn memory() -> Result<String> {
    let n = REPOS * PER_REPO;
    // (label, commands per (repository, digest))
    let variants: [(&str, fn(&str, &str) -> Vec<Vec<u8>>); 4] = [
        ("membership: LAYERCACHE.ADD (set + reverse index)", |r, d| vec![pack(&["LAYERCACHE.ADD", r, d])]),
        ("membership: plain SADD (distribution)", |r, d| vec![pack(&["SADD", &format!("repository::{r}::blobs"), d])]),
        ("descriptor: LAYERCACHE.SETDESCRIPTOR", |_, d| vec![pack(&["LAYERCACHE.SETDESCRIPTOR", d, d, "2797", MEDIATYPE])]),
        ("descriptor: plain HSET + HSETNX (distribution)", |_, d| {
            let blob = format!("blobs::{d}");
            vec![pack(&["HSET", &blob, "digest", d, "size", "2797"]), pack(&["HSETNX", &blob, "mediatype", MEDIATYPE])]
        }),
    ];
    let mut table = String::from("| what | bytes per item |\n|---|---:|\n");
    for (label, commands) in variants {
        // The plain variants on a server without the module (which would index them).
        let server = if label.contains("plain") { Server::start_plain(None, &[])? } else { Server::start(None, &[])? };
        let mut c = server.connect()?;
        let before = used_memory(&mut c)?;
        let all = (0..REPOS).flat_map(|r| (0..PER_REPO).map(move |k| (r, r * PER_REPO + k)));
        pipeline_all(&mut c, all.flat_map(|(r, n)| commands(&repo(r), &digest(n))))?;
        let per = (used_memory(&mut c)? - before) / n as f64;
        let _ = writeln!(table, "| {label} | {per:.0} |");
    }
    Ok(format!(
        "## Memory\n\n{n} items ({REPOS} repositories × {PER_REPO} digests, each digest in one repository), \
         `used_memory` before and after, default encodings. The module stores exactly what the plain \
         commands store, plus the reverse index `layercache::repos::<digest>` (one hash per digest) that \
         PURGE uses.\n\n{table}"
    ))
}

// ---------------------------------------------------------------------------------
// The two key schemes side by side

/// Memory per blob (each held by 3 repositories, with meta and descriptor) and the
/// throughput of the hot reads, in the `distribution` and `blob` schemes.
fn schemes(runs: u64, seconds: u64) -> Result<String> {
    const BLOBS: u64 = 30_000;
    let mut memory = String::from("| scheme | `hash-max-listpack-value` | bytes per blob |\n|---|---|---:|\n");
    for scheme in ["distribution", "blob"] {
        for listpack in ["64 (default)", "128"] {
            let value = listpack.split(' ').next().unwrap_or("64");
            let server = Server::start_with(None, &[], &["scheme", scheme, "--hash-max-listpack-value", value])?;
            let mut c = server.connect()?;
            let before = used_memory(&mut c)?;
            pipeline_all(
                &mut c,
                (0..BLOBS).flat_map(|n| {
                    let d = digest(n);
                    let mut commands: Vec<Vec<u8>> = (0..3)
                        .map(|r| pack(&["LAYERCACHE.REPOSETDESCRIPTOR", &repo(n % 1000 + r * 1000), &d, &d, "2797", MEDIATYPE]))
                        .collect();
                    commands.push(pack(&["LAYERCACHE.SETMETA", &d, &format!("/docker/registry/v2/blobs/sha256/{}/data", &d[7..]), "2797"]));
                    commands
                }),
            )?;
            let per = (used_memory(&mut c)? - before) / BLOBS as f64;
            let _ = writeln!(memory, "| {scheme} | {listpack} | {per:.0} |");
        }
    }

    let servers = [("distribution", Server::start_with(Some(0), &[], &["scheme", "distribution"])?), ("blob", Server::start_with(Some(0), &[], &["scheme", "blob"])?)];
    let no_scripts = Scripts { lookup: String::new(), repostat: String::new(), reposetdescriptor: String::new() };
    for (_, server) in &servers {
        load(&mut server.connect()?, REPOS)?;
    }
    let mut table = String::from("| command | scheme | ops/s (median) | server µs/op (median) |\n|---|---|---:|---:|\n");
    for (name, build) in [("LAYERCACHE.CONTAINS", contains as Build), ("LAYERCACHE.REPOSTAT", repostat), ("LAYERCACHE.LOOKUP", lookup)] {
        let mut results: Vec<(Vec<f64>, Vec<f64>)> = servers.iter().map(|_| (vec![], vec![])).collect();
        for _ in 0..runs {
            for ((_, server), (rps, us)) in servers.iter().zip(results.iter_mut()) {
                let (r, u) = drive(server, build, &no_scripts, 50, 1, seconds)?;
                rps.push(r);
                us.push(u);
            }
        }
        for ((scheme, _), (rps, us)) in servers.iter().zip(results) {
            let _ = writeln!(table, "| {name} | {scheme} | {:.0} | {:.2} |", median(rps), median(us));
        }
    }
    Ok(format!(
        "## Key schemes side by side\n\n\
         Memory: {BLOBS} blobs, each held by 3 repositories (REPOSETDESCRIPTOR ×3 and SETMETA through the \
         module), `used_memory` before and after.\n\n{memory}\n\
         Throughput: the dataset of the throughput table loaded into one server per scheme (both pinned to \
         CPU 0, measured alternately, median of {runs} runs of {seconds} s, 50 clients unpipelined). In `blob` \
         the membership test is a hash field read through the key API instead of `RedisModule_Call` of \
         SISMEMBER, and Redis checks ACL through the key specs.\n\n{table}"
    ))
}

// ---------------------------------------------------------------------------------
// Instructions per operation (callgrind)

/// One row of the instruction table: the module's command, the C floor's (reads), and
/// the plain commands it stands for, each as the commands of operation `i`.
struct CostRow {
    what: &'static str,
    module: fn(u64) -> Vec<Vec<u8>>,
    floor: Option<fn(u64) -> Vec<Vec<u8>>>,
    plain: fn(u64) -> Vec<Vec<u8>>,
    plain_text: &'static str,
    /// (bound, over what): "floor" or "plain".
    target: Option<(f64, &'static str)>,
}

/// A digest the dataset holds, and its repository, for operation `i`.
fn held(i: u64) -> (String, String) {
    let n = i * 7919 % (INSTRUCTION_REPOS * PER_REPO);
    (repo(n / PER_REPO), digest(n))
}

/// A digest nobody wrote yet (writes), for operation `i` of a run.
fn fresh(i: u64) -> (String, String) {
    (repo(i % INSTRUCTION_REPOS), digest(FRESH.fetch_add(1, Ordering::Relaxed)))
}

/// The next fresh digest: above the dataset's, never reused within a run.
static FRESH: AtomicU64 = AtomicU64::new(10_000_000);
const INSTRUCTION_REPOS: u64 = 20;

fn cost_rows(blob: bool) -> Vec<CostRow> {
    let mut rows = vec![
        CostRow {
            what: "CONTAINS",
            module: |i| { let (r, d) = held(i); vec![pack(&["LAYERCACHE.CONTAINS", &r, &d])] },
            floor: Some(|i| { let (r, d) = held(i); vec![pack(&["FLOOR.CONTAINS", &r, &d])] }),
            plain: |i| { let (r, d) = held(i); vec![pack(&["SISMEMBER", &format!("repository::{r}::blobs"), &d])] },
            plain_text: "SISMEMBER",
            target: Some((1.10, "floor")),
        },
        CostRow {
            what: "LOOKUP",
            module: |i| { let (r, d) = held(i); vec![pack(&["LAYERCACHE.LOOKUP", &r, &d])] },
            floor: Some(|i| { let (r, d) = held(i); vec![pack(&["FLOOR.LOOKUP", &r, &d])] }),
            plain: |i| {
                let (r, d) = held(i);
                vec![pack(&["SISMEMBER", &format!("repository::{r}::blobs"), &d]), pack(&["HMGET", &format!("blobs::{d}"), "path", "length"])]
            },
            plain_text: "SISMEMBER + HMGET",
            target: Some((1.10, "floor")),
        },
        CostRow {
            what: "META",
            module: |i| { let (_, d) = held(i); vec![pack(&["LAYERCACHE.META", &d])] },
            floor: Some(|i| { let (_, d) = held(i); vec![pack(&["FLOOR.META", &d])] }),
            plain: |i| { let (_, d) = held(i); vec![pack(&["HMGET", &format!("blobs::{d}"), "path", "length"])] },
            plain_text: "HMGET",
            target: Some((1.10, "floor")),
        },
        CostRow {
            what: "STAT",
            module: |i| { let (_, d) = held(i); vec![pack(&["LAYERCACHE.STAT", &d])] },
            floor: Some(|i| { let (_, d) = held(i); vec![pack(&["FLOOR.STAT", &d])] }),
            plain: |i| { let (_, d) = held(i); vec![pack(&["HMGET", &format!("blobs::{d}"), "digest", "size", "mediatype"])] },
            plain_text: "HMGET",
            target: Some((1.10, "floor")),
        },
        CostRow {
            what: "REPOSTAT",
            module: |i| { let (r, d) = held(i); vec![pack(&["LAYERCACHE.REPOSTAT", &r, &d])] },
            floor: Some(|i| { let (r, d) = held(i); vec![pack(&["FLOOR.REPOSTAT", &r, &d])] }),
            plain: |i| {
                let (r, d) = held(i);
                vec![
                    pack(&["SISMEMBER", &format!("repository::{r}::blobs"), &d]),
                    pack(&["HMGET", &format!("blobs::{d}"), "digest", "size", "mediatype"]),
                    pack(&["HGET", &format!("repository::{r}::blobs::{d}"), "mediatype"]),
                ]
            },
            plain_text: "SISMEMBER + HMGET + HGET",
            target: Some((1.10, "floor")),
        },
        CostRow {
            what: "SETMETA",
            module: |i| { let (_, d) = fresh(i); vec![pack(&["LAYERCACHE.SETMETA", &d, "/docker/registry/v2/blobs/data", "2797"])] },
            floor: None,
            plain: |i| { let (_, d) = fresh(i); vec![pack(&["HSET", &format!("blobs::{d}"), "path", "/docker/registry/v2/blobs/data", "length", "2797"])] },
            plain_text: "HSET",
            target: None,
        },
        CostRow {
            what: "REPOSETDESCRIPTOR",
            module: |i| { let (r, d) = fresh(i); vec![pack(&["LAYERCACHE.REPOSETDESCRIPTOR", &r, &d, &d, "2797", MEDIATYPE])] },
            floor: None,
            plain: |i| {
                let (r, d) = fresh(i);
                vec![
                    pack(&["SADD", &format!("repository::{r}::blobs"), &d]),
                    pack(&["HSET", &format!("blobs::{d}"), "digest", &d, "size", "2797"]),
                    pack(&["HSETNX", &format!("blobs::{d}"), "mediatype", MEDIATYPE]),
                    pack(&["HSET", &format!("repository::{r}::blobs::{d}"), "mediatype", REPO_MEDIATYPE]),
                ]
            },
            plain_text: "SADD + HSET + HSETNX + HSET",
            target: Some((1.0, "plain")),
        },
    ];
    rows.push(if blob {
        CostRow {
            what: "ADD",
            module: |i| { let (r, d) = fresh(i); vec![pack(&["LAYERCACHE.ADD", &r, &d])] },
            floor: None,
            plain: |i| { let (r, d) = fresh(i); vec![pack(&["HSET", &d, &format!("repo:{r}"), ""])] },
            plain_text: "HSET (one field)",
            target: Some((1.5, "plain")),
        }
    } else {
        CostRow {
            what: "ADD",
            module: |i| { let (r, d) = fresh(i); vec![pack(&["LAYERCACHE.ADD", &r, &d])] },
            floor: None,
            plain: |i| { let (r, d) = fresh(i); vec![pack(&["SADD", &format!("repository::{r}::blobs"), &d])] },
            plain_text: "SADD",
            target: Some((2.0, "plain")),
        }
    });
    rows
}

/// Loads the dataset in distribution's layout with plain commands (the blob-scheme
/// server's plain side reads it).
fn load_plain(c: &mut redis::Connection, repos: u64) -> Result<()> {
    let commands = (0..repos).flat_map(|r| (0..PER_REPO).map(move |k| (r, r * PER_REPO + k))).flat_map(|(r, n)| {
        let (repo, d) = (repo(r), digest(n));
        let size = (n * 7919 % 100_000_000).to_string();
        [
            pack(&["SADD", &format!("repository::{repo}::blobs"), &d]),
            pack(&["HSET", &format!("blobs::{d}"), "digest", &d, "size", &size, "mediatype", MEDIATYPE, "path", "/p", "length", &size]),
            pack(&["HSET", &format!("repository::{repo}::blobs::{d}"), "mediatype", REPO_MEDIATYPE]),
        ]
    });
    pipeline_all(c, commands)
}

/// Server instructions per operation of `ops` operations sent pipelined, net of the
/// server's idle instructions over the same time, and the dump of the busy run (for
/// [`profile`]).
fn measure(server: &Server, dir: &Path, build: fn(u64) -> Vec<Vec<u8>>, ops: u64) -> Result<(f64, PathBuf)> {
    let commands: Vec<Vec<u8>> = (0..ops).flat_map(build).collect();
    let mut c = server.connect()?;
    let pid = server.pid().to_string();
    callgrind_control(&["-z", &pid])?;
    let started = Instant::now();
    pipeline_all(&mut c, commands.into_iter())?;
    let elapsed = started.elapsed();
    let (busy, dump) = dump_total(dir, server.pid())?;
    callgrind_control(&["-z", &pid])?;
    std::thread::sleep(elapsed);
    let (idle, _) = dump_total(dir, server.pid())?;
    Ok((busy.saturating_sub(idle) as f64 / ops as f64, dump))
}

/// Where a module command's instructions go: the module API calls (and the module's own
/// functions) that bound the cost, inclusive, per operation.
const COST_CENTRES: [(&str, &[&str]); 9] = [
    ("whole command", &["RedisModuleCommandDispatcher"]),
    ("`RedisModule_Call`", &["RM_Call", "RM_FreeCallReply"]),
    ("`RedisModule_Replicate`", &["RM_Replicate"]),
    ("ACL user lookup", &["layercache::api::Ctx::find_user", "RM_FreeModuleUser"]),
    ("ACL key check", &["RM_ACLCheckKeyPermissions"]),
    ("open / close keys", &["RM_OpenKey", "RM_CloseKey"]),
    ("`HashGet` / `HashSet`", &["RM_HashGet", "RM_HashSet"]),
    ("Redis strings made / freed", &["RM_CreateString", "RM_FreeString"]),
    ("digest and name checks", &["layercache_core::digest::parse", "layercache_core::repo::parse"]),
];

/// The inclusive cost per operation of each of [`COST_CENTRES`] in a callgrind dump.
fn profile(dump: &Path, ops: u64) -> Result<Vec<f64>> {
    let out = Command::new("callgrind_annotate").args(["--inclusive=yes", "--threshold=100"]).arg(dump).output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Lines `1,234 (5.6%)  file:function [object]`: the function itself (inlined
    // fragments carry no object). A Rust function appears once per source file it
    // inlines; its own line is the one with an object.
    let inclusive = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.ends_with(']') && l.contains(&format!(":{name} [")))
            .filter_map(|l| l.split_whitespace().next()?.replace(',', "").parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    Ok(COST_CENTRES.iter().map(|(_, names)| names.iter().map(|n| inclusive(n)).sum::<u64>() as f64 / ops as f64).collect())
}

fn instructions(ops: u64) -> Result<String> {
    let mut out = String::new();
    for scheme in ["distribution", "blob"] {
        let dir = std::env::temp_dir().join(format!("lcbench-callgrind-{}-{scheme}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let cg_out = format!("--callgrind-out-file={}/cg.%p", dir.display());
        let floor = env!("FLOOR_MODULE");
        let server = Server::start_with(None, &["valgrind", "--tool=callgrind", &cg_out], &["scheme", scheme, "learn", "no", "--loadmodule", floor, scheme])?;
        let mut c = server.connect()?;
        load(&mut c, INSTRUCTION_REPOS)?;
        if scheme == "blob" {
            load_plain(&mut c, INSTRUCTION_REPOS)?;
        }
        let mut table = String::from(
            "| operation | layercache | C floor | plain commands | plain | layercache / floor | layercache / plain | target |\n\
             |---|---:|---:|---|---:|---:|---:|---|\n",
        );
        let mut breakdown = format!(
            "| operation | {} |\n|---|{}\n",
            COST_CENTRES.iter().map(|(what, _)| *what).collect::<Vec<_>>().join(" | "),
            "---:|".repeat(COST_CENTRES.len())
        );
        for row in cost_rows(scheme == "blob") {
            // Warm up each variant once (lazy allocations, first-touch of pages).
            for build in [Some(row.module), row.floor, Some(row.plain)].into_iter().flatten() {
                measure(&server, &dir, build, 200)?;
            }
            let (module, dump) = measure(&server, &dir, row.module, ops)?;
            let costs = profile(&dump, ops)?;
            let _ = writeln!(
                breakdown,
                "| {} | {} |",
                row.what,
                costs.iter().map(|c| if *c > 0.5 { format!("{c:.0}") } else { "—".into() }).collect::<Vec<_>>().join(" | ")
            );
            let floor = row.floor.map(|f| measure(&server, &dir, f, ops).map(|m| m.0)).transpose()?;
            let plain = measure(&server, &dir, row.plain, ops)?.0;
            let over_floor = floor.map(|f| module / f);
            let target = match row.target {
                Some((bound, "floor")) => over_floor.map(|r| format!("≤ {bound:.2}× floor: {}", if r <= bound { "met" } else { "**not met**" })),
                Some((bound, _)) => Some(format!("≤ {bound:.2}× plain: {}", if module / plain <= bound { "met" } else { "**not met**" })),
                None => None,
            };
            eprintln!("lcbench: instructions: {scheme} {}: {module:.0} (floor {floor:?}, plain {plain:.0})", row.what);
            let _ = writeln!(
                table,
                "| {} | {module:.0} | {} | {} | {plain:.0} | {} | {:.2} | {} |",
                row.what,
                floor.map_or("—".into(), |f| format!("{f:.0}")),
                row.plain_text,
                over_floor.map_or("—".into(), |r| format!("{r:.2}")),
                module / plain,
                target.unwrap_or_default(),
            );
        }
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = write!(
            out,
            "### Scheme `{scheme}`\n\n{table}\nWhere the module's instructions go (inclusive, so a call made inside another counts in both; per operation, from the \
             same callgrind dump as the `layercache` column, which also counts reading the request and writing the \
             reply outside the command):\n\n{breakdown}\n"
        );
    }
    let blob_targets = "In the `blob` scheme LOOKUP and REPOSTAT also aim at ≤ 0.90× distribution's plain \
                        commands (the `plain` column): less server work than what the scheme replaces.";
    Ok(format!(
        "## Instructions per operation\n\n`make bench-instructions`: redis-server {} with layercache and the C floor \
         (`bench/floor/floor.c`: only the key work of each read through the module API, no validation, ACL or \
         counters) loaded side by side, under `valgrind --tool=callgrind`; one client pipelining {ops} operations \
         per variant (after a warm-up), counters zeroed before and dumped after with `callgrind_control`, net of the \
         server's idle instructions over the same time: every instruction the server ran for the operations \
         (reading, parsing, the commands, the replies), divided by the operations. Plain commands run over \
         distribution's layout (written by the module in `distribution`, with plain commands on the `blob` server). \
         Much steadier than ops/s, but not exact: the idle baseline follows wall time (serverCron) and the \
         keyspace's rehashing follows the run, so figures move by 1–3% between runs; read ratios within that of a \
         bound as at the bound. {blob_targets}\n\n{out}",
        redis_version()
    ))
}

fn redis_version() -> String {
    let out = Command::new(std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())).arg("--version").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().find_map(|w| w.strip_prefix("v=").map(String::from)))
        .unwrap_or_else(|| "?".into())
}

fn callgrind_control(args: &[&str]) -> Result<()> {
    let status = Command::new("callgrind_control").args(args).stdout(Stdio::null()).status().map_err(|e| e.to_string())?;
    status.success().then_some(()).ok_or_else(|| format!("callgrind_control {args:?} failed"))
}

/// Dumps the counters since the last zeroing and returns their total instructions and
/// the dump.
fn dump_total(dir: &Path, pid: u32) -> Result<(u64, PathBuf)> {
    let before: Vec<PathBuf> = std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten().map(|e| e.path()).collect();
    callgrind_control(&["-d", &pid.to_string()])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let fresh = std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten().map(|e| e.path()).find(|p| !before.contains(p));
        if let Some(path) = fresh {
            std::thread::sleep(Duration::from_millis(200));
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            let total = text.lines().find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")));
            if let Some(n) = total.and_then(|t| t.split_whitespace().next()).and_then(|n| n.parse().ok()) {
                return Ok((n, path));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("no callgrind dump".into())
}

// ---------------------------------------------------------------------------------
// Criterion results of the pure crate

/// Turns criterion's text output into a table: each `name  time: [low median high]`
/// (the name may be on the line before).
fn criterion_table(output: String) -> String {
    let mut table = String::from("| benchmark | median time |\n|---|---:|\n");
    let mut previous = "";
    for line in output.lines() {
        if let Some((name, rest)) = line.split_once("time:") {
            let name = if name.trim().is_empty() { previous.trim() } else { name.trim() };
            let times: Vec<&str> = rest.trim().trim_matches(['[', ']']).split_whitespace().collect();
            if let [_, _, median, unit, ..] = times.as_slice() {
                let _ = writeln!(table, "| {name} | {median} {unit} |");
            }
        }
        previous = line;
    }
    format!(
        "## Pure crate (criterion)\n\n`cargo bench -p layercache-core --bench validation`: the validation and \
         key naming every command runs before it touches a key, without Redis.\n\n{table}"
    )
}

// ---------------------------------------------------------------------------------
// BENCHMARKS.md

/// Replaces the section `name` of the file (between its markers), keeping the others.
fn write_section(path: &Path, name: &str, body: &str) {
    let (start, end) = (format!("<!-- {name} -->"), format!("<!-- /{name} -->"));
    let mut text = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nGenerated by `make bench` and `make bench-instructions` (see `bench/src/main.rs`); \
         rerun them to refresh a section.\n\n"
            .into()
    });
    let block = format!("{start}\n{body}\n{end}\n");
    match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if a < b => text.replace_range(a..b + end.len() + 1, &block),
        _ => text.push_str(&format!("\n{block}")),
    }
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("lcbench: cannot write {}: {e}", path.display());
    }
    println!("{body}");
}
