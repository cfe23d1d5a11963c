//! `lcbench throughput`: each module command against its native counterparts,
//! alternating, medians of several runs.

use std::fmt::Write as _;
use std::time::Instant;

use crate::kit::*;
use crate::workload::*;

pub(crate) enum How {
    Driver(Build, usize),
    Benchmark(&'static [&'static str], usize),
}

pub(crate) struct Variant {
    pub(crate) name: &'static str,
    pub(crate) how: How,
}

pub(crate) struct Row {
    pub(crate) title: &'static str,
    pub(crate) target: &'static str,
    /// The module variant first, then its native counterparts.
    pub(crate) variants: Vec<Variant>,
    /// Minimum module/native ops/s ratio per native variant (0: no target).
    pub(crate) min_ratio: Vec<f64>,
}

pub(crate) fn v(name: &'static str, how: How) -> Variant {
    Variant { name, how }
}

pub(crate) fn rows() -> Vec<Row> {
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



pub(crate) fn throughput(runs: u64, seconds: u64) -> Result<String> {
    // Plain commands stay plain: the module does not learn them here (`lcbench learn`
    // measures what learning costs).
    let server = start(Some(0), &[], Some(&["learn", "no"]))?;
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

