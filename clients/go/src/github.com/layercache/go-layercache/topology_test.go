package layercache

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/FZambia/sentinel"
	"github.com/docker/distribution"
	"github.com/docker/distribution/configuration"
	"github.com/docker/distribution/registry/storage/cache/cachecheck"
	"github.com/gomodule/redigo/redis"
)

// certificates makes a CA and a server and a client certificate it signs (for
// 127.0.0.1 and localhost) with openssl, in a directory of the test's.
func certificates(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	key := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"}
	run(append([]string{"req", "-x509", "-new", "-days", "2", "-subj", "/CN=layercache test CA", "-keyout", "ca.key", "-out", "ca.crt"}, key...)...)
	if err := os.WriteFile(filepath.Join(dir, "san.ext"), []byte("subjectAltName=IP:127.0.0.1,DNS:localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"server", "client"} {
		run(append([]string{"req", "-new", "-subj", "/CN=" + name, "-keyout", name + ".key", "-out", name + ".csr"}, key...)...)
		run("x509", "-req", "-days", "2", "-in", name+".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
			"-extfile", "san.ext", "-out", name+".crt")
	}
	return dir
}

// tlsServerArgs serve TLS only (port 0), with client certificates required.
func tlsServerArgs(certs string) []string {
	return []string{"--tls-cert-file", filepath.Join(certs, "server.crt"), "--tls-key-file", filepath.Join(certs, "server.key"),
		"--tls-ca-cert-file", filepath.Join(certs, "ca.crt"), "--tls-auth-clients", "yes"}
}

// startTLSRedis starts a TLS-only server with the module: the port the test picks is
// its tls-port.
func startTLSRedis(t *testing.T, certs string, moduleArgs ...string) *redisServer {
	module := os.Getenv("LAYERCACHE_MODULE")
	port := freePort(t)
	argv := append([]string{"--loadmodule", module}, moduleArgs...)
	argv = append(argv, tlsServerArgs(certs)...)
	s := startProcess(t, 0, "Ready to accept connections", append(argv, "--tls-port", fmt.Sprint(port)))
	s.port, s.addr = port, fmt.Sprintf("127.0.0.1:%d", port)
	return s
}

// logs collects what the provider logs.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...interface{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// newProvider is New(o), closed at the end of the test.
func newProvider(t *testing.T, o Options) *provider {
	t.Helper()
	p, err := open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	return p
}

// mTLS: a server that takes TLS only and requires client certificates; the provider
// passes distribution's cachecheck over it in both schemes, and a client without a
// certificate is refused.
func TestMutualTLS(t *testing.T) {
	certs := certificates(t)
	for _, scheme := range schemes {
		t.Run(scheme, func(t *testing.T) {
			s := startTLSRedis(t, certs, "scheme", scheme)
			o := Options{Addrs: []string{s.addr}, TLS: true, TLSCAFile: filepath.Join(certs, "ca.crt"),
				TLSCertFile: filepath.Join(certs, "client.crt"), TLSKeyFile: filepath.Join(certs, "client.key")}
			cachecheck.CheckBlobDescriptorCache(t, newProvider(t, o))

			o.TLSCertFile, o.TLSKeyFile = "", ""
			_, err := newProvider(t, o).Stat(ctx, blob)
			if err == nil || err == distribution.ErrBlobUnknown {
				t.Fatalf("a client without a certificate: %v", err)
			}
			waitFor(t, 10*time.Second, "the server's log of the refusal", func() bool {
				log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
				return strings.Contains(string(log), "peer did not return a certificate")
			})
			o.TLS = false
			if _, err := newProvider(t, o).Stat(ctx, blob); err == nil || err == distribution.ErrBlobUnknown {
				t.Fatalf("a plaintext client: %v", err)
			}
		})
	}
}

// aclUser is a user allowed only what the provider sends, on distribution's keys (not
// the module's own layercache::*).
const aclUser = "registry on >registry-secret -@all +ping +role +layercache.stat +layercache.setdescriptor +layercache.clear " +
	"+layercache.repostat +layercache.reposetdescriptor +layercache.repoclear ~blobs::* ~repository::*"

func acl(t *testing.T, addr, rule string) {
	t.Helper()
	c, err := redis.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("ACL", redis.Args{"SETUSER"}.AddFlat(strings.Fields(rule))...); err != nil {
		t.Fatal(err)
	}
}

// An ACL user with the provider's commands and distribution's key patterns passes
// cachecheck; a wrong password is a clear error, then a fast miss with one log line.
func TestACLUser(t *testing.T) {
	s := startRedis(t)
	acl(t, s.addr, aclUser)
	cachecheck.CheckBlobDescriptorCache(t, newProvider(t, Options{Addrs: []string{s.addr}, Username: "registry", Password: "registry-secret"}))

	var log logs
	p := newProvider(t, Options{Addrs: []string{s.addr}, Username: "registry", Password: "wrong", Logf: log.logf})
	_, err := p.Stat(ctx, blob)
	if err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Fatalf("a wrong password: %v", err)
	}
	for i := 0; i < 10; i++ {
		p.Stat(ctx, blob)
	}
	if _, err := p.Stat(ctx, blob); err != distribution.ErrBlobUnknown {
		t.Fatalf("with the breaker open, Stat: %v", err)
	}
	if n := log.count("WRONGPASS"); n != 1 {
		t.Fatalf("logged the failure %d times: %q", n, log.lines)
	}
}

