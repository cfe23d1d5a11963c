//! The bad-input table (DESIGN.md section 3): every rule for every argument of every
//! command, huge / NUL / non-UTF-8 arguments, wrong arity and WRONGTYPE on each key a
//! command touches. Each case must get its exact error, leave the keyspace as it was
//! (DBSIZE and the DUMP of every key), and leave the server answering.

mod common;

use common::*;

/// What an argument position holds, so the table knows which bad values to try there.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Repo,
    Digest,
    Path,
    Length,
    Size,
    MediaType,
}

use Kind::*;

const REPO: &str = "team/app";
const OCTET: &str = "application/octet-stream";
const MEMBERS: &str = "repository::team/app::blobs";
const SCOPED: &str = "repository::team/app::blobs::D1";
const MIB8: usize = 8 << 20;

/// A command with valid arguments (of the kinds given), and the keys it touches.
struct Spec {
    name: &'static str,
    args: &'static [(Kind, &'static str)],
    keys: &'static [&'static str],
}

/// Every command, with arguments that are valid against [`setup`]'s keyspace.
fn specs() -> Vec<Spec> {
    vec![
        Spec { name: "LAYERCACHE.ADD", args: &[(Repo, REPO), (Digest, D2)], keys: &[MEMBERS, "layercache::repos::D2"] },
        Spec { name: "LAYERCACHE.CONTAINS", args: &[(Repo, REPO), (Digest, D1)], keys: &[MEMBERS] },
        Spec { name: "LAYERCACHE.MCONTAINS", args: &[(Repo, REPO), (Digest, D1), (Digest, D2)], keys: &[MEMBERS] },
        Spec { name: "LAYERCACHE.SETMETA", args: &[(Digest, D1), (Path, "/p"), (Length, "10")], keys: &["blobs::D1"] },
        Spec { name: "LAYERCACHE.META", args: &[(Digest, D1)], keys: &["blobs::D1"] },
        Spec { name: "LAYERCACHE.LOOKUP", args: &[(Repo, REPO), (Digest, D1)], keys: &[MEMBERS, "blobs::D1"] },
        Spec { name: "LAYERCACHE.STAT", args: &[(Digest, D1)], keys: &["blobs::D1"] },
        Spec {
            name: "LAYERCACHE.SETDESCRIPTOR",
            args: &[(Digest, D1), (Digest, D1), (Size, "10"), (MediaType, OCTET)],
            keys: &["blobs::D1"],
        },
        Spec { name: "LAYERCACHE.CLEAR", args: &[(Digest, D1)], keys: &["blobs::D1"] },
        Spec { name: "LAYERCACHE.REPOSTAT", args: &[(Repo, REPO), (Digest, D1)], keys: &[MEMBERS, "blobs::D1", SCOPED] },
        Spec {
            name: "LAYERCACHE.REPOSETDESCRIPTOR",
            args: &[(Repo, REPO), (Digest, D1), (Digest, D1), (Size, "10"), (MediaType, OCTET)],
            keys: &[MEMBERS, "blobs::D1", SCOPED, "layercache::repos::D1"],
        },
        Spec { name: "LAYERCACHE.REPOCLEAR", args: &[(Repo, REPO), (Digest, D1)], keys: &[MEMBERS, "blobs::D1", SCOPED, "layercache::repos::D1"] },
        Spec { name: "LAYERCACHE.PURGE", args: &[(Digest, D1), (Digest, D2)], keys: &[MEMBERS, "blobs::D1", SCOPED, "layercache::repos::D1"] },
        Spec { name: "LAYERCACHE.DROPREPO", args: &[(Repo, REPO)], keys: &[MEMBERS, SCOPED, "layercache::repos::D1"] },
    ]
}

/// The keyspace every case starts from: `team/app` holds D1, which has meta, a
/// descriptor and a repository mediatype.
fn setup(c: &mut redis::Connection) {
    run(c, &["FLUSHALL"]).unwrap();
    run(c, &["LAYERCACHE.SETMETA", D1, "/p", "10"]).unwrap();
    run(c, &["LAYERCACHE.REPOSETDESCRIPTOR", REPO, D1, D1, "10", OCTET]).unwrap();
}

