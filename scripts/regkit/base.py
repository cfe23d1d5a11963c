"""What every registry script shares: the checkout, checks and messages, free loopback
ports, bounded waits, and Go helpers built from clients/go."""

import functools
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


@functools.cache
def go_build(package, module_dir=("clients", "go")):
    """Builds a Go main (package as `go build` takes it, in the module at module_dir of
    the checkout) into build/tools, once per run; its path."""
    binary = os.path.join(ROOT, "build", "tools", os.path.basename(package.rstrip("/")))
    out = subprocess.run(["go", "build", "-o", binary, package], cwd=os.path.join(ROOT, *module_dir),
                         capture_output=True, text=True)
    check(out.returncode == 0, f"{package} built {out.stderr.strip()[-2000:]}")
    return binary
