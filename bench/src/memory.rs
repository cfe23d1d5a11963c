//! `lcbench memory` and `lcbench schemes`: bytes per membership and descriptor, and
//! the two key schemes side by side.

use std::fmt::Write as _;

use crate::kit::*;
use crate::workload::*;

pub(crate) fn used_memory(c: &mut redis::Connection) -> Result<f64> {
    info_field(c, "memory", "used_memory")?.parse().map_err(|_| "used_memory".into())
}

pub(crate) fn memory() -> Result<String> {
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
        let server = if label.contains("plain") { start(None, &[], None)? } else { start(None, &[], Some(&[]))? };
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
pub(crate) fn schemes(runs: u64, seconds: u64) -> Result<String> {
    const BLOBS: u64 = 30_000;
    let mut memory = String::from("| scheme | `hash-max-listpack-value` | bytes per blob |\n|---|---|---:|\n");
    for scheme in ["distribution", "blob"] {
        for listpack in ["64 (default)", "128"] {
            let value = listpack.split(' ').next().unwrap_or("64");
            let server = start(None, &[], Some(&["scheme", scheme, "--hash-max-listpack-value", value]))?;
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

    let servers = [("distribution", start(Some(0), &[], Some(&["scheme", "distribution"]))?), ("blob", start(Some(0), &[], Some(&["scheme", "blob"]))?)];
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
