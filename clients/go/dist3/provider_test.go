package dist3

import (
	"context"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/storage/cache"
	"github.com/distribution/distribution/v3/registry/storage/cache/cachecheck"
	rediscache "github.com/distribution/distribution/v3/registry/storage/cache/redis"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/internal/redistest"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

var (
	ctx     = context.Background()
	blob    = digest.Digest("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	desc    = v1.Descriptor{Digest: blob, Size: 2797, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}
	schemes = []string{"distribution", "blob"}
)

// provider is New(o), closed at the end of the test.
func provider(t *testing.T, o layercache.Options) cache.BlobDescriptorCacheProvider {
	t.Helper()
	p, c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return p
}

func on(addr string, entries int) layercache.Options {
	return layercache.Options{Addrs: []string{addr}, LocalEntries: entries}
}

// v3's own redis provider, on go-redis as v3 builds it.
func v3Provider(t *testing.T, addr string) cache.BlobDescriptorCacheProvider {
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
	t.Cleanup(func() { client.Close() })
	return rediscache.NewRedisBlobDescriptorCacheProvider(client)
}

// distribution v3's own cachecheck suite, unmodified, in both key schemes, with and
// without the local tier.
func TestCachecheck(t *testing.T) {
	for _, scheme := range schemes {
		for _, entries := range []int{0, 1000} {
			t.Run(scheme+map[bool]string{false: "/tier=off", true: "/tier=on"}[entries > 0], func(t *testing.T) {
				cachecheck.CheckBlobDescriptorCache(t, provider(t, on(redistest.Start(t, "scheme", scheme).Addr, entries)))
			})
		}
	}
}

// Each provider reads what the other wrote, on one server (the distribution scheme:
// distribution's own keys), and each clears what the other wrote.
func TestInteropWithV3RedisProvider(t *testing.T) {
	addr := redistest.Start(t, "scheme", "distribution").Addr
	ours, theirs := provider(t, on(addr, 0)), v3Provider(t, addr)
	for _, way := range []struct {
		name, repo string
		w, r       cache.BlobDescriptorCacheProvider
	}{
		{"ours to theirs", "team/ours", ours, theirs},
		{"theirs to ours", "team/theirs", theirs, ours},
	} {
		t.Run(way.name, func(t *testing.T) {
			writer, _ := way.w.RepositoryScoped(way.repo)
			reader, _ := way.r.RepositoryScoped(way.repo)
			want := v1.Descriptor{Digest: blob, Size: 2797, MediaType: "application/json+" + strings.ReplaceAll(way.repo, "/", "-")}
			if err := writer.SetDescriptor(ctx, blob, want); err != nil {
				t.Fatal(err)
			}
			if got, err := reader.Stat(ctx, blob); err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("repository Stat: %v, %v; want %v", got, err, want)
			}
			if got, err := way.r.Stat(ctx, blob); err != nil || got.Digest != blob || got.Size != 2797 {
				t.Fatalf("global Stat: %v, %v", got, err)
			}
			if err := reader.Clear(ctx, blob); err != nil {
				t.Fatal(err)
			}
			if _, err := writer.Stat(ctx, blob); err != distribution.ErrBlobUnknown {
				t.Fatalf("the writer after the reader's Clear: %v", err)
			}
		})
	}
}

// CVE-2026-35172: a blob cleared from one repository stays cleared when another
// repository caches it again; with and without the tier.
func TestClearedBlobStaysCleared(t *testing.T) {
	for _, scheme := range schemes {
		for _, entries := range []int{0, 1000} {
			t.Run(scheme, func(t *testing.T) {
				p := provider(t, on(redistest.Start(t, "scheme", scheme).Addr, entries))
				redistest.ClearedStaysCleared(t, p.RepositoryScoped, blob, desc, distribution.ErrBlobUnknown)
			})
		}
	}
}

// The registry configuration: v3's redis section unchanged, and storage.cache's keys.
func TestFromConfiguration(t *testing.T) {
	type Options = layercache.Options
	cases := []redistest.Configuration[Options]{
		{YAML: "redis: {addrs: ['r:6379'], password: p, db: 2, dialtimeout: 2s, poolsize: 64, maxidleconns: 8}",
			Want: Options{Addrs: []string{"r:6379"}, Password: "p", DB: 2, DialTimeout: 2 * time.Second, PoolSize: 64, MaxIdle: 8}},
		{YAML: "redis: {addrs: ['s1:26379', 's2:26379'], mastername: mymaster, username: registry, sentinelusername: su, sentinelpassword: sp, tls: {rootcas: [/ca1, /ca2]}}",
			Want: Options{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster", Username: "registry", SentinelUsername: "su", SentinelPassword: "sp",
				TLS: true, SentinelTLS: true, TLSCAFiles: []string{"/ca1", "/ca2"}}},
		{YAML: "redis: {addrs: ['r:6380'], tls: {certificate: /c, key: /k}}\nstorage: {inmemory: {}, cache: {blobdescriptor: layercache, tlsservername: redis}}",
			Want: Options{Addrs: []string{"r:6380"}, TLS: true, SentinelTLS: true, TLSCertFile: "/c", TLSKeyFile: "/k", TLSServerName: "redis"}},
		{YAML: "redis: {addrs: ['r:6380']}\nstorage: {inmemory: {}, cache: {blobdescriptor: layercache, tls: true, localentries: 5000}}",
			Want: Options{Addrs: []string{"r:6380"}, TLS: true, SentinelTLS: true, LocalEntries: 5000}},
		{YAML: "redis: {addrs: ['a:1']}\nstorage: {inmemory: {}, cache: {cluster: true}}", Want: Options{Addrs: []string{"a:1"}, Cluster: true}},
		{YAML: "redis: {addrs: ['r:6379']}\nstorage: {inmemory: {}, cache: {sentinelmasterset: x}}", Err: "unknown setting storage.cache.sentinelmasterset"},
		{YAML: "redis: {addrs: ['r:6379']}\nstorage: {inmemory: {}, cache: {tls: maybe}}", Err: "must be true or false"},
		{YAML: "storage: {inmemory: {}, cache: {blobdescriptor: layercache}}", Err: "redis.addrs is required"},
	}
	redistest.CheckConfigurations(t, cases, configuration.Parse, FromConfiguration)
}

// The provider's own metrics: tier, breaker and error replies by code, read at each
// scrape.
func TestCollector(t *testing.T) {
	p, c, err := New(on(redistest.Start(t, "scheme", "distribution").Addr, 1000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := p.SetDescriptor(ctx, blob, v1.Descriptor{Digest: blob, Size: 1, MediaType: "nomediatype"}); err == nil {
		t.Fatal("the module took a mediatype without a subtype")
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(Collector(c))
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			got[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	for _, name := range []string{"registry_layercache_tier_served_total", "registry_layercache_tier_entries", "registry_layercache_tier_bytes",
		"registry_layercache_tier_invalidations_total", "registry_layercache_breaker_open", "registry_layercache_breaker_opens_total"} {
		if _, ok := got[name]; !ok {
			t.Errorf("no %s in %v", name, got)
		}
	}
	if got["registry_layercache_error_replies_total{code=ERR}"] != 1 {
		t.Errorf("error replies by code: %v", got)
	}
}

// A manifest route keeps off the repository's blob entries: a layer the cache holds is
// a miss to a manifest GET of its digest, and a manifest's descriptor written on a
// manifest PUT is no hit to a blob HEAD (without a cache both are 404s); a manifest
// PUT's check of a blob it references (another digest than the route's) is a hit.
func TestManifestRoutesKeepOffBlobEntries(t *testing.T) {
	at := func(method, path string) context.Context {
		r := httptest.NewRequest(method, path, nil)
		return context.WithValue(r.Context(), "http.request", r) //nolint:staticcheck // distribution's key
	}
	blobs := at("HEAD", "/v2/team/manifests/blobs/"+blob.String()) // a repository named team/manifests
	manifests := at("GET", "/v2/team/blobs/manifests/"+blob.String())
	put := at("PUT", "/v2/team/app/manifests/latest")
	for _, entries := range []int{0, 1000} {
		repo, err := provider(t, on(redistest.Start(t).Addr, entries)).RepositoryScoped("team/app")
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.SetDescriptor(manifests, blob, desc); err != nil {
			t.Fatal(err)
		}
		if _, err := repo.Stat(blobs, blob); err != distribution.ErrBlobUnknown {
			t.Fatalf("tier %d: a blob HEAD after a manifest route's SetDescriptor: %v, want ErrBlobUnknown", entries, err)
		}
		if err := repo.SetDescriptor(blobs, blob, desc); err != nil {
			t.Fatal(err)
		}
		if got, err := repo.Stat(blobs, blob); err != nil || got.Digest != blob {
			t.Fatalf("tier %d: a blob route's Stat: %v %v, want the descriptor", entries, got, err)
		}
		if _, err := repo.Stat(manifests, blob); err != distribution.ErrBlobUnknown {
			t.Fatalf("tier %d: a manifest route's Stat of a held layer: %v, want ErrBlobUnknown", entries, err)
		}
		if got, err := repo.Stat(put, blob); err != nil || got.Digest != blob {
			t.Fatalf("tier %d: a manifest PUT's check of a held layer: %v %v, want the descriptor", entries, got, err)
		}
		for i := 0; i < 2; i++ { // the second finds nothing: no error either (v3 would fail the DELETE)
			if err := repo.Clear(manifests, blob); err != nil {
				t.Fatalf("tier %d: a manifest route's Clear %d: %v", entries, i+1, err)
			}
		}
		if _, err := repo.Stat(ctx, blob); err != distribution.ErrBlobUnknown {
			t.Fatalf("tier %d: after a manifest route's Clear: %v, want ErrBlobUnknown", entries, err)
		}
		if err := repo.Clear(blobs, blob); err != distribution.ErrBlobUnknown {
			t.Fatalf("tier %d: a blob route's Clear of nothing: %v, want ErrBlobUnknown", entries, err)
		}
	}
}
