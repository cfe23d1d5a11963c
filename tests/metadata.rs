//! The metadata cache's commands (DESIGN.md section 7) against a real redis-server: a
//! repository's links with their generation and writes in flight (LINK, LINKSET,
//! LINKDROP, LINKDONE), a blob's bytes (DATA, SETDATA); their replies, errors, keys,
//! expiry and replication.

mod common;

use common::*;
use redis::{Connection, Value};

const TAG: &str = "_manifests/tags/latest/current/link";
const TAG2: &str = "_manifests/tags/v2/current/link";
const LAYER: &str = "_layers/sha256/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08/link";

/// The hash of a repository's links in the current scheme.
fn links_key(repo: &str) -> String {
    match scheme() {
        Scheme::Distribution => format!("repository::{repo}::links"),
        Scheme::Blob => repo.to_string(),
    }
}

/// LINK's reply: `[gen, entry]` (None: not cached).
fn link(gen: i64, entry: Option<&str>) -> Value {
    Value::Array(vec![Value::Int(gen), entry.map_or(Value::Nil, bulk)])
}

fn get(c: &mut Connection, repo: &str, path: &str) -> Value {
    cmd(c, &["LAYERCACHE.LINK", repo, path])
}

fn fill(c: &mut Connection, repo: &str, gen: i64, path: &str, value: &str) -> Value {
    cmd(c, &["LAYERCACHE.LINKSET", repo, &gen.to_string(), path, value])
}

#[test]
fn a_fill_is_read_back_per_repository_and_absent_is_an_answer() {
    let s = Server::start();
    let mut c = s.client();
    assert_eq!(get(&mut c, "team/app", TAG), link(0, None), "case 1: nothing cached");
    assert_eq!(fill(&mut c, "team/app", 0, TAG, D1), Value::Int(1), "case 2");
    assert_eq!(fill(&mut c, "team/app", 0, LAYER, ""), Value::Int(1), "case 3: absent");
    assert_eq!(get(&mut c, "team/app", TAG), link(0, Some(D1)), "case 4");
    assert_eq!(get(&mut c, "team/app", LAYER), link(0, Some("")), "case 5: cached as absent");
    assert_eq!(get(&mut c, "team/other", TAG), link(0, None), "case 6: another repository");
    let mut fields: Vec<String> = redis::cmd("HKEYS").arg(links_key("team/app")).query(&mut c).unwrap();
    fields.sort();
    assert_eq!(fields, vec![LAYER, TAG], "case 7: one hash per repository, a field per link");
    assert_eq!(cmd(&mut c, &["DBSIZE"]), Value::Int(1));
}

#[test]
fn a_drop_bumps_the_generation_and_a_fill_of_an_older_one_is_refused() {
    let s = Server::start();
    let mut c = s.client();
    fill(&mut c, "team/app", 0, TAG, D1);
    // A reader saw generation 0; a writer drops the tag; the reader's fill of what it
    // read before the write is refused.
    assert_eq!(cmd(&mut c, &["LAYERCACHE.LINKDROP", "team/app", "0", TAG]), Value::Int(1), "case 1");
    assert_eq!(get(&mut c, "team/app", TAG), link(1, None), "case 2");
    assert_eq!(fill(&mut c, "team/app", 0, TAG, D1), Value::Int(0), "case 3: stale generation");
    assert_eq!(get(&mut c, "team/app", TAG), link(1, None), "case 4: nothing stored");
    assert_eq!(fill(&mut c, "team/app", 1, TAG, D2), Value::Int(1), "case 5: current generation");
    assert_eq!(get(&mut c, "team/app", TAG), link(1, Some(D2)), "case 6");
    // A drop of a repository with nothing cached still bumps its generation.
    assert_eq!(cmd(&mut c, &["LAYERCACHE.LINKDROP", "team/new", "0", TAG]), Value::Int(0), "case 7");
    assert_eq!(fill(&mut c, "team/new", 0, TAG, D1), Value::Int(0), "case 8: read before the drop");
}

