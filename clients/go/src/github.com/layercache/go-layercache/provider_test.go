package layercache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/distribution"
	"github.com/docker/distribution/registry/storage/cache"
	"github.com/docker/distribution/registry/storage/cache/cachecheck"
	dredis "github.com/docker/distribution/registry/storage/cache/redis"
	garyburd "github.com/garyburd/redigo/redis"
	"github.com/gomodule/redigo/redis"
	"github.com/opencontainers/go-digest"
)

// server is a redis-server with the layercache module in scheme on a free loopback
// port, stopped at the end of the test.
func server(t *testing.T, scheme string) string {
	return startRedis(t, "scheme", scheme).addr
}

// redisServer is a redis-server (or sentinel) the test started.
type redisServer struct {
	cmd  *exec.Cmd
	addr string
	port int
	dir  string
}

// startRedis starts $REDIS_SERVER on a free loopback port with the layercache module
// ($LAYERCACHE_MODULE) and moduleArgs, then args (more server options), and waits until
// its log says it is ready; it is killed at the end of the test.
func startRedis(t *testing.T, moduleArgs ...string) *redisServer {
	t.Helper()
	module := os.Getenv("LAYERCACHE_MODULE")
	if module == "" {
		t.Fatal("LAYERCACHE_MODULE must name liblayercache.so (make test-go sets it)")
	}
	return startProcess(t, freePort(t), "Ready to accept connections", append([]string{"--loadmodule", module}, moduleArgs...))
}

// startProcess runs the server binary with --port port and argv, until ready appears in
// its log; argv may start with a configuration file (a sentinel's).
func startProcess(t *testing.T, port int, ready string, argv []string) *redisServer {
	t.Helper()
	binary := os.Getenv("REDIS_SERVER")
	if binary == "" {
		binary = "redis-server"
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "redis.log")
	argv = append(argv, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir, "--logfile", log)
	cmd := exec.Command(binary, argv...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &redisServer{cmd: cmd, addr: fmt.Sprintf("127.0.0.1:%d", port), port: port, dir: dir}
	t.Cleanup(s.kill)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if text, _ := os.ReadFile(log); strings.Contains(string(text), ready) {
			return s
		}
	}
	text, _ := os.ReadFile(log)
	t.Fatalf("%s %v did not start:\n%s", binary, argv, text)
	return nil
}

// kill ends the server the test started (SIGKILL, by its pid), at once.
func (s *redisServer) kill() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func pool(addr string) *redis.Pool {
	return &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", addr) }}
}

// distribution's own provider, on its own redigo (garyburd's, as Debian builds it).
func distributionProvider(addr string) *garyburd.Pool {
	return &garyburd.Pool{Dial: func() (garyburd.Conn, error) { return garyburd.Dial("tcp", addr) }}
}

var schemes = []string{"distribution", "blob"}

// distribution's own cachecheck suite, unmodified, in both key schemes.
func TestCachecheck(t *testing.T) {
	for _, scheme := range schemes {
		t.Run(scheme, func(t *testing.T) {
			cachecheck.CheckBlobDescriptorCache(t, NewBlobDescriptorCacheProvider(pool(server(t, scheme))))
		})
	}
}

var (
	ctx  = context.Background()
	blob = digest.Digest("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	desc = distribution.Descriptor{Digest: blob, Size: 2797, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}
)

// Each provider reads what the other wrote, on one server (the distribution scheme:
// distribution's own keys).
func TestInteropWithDistributionsRedisProvider(t *testing.T) {
	addr := server(t, "distribution")
	ours, theirs := NewBlobDescriptorCacheProvider(pool(addr)), dredis.NewRedisBlobDescriptorCacheProvider(distributionProvider(addr))
	for _, way := range []struct {
		name, repo string
		w, r       cache.BlobDescriptorCacheProvider
	}{
		{"ours to theirs", "team/ours", ours, theirs},
		{"theirs to ours", "team/theirs", theirs, ours},
	} {
		t.Run(way.name, func(t *testing.T) {
			w, r := way.w, way.r
			writer, err := w.RepositoryScoped(way.repo)
			if err != nil {
				t.Fatal(err)
			}
			reader, err := r.RepositoryScoped(way.repo)
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
			if got, err := r.Stat(ctx, blob); err != nil || got.Digest != blob || got.Size != 2797 {
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
// repository caches it again.
func TestClearedBlobStaysCleared(t *testing.T) {
	for _, scheme := range schemes {
		t.Run(scheme, func(t *testing.T) {
			p := NewBlobDescriptorCacheProvider(pool(server(t, scheme)))
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
			if err := a.Clear(ctx, blob); err != distribution.ErrBlobUnknown {
				t.Fatalf("second Clear: %v", err)
			}
			if err := b.SetDescriptor(ctx, blob, desc); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Stat(ctx, blob); err != distribution.ErrBlobUnknown {
				t.Fatalf("team/a sees the blob team/b cached again: %v", err)
			}
			if got, err := b.Stat(ctx, blob); err != nil || !reflect.DeepEqual(got, desc) {
				t.Fatalf("team/b: %v, %v", got, err)
			}
		})
	}
}

// The module's error codes become distribution's errors; others pass through.
func TestErrors(t *testing.T) {
	cases := []struct {
		reply redis.Error
		check func(error) bool
	}{
		{"DIGEST_INVALID invalid checksum digest length", func(err error) bool {
			var e distribution.ErrBlobInvalidDigest
			return errors.As(err, &e) && e.Digest == blob && e.Reason.Error() == "invalid checksum digest length"
		}},
		{"NAME_INVALID repository name must be lowercase", func(err error) bool {
			var e distribution.ErrRepositoryNameInvalid
			return errors.As(err, &e) && e.Name == "team/a"
		}},
		{"SIZE_INVALID invalid size: negative", func(err error) bool { return err == distribution.ErrBlobInvalidLength }},
		{"ERR invalid mediatype: no subtype", func(err error) bool { return err == redis.Error("ERR invalid mediatype: no subtype") }},
	}
	for n, c := range cases {
		if err := mapError(c.reply, blob, "team/a"); !c.check(err) {
			t.Errorf("case %d: %q became %#v", n, c.reply, err)
		}
	}
	// Against the server: a mediatype distribution accepts and the module does not.
	p := NewBlobDescriptorCacheProvider(pool(server(t, "distribution")))
	err := p.SetDescriptor(ctx, blob, distribution.Descriptor{Digest: blob, Size: 1, MediaType: "nomediatype"})
	if err == nil || !strings.HasPrefix(err.Error(), "ERR invalid mediatype") {
		t.Fatalf("module error passed through: %v", err)
	}
	if _, err := p.Stat(ctx, blob); err != distribution.ErrBlobUnknown {
		t.Fatalf("nothing was written: %v", err)
	}
}
