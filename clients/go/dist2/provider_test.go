package dist2

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/distribution"
	"github.com/docker/distribution/configuration"
	"github.com/docker/distribution/registry/storage/cache"
	"github.com/docker/distribution/registry/storage/cache/cachecheck"
	dredis "github.com/docker/distribution/registry/storage/cache/redis"
	garyburd "github.com/garyburd/redigo/redis"
	"github.com/gomodule/redigo/redis"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/internal/redistest"
	"github.com/opencontainers/go-digest"
)

var (
	ctx     = context.Background()
	blob    = digest.Digest("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	desc    = distribution.Descriptor{Digest: blob, Size: 2797, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}
	schemes = []string{"distribution", "blob"}
)

// provider is New(o), closed at the end of the test.
func provider(t *testing.T, o layercache.Options) *Provider {
	t.Helper()
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func on(addr string) layercache.Options { return layercache.Options{Addrs: []string{addr}} }

// distribution's own provider, on its own redigo (garyburd's).
func distributionProvider(addr string) cache.BlobDescriptorCacheProvider {
	return dredis.NewRedisBlobDescriptorCacheProvider(&garyburd.Pool{Dial: func() (garyburd.Conn, error) { return garyburd.Dial("tcp", addr) }})
}

// distribution's own cachecheck suite, unmodified, in both key schemes, with and
// without the local tier.
func TestCachecheck(t *testing.T) {
	for _, scheme := range schemes {
		for _, entries := range []int{0, 1000} {
			t.Run(scheme+"/tier="+map[bool]string{false: "off", true: "on"}[entries > 0], func(t *testing.T) {
				o := on(redistest.Start(t, "scheme", scheme).Addr)
				o.LocalEntries = entries
				cachecheck.CheckBlobDescriptorCache(t, provider(t, o))
			})
		}
	}
}

// Each provider reads what the other wrote, on one server (the distribution scheme:
// distribution's own keys).
func TestInteropWithDistributionsRedisProvider(t *testing.T) {
	addr := redistest.Start(t, "scheme", "distribution").Addr
	ours, theirs := provider(t, on(addr)), distributionProvider(addr)
	for _, way := range []struct {
		name, repo string
		w, r       cache.BlobDescriptorCacheProvider
	}{
		{"ours to theirs", "team/ours", ours, theirs},
		{"theirs to ours", "team/theirs", theirs, ours},
	} {
		t.Run(way.name, func(t *testing.T) {
			writer, err := way.w.RepositoryScoped(way.repo)
			if err != nil {
				t.Fatal(err)
			}
			reader, err := way.r.RepositoryScoped(way.repo)
			if err != nil {
				t.Fatal(err)
			}
			want := distribution.Descriptor{Digest: blob, Size: 2797, MediaType: "application/json+" + strings.ReplaceAll(way.repo, "/", "-")}
			if err := writer.SetDescriptor(ctx, blob, want); err != nil {
				t.Fatal(err)
			}
			if got, err := reader.Stat(ctx, blob); err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("repository Stat: %v, %v; want %v", got, err, want)
			}
			if got, err := way.r.Stat(ctx, blob); err != nil || got.Digest != blob || got.Size != 2797 {
				t.Fatalf("global Stat: %v, %v", got, err)
			}
		})
	}
	// A global descriptor set by theirs, read and cleared by ours.
	other := digest.Digest("sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752")
	if err := theirs.SetDescriptor(ctx, other, distribution.Descriptor{Digest: other, Size: 1, MediaType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	if got, err := ours.Stat(ctx, other); err != nil || got.Size != 1 || got.MediaType != "text/plain" {
		t.Fatalf("Stat of theirs: %v, %v", got, err)
	}
	if err := ours.Clear(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := theirs.Stat(ctx, other); err != distribution.ErrBlobUnknown {
		t.Fatalf("theirs after our Clear: %v", err)
	}
}

// CVE-2026-35172: a blob cleared from one repository stays cleared when another
// repository caches it again; with and without the tier.
func TestClearedBlobStaysCleared(t *testing.T) {
	for _, scheme := range schemes {
		for _, entries := range []int{0, 1000} {
			t.Run(scheme, func(t *testing.T) {
				o := on(redistest.Start(t, "scheme", scheme).Addr)
				o.LocalEntries = entries
				redistest.ClearedStaysCleared(t, provider(t, o).RepositoryScoped, blob, desc, distribution.ErrBlobUnknown)
			})
		}
	}
}

// The module's error codes become distribution's errors; others pass through.
func TestErrors(t *testing.T) {
	s := redistest.Start(t, "scheme", "distribution")
	cases := []struct {
		cmd   []interface{}
		check func(error) bool
	}{
		{[]interface{}{"LAYERCACHE.SETDESCRIPTOR", blob, "sha256:abc", 1, "text/plain"}, func(err error) bool {
			var e distribution.ErrBlobInvalidDigest
			return errors.As(err, &e) && e.Digest == blob && e.Reason.Error() == "invalid checksum digest length"
		}},
		{[]interface{}{"LAYERCACHE.REPOSTAT", "Team/A", blob}, func(err error) bool {
			var e distribution.ErrRepositoryNameInvalid
			return errors.As(err, &e) && e.Name == "team/a"
		}},
		{[]interface{}{"LAYERCACHE.SETDESCRIPTOR", blob, blob, "007", "text/plain"}, func(err error) bool { return err == distribution.ErrBlobInvalidLength }},
		{[]interface{}{"LAYERCACHE.SETDESCRIPTOR", blob, blob, "1", "nomediatype"}, func(err error) bool {
			code, _ := layercache.ReplyCode(err)
			return code == "ERR" && strings.HasPrefix(err.Error(), "ERR invalid mediatype")
		}},
	}
	p := provider(t, on(s.Addr))
	for n, c := range cases {
		_, err := p.Client.Do(ctx, blob, c.cmd...)
		if err = errs.Map(err, blob, "team/a"); !c.check(err) {
			t.Errorf("case %d: %v became %#v", n, c.cmd, err)
		}
	}
	// Through the provider: a mediatype distribution accepts and the module does not.
	err := p.SetDescriptor(ctx, blob, distribution.Descriptor{Digest: blob, Size: 1, MediaType: "nomediatype"})
	if err == nil || !strings.HasPrefix(err.Error(), "ERR invalid mediatype") {
		t.Fatalf("module error passed through: %v", err)
	}
	if _, err := p.Stat(ctx, blob); err != distribution.ErrBlobUnknown {
		t.Fatalf("nothing was written: %v", err)
	}
	if n := p.Stats().ErrorReplies["ERR"]; n != 2 {
		t.Fatalf("ERR replies counted: %d, want 2", n)
	}
}

// mTLS: a server that takes TLS only and requires client certificates; the provider
// passes distribution's cachecheck over it in both schemes, and a client without a
// certificate is refused.
func TestMutualTLS(t *testing.T) {
	certs := redistest.Certificates(t)
	for _, scheme := range schemes {
		t.Run(scheme, func(t *testing.T) {
			s := redistest.StartTLS(t, certs, "scheme", scheme)
			o := layercache.Options{Addrs: []string{s.Addr}, TLS: true, TLSCAFiles: []string{filepath.Join(certs, "ca.crt")},
				TLSCertFile: filepath.Join(certs, "client.crt"), TLSKeyFile: filepath.Join(certs, "client.key")}
			cachecheck.CheckBlobDescriptorCache(t, provider(t, o))

			o.TLSCertFile, o.TLSKeyFile = "", ""
			_, err := provider(t, o).Stat(ctx, blob)
			if err == nil || err == distribution.ErrBlobUnknown {
				t.Fatalf("a client without a certificate: %v", err)
			}
			redistest.WaitFor(t, 10*time.Second, "the server's log of the refusal", func() bool {
				return strings.Contains(s.Log(), "peer did not return a certificate")
			})
			o.TLS = false
			if _, err := provider(t, o).Stat(ctx, blob); err == nil || err == distribution.ErrBlobUnknown {
				t.Fatalf("a plaintext client: %v", err)
			}
		})
	}
}

// aclUser is a user allowed only what the provider sends, on distribution's keys (not
// the module's own layercache::*).
const aclUser = "registry on >registry-secret -@all +layercache.stat +layercache.setdescriptor +layercache.clear " +
	"+layercache.repostat +layercache.reposetdescriptor +layercache.repoclear ~blobs::* ~repository::*"

// An ACL user with the provider's commands and distribution's key patterns passes
// cachecheck; a wrong password is a clear error, then a fast miss with one log line.
func TestACLUser(t *testing.T) {
	s := redistest.Start(t)
	if _, err := s.Dial(t).Do("ACL", redis.Args{"SETUSER"}.AddFlat(strings.Fields(aclUser))...); err != nil {
		t.Fatal(err)
	}
	cachecheck.CheckBlobDescriptorCache(t, provider(t, layercache.Options{Addrs: []string{s.Addr}, Username: "registry", Password: "registry-secret"}))

	var log redistest.Logs
	p := provider(t, layercache.Options{Addrs: []string{s.Addr}, Username: "registry", Password: "wrong", Logf: log.Logf})
	_, err := p.Stat(ctx, blob)
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("a wrong password: %v", err)
	}
	for i := 0; i < 10; i++ {
		p.Stat(ctx, blob) //nolint:errcheck
	}
	if _, err := p.Stat(ctx, blob); err != distribution.ErrBlobUnknown {
		t.Fatalf("with the breaker open, Stat: %v", err)
	}
	if n := log.Count("WRONGPASS"); n != 1 {
		t.Fatalf("logged the failure %d times: %q", n, log.Lines)
	}
}

// The registry configuration: distribution 2.8's redis section and Harbor's keys under
// storage.cache.
func TestFromConfiguration(t *testing.T) {
	type Options = layercache.Options
	cases := []redistest.Configuration[Options]{
		{YAML: "redis: {addr: 'r:6379', password: p, db: 2, dialtimeout: 2s, pool: {maxidle: 8, maxactive: 64}}",
			Want: Options{Addrs: []string{"r:6379"}, Password: "p", DB: 2, DialTimeout: 2 * time.Second, MaxIdle: 8, PoolSize: 64}},
		{YAML: "redis: {addr: 's1:26379, s2:26379,s3:26379'}\nstorage: {inmemory: {}, cache: {blobdescriptor: layercache, sentinelMasterSet: mymaster, username: registry, enabletls: 'true'}}",
			Want: Options{Addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, MasterName: "mymaster", Username: "registry", TLS: true, SentinelTLS: true}},
		{YAML: "redis: {addr: 'r:6379'}\nstorage: {inmemory: {}, cache: {enabletls: true, sentineltls: false, tlscafile: /ca, tlscertfile: /c, tlskeyfile: /k, tlsservername: redis}}",
			Want: Options{Addrs: []string{"r:6379"}, TLS: true, TLSCAFiles: []string{"/ca"}, TLSCertFile: "/c", TLSKeyFile: "/k", TLSServerName: "redis"}},
		{YAML: "redis: {addr: 'a:1,b:2'}", Want: Options{Addrs: []string{"a:1", "b:2"}}},
		{YAML: "redis: {addr: 'a:1'}\nstorage: {inmemory: {}, cache: {cluster: true}}", Want: Options{Addrs: []string{"a:1"}, Cluster: true}},
		{YAML: "redis: {addr: 'r:6379'}\nstorage: {inmemory: {}, cache: {blobdescriptor: layercache, localentries: 50000}}",
			Want: Options{Addrs: []string{"r:6379"}, LocalEntries: 50000}},
		{YAML: "redis: {addr: 'r:6379'}\nstorage: {inmemory: {}, cache: {localentries: many}}", Err: "must be a number of entries"},
		{YAML: "redis: {addr: 'r:6379'}\nstorage: {inmemory: {}, cache: {localentries: 10, localbytes: 1048576}}",
			Want: Options{Addrs: []string{"r:6379"}, LocalEntries: 10, LocalBytes: 1 << 20}},
		{YAML: "redis: {addr: 'r:6379'}\nstorage: {inmemory: {}, cache: {localbytes: lots}}", Err: "must be a number of bytes"},
		{YAML: "redis: {addr: 'r:6379'}\nstorage: {inmemory: {}, cache: {sentinelmaster: x}}", Err: "unknown setting storage.cache.sentinelmaster"},
		{YAML: "redis: {addr: 'r:6379'}\nstorage: {inmemory: {}, cache: {enabletls: maybe}}", Err: "must be true or false"},
		{YAML: "storage: {inmemory: {}, cache: {blobdescriptor: layercache}}", Err: "redis.addr is required"},
	}
	redistest.CheckConfigurations(t, cases, configuration.Parse, FromConfiguration)
}