// Fail open: with the server gone, calls fail fast (after FailAfter errors, misses that
// touch no network), the log says so once; when the server is back, the cache resumes
// within one back-off window.
func TestFailOpen(t *testing.T) {
	s := startRedis(t)
	var log logs
	o := Options{Addrs: []string{s.addr}, BackoffMin: 200 * time.Millisecond, BackoffMax: time.Second, Logf: log.logf}
	p := newProvider(t, o)
	repo, _ := p.RepositoryScoped("team/app")
	if err := repo.SetDescriptor(ctx, blob, desc); err != nil {
		t.Fatal(err)
	}
	s.kill()
	failures, worst := 0, time.Duration(0)
	for start := time.Now(); time.Since(start) < 3*time.Second; time.Sleep(time.Millisecond) {
		began := time.Now()
		_, err := repo.Stat(ctx, blob)
		if took := time.Since(began); took > worst {
			worst = took
		}
		if err != distribution.ErrBlobUnknown {
			failures++
		}
	}
	// The first FailAfter calls fail; then one probe per window (200 ms, 400, 800, 1 s,
	// ...): about six in three seconds, each refused at once.
	if failures < 3 || failures > 12 {
		t.Fatalf("%d calls reached the dead server in 3 s; want FailAfter plus one probe per window", failures)
	}
	if worst > 500*time.Millisecond {
		t.Fatalf("a call during the outage took %v", worst)
	}
	if err := repo.Clear(ctx, blob); err == nil || err == distribution.ErrBlobUnknown {
		t.Fatalf("Clear during the outage: %v", err)
	}
	if n := log.count("unreachable"); n != 1 {
		t.Fatalf("logged the outage %d times: %q", n, log.lines)
	}
	t.Logf("outage: %d calls reached the server, worst call %v", failures, worst)

	// The server back on its port (empty: it saved nothing): within one window (1 s)
	// the provider writes and reads through it again.
	back := startProcess(t, s.port, "Ready to accept connections", []string{"--loadmodule", os.Getenv("LAYERCACHE_MODULE")})
	started := time.Now()
	for repo.SetDescriptor(ctx, blob, desc) != nil || p.breaker.open() {
		if time.Since(started) > 3*time.Second {
			t.Fatalf("the cache did not resume within 3 s of the server's return: %q", log.lines)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := repo.Stat(ctx, blob); err != nil || !reflect.DeepEqual(got, desc) {
		t.Fatalf("after the return: %v, %v", got, err)
	}
	if n := log.count("answers again"); n != 1 {
		t.Fatalf("logged the return %d times: %q", n, log.lines)
	}
	t.Logf("resumed %v after the server was back", time.Since(started))
	back.kill()
}

// A connection that answers READONLY (its server was demoted to a replica) is dropped,
// not returned to the pool.
func TestReadonlyConnectionDropped(t *testing.T) {
	primary, replica := startRedis(t), startRedis(t)
	p := newProvider(t, Options{Addrs: []string{replica.addr}})
	if err := p.SetDescriptor(ctx, blob, desc); err != nil {
		t.Fatal(err)
	}
	if n := p.conns.(poolSource).IdleCount(); n != 1 {
		t.Fatalf("idle connections after a write: %d", n)
	}
	c, err := redis.Dial("tcp", replica.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("REPLICAOF", "127.0.0.1", primary.port); err != nil {
		t.Fatal(err)
	}
	err = p.SetDescriptor(ctx, blob, desc)
	if err == nil || !strings.HasPrefix(err.Error(), "READONLY") {
		t.Fatalf("a write to the replica: %v", err)
	}
	if n := p.conns.(poolSource).IdleCount(); n != 0 {
		t.Fatalf("the READONLY connection went back to the pool (%d idle)", n)
	}
}

// sentinels starts n sentinels watching primary as master "layercache", with extra
// configuration lines (TLS, passwords); it returns their addresses once each knows the
// replicas.
func sentinels(t *testing.T, primary *redisServer, n int, extra string) []string {
	t.Helper()
	var addrs []string
	for i := 0; i < n; i++ {
		port := freePort(t)
		conf := filepath.Join(t.TempDir(), "sentinel.conf")
		text := fmt.Sprintf("sentinel monitor layercache 127.0.0.1 %d 2\nsentinel down-after-milliseconds layercache 1000\n"+
			"sentinel failover-timeout layercache 10000\n%s", primary.port, extra)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		startProcess(t, port, "+monitor master", []string{conf, "--sentinel"})
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", port))
	}
	return addrs
}

// Through Sentinel: the provider finds the master, and after a failover (SENTINEL
// FAILOVER) it writes and reads on the new one, the old connections dropped. A second
// instance with the local tier, which held the descriptor, tracks the new master (the
// old one lives on as a replica, and Sentinel's CLIENT KILL spares subscribed
// connections) and reads the new master's descriptor.
func TestSentinelFailover(t *testing.T) {
	primary := startRedis(t)
	replica := startRedis(t, "--replicaof", "127.0.0.1", fmt.Sprint(primary.port))
	addrs := sentinels(t, primary, 3, "")
	o := Options{Addrs: addrs, MasterName: "layercache", BackoffMin: 100 * time.Millisecond, BackoffMax: 500 * time.Millisecond}
	p, tier := newProvider(t, o), tiered(t, o)
	repo, _ := p.RepositoryScoped("team/app")
	if err := repo.SetDescriptor(ctx, blob, desc); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if got, err := stat(tier, "team/app", blob); err != nil || !reflect.DeepEqual(got, desc) {
			t.Fatalf("the tiered instance before the failover: %v, %v", got, err)
		}
	}
	if !tier.local.holds(entryKey{"team/app", blob}) {
		t.Fatal("the tier does not hold the descriptor before the failover")
	}
	// The replica must know the sentinels' view (it is synced) before a failover.
	waitFor(t, 30*time.Second, "the replica in sync, known to the sentinels", func() bool {
		c, err := redis.Dial("tcp", addrs[0])
		if err != nil {
			return false
		}
		defer c.Close()
		replicas, err := redis.Values(c.Do("SENTINEL", "REPLICAS", "layercache"))
		if err != nil || len(replicas) == 0 {
			return false
		}
		fields, _ := redis.StringMap(replicas[0], nil)
		return fields["master-link-status"] == "ok"
	})
	c, err := redis.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("SENTINEL", "FAILOVER", "layercache"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the replica promoted", func() bool {
		a, err := redis.Strings(c.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "layercache"))
		return err == nil && len(a) == 2 && a[1] == fmt.Sprint(replica.port)
	})
	// Until Sentinel demotes the old master it still takes writes (which its resync then
	// drops), for any client: wait for the demotion, whose CLIENT KILL ends our
	// connections to it.
	waitFor(t, 30*time.Second, "the old master demoted", func() bool {
		c, err := redis.Dial("tcp", primary.addr)
		if err != nil {
			return false
		}
		defer c.Close()
		return !sentinel.TestRole(c, "master")
	})
	other := distribution.Descriptor{Digest: blob, Size: 1, MediaType: "text/plain"}
	waitFor(t, 30*time.Second, "a write on the new master", func() bool {
		return repo.SetDescriptor(ctx, blob, other) == nil && !p.breaker.open() // not skipped
	})
	r, err := redis.Dial("tcp", replica.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := redis.Values(r.Do("LAYERCACHE.REPOSTAT", "team/app", blob))
	if err != nil || len(got) != 3 || fmt.Sprint(got[1]) != "1" {
		t.Fatalf("the new master's REPOSTAT: %v, %v", got, err)
	}
	if d, err := repo.Stat(ctx, blob); err != nil || !reflect.DeepEqual(d, other) {
		t.Fatalf("Stat through Sentinel after the failover: %v, %v", d, err)
	}
	waitFor(t, 30*time.Second, "the tier tracking the new master, with its descriptor", func() bool {
		got, err := stat(tier, "team/app", blob)
		tier.tracker.mu.Lock()
		addr := tier.tracker.addr
		tier.tracker.mu.Unlock()
		_, active := tier.local.size()
		return err == nil && reflect.DeepEqual(got, other) && addr == replica.addr && active
	})
}

// waitFor polls ok until it holds, at first every 20 µs (a fence is a round trip
// away), backing off to every 50 ms; it fails the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	pause := 20 * time.Microsecond
	for deadline := time.Now().Add(limit); !ok(); time.Sleep(pause) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		if pause < 50*time.Millisecond {
			pause *= 2
		}
	}
}

