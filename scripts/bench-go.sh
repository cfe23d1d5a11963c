#!/usr/bin/env bash
# make bench-go: the Go provider's latency against distribution's redis provider through
# a delay proxy (0.5 ms and 2 ms round trips), on a redis-server with the release
# module; writes its section of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export GO111MODULE=off GOPATH="$PWD/clients/go:/usr/share/gocode"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
redis-server --port "$port" --bind 127.0.0.1 --save "" --dir "$dir" --daemonize yes --logfile "$dir/redis.log" \
  --loadmodule "$PWD/target/release/liblayercache.so" >/dev/null
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
go build -o "$dir/lcbench-go" github.com/layercache/go-layercache/cmd/lcbench-go
"$dir/lcbench-go" -addr "127.0.0.1:$port" -server "$(command -v redis-server)" -rtt 0.5ms,2ms -n "${N:-400}" -out BENCHMARKS.md
echo "bench-go: BENCHMARKS.md updated"
