#!/usr/bin/env python3
"""make bench-registry on S3: what the cache removes from the storage backend. The
registries of `make registry` (v3 and 2.8) on moto's S3 server behind httpproxy, S3_RTT
ms away (10), counted by S3 operation; Redis behind delayproxy, REDIS_RTT ms away (0.5),
counting its round trips. Six caches per line: none, distribution's in-memory cache,
its redis cache, layercache, layercache with the local tier, and with the metadata cache
on too (tag links, manifests, negative lookups). Each variant starts
from an empty bucket and an empty Redis, pushes a 5-layer image with skopeo, then
measures, each operation REPS times:

- blob HEAD of a present blob (repeated) and of an absent one (a client's pre-push check);
- blob GET with redirect off (the data through the registry) and on (the 307 answer);
- manifest GET by tag and by digest (repeated);
- a pull as a client makes it with redirect on (the tag, then every blob: the 307s),
  the registry's side of it;
- a cross-repository mount, then the first HEAD in the target repository;
- a layer push (POST and PUT of a new 64 KiB blob) and a manifest PUT (a new config's);
- a whole pull (skopeo copy of the image, again) and a whole push (to a new repository).

Then the metadata cache's memory in Redis, per manifest and per link, in both key
schemes (`memory` runs that part alone).

Per operation: p50 and p99 ms, S3 requests per operation by S3 call, and Redis round
trips per operation (the tier's tracking PINGs left out). The variants run interleaved,
ROUNDS times (3), and each figure is the median of its rounds. moto's own time per
request (no proxy) is measured and printed with the table. Writes its section of
BENCHMARKS.md. Standard library only."""

import collections
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from regkit import (CACHE_WORD, CACHES, METADATA, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, S3, Redis, RedisDelay, Registry,
                    build_patched_registry, check, commands, digest_of, interleaved, layer_tar, oci_layout, quantiles, skopeo, timed,
                    write_section)

ROUNDS = int(os.environ.get("ROUNDS", "3"))
REPS = int(os.environ.get("REPS", "30"))
S3_RTT = float(os.environ.get("S3_RTT", "10"))
REDIS_RTT = float(os.environ.get("REDIS_RTT", "0.5"))
LINES = os.environ.get("LINES", "3 2.8").split()
OPS = ["blob HEAD", "blob HEAD, absent", "blob GET, redirect off", "blob GET, redirect on", "manifest GET by tag",
       "manifest GET by digest", "pull, redirect on (registry API)", "mount", "first HEAD after a mount", "layer push", "manifest PUT", "pull (skopeo)",
       "push (skopeo)"]
CACHES_S3 = CACHES + [METADATA]
TIERED = ("layercache + tier", METADATA)
SHORT = {"HeadObject": "Head", "GetObject": "Get", "ListObjectsV2": "List", "ListObjects": "List", "PutObject": "Put",
         "DeleteObject": "Delete", "DeleteObjects": "Delete", "CopyObject": "Copy", "CreateMultipartUpload": "MPU",
         "UploadPart": "Part", "UploadPartCopy": "PartCopy", "CompleteMultipartUpload": "Complete",
         "ListMultipartUploads": "ListMPU", "AbortMultipartUpload": "Abort", "ListParts": "ListParts"}


class Meter:
    """Runs operations, recording each run's time, S3 requests and Redis round trips."""

    def __init__(self, s3, proxy, redis):
        self.s3, self.proxy, self.redis = s3, proxy, redis
        self.runs = collections.defaultdict(list)  # op: [(ms, Counter of S3 calls, round trips)]

    def __call__(self, op, fn):
        s3_before, rt_before, (_, pings_before) = self.s3.counts(), self.proxy.round_trips(), commands(self.redis)
        result = []
        ms = timed(lambda: result.append(fn()))
        s3_after, rt_after, (_, pings_after) = self.s3.counts(), self.proxy.round_trips(), commands(self.redis)
        calls = collections.Counter({SHORT.get(k, k): n - s3_before.get(k, 0) for k, n in s3_after.items()
                                     if n != s3_before.get(k, 0)})
        # A tracking PING that shares a packet with a command crosses the proxy in its round trip.
        self.runs[op].append((ms, calls, max(0, rt_after - rt_before - (pings_after - pings_before))))
        return result[0]

    def figures(self):
        out = {}
        for op, runs in self.runs.items():
            s3 = collections.Counter()
            for _, calls, _ in runs:
                s3.update(calls)
            out[op] = {"p": quantiles([ms for ms, _, _ in runs]), "s3": {k: n / len(runs) for k, n in s3.items()},
                       "rt": sum(rt for _, _, rt in runs) / len(runs)}
        return out


