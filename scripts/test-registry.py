#!/usr/bin/env python3
"""A real registry on the module's Redis (make test-registry).

Debian's docker-registry (distribution 2.8.2) with its Redis blob-descriptor cache and
deletes enabled, and skopeo, against redis-server with layercache, on free loopback
ports. Two runs:

1. The module loaded from the start (with `ttl`): two images built here as OCI
   layouts, sharing a layer, pushed to two repositories and pulled back; the module
   reads what the registry wrote; the registry serves what the module writes; every key
   the registry wrote carries the TTL; one image's manifest deleted, garbage collected,
   and the README's recipe (taken from README.md) purges exactly the collected blobs,
   leaving no key of them, 404 on them, and the shared layer served.
2. The module loaded after the registry filled the cache: the README's INDEX loop, then
   the same garbage collection and recipe, with the same result.
3. and 4. A registry that speaks LAYERCACHE.*: distribution 2.8's and v3's registries
   as `make registry` builds them (v2.8.3 from the Go module proxy with
   clients/go/registry/dist2/distribution.patch; v3.1.1 with clients/go/registry/dist3's
   main), `blobdescriptor: layercache`; push and pull, its cache traffic in INFO
   layercache, HEADs served from the cache, and a blob DELETE a 404 at once.

Standard library only; exits non-zero on the first failed check.
"""

import os
import random
import shutil
import sys
import tempfile

from regkit import (MODULE, OCI_CONFIG, Redis, Registry, build_patched_registry, check, push_and_pull,
                    gc_recipe, run_readme, say)

TTL = 3600


def garbage_collect(work, redis, registry, images):
    """Deletes team-b's image, runs the README recipe (which collects); checks what is
    left."""
    status = registry.status("DELETE", f"/v2/team-b/app/manifests/{images['team-b/app'][1]}")
    check(status == 202, "team-b/app's manifest deleted through the registry API")
    # The README's recipe runs the collector; what it says it deleted is checked against.
    collector = f"docker-registry garbage-collect {registry.config}"
    out, deleted = gc_recipe(redis, work, collector)
    a_blobs, b_blobs = images["team-a/app"][0], images["team-b/app"][0]
    want = (set(b_blobs) - set(a_blobs)) | {images["team-b/app"][1]}
    check(deleted == want, f"the collector deleted team-b's own blobs and manifest ({len(deleted)})")
    purged = sum(int(n) for n in out.split())
    check(purged == len(deleted), f"the recipe purged {purged} digests, as many as were collected")
    left = [k for k in redis.keys() if any(d in k for d in deleted)]
    check(left == [], "no key of a purged digest remains (SCAN)")
    check(all(registry.head_blob("team-b/app", d)[0] == 404 for d in deleted if d in b_blobs),
          "HEAD on every collected blob: 404")
    shared = (set(a_blobs) & set(b_blobs)).pop()
    check(registry.head_blob("team-a/app", shared) == (200, a_blobs[shared][0]), "the shared layer is still served to team-a")
    check(redis.cli("LAYERCACHE.CONTAINS", "team-a/app", shared) == ["1"], "team-a still holds the shared layer in the cache")
    # An empty collection runs the recipe to nothing.
    out, _ = gc_recipe(redis, work, collector)
    check(out.strip() == "", "the recipe does nothing when nothing was collected")


def module_reads_the_registry(redis, images):
    for repo, (blobs, _) in images.items():
        for digest, (size, mediatype) in blobs.items():
            stat = redis.cli("LAYERCACHE.STAT", digest)
            check(stat[:2] == [digest, str(size)], f"{repo}: STAT {digest[:19]}… = its real size {size}")
            check(redis.cli("LAYERCACHE.REPOSTAT", repo, digest)[:2] == [digest, str(size)], f"{repo}: REPOSTAT {digest[:19]}…")
            check(redis.cli("LAYERCACHE.CONTAINS", repo, digest) == ["1"], f"{repo}: CONTAINS {digest[:19]}…")
        check(redis.cli("LAYERCACHE.MCONTAINS", repo, *blobs) == ["1"] * len(blobs), f"{repo}: MCONTAINS of its {len(blobs)} blobs")


def registry_reads_the_module(redis, registry, images):
    blobs = images["team-a/app"][0]
    digest = next(d for d, (_, m) in blobs.items() if m == OCI_CONFIG)
    size, mediatype = blobs[digest]
    redis.cli("LAYERCACHE.REPOSETDESCRIPTOR", "team-a/app", digest, digest, str(size + 12345), mediatype)
    check(registry.head_blob("team-a/app", digest) == (200, size + 12345), "a HEAD's Content-Length is what REPOSETDESCRIPTOR wrote")
    redis.cli("LAYERCACHE.REPOSETDESCRIPTOR", "team-a/app", digest, digest, str(size), mediatype)
    check(registry.head_blob("team-a/app", digest) == (200, size), "and back to the real size")


