#!/usr/bin/env python3
"""The metadata cache through real registries (part of make test-registry): for each line
built by `make registry`, two registries with the metadata cache on (the storage
middleware `layercache`) and the local tier, on one S3 bucket (moto behind the counting
proxy), Redis shared. Every write goes through one registry and is read back through
the other at once, after the other has cached what it read before:

- tag push, re-tag, tag delete, manifest delete, blob delete, a pre-push HEAD then the
  push, a cross-repository mount, garbage collection (the registry's own
  garbage-collect purges what it deleted: no cache key of a collected digest is left);
- per repository: a manifest or blob another repository holds stays a 404 here;
- a repeated pull (the tag, the manifest, every blob; redirect on) sends S3 nothing,
  and a mount's target answers its first HEAD from the cache.

Each stale read found is a failure; the script prints the S3 requests of each read.
Standard library only."""

import gzip
import os
import random
import shutil
import tempfile

from regkit import (OCI_MANIFEST, S3, Redis, Registry, build_patched_registry, check, commands, digest_of, layer_tar,
                    oci_layout, say, skopeo)

ENV = {"AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}


def redis_commands(redis):
    """The LAYERCACHE commands Redis has run so far (the kit's count, PINGs left out)."""
    total, pings = commands(redis)
    return total - pings


def section(line, redis):
    return {"addrs": [f"127.0.0.1:{redis.port}"]} if line == "3" else {"addr": f"127.0.0.1:{redis.port}"}


class Pair:
    """Two registries on one bucket and one Redis: writes through a, reads through b."""

    def __init__(self, work, line, s3, redis):
        self.line, self.s3, self.work = line, s3, work
        binary = build_patched_registry(line)
        bucket = s3.bucket(f"meta-{line.replace('.', '')}")
        self.a, self.b = (Registry(work, section(line, redis), binary=binary, cache="layercache", name=f"{line}-{n}",
                                   params={"localentries": 10000}, storage=s3.storage(bucket), env=ENV, metadata=True)
                          for n in "ab")
        self.stale = 0

    def expect(self, what, got, want):
        """A read through b: a stale answer is counted and fails the run."""
        if got != want:
            self.stale += 1
        check(got == want, f"{self.line}: {what}: {got}" + ("" if got == want else f", want {want}"))

    def requests(self, read):
        """read(), and the S3 requests it made."""
        before = self.s3.counts()
        result = read()
        after = self.s3.counts()
        return result, {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}

    def manifest(self, registry, repo, ref, method="GET"):
        status, headers = registry.request(method, f"/v2/{repo}/manifests/{ref}")
        return status, headers["Docker-Content-Digest"] if status == 200 else None

    def put_manifest(self, repo, ref, body):
        status, headers = self.a.request("PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": OCI_MANIFEST})
        check(status == 201, f"{self.line}: PUT {repo}:{ref} through a ({status})")

    def push(self, repo, tag, rng, layers):
        layout = os.path.join(self.work, f"{repo.replace('/', '-')}-{tag}-{rng.random()}")
        blobs, manifest = oci_layout(layout, layers, rng)
        skopeo("copy", f"oci:{layout}:v1", f"docker://127.0.0.1:{self.a.port}/{repo}:{tag}", "--dest-tls-verify=false")
        body = open(os.path.join(layout, "blobs", "sha256", manifest[7:]), "rb").read()
        return blobs, manifest, body

    def blob(self, registry, repo, d):
        """A blob HEAD: "held" (200, or a redirect to S3), "absent" (404), else the status."""
        status = registry.status("HEAD", f"/v2/{repo}/blobs/{d}")
        return {200: "held", 307: "held", 404: "absent"}.get(status, status)

    def pull(self, registry, repo, tag, blobs):
        """A pull as clients make it, redirects not followed: the tag, the manifest by
        digest, every blob; the statuses."""
        status, digest = self.manifest(registry, repo, tag)
        statuses = [status, self.manifest(registry, repo, digest)[0] if digest else None]
        return statuses + [registry.status("GET", f"/v2/{repo}/blobs/{d}") for d in sorted(blobs)]


def line_run(work, line, s3, redis):
    p = Pair(work, line, s3, redis)
    try:
        checks(p, line, redis)
    finally:  # the registries this run started, also when a check failed
        for r in (p.a, p.b):
            r.stop()


