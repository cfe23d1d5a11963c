#!/usr/bin/env python3
"""make test-images: the images of make images and the manifests of deploy/, with podman.

1. Every image built twice from nothing: the same image IDs, and the same digests as a
   registry holds them (gzip layers).
2. Each image's labels, user, ports and entrypoint, and its compressed size against
   the target (the official image's size where there is one).
3. deploy/*.yaml strict-decoded into k8s.io/api types, references checked
   (deploy/kubecheck); the charts' values snippets (deploy/charts/, deploy/harbor/):
   their containers, volumes and mounts strict-decoded; every image deploy/ names is
   one just built; twuni's configData run with the v3 image as that chart runs it.
4. On a podman network of the test's own, `podman kube play` of deploy/redis.yaml and
   deploy/registry.yaml (two replicas, the local tier and the metadata cache on a
   shared volume): an image pushed with skopeo through one replica and pulled through
   the other; the other's HEADs of its blobs served from Redis (the module's INFO: hits,
   no misses, and INFO commandstats); a blob deleted through one replica is a 404
   through the other at once, after the other cached it (its local tier included).
5. deploy/module-init.yaml: the module image as an init container beside a plain
   Redis (Debian's redis-server, no module of its own), which loads the module copied.
6. Harbor: the 2.8 image as Harbor's registry image, with the configuration Harbor's
   chart generates unchanged (deploy/harbor/) and the one variable of
   deploy/harbor/values.yaml; its blob HEADs served by layercache in Harbor's database.
7. Everything torn down: pods, volumes, secrets, the network, containers.
"""

import base64
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time

from regkit.base import ROOT, check, say, wait_for
from regkit.containers import build_all, podman, pushed
from regkit.images import OCI_LAYER, digest_of, layer_tar, oci_layout, pull, skopeo
from regkit.kube import Network, Play, kubecheck, kubecheck_values
from regkit.registry import Registry

# The targets of compressed sizes, and the official images' sizes they are held to.
TARGETS = {"redis": (35.0, "redis:8.8 is 54.3 MB"), "module": (5.0, ""),
           "registry-3": (20.1, "registry:3 (3.1.1) is 20.1 MB"), "registry-2.8": (10.1, "registry:2.8.3 is 10.1 MB")}
USERS = {"redis": "999:999", "module": "65532:65532", "registry-3": "65532:65532", "registry-2.8": "65532:65532"}
PORTS = {"redis": {"6379/tcp"}, "module": set(), "registry-3": {"5000/tcp", "5001/tcp"}, "registry-2.8": {"5000/tcp", "5001/tcp"}}
DEPLOY = os.path.join(ROOT, "deploy")
PODS = ("layercache-redis-pod-", "layercache-registry-pod-", "redis-with-layercache-pod-")  # what deploy/ plays
CONTAINER = "layercache-test-"  # the containers this test runs itself


def reproducible(work):
    """Two builds from nothing: {name: (reference, digest, size)} of the second."""
    first, second = build_all(), build_all()
    result = {}
    for name, (ref, image_id) in second.items():
        digest, size = pushed(image_id, os.path.join(work, "second"))
        first_digest, _ = pushed(first[name][1], os.path.join(work, "first"))
        check(first[name][1] == image_id and first_digest == digest,
              f"{name}: built twice, the same image ID {image_id[:19]} and digest {digest[:19]}…")
        result[name] = (ref, digest, size)
    return result


def inspected(images):
    for name, (ref, digest, size) in images.items():
        config = json.loads(podman("image", "inspect", ref))[0]["Config"]
        labels = config.get("Labels") or {}
        want = {k: v for k, v in labels.items() if k.startswith("org.opencontainers.image.")}
        check(all(want.get(f"org.opencontainers.image.{k}") for k in ("source", "revision", "version", "licenses")),
              f"{name}: labels source, revision, version, licenses ({want.get('org.opencontainers.image.version')}, "
              f"{want.get('org.opencontainers.image.licenses')})")
        check(ref.endswith(":" + want["org.opencontainers.image.version"]), f"{name}: tagged with its version ({ref})")
        check(config.get("User") == USERS[name], f"{name}: runs as {USERS[name]}")
        check(set(config.get("ExposedPorts") or {}) == PORTS[name], f"{name}: exposes {sorted(PORTS[name]) or 'no port'}")
        target, official = TARGETS[name]
        check(size / 1e6 <= target, f"{name}: {size / 1e6:.1f} MB compressed, at most {target} MB ({official or 'no official image'})")


