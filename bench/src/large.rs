//! `lcbench large`: the large multi-key commands against the plain commands that do
//! their work.

use std::fmt::Write as _;

use crate::kit::*;

/// Main-thread time since the last `CONFIG RESETSTAT` of the commands whose stats line
/// starts with `prefix`, in µs (`INFO commandstats`: time inside the commands, protocol
/// parsing excluded). The module's own calls (RedisModule_Call) are counted under their
/// commands too, and again inside the module command's time: the module side takes
/// `cmdstat_layercache.` alone.
pub(crate) fn command_usec(c: &mut redis::Connection, prefix: &str) -> Result<f64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(c).map_err(|e| e.to_string())?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with(prefix) && !l.starts_with("cmdstat_config") && !l.starts_with("cmdstat_info"))
        .filter_map(|l| l.split("usec=").nth(1)?.split(',').next()?.parse::<f64>().ok())
        .sum())
}

/// The µs of `commands` (sent pipelined) on a server that `setup` just filled.
pub(crate) fn timed(server: &Server, setup: &dyn Fn() -> Vec<Vec<u8>>, commands: Vec<Vec<u8>>) -> Result<f64> {
    let mut c = server.connect()?;
    redis::cmd("FLUSHALL").query::<()>(&mut c).map_err(|e| e.to_string())?;
    pipeline_all(&mut c, setup().into_iter())?;
    redis::cmd("CONFIG").arg("RESETSTAT").query::<()>(&mut c).map_err(|e| e.to_string())?;
    pipeline_all(&mut c, commands.into_iter())?;
    command_usec(&mut c, "cmdstat_layercache.")
}

/// `DEL` of `keys` in commands of 1,000 keys.
pub(crate) fn dels(keys: Vec<String>) -> Vec<Vec<u8>> {
    keys.chunks(1000)
        .map(|chunk| pack(&std::iter::once("DEL").chain(chunk.iter().map(String::as_str)).collect::<Vec<_>>()))
        .collect()
}

/// One large module command against the plain commands that do its work, pipelined:
/// read what to remove, then remove it.
pub(crate) struct Large {
    pub(crate) what: &'static str,
    pub(crate) setup: Box<dyn Fn() -> Vec<Vec<u8>>>,
    pub(crate) module: Vec<Vec<u8>>,
    pub(crate) plain: Box<dyn Fn(&mut redis::Connection) -> Result<Vec<Vec<u8>>>>,
    pub(crate) plain_text: &'static str,
}

pub(crate) fn large_cases() -> Vec<Large> {
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
pub(crate) fn large(runs: u64) -> Result<String> {
    let server = start(Some(0), &[], Some(&[]))?;
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
