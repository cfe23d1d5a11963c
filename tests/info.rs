//! `INFO layercache` (DESIGN.md section 4): a section that lists every command, with
//! calls, hits, misses and rejected inputs that move with the commands.

mod common;

use common::*;

const OCTET: &str = "application/octet-stream";

#[test]
fn info_section_lists_every_command() {
    let s = Server::start();
    let mut c = s.client();
    let info: String = redis::cmd("INFO").arg("layercache").query(&mut c).unwrap();
    assert!(info.contains("# layercache"), "{info}");
    assert!(info.contains("layercache_purged_digests:0"), "{info}");
    assert!(info.contains("layercache_setdata_bytes:0"), "{info}");
    for cmd in COMMANDS.map(|c| c.trim_start_matches("layercache.")) {
        for field in ["calls", "hits", "misses", "rejected"] {
            assert!(info.contains(&format!("layercache_{cmd}_{field}:0")), "{cmd}_{field} in {info}");
        }
    }
}

#[test]
fn info_counts_calls_hits_misses_and_rejects() {
    let s = Server::start();
    let mut c = s.client();
    run(&mut c, &["LAYERCACHE.ADD", "a/b", D1]).unwrap();
    run(&mut c, &["LAYERCACHE.CONTAINS", "a/b", D1]).unwrap();
    run(&mut c, &["LAYERCACHE.CONTAINS", "a/b", D2]).unwrap();
    run(&mut c, &["LAYERCACHE.CONTAINS", "a/b", D3]).unwrap();
    error(&mut c, &[b"LAYERCACHE.CONTAINS", b"A", D1.as_bytes()]);
    assert_eq!(info_counter(&mut c, "contains_calls"), Ok(4));
    assert_eq!(info_counter(&mut c, "contains_hits"), Ok(1));
    assert_eq!(info_counter(&mut c, "contains_misses"), Ok(2));
    assert_eq!(info_counter(&mut c, "contains_rejected"), Ok(1));
    assert_eq!(info_counter(&mut c, "add_calls"), Ok(1));
}

#[test]
fn info_counters_move_with_the_commands() {
    let s = Server::start();
    let mut c = s.client();
    cmd(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D1, D1, "1", OCTET]);
    cmd(&mut c, &["LAYERCACHE.STAT", D1]);
    cmd(&mut c, &["LAYERCACHE.STAT", D2]);
    cmd(&mut c, &["LAYERCACHE.REPOSTAT", "team/app", D1]);
    error(&mut c, &[b"LAYERCACHE.REPOSTAT", b"team/app", b"sha256:x"]);
    error(&mut c, &[b"LAYERCACHE.STAT", D1.as_bytes(), b"extra"]); // ERR syntax error
    cmd(&mut c, &["LAYERCACHE.PURGE", D1, D2]);
    cmd(&mut c, &["LAYERCACHE.LINK", "team/app", "_manifests/tags/latest/current/link"]);
    cmd(&mut c, &["LAYERCACHE.LINKSET", "team/app", "0", "_manifests/tags/latest/current/link", D1]);
    cmd(&mut c, &["LAYERCACHE.LINK", "team/app", "_manifests/tags/latest/current/link"]);
    cmd(&mut c, &["LAYERCACHE.SETDATA", D1, "test"]); // D1 is sha256("test")
    cmd(&mut c, &["LAYERCACHE.DATA", D1]);
    for (name, want) in [
        ("reposetdescriptor_calls", 1),
        ("stat_calls", 3),
        ("stat_hits", 1),
        ("stat_misses", 1),
        ("stat_rejected", 1),
        ("repostat_calls", 2),
        ("repostat_hits", 1),
        ("repostat_rejected", 1),
        ("purge_calls", 1),
        ("purge_hits", 1),
        ("purge_misses", 1),
        ("purged_digests", 1),
        ("link_calls", 2),
        ("link_hits", 1),
        ("link_misses", 1),
        ("data_hits", 1),
        ("setdata_bytes", 4),
    ] {
        assert_eq!(info_counter(&mut c, name), Ok(want), "{name}");
    }
}