// The registry configuration: distribution 2.8's redis section and Harbor's keys under
// storage.cache.
func TestFromConfiguration(t *testing.T) {
	cases := []struct {
		yaml string
		want Options
		err  string
	}{
		{yaml: "redis: {addr: 'r:6379', password: p, db: 2, dialtimeout: 2s, pool: {maxidle: 8, maxactive: 64}}",
			want: Options{Addrs: []string{"r:6379"}, Password: "p", DB: 2, DialTimeout: 2 * time.Second, MaxIdle: 8, MaxActive: 64}},
		{yaml: "redis: {addr: 's1:26379, s2:26379,s3:26379'}\nstorage: {inmemory: {}, cache: {blobdescriptor: layercache, sentinelMasterSet: mymaster, username: registry, enabletls: 'true'}}",
			want: Options{Addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, MasterName: "mymaster", Username: "registry", TLS: true, SentinelTLS: true}},
		{yaml: "redis: {addr: 'r:6379'}\nstorage: {inmemory: {}, cache: {enabletls: true, sentineltls: false, tlscafile: /ca, tlscertfile: /c, tlskeyfile: /k, tlsservername: redis}}",
			want: Options{Addrs: []string{"r:6379"}, TLS: true, TLSCAFile: "/ca", TLSCertFile: "/c", TLSKeyFile: "/k", TLSServerName: "redis"}},
		{yaml: "redis: {addr: 'a:1,b:2'}", want: Options{Addrs: []string{"a:1", "b:2"}}},
		{yaml: "redis: {addr: 'a:1'}\nstorage: {inmemory: {}, cache: {cluster: true}}", want: Options{Addrs: []string{"a:1"}, Cluster: true}},
		{yaml: "redis: {addr: 'r:6379'}\nstorage: {inmemory: {}, cache: {blobdescriptor: layercache, localentries: 50000}}",
			want: Options{Addrs: []string{"r:6379"}, LocalEntries: 50000}},
		{yaml: "redis: {addr: 'r:6379'}\nstorage: {inmemory: {}, cache: {localentries: many}}", err: "must be a number of entries"},
		{yaml: "redis: {addr: 'r:6379'}\nstorage: {inmemory: {}, cache: {sentinelmaster: x}}", err: "unknown setting storage.cache.sentinelmaster"},
		{yaml: "redis: {addr: 'r:6379'}\nstorage: {inmemory: {}, cache: {enabletls: maybe}}", err: "must be true or false"},
		{yaml: "storage: {inmemory: {}, cache: {blobdescriptor: layercache}}", err: "redis.addr is required"},
	}
	for n, c := range cases {
		text := "version: 0.1\n" + c.yaml
		if !strings.Contains(text, "storage:") {
			text += "\nstorage: {inmemory: {}}"
		}
		config, err := configuration.Parse(strings.NewReader(text))
		if err != nil {
			t.Fatalf("case %d: %v", n, err)
		}
		got, err := FromConfiguration(config)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("case %d: error %v, want %q", n, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("case %d:\n got %+v, %v\nwant %+v", n, got, err, c.want)
		}
	}
}
