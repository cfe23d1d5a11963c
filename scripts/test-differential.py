#!/usr/bin/env python3
"""make test-differential: the cache is invisible. One seeded random sequence of registry
API calls goes, call by call, to a registry with no cache (the reference, a store of its
own) and to round-robin pairs of registries (two instances sharing one store, one
http.secret and one cache, the calls alternating between them through httpproxy): one
pair with layercache and the local tier, one with the metadata cache on too (tag links,
manifests, negative lookups), one with the line's own redis cache. The calls
push blobs (a POST, then a PUT of the data to the upload's Location, each to whichever
instance the round robin picks) and manifests in several repositories, mount across repositories, tag and re-tag,
HEAD and GET blobs and manifests by tag and by digest (a manifest's digest asked as a
blob and a layer's as a manifest among them), list tags, delete blobs, manifests and
tags, and run garbage collection between phases (on each store; for layercache the
README's recipe, which purges what the collector deleted and clears the layer links it
removed; with the metadata cache the registry's own garbage-collect, which purges
itself; distribution's redis cache has none).

Every answer is compared with the reference's: status, Docker-Content-Digest,
Content-Length, Content-Type and the body (a 2xx body whole; an error by its error
codes). layercache (both pairs) must answer every call as the reference does; the redis cache's
differences are counted and shown as the contrast. Both lines (LINES=3 or 2.8 for one); CALLS calls per line (10,000 by default), the
seed printed and replayed with SEED=<seed>. Standard library
only."""

import collections
import hashlib
import http.client
import json
import os
import random
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from regkit import (OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, HTTPProxy, Redis, Registry, build_patched_registry, check,
                    collected, digest_of, gc_recipe, say)

TRACE = os.environ.get("TRACE")  # a digest's hex prefix: print every call that names it
CALLS = int(os.environ.get("CALLS", "10000"))
SEED = int(os.environ.get("SEED", str(random.SystemRandom().randrange(1 << 32))))
PHASES = 4
LINES = os.environ.get("LINES", "3 2.8").split()
REPOS = ["team/a", "team/b", "other/c"]
TAGS = ["t1", "t2", "t3"]
ACCEPT = ", ".join([OCI_MANIFEST, "application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


def call(base, method, path, body=None, headers=None):
    """One HTTP call, redirects not followed; (status, headers, body)."""
    url = path if path.startswith("http") else base + path
    req = urllib.request.Request(url, data=body, method=method, headers={"Accept": ACCEPT, **(headers or {})})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=60) as r:
            try:
                return r.status, r.headers, r.read()
            except http.client.IncompleteRead as e:
                return r.status, r.headers, b"(body cut short after %d bytes)" % len(e.partial)
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
    except (http.client.HTTPException, OSError) as e:
        return 0, {}, f"(no answer: {type(e).__name__})".encode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


def answer(status, headers, body):
    """What is compared of a reply."""
    if 200 <= status < 300:
        what = hashlib.sha256(body).hexdigest()[:16] if body else ""
        length = headers.get("Content-Length")
    else:
        try:
            what = ",".join(e.get("code", "?") for e in json.loads(body).get("errors", []))
        except ValueError:
            what = body[:80].decode(errors="replace")
        length = None
    return (status, headers.get("Docker-Content-Digest"), length, headers.get("Content-Type"), what)


class Sequence:
    """The seeded calls: each step is (name, request or [requests]), a request being
    (method, path, body, headers), or an upload (a POST whose Location the PUT that
    sends the blob follows)."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.layers = [self.rng.randbytes(100 + self.rng.randrange(3000)) for _ in range(12)]
        self.configs, self.manifests, self.known, self.blobs_of = [], [], {}, {}
        self.sent = collections.defaultdict(set)

    def blob(self):
        pool = self.layers + self.configs
        return pool[self.rng.randrange(len(pool))]

    def any_digest(self, repo):
        """Mostly one the sequence sent to repo; else any blob's or manifest's, or none's."""
        if self.sent[repo] and self.rng.random() < 0.6:
            return self.rng.choice(sorted(self.sent[repo]))
        pool = [digest_of(b) for b in self.layers + self.configs] + self.manifests
        return pool[self.rng.randrange(len(pool))] if self.rng.random() < 0.95 else "sha256:" + "0" * 64

    def manifest(self):
        """A new manifest (its config new) or an earlier one's bytes; and its blobs."""
        if self.manifests and self.rng.random() < 0.3:
            digest = self.rng.choice(self.manifests)
            return self.known[digest], self.blobs_of[digest]
        config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": self.rng.random()}).encode()
        self.configs.append(config)
        layers = self.rng.sample(self.layers, self.rng.randint(1, 3))
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
                           "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(x), "size": len(x)} for x in layers]}).encode()
        self.manifests.append(digest_of(body))
        self.known[digest_of(body)], self.blobs_of[digest_of(body)] = body, [config] + layers
        return body, [config] + layers

    def step(self):
        r, repo = self.rng, self.rng.choice(REPOS)
        kind = r.choices(["push", "mount", "put-manifest", "head-blob", "get-blob", "head-manifest", "get-manifest",
                          "delete-blob", "delete-manifest", "delete-tag", "tags"],
                         [12, 5, 8, 20, 10, 12, 8, 4, 3, 2, 2])[0]
        if kind == "push":
            data = self.blob()
            self.sent[repo].add(digest_of(data))
            return kind, ("UPLOAD", f"/v2/{repo}/blobs/uploads/", data, digest_of(data))
        if kind == "mount":
            source = r.choice([x for x in REPOS if x != repo])
            return kind, ("POST", f"/v2/{repo}/blobs/uploads/?mount={self.any_digest(repo)}&from={source}", b"", {})
        if kind == "put-manifest":  # mostly after pushing its blobs, as a client does
            body, blobs = self.manifest()
            ref = r.choice(TAGS) if r.random() < 0.7 else digest_of(body)
            self.sent[repo].update([digest_of(body)] + [digest_of(b) for b in blobs])
            pushes = [("UPLOAD", f"/v2/{repo}/blobs/uploads/", b, digest_of(b)) for b in blobs] if r.random() < 0.8 else []
            return kind, pushes + [("PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": OCI_MANIFEST})]
        if kind in ("head-blob", "get-blob", "delete-blob"):
            method = {"head-blob": "HEAD", "get-blob": "GET", "delete-blob": "DELETE"}[kind]
            return kind, (method, f"/v2/{repo}/blobs/{self.any_digest(repo)}", None, {})
        if kind in ("head-manifest", "get-manifest"):
            ref = r.choice(TAGS) if r.random() < 0.5 else self.any_digest(repo)
            return kind, ("HEAD" if kind == "head-manifest" else "GET", f"/v2/{repo}/manifests/{ref}", None, {})
        if kind == "delete-manifest":  # mostly a manifest, which some repository holds
            ref = r.choice(self.manifests) if self.manifests and r.random() < 0.8 else self.any_digest(repo)
            return kind, ("DELETE", f"/v2/{repo}/manifests/{ref}", None, {})
        if kind == "delete-tag":
            return kind, ("DELETE", f"/v2/{repo}/manifests/{r.choice(TAGS)}", None, {})
        return kind, ("GET", f"/v2/{repo}/tags/list", None, {})


