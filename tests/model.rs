//! The randomized model test: a long random stream of commands, the metadata cache's
//! among them (about 5% with one bad argument), each reply checked against a reference
//! model written here from DESIGN.md and the README, and the whole keyspace compared
//! with the model's every few thousand commands. The model shares no code with the
//! module.
//!
//! `LAYERCACHE_MODEL_SEED=<n>` replays a run (the seed is printed first);
//! `LAYERCACHE_MODEL_COMMANDS=<n>` sets its length (default 100,000). It runs in the
//! scheme of `$LAYERCACHE_SCHEME`, as the other suites do.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use redis::{Connection, Value};

#[derive(Debug, Clone, PartialEq)]
enum Key {
    Set(BTreeSet<String>),
    Hash(BTreeMap<String, String>),
}

/// The keyspace as DESIGN.md sections 1 and 5 say the module leaves it.
struct Model {
    scheme: Scheme,
    keys: BTreeMap<String, Key>,
}

/// A bad argument of each kind, and the error that starts its reply (DESIGN.md §3).
const BAD_REPO: (&str, &str) = ("Team/App", "NAME_INVALID");
const BAD_DIGEST: (&str, &str) = ("sha256:abc", "DIGEST_INVALID");
const BAD_PATH: (&str, &str) = ("", "ERR invalid path");
const BAD_SIZE: (&str, &str) = ("007", "SIZE_INVALID");
const BAD_MEDIATYPE: (&str, &str) = ("nomediatype", "ERR invalid mediatype");
const BAD_LINK: (&str, &str) = ("_uploads/x/link", "ERR invalid path");

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Repo,
    Digest,
    Path,
    Size,
    MediaType,
    Link,
}

impl Kind {
    fn bad(self) -> (&'static str, &'static str) {
        match self {
            Kind::Repo => BAD_REPO,
            Kind::Digest => BAD_DIGEST,
            Kind::Path => BAD_PATH,
            Kind::Size => BAD_SIZE,
            Kind::MediaType => BAD_MEDIATYPE,
            Kind::Link => BAD_LINK,
        }
    }
}

/// What the model expects of one command.
#[derive(Debug, PartialEq)]
enum Expect {
    Reply(Value),
    /// An error reply starting with this.
    Error(String),
}

fn int(n: i64) -> Expect {
    Expect::Reply(Value::Int(n))
}

impl Model {
    // --- plain-command primitives on the model keyspace ---

    fn hash(&self, key: &str) -> Option<&BTreeMap<String, String>> {
        match self.keys.get(key) {
            Some(Key::Hash(h)) => Some(h),
            _ => None,
        }
    }

    fn hget(&self, key: &str, field: &str) -> Option<String> {
        self.hash(key).and_then(|h| h.get(field).cloned())
    }

    fn hset(&mut self, key: &str, field: &str, value: &str) {
        let entry = self.keys.entry(key.to_string()).or_insert_with(|| Key::Hash(BTreeMap::new()));
        if let Key::Hash(h) = entry {
            h.insert(field.to_string(), value.to_string());
        }
    }

    fn hsetnx(&mut self, key: &str, field: &str, value: &str) -> bool {
        let new = self.hget(key, field).is_none();
        if new {
            self.hset(key, field, value);
        }
        new
    }

    fn hdel(&mut self, key: &str, fields: &[&str]) -> usize {
        let removed = match self.keys.get_mut(key) {
            Some(Key::Hash(h)) => fields.iter().filter(|f| h.remove(**f).is_some()).count(),
            _ => 0,
        };
        self.drop_if_empty(key);
        removed
    }

    fn sismember(&self, key: &str, member: &str) -> bool {
        matches!(self.keys.get(key), Some(Key::Set(s)) if s.contains(member))
    }

    fn sadd(&mut self, key: &str, member: &str) -> bool {
        match self.keys.entry(key.to_string()).or_insert_with(|| Key::Set(BTreeSet::new())) {
            Key::Set(s) => s.insert(member.to_string()),
            Key::Hash(_) => false,
        }
    }

