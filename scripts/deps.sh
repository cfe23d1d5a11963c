#!/usr/bin/env bash
# Installs what building and testing layercache needs, when it is missing:
# redis-server and redis-cli (the server the tests run), libclang and a C compiler
# (bindgen in the redis-module crate). Debian/Ubuntu apt; Rust itself via rustup.
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v cc >/dev/null || missing+=(build-essential)
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
# Extra needs as `command:package`, or `/path:package` for a package that installs a path.
for extra in "$@"; do
  want=${extra%%:*}
  if [[ $want == /* ]]; then
    [ -e "$want" ] || missing+=("${extra#*:}")
  else
    command -v "$want" >/dev/null || missing+=("${extra#*:}")
  fi
done

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the packaged server; the tests and `make run` start their own.
  for service in redis-server docker-registry; do
    if [[ " ${missing[*]} " == *" $service "* ]]; then
      $sudo service "$service" stop >/dev/null 2>&1 || true
    fi
  done
fi
command -v cargo >/dev/null || { echo "deps: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
