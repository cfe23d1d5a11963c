//! Digests, replies, raw commands and `INFO` fields.

use std::thread::sleep;
use std::time::{Duration, Instant};

use redis::{Connection, Value};

/// Digest `n`, a valid sha256 digest: 64 decimal digits are valid hex, and
/// redis-benchmark's 12-digit `__rand_int__` after 52 zeros names the same digests.
pub fn digest(n: u64) -> String {
    format!("sha256:{n:064}")
}

/// A bulk-string reply.
pub fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

/// Runs a command given as any byte strings; returns the raw reply (errors as `Err`).
pub fn run<A: AsRef<[u8]>>(c: &mut Connection, args: &[A]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(&String::from_utf8_lossy(args[0].as_ref()));
    for a in &args[1..] {
        cmd.arg(a.as_ref());
    }
    cmd.query(c)
}

/// Runs a command that must succeed (the test fails with the error otherwise).
pub fn cmd<A: AsRef<[u8]>>(c: &mut Connection, args: &[A]) -> Value {
    run(c, args).unwrap_or_else(|e| {
        let args: Vec<_> = args.iter().map(|a| String::from_utf8_lossy(a.as_ref()).into_owned()).collect();
        panic!("{args:?}: {e}")
    })
}

/// A field of `INFO <section>`, or an error naming what is missing.
pub fn info_field(c: &mut Connection, section: &str, field: &str) -> Result<String, String> {
    let info: String = redis::cmd("INFO").arg(section).query(c).map_err(|e| e.to_string())?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| format!("no {field} in INFO {section}"))
}

/// The counter `layercache_<name>` of `INFO layercache`.
pub fn info_counter(c: &mut Connection, name: &str) -> Result<u64, String> {
    let value = info_field(c, "layercache", &format!("layercache_{name}"))?;
    value.parse().map_err(|_| format!("layercache_{name} is not a number: {value}"))
}

/// Polls `done` every 20 ms until it holds; panics (failing the test) after 60 s.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(20));
    }
}
