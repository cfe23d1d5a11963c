//! What the integration suites share beyond the kit (`layercache-kit`: servers,
//! randomness, digests, raw commands, INFO): the module's command list, fixed digests,
//! and reading each key scheme's layout with plain commands.
#![allow(dead_code)]

pub use layercache_kit::*;
use redis::{Connection, Value};

pub const D1: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
pub const D2: &str = "sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
pub const D3: &str = "sha256:fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13";

/// Every command the module registers (its tests' one list of them).
pub const COMMANDS: [&str; 21] = [
    "layercache.add",
    "layercache.contains",
    "layercache.mcontains",
    "layercache.setmeta",
    "layercache.meta",
    "layercache.lookup",
    "layercache.stat",
    "layercache.setdescriptor",
    "layercache.clear",
    "layercache.repostat",
    "layercache.reposetdescriptor",
    "layercache.repoclear",
    "layercache.purge",
    "layercache.droprepo",
    "layercache.index",
    "layercache.link",
    "layercache.linkset",
    "layercache.linkdrop",
    "layercache.linkdone",
    "layercache.data",
    "layercache.setdata",
];

/// The hash of a blob in the current scheme.
pub fn blob_key(digest: &str) -> String {
    match scheme() {
        Scheme::Distribution => format!("blobs::{digest}"),
        Scheme::Blob => digest.to_string(),
    }
}

/// Whether `repo` holds `digest`, read with plain commands.
pub fn holds(c: &mut Connection, repo: &str, digest: &str) -> bool {
    match scheme() {
        Scheme::Distribution => redis::cmd("SISMEMBER").arg(format!("repository::{repo}::blobs")).arg(digest).query(c).unwrap(),
        Scheme::Blob => redis::cmd("HEXISTS").arg(digest).arg(format!("repo:{repo}")).query(c).unwrap(),
    }
}

/// The repository's mediatype for `digest`, read with plain commands (None: no field).
pub fn repo_mediatype(c: &mut Connection, repo: &str, digest: &str) -> Option<String> {
    match scheme() {
        Scheme::Distribution => redis::cmd("HGET").arg(format!("repository::{repo}::blobs::{digest}")).arg("mediatype").query(c).unwrap(),
        Scheme::Blob => redis::cmd("HGET").arg(digest).arg(format!("repo:{repo}")).query(c).unwrap(),
    }
}

/// Runs a command that must fail; returns the full error text (code first).
pub fn error(c: &mut Connection, args: &[&[u8]]) -> String {
    match run(c, args) {
        Ok(v) => panic!("{:?} succeeded with {v:?}", String::from_utf8_lossy(&args.concat())),
        Err(e) => error_text(&e),
    }
}

/// The error as the server sent it: `CODE message`.
pub fn error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// Every key with its DUMP, sorted: a fingerprint of the keyspace. A hashtable's DUMP
/// follows its bucket order, which incremental rehashing changes on reads, so for those
/// the logical contents stand in.
pub fn snapshot(c: &mut Connection) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(c).unwrap();
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let encoding: String = redis::cmd("OBJECT").arg("ENCODING").arg(&k).query(c).unwrap();
            let fingerprint: Vec<u8> = if encoding == "hashtable" {
                contents_of(c, &String::from_utf8_lossy(&k)).into_bytes()
            } else {
                redis::cmd("DUMP").arg(&k).query(c).unwrap()
            };
            (k, fingerprint)
        })
        .collect()
}

/// Every key with its type and contents (members and fields sorted), comparable
/// across servers, where DUMP of a hashtable-encoded set is not.
pub fn contents(c: &mut Connection) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(c).unwrap();
    keys.sort();
    keys.into_iter().map(|k| contents_of(c, &k)).collect()
}

fn contents_of(c: &mut Connection, key: &str) -> String {
    let kind: String = redis::cmd("TYPE").arg(key).query(c).unwrap();
    let mut items: Vec<String> = match kind.as_str() {
        "set" => redis::cmd("SMEMBERS").arg(key).query(c).unwrap(),
        "hash" => {
            let pairs: Vec<(String, String)> = redis::cmd("HGETALL").arg(key).query(c).unwrap();
            pairs.into_iter().map(|(f, v)| format!("{f}={v}")).collect()
        }
        other => vec![format!("<{other}>")],
    };
    items.sort();
    format!("{key} {kind} {items:?}")
}

/// Every string in a reply, flattened.
pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) | Value::Set(items) => items.iter().flat_map(strings).collect(),
        Value::SimpleString(s) => vec![s.clone()],
        Value::BulkString(b) => vec![String::from_utf8_lossy(b).into_owned()],
        _ => vec![],
    }
}
