package layercache

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/layercache/go-layercache/internal/redistest"
	"github.com/opencontainers/go-digest"
)

var (
	ctx     = context.Background()
	blob    = digest.Digest("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	desc    = Descriptor{Digest: blob, Size: 2797, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}
	schemes = []string{"distribution", "blob"}
)

// newClient is New(o), closed at the end of the test.
func newClient(t *testing.T, o Options) *Client {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Fail open: with the server gone, calls fail fast (after FailAfter errors, misses that
// touch no network), the log says so once; when the server is back, the cache resumes
// within one back-off window.
func TestFailOpen(t *testing.T) {
	s := redistest.Start(t)
	var log redistest.Logs
	c := newClient(t, Options{Addrs: []string{s.Addr}, BackoffMin: 200 * time.Millisecond, BackoffMax: time.Second, Logf: log.Logf})
	if err := c.RepoSetDescriptor(ctx, "team/app", blob, desc); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	failures, worst := 0, time.Duration(0)
	for start := time.Now(); time.Since(start) < 3*time.Second; time.Sleep(time.Millisecond) {
		began := time.Now()
		_, err := c.RepoStat(ctx, "team/app", blob)
		if took := time.Since(began); took > worst {
			worst = took
		}
		if err != ErrUnknown {
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
	if err := c.RepoClear(ctx, "team/app", blob); err == nil || err == ErrUnknown {
		t.Fatalf("Clear during the outage: %v", err)
	}
	if n := log.Count("unreachable"); n != 1 {
		t.Fatalf("logged the outage %d times: %q", n, log.Lines)
	}
	t.Logf("outage: %d calls reached the server, worst call %v", failures, worst)

	// The server back on its port (empty: it saved nothing): within one window (1 s)
	// the provider writes and reads through it again.
	redistest.StartOn(t, s.Port)
	started := time.Now()
	for c.RepoSetDescriptor(ctx, "team/app", blob, desc) != nil || c.Stats().BreakerOpen {
		if time.Since(started) > 3*time.Second {
			t.Fatalf("the cache did not resume within 3 s of the server's return: %q", log.Lines)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := c.RepoStat(ctx, "team/app", blob); err != nil || !reflect.DeepEqual(got, desc) {
		t.Fatalf("after the return: %v, %v", got, err)
	}
	if n := log.Count("answers again"); n != 1 {
		t.Fatalf("logged the return %d times: %q", n, log.Lines)
	}
	t.Logf("resumed %v after the server was back", time.Since(started))
}

// go-redis's pool stops dialling after PoolSize failed dials and answers every call
// with its last dial error until a dial it retries once a second succeeds. A probe it
// refused asked Redis nothing: the window does not grow, the next call probes, and
// the cache is back within that second of the server's return. (Taken as a failure,
// a refused probe doubled the window: back 2-3 s after the server here, up to
// BackoffMax with the defaults.)
func TestProbeRefusedByThePool(t *testing.T) {
	s := redistest.Start(t)
	c := newClient(t, Options{Addrs: []string{s.Addr}, PoolSize: 1, FailAfter: 1,
		BackoffMin: 300 * time.Millisecond, BackoffMax: 10 * time.Second})
	if err := c.RepoSetDescriptor(ctx, "team/app", blob, desc); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	// Probes at 0.3 s (its dial refused: the pool's one failed dial stops it dialling)
	// and after, refused by the pool.
	for start := time.Now(); time.Since(start) < 2*time.Second; time.Sleep(10 * time.Millisecond) {
		if d, err := c.RepoStat(ctx, "team/app", blob); err == nil {
			t.Fatalf("a Stat during the outage answered %v", d)
		}
	}
	redistest.StartOn(t, s.Port)
	back := time.Now()
	redistest.WaitFor(t, 15*time.Second, "the cache back", func() bool {
		return c.RepoSetDescriptor(ctx, "team/app", blob, desc) == nil && !c.Stats().BreakerOpen
	})
	took := time.Since(back)
	if took > time.Second+500*time.Millisecond {
		t.Fatalf("the cache was back %v after the server, over go-redis's one-second dial retry", took)
	}
	t.Logf("the cache was back %v after the server", took)
}

// A server that cannot serve gets a new client: the connections that heard it are
// closed, none returns to a pool. READONLY: it was demoted to a replica. MASTERDOWN: a
// replica that lost its master and does not serve stale data. LOADING: it is loading
// its dataset (DEBUG RELOAD, slowed to five seconds by key-load-delay).
func TestUnservingConnectionDropped(t *testing.T) {
	for _, code := range []string{"READONLY", "MASTERDOWN", "LOADING"} {
		t.Run(code, func(t *testing.T) {
			primary := redistest.Start(t)
			server := redistest.Start(t, "--replica-serve-stale-data", "no", "--enable-debug-command", "yes",
				"--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024")
			c := newClient(t, Options{Addrs: []string{server.Addr}})
			if err := c.SetDescriptor(ctx, blob, desc); err != nil {
				t.Fatal(err)
			}
			d := c.topo.(*direct)
			before, _ := d.current()
			call := func() error { _, err := c.RepoStat(ctx, "team/app", blob); return err }
			switch code {
			case "READONLY":
				server.Do(t, "REPLICAOF", "127.0.0.1", primary.Port)
				call = func() error { return c.SetDescriptor(ctx, blob, desc) }
			case "MASTERDOWN":
				server.Do(t, "REPLICAOF", "127.0.0.1", redistest.FreePort(t)) // nothing listens: the link stays down
			case "LOADING":
				server.Do(t, "DEBUG", "POPULATE", 5000)
				conn, reloaded := server.Dial(t), make(chan struct{})
				go func() {
					defer close(reloaded)
					conn.Do("DEBUG", "RELOAD") //nolint:errcheck // the test waits for its end only
				}()
				t.Cleanup(func() { <-reloaded })
				redistest.WaitFor(t, 10*time.Second, "the reload to start", func() bool { return server.Info(t, "persistence", "loading") == 1 })
			}
			if err := call(); err == nil || !strings.HasPrefix(err.Error(), code) {
				t.Fatalf("a call to the server: %v", err)
			}
			after, _ := d.current()
			if after == before || before.client.PoolStats().TotalConns != 0 {
				t.Fatalf("the %s server's client was kept (%d connections)", code, before.client.PoolStats().TotalConns)
			}
		})
	}
}

// Through Sentinel: the provider finds the master, and after a failover (SENTINEL
// FAILOVER) it writes and reads on the new one at once, the old master's connections
// closed when the sentinels announce it. A second instance with the local tier, which
// held the descriptor, tracks the new master and reads its descriptor.
func TestSentinelFailover(t *testing.T) {
	primary := redistest.Start(t)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", fmt.Sprint(primary.Port))
	sentinels := redistest.Addrs(redistest.Sentinels(t, primary, 3, ""))
	var log redistest.Logs
	o := Options{Addrs: sentinels, MasterName: "layercache", BackoffMin: 100 * time.Millisecond, BackoffMax: 500 * time.Millisecond, Logf: log.Logf}
	c, tier := newClient(t, o), tiered(t, o)
	if err := c.RepoSetDescriptor(ctx, "team/app", blob, desc); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if got, err := tier.RepoStat(ctx, "team/app", blob); err != nil || !reflect.DeepEqual(got, desc) {
			t.Fatalf("the tiered instance before the failover: %v, %v", got, err)
		}
	}
	if !tier.tier.holds(entryKey{repo: "team/app", dgst: blob}) {
		t.Fatal("the tier does not hold the descriptor before the failover")
	}
	redistest.ReplicaSynced(t, sentinels[0])
	s, err := redis.Dial("tcp", sentinels[0])
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Do("SENTINEL", "FAILOVER", "layercache"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 30*time.Second, "the replica promoted", func() bool { return redistest.MasterPort(sentinels[0]) == replica.Port })
	// The next write goes to the new master: the announcement moved both instances.
	redistest.WaitFor(t, 5*time.Second, "the provider on the new master", func() bool {
		cur, _ := c.topo.(*direct).current()
		return cur != nil && cur.addr == replica.Addr
	})
	other := Descriptor{Digest: blob, Size: 1, MediaType: "text/plain"}
	if err := c.RepoSetDescriptor(ctx, "team/app", blob, other); err != nil {
		t.Fatal(err)
	}
	got, err := redis.Values(replica.Dial(t).Do("LAYERCACHE.REPOSTAT", "team/app", blob))
	if err != nil || len(got) != 3 || fmt.Sprint(got[1]) != "1" {
		t.Fatalf("the new master's REPOSTAT: %v, %v", got, err)
	}
	if d, err := c.RepoStat(ctx, "team/app", blob); err != nil || !reflect.DeepEqual(d, other) {
		t.Fatalf("Stat through Sentinel after the failover: %v, %v", d, err)
	}
	redistest.WaitFor(t, 30*time.Second, "the tier serving the new master's descriptor", func() bool {
		got, err := tier.RepoStat(ctx, "team/app", blob)
		return err == nil && reflect.DeepEqual(got, other) && tier.Stats().TierServing
	})
	if n := log.Count("the master moved"); n < 2 {
		t.Fatalf("the move logged %d times for two instances: %q", n, log.Lines)
	}
}

// A call honours the request's context: its deadline, shorter than ReadTimeout, and its
// cancellation, on a hung server.
func TestRequestContext(t *testing.T) {
	s := redistest.Start(t)
	c := newClient(t, Options{Addrs: []string{s.Addr}, ReadTimeout: 5 * time.Second})
	if err := c.RepoSetDescriptor(ctx, "team/app", blob, desc); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	defer s.Continue()
	deadline, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	started := time.Now()
	if _, err := c.RepoStat(deadline, "team/app", blob); err == nil || time.Since(started) > 400*time.Millisecond {
		t.Fatalf("with a 100 ms deadline: %v after %v", err, time.Since(started))
	}
	cancelled, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	started = time.Now()
	if _, err := c.Stat(cancelled, blob); err == nil || time.Since(started) > 400*time.Millisecond {
		t.Fatalf("cancelled after 100 ms: %v after %v", err, time.Since(started))
	}
}

// Within one request the first answer stands: three Stats of a blob in one request
// context make one round trip; the request's own write is read at once; the next
// request asks Redis again.
func TestRequestReadsOnce(t *testing.T) {
	s := redistest.Start(t)
	c := newClient(t, Options{Addrs: []string{s.Addr}})
	request, end := context.WithCancel(ctx)
	readsOnce(t, c, request, func() int64 { return statCalls(t, s) })
	s.Do(t, "LAYERCACHE.REPOCLEAR", "team/other", blob) // another registry's delete
	if _, err := c.RepoStat(request, "team/other", blob); err != nil {
		t.Fatalf("the request's first answer: %v", err)
	}
	if err := c.RepoSetDescriptor(request, "team/app", blob, desc); err != nil {
		t.Fatal(err)
	}
	if err := c.RepoClear(request, "team/app", blob); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RepoStat(request, "team/app", blob); err != ErrUnknown {
		t.Fatalf("after its own Clear the request read %v, want a miss", err)
	}
	end()
	next, done := context.WithCancel(ctx)
	defer done()
	redistest.WaitFor(t, 5*time.Second, "the ended request's answers gone", func() bool {
		_, ok := c.requests.Load(request.Done())
		return !ok
	})
	if _, err := c.RepoStat(next, "team/app", blob); err != ErrUnknown {
		t.Fatalf("the next request: %v", err)
	}
}

// registryRequest is a context as distribution makes one per request: it carries the
// request's *http.Request as "http.request".
type registryRequest struct {
	context.Context
	r *http.Request
}

func (c registryRequest) Value(key any) any {
	if key == "http.request" {
		return c.r
	}
	return c.Context.Value(key)
}

// v3's notification listener Stats a blob it served with context.WithoutCancel(request):
// the detached context still belongs to the request: it reads the request's first
// answer, and after the request paid a timeout it is skipped, not a second timeout.
func TestDetachedRequestContext(t *testing.T) {
	s := redistest.Start(t)
	c := newClient(t, Options{Addrs: []string{s.Addr}, ReadTimeout: 300 * time.Millisecond})
	calls := func() int64 { return s.Info(t, "layercache", "layercache_repostat_calls") }
	newRequest := func() registryRequest {
		base, end := context.WithCancel(ctx)
		t.Cleanup(end)
		return registryRequest{base, httptest.NewRequest("HEAD", "/v2/team/app/blobs/"+string(blob), nil)}
	}
	if err := c.RepoSetDescriptor(ctx, "team/app", blob, desc); err != nil {
		t.Fatal(err)
	}
	request, before := newRequest(), calls()
	for _, stat := range []context.Context{request, context.WithoutCancel(request)} {
		if got, err := c.RepoStat(stat, "team/app", blob); err != nil || !reflect.DeepEqual(got, desc) {
			t.Fatalf("Stat: %v, %v", got, err)
		}
	}
	if n := calls() - before; n != 1 {
		t.Fatalf("a Stat and its detached repeat sent %d REPOSTATs, want 1", n)
	}

	s.Stop()
	defer s.Continue()
	request = newRequest()
	if _, err := c.RepoStat(request, "team/app", blob); err == nil {
		t.Fatal("a Stat on a hung server succeeded")
	}
	started := time.Now()
	if _, err := c.RepoStat(context.WithoutCancel(request), "team/app", blob); err != ErrUnknown || time.Since(started) > 100*time.Millisecond {
		t.Fatalf("the detached Stat of a request that paid a timeout: %v after %v, want a miss at once", err, time.Since(started))
	}
}

// Close is idempotent: a second Close (two owners: dist3.New hands the Client out beside
// the provider) returns without a panic, with the tier on one node and on Sentinel.
func TestCloseTwice(t *testing.T) {
	primary := redistest.Start(t)
	sentinels := redistest.Addrs(redistest.Sentinels(t, primary, 1, ""))
	for name, o := range map[string]Options{
		"node":     {Addrs: []string{primary.Addr}},
		"sentinel": {Addrs: sentinels, MasterName: "layercache"},
	} {
		t.Run(name, func(t *testing.T) {
			c := tiered(t, o)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("the second Close: %v", err)
			}
		})
	}
}

// A +switch-master that no answer confirms (one sentinel announced a master the majority
// never named) moves the provider only until the majority has named another master for
// unconfirmedAfter: then it goes back there, where before it stayed for good.
func TestSentinelUnconfirmedAnnouncement(t *testing.T) {
	primary, other, rogue := redistest.Start(t), redistest.Start(t), redistest.Start(t)
	sentinels := redistest.Addrs(redistest.Sentinels(t, primary, 3, ""))
	var log redistest.Logs
	c := newClient(t, Options{Addrs: append(sentinels, rogue.Addr), MasterName: "layercache", Logf: log.Logf})
	if err := c.RepoSetDescriptor(ctx, "team/app", blob, desc); err != nil {
		t.Fatal(err)
	}
	announce := fmt.Sprintf("layercache 127.0.0.1 %d 127.0.0.1 %d", primary.Port, other.Port)
	redistest.WaitFor(t, 10*time.Second, "the announcement heard", func() bool {
		rogue.Do(t, "PUBLISH", "+switch-master", announce)
		return log.Count(fmt.Sprintf("to 127.0.0.1:%d", other.Port)) == 1
	})
	if _, err := c.RepoStat(ctx, "team/app", blob); err != ErrUnknown {
		t.Fatalf("on the announced master: %v; want a miss", err)
	}
	started := time.Now()
	redistest.WaitFor(t, unconfirmedAfter+3*refreshEvery, "back on the master the sentinels name", func() bool {
		_, err := c.RepoStat(ctx, "team/app", blob)
		return err == nil
	})
	t.Logf("back on the master the sentinels name %v after the announcement", time.Since(started).Round(time.Second))
}

// A cancellable context that is no registry request (an embedder's root context, never
// cancelled) is not one endless request: its first answers and its paid timeout stand
// for unnamedSpan only, then Redis is asked again.
func TestUnnamedContextIsNoEndlessRequest(t *testing.T) {
	s := redistest.Start(t)
	c := newClient(t, Options{Addrs: []string{s.Addr}, ReadTimeout: 300 * time.Millisecond})
	root, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.RepoSetDescriptor(root, "team/app", blob, desc); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RepoStat(root, "team/app", blob); err != nil {
		t.Fatal(err)
	}
	s.Do(t, "LAYERCACHE.REPOCLEAR", "team/app", blob) // another registry's delete
	redistest.WaitFor(t, 5*time.Second, "the delete seen through the root context", func() bool {
		_, err := c.RepoStat(root, "team/app", blob)
		return err == ErrUnknown
	})

	s.Stop()
	time.Sleep(unnamedSpan) // the last answer's span over
	if _, err := c.RepoStat(root, "team/app", blob); err == nil || err == ErrUnknown {
		t.Fatalf("a Stat on a hung server: %v; want its timeout", err)
	}
	s.Continue()
	if err := c.RepoSetDescriptor(context.Background(), "team/app", blob, desc); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, "Redis asked again through the root context", func() bool {
		_, err := c.RepoStat(root, "team/app", blob)
		return err == nil
	})
}

// Close landing between a sentinel's answer and the switch to the master it named: the
// call gets an error, not a nil client to dereference.
func TestCloseBetweenAnswerAndSwitch(t *testing.T) {
	primary := redistest.Start(t)
	o := Options{Addrs: redistest.Addrs(redistest.Sentinels(t, primary, 1, "")), MasterName: "layercache"}.withDefaults()
	d := &direct{o: o, breaker: newBreaker("", o), changed: make(chan struct{})}
	d.closed = true // Close ran once the sentinels had answered
	s := newSentinels(o, nil, d)
	d.sentinels = s
	t.Cleanup(s.close)
	if srv, err := s.first(ctx); err == nil {
		t.Fatalf("first after Close: server %v, no error", srv)
	}
	if _, _, err := d.run(ctx, "PING"); err == nil {
		t.Fatal("a call after Close: no error")
	}
}

// The request memo serves on a cluster too: three repository Stats of a blob in one
// request make one REPOSTAT.
func TestRequestReadsOnceOnCluster(t *testing.T) {
	nodes := redistest.StartCluster(t, 3, 0, []string{"scheme", "blob"})
	c := newClient(t, Options{Addrs: redistest.Addrs(nodes)})
	request, end := context.WithCancel(ctx)
	defer end()
	readsOnce(t, c, request, func() int64 { return statCalls(t, nodes...) })
}

// statCalls counts the STATs and REPOSTATs the servers ran.
func statCalls(t *testing.T, servers ...*redistest.Server) (n int64) {
	t.Helper()
	for _, s := range servers {
		n += s.Info(t, "layercache", "layercache_repostat_calls") + s.Info(t, "layercache", "layercache_stat_calls")
	}
	return n
}

// readsOnce writes the blob's descriptor in request, then checks that three repository
// Stats of it and a global Stat (a blob HEAD's four) in the same request make one
// command (calls counts STATs and REPOSTATs): REPOSTAT's reply carries the global
// descriptor too, its own mediatype included.
func readsOnce(t *testing.T, c *Client, request context.Context, calls func() int64) {
	t.Helper()
	other := Descriptor{Digest: blob, Size: desc.Size, MediaType: "application/x-other"}
	if err := c.RepoSetDescriptor(request, "team/app", blob, desc); err != nil {
		t.Fatal(err)
	}
	if err := c.RepoSetDescriptor(request, "team/other", blob, other); err != nil {
		t.Fatal(err)
	}
	before := calls()
	for i := 0; i < 3; i++ {
		if got, err := c.RepoStat(request, "team/other", blob); err != nil || !reflect.DeepEqual(got, other) {
			t.Fatalf("Stat %d: %v, %v", i, got, err)
		}
	}
	if got, err := c.Stat(request, blob); err != nil || !reflect.DeepEqual(got, desc) {
		t.Fatalf("the global Stat: %v, %v; want %v (the first writer's mediatype)", got, err, desc)
	}
	if n := calls() - before; n != 1 {
		t.Fatalf("three repository Stats and a global Stat in one request sent %d commands, want 1", n)
	}
}

// On a cluster a request pays at most one timeout per master, not per request: after
// one master's timeout, the same request's Clear on a healthy master still runs.
func TestClusterPaidPerMaster(t *testing.T) {
	nodes := redistest.StartCluster(t, 3, 0, []string{"scheme", "blob"})
	c := newClient(t, Options{Addrs: redistest.Addrs(nodes), ReadTimeout: 300 * time.Millisecond})
	owner := func(d digest.Digest) string {
		node, err := c.topo.(*clusterTopology).client.MasterForKey(ctx, string(d))
		if err != nil {
			t.Fatal(err)
		}
		return node.Options().Addr
	}
	hung := nodes[0]
	var onHung, elsewhere digest.Digest
	for i := 0; onHung == "" || elsewhere == ""; i++ {
		d := digest.FromString(fmt.Sprint("blob ", i))
		if owner(d) == hung.Addr {
			onHung = d
		} else {
			elsewhere = d
		}
	}
	if err := c.RepoSetDescriptor(ctx, "team/app", elsewhere, desc); err != nil {
		t.Fatal(err)
	}
	hung.Stop()
	defer hung.Continue()
	request, end := context.WithCancel(ctx)
	defer end()
	if _, err := c.RepoStat(request, "team/app", onHung); err == nil || err == ErrUnknown {
		t.Fatalf("a Stat on the hung master: %v; want its timeout", err)
	}
	if err := c.RepoClear(request, "team/app", elsewhere); err != nil {
		t.Fatalf("the same request's Clear on a healthy master: %v", err)
	}
}

// With TLS, a server that accepts TCP and never completes the handshake holds a call
// for the call's timeout, not DialTimeout: the handshake runs within the call's context.
func TestTLSHandshakeWithinTheCall(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept() // accepted, never answered
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
		}
	}()
	c := newClient(t, Options{Addrs: []string{l.Addr().String()}, TLS: true, DialTimeout: 5 * time.Second, ReadTimeout: 300 * time.Millisecond})
	started := time.Now()
	if _, err := c.RepoStat(ctx, "team/app", blob); err == nil || err == ErrUnknown {
		t.Fatalf("a Stat through a handshake that never ends: %v", err)
	}
	if took := time.Since(started); took > time.Second {
		t.Fatalf("a Stat took %v through a handshake that never ends; want the call's 300 ms", took)
	}
}
