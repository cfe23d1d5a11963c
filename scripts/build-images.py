#!/usr/bin/env python3
"""make images: layercache/redis, layercache/module and layercache/registry (v3 and 2.8)
into podman's image store, from Debian's packages, the release module and the registries
of make registry (scripts/regkit/containers.py); each image's reference, ID, digest as
a registry holds it (gzip layers) and compressed size."""

import os
import shutil
import tempfile

from regkit.base import ROOT, say
from regkit.containers import build_all, pushed

work = tempfile.mkdtemp(prefix="pushed-", dir=os.path.join(ROOT, "build"))
try:
    for name, (ref, image_id) in build_all().items():
        digest, size = pushed(ref, work)
        say(f"{ref}: id {image_id[:12]}, digest {digest}, {size / 1e6:.1f} MB compressed")
finally:
    shutil.rmtree(work, ignore_errors=True)