def first_run(work):
    say(f"run 1: the module loaded from the start, ttl {TTL}")
    redis = Redis(work, ["ttl", str(TTL)])
    registry = Registry(work, {"addr": f"127.0.0.1:{redis.port}"})
    try:
        images = push_and_pull(work, registry, random.Random(os.urandom(8)))
        module_reads_the_registry(redis, images)
        registry_reads_the_module(redis, registry, images)
        keys = redis.keys()
        ttls = {k: int(redis.cli("TTL", k)[0]) for k in keys}
        check(keys and all(0 < t <= TTL for t in ttls.values()), f"every one of the {len(keys)} keys carries the TTL")
        garbage_collect(work, redis, registry, images)
    finally:
        registry.stop()
        redis.stop()


def second_run(work):
    say("run 2: the module loaded after the registry filled the cache")
    redis = Redis(work, None)
    registry = Registry(work, {"addr": f"127.0.0.1:{redis.port}"})
    try:
        images = push_and_pull(work, registry, random.Random(os.urandom(8)))
        redis.cli("MODULE", "LOAD", MODULE)
        run_readme("index", redis, work)
        module_reads_the_registry(redis, images)
        indexed = redis.cli("HKEYS", "layercache::repos::" + next(iter(images["team-b/app"][0])))
        check(indexed != [], "the INDEX loop indexed the registry's memberships")
        garbage_collect(work, redis, registry, images)
    finally:
        registry.stop()
        redis.stop()


def provider_run(work, line):
    say(f"run {'3' if line == '2.8' else '4'}: distribution {'2.8' if line == '2.8' else 'v3'}'s registry built with the layercache provider")
    binary = build_patched_registry(line)
    redis = Redis(work, [])
    # Each line's own redis section: 2.8's addr, v3's addrs.
    section = {"addr": f"127.0.0.1:{redis.port}"} if line == "2.8" else {"addrs": [f"127.0.0.1:{redis.port}"]}
    registry = Registry(work, section, binary=binary, cache="layercache")
    try:
        check("using layercache blob descriptor cache" in registry.logged(),
              "the registry says it uses the layercache provider")
        check("unknown cache type" not in registry.logged(), "and not that caching is disabled")
        images = push_and_pull(work, registry, random.Random(os.urandom(8)))
        counters = redis.counters()
        say("INFO layercache after push and pull: " +
              ", ".join(f"{k[11:]}={v}" for k, v in sorted(counters.items()) if v))
        check(counters["layercache_reposetdescriptor_calls"] > 0 and counters["layercache_repostat_calls"] > 0,
              "the registry's cache traffic went through LAYERCACHE.REPOSETDESCRIPTOR and REPOSTAT")
        # distribution's own provider would send HMGET / HGET to read and HMSET / HSETNX /
        # HSET to write; the module reads and writes hashes through the key API, and its
        # SISMEMBERs are inside its REPOSTATs.
        stats = redis.cli("INFO", "commandstats")
        plain = [k for k in stats if k.startswith(tuple(f"cmdstat_{c}:" for c in ("hmget", "hget", "hmset", "hsetnx", "hset")))]
        check(plain == [], f"and through no plain hash command of distribution's provider: {plain}")
        module_reads_the_registry(redis, images)
        for repo, (blobs, _) in images.items():
            for digest, (size, _) in blobs.items():
                before = redis.counters()
                check(registry.head_blob(repo, digest) == (200, size), f"{repo}: HEAD {digest[:19]}… = {size}")
                after = redis.counters()
                hits = after["layercache_repostat_hits"] - before["layercache_repostat_hits"]
                misses = after["layercache_repostat_misses"] - before["layercache_repostat_misses"]
                check(hits > 0 and misses == 0, f"{repo}: served from the cache ({hits} REPOSTAT hits, {misses} misses)")
        if line == "3":
            # v3's cache metrics keep their series (the provider is wrapped as v3 wraps its
            # redis cache), beside the provider's own.
            text = registry.metrics()
            for series in ["registry_storage_cache_redis_seconds_count", "registry_layercache_tier_served_total",
                           "registry_layercache_tier_entries", "registry_layercache_breaker_open",
                           "registry_layercache_breaker_opens_total"]:
                check(any(l.startswith(series) for l in text.splitlines()), f"/metrics has {series}")
        # A blob deleted through the registry is a 404 at once: the repository Clear.
        repo, (blobs, _) = next(iter(images.items()))
        digest = next(iter(blobs))
        check(registry.status("DELETE", f"/v2/{repo}/blobs/{digest}") == 202, f"{repo}: DELETE {digest[:19]}…")
        check(registry.head_blob(repo, digest) == (404, None), f"{repo}: HEAD at once after the delete is a 404")
    finally:
        registry.stop()
        redis.stop()


def main():
    runs = [first_run, second_run]
    if "--with-provider" in sys.argv:
        runs += [lambda work: provider_run(work, "2.8"), lambda work: provider_run(work, "3")]
    for run in runs:
        work = tempfile.mkdtemp(prefix="layercache-registry-")
        try:
            run(work)
        finally:
            if not os.environ.get("KEEP"):
                shutil.rmtree(work, ignore_errors=True)
    say("all checks passed")


if __name__ == "__main__":
    main()