    fn srem(&mut self, key: &str, member: &str) {
        if let Some(Key::Set(s)) = self.keys.get_mut(key) {
            s.remove(member);
        }
        self.drop_if_empty(key);
    }

    fn del(&mut self, key: &str) -> bool {
        self.keys.remove(key).is_some()
    }

    fn drop_if_empty(&mut self, key: &str) {
        let empty = match self.keys.get(key) {
            Some(Key::Set(s)) => s.is_empty(),
            Some(Key::Hash(h)) => h.is_empty(),
            None => false,
        };
        if empty {
            self.keys.remove(key);
        }
    }

    // --- where the facts live (DESIGN.md sections 1 and 5) ---

    fn blob(&self, digest: &str) -> String {
        match self.scheme {
            Scheme::Distribution => format!("blobs::{digest}"),
            Scheme::Blob => digest.to_string(),
        }
    }

    fn members(repo: &str) -> String {
        format!("repository::{repo}::blobs")
    }

    fn scoped(repo: &str, digest: &str) -> String {
        format!("repository::{repo}::blobs::{digest}")
    }

    fn index(digest: &str) -> String {
        format!("layercache::repos::{digest}")
    }

    fn links(&self, repo: &str) -> String {
        match self.scheme {
            Scheme::Distribution => format!("repository::{repo}::links"),
            Scheme::Blob => repo.to_string(),
        }
    }

    fn gen(&self, repo: &str) -> i64 {
        self.hget(&self.links(repo), "gen").map_or(0, |g| g.parse().unwrap())
    }

    /// A drop of the links under `prefixes` (no hold in the model: no write is ever in
    /// flight): the generation bumped, `hold` and `writes` kept (0 when new).
    fn drop_links(&mut self, repo: &str, prefixes: &[&str]) -> i64 {
        let key = self.links(repo);
        let gen = (self.gen(repo) + 1).to_string();
        let hold = self.hget(&key, "hold").unwrap_or_else(|| "0".into());
        self.hset(&key, "gen", &gen);
        self.hset(&key, "hold", &hold);
        self.hset(&key, "writes", "0");
        let under = |field: &str, p: &str| field.starts_with('_') && (p.is_empty() || field == p || field.starts_with(&format!("{p}/")));
        let doomed: Vec<String> = self.hash(&key).unwrap().keys().filter(|f| prefixes.iter().any(|p| under(f, p))).cloned().collect();
        self.hdel(&key, &doomed.iter().map(String::as_str).collect::<Vec<_>>()) as i64
    }

    fn holds(&self, repo: &str, digest: &str) -> bool {
        match self.scheme {
            Scheme::Distribution => self.sismember(&Self::members(repo), digest),
            Scheme::Blob => self.hget(digest, &format!("repo:{repo}")).is_some(),
        }
    }

    fn add(&mut self, repo: &str, digest: &str) -> bool {
        match self.scheme {
            Scheme::Distribution => {
                let new = self.sadd(&Self::members(repo), digest);
                self.hset(&Self::index(digest), repo, "");
                new
            }
            Scheme::Blob => self.hsetnx(digest, &format!("repo:{repo}"), ""),
        }
    }

    fn record(&mut self, repo: &str, digest: &str, mediatype: &str) {
        match self.scheme {
            Scheme::Distribution => {
                self.add(repo, digest);
                self.hset(&Self::scoped(repo, digest), "mediatype", mediatype);
            }
            Scheme::Blob => self.hset(digest, &format!("repo:{repo}"), mediatype),
        }
    }

    fn remove(&mut self, repo: &str, digest: &str) {
        match self.scheme {
            Scheme::Distribution => {
                self.srem(&Self::members(repo), digest);
                self.del(&Self::scoped(repo, digest));
                self.hdel(&Self::index(digest), &[repo]);
            }
            Scheme::Blob => {
                self.hdel(digest, &[&format!("repo:{repo}")]);
            }
        }
    }

