"""redis-servers and sentinels on free loopback ports, TLS for them, and a Redis Cluster
with the module."""

import os
import signal
import subprocess
import sys

from .base import NAME, check, free_port, wait_for, ROOT

MODULE = os.path.join(ROOT, "target", "release", "liblayercache.so")
REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")


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
