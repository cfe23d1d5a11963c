//! `lcbench instructions`: instructions per operation under callgrind, against the C
//! floor and the plain commands.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::kit::*;

/// One row of the instruction table: the module's command, the C floor's (reads), and
/// the plain commands it stands for, each as the commands of operation `i`.
pub(crate) struct CostRow {
    pub(crate) what: &'static str,
    pub(crate) module: fn(u64) -> Vec<Vec<u8>>,
    pub(crate) floor: Option<fn(u64) -> Vec<Vec<u8>>>,
    pub(crate) plain: fn(u64) -> Vec<Vec<u8>>,
    pub(crate) plain_text: &'static str,
    /// (bound, over what): "floor" or "plain".
    pub(crate) target: Option<(f64, &'static str)>,
}

/// A digest the dataset holds, and its repository, for operation `i`.
pub(crate) fn held(i: u64) -> (String, String) {
    let n = i * 7919 % (INSTRUCTION_REPOS * PER_REPO);
    (repo(n / PER_REPO), digest(n))
}

/// A digest nobody wrote yet (writes), for operation `i` of a run.
pub(crate) fn fresh(i: u64) -> (String, String) {
    (repo(i % INSTRUCTION_REPOS), digest(FRESH.fetch_add(1, Ordering::Relaxed)))
}

/// The next fresh digest: above the dataset's, never reused within a run.
pub(crate) static FRESH: AtomicU64 = AtomicU64::new(10_000_000);
pub(crate) const INSTRUCTION_REPOS: u64 = 20;

pub(crate) fn cost_rows(blob: bool) -> Vec<CostRow> {
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
pub(crate) fn load_plain(c: &mut redis::Connection, repos: u64) -> Result<()> {
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
pub(crate) fn measure(server: &Server, dir: &Path, build: fn(u64) -> Vec<Vec<u8>>, ops: u64) -> Result<(f64, PathBuf)> {
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
pub(crate) const COST_CENTRES: [(&str, &[&str]); 9] = [
    ("whole command", &["RedisModuleCommandDispatcher"]),
    ("`RedisModule_Call`", &["RM_Call", "RM_FreeCallReply"]),
    ("`RedisModule_Replicate`", &["RM_Replicate"]),
    ("ACL user lookup", &["layercache::api::user::User::of", "RM_FreeModuleUser"]),
    ("ACL key check", &["RM_ACLCheckKeyPermissions"]),
    ("open / close keys", &["RM_OpenKey", "RM_CloseKey"]),
    ("`HashGet` / `HashSet`", &["RM_HashGet", "RM_HashSet"]),
    ("Redis strings made / freed", &["RM_CreateString", "RM_FreeString"]),
    ("digest and name checks", &["layercache_core::digest::parse", "layercache_core::repo::parse"]),
];

/// The inclusive cost per operation of each of [`COST_CENTRES`] in a callgrind dump.
pub(crate) fn profile(dump: &Path, ops: u64) -> Result<Vec<f64>> {
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

pub(crate) fn instructions(ops: u64) -> Result<String> {
    let mut out = String::new();
    for scheme in ["distribution", "blob"] {
        let dir = std::env::temp_dir().join(format!("lcbench-callgrind-{}-{scheme}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let cg_out = format!("--callgrind-out-file={}/cg.%p", dir.display());
        let floor = env!("FLOOR_MODULE");
        let server = start(None, &["valgrind", "--tool=callgrind", &cg_out], Some(&["scheme", scheme, "learn", "no", "--loadmodule", floor, scheme]))?;
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


pub(crate) fn callgrind_control(args: &[&str]) -> Result<()> {
    let status = Command::new("callgrind_control").args(args).stdout(Stdio::null()).status().map_err(|e| e.to_string())?;
    status.success().then_some(()).ok_or_else(|| format!("callgrind_control {args:?} failed"))
}

/// Dumps the counters since the last zeroing and returns their total instructions and
/// the dump.
pub(crate) fn dump_total(dir: &Path, pid: u32) -> Result<(u64, PathBuf)> {
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
