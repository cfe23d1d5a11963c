// Command registry is distribution 2.8's registry (v2.8.3, from the Go module proxy)
// with layercache's provider: `make registry` copies distribution's module, applies
// distribution.patch (which adds `storage.cache.blobdescriptor: layercache`) and builds this
// command against the copy. The storage drivers are filesystem, inmemory and s3-aws;
// authentication htpasswd, silly and token; and the pull-through proxy.
package main

import (
	_ "net/http/pprof"

	"github.com/docker/distribution/registry"
	_ "github.com/docker/distribution/registry/auth/htpasswd"
	_ "github.com/docker/distribution/registry/auth/silly"
	_ "github.com/docker/distribution/registry/auth/token"
	_ "github.com/docker/distribution/registry/proxy"
	_ "github.com/docker/distribution/registry/storage/driver/filesystem"
	_ "github.com/docker/distribution/registry/storage/driver/inmemory"
	_ "github.com/docker/distribution/registry/storage/driver/middleware/redirect"
	_ "github.com/docker/distribution/registry/storage/driver/s3-aws"
)

func main() {
	registry.RootCmd.Execute() //nolint:errcheck // as distribution's own main
}
