//! `lcbench learn`: what learning plain-command writes costs the server.

use std::fmt::Write as _;

use crate::kit::*;

/// Server CPU per repository-scoped SetDescriptor written with plain commands, as
/// distribution 2.8 writes it (SADD, HMSET, HSETNX, HSET), without the module and with
/// it learning (or not), alternating, median of `runs`.
pub(crate) fn learn_cost(runs: u64) -> Result<String> {
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
                None => start(Some(0), &[], None)?,
                Some(args) => start(Some(0), &[], Some(args))?,
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
