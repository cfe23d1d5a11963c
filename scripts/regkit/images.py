"""OCI images built here (layers, configs, manifests in an OCI layout) and skopeo copies
of them to and from a registry."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

from .base import NAME, check

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(layout, data):
    digest = digest_of(data)
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
        diff_ids.append(digest_of(tar))
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
    error = skopeo("copy", f"docker://{registry.address}/{repo}:v1", f"oci:{dest}:v1", "--src-tls-verify=false", check_ok=False)
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
        skopeo("copy", f"oci:{layout}:v1", f"docker://{registry.address}/{repo}:v1", "--dest-tls-verify=false")
        got = pull(registry, repo, os.path.join(work, "pulled", repo.replace("/", "-")))
        check(got == manifest, f"{repo}: pulled back the pushed manifest {manifest[:19]}…" + ("" if got == manifest else f": {got}"))
        images[repo] = (blobs, manifest)
    return images
