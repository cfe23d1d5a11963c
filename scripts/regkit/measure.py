"""What the registry benchmarks share: timing, quantiles, the Redis commands a registry
sent (INFO commandstats), and writing a section of BENCHMARKS.md."""

import os
import shutil
import statistics
import tempfile
import time

from .base import ROOT, say


def timed(fn):
    """fn's wall time in ms."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def quantiles(ms):
    """p50 and p99 of ms."""
    ms = sorted(ms)
    return ms[len(ms) // 2], ms[min(len(ms) - 1, len(ms) * 99 // 100)]


def median_of(runs, key, i=None):
    """The median over runs (dicts) of run[key] (or run[key][i])."""
    return statistics.median(r[key] if i is None else r[key][i] for r in runs)


def commands(redis):
    """Commands the registries sent so far, and the PINGs among them (the tier's
    tracking connection): on the module's server its LAYERCACHE commands (commandstats
    also counts what the module calls inside them), elsewhere every command."""
    total, pings = 0, 0
    for line in redis.cli("INFO", "commandstats"):
        if line.startswith("cmdstat_") and "calls=" in line:
            name, _, rest = line.partition(":")
            calls = int(rest.split("calls=")[1].split(",")[0])
            if name == "cmdstat_ping":
                pings += calls
            if name == "cmdstat_ping" or (name.startswith("cmdstat_layercache") if redis.name == "module" else name != "cmdstat_info"):
                total += calls
    return total, pings


# The caches the registry benchmarks compare, and each one's storage.cache.blobdescriptor
# (METADATA, the metadata cache on too, where storage requests are measured).
CACHES = ["none", "inmemory", "redis", "layercache", "layercache + tier"]
METADATA = "+ metadata cache"
CACHE_WORD = {"none": "", "inmemory": "inmemory", "redis": "redis", "layercache": "layercache", "layercache + tier": "layercache",
              METADATA: "layercache"}


def interleaved(rounds, lines, work, module, plain, run, label="", caches=CACHES):
    """run(folder, line, cache, redis) for every line and cache of caches, rounds times
    interleaved, each on an emptied Redis (plain, no module, for distribution's redis
    cache; else the module's) in a folder of its own; {(line, cache): [figures]}."""
    results = {}
    for rnd in range(rounds):
        for line in lines:
            for cache in caches:
                redis = plain if cache == "redis" else module
                redis.cli("FLUSHALL")
                folder = tempfile.mkdtemp(dir=work)
                figures = run(folder, line, cache, redis)
                shutil.rmtree(folder, ignore_errors=True)
                results.setdefault((line, cache), []).append(figures)
                say(f"{label}{line}, {cache}, round {rnd + 1}: {figures['summary']}")
    return results


def write_section(marker, heading, section):
    """Replaces BENCHMARKS.md's `<!-- marker -->` block with section (appended under
    heading when the file has none)."""
    print(section)
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read()
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text += f"\n## {heading}\n\n" + block + "\n"
    open(path, "w").write(text)
    say(f"BENCHMARKS.md: {marker} updated")