def send(base, request):
    method, path, body, extra = request
    if method != "UPLOAD":
        return answer(*call(base, method, path, body, extra))
    status, headers, _ = call(base, "POST", path, b"")
    if status != 202:
        return answer(status, headers, b"")
    location = urllib.parse.urljoin(base, headers["Location"])
    location += ("&" if "?" in location else "?") + "digest=" + urllib.parse.quote(extra)
    return answer(*call(base, "PUT", location, body, {"Content-Type": "application/octet-stream"}))


class Target:
    """Where the calls go: one registry, or a pair behind a round robin; gc() collects
    its store and, with purge, runs the README's recipe on its Redis."""

    def __init__(self, name, registries, proxy=None, redis=None, purge=False):
        self.name, self.registries, self.proxy, self.redis, self.purge = name, registries, proxy, redis, purge
        self.base = proxy.url if proxy else f"http://127.0.0.1:{registries[0].port}"
        self.differences, self.examples = collections.Counter(), {}

    def gc(self, untagged, work):
        """Collects the store (with the README's recipe where purge); how many blobs went."""
        registry, flags = self.registries[0], ["--delete-untagged"] if untagged else []
        if self.purge:
            return len(gc_recipe(self.redis, work, " ".join([registry.binary, "garbage-collect", *flags, registry.config]))[1])
        return len(collected(registry.garbage_collect(*flags)))

    def stop(self):
        for r in self.registries:
            r.stop()
        if self.proxy:
            self.proxy.stop()