def wait_http(registry, what):
    wait_for(what, lambda: registry.status("GET", "/v2/") == 200, seconds=120)


def module_counters(redis_play):
    lines = redis_play.exec("redis", "redis-cli", "INFO", "layercache").splitlines()
    return {k: int(v) for k, v in (l.split(":", 1) for l in lines if l.startswith("layercache_"))}


def commandstats(redis_play, command):
    lines = redis_play.exec("redis", "redis-cli", "INFO", "commandstats").splitlines()
    stat = next((l for l in lines if l.startswith(f"cmdstat_{command}:")), "")
    return int(stat.split("calls=")[1].split(",")[0]) if stat else 0


def registry_replicas(network, docs, work, rng):
    """Section 4; the Redis play, for the next sections."""
    redis = Play(network, [d for d in docs if d["metadata"]["name"] == "layercache-redis"], work)
    redis.wait("redis-server answering", lambda: (redis.exec("redis", "redis-cli", "ping") or "").strip() == "PONG")
    check("layercache" in redis.exec("redis", "redis-cli", "MODULE", "LIST"), "layercache/redis: the module loaded")
    check(redis.exec("redis", "redis-cli", "CONFIG", "GET", "maxmemory").split()[1] == str(1 << 30),
          "layercache/redis: the ConfigMap's conf.d read (maxmemory 1gb)")

    plays = [redis]
    try:
        registry = Play(network, [d for d in docs if d["metadata"]["name"] == "layercache-registry"], work)
        plays.append(registry)
        check(registry.replicas == 2, "deploy/registry.yaml: 2 replicas")
        a, b = (Registry.at(registry.ip("registry", i), 5000, f"replica {i}") for i in range(2))
        for r in (a, b):
            wait_http(r, f"{r.name} answering")
        for i in range(2):
            check("layercache: local tier on (tracking layercache-redis:6379)" in registry.logs("registry", i),
                  f"replica {i}: the local tier on, Redis reached by its Service's name")

        layout = os.path.join(work, "layout")
        blobs, manifest = oci_layout(layout, [layer_tar(f"layer{i}", rng) for i in range(3)], rng)
        skopeo("copy", f"oci:{layout}:v1", f"docker://{a.address}/team/app:v1", "--dest-tls-verify=false")
        layers = [d for d, (_, media) in blobs.items() if media == OCI_LAYER]
        before, heads = module_counters(redis), commandstats(redis, "layercache.repostat")
        for digest in blobs:
            check(b.head_blob("team/app", digest) == (200, blobs[digest][0]), f"HEAD {digest[:19]}… through replica 1: 200")
        after = module_counters(redis)
        hits = after["layercache_repostat_hits"] - before["layercache_repostat_hits"]
        misses = after["layercache_repostat_misses"] - before["layercache_repostat_misses"]
        check(hits >= len(blobs) and misses == 0,
              f"replica 1's HEADs of blobs pushed through replica 0 served from Redis: {hits} REPOSTAT hits, {misses} misses "
              f"(commandstats: {commandstats(redis, 'layercache.repostat') - heads} calls)")
        got = pull(b, "team/app", os.path.join(work, "pulled"))
        check(got == manifest, f"pushed through replica 0 with skopeo, pulled through replica 1: {manifest[:19]}…")

        gone = layers[0]
        for _ in range(3):  # replica 1 holds it (its local tier included)
            b.head_blob("team/app", gone)
        status, _ = a.request("DELETE", f"/v2/team/app/blobs/{gone}")
        check(status == 202, f"DELETE of a layer through replica 0: {status}")
        check(b.head_blob("team/app", gone)[0] == 404 and b.status("GET", f"/v2/team/app/blobs/{gone}") == 404,
              "HEAD and GET of it through replica 1 at once: 404")
        check(b.head_blob("team/app", layers[1])[0] == 200, "the image's other layers still there")
    except BaseException:
        for i in range(len(plays) > 1 and plays[1].replicas):
            say(f"replica {i}'s log, its end:\n" + plays[1].logs("registry", i)[-3000:])
        for play in plays:
            play.down()
        raise
    registry.down()
    return redis


