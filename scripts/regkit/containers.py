"""Container images and podman: the images of `make images` (images/), built FROM
scratch with podman from Debian's packages (mmdebstrap), the module and the registries
of `make registry`, reproducibly (SOURCE_DATE_EPOCH: the same inputs give the same
digests); their compressed sizes; and podman's own settings for these machines."""

import datetime
import functools
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile

from .base import ROOT, check, say

PREFIX = os.environ.get("IMAGE_PREFIX", "localhost/layercache")
SOURCE = os.environ.get("IMAGE_SOURCE", "https://github.com/layercache/layercache")
SUITE = "bookworm"
MIRRORS = [f"deb http://deb.debian.org/debian {SUITE} main",
           f"deb http://deb.debian.org/debian {SUITE}-updates main",
           f"deb http://deb.debian.org/debian-security {SUITE}-security main"]
# What redis-server and redis-cli link (redis-tools' Depends but adduser, which would
# bring passwd, debconf and perl), with base-files (os-release).
REDIS_LIBRARIES = ["base-files", "libc6", "libatomic1", "libjemalloc2", "liblzf1", "libssl3", "libsystemd0"]
# Documentation but each package's copyright, translations and character set
# converters are left out.
TRIM = ["path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/man/*",
        "path-exclude=/usr/share/locale/*", "path-exclude=/usr/share/lintian/*", "path-exclude=/usr/share/info/*",
        "path-exclude=/usr/lib/x86_64-linux-gnu/gconv/*"]
REGISTRY_CONFIG = {"3": "/etc/distribution/config.yml", "2.8": "/etc/docker/registry/config.yml"}
DISTRIBUTION = {"3": "3.1.1", "2.8": "2.8.3"}
# Rootful podman 4.3 on these machines: runc (crun fails on hybrid cgroups), cgroupfs,
# and ulimits below the host's (podman's defaults are refused).
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


@functools.cache
def podman_env():
    """The environment of podman with CONTAINERS_CONF, written once per run."""
    path = os.path.join(ROOT, "build", "images", "containers.conf")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": path}


