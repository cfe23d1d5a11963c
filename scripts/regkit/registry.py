"""distribution's registries: Debian's docker-registry and those `make registry` builds,
on a filesystem or S3 store, with a blob-descriptor cache."""

import http.client
import json
import os
import subprocess
import threading
import urllib.parse
import urllib.request

from .base import ROOT, check, free_port, wait_for
from .images import OCI_MANIFEST, digest_of


class Registry:
    """`binary serve` with deletes and the blob-descriptor cache `cache` ("" for none,
    "inmemory", "redis", "layercache"); redis is the configuration's redis section,
    params more storage.cache keys. storage is the driver's section (a filesystem store
    under work by default; S3.storage() for S3), redirect False turns storage redirects
    off, secret is http.secret (one for every registry behind a round robin), env more
    environment; metadata True turns the metadata cache on (the storage middleware
    layercache of the registries of `make registry`). Registry.at is a client of a
    registry this run did not start (in a container)."""

    host, headers = "127.0.0.1", {}

    def __init__(self, work, redis, binary="docker-registry", cache="redis", params=None, name="registry",
                 storage=None, redirect=True, secret=None, env=None, metadata=False):
        self.port, self.debug_port = free_port(), free_port()
        self.binary, self.name, self._conns = binary, name, threading.local()
        self.config = os.path.join(work, f"{name}.json")
        storage = dict(storage or {"filesystem": {"rootdirectory": f"{work}/storage"}})
        storage.update({"cache": {"blobdescriptor": cache, **(params or {})}, "delete": {"enabled": True}})
        if not redirect:
            storage["redirect"] = {"disable": True}
        config = {
            "version": "0.1",
            "log": {"level": "info"},
            "storage": storage,
            "redis": redis,
            "http": {"addr": f"127.0.0.1:{self.port}",
                     "debug": {"addr": f"127.0.0.1:{self.debug_port}", "prometheus": {"enabled": True, "path": "/metrics"}},
                     **({"secret": secret} if secret else {})},
        }
        if metadata:
            config["middleware"] = {"storage": [{"name": "layercache"}]}
        with open(self.config, "w") as f:
            json.dump(config, f, indent=2)  # JSON is YAML
        self.log_path = os.path.join(work, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary, "serve", self.config], stdout=self.log, stderr=self.log,
                                     env={**os.environ, **(env or {})})
        wait_for(name, lambda: self.status("GET", "/v2/") == 200 or self.proc.poll() is not None)
        check(self.proc.poll() is None, f"{name} started {self.logged()[-2000:] if self.proc.poll() is not None else ''}")

    @classmethod
    def at(cls, host, port, name, headers=None):
        registry = cls.__new__(cls)
        registry.host, registry.port, registry.name, registry._conns = host, port, name, threading.local()
        registry.headers = headers or {}
        return registry

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def garbage_collect(self, *flags):
        """`registry garbage-collect` on this registry's configuration; its output."""
        out = subprocess.run([self.binary, "garbage-collect", *flags, self.config], capture_output=True, text=True)
        if out.returncode != 0:
            check(False, f"{self.name}: garbage-collect {' '.join(flags)}: {out.stderr[-2000:]}")
        return out.stdout + out.stderr

    def request(self, method, path, body=None, headers=None):
        """One call on a kept-alive connection (as registry clients make them), its
        body read, no redirect followed (a 307 to the store is the answer); (status,
        headers), or (None, None) when it failed."""
        path = urllib.parse.urlsplit(path)._replace(scheme="", netloc="").geturl() if path.startswith("http") else path
        while True:
            conn = getattr(self._conns, "conn", None)  # one per thread
            reused = conn is not None
            try:
                if not reused:
                    conn = self._conns.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                conn.request(method, path, body, {"Accept": OCI_MANIFEST, **self.headers, **(headers or {})})
                r = conn.getresponse()
                r.read()
                return r.status, r.headers
            except (http.client.HTTPException, OSError):
                conn.close()
                self._conns.conn = None
                if not reused:  # else the registry had closed the kept-alive connection: once more
                    return None, None

    def upload(self, repo, data):
        """A blob pushed as clients do (a POST, then a PUT of the data to its Location);
        the PUT's status."""
        status, headers = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        if status != 202:
            return status
        location = urllib.parse.urljoin(f"http://{self.address}", headers["Location"])
        location += ("&" if "?" in location else "?") + "digest=" + urllib.parse.quote(digest_of(data))
        return self.request("PUT", location, data, {"Content-Type": "application/octet-stream"})[0]

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


def build_patched_registry(line="2.8"):
    """distribution's registry with the provider, as `make registry` builds it
    (scripts/build-registry.sh): line "2.8" (v2.8.3 with the patch) or "3" (v3.1.1)."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "build-registry.sh")], capture_output=True, text=True)
    check(out.returncode == 0, f"the registries built with the provider {out.stderr.strip()[-2000:]}")
    return os.path.join(ROOT, "build", "registry", f"registry-{line}")