def module_init(network, images, work):
    """Section 5."""
    _, docs = kubecheck(os.path.join(DEPLOY, "module-init.yaml"))

    def plain_redis(docs):  # Debian's redis-server stands for the user's image (none can be pulled here)
        (c,) = docs[0]["spec"]["template"]["spec"]["containers"]
        c["image"] = images["redis"][0]
        c["command"], c["args"] = ["/usr/bin/redis-server"], ["--port", "6379"] + c["args"][1:]

    play = Play(network, docs, work, edit=plain_redis)
    try:
        play.wait("redis-server answering", lambda: (play.exec("redis", "redis-cli", "ping") or "").strip() == "PONG")
        modules = play.exec("redis", "redis-cli", "MODULE", "LIST")
        check("/modules/liblayercache.so" in modules and "layercache" in modules,
              "a plain Redis with the module copied by the layercache/module init container: loaded from /modules")
        check(play.exec("redis", "redis-cli", "LAYERCACHE.ADD", "team/app", "sha256:" + "a" * 64).strip() == "1",
              "its LAYERCACHE.ADD answers")
    finally:
        play.down()


def harbor_token(work, repo):
    """A bearer token as Harbor's core issues them (RS256, the signing certificate in
    x5c), its certificate as the registry's root bundle."""
    key, cert = os.path.join(work, "token.key"), os.path.join(work, "root.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=harbor-token-ca"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], check=True, capture_output=True).stdout
    b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
    claims = {"iss": "harbor-token-issuer", "sub": "admin", "aud": "harbor-registry", "exp": now + 3600, "nbf": now - 60,
              "iat": now - 60, "jti": str(random.random()),
              "access": [{"type": "repository", "name": repo, "actions": ["pull", "push", "delete"]}]}
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing.encode(), check=True,
                               capture_output=True).stdout
    return f"{signing}.{b64(signature)}", cert


class Container:
    """A registry image run on the network with a configuration file mounted at path,
    the REGISTRY_* variables env, and more podman run arguments; a client of it."""

    def __init__(self, network, label, ref, config, path, env, *args, headers=None):
        self.name = f"{CONTAINER}{label}-{os.getpid()}"
        podman("run", "-d", "--name", self.name, "--network", network.name, "-v", f"{config}:{path}:ro",
               *(a for k, v in env.items() for a in ("-e", f"{k}={v}")), *args, ref, "serve", path)
        networks = json.loads(podman("inspect", "--format", "{{json .NetworkSettings.Networks}}", self.name))
        self.ip = networks[network.name]["IPAddress"]
        self.registry = Registry.at(self.ip, 5000, label, headers)
        wait_http(self.registry, f"{label} answering")

    def logs(self):
        return podman("logs", self.name, merge=True) or ""

    def remove(self):
        podman("rm", "-f", "-v", "-t", "5", self.name, ok=True)


def served(redis, registry, repo, rng, what):
    """A blob pushed through registry, then its HEAD answered from layercache."""
    data = rng.randbytes(30000)
    check(registry.upload(repo, data) == 201, f"{what}: a blob pushed")
    before = module_counters(redis)["layercache_repostat_hits"]
    check(registry.head_blob(repo, digest_of(data)) == (200, len(data)), f"{what}: its HEAD 200")
    hits = module_counters(redis)["layercache_repostat_hits"] - before
    check(hits >= 1, f"{what}: its HEAD served by layercache ({hits} REPOSTAT hit)")
    return digest_of(data)


def harbor(network, redis, images, work, rng):
    """Section 6."""
    with open(os.path.join(DEPLOY, "harbor", "values.yaml")) as f:
        values = f.read()
    check("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR" in values and "value: layercache" in values,
          "deploy/harbor/values.yaml sets REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR=layercache")
    repo = "library/app"
    token, root = harbor_token(work, repo)
    registry = Container(network, "harbor", images["registry-2.8"][0], os.path.join(DEPLOY, "harbor", "registry-config.yml"),
                         "/etc/registry/config.yml",
                         {"REGISTRY_HTTP_SECRET": "harbor-test-secret", "REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR": "layercache"},
                         "-v", f"{root}:/etc/registry/root.crt:ro", "--tmpfs", "/storage:rw,mode=1777",
                         headers={"Authorization": f"Bearer {token}"})
    try:
        check(Registry.at(registry.ip, 5000, "anonymous").status("GET", "/v2/") == 401,
              "Harbor's configuration: token authentication on (401 without a token)")
        check("using layercache blob descriptor cache" in registry.logs(),
              "Harbor's configuration (cache.layerinfo redis) and the variable: the provider is layercache")
        digest = served(redis, registry.registry, repo, rng, "Harbor's registry, with Harbor's token")
        in_db2 = redis.exec("redis", "redis-cli", "-n", "2", "EXISTS", f"blobs::{digest}").strip()
        check(in_db2 == "1", "its descriptor in Harbor's registry database (db 2)")
    finally:
        registry.remove()


