#!/usr/bin/env bash
# A loopback Redis Cluster with layercache (scheme blob) on every node, for trying the
# module in a cluster by hand:
#   scripts/cluster.sh up     3 masters on ports $BASE..$BASE+2 (BASE=7100 by default),
#                             each with one replica on $BASE+3..$BASE+5; waits for
#                             cluster_state:ok
#   scripts/cluster.sh down   stops the servers this script started (by PID), and only those
# Data and logs live in build/cluster/<port>/. MODULE=path overrides the module
# (default: the release build); REDIS_SERVER=path the server binary.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${BASE:-7100}
dir=build/cluster
module=${MODULE:-$PWD/target/release/liblayercache.so}
server=${REDIS_SERVER:-redis-server}
ports=($(seq "$base" $((base + 5))))

# Waits up to 30 s for "$@" to succeed.
wait_for() {
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "cluster: timed out waiting for: $*" >&2; return 1
}

up() {
  if [ -z "${MODULE:-}" ]; then
    command -v cargo >/dev/null || . "$HOME/.cargo/env"
    cargo build --release -q -p layercache
  fi
  for port in "${ports[@]}"; do
    mkdir -p "$dir/$port"
    "$server" --port "$port" --bind 127.0.0.1 --daemonize yes \
      --dir "$PWD/$dir/$port" --pidfile "$PWD/$dir/$port/redis.pid" --logfile "$PWD/$dir/$port/redis.log" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 --cluster-require-full-coverage no \
      --save "" --appendonly no --loadmodule "$module" scheme blob
  done
  for port in "${ports[@]}"; do
    wait_for redis-cli -p "$port" ping || { tail -3 "$dir/$port/redis.log" >&2; exit 1; }
  done
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-replicas 1 --cluster-yes >"$dir/create.log"
  for port in "${ports[@]}"; do
    wait_for sh -c "redis-cli -p $port cluster info | grep -q cluster_state:ok"
  done
  echo "cluster: up on 127.0.0.1:${ports[0]}-${ports[5]} (redis-cli -c -p ${ports[0]})"
}

down() {
  for port in "${ports[@]}"; do
    pidfile="$dir/$port/redis.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    # Only a redis-server we started: its command line names our port.
    if grep -q -- "$port" "/proc/$pid/cmdline" 2>/dev/null; then
      kill "$pid"
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -rf "${dir:?}/$port"
  done
  echo "cluster: down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
