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
3. A registry that speaks LAYERCACHE.*: distribution's cmd/registry built from Debian's
   source (golang-github-docker-distribution-dev) with clients/go/registry/app.go.patch,
   `blobdescriptor: layercache`; push and pull, its cache traffic in INFO layercache, and
   HEADs served from the cache.

Standard library only; exits non-zero on the first failed check.
"""

import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, "target", "release", "liblayercache.so")
REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
TTL = 3600


def check(cond, what):
    if not cond:
        sys.exit(f"test-registry: FAILED: {what}")
    print(f"test-registry: ok: {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, ready, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if ready():
            return
        time.sleep(0.1)
    sys.exit(f"test-registry: FAILED: timed out waiting for {what}")


class Redis:
    """redis-server on a free port, driven through redis-cli."""

    def __init__(self, work, module_args):
        self.port = free_port()
        self.dir = os.path.join(work, "redis")
        os.makedirs(self.dir)
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", self.dir, "--logfile", "redis.log", "--enable-module-command", "yes"]
        if module_args is not None:
            argv += ["--loadmodule", MODULE] + module_args
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("redis-server", lambda: self.cli("PING", check_ok=False) == ["PONG"])

    def cli(self, *args, check_ok=True):
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True)
        if check_ok and (out.returncode != 0 or out.stdout.startswith("ERR") or "(error)" in out.stdout):
            sys.exit(f"test-registry: FAILED: redis-cli {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout.splitlines()

    def keys(self):
        return sorted(self.cli("--scan"))

    def stop(self):
        self.cli("SHUTDOWN", "NOSAVE", check_ok=False)
        self.proc.wait(timeout=30)


class Registry:
    """docker-registry serve, with the Redis blob-descriptor cache and deletes."""

    def __init__(self, work, redis_port, binary="docker-registry", cache="redis"):
        self.port = free_port()
        self.config = os.path.join(work, "registry.yml")
        with open(self.config, "w") as f:
            f.write(f"""version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {work}/storage
  cache:
    blobdescriptor: {cache}
  delete:
    enabled: true
redis:
  addr: 127.0.0.1:{redis_port}
http:
  addr: 127.0.0.1:{self.port}
""")
        self.log = open(os.path.join(work, "registry.log"), "w")
        self.proc = subprocess.Popen([binary, "serve", self.config], stdout=self.log, stderr=self.log)
        wait_for("docker-registry", lambda: self.status("GET", "/v2/") == 200)

    def request(self, method, path):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     headers={"Accept": OCI_MANIFEST})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.headers
        except OSError:
            return None, None

    def status(self, method, path):
        return self.request(method, path)[0]

    def head_blob(self, repo, digest):
        status, headers = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        return status, int(headers["Content-Length"]) if status == 200 else None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def blob(layout, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest[7:]), "wb") as f:
        f.write(data)
    return digest, len(data)


def layer_tar(name, rng):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        content = rng.randbytes(20000 + rng.randrange(20000))
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(content), 0
        tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def oci_layout(path, layers, rng):
    """An OCI image layout with one image of `layers` (uncompressed tars) tagged v1;
    returns {digest: (size, mediatype)} of its blobs and the manifest digest."""
    os.makedirs(os.path.join(path, "blobs", "sha256"))
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    blobs, descs, diff_ids = {}, [], []
    for tar in layers:
        gz = gzip.compress(tar, mtime=0)
        digest, size = blob(path, gz)
        blobs[digest] = (size, OCI_LAYER)
        descs.append({"mediaType": OCI_LAYER, "digest": digest, "size": size})
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-11-29T00:00:00Z",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "config": {"Labels": {"nonce": str(rng.random())}}}).encode()
    config_digest, config_size = blob(path, config)
    blobs[config_digest] = (config_size, OCI_CONFIG)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
                           "layers": descs}).encode()
    manifest_digest, manifest_size = blob(path, manifest)
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, f)
    return blobs, manifest_digest


def skopeo(*args):
    out = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"test-registry: FAILED: skopeo {' '.join(args)}: {out.stderr}")


def readme_block(marker):
    text = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"<!-- recipe:" + marker + r" -->\s*```sh\n(.*?)\n\s*```", text, re.S)
    if not m:
        sys.exit(f"test-registry: FAILED: no recipe:{marker} block in README.md")
    return "\n".join(line.strip() for line in m.group(1).splitlines())


def run_readme(marker, redis, work, replace=()):
    """Runs a README recipe with `redis-cli` reaching the test's server."""
    script = readme_block(marker)
    for old, new in replace:
        if old not in script:
            sys.exit(f"test-registry: FAILED: README recipe:{marker} no longer says {old!r}")
        script = script.replace(old, new)
    bindir = os.path.join(work, "bin")
    os.makedirs(bindir, exist_ok=True)
    with open(os.path.join(bindir, "redis-cli"), "w") as f:
        f.write(f'#!/bin/sh\nexec {shutil.which("redis-cli")} -p {redis.port} "$@"\n')
    os.chmod(os.path.join(bindir, "redis-cli"), 0o755)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ["PATH"])
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, env=env, cwd=work)
    if out.returncode != 0:
        sys.exit(f"test-registry: FAILED: README recipe:{marker}: {out.stdout}{out.stderr}")
    return out.stdout


