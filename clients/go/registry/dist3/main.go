// Command registry is distribution v3's registry (v3.1.1, from the Go module proxy)
// with layercache's provider, unpatched: v3 takes registry options from a main before
// its root command runs (registry/middleware/registry.RegisterOptions), so with
// `storage.cache.blobdescriptor: layercache` this main builds the provider from the
// configuration (dist3.FromConfiguration: v3's redis section, and storage.cache) and
// registers it, before distribution's own caches, which would win: one it selects is
// applied after registered options. distribution would then meet a cache type it does
// not know and log "unknown cache type, caching disabled"; the main hides the word
// from it (hide) and logs what it did. The storage drivers are filesystem, inmemory
// and s3-aws; authentication htpasswd, silly and token; and the pull-through proxy.
package main

import (
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
	"github.com/layercache/go-layercache/dist3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

func main() {
	if err := layercache(); err != nil {
		fmt.Fprintf(os.Stderr, "layercache: %v\n", err)
		os.Exit(1)
	}
	registry.RootCmd.Execute() //nolint:errcheck // as distribution's own main
}

// layercache registers the provider when the configuration `registry serve` will read
// selects it (a configuration that cannot be read is left to distribution to report).
func layercache() error {
	path := os.Getenv("REGISTRY_CONFIGURATION_PATH")
	if len(os.Args) > 2 && os.Args[1] == "serve" {
		path = os.Args[2]
	}
	if path == "" {
		return nil // distribution says what is missing
	}
	f, err := os.Open(path)
	if err != nil {
		return nil // as above
	}
	defer f.Close()
	config, err := configuration.Parse(f)
	if err != nil {
		return nil // as above
	}
	cache := config.Storage["cache"]
	word, ok := cache["blobdescriptor"]
	if !ok {
		word = cache["layerinfo"]
	}
	if s, _ := word.(string); !strings.EqualFold(s, "layercache") {
		return nil
	}
	o, err := dist3.FromConfiguration(config)
	if err != nil {
		return err
	}
	o.Logf = logrus.StandardLogger().Warnf
	provider, client, err := dist3.New(o)
	if err != nil {
		return err
	}
	prometheus.MustRegister(dist3.Collector(client)) // served with distribution's metrics
	if err := registrymiddleware.RegisterOptions(storage.BlobDescriptorCacheProvider(provider)); err != nil {
		return err
	}
	hide()
	logrus.Infof("using layercache blob descriptor cache (%s)", o.Topology())
	return nil
}