fn key_name(template: &str) -> String {
    template.replace("D1", D1).replace("D2", D2)
}

/// The keys a command touches: `spec.keys` in distribution's layout; in the blob
/// scheme, its digest arguments (DROPREPO touches none there: it is refused).
fn touched(spec: &Spec) -> Vec<String> {
    match scheme() {
        Scheme::Distribution => spec.keys.iter().map(|t| key_name(t)).collect(),
        Scheme::Blob => {
            let mut keys: Vec<String> = spec.args.iter().filter(|(kind, _)| *kind == Digest).map(|(_, d)| d.to_string()).collect();
            keys.dedup();
            keys
        }
    }
}

/// Bad values for an argument kind, each with the exact error it must get.
fn bad_values(kind: Kind) -> Vec<(Vec<u8>, String)> {
    let hex64 = "a".repeat(64);
    let mut nul_digest = format!("sha256:{}", "a".repeat(63)).into_bytes();
    nul_digest.push(0);
    let mut utf8_digest = format!("sha256:{}", "a".repeat(63)).into_bytes();
    utf8_digest.push(0xff);
    let owned = |cases: Vec<(&[u8], &str)>| cases.into_iter().map(|(v, e)| (v.to_vec(), e.to_string())).collect::<Vec<_>>();
    match kind {
        Digest => {
            let (format, length, unsupported) = (
                "DIGEST_INVALID invalid checksum digest format",
                "DIGEST_INVALID invalid checksum digest length",
                "DIGEST_INVALID unsupported digest algorithm",
            );
            let mut cases = owned(vec![
                (b"", format),
                (b"sha256", format),
                (b"sha256:", format),
                (b":abc", format),
                (b"sha256:abc", length),
                (b"sha384:abc", length),
                (b"md5:d41d8cd98f00b204e9800998ecf8427e", unsupported),
                (b"md5:not/valid", format),
            ]);
            cases.push((format!("SHA256:{hex64}").into_bytes(), format.into()));
            cases.push((format!("sha256:{}", hex64.to_uppercase()).into_bytes(), format.into()));
            cases.push((format!("sha256:{hex64}a").into_bytes(), length.into()));
            cases.push((format!("sha512:{}", "a".repeat(1020)).into_bytes(), format.into()));
            cases.push((format!("sha256:{}", "a".repeat(MIB8)).into_bytes(), format.into()));
            cases.push((nul_digest, format.into()));
            cases.push((utf8_digest, format.into()));
            cases
        }
        Repo => {
            let mut cases = owned(vec![
                (b"", "NAME_INVALID repository name must have at least one component"),
                (b"team/App", "NAME_INVALID repository name must be lowercase"),
                (b"team//app", "NAME_INVALID invalid reference format"),
                (b"team/app/", "NAME_INVALID invalid reference format"),
                (b"/team/app", "NAME_INVALID invalid reference format"),
                (b"team/a..b", "NAME_INVALID invalid reference format"),
                (b"team/app\0", "NAME_INVALID invalid reference format"),
                (b"team/\xffapp", "NAME_INVALID invalid reference format"),
                (b"team/app:latest", "NAME_INVALID invalid reference format"),
            ]);
            let too_long = "NAME_INVALID repository name must not be more than 255 characters";
            cases.push((format!("team/{}", "a".repeat(251)).into_bytes(), too_long.into()));
            cases.push(("a".repeat(MIB8).into_bytes(), too_long.into()));
            cases
        }
        Path => {
            let mut cases = owned(vec![(b"", "ERR invalid path: empty"), (b"/a\0b", "ERR invalid path: contains a NUL byte")]);
            cases.push(("/".repeat(4097).into_bytes(), "ERR invalid path: longer than 4096 bytes".into()));
            cases.push(("/".repeat(MIB8).into_bytes(), "ERR invalid path: longer than 4096 bytes".into()));
            cases
        }
        Length | Size => {
            let field = if kind == Length { "length" } else { "size" };
            let mut cases: Vec<(Vec<u8>, String)> = [
                (&b""[..], "empty"),
                (b"-3", "negative"),
                (b"-0", "negative"),
                (b"007", "not canonical (leading zero)"),
                (b"+1", "not a decimal integer"),
                (b"1e3", "not a decimal integer"),
                (b" 1", "not a decimal integer"),
                (b"1\0", "not a decimal integer"),
                (b"1\xff", "not a decimal integer"),
                (b"9223372036854775808", "out of range"),
            ]
            .into_iter()
            .map(|(v, reason)| (v.to_vec(), format!("SIZE_INVALID invalid {field}: {reason}")))
            .collect();
            cases.push(("9".repeat(MIB8).into_bytes(), format!("SIZE_INVALID invalid {field}: out of range")));
            cases
        }
        MediaType => {
            let not = "ERR invalid mediatype: not type/subtype (RFC 6838)";
            let mut cases = owned(vec![
                (b"", "ERR invalid mediatype: empty"),
                (b"application", not),
                (b"application/", not),
                (b"/json", not),
                (b"application/vnd\0", not),
                (b"application/\xff", not),
            ]);
            cases.push((format!("application/{}", "a".repeat(250)).into_bytes(), "ERR invalid mediatype: longer than 255 bytes".into()));
            cases
        }
    }
}