#[test]
fn a_write_in_flight_refuses_every_fill_until_it_is_done_or_its_hold_ends() {
    let s = Server::start();
    let mut c = s.client();
    let begin = |c: &mut Connection, repo: &str, hold: &str| cmd(c, &["LAYERCACHE.LINKDROP", repo, hold, TAG]);
    begin(&mut c, "team/app", "60000");
    assert_eq!(fill(&mut c, "team/app", 1, TAG, D1), Value::Int(0), "case 1: a write in flight");
    assert_eq!(fill(&mut c, "team/app", 1, TAG2, D1), Value::Int(0), "case 2: for every link of the repository");
    assert_eq!(fill(&mut c, "team/other", 0, TAG, D1), Value::Int(1), "case 3: not another repository's");
    assert_eq!(cmd(&mut c, &["LAYERCACHE.LINKDONE", "team/app", TAG]), Value::Int(0), "case 4: done");
    assert_eq!(get(&mut c, "team/app", TAG), link(2, None), "case 5");
    assert_eq!(fill(&mut c, "team/app", 2, TAG, D1), Value::Int(1), "case 6: fills again");
    // Two writers: the first done may not store its value while the second is in flight.
    begin(&mut c, "team/app", "60000");
    begin(&mut c, "team/app", "60000");
    assert_eq!(cmd(&mut c, &["LAYERCACHE.LINKDONE", "team/app", TAG, D2]), Value::Int(0), "case 7: another in flight");
    assert_eq!(get(&mut c, "team/app", TAG), link(5, None), "case 8");
    assert_eq!(cmd(&mut c, &["LAYERCACHE.LINKDONE", "team/app", TAG, D3]), Value::Int(1), "case 9: the last one stores");
    assert_eq!(get(&mut c, "team/app", TAG), link(6, Some(D3)), "case 10");
    assert_eq!(
        error(&mut c, &[b"LAYERCACHE.LINKDONE", b"team/app", b"_manifests/tags/latest", b""]),
        "ERR invalid path: not a link (.../link)",
        "case 11: a value needs a link"
    );
    // A writer that never says it is done: fills resume when its hold ends.
    begin(&mut c, "team/killed", "1");
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(fill(&mut c, "team/killed", 1, TAG, D1), Value::Int(1), "case 12: the hold ended");
    begin(&mut c, "team/killed", "60000");
    assert_eq!(cmd(&mut c, &["LAYERCACHE.LINKDONE", "team/killed", TAG, ""]), Value::Int(1), "case 13: the lapsed write is not counted");
    assert_eq!(get(&mut c, "team/killed", TAG), link(3, Some("")), "case 14: absent, as written");
}

#[test]
fn a_drop_of_a_directory_removes_the_links_under_it() {
    let s = Server::start();
    let mut c = s.client();
    let index = format!("_manifests/tags/latest/index/sha256/{}/link", &D1[7..]);
    let revision = format!("_manifests/revisions/sha256/{}/link", &D1[7..]);
    for path in [TAG, index.as_str(), TAG2, revision.as_str(), LAYER] {
        assert_eq!(fill(&mut c, "team/app", 0, path, D1), Value::Int(1), "{path}");
    }
    let drop = |c: &mut Connection, paths: &[&str]| {
        let mut args = vec!["LAYERCACHE.LINKDROP", "team/app", "0"];
        args.extend_from_slice(paths);
        cmd(c, &args)
    };
    assert_eq!(drop(&mut c, &["_manifests/tags/latest"]), Value::Int(2), "case 1: the tag's two links");
    assert_eq!(get(&mut c, "team/app", TAG2), link(1, Some(D1)), "case 2: another tag stays");
    assert_eq!(drop(&mut c, &["_manifests/tags/lat"]), Value::Int(0), "case 3: a prefix is whole components");
    assert_eq!(drop(&mut c, &[LAYER, "_manifests/revisions"]), Value::Int(2), "case 4");
    assert_eq!(drop(&mut c, &[""]), Value::Int(1), "case 5: everything");
    let mut fields: Vec<String> = redis::cmd("HKEYS").arg(links_key("team/app")).query(&mut c).unwrap();
    fields.sort();
    assert_eq!(fields, vec!["gen", "hold", "writes"], "case 6: the generation and writes stay");
}

