#!/usr/bin/env python3
"""The registry with the layercache provider on the Redis registries run in production
(make test-registry): distribution 2.8's and v3's registries as `make registry` builds
them, skopeo, redis-servers and sentinels with the module, all on free loopback ports.
Runs, on 2.8 each, on v3 sentinel, outage, cluster and local-tier (each line configured
its own way: 2.8 Harbor-style, v3 with its own redis section):

1. acl: an ACL user allowed only the provider's commands and `~blobs::* ~repository::*`.
   With a wrong password the registry pushes, pulls and HEADs from storage and logs the
   WRONGPASS once; a second registry with the right password serves HEADs from the
   cache, and ACL LOG stays empty.
2. sentinel: primary and replica with the module, three sentinels; the registry
   configured Harbor-style (redis.addr the sentinels, storage.cache.sentinelMasterSet).
   A loop pulls two images with skopeo and HEADs their blobs while the primary is
   SIGKILLed: every pull and HEAD succeeds, none takes longer than the failover time
   plus one dial timeout, and the new master counts the registry's cache hits.
3. sentinel-tls: the same with TLS everywhere (client certificates, tls-replication,
   TLS sentinels) and a password.
4. outage: one Redis, stopped during the loop: every pull succeeds, the HEADs' p99 during
   the outage is within 2x the p99 before; started again, cache hits resume within one
   back-off window (at most the provider's 8 s, plus 2 s for the miss that refills it).
5. cluster: 3 masters and 3 replicas with the module in the blob scheme, the registry
   seeded with the masters: push and pull spread the cache over the masters that hold
   the digests, and HEADs are hits; then, under the loop, 1,500 slots move between
   masters (redis-cli --cluster reshard: MIGRATE, ASK, MOVED) and the master holding the
   shared layer is SIGKILLed: every pull succeeds, REPOSTAT of every blob is the same
   before and after, and the promoted replica serves hits.
6. local-tier: two registries with the local tier (storage.cache.localentries) on one
   Redis: a second pull sends Redis no command (commandstats: only the tracking
   connection's PINGs), and a blob deleted through one registry's API is a 404 on the
   other at once, though the other's tier held it.

Each run prints its figures. Standard library only; exits non-zero on the first failed
check. Failure steps end only the processes this script started, by their pid.
"""

import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from regkit import (TLS, Redis, Registry, build_patched_registry, check, cluster_nodes, cluster_ok, pull,
                         push_and_pull, say, wait_for)

DIAL_TIMEOUT = 1.0  # seconds, redis.dialtimeout in every configuration here
BACKOFF_MAX = 8.0  # the provider's default Options.BackoffMax
PROVIDER_COMMANDS = ["+ping", "+role", "+layercache.stat", "+layercache.setdescriptor", "+layercache.clear",
                     "+layercache.repostat", "+layercache.reposetdescriptor", "+layercache.repoclear"]


class Line:
    """A distribution line: its registry (make registry), and how its configuration says
    where Redis is: 2.8's redis.addr with Harbor's keys under storage.cache, or v3's own
    redis section (addrs, mastername, username, tls)."""

    def __init__(self, name):
        self.name, self.binary = name, build_patched_registry(name)

    def registry(self, work, addrs, password=None, username=None, master=None, tls=None, params=None, name="registry"):
        if self.name == "2.8":
            section = {"addr": ",".join(addrs), "dialtimeout": f"{DIAL_TIMEOUT:g}s", "readtimeout": "1s",
                       "writetimeout": "1s", "pool": {"maxidle": 16, "maxactive": 64, "idletimeout": "300s"}}
            cache = {"username": username, "sentinelMasterSet": master}
            if tls:
                cache.update(enabletls=True, tlscafile=tls.path("ca.crt"), tlscertfile=tls.path("client.crt"),
                             tlskeyfile=tls.path("client.key"))
        else:
            section = {"addrs": addrs, "dialtimeout": f"{DIAL_TIMEOUT:g}s", "readtimeout": "1s", "writetimeout": "1s",
                       "poolsize": 64, "connmaxidletime": "300s", "username": username, "mastername": master}
            if tls:
                section["tls"] = {"certificate": tls.path("client.crt"), "key": tls.path("client.key"),
                                  "rootcas": [tls.path("ca.crt")]}
            cache = {}
        section["password"] = password
        drop = lambda d: {k: v for k, v in d.items() if v is not None}
        return Registry(work, drop(section), self.binary, "layercache", {**drop(cache), **(params or {})}, name=name)


