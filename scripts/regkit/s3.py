"""A real S3 API server for the registries: moto's server mode (moto[server] from PyPI,
installed into build/moto), on a free loopback port, behind an httpproxy that adds S3's
round trip and counts the requests by operation."""

import os
import statistics
import subprocess
import sys
import urllib.error
import urllib.request

from .base import ROOT, check, free_port, wait_for
from .measure import timed
from .proxy import HTTPProxy

MOTO = "moto[server]==5.2.6"
VENV = os.path.join(ROOT, "build", "moto")


def moto_server():
    """The moto_server program, installed on first use."""
    binary = os.path.join(VENV, "bin", "moto_server")
    if not os.path.exists(binary):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        out = subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", MOTO], capture_output=True, text=True)
        check(out.returncode == 0, f"{MOTO} installed into {VENV} {out.stderr[-2000:]}")
    return binary


class S3:
    """moto on a free port and a counting proxy rtt_ms away from the registries.
    bucket(name) creates a bucket; storage(bucket) is a registry's storage driver section
    for it (both lines); counts() the requests through the proxy so far, by operation."""

    def __init__(self, work, rtt_ms=0):
        self.port = free_port()
        self.log = open(os.path.join(work, "moto.log"), "w")
        self.proc = subprocess.Popen([moto_server(), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=self.log)
        self.direct = f"http://127.0.0.1:{self.port}"
        wait_for("moto", lambda: self._status("GET", "/") == 200)
        self.proxy = HTTPProxy([self.direct], rtt_ms=rtt_ms, s3=True)

    def _status(self, method, path):
        try:
            with urllib.request.urlopen(urllib.request.Request(self.direct + path, method=method), timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def bucket(self, name):
        check(self._status("PUT", f"/{name}") == 200, f"S3 bucket {name} created")
        return name

    def storage(self, bucket):
        """The s3 driver's section, both lines: path-style requests to the proxy."""
        return {"s3": {"region": "us-east-1", "bucket": bucket, "regionendpoint": self.proxy.url,
                       "forcepathstyle": True, "secure": False, "v4auth": True,
                       "accesskey": "layercache", "secretkey": "layercache", "rootdirectory": "/registry"}}

    def counts(self):
        return self.proxy.counts()

    def server_ms(self, bucket, n=200):
        """moto's own time per request, without the proxy: the median of n HEADs of an
        absent object, in ms."""
        return statistics.median(timed(lambda: self._status("HEAD", f"/{bucket}/absent")) for _ in range(n))

    def stop(self):
        self.proxy.stop()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
