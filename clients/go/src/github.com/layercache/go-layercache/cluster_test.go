package layercache

import (
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/distribution"
	"github.com/docker/distribution/registry/storage/cache/cachecheck"
	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
	"github.com/opencontainers/go-digest"
)

// startCluster starts masters*(1+replicas) cluster-enabled servers with moduleArgs
// (nil: no module) and joins them with redis-cli --cluster create; their addresses,
// once every node reports cluster_state:ok.
func startCluster(t *testing.T, masters, replicas int, moduleArgs []string) []string {
	t.Helper()
	var addrs []string
	for i := 0; i < masters*(1+replicas); i++ {
		// The bus on a free port of its own: the default, port + 10000, may be taken or
		// past 65535.
		argv := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
			"--cluster-port", fmt.Sprint(freePort(t))}
		if moduleArgs != nil {
			argv = append(argv, append([]string{"--loadmodule", os.Getenv("LAYERCACHE_MODULE")}, moduleArgs...)...)
		}
		addrs = append(addrs, startProcess(t, freePort(t), "Ready to accept connections", argv).addr)
	}
	create := append([]string{"--cluster", "create"}, addrs...)
	create = append(create, "--cluster-replicas", fmt.Sprint(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, addr := range addrs {
		waitFor(t, 60*time.Second, addr+" cluster_state:ok", func() bool {
			c, err := redis.Dial("tcp", addr)
			if err != nil {
				return false
			}
			defer c.Close()
			info, err := redis.String(c.Do("CLUSTER", "INFO"))
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
	}
	return addrs
}

// On a 3-master, 3-replica cluster in the blob scheme: distribution's cachecheck, the
// CVE-2026-35172 sequence, and a repository SetDescriptor whose alias digest hashes to
// another slot (the module's CROSSSLOT, then one-key commands).
func TestCluster(t *testing.T) {
	addrs := startCluster(t, 3, 1, []string{"scheme", "blob"})
	o := Options{Addrs: addrs[:3]}
	cachecheck.CheckBlobDescriptorCache(t, newProvider(t, o))

	p := newProvider(t, o)
	a, _ := p.RepositoryScoped("team/a")
	b, _ := p.RepositoryScoped("team/b")
	for _, r := range []distribution.BlobDescriptorService{a, b} {
		if err := r.SetDescriptor(ctx, blob, desc); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Clear(ctx, blob); err != nil {
		t.Fatal(err)
	}
	if err := b.SetDescriptor(ctx, blob, desc); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Stat(ctx, blob); err != distribution.ErrBlobUnknown {
		t.Fatalf("team/a sees the blob team/b cached again: %v", err)
	}

	var alias digest.Digest
	for n := 0; alias == ""; n++ {
		if d := digest.Digest(fmt.Sprintf("sha512:%0128x", n)); redisc.Slot(string(d)) != redisc.Slot(string(blob)) {
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
	addrs := startCluster(t, 3, 0, nil)
	_, err := New(Options{Addrs: addrs})
	if err == nil || !strings.Contains(err.Error(), "does not have the layercache module loaded") {
		t.Fatalf("New on a cluster without the module: %v", err)
	}
}