    /// The repository's mediatype: distribution keeps an empty one (the global one
    /// then shows); in blob `""` means none.
    fn repo_mediatype(&self, repo: &str, digest: &str) -> Option<String> {
        match self.scheme {
            Scheme::Distribution => self.hget(&Self::scoped(repo, digest), "mediatype"),
            Scheme::Blob => self.hget(digest, &format!("repo:{repo}")).filter(|m| !m.is_empty()),
        }
    }

    fn meta(&self, digest: &str) -> Expect {
        let blob = self.blob(digest);
        match (self.hget(&blob, "path"), self.hget(&blob, "length")) {
            (Some(path), Some(length)) => Expect::Reply(Value::Array(vec![bulk(&path), Value::Int(length.parse().unwrap())])),
            _ => Expect::Reply(Value::Nil),
        }
    }

    fn descriptor(&self, digest: &str, mediatype: Option<String>) -> Option<Value> {
        let blob = self.blob(digest);
        let (stored, size) = (self.hget(&blob, "digest")?, self.hget(&blob, "size")?);
        let mediatype = mediatype.filter(|m| !m.is_empty()).or_else(|| self.hget(&blob, "mediatype")).unwrap_or_default();
        Some(Value::Array(vec![bulk(&stored), Value::Int(size.parse().unwrap()), bulk(&mediatype)]))
    }

    fn set_descriptor(&mut self, digest: &str, canonical: &str, size: &str, mediatype: &str) {
        let blob = self.blob(digest);
        self.hset(&blob, "digest", canonical);
        self.hset(&blob, "size", size);
        self.hsetnx(&blob, "mediatype", mediatype);
    }

