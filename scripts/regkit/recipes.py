"""The README's recipes (its `<!-- recipe:NAME -->` sh blocks), run as written, with
`redis-cli` reaching a test's server."""

import os
import re
import shutil
import subprocess
import sys

from .base import NAME, ROOT


def readme_block(marker):
    text = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"<!-- recipe:" + marker + r" -->\s*```sh\n(.*?)\n\s*```", text, re.S)
    if not m:
        sys.exit(f"{NAME}: FAILED: no recipe:{marker} block in README.md")
    return "\n".join(line.strip() for line in m.group(1).splitlines())


def collected(log):
    """The digests a `registry garbage-collect` output says it deleted."""
    return set(re.findall(r"blob eligible for deletion: (sha[0-9]+:[0-9a-f]+)", log))


def gc_recipe(redis, work, collector):
    """Runs the README's garbage-collection recipe with `collector` (a garbage-collect
    command line) for its `registry garbage-collect ...`; the recipe's output, and the
    digests the collector deleted (from the gc.log it keeps in work)."""
    out = run_readme("gc", redis, work, replace=[("registry garbage-collect /etc/docker/registry/config.yml", collector)])
    return out, collected(open(os.path.join(work, "gc.log")).read())


def run_readme(marker, redis, work, replace=()):
    """Runs a README recipe with `redis-cli` reaching the test's server."""
    script = readme_block(marker)
    for old, new in replace:
        if old not in script:
            sys.exit(f"{NAME}: FAILED: README recipe:{marker} no longer says {old!r}")
        script = script.replace(old, new)
    bindir = os.path.join(work, "bin")
    os.makedirs(bindir, exist_ok=True)
    with open(os.path.join(bindir, "redis-cli"), "w") as f:
        f.write(f'#!/bin/sh\nexec {shutil.which("redis-cli")} -p {redis.port} "$@"\n')
    os.chmod(os.path.join(bindir, "redis-cli"), 0o755)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ["PATH"])
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, env=env, cwd=work)
    if out.returncode != 0:
        sys.exit(f"{NAME}: FAILED: README recipe:{marker}: {out.stdout}{out.stderr}")
    return out.stdout
