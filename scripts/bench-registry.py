#!/usr/bin/env python3
"""make bench-registry, on the filesystem driver (scripts/bench-registry-s3.py is S3): the
cache through real registries. distribution v3 and 2.8 (the registries of `make
registry`), each with no cache, with distribution's in-memory cache, with its own redis
cache, with layercache, and with layercache and the local tier; Redis behind a delay proxy (clients/go/cmd/delayproxy) at
0.5 and 2 ms added round trip, which counts the round trips that cross it. Per variant:
HEAD blob p50/p99 (repeated HEADs of pushed blobs), manifest GET p50/p99, a full skopeo
pull's median time, the Redis commands and round trips per HEAD (tracking PINGs left
out), the round trips of a HEAD of a blob the cache does not hold yet, the commands a
repeated pull sends, and the requests/s of 16 concurrent HEAD clients. The variants run
interleaved, ROUNDS times, and each figure is the median of its rounds. Writes its
section of BENCHMARKS.md. Standard library only."""

import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request

from regkit import (CACHE_WORD, CACHES, OCI_MANIFEST, Redis, RedisDelay, Registry, build_patched_registry, commands,
                    interleaved, median_of, pull, push_and_pull, quantiles, timed, write_section)

ROUNDS = int(os.environ.get("ROUNDS", "3"))
HEADS = int(os.environ.get("HEADS", "200"))
RTTS = [0.5, 2.0]
LINES = ["3", "2.8"]