def charts(network, redis, images, work, rng):
    """Section 3's values snippets: their fragments strict-decoded, every image they and
    deploy/ name one just built; twuni's configData run with the v3 image as the chart
    runs it (the chart's storage variable, its command)."""
    snippets = [os.path.join(DEPLOY, "charts", f) for f in sorted(os.listdir(os.path.join(DEPLOY, "charts")))]
    values = dict(zip(snippets, kubecheck_values(*snippets, os.path.join(DEPLOY, "harbor", "values.yaml"))))
    refs = {ref.split("/", 1)[1] for ref, _, _ in images.values()}  # layercache/<name>:<tag>
    named, tags = set(), set()
    for root, _, files in os.walk(DEPLOY):
        for f in files:
            with open(os.path.join(root, f)) as file:
                text = file.read()
            named |= set(re.findall(r"layercache/(?:redis|module|registry):[\w.-]+(?![\w.*-])", text))
            tags |= set(re.findall(r"^\s*tag: (\S+)", text, re.M))  # charts' image.tag
    check(named and named <= refs and tags <= {r.split(":")[1] for r in refs},
          f"deploy/ names only the images built ({', '.join(sorted(named | tags))})")
    (twuni,) = [v for p, v in values.items() if "twuni" in p]
    config = os.path.join(work, "twuni-config.yml")
    with open(config, "w") as f:
        json.dump(twuni["configData"], f)
    registry = Container(network, "twuni", images["registry-3"][0], config, "/etc/docker/registry/config.yml",
                         {"REGISTRY_HTTP_SECRET": "twuni-test-secret", "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/var/lib/registry"})
    try:
        check("layercache: local tier on (tracking layercache-redis:6379)" in registry.logs(),
              "twuni's configData: the local tier on, Redis reached by its Service's name")
        served(redis, registry.registry, "team/twuni", rng, "twuni's configData")
    finally:
        registry.remove()


def main():
    rng = random.Random(int(os.environ.get("SEED", random.randrange(1 << 32))))
    work = tempfile.mkdtemp(prefix="test-images-", dir=os.path.join(ROOT, "build"))
    try:
        images = reproducible(work)
        inspected(images)
        verdict, docs = kubecheck(*(os.path.join(DEPLOY, f) for f in ("redis.yaml", "registry.yaml")))
        say(verdict.strip())
        for pod in PODS:
            check(podman("pod", "exists", f"{pod}0", ok=True) is None, f"no pod {pod}0 before the test (podman pod rm -f it)")
        network = Network(f"layercache-test-{os.getpid()}")
        redis = None
        try:
            redis = registry_replicas(network, docs, work, rng)
            module_init(network, images, work)
            charts(network, redis, images, work, rng)
            harbor(network, redis, images, work, rng)
        finally:
            if redis:
                redis.down()
            network.remove()
        names = lambda *what: set((podman(*what, ok=True) or "").split())
        left = {n for n in names("ps", "-a", "--format", "{{.Names}}") | names("pod", "ps", "--format", "{{.Name}}")
                if n.startswith(PODS + (CONTAINER,))}
        left |= names("volume", "ls", "--format", "{{.Name}}") & {"layercache-redis", "layercache-registry"}
        left |= names("secret", "ls", "--format", "{{.Name}}") & {"layercache-registry"}
        left |= names("network", "ls", "--format", "{{.Name}}") & {network.name}
        check(not left, f"everything torn down: pods, containers, volumes, secrets, the network {sorted(left) or ''}")
        for name, (ref, digest, size) in images.items():
            say(f"{ref}: {size / 1e6:.1f} MB compressed, digest {digest}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say("all checks passed")


main()
