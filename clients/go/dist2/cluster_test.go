package dist2

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/docker/distribution"
	"github.com/docker/distribution/registry/storage/cache/cachecheck"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/internal/redistest"
	"github.com/opencontainers/go-digest"
)

// On a 3-master, 3-replica cluster in the blob scheme: distribution's cachecheck, the
// CVE-2026-35172 sequence, and a repository SetDescriptor whose alias digest hashes to
// another slot (the module's CROSSSLOT, then one-key commands).
func TestCluster(t *testing.T) {
	nodes := redistest.StartCluster(t, 3, 1, []string{"scheme", "blob"})
	o := layercache.Options{Addrs: redistest.Addrs(nodes[:3])}
	cachecheck.CheckBlobDescriptorCache(t, provider(t, o))

	p := provider(t, o)
	a, _ := redistest.ClearedStaysCleared(t, p.RepositoryScoped, blob, desc, distribution.ErrBlobUnknown)

	var alias digest.Digest
	for n := 0; alias == ""; n++ {
		if d := digest.Digest(fmt.Sprintf("sha512:%0128x", n)); nodes[0].Slot(t, string(d)) != nodes[0].Slot(t, string(blob)) {
			alias = d
		}
	}
	aliased := distribution.Descriptor{Digest: alias, Size: 42, MediaType: "application/octet-stream"}
	other := digest.Digest("sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752")
	if err := a.SetDescriptor(ctx, other, aliased); err != nil {
		t.Fatalf("SetDescriptor with an alias in another slot: %v", err)
	}
	for _, d := range []digest.Digest{other, alias} {
		if got, err := a.Stat(ctx, d); err != nil || !reflect.DeepEqual(got, aliased) {
			t.Fatalf("repository Stat of %s: %v, %v; want %v", d, got, err, aliased)
		}
	}
	if got, err := p.Stat(ctx, other); err != nil || got.Digest != alias {
		t.Fatalf("global Stat of the digest: %v, %v (its descriptor names the alias)", got, err)
	}
}

// A cluster whose nodes lack the module is refused at start, naming the node.
func TestClusterWithoutTheModule(t *testing.T) {
	nodes := redistest.StartCluster(t, 3, 0, nil)
	_, err := New(layercache.Options{Addrs: redistest.Addrs(nodes)})
	if err == nil || !strings.Contains(err.Error(), "does not have the layercache module loaded") {
		t.Fatalf("New on a cluster without the module: %v", err)
	}
}