#[test]
fn bad_input_is_an_error_with_a_code_and_changes_nothing() {
    let s = Server::start();
    let mut c = s.client();
    let cases: [(usize, &[&str], &str); 13] = [
        (1, &["LAYERCACHE.LINK", "Team/App", TAG], "NAME_INVALID"),
        (2, &["LAYERCACHE.LINK", "team/app", "_manifests/tags/latest"], "ERR invalid path: not a link (.../link)"),
        (3, &["LAYERCACHE.LINK", "team/app", "_uploads/x/link"], "ERR invalid path: not under _manifests/ or _layers/"),
        (4, &["LAYERCACHE.LINK", "team/app", TAG, "WITHTTLX"], "ERR syntax error"),
        (5, &["LAYERCACHE.LINKSET", "team/app", "-1", TAG, D1], "SIZE_INVALID invalid gen: negative"),
        (6, &["LAYERCACHE.LINKSET", "team/app", "0", TAG, "sha256:abc"], "DIGEST_INVALID invalid checksum digest length"),
        (
            7,
            &["LAYERCACHE.LINKSET", "team/app", "0", "_layers/../link", D1],
            "ERR invalid path: not components of [A-Za-z0-9_.-] joined by /",
        ),
        (8, &["LAYERCACHE.LINKDROP", "team/app", "3600001", TAG], "SIZE_INVALID invalid hold: over 3600000 ms"),
        (9, &["LAYERCACHE.LINKDROP", "team/app", "0", TAG, "/etc"], "ERR invalid path: not under _manifests/ or _layers/"),
        (10, &["LAYERCACHE.SETDATA", D1, "tset"], "DIGEST_INVALID content does not match digest"),
        (11, &["LAYERCACHE.DATA", "sha256:x"], "DIGEST_INVALID invalid checksum digest length"),
        (12, &["LAYERCACHE.LINKDONE", "team/app", TAG, "latest"], "DIGEST_INVALID invalid checksum digest format"),
        (13, &["LAYERCACHE.LINKDONE", "team/app", TAG, D1, "x"], "ERR syntax error"),
    ];
    for (n, args, want) in cases {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let got = error(&mut c, &args);
        assert!(got.starts_with(want), "case {n}: {got}");
    }
    let big = vec![b'x'; (4 << 20) + 1];
    assert_eq!(error(&mut c, &[b"LAYERCACHE.SETDATA", D1.as_bytes(), &big]), "SIZE_INVALID invalid data: over 4194304 bytes");
    assert_eq!(cmd(&mut c, &["DBSIZE"]), Value::Int(0), "nothing written");
    cmd(&mut c, &["SET", &links_key("team/app"), "x"]);
    assert!(error(&mut c, &[b"LAYERCACHE.LINKDROP", b"team/app", b"0", b""]).starts_with("WRONGTYPE"));
    cmd(&mut c, &["HSET", &links_key("team/b"), "gen", "x"]);
    assert_eq!(error(&mut c, &[b"LAYERCACHE.LINK", b"team/b", TAG.as_bytes()]), format!("ERR corrupt cache entry {}", links_key("team/b")));
    cmd(&mut c, &["HSET", &links_key("team/c"), "gen", &i64::MAX.to_string()]);
    let corrupt = format!("ERR corrupt cache entry {}", links_key("team/c"));
    assert_eq!(error(&mut c, &[b"LAYERCACHE.LINKDROP", b"team/c", b"0", b""]), corrupt, "a generation never wraps round");
}

#[test]
fn a_blobs_bytes_are_kept_under_their_digest_until_purged() {
    let s = Server::start();
    let mut c = s.client();
    assert_eq!(cmd(&mut c, &["LAYERCACHE.DATA", D1]), Value::Nil, "case 1");
    // D1 is sha256("test").
    assert_eq!(cmd(&mut c, &["LAYERCACHE.SETDATA", D1, "test"]), Value::Okay, "case 2");
    assert_eq!(cmd(&mut c, &["LAYERCACHE.DATA", D1]), bulk("test"), "case 3");
    assert_eq!(cmd(&mut c, &["LAYERCACHE.DATA", D1, "WITHTTL"]), Value::Array(vec![bulk("test"), Value::Int(-1)]), "case 4");
    let stored: Option<String> = redis::cmd("HGET").arg(blob_key(D1)).arg("data").query(&mut c).unwrap();
    assert_eq!(stored.as_deref(), Some("test"), "case 5: field data of the blob's hash");
    // A descriptor's removal leaves the bytes; garbage collection's purge takes them.
    cmd(&mut c, &["LAYERCACHE.SETDESCRIPTOR", D1, D1, "4", "application/json"]);
    cmd(&mut c, &["LAYERCACHE.CLEAR", D1]);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.DATA", D1]), bulk("test"), "case 6");
    assert_eq!(cmd(&mut c, &["LAYERCACHE.PURGE", D1]), Value::Int(1), "case 7");
    assert_eq!(cmd(&mut c, &["LAYERCACHE.DATA", D1]), Value::Nil, "case 8");
}

