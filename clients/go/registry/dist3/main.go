// Command registry is distribution v3's registry (v3.1.1, from the Go module proxy)
// with layercache's provider, unpatched: v3 takes registry options from a main before
// its root command runs (registry/middleware/registry.RegisterOptions), so with
// `storage.cache.blobdescriptor: layercache` this main builds the provider from the
// configuration (dist3.FromConfiguration: v3's redis section, and storage.cache) and
// registers it, before distribution's own caches, which would win: one it selects is
// applied after registered options. distribution would then meet a cache type it does
// not know and log "unknown cache type, caching disabled"; the main hides the word
// from it (hide) and logs what it did. The storage middleware `layercache` turns on the
// metadata cache over the same Redis (dist3.RegisterMiddleware), and garbage-collect
// purges from the cache what it deleted (dist3.CollectGarbage). The storage drivers
// are filesystem, inmemory and s3-aws; authentication htpasswd, silly and token; and
// the pull-through proxy.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/silly"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	registrymiddleware "github.com/distribution/distribution/v3/registry/middleware/registry"
	_ "github.com/distribution/distribution/v3/registry/proxy"
	"github.com/distribution/distribution/v3/registry/storage"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/middleware/redirect"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	layercachecore "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/dist3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

func main() {
	client, config, err := layercache()
	if err == nil {
		err = dist3.RegisterMiddleware(client)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "layercache: %v\n", err)
		os.Exit(1)
	}
	if client != nil {
		registry.GCCmd.Run = func(cmd *cobra.Command, _ []string) { collectGarbage(cmd, config, client) }
	}
	registry.RootCmd.Execute() //nolint:errcheck // as distribution's own main
}

// layercache registers the provider when the configuration `registry serve` or
// `registry garbage-collect` will read selects it, and returns its Client and the
// configuration (nil: not selected; a configuration that cannot be read is left to
// distribution to report).
func layercache() (*layercachecore.Client, *configuration.Configuration, error) {
	path := os.Getenv("REGISTRY_CONFIGURATION_PATH")
	if len(os.Args) > 2 && (os.Args[1] == "serve" || os.Args[1] == "garbage-collect") {
		path = os.Args[len(os.Args)-1]
	}
	if path == "" {
		return nil, nil, nil // distribution says what is missing
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil // as above
	}
	defer f.Close()
	config, err := configuration.Parse(f)
	if err != nil {
		return nil, nil, nil // as above
	}
	cache := config.Storage["cache"]
	word, ok := cache["blobdescriptor"]
	if !ok {
		word = cache["layerinfo"]
	}
	if s, _ := word.(string); !strings.EqualFold(s, "layercache") {
		return nil, nil, nil
	}
	o, err := dist3.FromConfiguration(config)
	if err != nil {
		return nil, nil, err
	}
	o.Logf = logrus.StandardLogger().Warnf
	provider, client, err := dist3.New(o)
	if err != nil {
		return nil, nil, err
	}
	prometheus.MustRegister(dist3.Collector(client)) // served with distribution's metrics
	if err := registrymiddleware.RegisterOptions(storage.BlobDescriptorCacheProvider(provider)); err != nil {
		return nil, nil, err
	}
	hide()
	logrus.Infof("using layercache blob descriptor cache (%s)", o.Topology())
	return client, config, nil
}

// collectGarbage is garbage-collect's run: v3's, then the cache purged of what it
// deleted. Its flags are v3's own.
func collectGarbage(cmd *cobra.Command, config *configuration.Configuration, client *layercachecore.Client) {
	flag := func(name string) bool { on, _ := cmd.Flags().GetBool(name); return on }
	opts := storage.GCOpts{DryRun: flag("dry-run"), RemoveUntagged: flag("delete-untagged"), Quiet: flag("quiet")}
	blobs, links, err := dist3.CollectGarbage(context.Background(), config, opts, client)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to garbage collect: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("layercache: purged %d deleted blobs and %d deleted repository paths from the cache\n", blobs, links)
}
