#!/usr/bin/env python3
"""The registries of `make registry` on S3 (part of make test-registry): moto's S3 server
behind the counting proxy (scripts/regkit/s3.py), AWS_CA_BUNDLE set in the registries'
environment (distribution 2.8's driver panicked at start with it; our build honours it).
For each line, two registries on one bucket with layercache and the local tier:

- two images pushed through one and pulled back through the other;
- a repeated blob HEAD through the other sends S3 nothing, and a blob GET with redirect
  on answers a redirect to the S3 server;
- a blob deleted through one is a 404 through the other at once;
- a manifest deleted, garbage collection on the bucket with the README's recipe: no key
  of a collected digest is left, they are 404s through both, and the shared layer and
  the other image are still served.

Then the rule for registries with separate stores: each needs a cache keyspace of its
own (a Redis database or server). Two v3 registries with separate buckets on one Redis
database push the same image: the second skips storing the manifest the first's
global descriptor says is stored, and answers 404 to its own manifest; on databases of
their own both serve it. Standard library only."""

import os
import random
import shutil
import tempfile

from regkit import (S3, Redis, Registry, build_patched_registry, check, layer_tar, oci_layout, pull, push_and_pull,
                    gc_recipe, say, skopeo)

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
ENV = {"AWS_CA_BUNDLE": CA_BUNDLE}


def section(line, redis, db=0):
    return ({"addrs": [f"127.0.0.1:{redis.port}"]} if line == "3" else {"addr": f"127.0.0.1:{redis.port}"}) | {"db": db}


def requests(before, after):
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def line_run(work, line, s3, redis):
    binary = build_patched_registry(line)
    bucket = s3.bucket(f"line-{line.replace('.', '')}")
    start = lambda name, redirect: Registry(work, section(line, redis), binary=binary, cache="layercache", name=name,
                                            params={"localentries": 10000}, storage=s3.storage(bucket), env=ENV,
                                            redirect=redirect)
    a, b = start(f"{line}-a", True), start(f"{line}-b", False)
    try:
        images = push_and_pull(os.path.join(work, line), a, random.Random(29))
        for repo, (blobs, manifest) in images.items():
            got = pull(b, repo, os.path.join(work, line, "through-b", repo.replace("/", "-")))
            check(got == manifest, f"{line}: {repo} pushed through one registry, pulled through the other")
        repo, (blobs, _) = sorted(images.items())[0]
        for d in blobs:
            b.head_blob(repo, d)
        before = s3.counts()
        for d in blobs:
            check(b.head_blob(repo, d) == (200, blobs[d][0]), f"{line}: HEAD {d[:19]}… from the cache")
        check(not requests(before, s3.counts()), f"{line}: {len(blobs)} repeated blob HEADs sent S3 nothing "
                                                 f"({requests(before, s3.counts())})")
        d = sorted(blobs)[0]
        status, headers = a.request("GET", f"/v2/{repo}/blobs/{d}")
        check(status == 307 and headers["Location"].startswith(s3.proxy.url),
              f"{line}: a blob GET with redirect on answers 307 to S3 ({status})")
        # A blob deleted through one registry is a 404 through the other at once.
        gone_repo, (gone_blobs, gone_manifest) = "team-b/app", images["team-b/app"]
        kept_blobs = images["team-a/app"][0]
        layer = next(x for x in sorted(gone_blobs) if gone_blobs[x][1].endswith("tar+gzip") and x not in kept_blobs)
        b.head_blob(gone_repo, layer)
        check(a.status("DELETE", f"/v2/{gone_repo}/blobs/{layer}") == 202, f"{line}: DELETE {layer[:19]}… through one")
        check(b.head_blob(gone_repo, layer)[0] == 404, f"{line}: the deleted blob is a 404 through the other at once")
        # The manifest deleted too, garbage collection on the bucket with the README's
        # recipe: the collected blobs purged.
        status = a.status("DELETE", f"/v2/{gone_repo}/manifests/{gone_manifest}")
        check(status == 202, f"{line}: manifest of {gone_repo} deleted ({status})")
        gc_dir = os.path.join(work, line, "gc")
        os.makedirs(gc_dir)
        _, deleted = gc_recipe(redis, gc_dir, f"env AWS_CA_BUNDLE={CA_BUNDLE} {binary} garbage-collect {a.config}")
        only_b = sorted(set(gone_blobs) - set(kept_blobs))
        check(set(only_b) <= deleted, f"{line}: garbage collection on S3 deleted the blobs only {gone_repo} held ({len(deleted)})")
        check(not [k for k in redis.keys() if any(d in k for d in deleted)], f"{line}: no key of a collected digest is left")
        for reg in (a, b):
            for d in only_b:
                check(reg.head_blob(gone_repo, d)[0] == 404, f"{line}: collected {d[:19]}… is a 404 ({reg.name})")
        shared = sorted(set(gone_blobs) & set(kept_blobs))
        for d in shared:
            check(b.head_blob("team-a/app", d)[0] == 200, f"{line}: the shared layer {d[:19]}… is still served")
        got = pull(b, "team-a/app", os.path.join(work, line, "after-gc"))
        check(got == images["team-a/app"][1], f"{line}: team-a/app still pulls after the collection")
    finally:
        a.stop()
        b.stop()


def separate_stores(work, s3, redis):
    """Two v3 registries with separate buckets push the same image: on one Redis
    database, then on one each; what each pulls back."""
    binary = build_patched_registry("3")
    tar = layer_tar("layer", random.Random(31))
    pulled = {}
    for shared in (True, False):
        name = "shared" if shared else "apart"
        regs = [Registry(work, section("3", redis, db=0 if shared else 1 + i), binary=binary, cache="layercache",
                         name=f"{name}-{i}", storage=s3.storage(s3.bucket(f"{name}-{i}")), env=ENV) for i in range(2)]
        try:
            redis.cli("FLUSHALL")
            for i, reg in enumerate(regs):
                layout = os.path.join(work, name, f"layout-{i}")
                _, manifest = oci_layout(layout, [tar], random.Random(31))
                skopeo("copy", f"oci:{layout}:v1", f"docker://127.0.0.1:{reg.port}/team/app:v1", "--dest-tls-verify=false")
                pulled[(name, i)] = pull(reg, "team/app", os.path.join(work, name, f"pull-{i}")) == manifest
        finally:
            for r in regs:
                r.stop()
    return pulled


def main():
    work = tempfile.mkdtemp(prefix="layercache-registry-s3-")
    print(work)
    s3, redis = S3(work), Redis(work, [])
    try:
        say(f"moto answers a request in {s3.server_ms(s3.bucket('timing')):.1f} ms (median, no proxy)")
        for line in ("3", "2.8"):
            redis.cli("FLUSHALL")
            line_run(work, line, s3, redis)
        pulled = separate_stores(work, s3, redis)
        check(pulled[("shared", 0)] and not pulled[("shared", 1)],
              "separate stores on one Redis database: the second registry cannot serve its own image (the rule's reason)")
        check(pulled[("apart", 0)] and pulled[("apart", 1)], "separate stores on Redis databases of their own: both serve it")
    finally:
        s3.stop()
        redis.stop()
        os.environ.get("KEEP") or shutil.rmtree(work, ignore_errors=True)
    say("all checks passed")


if __name__ == "__main__":
    main()