    /// Runs one valid command on the model.
    fn apply(&mut self, args: &[String]) -> Expect {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["LAYERCACHE.ADD", repo, digest] => int(self.add(repo, digest) as i64),
            ["LAYERCACHE.CONTAINS", repo, digest] => int(self.holds(repo, digest) as i64),
            ["LAYERCACHE.MCONTAINS", repo, digests @ ..] => {
                Expect::Reply(Value::Array(digests.iter().map(|d| Value::Int(self.holds(repo, d) as i64)).collect()))
            }
            ["LAYERCACHE.SETMETA", digest, path, length] => {
                let blob = self.blob(digest);
                self.hset(&blob, "path", path);
                self.hset(&blob, "length", length);
                Expect::Reply(Value::Okay)
            }
            ["LAYERCACHE.META", digest] => self.meta(digest),
            ["LAYERCACHE.LOOKUP", repo, digest] if !self.holds(repo, digest) => Expect::Reply(Value::Nil),
            ["LAYERCACHE.LOOKUP", _, digest] => self.meta(digest),
            ["LAYERCACHE.STAT", digest] => Expect::Reply(self.descriptor(digest, None).unwrap_or(Value::Nil)),
            ["LAYERCACHE.SETDESCRIPTOR", digest, canonical, size, mediatype] => {
                self.set_descriptor(digest, canonical, size, mediatype);
                Expect::Reply(Value::Okay)
            }
            ["LAYERCACHE.CLEAR", digest] => {
                let blob = self.blob(digest);
                int((self.hdel(&blob, &["digest", "size", "mediatype"]) > 0) as i64)
            }
            ["LAYERCACHE.REPOSTAT", repo, digest, options @ ..] => {
                let found = match (self.holds(repo, digest), self.repo_mediatype(repo, digest)) {
                    (true, Some(mediatype)) => self.descriptor(digest, Some(mediatype)),
                    _ => None,
                };
                // WITHGLOBAL: the global descriptor's own mediatype last, as STAT says it.
                let found = match (found, options) {
                    (Some(Value::Array(mut reply)), ["WITHGLOBAL"]) => {
                        let Some(Value::Array(global)) = self.descriptor(digest, None) else { unreachable!("REPOSTAT hit, STAT miss") };
                        reply.push(global[2].clone());
                        Some(Value::Array(reply))
                    }
                    (found, _) => found,
                };
                Expect::Reply(found.unwrap_or(Value::Nil))
            }
            ["LAYERCACHE.REPOSETDESCRIPTOR", repo, digest, canonical, size, mediatype] => {
                let algorithm = |d: &str| d.split(':').next().unwrap_or_default().to_string();
                if canonical != digest && algorithm(canonical) == algorithm(digest) {
                    return Expect::Error("DIGEST_INVALID digests differ but algorithm does not".into());
                }
                let mut under = vec![*digest];
                if canonical != digest {
                    under.push(canonical);
                }
                for d in under {
                    self.record(repo, d, mediatype);
                    self.set_descriptor(d, canonical, size, mediatype);
                }
                Expect::Reply(Value::Okay)
            }
            ["LAYERCACHE.REPOCLEAR", repo, digest] => {
                if !self.holds(repo, digest) {
                    return int(0);
                }
                self.remove(repo, digest);
                let blob = self.blob(digest);
                self.hdel(&blob, &["digest", "size", "mediatype"]);
                int(1)
            }
            ["LAYERCACHE.PURGE", digests @ ..] => {
                let unique: BTreeSet<&str> = digests.iter().copied().collect();
                let mut purged = 0;
                for digest in unique {
                    let blob = self.blob(digest);
                    let had = match self.scheme {
                        Scheme::Blob => self.del(&blob),
                        Scheme::Distribution => {
                            let index = Self::index(digest);
                            let repos: Vec<String> = self.hash(&index).map(|h| h.keys().cloned().collect()).unwrap_or_default();
                            for repo in &repos {
                                self.srem(&Self::members(repo), digest);
                                self.del(&Self::scoped(repo, digest));
                            }
                            self.del(&blob) | self.del(&index)
                        }
                    };
                    purged += had as i64;
                }
                int(purged)
            }
            ["LAYERCACHE.DROPREPO", _] if self.scheme == Scheme::Blob => Expect::Error("ERR DROPREPO needs scheme distribution".into()),
            ["LAYERCACHE.LINK", repo, path] => {
                let value = self.hget(&self.links(repo), path).map_or(Value::Nil, |v| bulk(&v));
                Expect::Reply(Value::Array(vec![Value::Int(self.gen(repo)), value]))
            }
            ["LAYERCACHE.LINKSET", repo, gen, path, value] => {
                let stored = gen.parse::<i64>().unwrap() == self.gen(repo);
                if stored {
                    let key = self.links(repo);
                    self.hset(&key, path, value);
                }
                int(stored as i64)
            }
            ["LAYERCACHE.LINKDROP", repo, _hold, paths @ ..] => int(self.drop_links(repo, paths)),
            ["LAYERCACHE.LINKDONE", repo, path] => {
                self.drop_links(repo, &[path]);
                int(0)
            }
            ["LAYERCACHE.LINKDONE", repo, path, value] => {
                self.drop_links(repo, &[path]);
                let key = self.links(repo);
                self.hset(&key, path, value);
                int(1)
            }
            ["LAYERCACHE.DATA", digest] => Expect::Reply(self.hget(&self.blob(digest), "data").map_or(Value::Nil, |d| bulk(&d))),
            ["LAYERCACHE.SETDATA", digest, bytes] if *digest != D1 || *bytes != "test" => {
                Expect::Error("DIGEST_INVALID content does not match digest".into())
            }
            ["LAYERCACHE.SETDATA", digest, bytes] => {
                let blob = self.blob(digest);
                self.hset(&blob, "data", bytes);
                Expect::Reply(Value::Okay)
            }
            ["LAYERCACHE.DROPREPO", repo] => {
                let links = self.links(repo);
                if self.keys.contains_key(&links) {
                    self.drop_links(repo, &[""]);
                }
                let members = Self::members(repo);
                let digests: Vec<String> = match self.keys.get(&members) {
                    Some(Key::Set(s)) => s.iter().cloned().collect(),
                    _ => vec![],
                };
                for digest in &digests {
                    self.del(&Self::scoped(repo, digest));
                    self.hdel(&Self::index(digest), &[repo]);
                }
                self.del(&members);
                int(digests.len() as i64)
            }
            other => panic!("the model does not know {other:?}"),
        }
    }
}