def checks(p, line, redis):
    rng, repo = random.Random(30), "team-a/app"
    shared = layer_tar("shared", rng)
    blobs, m1, body1 = p.push(repo, "v1", rng, [shared, layer_tar("one", rng)])
    pulled = [200, 200] + [307] * len(blobs)

    # A repeated pull through b costs S3 nothing.
    p.pull(p.b, repo, "v1", blobs)
    got, requests = p.requests(lambda: p.pull(p.b, repo, "v1", blobs))
    p.expect("a pull through b", got, pulled)
    check(not requests, f"{line}: the repeated pull (tag, manifest, {len(blobs)} blobs; redirect on) sent S3 nothing {requests}")
    # With the tier, a repeated manifest GET by tag sends Redis nothing either.
    for _ in range(3):
        p.manifest(p.b, repo, "v1")
    before = redis_commands(redis)
    got, requests = p.requests(lambda: [p.manifest(p.b, repo, "v1") for _ in range(5)])
    sent = redis_commands(redis) - before
    check(got == [(200, m1)] * 5 and not requests and sent == 0,
          f"{line}: 5 repeated manifest GETs by tag through b: S3 {requests or 'nothing'}, {sent} Redis commands")

    # Tag push: b had cached v2 as absent.
    p.expect("v2 before it is pushed", p.manifest(p.b, repo, "v2")[0], 404)
    _, requests = p.requests(lambda: p.manifest(p.b, repo, "v2"))
    check(not requests, f"{line}: an absent tag read again costs S3 nothing {requests}")
    blobs2, m2, body2 = p.push(repo, "v2", rng, [shared, layer_tar("two", rng)])
    p.expect("tag push: v2 through b", p.manifest(p.b, repo, "v2"), (200, m2))

    # Re-tag: v1 moves to the second image.
    p.expect("v1 before the re-tag", p.manifest(p.b, repo, "v1"), (200, m1))
    p.put_manifest(repo, "v1", body2)
    p.expect("re-tag: v1 through b", p.manifest(p.b, repo, "v1"), (200, m2))

    # Tag delete (v3; 2.8 deletes a tag only with its manifest, below).
    if line == "3":
        p.expect("DELETE v2 through a", p.a.status("DELETE", f"/v2/{repo}/manifests/v2"), 202)
        p.expect("tag delete: v2 through b", p.manifest(p.b, repo, "v2")[0], 404)
        p.expect("tag delete: v1 still through b", p.manifest(p.b, repo, "v1"), (200, m2))

    # Per repository: team-b holds none of team-a's manifests or blobs, before and after
    # team-b pushes the same layer.
    other = "team-b/app"
    p.expect("team-a's manifest in team-b", p.manifest(p.b, other, m1)[0], 404)
    layer = next(d for d in sorted(blobs) if d not in blobs2)
    p.expect("team-a's layer in team-b", p.blob(p.b, other, layer), "absent")
    p.push(other, "v1", rng, [shared])
    p.expect("team-a's manifest in team-b after its push", p.manifest(p.b, other, m1)[0], 404)
    p.expect("team-a's layer in team-b after its push", p.blob(p.b, other, layer), "absent")

    # Manifest delete: the first image, by digest.
    p.expect("m1 by digest before", p.manifest(p.b, repo, m1), (200, m1))
    p.expect("DELETE m1 through a", p.a.status("DELETE", f"/v2/{repo}/manifests/{m1}"), 202)
    p.expect("manifest delete: m1 through b", p.manifest(p.b, repo, m1)[0], 404)

    # Blob delete.
    p.expect("the layer before", p.blob(p.b, repo, layer), "held")
    p.expect("DELETE the layer through a", p.a.status("DELETE", f"/v2/{repo}/blobs/{layer}"), 202)
    p.expect("blob delete: the layer through b", p.blob(p.b, repo, layer), "absent")

    # A pre-push HEAD through b, then the push through a.
    data = rng.randbytes(3000)
    fresh = digest_of(data)
    p.expect("pre-push HEAD", p.blob(p.b, repo, fresh), "absent")
    p.expect("the push through a", p.a.upload(repo, data), 201)
    p.expect("a blob pushed since: HEAD through b", p.blob(p.b, repo, fresh), "held")

    # Mount into team-c, whose HEAD through b had cached the blob absent.
    target = "team-c/app"
    p.expect("the mount target before", p.blob(p.b, target, fresh), "absent")
    status, _ = p.a.request("POST", f"/v2/{target}/blobs/uploads/?mount={fresh}&from={repo}")
    p.expect("mount through a", status, 201)
    got, requests = p.requests(lambda: p.blob(p.b, target, fresh))
    p.expect("mount: HEAD of the target through b", got, "held")
    check(not requests, f"{line}: the mount target's first HEAD through b cost S3 nothing {requests}")

    # Garbage collection: the registry's own garbage-collect purges what it deleted.
    p.expect("DELETE m2 through a", p.a.status("DELETE", f"/v2/{repo}/manifests/{m2}"), 202)
    p.expect("manifest delete: its tag v1 through b", p.manifest(p.b, repo, "v1")[0], 404)
    out = p.a.garbage_collect()
    purged = [l for l in out.splitlines() if l.startswith("layercache: purged")]
    check(purged, f"{line}: garbage-collect purged what it deleted: {purged}")
    gone = (set(blobs) | set(blobs2) | {m1, m2}) - {digest_of(gzip.compress(shared, mtime=0))}
    left = [k for k in redis.keys() if any(d in k for d in gone)]
    check(not left, f"{line}: no cache key of a collected digest is left ({left[:3]})")
    p.expect("GC: m2 through b", p.manifest(p.b, repo, m2)[0], 404)
    say(f"{line}: {p.stale} stale reads across the two registries")


def main():
    work = tempfile.mkdtemp(prefix="layercache-metadata-")
    s3 = S3(work)
    redis = Redis(work, [], name="module")  # the kit counts the module's commands on "module"
    try:
        for line in ["3", "2.8"]:
            redis.cli("FLUSHALL")
            os.makedirs(os.path.join(work, line))
            line_run(os.path.join(work, line), line, s3, redis)
    finally:
        redis.stop()
        s3.stop()
    shutil.rmtree(work, ignore_errors=True)
    say("the metadata cache: every write through one registry read back through the other at once")


if __name__ == "__main__":
    main()