def run_line(work, line, binary):
    module, plain = Redis(work, [], name=f"module-{line}"), Redis(work, None, name=f"plain-{line}")
    section = (lambda r: {"addrs": [f"127.0.0.1:{r.port}"]}) if line == "3" else (lambda r: {"addr": f"127.0.0.1:{r.port}"})
    secret = "layercache-differential"

    def pair(name, cache, redis, params=None, metadata=False):
        store = os.path.join(work, f"{line}-{name}")
        os.makedirs(store)
        regs = [Registry(store, section(redis), binary=binary, cache=cache, params=params, name=f"{name}-{i}",
                         storage={"filesystem": {"rootdirectory": f"{store}/storage"}}, secret=secret,
                         metadata=metadata) for i in range(2)]
        return regs, HTTPProxy([f"http://127.0.0.1:{r.port}" for r in regs])

    ref_dir = os.path.join(work, f"{line}-reference")
    os.makedirs(ref_dir)
    targets = [Target("no cache", [Registry(ref_dir, {}, binary=binary, cache="", name="reference", secret=secret)])]
    regs, proxy = pair("layercache", "layercache", module, {"localentries": 10000})
    targets.append(Target("layercache + tier, round robin", regs, proxy, module, purge=True))
    meta = Redis(work, [], name=f"metadata-{line}")
    regs, proxy = pair("metadata", "layercache", meta, {"localentries": 10000}, metadata=True)
    targets.append(Target("layercache + tier + metadata cache, round robin", regs, proxy, meta))
    regs, proxy = pair("redis", "redis", plain)
    targets.append(Target(f"{'v3' if line == '3' else '2.8'}'s redis cache, round robin", regs, proxy, plain))
    time.sleep(1.5)  # the tier serves once its tracking connection is on
    seq, calls, kinds = Sequence(SEED), 0, collections.Counter()
    started = time.time()
    try:
        for phase in range(PHASES):
            while calls < CALLS * (phase + 1) // PHASES:
                kind, requests = seq.step()
                for request in requests if isinstance(requests, list) else [requests]:
                    calls += 1
                    answers = [send(t.base, request) for t in targets]
                    kinds[(kind, answers[0][0])] += 1
                    if TRACE and (TRACE in request[1] or TRACE in str(request[3])):
                        say(f"trace: call {calls} {request[0]} {request[1][:100]}: {answers}")
                    for t, a in zip(targets[1:], answers[1:]):
                        if a != answers[0]:
                            key = (kind, answers[0][0], a[0])
                            t.differences[key] += 1
                            t.examples.setdefault(key, f"call {calls} {request[0]} {request[1][:90]}: no cache {answers[0]}, here {a}")
            if phase < PHASES - 1:
                deleted = [t.gc(phase % 2 == 1, work) for t in targets]
                if TRACE:
                    say(f"trace: garbage collection after call {calls}")
                check(deleted[0] == deleted[1] == deleted[2],
                      f"{line}: garbage collection {phase + 1} deleted as much with layercache (both pairs) as with no cache "
                      f"({deleted[0]}, {deleted[1]}, {deleted[2]}; the redis cache's store {deleted[3]})")
        counts = meta.counters()
        served = {k: counts[f"layercache_{k}_hits"] for k in ("link", "data")}
        check(all(served.values()), f"{line}: the metadata cache served links and manifests: "
                                    f"{served['link']} links of {counts['layercache_link_calls']} reads, "
                                    f"{served['data']} manifests of {counts['layercache_data_calls']}")
    finally:
        for t in targets:
            t.stop()
        module.stop()
        meta.stop()
        plain.stop()
    say(f"{line}: {calls} calls in {time.time() - started:.0f} s, seed {SEED}: "
        + ", ".join(f"{k} {status}: {n}" for (k, status), n in sorted(kinds.items())))
    return targets[1:]


def main():
    work = tempfile.mkdtemp(prefix="layercache-differential-")
    say(f"seed {SEED} (replay: SEED={SEED} make test-differential), {CALLS} calls per line")
    results = {}
    try:
        for line in LINES:
            results[line] = run_line(work, line, build_patched_registry(line))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say("| line | cache | differences from no cache | by call (no cache → this cache) |")
    say("|---|---|---:|---|")
    for line, targets in results.items():
        for t in targets:
            by = "; ".join(f"{k} {a}→{b}: {n}" for (k, a, b), n in t.differences.most_common()) or "-"
            say(f"| {'v3' if line == '3' else '2.8'} | {t.name} | {sum(t.differences.values())} | {by} |")
    for line, targets in results.items():
        for t in targets:
            for example in list(t.examples.values())[:8]:
                say(f"{line}, {t.name}: e.g. {example}")
    for line, targets in results.items():
        for layercache in targets[:2]:
            check(not layercache.differences, f"{line}: {layercache.name} answered every call as no cache does "
                                              f"(seed {SEED})")


if __name__ == "__main__":
    main()