def variant(work, binary, line, cache, s3, redis, proxy, rng):
    """One line with one cache on a new bucket; {operation: figures}."""
    bucket = s3.bucket(f"b{rng.getrandbits(48):x}")
    section = {"addr": proxy.addr} if line == "2.8" else {"addrs": [proxy.addr]}
    params = {"localentries": 100000} if cache in TIERED else {}
    start = lambda name, redirect: Registry(work, section, binary=binary, cache=CACHE_WORD[cache], params=params,
                                            name=name, storage=s3.storage(bucket), redirect=redirect,
                                            env={"AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"},
                                            metadata=cache == METADATA)
    reg, redir = start("registry", False), start("redirect", True)
    meter = Meter(s3, proxy, redis)
    os.environ["HOME"] = os.path.join(work, "home")  # skopeo's blob-info cache, new per variant
    try:
        if cache in TIERED:
            time.sleep(1.5)  # the tier serves once its tracking connection is on
        layout = os.path.join(work, "image")
        blobs, manifest = oci_layout(layout, [layer_tar(f"l{i}", rng) for i in range(5)], rng)
        dest = lambda repo: f"docker://127.0.0.1:{reg.port}/{repo}:v1"
        skopeo("copy", f"oci:{layout}:v1", dest("bench/app"), "--dest-tls-verify=false")
        layers = sorted(d for d, (_, t) in blobs.items() if t == OCI_LAYER)
        # Repeated reads: two passes first, unmeasured, warm what each cache holds (with
        # the metadata cache, a fill of one link drops the tier's entries of its
        # repository, so the first pass's fills leave the second to warm the tier).
        reads = {"blob HEAD": lambda d: reg.request("HEAD", f"/v2/bench/app/blobs/{d}"),
                 "blob GET, redirect off": lambda d: reg.request("GET", f"/v2/bench/app/blobs/{d}"),
                 "blob GET, redirect on": lambda d: redir.request("GET", f"/v2/bench/app/blobs/{d}"),
                 "manifest GET by tag": lambda d: reg.request("GET", "/v2/bench/app/manifests/v1"),
                 "manifest GET by digest": lambda d: reg.request("GET", f"/v2/bench/app/manifests/{manifest}")}
        for _ in range(2):
            for read in reads.values():
                for d in layers:
                    read(d)
        def api_pull():
            """The registry's side of a pull with redirect on: the tag, then every blob."""
            status = redir.request("GET", "/v2/bench/app/manifests/v1")[0]
            return [status] + [redir.request("GET", f"/v2/bench/app/blobs/{d}")[0] for d in sorted(blobs)]

        api_pull()
        api_pull()
        for _ in range(REPS):
            got = meter("pull, redirect on (registry API)", api_pull)
            check(got == [200] + [307] * len(blobs), f"{line}, {cache}: a pull with redirect on ({got})")
        pull = lambda i: skopeo("copy", dest("bench/app"), f"oci:{work}/pull-{i}:v1", "--src-tls-verify=false")
        for i in range(REPS):
            d = layers[i % len(layers)]
            for op, read in reads.items():
                status, _ = meter(op, lambda: read(d))
                check(status == (307 if op == "blob GET, redirect on" else 200), f"{line}, {cache}: {op} ({status})")
        # Then the writes, apart from the reads above: a write to a key a tier holds
        # (a mount rewrites the blob's descriptor) drops the entry in every instance.
        for d in layers:
            reg.request("POST", f"/v2/bench/put/blobs/uploads/?mount={d}&from=bench/app")
        for i in range(REPS):
            d = layers[i % len(layers)]
            absent = "sha256:" + rng.randbytes(32).hex()
            check(meter("blob HEAD, absent", lambda: reg.request("HEAD", f"/v2/bench/app/blobs/{absent}"))[0] == 404,
                  f"{line}, {cache}: an absent blob is a 404")
            target = f"bench/mount-{i}"
            status, _ = meter("mount", lambda: reg.request("POST", f"/v2/{target}/blobs/uploads/?mount={d}&from=bench/app"))
            check(status == 201, f"{line}, {cache}: mounted ({status})")
            status, _ = meter("first HEAD after a mount", lambda: reg.request("HEAD", f"/v2/{target}/blobs/{d}"))
            check(status == 200, f"{line}, {cache}: HEAD after the mount ({status})")
            status = meter("layer push", lambda: reg.upload("bench/push", rng.randbytes(64 << 10)))
            check(status == 201, f"{line}, {cache}: layer pushed ({status})")
            config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": rng.random()}).encode()
            reg.upload("bench/put", config)
            body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
                               "layers": [{"mediaType": OCI_LAYER, "digest": x, "size": blobs[x][0]} for x in layers]}).encode()
            status, _ = meter("manifest PUT", lambda: reg.request("PUT", f"/v2/bench/put/manifests/{digest_of(body)}", body,
                                                                  {"Content-Type": OCI_MANIFEST}))
            check(status == 201, f"{line}, {cache}: manifest PUT ({status})")
        pull("warm")
        for i in range(3):
            meter("pull (skopeo)", lambda: pull(i))
        for i in range(3):
            meter("push (skopeo)", lambda: skopeo("copy", f"oci:{layout}:v1", dest(f"bench/copy-{i}"), "--dest-tls-verify=false"))
        figures = meter.figures()
        head = figures["blob HEAD"]
        figures["summary"] = (f"blob HEAD p50 {head['p'][0]:.2f} ms, {sum(head['s3'].values()):.1f} S3 requests, "
                              f"{head['rt']:.2f} Redis round trips")
        return figures
    finally:
        reg.stop()
        redir.stop()