class Loop(threading.Thread):
    """Pulls both images with skopeo, then HEADs each of their blobs `heads` times, over
    and over until stopped; records (start, kind, seconds, ok) of every request."""

    def __init__(self, work, registry, images, heads=5):
        super().__init__(daemon=True)
        self.work, self.registry, self.images, self.heads = work, registry, images, heads
        self.samples, self.halt = [], threading.Event()

    def run(self):
        n = 0
        while not self.halt.is_set():
            for repo, (blobs, manifest) in self.images.items():
                n += 1
                dest = os.path.join(self.work, "loop", str(n))
                start = time.time()
                got = pull(self.registry, repo, dest)
                self.samples.append((start, "pull", time.time() - start, got == manifest))
                shutil.rmtree(dest, ignore_errors=True)
                for _ in range(self.heads):
                    for digest, (size, _) in blobs.items():
                        start = time.time()
                        reply = self.registry.head_blob(repo, digest)
                        self.samples.append((start, "head", time.time() - start, reply == (200, size)))

    def stop(self):
        self.halt.set()
        self.join(timeout=120)
        check(not self.is_alive(), "the loop stopped")

    def latencies(self, kind, since=0, until=float("inf")):
        return sorted(s for t, k, s, _ in self.samples if k == kind and since <= t < until)

    def failures(self):
        return [(k, s) for _, k, s, ok in self.samples if not ok]


