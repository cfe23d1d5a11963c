#!/usr/bin/env bash
# make bench-go: the Go provider's latency against distribution's redis provider through
# a delay proxy (0.5 ms and 2 ms round trips): one node, Sentinel, the local tier, a
# pull-like mix and Redis Cluster (2.8), and against v3's redis provider; on
# redis-servers with the release module (and one without, for distribution's provider in
# the mix); writes its sections of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port) plain=$(free_port)
dir=$(mktemp -d)
trap 'for p in "$port" "$plain"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done; rm -rf "$dir"' EXIT
module=$PWD/target/release/liblayercache.so
redis-server --port "$port" --bind 127.0.0.1 --save "" --dir "$dir" --daemonize yes --logfile "$dir/redis.log" \
  --loadmodule "$module" >/dev/null
redis-server --port "$plain" --bind 127.0.0.1 --save "" --dir "$dir" --daemonize yes --logfile "$dir/plain.log" >/dev/null
for p in "$port" "$plain"; do
  for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
(cd clients/go && go build -o "$dir/lcbench-go" ./cmd/lcbench-go)
"$dir/lcbench-go" -addr "127.0.0.1:$port" -plain-addr "127.0.0.1:$plain" -server "$(command -v redis-server)" \
  -module "$module" -rtt 0.5ms,2ms -n "${N:-400}" -out "${OUT:-BENCHMARKS.md}"
# distribution v3: layercache's provider against v3's redis provider.
(cd clients/go/dist3 && go build -o "$dir/lcbench-v3" ./cmd/lcbench-v3)
"$dir/lcbench-v3" -addr "127.0.0.1:$port" -rtt 0.5ms,2ms -n "${N:-400}" -out "${OUT:-BENCHMARKS.md}"
echo "bench-go: ${OUT:-BENCHMARKS.md} updated"