def metadata_memory(work):
    """What the metadata cache holds in Redis (MEMORY USAGE), both schemes: a 5-layer
    image's manifest kept (its blob hash with and without its bytes) and 100 links of
    one repository (a links hash, per link); the BENCHMARKS.md section."""
    rng, rows = random.Random(30), []
    layout = os.path.join(work, "memory-image")
    _, manifest = oci_layout(layout, [layer_tar(f"m{i}", rng) for i in range(5)], rng)
    body = open(os.path.join(layout, "blobs", "sha256", manifest[7:]), "rb").read()
    for scheme in ("distribution", "blob"):
        redis = Redis(work, ["scheme", scheme], name=f"memory-{scheme}")
        usage = lambda key: int(redis.cli("MEMORY", "USAGE", key)[0] or 0)
        blob_key = f"blobs::{manifest}" if scheme == "distribution" else manifest
        links_key = "repository::bench/app::links" if scheme == "distribution" else "bench/app"
        redis.cli("LAYERCACHE.SETDESCRIPTOR", manifest, manifest, str(len(body)), OCI_MANIFEST)
        before = usage(blob_key)
        subprocess_setdata(redis, manifest, body)
        with_data = usage(blob_key)
        for i in range(100):
            d = digest_of(f"layer {i}".encode())
            redis.cli("LAYERCACHE.LINKSET", "bench/app", "0", f"_layers/sha256/{d[7:]}/link", d)
        per_link = usage(links_key) / 100
        rows.append(f"| {scheme} | {len(body)} | {with_data - before} ({before} → {with_data}) | {per_link:.0f} |")
        redis.stop()
    section = ("The metadata cache in Redis (`scripts/bench-registry-s3.py memory`, `MEMORY USAGE`, Redis "
               "defaults): a 5-layer OCI image's manifest kept in its blob hash, and a repository's links (100 layer "
               "links in one hash).\n\n| scheme | manifest bytes | bytes its blob hash grows by | bytes per link |\n"
               "|---|---:|---:|---:|\n" + "\n".join(rows) + "\n")
    write_section("metadata-memory", "The metadata cache's memory", section)


def subprocess_setdata(redis, digest, body):
    """SETDATA with the bytes on redis-cli's stdin (-x: the last argument)."""
    out = subprocess.run(["redis-cli", "-p", str(redis.port), "-x", "LAYERCACHE.SETDATA", digest], input=body,
                         capture_output=True)
    check(out.stdout.strip() == b"OK", f"SETDATA of the manifest ({out.stdout.strip()})")