/// Runs `args`, which must fail with exactly `want`, changing nothing, and count as
/// rejected in `INFO layercache` (unless Redis answered the arity before the module
/// ran, or a key holds another type: not the input's fault).
fn expect_rejected(c: &mut redis::Connection, label: &str, args: &[Vec<u8>], want: &str) {
    let before = snapshot(c);
    let counter = format!("{}_rejected", String::from_utf8_lossy(&args[0]).to_ascii_lowercase().trim_start_matches("layercache."));
    let rejected = info_counter(c, &counter);
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let got = error(c, &refs);
    assert_eq!(got, want, "{label}");
    let counted = u64::from(!want.starts_with("ERR wrong number of arguments") && !want.starts_with("WRONGTYPE"));
    assert_eq!(info_counter(c, &counter), rejected.map(|n| n + counted), "{label}: {counter}");
    assert_eq!(run(c, &["PING"]).unwrap(), redis::Value::SimpleString("PONG".into()), "{label}: server answers");
    let after = snapshot(c);
    let changed: Vec<String> = before
        .iter()
        .chain(&after)
        .filter(|entry| !(before.contains(entry) && after.contains(entry)))
        .map(|(key, _)| String::from_utf8_lossy(key).into_owned())
        .collect();
    assert!(changed.is_empty(), "{label}: keyspace changed at {changed:?}");
}

#[test]
fn every_bad_argument_is_rejected_with_its_code_and_changes_nothing() {
    let s = Server::start();
    let mut c = s.client();
    setup(&mut c);
    let mut cases = 0;
    for spec in specs() {
        for (position, &(kind, _)) in spec.args.iter().enumerate() {
            for (bad, want) in bad_values(kind) {
                let mut args: Vec<Vec<u8>> = vec![spec.name.as_bytes().to_vec()];
                args.extend(spec.args.iter().map(|(_, v)| v.as_bytes().to_vec()));
                args[position + 1] = bad.clone();
                let shown: String = String::from_utf8_lossy(&bad).chars().take(40).collect();
                expect_rejected(&mut c, &format!("{} arg {} = {shown:?}", spec.name, position + 1), &args, &want);
                cases += 1;
            }
        }
    }
    assert!(cases > 300, "the table ran {cases} cases");
}

