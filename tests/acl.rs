//! ACL (DESIGN.md section 4): a user's key patterns apply to the real keys the
//! commands touch: checked by the module on derived names in the `distribution`
//! scheme, by Redis through key specs in `blob`; a tenant sees and changes nothing of
//! another's, and no reply names a key it may not read.

mod common;

use common::*;
use redis::Value;

#[test]
fn acl_key_patterns_apply_to_the_real_keys() {
    let s = Server::with(Options::scheme(Scheme::Distribution));
    let mut admin = s.client();
    run(&mut admin, &["ACL", "SETUSER", "team-a", "on", ">secret", "~repository::team-a/*", "+@all"]).unwrap();
    run(&mut admin, &["LAYERCACHE.SETMETA", D1, "/p", "1"]).unwrap();
    let mut c = s.client_as("team-a", "secret");

    assert_eq!(run(&mut c, &["LAYERCACHE.ADD", "team-a/app", D1]).unwrap(), Value::Int(1));
    assert_eq!(run(&mut c, &["LAYERCACHE.CONTAINS", "team-a/app", D1]).unwrap(), Value::Int(1));
    assert_eq!(run(&mut c, &["LAYERCACHE.MCONTAINS", "team-a/app", D1, D2]).unwrap(), Value::Array(vec![Value::Int(1), Value::Int(0)]));

    let before = snapshot(&mut admin);
    let denied = "NOPERM this user has no permissions to access one of the keys this command touches";
    for cmd in ["LAYERCACHE.ADD", "LAYERCACHE.CONTAINS", "LAYERCACHE.MCONTAINS", "LAYERCACHE.LOOKUP"] {
        assert_eq!(error(&mut c, &[cmd.as_bytes(), b"team-b/app", D1.as_bytes()]), denied, "{cmd}");
    }
    // The global blob hash is outside the user's pattern too.
    let blob_denied = denied;
    assert_eq!(error(&mut c, &[b"LAYERCACHE.META", D1.as_bytes()]), blob_denied);
    assert_eq!(error(&mut c, &[b"LAYERCACHE.SETMETA", D1.as_bytes(), b"/q", b"2"]), blob_denied);
    assert_eq!(error(&mut c, &[b"LAYERCACHE.LOOKUP", b"team-a/app", D1.as_bytes()]), blob_denied);
    // The descriptor commands, on a repository the user may not touch.
    let desc = [D1.as_bytes(), b"1", b"application/json"];
    for args in [
        [&[&b"LAYERCACHE.REPOSTAT"[..], b"team-b/app", D1.as_bytes()][..]].concat(),
        [&[&b"LAYERCACHE.REPOSETDESCRIPTOR"[..], b"team-b/app", D1.as_bytes()][..], &desc[..]].concat(),
        [&[&b"LAYERCACHE.REPOCLEAR"[..], b"team-b/app", D1.as_bytes()][..]].concat(),
        [&[&b"LAYERCACHE.DROPREPO"[..], b"team-b/app"][..]].concat(),
    ] {
        assert_eq!(error(&mut c, &args), denied, "{}", String::from_utf8_lossy(args[0]));
    }
    for args in [
        [&[&b"LAYERCACHE.STAT"[..], D1.as_bytes()][..]].concat(),
        [&[&b"LAYERCACHE.SETDESCRIPTOR"[..], D1.as_bytes()][..], &desc[..]].concat(),
        [&[&b"LAYERCACHE.CLEAR"[..], D1.as_bytes()][..]].concat(),
        [&[&b"LAYERCACHE.PURGE"[..], D1.as_bytes()][..]].concat(),
    ] {
        assert_eq!(error(&mut c, &args), blob_denied, "{}", String::from_utf8_lossy(args[0]));
    }
    assert!(snapshot(&mut admin) == before, "denied commands wrote nothing");
}

