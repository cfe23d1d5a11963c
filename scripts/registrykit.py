"""What the registry tests share (scripts/test-registry.py, scripts/test-registry-ha.py):
redis-servers and sentinels on free loopback ports, a registry, OCI images built here,
skopeo, and the registry built with the layercache provider. Standard library only;
`check` exits non-zero on the first failed check."""

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, "target", "release", "liblayercache.so")
REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
NAME = os.path.basename(sys.argv[0]).removesuffix(".py")


def check(cond, what):
    if not cond:
        sys.exit(f"{NAME}: FAILED: {what}")
    print(f"{NAME}: ok: {what}", flush=True)


def say(what):
    print(f"{NAME}: {what}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, ready, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if ready():
            return
        time.sleep(0.05)
    sys.exit(f"{NAME}: FAILED: timed out after {seconds} s waiting for {what}")


class TLS:
    """A CA and a server and a client certificate it signs, for 127.0.0.1 and localhost,
    made with openssl."""

    def __init__(self, work):
        self.dir = os.path.join(work, "tls")
        os.makedirs(self.dir)
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self._openssl("req", "-x509", "-new", "-days", "2", "-subj", "/CN=layercache test CA", "-keyout", "ca.key", "-out", "ca.crt", *key)
        with open(os.path.join(self.dir, "san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        for name in ["server", "client"]:
            self._openssl("req", "-new", "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr", *key)
            self._openssl("x509", "-req", "-days", "2", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                          "-CAcreateserial", "-extfile", "san.ext", "-out", f"{name}.crt")

    def _openssl(self, *args):
        out = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{NAME}: FAILED: openssl {' '.join(args)}: {out.stderr}")

    def path(self, name):
        return os.path.join(self.dir, name)

    def server_args(self):
        """TLS only (port 0), client certificates required, TLS to masters too."""
        return ["--port", "0", "--tls-cert-file", self.path("server.crt"), "--tls-key-file", self.path("server.key"),
                "--tls-ca-cert-file", self.path("ca.crt"), "--tls-auth-clients", "yes", "--tls-replication", "yes"]

    def cli_args(self):
        return ["--tls", "--cacert", self.path("ca.crt"), "--cert", self.path("client.crt"), "--key", self.path("client.key")]


class Redis:
    """redis-server (or, with a configuration file and --sentinel, a sentinel) on a free
    port, driven through redis-cli. module_args None: no module. With tls, the port is
    its tls-port and it speaks TLS only; with password, requirepass (and masterauth)."""

    def __init__(self, work, module_args, args=(), tls=None, password=None, name="redis", port=None, conf=None):
        self.port, self.tls, self.password, self.name = port or free_port(), tls, password, name
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.argv = [REDIS_SERVER] + ([conf, "--sentinel"] if conf else [])
        self.argv += ["--bind", "127.0.0.1", "--dir", self.dir, "--logfile", "redis.log"]
        if not conf:
            self.argv += ["--save", "", "--enable-module-command", "yes"]
        self.argv += tls.server_args() + ["--tls-port", str(self.port)] if tls else ["--port", str(self.port)]
        if password:
            self.argv += ["--requirepass", password] + (["--masterauth", password] if not conf else [])
        if module_args is not None:
            self.argv += ["--loadmodule", MODULE] + module_args
        self.argv += list(args)
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.name, lambda: self.cli("PING", check_ok=False) == ["PONG"])

    def cli(self, *args, check_ok=True):
        argv = ["redis-cli", "-p", str(self.port)] + (self.tls.cli_args() if self.tls else [])
        if self.password:
            argv += ["--no-auth-warning", "-a", self.password]
        out = subprocess.run(argv + list(args), capture_output=True, text=True)
        if check_ok and (out.returncode != 0 or out.stdout.startswith(("ERR", "NOAUTH", "WRONGPASS")) or "(error)" in out.stdout):
            sys.exit(f"{NAME}: FAILED: redis-cli {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout.splitlines()

    def info(self, section):
        return dict(l.split(":", 1) for l in self.cli("INFO", section, check_ok=False) if ":" in l and not l.startswith("#"))

    def counters(self):
        return {k: int(v) for k, v in self.info("layercache").items() if k.startswith("layercache_")}

    def keys(self):
        return sorted(self.cli("--scan"))

    def kill(self):
        """SIGKILL, by the pid this test started."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self):
        if self.proc.poll() is None:
            self.cli("SHUTDOWN", "NOSAVE", check_ok=False)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Registry:
    """`binary serve` with a filesystem store, deletes, and the blob-descriptor cache
    `cache`; redis is the configuration's redis section, params more storage.cache keys."""

    def __init__(self, work, redis, binary="docker-registry", cache="redis", params=None, name="registry"):
        self.port, self.debug_port = free_port(), free_port()
        self.config = os.path.join(work, f"{name}.json")
        config = {
            "version": "0.1",
            "log": {"level": "info"},
            "storage": {"filesystem": {"rootdirectory": f"{work}/storage"},
                        "cache": {"blobdescriptor": cache, **(params or {})},
                        "delete": {"enabled": True}},
            "redis": redis,
            "http": {"addr": f"127.0.0.1:{self.port}",
                     "debug": {"addr": f"127.0.0.1:{self.debug_port}", "prometheus": {"enabled": True, "path": "/metrics"}}},
        }
        with open(self.config, "w") as f:
            json.dump(config, f, indent=2)  # JSON is YAML
        self.log_path = os.path.join(work, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary, "serve", self.config], stdout=self.log, stderr=self.log)
        wait_for(name, lambda: self.status("GET", "/v2/") == 200)

    def request(self, method, path):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     headers={"Accept": OCI_MANIFEST})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
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

    def metrics(self):
        """The registry's Prometheus metrics (http.debug), as text."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.debug_port}/metrics", timeout=30) as r:
            return r.read().decode()

    def logged(self):
        self.log.flush()
        return open(self.log_path).read()

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


def skopeo(*args, check_ok=True):
    """Runs skopeo; its error output, or None when it succeeded."""
    out = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True)
    if check_ok and out.returncode != 0:
        sys.exit(f"{NAME}: FAILED: skopeo {' '.join(args)}: {out.stderr}")
    return out.stderr if out.returncode != 0 else None


def pull(registry, repo, dest):
    """skopeo copy of repo:v1 into a new OCI layout at dest; the manifest digest, or
    skopeo's error when the pull failed."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    error = skopeo("copy", f"docker://127.0.0.1:{registry.port}/{repo}:v1", f"oci:{dest}:v1", "--src-tls-verify=false", check_ok=False)
    if error is not None:
        return error
    return json.load(open(os.path.join(dest, "index.json")))["manifests"][0]["digest"]


def push_and_pull(work, registry, rng):
    """Two images sharing a layer, pushed to team-a/app and team-b/app and pulled back;
    {repo: (blobs, manifest digest)}."""
    shared = layer_tar("shared", rng)
    images = {}
    for repo in ["team-a/app", "team-b/app"]:
        layout = os.path.join(work, "layouts", repo.replace("/", "-"))
        blobs, manifest = oci_layout(layout, [shared, layer_tar(repo.replace("/", "-"), rng)], rng)
        skopeo("copy", f"oci:{layout}:v1", f"docker://127.0.0.1:{registry.port}/{repo}:v1", "--dest-tls-verify=false")
        got = pull(registry, repo, os.path.join(work, "pulled", repo.replace("/", "-")))
        check(got == manifest, f"{repo}: pulled back the pushed manifest {manifest[:19]}…" + ("" if got == manifest else f": {got}"))
        images[repo] = (blobs, manifest)
    return images


def build_patched_registry(line="2.8"):
    """distribution's registry with the provider, as `make registry` builds it
    (scripts/build-registry.sh): line "2.8" (v2.8.3 with the patch) or "3" (v3.1.1)."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "build-registry.sh")], capture_output=True, text=True)
    check(out.returncode == 0, f"the registries built with the provider {out.stderr.strip()[-2000:]}")
    return os.path.join(ROOT, "build", "registry", f"registry-{line}")


def cluster_nodes(work, n):
    """n cluster-enabled servers with the module in the blob scheme, joined with one
    replica per master (redis-cli --cluster create). Each bus port is a free port of its
    own (the default, port + 10000, may be taken or past 65535)."""
    nodes = [Redis(work, ["scheme", "blob"], name=f"node-{i}",
                   args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                         "--cluster-port", str(free_port()), "--repl-diskless-sync-delay", "0"])
             for i in range(n)]
    out = subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{x.port}" for x in nodes],
                          "--cluster-replicas", "1", "--cluster-yes"], capture_output=True, text=True)
    check(out.returncode == 0, f"a cluster of {n} nodes created {out.stderr.strip()}")
    wait_for("cluster_state:ok on every node", lambda: all(cluster_ok(x) for x in nodes))
    # A replica that has not finished its first sync may not be promoted (its data is
    # too old: cluster-replica-validity-factor).
    wait_for("every replica in sync", lambda: all(x.info("replication").get("master_link_status") == "up"
                                                  for x in nodes if x.cli("ROLE")[0] == "slave"))
    return nodes


def cluster_ok(node):
    return "cluster_state:ok" in node.cli("CLUSTER", "INFO", check_ok=False)
