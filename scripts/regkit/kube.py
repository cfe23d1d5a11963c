"""The Kubernetes manifests of deploy/: strict-decoded into k8s.io/api's types by
deploy/kubecheck, and played with `podman kube play` on a podman network of the run's
own, as podman 4.3 can take them."""

import base64
import json
import os
import subprocess

from .base import ROOT, check, go_build, say, wait_for
from .containers import podman, podman_env


def kubecheck_run(mode, paths):
    """deploy/kubecheck in mode (-json, -values) on paths; its outcome."""
    tool = go_build("github.com/layercache/layercache/deploy/kubecheck", module_dir=("deploy", "kubecheck"))
    return subprocess.run([tool, mode, *paths], capture_output=True, text=True)


def kubecheck(*paths):
    """kubecheck's verdict on the files (a line per document), and their documents as
    JSON."""
    out = kubecheck_run("-json", paths)
    check(out.returncode == 0, f"{', '.join(os.path.relpath(p, ROOT) for p in paths)} strict-decoded into k8s.io/api types"
          + (f": {out.stderr.strip()}" if out.returncode else ""))
    return out.stderr, json.loads(out.stdout)


def fs_group(path, group):
    """What the kubelet does with fsGroup: the volume's files in the group, writable by
    it, its directories setgid."""
    for root, dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, f) for f in files]:
            os.chown(name, -1, group, follow_symlinks=False)
            mode = os.lstat(name).st_mode
            os.chmod(name, mode | 0o060 | (0o2010 if name == root else 0))


def kubecheck_values(*paths):
    """Charts' values files, their Kubernetes fragments strict-decoded; as JSON."""
    out = kubecheck_run("-values", paths)
    counts = [l.split(": ")[-1].split()[0] for l in out.stderr.strip().splitlines()] if out.returncode == 0 else []
    check(out.returncode == 0, f"{', '.join(os.path.relpath(p, ROOT) for p in paths)}: their Kubernetes fragments "
          f"strict-decoded ({', '.join(counts) or out.stderr.strip()})")
    return json.loads(out.stdout)


class Network:
    """A podman network of the run's own (with DNS: a Deployment answers by its name)."""

    def __init__(self, name):
        self.name = name
        podman("network", "create", name)

    def remove(self):
        podman("network", "rm", "-f", self.name, ok=True)


class Play:
    """One file's documents (one Deployment and what it uses) played on network, as
    podman 4.3 takes them: its Service left out (podman skips it; the Deployment's pods
    answer to the Service's name as a network alias instead), a Secret created as the
    podman secret a secretKeyRef reads (a JSON object of base64 values; podman 4.3
    stores a played Secret as YAML and then fails to read it), and container ports not
    published (podman 4.3 binds each containerPort on the host, so a second replica
    fails), and the pod's fsGroup applied to its claims' volumes as the kubelet does
    (podman sets a new volume's owner from the image, racing when replicas start
    together); init containers kept once they ran (podman 4.3 removes a "once" init
    container racing its exit and then fails the play). edit(docs) may change the
    documents first. Every Deployment replica is a
    pod `<name>-pod-<i>`, its containers `<pod>-<container>`."""

    def __init__(self, network, docs, work, edit=None):
        docs = json.loads(json.dumps(docs))  # a copy
        if edit:
            edit(docs)
        kinds = lambda kind: [d for d in docs if d["kind"] == kind]
        (deployment,) = kinds("Deployment")
        self.name = deployment["metadata"]["name"]
        self.replicas = deployment["spec"].get("replicas", 1)
        alias = ([s["metadata"]["name"] for s in kinds("Service")] or [self.name])[0]
        self.volumes = [d["metadata"]["name"] for d in kinds("PersistentVolumeClaim")]
        self.secrets = []
        for secret in kinds("Secret"):
            values = {k: base64.b64encode(v.encode()).decode() for k, v in secret.get("stringData", {}).items()}
            values.update(secret.get("data", {}))
            name = secret["metadata"]["name"]
            out = subprocess.run(["podman", "secret", "create", name, "-"], input=json.dumps(values), text=True,
                                 capture_output=True, env=podman_env())
            check(out.returncode == 0, f"podman secret {name} created {out.stderr.strip()}")
            self.secrets.append(name)
        spec = deployment["spec"]["template"]["spec"]
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            container.pop("ports", None)
        if spec.get("initContainers"):  # podman 4.3 reads it from the Deployment's annotations
            deployment["metadata"].setdefault("annotations", {})["io.podman.annotations.init.container.type"] = "always"
        self.file = os.path.join(work, f"{self.name}.yaml")
        with open(self.file, "w") as f:
            f.write("\n---\n".join(json.dumps(d) for d in docs if d["kind"] not in ("Service", "Secret")))
        podman("kube", "play", "--network", f"{network.name}:alias={alias}", self.file)
        group = spec.get("securityContext", {}).get("fsGroup")
        for volume in self.volumes if group is not None else ():
            fs_group(podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).strip(), group)
        say(f"played {self.name} ({self.replicas} replica{'s' * (self.replicas > 1)}) as {alias} on {network.name}")

    def container(self, container, replica=0):
        return f"{self.name}-pod-{replica}-{container}"

    def ip(self, container, replica=0):
        networks = json.loads(podman("inspect", "--format", "{{json .NetworkSettings.Networks}}", self.container(container, replica)))
        return next(iter(networks.values()))["IPAddress"]

    def exec(self, container, *argv, replica=0):
        return podman("exec", self.container(container, replica), *argv)

    def wait(self, what, ready, seconds=120):
        wait_for(f"{self.name}: {what}", ready, seconds)

    def logs(self, container, replica=0):
        return podman("logs", self.container(container, replica), ok=True, merge=True) or ""

    def down(self):
        """The pods, their volumes and secrets removed."""
        podman("kube", "down", self.file, ok=True)
        for volume in self.volumes:
            podman("volume", "rm", "-f", volume, ok=True)
        for secret in self.secrets:
            podman("secret", "rm", secret, ok=True)