def push_and_pull(work, registry):
    """Two images sharing a layer, pushed to two repositories and pulled back."""
    rng = random.Random(os.urandom(8))
    shared = layer_tar("shared", rng)
    images = {}
    for repo in ["team-a/app", "team-b/app"]:
        layout = os.path.join(work, "layouts", repo.replace("/", "-"))
        blobs, manifest = oci_layout(layout, [shared, layer_tar(repo.replace("/", "-"), rng)], rng)
        skopeo("copy", f"oci:{layout}:v1", f"docker://127.0.0.1:{registry.port}/{repo}:v1", "--dest-tls-verify=false")
        pulled = os.path.join(work, "pulled", repo.replace("/", "-"))
        os.makedirs(os.path.dirname(pulled), exist_ok=True)
        skopeo("copy", f"docker://127.0.0.1:{registry.port}/{repo}:v1", f"oci:{pulled}:v1", "--src-tls-verify=false")
        got = json.load(open(os.path.join(pulled, "index.json")))["manifests"][0]["digest"]
        check(got == manifest, f"{repo}: pulled back the pushed manifest {manifest[:19]}…")
        images[repo] = (blobs, manifest)
    return images


def garbage_collect(work, redis, registry, images):
    """Deletes team-b's image, runs the README recipe (which collects); checks what is
    left."""
    status = registry.status("DELETE", f"/v2/team-b/app/manifests/{images['team-b/app'][1]}")
    check(status == 202, "team-b/app's manifest deleted through the registry API")
    # The README's recipe runs the collector; its output is kept to check against.
    gc_log = os.path.join(work, "gc.log")
    collector = [("registry garbage-collect /etc/docker/registry/config.yml",
                  f"docker-registry garbage-collect {registry.config} 2>&1 | tee {gc_log}")]
    out = run_readme("gc", redis, work, replace=collector)
    deleted = set(re.findall(r"blob eligible for deletion: (sha256:[0-9a-f]{64})", open(gc_log).read()))
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
    out = run_readme("gc", redis, work, replace=collector)
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
    print("test-registry: run 1: the module loaded from the start, ttl", TTL)
    redis = Redis(work, ["ttl", str(TTL)])
    registry = Registry(work, redis.port)
    try:
        images = push_and_pull(work, registry)
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
    print("test-registry: run 2: the module loaded after the registry filled the cache")
    redis = Redis(work, None)
    registry = Registry(work, redis.port)
    try:
        images = push_and_pull(work, registry)
        redis.cli("MODULE", "LOAD", MODULE)
        run_readme("index", redis, work)
        module_reads_the_registry(redis, images)
        indexed = redis.cli("HKEYS", "layercache::repos::" + next(iter(images["team-b/app"][0])))
        check(indexed != [], "the INDEX loop indexed the registry's memberships")
        garbage_collect(work, redis, registry, images)
    finally:
        registry.stop()
        redis.stop()


def build_patched_registry(work):
    """distribution's cmd/registry from Debian's source tree, with the provider patch."""
    tree = os.path.join(work, "gopath", "src", "github.com", "docker", "distribution")
    shutil.copytree("/usr/share/gocode/src/github.com/docker/distribution", tree, symlinks=True)
    patch = os.path.join(ROOT, "clients", "go", "registry", "app.go.patch")
    out = subprocess.run(["patch", "-p1", "-i", patch], cwd=tree, capture_output=True, text=True)
    check(out.returncode == 0, f"the provider patch applies to Debian's distribution {out.stderr.strip()}")
    binary = os.path.join(work, "registry")
    gopath = os.pathsep.join([os.path.join(work, "gopath"), os.path.join(ROOT, "clients", "go"), "/usr/share/gocode"])
    env = dict(os.environ, GO111MODULE="off", GOPATH=gopath)
    out = subprocess.run(["go", "build", "-o", binary, "github.com/docker/distribution/cmd/registry"],
                         env=env, capture_output=True, text=True)
    check(out.returncode == 0, f"cmd/registry built with the patch {out.stderr.strip()[-2000:]}")
    return binary


def info_counters(redis):
    return {k: int(v) for k, v in (l.split(":", 1) for l in redis.cli("INFO", "layercache")
                                   if l.startswith("layercache_") and ":" in l)}


def third_run(work):
    print("test-registry: run 3: a registry built with the layercache provider")
    binary = build_patched_registry(work)
    redis = Redis(work, [])
    registry = Registry(work, redis.port, binary=binary, cache="layercache")
    try:
        check("using layercache blob descriptor cache" in open(os.path.join(work, "registry.log")).read(),
              "the registry says it uses the layercache provider")
        images = push_and_pull(work, registry)
        counters = info_counters(redis)
        print("test-registry: INFO layercache after push and pull: " +
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
                before = info_counters(redis)
                check(registry.head_blob(repo, digest) == (200, size), f"{repo}: HEAD {digest[:19]}… = {size}")
                after = info_counters(redis)
                hits = after["layercache_repostat_hits"] - before["layercache_repostat_hits"]
                misses = after["layercache_repostat_misses"] - before["layercache_repostat_misses"]
                check(hits > 0 and misses == 0, f"{repo}: served from the cache ({hits} REPOSTAT hits, {misses} misses)")
    finally:
        registry.stop()
        redis.stop()


def main():
    runs = [first_run, second_run]
    if "--with-provider" in sys.argv:
        runs.append(third_run)
    for run in runs:
        work = tempfile.mkdtemp(prefix="layercache-registry-")
        try:
            run(work)
        finally:
            if not os.environ.get("KEEP"):
                shutil.rmtree(work, ignore_errors=True)
    print("test-registry: all checks passed")


if __name__ == "__main__":
    main()