/// In the blob scheme the keys are the digest arguments, declared through key specs,
/// so Redis's own ACL key rules apply: `%R~sha256:*` may read, not write.
#[test]
fn blob_scheme_acl_through_key_specs() {
    let s = Server::with(Options::scheme(Scheme::Blob));
    let mut admin = s.client();
    run(&mut admin, &["LAYERCACHE.SETMETA", D1, "/p", "1"]).unwrap();
    run(&mut admin, &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D1, D1, "1", "application/json"]).unwrap();
    run(&mut admin, &["ACL", "SETUSER", "reader", "on", ">pw", "%R~sha256:*", "+@all"]).unwrap();
    run(&mut admin, &["ACL", "SETUSER", "writer", "on", ">pw", "~sha256:*", "+@all"]).unwrap();
    let mut reader = s.client_as("reader", "pw");
    for read in [
        &["LAYERCACHE.CONTAINS", "team/app", D1][..],
        &["LAYERCACHE.MCONTAINS", "team/app", D1, D2],
        &["LAYERCACHE.META", D1],
        &["LAYERCACHE.LOOKUP", "team/app", D1],
        &["LAYERCACHE.STAT", D1],
        &["LAYERCACHE.REPOSTAT", "team/app", D1],
    ] {
        assert!(run(&mut reader, read).is_ok(), "{read:?}");
    }
    let before = snapshot(&mut admin);
    for write in [
        &["LAYERCACHE.ADD", "team/app", D2][..],
        &["LAYERCACHE.SETMETA", D1, "/q", "2"],
        &["LAYERCACHE.SETDESCRIPTOR", D1, D1, "2", "application/json"],
        &["LAYERCACHE.CLEAR", D1],
        &["LAYERCACHE.REPOSETDESCRIPTOR", "team/app", D1, D1, "2", "application/json"],
        &["LAYERCACHE.REPOCLEAR", "team/app", D1],
        &["LAYERCACHE.PURGE", D1],
    ] {
        let args: Vec<&[u8]> = write.iter().map(|a| a.as_bytes()).collect();
        let e = error(&mut reader, &args);
        assert!(e.starts_with("NOPERM"), "{write:?}: {e}");
    }
    assert!(snapshot(&mut admin) == before, "denied writes changed nothing");
    let mut writer = s.client_as("writer", "pw");
    assert_eq!(run(&mut writer, &["LAYERCACHE.ADD", "team/app", D2]).unwrap(), Value::Int(1));
    // Keys outside the pattern stay out of reach.
    let other = format!("sha512:{}", "c".repeat(128));
    assert!(error(&mut writer, &[b"LAYERCACHE.ADD", b"team/app", other.as_bytes()]).starts_with("NOPERM"));
}

/// The tenant scenario of DESIGN.md section 1: a registry user granted the global
/// descriptors (`~blobs::*`) and its own repositories learns nothing of, and can change
/// nothing of, another tenant's repositories, through the module or around it.
#[test]
fn a_tenant_sees_and_changes_nothing_of_another_tenant() {
    let s = Server::with(Options::scheme(Scheme::Distribution));
    let mut admin = s.client();
    run(&mut admin, &["ACL", "SETUSER", "team-a", "on", ">secret", "~blobs::*", "~repository::team-a/*", "+@all"]).unwrap();
    run(&mut admin, &["LAYERCACHE.REPOSETDESCRIPTOR", "team-b/secret", D1, D1, "1", "application/json"]).unwrap();
    let mut c = s.client_as("team-a", "secret");
    // team-a caches the same blob: the index learns it on team-a's behalf.
    assert_eq!(run(&mut c, &["LAYERCACHE.REPOSETDESCRIPTOR", "team-a/app", D1, D1, "1", "application/json"]).unwrap(), Value::Okay);
    let index = format!("layercache::repos::{D1}");
    let indexed: Vec<String> = redis::cmd("HKEYS").arg(&index).query(&mut admin).unwrap();
    assert_eq!(indexed, ["team-b/secret", "team-a/app"]);
    let before = snapshot(&mut admin);

    // The index is outside the tenant's keys: no read, no write.
    for args in [
        vec!["HKEYS", &index],
        vec!["HGETALL", &index],
        vec!["DEL", &index],
        vec!["HSET", &index, "team-a/x", ""],
        vec!["LAYERCACHE.PURGE", D1],
        vec!["LAYERCACHE.DROPREPO", "team-b/secret"],
        vec!["LAYERCACHE.REPOSTAT", "team-b/secret", D1],
    ] {
        let e = run(&mut c, &args).map(|v| format!("{v:?}")).unwrap_or_else(|e| error_text(&e));
        assert!(e.starts_with("NOPERM"), "{args:?}: {e}");
        assert!(!e.contains("team-b"), "{args:?} names the other tenant: {e}");
    }
    // Every key under blobs:: is a hash, as tools that HGETALL them expect.
    let visible: Vec<String> = redis::cmd("KEYS").arg("blobs::*").query(&mut c).unwrap();
    assert_eq!(visible, [format!("blobs::{D1}")]);
    for key in &visible {
        let _: Vec<(String, String)> = redis::cmd("HGETALL").arg(key).query(&mut c).unwrap();
    }
    assert!(snapshot(&mut admin) == before, "the tenant changed nothing");
    // PURGE, an operator's command, still removes both tenants' data.
    assert_eq!(run(&mut admin, &["LAYERCACHE.PURGE", D1]).unwrap(), Value::Int(1));
    assert_eq!(contents(&mut admin), Vec::<String>::new());
}