def get(registry, path):
    req = urllib.request.Request(f"http://127.0.0.1:{registry.port}{path}", headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def throughput(registry, targets, clients=16, seconds=3.0):
    done = [0] * clients
    stop = time.time() + seconds

    def worker(i):
        n = 0
        while time.time() < stop:
            repo, digest = targets[n % len(targets)]
            registry.request("HEAD", f"/v2/{repo}/blobs/{digest}")
            n += 1
        done[i] = n

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def variant(work, binaries, line, cache, proxy, redis):
    """One run: a registry of line on proxy's Redis with cache; its figures."""
    section = {"addr": proxy.addr} if line == "2.8" else {"addrs": [proxy.addr]}
    params = {"localentries": 100000} if cache == "layercache + tier" else {}
    start = lambda name: Registry(work, section, binary=binaries[line], cache=CACHE_WORD[cache],
                                  params=params, name=name)
    registry = start("pusher")
    try:
        images = push_and_pull(work, registry, random.Random(7))
    finally:
        registry.stop()
    # A registry that has not seen the blobs (an empty tier), on the same storage.
    registry = start("registry")
    try:
        targets = [(repo, d) for repo, (blobs, _) in images.items() for d in blobs]
        if cache == "layercache + tier":
            time.sleep(1.5)  # the tier serves once its tracking connection is on
        # First HEADs: blobs the tier does not hold yet, their round trips. A HEAD of an
        # absent blob first, so that the pool's first connection (go-redis's HELLO on
        # dialling) is not counted against them.
        registry.request("HEAD", f"/v2/{targets[0][0]}/blobs/sha256:{'0' * 64}")
        rt0, (_, p0) = proxy.round_trips(), commands(redis)
        for repo, d in targets:
            registry.request("HEAD", f"/v2/{repo}/blobs/{d}")
        rt1, (c1, p1) = proxy.round_trips(), commands(redis)
        cold = (rt1 - rt0 - (p1 - p0)) / len(targets)
        heads = [timed(lambda t=targets[i % len(targets)]: registry.request("HEAD", f"/v2/{t[0]}/blobs/{t[1]}"))
                 for i in range(HEADS)]
        rt2, (c2, p2) = proxy.round_trips(), commands(redis)
        per_head_cmds = (c2 - c1 - (p2 - p1)) / HEADS
        per_head_rts = (rt2 - rt1 - (p2 - p1)) / HEADS
        manifests = [timed(lambda r=repo: get(registry, f"/v2/{r}/manifests/v1")) for repo in images for _ in range(HEADS // 4)]
        pulls = []
        for i in range(3):
            before = commands(redis)
            pulls.append(timed(lambda i=i: pull(registry, "team-a/app", os.path.join(work, f"pull-{i}"))))
            after = commands(redis)
            repeated = (after[0] - before[0]) - (after[1] - before[1])
        rate = throughput(registry, targets)
        return {"head": quantiles(heads), "manifest": quantiles(manifests), "pull": statistics.median(pulls) / 1000,
                "cmds": per_head_cmds, "rts": per_head_rts, "cold": cold, "repeated": repeated, "rate": rate,
                "summary": f"HEAD p50 {quantiles(heads)[0]:.2f} ms, {per_head_rts:.2f} round trips per HEAD"}
    finally:
        registry.stop()


def main():
    work = tempfile.mkdtemp(prefix="layercache-bench-registry-")
    binaries = {line: build_patched_registry(line) for line in LINES}
    module, plain = Redis(work, [], name="module"), Redis(work, None, name="plain")
    results = {}
    try:
        for rtt in RTTS:
            proxies = {"module": RedisDelay(module.port, rtt), "plain": RedisDelay(plain.port, rtt)}
            run = lambda folder, line, cache, redis: variant(folder, binaries, line, cache,
                                                             proxies["plain" if redis is plain else "module"], redis)
            try:
                for (line, cache), runs in interleaved(ROUNDS, LINES, work, module, plain, run, f"{rtt} ms, ").items():
                    results[(rtt, line, cache)] = runs
            finally:
                for p in proxies.values():
                    p.stop()
    finally:
        module.stop()
        plain.stop()
        shutil.rmtree(work, ignore_errors=True)
    write(results)


def write(results):
    rows = ["| line | added RTT | cache | HEAD p50 / p99 ms | manifest GET p50 / p99 ms | skopeo pull s | Redis commands per HEAD "
            "| round trips per HEAD | round trips of a first HEAD | commands of a repeated pull | HEADs/s, 16 clients "
            "| HEAD p50 speed-up over the redis cache / no cache |",
            "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for line in LINES:
        for rtt in RTTS:
            base = median_of(results[(rtt, line, "redis")], "head", 0)
            bare = median_of(results[(rtt, line, "none")], "head", 0)
            for cache in CACHES:
                runs = results[(rtt, line, cache)]
                speedup = base / median_of(runs, "head", 0)
                rows.append(f"| {'v3' if line == '3' else '2.8'} | {rtt:g} ms | {cache} | {median_of(runs, 'head', 0):.2f} / {median_of(runs, 'head', 1):.2f} "
                            f"| {median_of(runs, 'manifest', 0):.2f} / {median_of(runs, 'manifest', 1):.2f} | {median_of(runs, 'pull'):.2f} "
                            f"| {median_of(runs, 'cmds'):.2f} | {median_of(runs, 'rts'):.2f} | {median_of(runs, 'cold'):.2f} | {median_of(runs, 'repeated'):.0f} "
                            f"| {median_of(runs, 'rate'):.0f} | {speedup:.1f}× / {bare / median_of(runs, 'head', 0):.2f}× |")
                if rtt == 2.0 and cache == "layercache":
                    verdicts.append(f"{line}: layercache ≥ 3× the redis cache at 2 ms: {'met' if speedup >= 3 else '**not met**'} ({speedup:.1f}×)")
                if rtt == 2.0 and cache == "layercache + tier":
                    verdicts.append(f"{line}: the tier ≥ 20×: {'met' if speedup >= 20 else '**not met**'} ({speedup:.1f}×); "
                                    f"a first HEAD in 1 round trip: {'met' if median_of(runs, 'cold') <= 1 else '**not met**'} "
                                    f"({median_of(runs, 'cold'):.2f}); a repeated pull sends Redis nothing: "
                                    f"{'met' if median_of(runs, 'repeated') == 0 else '**not met**'} ({median_of(runs, 'repeated'):.0f} commands)")
    section = (f"Through real registries (`make bench-registry`): distribution v3 and 2.8 as `make registry` builds them, "
               f"Redis behind a delay proxy that counts the round trips crossing it; {HEADS} repeated HEADs of the pushed "
               f"blobs, {HEADS // 4} manifest GETs per repository, three skopeo pulls, 16 HEAD clients for 3 s; "
               f"{ROUNDS} interleaved rounds, medians. Redis commands and round trips leave out the tier's tracking PINGs.\n\n"
               + "\n".join(rows) + "\n\nTargets at 2 ms: " + "; ".join(verdicts) + ".\n")
    write_section("registry", "Through real registries", section)


if __name__ == "__main__":
    main()
