#!/usr/bin/env bash
# make test-go's last step: a scratch module adds the provider with `go get` (from this
# checkout, through a replace, as it would from the module proxy) and builds a program
# that makes distribution 2.8's provider with it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
go mod init example.com/scratch >/dev/null 2>&1
go mod edit -replace "github.com/layercache/go-layercache=$root/clients/go"
cat > main.go <<'GO'
package main

import (
	"fmt"

	"github.com/docker/distribution/registry/storage/cache"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/dist2"
)

func main() {
	var p cache.BlobDescriptorCacheProvider
	p, err := dist2.New(layercache.Options{Addrs: []string{"127.0.0.1:6379"}})
	fmt.Println(p != nil, err)
}
GO
# The module is not on the proxy until it is published: the replace answers for it at
# the zero pseudo-version, which is what go get then records.
go get github.com/layercache/go-layercache@v0.0.0-00010101000000-000000000000
go mod tidy
go build -o scratch .
./scratch
echo "go-get-check: a scratch module added the provider with go get and built"