#[test]
fn writes_take_the_configured_expiry_and_a_drop_keeps_an_existing_one() {
    let s = Server::start();
    let mut c = s.client();
    cmd(&mut c, &["CONFIG", "SET", "layercache.ttl", "100"]);
    let key = links_key("team/app");
    fill(&mut c, "team/app", 0, TAG, D1);
    let pttl = |c: &mut Connection, key: &str| -> i64 { redis::cmd("PTTL").arg(key).query(c).unwrap() };
    assert!((90_000..=100_000).contains(&pttl(&mut c, &key)), "case 1: a fill");
    cmd(&mut c, &["PEXPIRE", &key, "50000"]);
    cmd(&mut c, &["LAYERCACHE.LINKDROP", "team/app", "0", TAG]);
    assert!(pttl(&mut c, &key) <= 50_000, "case 2: a drop does not extend");
    let Value::Array(reply) = cmd(&mut c, &["LAYERCACHE.LINK", "team/app", TAG, "WITHTTL"]) else { panic!() };
    assert!(matches!(reply[2], Value::Int(ms) if ms > 0 && ms <= 50_000), "case 3: WITHTTL {reply:?}");
    cmd(&mut c, &["LAYERCACHE.LINKDROP", "team/new", "0", TAG]);
    assert!((90_000..=100_000).contains(&pttl(&mut c, &links_key("team/new"))), "case 4: a drop that creates the key");
    cmd(&mut c, &["LAYERCACHE.SETDATA", D1, "test"]);
    assert!((90_000..=100_000).contains(&pttl(&mut c, &blob_key(D1))), "case 5: SETDATA");
}

#[test]
fn a_replica_holds_the_same_links_generation_hold_and_bytes() {
    let primary = Server::start();
    let mut p = primary.client();
    let (_replica, mut r) = Server::replica_of(&primary, false);
    fill(&mut p, "team/app", 0, TAG, D1);
    fill(&mut p, "team/app", 0, TAG2, "");
    cmd(&mut p, &["LAYERCACHE.LINKDROP", "team/app", "60000", TAG]);
    cmd(&mut p, &["LAYERCACHE.LINKDONE", "team/app", TAG, D2]);
    cmd(&mut p, &["LAYERCACHE.SETDATA", D1, "test"]);
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(10_000).query(&mut p).unwrap();
    assert_eq!(acked, 1);
    assert_eq!(snapshot(&mut r), snapshot(&mut p), "a replica without the module holds the same keys");
}

#[test]
fn acl_key_rules_apply_to_the_repository_links_key() {
    let s = Server::start();
    let mut c = s.client();
    let pattern = format!("~{}", links_key("team-a/*"));
    cmd(&mut c, &["ACL", "SETUSER", "registry", "on", ">pw", "+@all", &pattern]);
    let mut u = s.client_as("registry", "pw");
    assert_eq!(fill(&mut u, "team-a/app", 0, TAG, D1), Value::Int(1), "case 1");
    assert_eq!(get(&mut u, "team-a/app", TAG), link(0, Some(D1)), "case 2");
    let denied: [(usize, &[&str]); 2] =
        [(3, &["LAYERCACHE.LINK", "team-b/app", TAG]), (4, &["LAYERCACHE.LINKDROP", "team-b/app", "0", ""])];
    for (n, args) in denied {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        assert!(error(&mut u, &args).starts_with("NOPERM"), "case {n}");
    }
    assert_eq!(cmd(&mut c, &["DBSIZE"]), Value::Int(1), "case 5: nothing written for team-b");
}

#[test]
fn droprepo_drops_the_repositorys_links_and_keeps_its_generation() {
    let s = Server::start();
    let mut c = s.client();
    fill(&mut c, "team/app", 0, TAG, D1);
    fill(&mut c, "team/app", 0, LAYER, D1);
    cmd(&mut c, &["LAYERCACHE.ADD", "team/app", D1]);
    if scheme() == Scheme::Blob {
        return; // DROPREPO needs scheme distribution (tests/descriptor.rs)
    }
    assert_eq!(cmd(&mut c, &["LAYERCACHE.DROPREPO", "team/app"]), Value::Int(1), "case 1");
    assert_eq!(get(&mut c, "team/app", TAG), link(1, None), "case 2: links gone, generation moved");
    assert_eq!(get(&mut c, "team/app", LAYER), link(1, None), "case 3");
    assert_eq!(fill(&mut c, "team/app", 0, TAG, D1), Value::Int(0), "case 4: a fill read before the drop");
    fill(&mut c, "team/links-only", 0, TAG, D1);
    assert_eq!(cmd(&mut c, &["LAYERCACHE.DROPREPO", "team/links-only"]), Value::Int(0), "case 5: no blobs, links still go");
    assert_eq!(get(&mut c, "team/links-only", TAG), link(1, None), "case 6");
}