def main():
    work = tempfile.mkdtemp(prefix="layercache-bench-s3-")
    if sys.argv[1:] == ["memory"]:
        metadata_memory(work)
        shutil.rmtree(work, ignore_errors=True)
        return
    home = os.environ.get("HOME")
    binaries = {line: build_patched_registry(line) for line in LINES}
    s3 = S3(work, rtt_ms=S3_RTT)
    module, plain = Redis(work, [], name="module"), Redis(work, None, name="plain")
    proxies = {"module": RedisDelay(module.port, REDIS_RTT), "plain": RedisDelay(plain.port, REDIS_RTT)}
    rng, moto = random.Random(29), []
    try:
        moto.append(s3.server_ms(s3.bucket("timing")))
        run = lambda folder, line, cache, redis: variant(folder, binaries[line], line, cache, s3, redis,
                                                         proxies["plain" if redis is plain else "module"], rng)
        results = interleaved(ROUNDS, LINES, work, module, plain, run, caches=CACHES_S3)
        moto.append(s3.server_ms("timing"))
    finally:
        if home:
            os.environ["HOME"] = home
        for p in proxies.values():
            p.stop()
        s3.stop()
        module.stop()
        plain.stop()
        shutil.rmtree(work, ignore_errors=True)
    write(results, statistics.median(moto))
    work = tempfile.mkdtemp(prefix="layercache-bench-s3-")
    metadata_memory(work)
    shutil.rmtree(work, ignore_errors=True)


def metadata_verdicts(results, line, name, med):
    """The metadata cache's targets (issue 30), with the tier."""
    meta = results[(line, METADATA)]
    s3 = lambda runs, op: med(runs, op, lambda f: sum(f["s3"].values()))
    pull = "pull, redirect on (registry API)"
    p50 = {c: med(results[(line, c)], pull, lambda f: f["p"][0]) for c in ("none", "redis", METADATA)}
    bodies = med(meta, "pull (skopeo)", lambda f: f["s3"].get("Get", 0))
    others = s3(meta, "pull (skopeo)") - bodies
    tag_rt = med(meta, "manifest GET by tag", lambda f: f["rt"])
    return [
        f"{name}, metadata cache: a repeated pull makes 0 S3 requests with redirect on: "
        + ("met" if s3(meta, pull) == 0 else "**not met**")
        + f" ({s3(meta, pull):g}; layercache and the tier {s3(results[(line, 'layercache + tier')], pull):g}, "
        f"no cache {s3(results[(line, 'none')], pull):g}), and with redirect off only the blob bodies: "
        + ("met" if others == 0 else "**not met**") + f" ({bodies:g} GetObject for 6 bodies, {others:g} other)",
        f"{name}, metadata cache: a repeated manifest GET by tag makes 0 S3 requests and 0 Redis round trips: "
        + ("met" if s3(meta, "manifest GET by tag") == 0 and tag_rt == 0 else "**not met**")
        + f" ({s3(meta, 'manifest GET by tag'):g}, {tag_rt:g})",
        f"{name}, metadata cache: a repeated pull ≥ 10× faster than no cache and ≥ 3× than the redis cache: "
        + ("met" if p50["none"] >= 10 * p50[METADATA] and p50["redis"] >= 3 * p50[METADATA] else "**not met**")
        + f" ({p50['none'] / p50[METADATA]:.0f}×, {p50['redis'] / p50[METADATA]:.1f}×: "
        f"{p50[METADATA]:.2f} ms against {p50['none']:.2f} and {p50['redis']:.2f} ms)"]


def s3_text(calls):
    return " + ".join(f"{n:g} {k}" for k, n in sorted(calls.items())) if calls else "0"