/// The universe the stream draws from: few enough names that commands meet.
struct Universe {
    repos: Vec<String>,
    digests: Vec<String>,
    mediatypes: Vec<&'static str>,
    paths: Vec<&'static str>,
    links: Vec<&'static str>,
}

impl Universe {
    fn new() -> Self {
        let mut digests: Vec<String> = (1..=6).map(digest).collect();
        digests.push(D1.to_string()); // sha256("test"), whose bytes SETDATA keeps
        digests.extend((1..=2).map(|n| format!("sha384:{n:096x}")));
        digests.push(format!("sha512:{:0128x}", 1));
        Universe {
            repos: ["team-a/app", "team-a/web", "team-b/app", "registry.local:5000/lib/base"].map(String::from).to_vec(),
            digests,
            mediatypes: vec!["application/octet-stream", "application/json", "application/vnd.oci.image.layer.v1.tar+gzip"],
            paths: vec!["/docker/registry/v2/blobs/a/data", "/p"],
            links: vec!["_manifests/tags/latest/current/link", "_manifests/tags/v1/current/link", "_layers/sha256/a/link"],
        }
    }

    /// A random command with its argument kinds.
    fn command(&self, rng: &mut Rng, scheme: Scheme) -> (Vec<String>, Vec<Kind>) {
        use Kind::*;
        let repo = rng.pick(&self.repos).clone();
        let d = rng.pick(&self.digests).clone();
        let d2 = rng.pick(&self.digests).clone();
        let size = (rng.below(3) * 1000).to_string();
        let mediatype = rng.pick(&self.mediatypes).to_string();
        let path = rng.pick(&self.paths).to_string();
        let several = |rng: &mut Rng| -> Vec<String> { (0..1 + rng.below(4)).map(|_| rng.pick(&self.digests).clone()).collect() };
        let (name, args, kinds): (&str, Vec<String>, Vec<Kind>) = match rng.below(100) {
            0..=14 => ("ADD", vec![repo, d], vec![Repo, Digest]),
            15..=24 => ("CONTAINS", vec![repo, d], vec![Repo, Digest]),
            25..=29 => {
                let ds = several(rng);
                let kinds = std::iter::once(Repo).chain(ds.iter().map(|_| Digest)).collect();
                ("MCONTAINS", std::iter::once(repo).chain(ds).collect(), kinds)
            }
            30..=36 => ("SETMETA", vec![d, path, size], vec![Digest, Path, Size]),
            37..=41 => ("META", vec![d], vec![Digest]),
            42..=48 => ("LOOKUP", vec![repo, d], vec![Repo, Digest]),
            49..=55 => ("STAT", vec![d], vec![Digest]),
            56..=62 => ("SETDESCRIPTOR", vec![d, d2, size, mediatype], vec![Digest, Digest, Size, MediaType]),
            63..=66 => ("CLEAR", vec![d], vec![Digest]),
            67..=71 => ("REPOSTAT", vec![repo, d], vec![Repo, Digest]),
            72..=76 => ("REPOSTAT", vec![repo, d, "WITHGLOBAL".into()], vec![Repo, Digest]),
            77..=89 => {
                // Mostly the blob's own digest; sometimes another (an alias or a mismatch).
                let canonical = if rng.chance(70) { d.clone() } else { d2 };
                ("REPOSETDESCRIPTOR", vec![repo, d, canonical, size, mediatype], vec![Repo, Digest, Digest, Size, MediaType])
            }
            90..=94 if rng.chance(50) => ("REPOCLEAR", vec![repo, d], vec![Repo, Digest]),
            90..=94 => self.metadata(rng, repo, d),
            95..=97 => {
                let ds = several(rng);
                let kinds = ds.iter().map(|_| Digest).collect();
                ("PURGE", ds, kinds)
            }
            _ if scheme == Scheme::Distribution || rng.chance(20) => ("DROPREPO", vec![repo], vec![Repo]),
            _ => ("ADD", vec![repo, d], vec![Repo, Digest]),
        };
        let mut command = vec![format!("LAYERCACHE.{name}")];
        command.extend(args);
        (command, kinds)
    }

