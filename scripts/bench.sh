#!/usr/bin/env bash
# Benchmarks; each writes its section of BENCHMARKS.md (bench/src/main.rs explains the
# method).
#   scripts/bench.sh               criterion benchmarks of the pure crate, then throughput,
#                                  memory and large multi-key operations against Redis's
#                                  own commands (make bench)
#   scripts/bench.sh instructions  instructions per operation under callgrind
#                                  (make bench-instructions)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || . "$HOME/.cargo/env"
scripts/deps.sh redis-benchmark:redis-tools taskset:util-linux

cargo build --release -p layercache -p layercache-bench
lcbench=target/release/lcbench
# The driver (and the redis-benchmark it starts) on CPU 1; the server pins itself to CPU 0.
client=(); [ "$(nproc)" -ge 2 ] && client=(taskset -c 1)

case "${1:-all}" in
  all)
    cargo bench -p layercache-core --bench validation -- --warm-up-time 1 --measurement-time 3 \
      | tee target/criterion.txt
    "$lcbench" criterion < target/criterion.txt
    "${client[@]}" "$lcbench" throughput
    "$lcbench" memory
    "${client[@]}" "$lcbench" schemes
    "${client[@]}" "$lcbench" large
    "${client[@]}" "$lcbench" learn
    ;;
  instructions)
    scripts/deps.sh valgrind:valgrind
    "$lcbench" instructions
    ;;
  *) echo "usage: $0 [instructions]" >&2; exit 2 ;;
esac
echo "bench: BENCHMARKS.md updated"
