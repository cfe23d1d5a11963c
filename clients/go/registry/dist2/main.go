// Command registry is distribution 2.8's registry (v2.8.3, from the Go module proxy)
// with layercache's provider: `make registry` copies distribution's module, applies
// distribution.patch (which adds `storage.cache.blobdescriptor: layercache` and binds
// the metadata cache's storage middleware) and builds this command against the copy.
// With the provider selected, garbage-collect purges from the cache what it deleted.
// The storage drivers are filesystem, inmemory and s3-aws; authentication htpasswd,
// silly and token; and the pull-through proxy.
package main

import (
	"context"
	"fmt"
	_ "net/http/pprof"
	"os"
	"strings"

	"github.com/docker/distribution/configuration"
	"github.com/docker/distribution/registry"
	_ "github.com/docker/distribution/registry/auth/htpasswd"
	_ "github.com/docker/distribution/registry/auth/silly"
	_ "github.com/docker/distribution/registry/auth/token"
	_ "github.com/docker/distribution/registry/proxy"
	"github.com/docker/distribution/registry/storage"
	"github.com/docker/distribution/registry/storage/driver/factory"
	_ "github.com/docker/distribution/registry/storage/driver/filesystem"
	_ "github.com/docker/distribution/registry/storage/driver/inmemory"
	_ "github.com/docker/distribution/registry/storage/driver/middleware/redirect"
	_ "github.com/docker/distribution/registry/storage/driver/s3-aws"
	"github.com/docker/libtrust"
	"github.com/layercache/go-layercache/dist2"
	"github.com/spf13/cobra"
)

func main() {
	if config := layercacheConfig(); config != nil {
		registry.GCCmd.Run = func(cmd *cobra.Command, _ []string) { collectGarbage(cmd, config) }
	}
	registry.RootCmd.Execute() //nolint:errcheck // as distribution's own main
}

// layercacheConfig is the configuration garbage-collect will read when it selects the
// layercache provider; nil otherwise (distribution reports what it cannot read).
func layercacheConfig() *configuration.Configuration {
	if len(os.Args) < 3 || os.Args[1] != "garbage-collect" {
		return nil
	}
	f, err := os.Open(os.Args[len(os.Args)-1])
	if err != nil {
		return nil
	}
	defer f.Close()
	config, err := configuration.Parse(f)
	if err != nil {
		return nil
	}
	cache := config.Storage["cache"]
	word, ok := cache["blobdescriptor"]
	if !ok {
		word = cache["layerinfo"]
	}
	if s, _ := word.(string); !strings.EqualFold(s, "layercache") {
		return nil
	}
	return config
}

// collectGarbage is 2.8's garbage-collect (MarkAndSweep on the raw driver) that then
// takes out of the cache what it deleted (layercache.Metadata.Collected).
func collectGarbage(cmd *cobra.Command, config *configuration.Configuration) {
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
	o, err := dist2.FromConfiguration(config)
	if err != nil {
		fail("layercache", err)
	}
	provider, err := dist2.New(o)
	if err != nil {
		fail("layercache", err)
	}
	raw, err := factory.Create(config.Storage.Type(), config.Storage.Parameters())
	if err != nil {
		fail("failed to construct "+config.Storage.Type()+" driver", err)
	}
	d := &dist2.Deletions{StorageDriver: raw}
	k, err := libtrust.GenerateECP256PrivateKey()
	if err != nil {
		fail("signing key", err)
	}
	ctx := context.Background()
	reg, err := storage.NewRegistry(ctx, d, storage.Schema1SigningKey(k))
	if err != nil {
		fail("failed to construct registry", err)
	}
	flag := func(name string) bool { on, _ := cmd.Flags().GetBool(name); return on }
	err = storage.MarkAndSweep(ctx, d, reg, storage.GCOpts{DryRun: flag("dry-run"), RemoveUntagged: flag("delete-untagged")})
	blobs, links, purgeErr := provider.Metadata(0).Collected(ctx, d.Paths)
	if err != nil {
		fail("failed to garbage collect", err)
	}
	if purgeErr != nil {
		fail("layercache: purging what garbage collection deleted", purgeErr)
	}
	fmt.Printf("layercache: purged %d deleted blobs and %d deleted repository paths from the cache\n", blobs, links)
}
