#!/usr/bin/env bash
# make registry: distribution's registry with layercache's provider, built from the Go
# module proxy into build/registry/. For 2.8 (v2.8.3): distribution's module copied to
# build/registry/distribution-v2.8.3 (again when the patch changes), clients/go/registry/dist2/distribution.patch
# applied, and clients/go/registry/dist2 (whose go.mod points at that copy) built as
# build/registry/registry-2.8. For v3 (v3.1.1): clients/go/registry/dist3, a main that
# registers the provider before distribution's own, built as build/registry/registry-3.
# Both as distribution's own release builds them, the binaries the images ship
# (make images): static (no cgo), stripped, reproducible (-trimpath), their version
# `<distribution's>+layercache.<ours>`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$PWD/build/registry
mkdir -p "$out"

tree=$out/distribution-v2.8.3
patchfile=$PWD/clients/go/registry/dist2/distribution.patch
stamp=$(sha256sum "$patchfile" | cut -d' ' -f1)
if [ "$(cat "$tree/.patched" 2>/dev/null)" != "$stamp" ]; then
  src=$(cd clients/go && go mod download -json github.com/docker/distribution@v2.8.3+incompatible | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$tree" && cp -r "$src" "$tree" && chmod -R u+w "$tree"
  patch -s -p1 -d "$tree" -i "$patchfile"
  printf 'module github.com/docker/distribution\n\ngo 1.16\n' >"$tree/go.mod"
  echo "$stamp" >"$tree/.patched"
fi
ours=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
build() { # dir, binary, distribution's version package, its version
  (cd "$1" && CGO_ENABLED=0 go build -trimpath -o "$out/$2" \
    -ldflags "-s -w -buildid= -X $3=$4+layercache.$ours" .)
}
build clients/go/registry/dist2 registry-2.8 github.com/docker/distribution/version.Version v2.8.3
build clients/go/registry/dist3 registry-3 github.com/distribution/distribution/v3/version.version v3.1.1
echo "build-registry: $out/registry-2.8 $out/registry-3"