def podman(*args, ok=False, merge=False):
    """`podman args`; its stdout (and stderr with merge), None when it failed (which
    fails the run unless ok)."""
    out = subprocess.run(["podman", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                         text=True, env=podman_env())
    if out.returncode and not ok:
        check(False, f"podman {' '.join(args[:4])}: {(out.stderr or out.stdout).strip()[-2000:]}")
    return out.stdout if out.returncode == 0 else None


def ours():
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        return re.search(r'^version = "(.*)"', f.read(), re.M).group(1)


def revision():
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def source_date_epoch():
    """SOURCE_DATE_EPOCH, or the last commit's time."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    out = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True, text=True)
    return int(out.stdout.strip())


def mmdebstrap(target, packages, epoch, trim):
    """Debian's packages extracted into the directory target (no maintainer scripts)."""
    cmd = ["mmdebstrap", "--quiet", "--variant=extract", "--format=directory", "--include=" + ",".join(packages),
           *(f"--dpkgopt={o}" for o in (TRIM if trim else [])), SUITE, target, *MIRRORS]
    os.makedirs(os.path.dirname(target), exist_ok=True)
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
    check(out.returncode == 0, f"mmdebstrap {','.join(packages)}" + (f": {out.stderr[-2000:]}" if out.returncode else ""))


def copy_from(tree, root, *paths):
    for path in paths:
        dest = os.path.join(root, path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(os.path.join(tree, path), dest, follow_symlinks=False)


def write(root, path, text, mode=0o644):
    dest = os.path.join(root, path)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "w") as f:
        f.write(text)
    os.chmod(dest, mode)


def users(root, name, uid):
    write(root, "etc/passwd", f"root:x:0:0:root:/root:/sbin/nologin\n{name}:x:{uid}:{uid}:{name}:/nonexistent:/sbin/nologin\n")
    write(root, "etc/group", f"root:x:0:\n{name}:x:{uid}:\n")


def debian_version(tree, package):
    """The upstream version of an extracted package, from its changelog."""
    with gzip.open(os.path.join(tree, "usr", "share", "doc", package, "changelog.Debian.gz"), "rt") as f:
        return re.match(r"\S+ \((?:\d+:)?([^-)]+)", f.readline()).group(1)


def contexts(work, epoch):
    """The build contexts of every image under work, each with its Containerfile:
    (name, context, labels) per image; the version label is the image's tag."""
    packages = os.path.join(work, "packages")
    mmdebstrap(packages, ["redis-tools", "ca-certificates", "busybox-static"], epoch, trim=False)
    module = os.path.join(work, "liblayercache.so")  # the release build, without its symbols
    out = subprocess.run(["strip", "--strip-unneeded", "-o", module, os.path.join(ROOT, "target", "release", "liblayercache.so")],
                         capture_output=True, text=True)
    check(out.returncode == 0, "the release module stripped " + out.stderr[-1000:])
    version, images = ours(), []

    redis = os.path.join(work, "redis")
    mmdebstrap(os.path.join(redis, "rootfs"), REDIS_LIBRARIES, epoch, trim=True)
    copy_from(packages, os.path.join(redis, "rootfs"), "usr/bin/redis-check-rdb", "usr/bin/redis-cli",
              "usr/share/doc/redis-tools/copyright")
    os.symlink("redis-check-rdb", os.path.join(redis, "rootfs", "usr", "bin", "redis-server"))
    users(os.path.join(redis, "rootfs"), "redis", 999)
    os.makedirs(os.path.join(redis, "data"))
    shutil.copy(module, os.path.join(redis, "liblayercache.so"))
    shutil.copy(os.path.join(ROOT, "images", "redis", "redis.conf"), redis)
    shutil.copy(os.path.join(ROOT, "images", "redis", "Containerfile"), redis)
    redis_version = debian_version(packages, "redis-tools")
    images.append(("redis", redis,
                   {"title": "layercache/redis", "version": f"{redis_version}-layercache{version}",
                    "licenses": "BSD-3-Clause AND Apache-2.0",
                    "description": f"Debian 12's Redis {redis_version} with the layercache module"}))

    mod = os.path.join(work, "module")
    copy_from(packages, os.path.join(mod, "rootfs"), "bin/busybox", "usr/share/doc/busybox-static/copyright")
    shutil.copy(module, os.path.join(mod, "liblayercache.so"))
    shutil.copy(os.path.join(ROOT, "images", "module", "Containerfile"), mod)
    images.append(("module", mod,
                   {"title": "layercache/module", "version": version, "licenses": "Apache-2.0",
                    "description": "the layercache Redis module, for an init container (copies it to /modules)"}))

    certs = sorted(os.listdir(os.path.join(packages, "usr", "share", "ca-certificates", "mozilla")))
    bundle = "".join(open(os.path.join(packages, "usr", "share", "ca-certificates", "mozilla", c)).read() for c in certs)
    for line, config in REGISTRY_CONFIG.items():
        reg = os.path.join(work, f"registry-{line}")
        root = os.path.join(reg, "rootfs")
        write(root, "etc/ssl/certs/ca-certificates.crt", bundle)
        copy_from(packages, root, "usr/share/doc/ca-certificates/copyright")
        users(root, "nonroot", 65532)
        os.makedirs(os.path.join(root, "tmp"))
        os.chmod(os.path.join(root, "tmp"), 0o1777)
        os.makedirs(os.path.join(reg, "data"))
        shutil.copy(os.path.join(ROOT, "build", "registry", f"registry-{line}"), os.path.join(reg, "registry"))
        shutil.copy(os.path.join(ROOT, "images", "registry", f"config-{line}.yml"), os.path.join(reg, "config.yml"))
        with open(os.path.join(ROOT, "images", "registry", "Containerfile")) as f:
            write(reg, "Containerfile", f.read().replace("@CONFIG@", config))
        dist = DISTRIBUTION[line]
        images.append((f"registry-{line}", reg,
                       {"title": "layercache/registry", "version": f"{dist}-layercache{version}",
                        "licenses": "Apache-2.0",
                        "description": f"distribution {dist}'s registry with the layercache provider"}))
    return images


def repository(name):
    return f"{PREFIX}/{name.split('-')[0]}"


def build_all(epoch=None):
    """Builds every image (again, from nothing: no cache); {name: (reference, image ID)}."""
    epoch = source_date_epoch() if epoch is None else epoch
    work = tempfile.mkdtemp(prefix="images-", dir=os.path.join(ROOT, "build"))
    try:
        built = {}
        created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        common = {"source": SOURCE, "revision": revision(), "created": created}
        for name, context, labels in contexts(work, epoch):
            ref = f"{repository(name)}:{labels['version']}"
            labels = {**common, **labels}
            podman("build", "--no-cache", "--quiet", "--timestamp", str(epoch), "--identity-label=false",
                   *(a for k, v in labels.items() for a in ("--label", f"org.opencontainers.image.{k}={v}")),
                   "-t", ref, context)
            built[name] = (ref, podman("image", "inspect", "--format", "{{.Id}}", ref).strip())
            say(f"built {ref} ({built[name][1][:12]})")
        return built
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pushed(ref, work):
    """The image as a registry holds it (gzip layers, in an OCI layout under work): its
    manifest digest and its compressed size (manifest, config and layers)."""
    layout = os.path.join(work, re.sub(r"[^a-z0-9.]", "_", ref))
    shutil.rmtree(layout, ignore_errors=True)
    os.makedirs(work, exist_ok=True)
    podman("push", "--quiet", "--compression-format", "gzip", ref, f"oci:{layout}")
    with open(os.path.join(layout, "index.json")) as f:
        desc = json.load(f)["manifests"][0]
    with open(os.path.join(layout, "blobs", "sha256", desc["digest"][7:])) as f:
        manifest = json.load(f)
    size = desc["size"] + manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    return desc["digest"], size
