"""The kit of the registry tests and benchmarks (scripts/test-*.py, bench-registry.py),
a module per concern: base (checks, ports, waits, Go helpers), redis (servers, TLS,
cluster), registry (distribution's registries), images (OCI images, skopeo), s3 (moto),
proxy (delay, counting and round-robin proxies), recipes (the README's), measure (timing,
command counts, BENCHMARKS.md sections). Standard library only; `check` exits
non-zero on the first failed check."""

from .base import NAME, ROOT, check, free_port, go_build, say, wait_for
from .images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, blob, digest_of, layer_tar, oci_layout, pull, push_and_pull, skopeo
from .measure import CACHE_WORD, CACHES, METADATA, commands, interleaved, median_of, quantiles, timed, write_section
from .proxy import HTTPProxy, RedisDelay
from .recipes import collected, gc_recipe, readme_block, run_readme
from .redis import MODULE, REDIS_SERVER, TLS, Redis, cluster_nodes, cluster_ok
from .registry import Registry, build_patched_registry
from .s3 import S3
