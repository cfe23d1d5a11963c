//! The per-command pure work: digest and repository-name validation and key naming.
//! `make bench` runs these (criterion); they link no Redis and no Redis allocator.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use layercache_core::{digest, keys, repo, value};

const SHA256: &[u8] = b"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const REPO: &[u8] = b"registry.example.com:5000/team-a/app";

fn validation(c: &mut Criterion) {
    c.bench_function("digest::parse sha256", |b| b.iter(|| digest::parse(black_box(SHA256))));
    let sha512 = format!("sha512:{}", "ab".repeat(64));
    c.bench_function("digest::parse sha512", |b| b.iter(|| digest::parse(black_box(sha512.as_bytes()))));
    c.bench_function("digest::parse rejected (length)", |b| b.iter(|| digest::parse(black_box(b"sha256:abc"))));
    c.bench_function("repo::parse library/ubuntu", |b| b.iter(|| repo::parse(black_box(b"library/ubuntu"))));
    c.bench_function("repo::parse with domain and port", |b| b.iter(|| repo::parse(black_box(REPO))));
    c.bench_function("value::parse_size", |b| b.iter(|| value::parse_size(black_box(b"1048576"), "size")));
    c.bench_function("value::check_mediatype", |b| {
        b.iter(|| value::check_mediatype(black_box(b"application/vnd.oci.image.layer.v1.tar+gzip")))
    });
}

fn naming(c: &mut Criterion) {
    let (d, r) = (digest::parse(SHA256).unwrap(), repo::Repo::parse(REPO).unwrap());
    c.bench_function("keys::membership_set", |b| b.iter(|| keys::membership_set(black_box(r)).as_bytes().len()));
    c.bench_function("keys::blob_hash", |b| b.iter(|| keys::blob_hash(black_box(d)).as_bytes().len()));
    c.bench_function("keys::repository_hash", |b| {
        b.iter(|| keys::repository_hash(black_box(r), black_box(d)).as_bytes().len())
    });
    c.bench_function("CONTAINS arguments: parse both, name the key", |b| {
        b.iter(|| {
            let (r, d) = (repo::Repo::parse(black_box(REPO)).unwrap(), digest::parse(black_box(SHA256)).unwrap());
            let _ = d;
            keys::membership_set(r).as_bytes().len()
        })
    });
}

criterion_group!(benches, validation, naming);
criterion_main!(benches);