def p99(xs):
    return xs[min(len(xs) - 1, len(xs) * 99 // 100)]


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


def acl_run(work, line):
    say("run acl: an ACL user, a wrong password and then the right one")
    redis = Redis(work, [])
    redis.cli("ACL", "SETUSER", "registry", "on", ">registry-secret", "-@all", *PROVIDER_COMMANDS, "~blobs::*", "~repository::*")
    wrong = line.registry(work, [f"127.0.0.1:{redis.port}"], "wrong", username="registry", name="registry-wrong")
    right = None
    try:
        images = push_and_pull(work, wrong, random.Random(os.urandom(8)))
        for repo, (blobs, _) in images.items():
            check(all(wrong.head_blob(repo, d) == (200, size) for d, (size, _) in blobs.items()),
                  f"{repo}: with a wrong password every blob is served from storage")
        log = wrong.logged()
        check(log.count("Redis unreachable") == 1 and "WRONGPASS" in log,
              "the registry logged the wrong password once, as the reason the cache is skipped")
        check(redis.counters()["layercache_repostat_calls"] == 0, "and no cache call reached the module")
        log = redis.cli("ACL", "LOG")
        reasons = {line for n, line in enumerate(log) if n and log[n - 1] == "reason"}
        check(reasons == {"auth"}, f"ACL LOG has the failed logins, and nothing else ({reasons})")
        redis.cli("ACL", "LOG", "RESET")

        right = line.registry(work, [f"127.0.0.1:{redis.port}"], "registry-secret", username="registry",
                              name="registry-right")
        for repo, (blobs, _) in images.items():
            for digest, (size, _) in blobs.items():
                right.head_blob(repo, digest)  # a miss: the registry caches it
                before = redis.counters()
                served = right.head_blob(repo, digest) == (200, size)
                after = redis.counters()
                hits = after["layercache_repostat_hits"] - before["layercache_repostat_hits"]
                misses = after["layercache_repostat_misses"] - before["layercache_repostat_misses"]
                check(served and hits > 0 and misses == 0,
                      f"{repo}: with the right password HEAD {digest[:19]}… is a cache hit ({hits} REPOSTAT hits)")
        check([line for line in redis.cli("ACL", "LOG") if line] == [], "ACL LOG stays empty: the user needed no key and no command beyond its rules")
    finally:
        for r in (wrong, right):
            if r:
                r.stop()
        redis.stop()


def settled(replica, sentinels):
    """The replica in sync, and every sentinel knowing it and the two other sentinels."""
    if replica.info("replication").get("master_link_status") != "up":
        return False
    for s in sentinels:
        master = s.cli("SENTINEL", "MASTER", "layercache", check_ok=False)
        if field(master, "num-other-sentinels") != "2" or field(master, "num-slaves") != "1":
            return False
    return True


def field(lines, name):
    """The value after name in a redis-cli flat reply."""
    return lines[lines.index(name) + 1] if name in lines else None


def sentinel_run(work, line, tls=None):
    say(f"run sentinel{'-tls' if tls else ''}: the primary SIGKILLed while a loop pulls")
    password = "redis-secret" if tls else None
    primary = Redis(work, [], tls=tls, password=password, name="primary")
    replica = Redis(work, [], args=["--replicaof", "127.0.0.1", str(primary.port)], tls=tls, password=password, name="replica")
    sentinels = []
    for i in range(3):
        conf = os.path.join(work, f"sentinel-{i}", "sentinel.conf")
        os.makedirs(os.path.dirname(conf))
        with open(conf, "w") as f:
            f.write(f"sentinel monitor layercache 127.0.0.1 {primary.port} 2\n"
                    "sentinel down-after-milliseconds layercache 1000\nsentinel failover-timeout layercache 10000\n"
                    + (f"sentinel auth-pass layercache {password}\n" if password else ""))
        sentinels.append(Redis(work, None, tls=tls, name=f"sentinel-{i}", conf=conf))
    registry = line.registry(work, [f"127.0.0.1:{s.port}" for s in sentinels], password, master="layercache", tls=tls)
    loop = None
    try:
        check("through sentinels" in registry.logged(), "the registry reaches Redis through the sentinels")
        images = push_and_pull(work, registry, random.Random(os.urandom(8)))
        wait_for("the replica in sync and the sentinels settled", lambda: settled(replica, sentinels))
        loop = Loop(work, registry, images)
        loop.start()
        time.sleep(3)
        killed = time.time()
        primary.kill()
        wait_for("the replica promoted", lambda: sentinels[0].cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "layercache",
                                                                   check_ok=False)[-1:] == [str(replica.port)])
        failover = time.time() - killed
        wait_for("cache hits on the new master", lambda: replica.counters()["layercache_repostat_hits"] > 0, 60)
        resumed = time.time() - killed
        time.sleep(3)
        loop.stop()
        pulls, heads = loop.latencies("pull"), loop.latencies("head")
        worst = max(pulls[-1], heads[-1])
        say(f"{len(pulls)} pulls and {len(heads)} HEADs, {len(loop.failures())} failed; failover {failover:.2f} s, "
            f"cache hits on the new master {resumed:.2f} s after the kill; worst pull {ms(pulls[-1])}, worst HEAD {ms(heads[-1])}")
        check(loop.failures() == [], "every pull and every HEAD in the loop succeeded")
        check(len(loop.latencies("pull", since=killed, until=killed + resumed)) > 0, "pulls ran during the failover")
        check(worst <= failover + DIAL_TIMEOUT, f"no request waited longer than the failover plus one dial timeout "
              f"({ms(worst)} <= {ms(failover + DIAL_TIMEOUT)})")
        counters = replica.counters()
        check(counters["layercache_repostat_hits"] > 0 and replica.info("replication")["role"] == "master",
              f"the new master serves the registry's cache ({counters['layercache_repostat_hits']} REPOSTAT hits)")
    finally:
        if loop and loop.is_alive():
            loop.halt.set()
        registry.stop()
        for s in [*sentinels, replica, primary]:
            s.stop()


def outage_run(work, line):
    say("run outage: Redis stopped during the loop, then started again")
    redis = Redis(work, [])
    registry = line.registry(work, [f"127.0.0.1:{redis.port}"])
    loop = None
    try:
        images = push_and_pull(work, registry, random.Random(os.urandom(8)))
        loop = Loop(work, registry, images)
        loop.start()
        time.sleep(2)  # warm: every blob cached
        warm = time.time()
        time.sleep(8)
        stopped = time.time()
        redis.kill()
        time.sleep(8)
        restarted = time.time()
        redis.start()
        wait_for("cache hits after the restart", lambda: redis.counters()["layercache_repostat_hits"] > 0, 30)
        resumed = time.time() - restarted
        time.sleep(1)
        loop.stop()
        before, during = loop.latencies("head", warm, stopped), loop.latencies("head", stopped, restarted)
        say(f"{len(loop.latencies('pull'))} pulls, {len(loop.failures())} failed; HEAD p99 before {ms(p99(before))} "
            f"({len(before)} HEADs), during the outage {ms(p99(during))} ({len(during)}), worst {ms(during[-1])}; "
            f"cache hits {resumed:.2f} s after the restart")
        check(loop.failures() == [], "every pull and every HEAD succeeded through the outage")
        check(p99(during) <= 2 * p99(before), "the HEADs' p99 during the outage is within 2x the p99 before")
        # One window (at most BACKOFF_MAX) until the probe, then a miss that refills the
        # cache and the hit after it.
        check(resumed <= BACKOFF_MAX + 2, f"cache hits resumed within one back-off window ({resumed:.2f} s <= {BACKOFF_MAX:g} s + 2 s)")
        log = registry.logged()
        check(log.count("Redis unreachable") == 1 and log.count("Redis answers again") == 1,
              "the registry logged the outage once and the return once")
    finally:
        if loop and loop.is_alive():
            loop.halt.set()
        registry.stop()
        redis.stop()


def cluster_view(node):
    """{port: (node id, [slots])} of the masters, as node sees them (CLUSTER SHARDS is
    7.0+, CLUSTER NODES everywhere)."""
    masters = {}
    for line in node.cli("CLUSTER", "NODES"):
        fields = line.split()
        if "master" in fields[2] and "fail" not in fields[2]:
            slots = []
            for r in fields[8:]:
                if not r.startswith("["):
                    a, _, b = r.partition("-")
                    slots += range(int(a), int(b or a) + 1)
            masters[int(fields[1].split("@")[0].split(":")[1])] = (fields[0], slots)
    return masters


def repostats(node, images):
    return {(repo, d): node.cli("-c", "LAYERCACHE.REPOSTAT", repo, d) for repo, (blobs, _) in images.items() for d in blobs}


def cluster_run(work, line):
    say("run cluster: the registry on a 3-master, 3-replica cluster; resharding and a failover under the loop")
    nodes = cluster_nodes(work, 6)
    masters = [x for x in nodes if x.cli("ROLE")[0] == "master"]
    registry = line.registry(work, [f"127.0.0.1:{x.port}" for x in masters])
    loop = None
    try:
        check("cluster seeded by" in registry.logged(), "the registry reaches Redis as a cluster")
        images = push_and_pull(work, registry, random.Random(os.urandom(8)))
        calls = {x.port: sum(v for k, v in x.counters().items() if k.endswith("_calls")) for x in masters}
        digests = {d for blobs, manifest in images.values() for d in [*blobs, manifest]}
        owners = {x.port for x in masters for d in digests if x.cli("EXISTS", d, check_ok=False) == ["1"]}
        say("LAYERCACHE calls per master after push and pull: " + ", ".join(f"{p}: {n}" for p, n in sorted(calls.items())))
        check(all(calls[p] > 0 for p in owners) and len(owners) >= 2,
              f"the registry's cache traffic is spread over the {len(owners)} masters that hold its {len(digests)} digests")
        for repo, (blobs, _) in images.items():
            for digest, (size, _) in blobs.items():
                before = sum(x.counters()["layercache_repostat_hits"] for x in masters)
                check(registry.head_blob(repo, digest) == (200, size) and sum(x.counters()["layercache_repostat_hits"] for x in masters) > before,
                      f"{repo}: HEAD {digest[:19]}… served from the cache")
        stats = repostats(masters[0], images)
        check(all(len(v) == 3 for v in stats.values()), f"REPOSTAT of all {len(stats)} (repository, blob) pairs before resharding")

        loop = Loop(work, registry, images)
        loop.start()
        time.sleep(2)
        view = cluster_view(masters[0])
        source = max(view, key=lambda p: len(view[p][1]))
        target = min(view, key=lambda p: len(view[p][1]))
        started = time.time()
        out = subprocess.run(["redis-cli", "--cluster", "reshard", f"127.0.0.1:{source}", "--cluster-from", view[source][0],
                              "--cluster-to", view[target][0], "--cluster-slots", "1500", "--cluster-yes"],
                             capture_output=True, text=True, timeout=600)
        check(out.returncode == 0, f"1500 slots moved from {source} to {target} under the loop in {time.time() - started:.1f} s")
        moved = cluster_view(masters[0])
        check(len(moved[target][1]) == len(view[target][1]) + 1500, "the target master holds the 1500 slots")
        check(repostats(masters[0], images) == stats, "REPOSTAT of every pair is the same after resharding: nothing lost")

        # Fail the master that holds the shared layer over: SIGKILL, its replica promoted.
        shared = next(iter(set(images["team-a/app"][0]) & set(images["team-b/app"][0])))
        victim = next(x for x in masters if x.cli("EXISTS", shared, check_ok=False) == ["1"])
        replica = next(x for x in nodes if x.cli("ROLE")[0] == "slave" and x.info("replication").get("master_port") == str(victim.port))
        killed = time.time()
        victim.kill()
        survivors = [x for x in nodes if x is not victim]
        wait_for("the replica promoted", lambda: replica.cli("ROLE")[0] == "master"
                 and all(cluster_ok(x) for x in survivors), 60)
        failover = time.time() - killed
        base = replica.counters()["layercache_repostat_hits"]
        wait_for("cache hits on the promoted replica", lambda: replica.counters()["layercache_repostat_hits"] > base, 60)
        resumed = time.time() - killed
        time.sleep(2)
        loop.stop()
        pulls, heads = loop.latencies("pull"), loop.latencies("head")
        say(f"{len(pulls)} pulls and {len(heads)} HEADs through resharding and failover, {len(loop.failures())} failed; "
            f"failover {failover:.2f} s, cache hits on the promoted replica {resumed:.2f} s after the kill; "
            f"worst pull {ms(pulls[-1])}, worst HEAD {ms(heads[-1])}")
        check(loop.failures() == [], "every pull and every HEAD in the loop succeeded")
        check(max(pulls[-1], heads[-1]) <= failover + DIAL_TIMEOUT,
              f"no request waited longer than the failover plus one dial timeout ({ms(max(pulls[-1], heads[-1]))})")
        check(repostats(survivors[0], images) == stats, "REPOSTAT of every pair is the same after the failover")
    finally:
        if loop and loop.is_alive():
            loop.halt.set()
        registry.stop()
        for x in nodes:
            x.stop()


def commandstats(redis):
    """{command: calls} from INFO commandstats."""
    stats = {}
    for name, value in redis.info("commandstats").items():
        stats[name.removeprefix("cmdstat_")] = int(value.split(",")[0].removeprefix("calls="))
    return stats


def tier_run(work, line):
    say("run local-tier: two registries with the local tier on one Redis")
    redis = Redis(work, [])
    addrs = [f"127.0.0.1:{redis.port}"]
    a = line.registry(work, addrs, params={"localentries": 10000}, name="registry-a")
    b = line.registry(work, addrs, params={"localentries": 10000}, name="registry-b")
    try:
        for r in (a, b):
            wait_for("the local tier on", lambda: "local tier on" in r.logged(), 10)
        images = push_and_pull(work, a, random.Random(os.urandom(8)))
        # Pull both images twice more: the first pull after the pushes (team-b's push
        # changed the shared layer's descriptor, so its entries went) fills the tier,
        # the second is served from it.
        sent = {}
        for n in ("first", "second"):
            before = commandstats(redis)
            for repo, (_, manifest) in images.items():
                got = pull(a, repo, os.path.join(work, n, repo.replace("/", "-")))
                check(got == manifest, f"{repo}: pulled ({n} pull after the pushes)")
            after = commandstats(redis)
            sent[n] = {c: k - before.get(c, 0) for c, k in after.items() if k != before.get(c, 0) and c not in ("info", "ping")}
        say(f"commands the pulls after the pushes sent Redis: first {sent['first']}, second {sent['second']}")
        check(sent["first"] and sent["second"] == {}, "the second pull sent Redis no command: its Stats came from the tier")

        repo, (blobs, _) = next(iter(images.items()))
        digest, (size, _) = next(iter(blobs.items()))
        check(b.head_blob(repo, digest) == (200, size), f"registry-b: HEAD {digest[:19]}… (a miss, kept in its tier)")
        calls = commandstats(redis).get("layercache.repostat", 0)
        check(b.head_blob(repo, digest) == (200, size) and commandstats(redis).get("layercache.repostat", 0) == calls,
              "registry-b: HEAD again, from its tier")
        check(a.status("DELETE", f"/v2/{repo}/blobs/{digest}") == 202, f"registry-a: DELETE {repo} {digest[:19]}…")
        check(b.head_blob(repo, digest) == (404, None), "registry-b: HEAD at once after the delete is a 404")
    finally:
        for r in (a, b):
            r.stop()
        redis.stop()


def main():
    runs = [("acl", acl_run), ("sentinel", sentinel_run), ("sentinel-tls", lambda w, l: sentinel_run(w, l, TLS(w))),
            ("outage", outage_run), ("cluster", cluster_run), ("local-tier", tier_run)]
    # Every run on 2.8; on v3 the failover, the outage, the cluster and the tier.
    v3_runs = {"sentinel", "outage", "cluster", "local-tier"}
    only = sys.argv[1:]
    for line in (Line("2.8"), Line("3")):
        for name, run in runs:
            if only and name not in only or line.name == "3" and name not in v3_runs:
                continue
            say(f"distribution {'2.8' if line.name == '2.8' else 'v3'}:")
            work = tempfile.mkdtemp(prefix=f"layercache-{name}-")
            try:
                run(work, line)
            finally:
                if not os.environ.get("KEEP"):
                    shutil.rmtree(work, ignore_errors=True)
    say("all checks passed")


if __name__ == "__main__":
    main()
