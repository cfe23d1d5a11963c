//! The driver's workloads: random operations on the dataset (module commands and the
//! plain commands or scripts they replace), run in lockstep on N connections, or by
//! redis-benchmark where it can express them.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::kit::*;

/// One operation: round trips in order, each a pipelined group of packed commands.
pub(crate) struct Op {
    pub(crate) trips: Vec<(Vec<u8>, usize)>,
}

pub(crate) fn op(trips: Vec<Vec<Vec<u8>>>) -> Op {
    Op { trips: trips.into_iter().map(|cmds| (cmds.concat(), cmds.len())).collect() }
}

pub(crate) struct Scripts {
    pub(crate) lookup: String,
    pub(crate) repostat: String,
    pub(crate) reposetdescriptor: String,
}

pub(crate) const LOOKUP_LUA: &str = "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then \
    local v = redis.call('HMGET', KEYS[2], 'path', 'length') \
    if v[1] and v[2] then return {v[1], tonumber(v[2])} end end return false";
pub(crate) const REPOSTAT_LUA: &str = "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return false end \
    local d = redis.call('HMGET', KEYS[2], 'digest', 'size', 'mediatype') \
    if not d[1] or not d[2] then return false end \
    local m = redis.call('HGET', KEYS[3], 'mediatype') \
    if not m then return false end \
    if m ~= '' then d[3] = m end \
    return {d[1], tonumber(d[2]), d[3] or ''}";
pub(crate) const REPOSETDESCRIPTOR_LUA: &str = "redis.call('SADD', KEYS[1], ARGV[1]) \
    redis.call('HSET', KEYS[2], 'digest', ARGV[2], 'size', ARGV[3]) \
    redis.call('HSETNX', KEYS[2], 'mediatype', ARGV[4]) \
    redis.call('HSET', KEYS[3], 'mediatype', ARGV[4]) return 'OK'";

/// A workload: builds one random operation.
pub(crate) type Build = fn(&mut Rng, &Scripts) -> Op;

/// A random repository and one of its own digests, with distribution's key names.
pub(crate) struct Pick {
    pub(crate) repo: String,
    pub(crate) digest: String,
    pub(crate) members: String,
    pub(crate) blob: String,
    pub(crate) scoped: String,
}


pub(crate) fn loaded_repos() -> u64 {
    LOADED_REPOS.load(Ordering::Relaxed)
}

pub(crate) fn pick(rng: &mut Rng) -> Pick {
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

pub(crate) fn contains(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["LAYERCACHE.CONTAINS", &p.repo, &p.digest])]])
}
pub(crate) fn sismember(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["SISMEMBER", &p.members, &p.digest])]])
}
pub(crate) fn lookup(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["LAYERCACHE.LOOKUP", &p.repo, &p.digest])]])
}
pub(crate) fn lookup_pipelined(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["SISMEMBER", &p.members, &p.digest]), pack(&["HMGET", &p.blob, "path", "length"])]])
}
pub(crate) fn lookup_multi(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![
        pack(&["MULTI"]),
        pack(&["SISMEMBER", &p.members, &p.digest]),
        pack(&["HMGET", &p.blob, "path", "length"]),
        pack(&["EXEC"]),
    ]])
}
pub(crate) fn lookup_eval(rng: &mut Rng, s: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["EVALSHA", &s.lookup, "2", &p.members, &p.blob, &p.digest])]])
}
pub(crate) fn repostat(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["LAYERCACHE.REPOSTAT", &p.repo, &p.digest])]])
}
pub(crate) fn repostat_trips(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![
        vec![pack(&["SISMEMBER", &p.members, &p.digest])],
        vec![pack(&["HMGET", &p.blob, "digest", "size", "mediatype"])],
        vec![pack(&["HGET", &p.scoped, "mediatype"])],
    ])
}
pub(crate) fn repostat_eval(rng: &mut Rng, s: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["EVALSHA", &s.repostat, "3", &p.members, &p.blob, &p.scoped, &p.digest])]])
}
pub(crate) fn reposetdescriptor(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![vec![pack(&["LAYERCACHE.REPOSETDESCRIPTOR", &p.repo, &p.digest, &p.digest, "2797", REPO_MEDIATYPE])]])
}
pub(crate) fn reposetdescriptor_trips(rng: &mut Rng, _: &Scripts) -> Op {
    let p = pick(rng);
    op(vec![
        vec![pack(&["SADD", &p.members, &p.digest])],
        vec![pack(&["HSET", &p.blob, "digest", &p.digest, "size", "2797"])],
        vec![pack(&["HSETNX", &p.blob, "mediatype", MEDIATYPE])],
        vec![pack(&["HSET", &p.scoped, "mediatype", REPO_MEDIATYPE])],
    ])
}
pub(crate) fn reposetdescriptor_eval(rng: &mut Rng, s: &Scripts) -> Op {
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
pub(crate) fn twenty(rng: &mut Rng) -> (String, Vec<String>) {
    let repos = loaded_repos();
    let r = rng.below(repos);
    let digests = (0..20)
        .map(|_| digest(if rng.below(2) == 0 { r * PER_REPO + rng.below(PER_REPO) } else { rng.below(repos * PER_REPO) }))
        .collect();
    (repo(r), digests)
}
pub(crate) fn mcontains(rng: &mut Rng, _: &Scripts) -> Op {
    let (repo, digests) = twenty(rng);
    let mut args = vec!["LAYERCACHE.MCONTAINS", &repo];
    args.extend(digests.iter().map(String::as_str));
    op(vec![vec![pack(&args)]])
}
pub(crate) fn sismember20(rng: &mut Rng, _: &Scripts) -> Op {
    let (repo, digests) = twenty(rng);
    let members = format!("repository::{repo}::blobs");
    op(vec![digests.iter().map(|d| pack(&["SISMEMBER", &members, d])).collect()])
}

/// Runs `build` operations on `clients` connections in lockstep, `pipeline` operations
/// per connection per round, for `seconds`. Returns (ops/s, server µs per op).
pub(crate) fn drive(server: &Server, build: Build, scripts: &Scripts, clients: usize, pipeline: usize, seconds: u64) -> Result<(f64, f64)> {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
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
pub(crate) fn redis_benchmark(server: &Server, command: &[&str], pipeline: usize, requests: u64) -> Result<(f64, f64)> {
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