#[test]
fn wrong_arity_is_redis_own_error() {
    let s = Server::start();
    let mut c = s.client();
    setup(&mut c);
    for spec in specs() {
        let valid: Vec<Vec<u8>> =
            std::iter::once(spec.name.as_bytes().to_vec()).chain(spec.args.iter().map(|(_, v)| v.as_bytes().to_vec())).collect();
        let want = format!("ERR wrong number of arguments for '{}' command", spec.name.to_lowercase());
        // Too few arguments is always wrong (a variadic command without its digests);
        // one too many only for fixed arity.
        let variadic = matches!(spec.name, "LAYERCACHE.MCONTAINS" | "LAYERCACHE.PURGE");
        let digests = spec.args.iter().rev().take_while(|(kind, _)| *kind == Digest).count();
        let short = if variadic { valid.len() - digests } else { valid.len() - 1 };
        expect_rejected(&mut c, &format!("{} short", spec.name), &valid[..short], &want);
        if !variadic {
            // A Stat takes an optional WITHTTL: any other word there is a syntax error.
            let optional = matches!(spec.name, "LAYERCACHE.STAT" | "LAYERCACHE.REPOSTAT");
            let mut long = valid.clone();
            long.push(b"extra".to_vec());
            expect_rejected(&mut c, &format!("{} long", spec.name), &long, if optional { "ERR syntax error" } else { &want });
        }
        expect_rejected(&mut c, &format!("{} bare", spec.name), &valid[..1], &want);
    }
}

#[test]
fn wrongtype_on_each_touched_key_changes_nothing() {
    let s = Server::start();
    let mut c = s.client();
    for spec in specs() {
        for key in touched(&spec) {
            setup(&mut c);
            run(&mut c, &["DEL", &key]).unwrap();
            run(&mut c, &["SET", &key, "not a set or hash"]).unwrap();
            let args: Vec<Vec<u8>> =
                std::iter::once(spec.name.as_bytes().to_vec()).chain(spec.args.iter().map(|(_, v)| v.as_bytes().to_vec())).collect();
            expect_rejected(
                &mut c,
                &format!("{} with {key} a string", spec.name),
                &args,
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            );
        }
    }
}

/// The valid arguments of every spec really succeed, so the table above tests the
/// argument it changes and nothing else.
#[test]
fn the_valid_arguments_of_the_table_succeed() {
    let s = Server::start();
    let mut c = s.client();
    for spec in specs() {
        if spec.name == "LAYERCACHE.DROPREPO" && scheme() == Scheme::Blob {
            continue; // refused in that scheme: tests/descriptor.rs
        }
        setup(&mut c);
        let mut cmd = redis::cmd(spec.name);
        for (_, v) in spec.args {
            cmd.arg(*v);
        }
        cmd.query::<redis::Value>(&mut c).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
    }
}

/// Random arguments, valid and not, to every command: every reply is a value or an
/// error with a code, and the server never stops answering.
#[test]
fn random_arguments_never_crash_the_server() {
    let s = Server::start();
    let mut c = s.client();
    setup(&mut c);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let pool: Vec<Vec<u8>> = vec![
        D1.into(),
        D2.into(),
        REPO.into(),
        b"10".to_vec(),
        b"/p".to_vec(),
        OCTET.into(),
        format!("sha512:{}", "a".repeat(128)).into_bytes(),
        b"".to_vec(),
    ];
    let specs = specs();
    for round in 0..3000 {
        let spec = &specs[next(specs.len() as u64) as usize];
        let argc = next(7);
        let mut cmd = redis::cmd(spec.name);
        for _ in 0..argc {
            let arg: Vec<u8> = if next(2) == 0 {
                pool[next(pool.len() as u64) as usize].clone()
            } else {
                (0..next(80)).map(|_| next(256) as u8).collect()
            };
            cmd.arg(arg);
        }
        match cmd.query::<redis::Value>(&mut c) {
            Ok(_) => {}
            Err(e) => {
                let text = error_text(&e);
                let code = text.split(' ').next().unwrap_or_default();
                assert!(
                    !code.is_empty() && code.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'),
                    "round {round}: {} gave an error without a code: {text}",
                    spec.name
                );
            }
        }
    }
    assert_eq!(run(&mut c, &["PING"]).unwrap(), redis::Value::SimpleString("PONG".into()));
    assert!(!s.log().contains("panic"), "{}", s.log());
}