def write(results, moto_ms):
    """The S3 section of BENCHMARKS.md: a table per line, the targets' verdicts."""
    med = lambda runs, op, f: statistics.median(f(r[op]) for r in runs)
    parts, verdicts = [], []
    for line in LINES:
        rows = [f"| **{'v3' if line == '3' else '2.8'}** | " + " | ".join(CACHES_S3) + " |",
                "|---|" + "---:|" * len(CACHES_S3)]
        for op in OPS:
            cells = []
            for cache in CACHES_S3:
                runs = results[(line, cache)]
                p50, p99 = med(runs, op, lambda f: f["p"][0]), med(runs, op, lambda f: f["p"][1])
                calls = {k: statistics.median(r[op]["s3"].get(k, 0) for r in runs) for k in {k for r in runs for k in r[op]["s3"]}}
                calls = {k: round(n, 2) for k, n in calls.items() if round(n, 2)}
                rt = med(runs, op, lambda f: f["rt"])
                cells.append(f"{p50:.2f} / {p99:.2f} ms; S3 {s3_text(calls)}; Redis {rt:.2f}")
            rows.append(f"| {op} | " + " | ".join(cells) + " |")
        implied = lambda c, op: S3_RTT * med(results[(line, c)], op, lambda f: sum(f["s3"].values()))
        rows.append("\nOn S3 itself (S3 requests × its round trip, no cache → layercache and the tier → with the metadata "
                    "cache): " + ", ".join(f"{op} {implied('none', op):.0f} → {implied('layercache + tier', op):.0f} → "
                                           f"{implied(METADATA, op):.0f} ms"
                                           for op in ("blob HEAD", "manifest GET by tag", "pull, redirect on (registry API)",
                                                      "pull (skopeo)", "push (skopeo)")) + ".")
        parts.append("\n".join(rows))
        p50 = {c: med(results[(line, c)], "blob HEAD", lambda f: f["p"][0]) for c in CACHES}
        requests = {c: med(results[(line, c)], "blob HEAD", lambda f: sum(f["s3"].values())) for c in CACHES}
        name = "v3" if line == "3" else "2.8"
        verdicts += [
            f"{name}: a repeated blob HEAD makes 0 S3 requests with every cache: "
            + ("met" if all(requests[c] == 0 for c in CACHES if c != "none") else "**not met**")
            + f" ({', '.join(f'{c} {requests[c]:g}' for c in CACHES)})",
            f"{name}: with layercache and the tier ≥ 50× faster at p50 than no cache: "
            + ("met" if p50["none"] / p50["layercache + tier"] >= 50 else "**not met**")
            + f" ({p50['none'] / p50['layercache + tier']:.0f}×), within 10% of inmemory: "
            + ("met" if p50["layercache + tier"] <= 1.1 * p50["inmemory"] else "**not met**")
            + f" ({p50['layercache + tier']:.2f} ms against {p50['inmemory']:.2f} ms)",
            f"{name}: with layercache alone ≤ 1.5 ms: " + ("met" if p50["layercache"] <= 1.5 else "**not met**")
            + f" ({p50['layercache']:.2f} ms)"]
        verdicts += metadata_verdicts(results, line, name, med)
    section = (f"On S3 (`make bench-registry`, `scripts/bench-registry-s3.py`): the registries of `make registry` on moto's S3 "
               f"server behind a proxy that adds {S3_RTT:g} ms to every request and counts them by S3 call, Redis behind a "
               f"proxy {REDIS_RTT:g} ms away that counts round trips; a new bucket and an empty Redis per run, a 5-layer image "
               f"pushed with skopeo, then each operation {REPS} times (the reads first, repeated: two unmeasured passes "
               f"before; then the writes, in other repositories; then 3 pulls, one unmeasured before, and 3 pushes); {ROUNDS} interleaved rounds, medians. Each cell: p50 / p99, S3 requests per "
               f"operation by call, Redis round trips per operation (the tier's tracking PINGs left out).\n\n"
               f"moto answers a request in {moto_ms:.1f} ms itself (median, no proxy), so each S3 request costs about "
               f"{S3_RTT:g} + {moto_ms:.1f} ms here. On S3 itself, a request's cost is its round trip: an operation's S3 "
               f"requests × that round trip is what the cache takes off its latency (at {S3_RTT:g} ms: 7 requests are "
               f"{7 * S3_RTT:g} ms), and off the storage bill.\n\n"
               + "\n\n".join(parts) + "\n\nTargets (S3 at " + f"{S3_RTT:g} ms, Redis at {REDIS_RTT:g} ms): "
               + "; ".join(verdicts) + ".\n")
    write_section("registry-s3", "On S3, through real registries", section)


if __name__ == "__main__":
    main()