    /// A metadata cache command: LINK, LINKSET (of the current generation or an older
    /// one), LINKDROP (of a link, a tag's directory or everything; no hold), LINKDONE,
    /// DATA, SETDATA.
    fn metadata(&self, rng: &mut Rng, repo: String, d: String) -> (&'static str, Vec<String>, Vec<Kind>) {
        use Kind::*;
        let link = rng.pick(&self.links).to_string();
        let value = if rng.chance(30) { String::new() } else { d.clone() };
        match rng.below(6) {
            0 => ("LINK", vec![repo, link], vec![Repo, Link]),
            1 => ("LINKSET", vec![repo, rng.below(4).to_string(), link, value], vec![Repo, Size, Link, Digest]),
            2 => {
                let prefix = rng.pick(&[link.as_str(), "_manifests/tags/latest", "_manifests", ""]).to_string();
                ("LINKDROP", vec![repo, "0".into(), prefix], vec![Repo, Size, Link])
            }
            3 if rng.chance(50) => ("LINKDONE", vec![repo, link], vec![Repo, Link]),
            3 => ("LINKDONE", vec![repo, link, value], vec![Repo, Link, Digest]),
            4 => ("DATA", vec![d], vec![Digest]),
            _ => ("SETDATA", vec![d, "test".into()], vec![Digest, Digest]), // bad bytes: not the digest's
        }
    }
}

/// The server's keyspace in the model's terms.
fn keyspace(c: &mut Connection) -> BTreeMap<String, Key> {
    let names: Vec<String> = redis::cmd("KEYS").arg("*").query(c).unwrap();
    names
        .into_iter()
        .map(|name| {
            let kind: String = redis::cmd("TYPE").arg(&name).query(c).unwrap();
            let key = match kind.as_str() {
                "set" => Key::Set(redis::cmd("SMEMBERS").arg(&name).query(c).unwrap()),
                "hash" => Key::Hash(redis::cmd("HGETALL").arg(&name).query(c).unwrap()),
                other => panic!("{name} is a {other}"),
            };
            (name, key)
        })
        .collect()
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

#[test]
fn random_commands_match_the_model() {
    let seed = env_number("LAYERCACHE_MODEL_SEED")
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    let count = env_number("LAYERCACHE_MODEL_COMMANDS").unwrap_or(100_000);
    let scheme = scheme();
    println!("model test: scheme {} seed {seed} ({count} commands); replay with LAYERCACHE_MODEL_SEED={seed}", scheme.name());
    eprintln!("model test: scheme {} seed {seed}", scheme.name());

    let s = Server::start();
    let mut c = s.client();
    let mut rng = Rng::new(seed);
    let universe = Universe::new();
    let mut model = Model { scheme, keys: BTreeMap::new() };
    let (mut invalid, mut errors, mut compared) = (0, 0, 0);
    for n in 1..=count {
        let (mut args, kinds) = universe.command(&mut rng, scheme);
        let expect = if rng.chance(5) {
            // One bad argument: the reply is its error, and nothing changes.
            invalid += 1;
            let at = rng.index(kinds.len());
            let (bad, error) = kinds[at].bad();
            args[at + 1] = bad.to_string();
            Expect::Error(error.to_string())
        } else {
            model.apply(&args)
        };
        let got = redis::cmd(&args[0]).arg(&args[1..]).query::<Value>(&mut c);
        let ok = match (&expect, &got) {
            (Expect::Reply(want), Ok(v)) => want == v,
            (Expect::Error(prefix), Err(e)) => {
                errors += 1;
                error_text(e).starts_with(prefix.as_str())
            }
            _ => false,
        };
        assert!(ok, "command {n} of seed {seed}: {args:?}\n  expected {expect:?}\n  got {got:?}");
        if n % 2_000 == 0 || n == count {
            compared += 1;
            assert_eq!(keyspace(&mut c), model.keys, "keyspace after command {n} of seed {seed}");
        }
    }
    println!("model test: {count} commands ({invalid} with a bad argument, {errors} error replies), keyspace compared {compared} times");
    assert!(invalid > count / 40, "the stream holds bad arguments");
}
