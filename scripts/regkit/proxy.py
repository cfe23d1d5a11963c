"""The proxies of the registry scripts, Go mains of clients/go/cmd: delayproxy in front of
Redis (a delay each way, the round trips counted) and httpproxy in front of S3 (a delay
per request, the requests counted by S3 operation) or of several registries (a round
robin)."""

import json
import subprocess

from .base import go_build


class _Counting:
    """A proxy process that prints its address, then answers each line on its standard
    input with its counts so far."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addr = self.proc.stdout.readline().strip()

    def _ask(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class RedisDelay(_Counting):
    """delayproxy in front of a Redis server: half of rtt_ms each way; round_trips()."""

    def __init__(self, port, rtt_ms):
        super().__init__([go_build("./cmd/delayproxy"), "-target", f"127.0.0.1:{port}", "-delay", f"{rtt_ms / 2}ms"])

    def round_trips(self):
        return int(self._ask())


class HTTPProxy(_Counting):
    """httpproxy in front of targets (base URLs), in turn; with s3, every request waits
    rtt_ms and counts() is by S3 operation, else by target."""

    def __init__(self, targets, rtt_ms=0, s3=False):
        argv = [go_build("./cmd/httpproxy"), "-delay", f"{rtt_ms}ms"] + (["-s3"] if s3 else [])
        super().__init__(argv + list(targets))
        self.url = f"http://{self.addr}"

    def counts(self):
        return json.loads(self._ask())
