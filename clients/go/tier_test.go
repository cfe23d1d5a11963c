package layercache

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/distribution"
	dredis "github.com/docker/distribution/registry/storage/cache/redis"
	garyburd "github.com/garyburd/redigo/redis"
	"github.com/gomodule/redigo/redis"
	"github.com/layercache/go-layercache/internal/redistest"
	"github.com/opencontainers/go-digest"
)

// tiered is a Client with the local tier on, once it serves.
func tiered(t *testing.T, o Options) *Client {
	t.Helper()
	o.LocalEntries = 1000
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	c := newClient(t, o)
	redistest.WaitFor(t, 10*time.Second, "the tier serving", func() bool { return c.Stats().TierServing })
	return c
}

// stat is c's Stat (repo "") or repository Stat.
func stat(c *Client, repo string, dgst digest.Digest) (Descriptor, error) {
	if repo == "" {
		return c.Stat(ctx, dgst)
	}
	return c.RepoStat(ctx, repo, dgst)
}

// truth is the server's own answer to a Stat (repo "") or repository Stat.
func truth(t *testing.T, c redis.Conn, repo string, dgst digest.Digest) (Descriptor, error) {
	t.Helper()
	var reply []interface{}
	var err error
	if repo == "" {
		reply, err = redis.Values(c.Do("LAYERCACHE.STAT", dgst))
	} else {
		reply, err = redis.Values(c.Do("LAYERCACHE.REPOSTAT", repo, dgst))
	}
	if err == redis.ErrNil {
		return Descriptor{}, ErrUnknown
	}
	if err != nil {
		t.Fatalf("the server's answer: %v", err)
	}
	var desc Descriptor
	if _, err := redis.Scan(reply, &desc.Digest, &desc.Size, &desc.MediaType); err != nil {
		t.Fatal(err)
	}
	return desc, nil
}

// fence writes a key in every tracked prefix on every server and waits until each
// instance has seen all of them: every change before it has then reached them too.
// One key is not enough: Redis sends broadcast invalidations once per event loop, one
// message per prefix in the prefixes' order, so a change in the fence's loop (an
// eviction its SET made) to a key of a later prefix (`sha256:` after `blobs::`)
// arrives after it. A server's keys are written in one MULTI, so they share a loop
// with anything they could race; each fence deletes the last one's keys. On a
// cluster, each master's keys carry a hash tag of its slots (servers.tags).
type fence struct {
	clients []*Client
	srv     *servers
	n       int64
	seen    [][]*atomic.Int64 // per instance, per server and tracked prefix: the last fence seen
}

func fenceKey(prefix string, n int64, tag string) string {
	return fmt.Sprintf("%sfence:%d%s", prefix, n, tag)
}

func newFence(c redis.Conn, instances ...*Client) *fence {
	return newServersFence(oneServer(c), instances...)
}

func newServersFence(srv *servers, instances ...*Client) *fence {
	f := &fence{srv: srv, clients: instances}
	for _, p := range instances {
		var seen []*atomic.Int64
		for range len(srv.tags) * len(trackedPrefixes) {
			seen = append(seen, &atomic.Int64{})
		}
		f.seen = append(f.seen, seen)
		p.tier.mu.Lock()
		p.tier.seen = func(key string) {
			for i, tag := range srv.tags {
				for j, prefix := range trackedPrefixes {
					s, ok := strings.CutPrefix(key, prefix+"fence:")
					if s, ok = strings.CutSuffix(s, tag); !ok {
						continue
					}
					last := seen[i*len(trackedPrefixes)+j]
					if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > last.Load() {
						last.Store(n)
					}
				}
			}
		}
		p.tier.mu.Unlock()
	}
	return f
}

func (f *fence) wait(t *testing.T) {
	t.Helper()
	f.n++
	for i, tag := range f.srv.tags {
		c := f.srv.conns[i]
		c.Send("MULTI")
		for _, prefix := range trackedPrefixes {
			c.Send("DEL", fenceKey(prefix, f.n-1, tag))
			c.Send("SET", fenceKey(prefix, f.n, tag), 1)
		}
		if _, err := c.Do("EXEC"); err != nil {
			t.Fatal(err)
		}
	}
	for _, seen := range f.seen {
		redistest.WaitFor(t, 10*time.Second, "an instance to see the fence", func() bool {
			for _, s := range seen {
				if s.Load() < f.n {
					return false
				}
			}
			return true
		})
	}
}

// servers are where a test's plain commands go: the one server, or a cluster's
// masters, a key to the master of its slot (no resharding meanwhile). tags holds, per
// server, a suffix for fence keys that puts them there ("" for the one server).
type servers struct {
	conns  []redis.Conn
	tags   []string
	ranges [][3]int // cluster: first slot, last slot, index in conns
}

func oneServer(c redis.Conn) *servers { return &servers{conns: []redis.Conn{c}, tags: []string{""}} }

// clusterServers are a cluster's masters (its nodes, all masters).
func clusterServers(t *testing.T, masters []*redistest.Server) *servers {
	t.Helper()
	srv := &servers{}
	index := map[int]int{}
	for i, m := range masters {
		srv.conns = append(srv.conns, m.Dial(t))
		index[m.Port] = i
	}
	slots, err := redis.Values(srv.conns[0].Do("CLUSTER", "SLOTS"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range slots {
		entry, _ := r.([]interface{})
		from, _ := redis.Int(entry[0], nil)
		to, _ := redis.Int(entry[1], nil)
		master, _ := entry[2].([]interface{})
		port, _ := redis.Int(master[1], nil)
		srv.ranges = append(srv.ranges, [3]int{from, to, index[port]})
	}
	srv.tags = make([]string, len(masters))
	for n, found := 0, 0; found < len(masters); n++ {
		tag := fmt.Sprintf(":{fence%d}", n)
		if i := srv.index(t, tag); srv.tags[i] == "" {
			srv.tags[i] = tag
			found++
		}
	}
	return srv
}

// index is the server of key, in conns.
func (s *servers) index(t *testing.T, key string) int {
	if len(s.conns) == 1 {
		return 0
	}
	slot, err := redis.Int(s.conns[0].Do("CLUSTER", "KEYSLOT", key))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s.ranges {
		if slot >= r[0] && slot <= r[1] {
			return r[2]
		}
	}
	t.Fatalf("no master serves slot %d", slot)
	return 0
}

// of is the server of key.
func (s *servers) of(t *testing.T, key string) redis.Conn { return s.conns[s.index(t, key)] }

// each runs a command on every server.
func (s *servers) each(t *testing.T, args ...interface{}) {
	t.Helper()
	for _, c := range s.conns {
		if _, err := c.Do(args[0].(string), args[1:]...); err != nil {
			t.Fatal(err)
		}
	}
}

// sum is the sum of an INFO field over the servers.
func (s *servers) sum(t *testing.T, section, name string) (n int64) {
	t.Helper()
	for _, c := range s.conns {
		info, err := redis.String(c.Do("INFO", section))
		if err != nil {
			t.Fatal(err)
		}
		n += redistest.InfoField(info, name)
	}
	return n
}

// No stale read after an invalidation: a writer instance and a reader instance (two
// registries), both with the tier, on one server with allkeys-lru eviction. The writer
// stores and clears through the provider, the module (PURGE) and plain commands (as a
// stock registry writes, in the distribution scheme through distribution's own
// provider), expires keys (TTL) and fills memory so that keys are evicted, and now and
// then flushes; readers in the background keep the tier busy meanwhile. After each
// change and a fence, the reader's answer equals the server's. The writer reads its own
// writes at once. LAYERCACHE_SEED replays a run; LAYERCACHE_OPS sets its length.
func TestLocalTierNoStaleRead(t *testing.T) {
	ops, seed := staleRunLength()
	for _, scheme := range schemes {
		t.Run(scheme, func(t *testing.T) {
			t.Logf("LAYERCACHE_SEED=%d LAYERCACHE_OPS=%d", seed, ops)
			s := redistest.Start(t, "scheme", scheme)
			staleRun(t, scheme, oneServer(s.Dial(t)), Options{Addrs: []string{s.Addr}}, rand.New(rand.NewSource(seed)), ops)
		})
	}
}

// The same on a 3-master cluster (scheme blob): one tracking session per master, an
// entry kept only from the master of its slot.
func TestClusterTierNoStaleRead(t *testing.T) {
	ops, seed := staleRunLength()
	t.Logf("LAYERCACHE_SEED=%d LAYERCACHE_OPS=%d", seed, ops)
	nodes := redistest.StartCluster(t, 3, 0, []string{"scheme", "blob"})
	staleRun(t, "blob", clusterServers(t, nodes), Options{Addrs: redistest.Addrs(nodes)}, rand.New(rand.NewSource(seed)), ops)
}

// staleRunLength is a stale-read run's length and seed: LAYERCACHE_OPS (100,000 by
// default) and LAYERCACHE_SEED (the time by default).
func staleRunLength() (ops int, seed int64) {
	ops, seed = 100_000, time.Now().UnixNano()
	if s := os.Getenv("LAYERCACHE_OPS"); s != "" {
		ops, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("LAYERCACHE_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	return ops, seed
}

// staleRun runs the stale-read run on srv (scheme; o reaches it) with rng, ops
// operations long.
func staleRun(t *testing.T, scheme string, srv *servers, o Options, rng *rand.Rand, ops int) {
	// Room for the cache and the fences, not for much filler: filler evicts.
	for _, c := range srv.conns {
		info, err := redis.String(c.Do("INFO", "memory"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Do("CONFIG", "SET", "maxmemory", redistest.InfoField(info, "used_memory")+2<<20, "maxmemory-policy", "allkeys-lru"); err != nil {
			t.Fatal(err)
		}
	}
	writer, reader := tiered(t, o), tiered(t, o)
	stock := dredis.NewRedisBlobDescriptorCacheProvider(&garyburd.Pool{Dial: func() (garyburd.Conn, error) { return garyburd.Dial("tcp", o.Addrs[0]) }})
	f := newServersFence(srv, writer, reader)
	on := func(key string) redis.Conn { return srv.of(t, key) }

	repos := []string{"team-a/app", "team-b/app", "team-c/web"}
	var digests []digest.Digest
	for i := 0; i < 24; i++ {
		digests = append(digests, digest.FromString(fmt.Sprint("blob ", i)))
	}
	alias := func(d digest.Digest) digest.Digest { return digest.SHA512.FromString(string(d)) }
	mediatypes := []string{"application/octet-stream", "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.config.v1+json"}
	randDesc := func(d digest.Digest) Descriptor {
		return Descriptor{Digest: d, Size: rng.Int63n(1 << 30), MediaType: mediatypes[rng.Intn(len(mediatypes))]}
	}
	// A key the scheme stores blob d's state in, for plain DEL, TTL and the like.
	someKey := func(d digest.Digest) string {
		if scheme == "blob" {
			return string(d)
		}
		switch rng.Intn(3) {
		case 0:
			return "blobs::" + string(d)
		case 1:
			return "repository::" + repos[rng.Intn(len(repos))] + "::blobs"
		}
		return "repository::" + repos[rng.Intn(len(repos))] + "::blobs::" + string(d)
	}

	// Background reads on the reader, racing the writes.
	var background sync.WaitGroup
	halt := make(chan struct{})
	var stopOnce sync.Once
	stopBackground := func() { stopOnce.Do(func() { close(halt); background.Wait() }) }
	defer stopBackground()
	for g := 0; g < 2; g++ { // paced, so that they race the writes rather than hog the tier's lock
		background.Add(1)
		go func(r *rand.Rand) {
			defer background.Done()
			for {
				select {
				case <-halt:
					return
				default:
				}
				repo := ""
				if r.Intn(3) > 0 {
					repo = repos[r.Intn(len(repos))]
				}
				stat(reader, repo, digests[r.Intn(len(digests))])
				time.Sleep(100 * time.Microsecond)
			}
		}(rand.New(rand.NewSource(rng.Int63())))
	}

	evicted := func() int64 { return srv.sum(t, "stats", "evicted_keys") }
	var checks, fromTier, retried, fences, fillers int
	check := func(i int, p *Client, who, repo string, dgst digest.Digest, since int64, op string) {
		for attempt := 0; ; attempt++ {
			if p.tier.holds(entryKey{repo: repo, dgst: dgst}) {
				fromTier++
			}
			got, gotErr := stat(p, repo, dgst)
			want, wantErr := truth(t, on(string(dgst)), repo, dgst)
			checks++
			if reflect.DeepEqual(got, want) && gotErr == wantErr {
				return
			}
			// Only an eviction after the fence may make the server's answer newer than
			// what the reader has heard: fence again and ask again.
			now := evicted()
			if now == since || attempt == 3 {
				t.Fatalf("op %d (%s): %s's Stat(%q, %s) = %v, %v; the server's: %v, %v", i, op, who, repo, dgst, got, gotErr, want, wantErr)
			}
			retried++
			since = now
			f.wait(t)
		}
	}

	for i := 0; i < ops; i++ {
		dgst := digests[rng.Intn(len(digests))]
		repo := repos[rng.Intn(len(repos))]
		var op string
		var err error
		ownWrite := true
		switch n := rng.Intn(1000); {
		case n < 450: // a read on the reader, after the last fence
			readRepo := ""
			if rng.Intn(3) > 0 {
				readRepo = repo
			}
			check(i, reader, "the reader", readRepo, dgst, evicted(), "read")
			continue
		case n < 550:
			op, err = "repository SetDescriptor", writer.RepoSetDescriptor(ctx, repo, dgst, randDesc(dgst))
		case n < 580:
			a := alias(dgst)
			op, err = "repository SetDescriptor with an alias", writer.RepoSetDescriptor(ctx, repo, dgst, randDesc(a))
		case n < 630:
			op, err = "SetDescriptor", writer.SetDescriptor(ctx, dgst, randDesc(dgst))
		case n < 680:
			op, err = "repository Clear (REPOCLEAR)", writer.RepoClear(ctx, repo, dgst)
		case n < 710:
			op, err = "Clear", writer.Clear(ctx, dgst)
		case n < 740:
			op, ownWrite = "PURGE", false
			_, err = on(string(dgst)).Do("LAYERCACHE.PURGE", dgst)
		case n < 820:
			ownWrite = false
			if scheme == "distribution" {
				sr, _ := stock.RepositoryScoped(repo)
				dd := randDesc(dgst)
				op, err = "a stock registry's repository SetDescriptor", sr.SetDescriptor(ctx, dgst, distribution.Descriptor{Digest: dd.Digest, Size: dd.Size, MediaType: dd.MediaType})
			} else {
				op = "HSET of a repository field"
				_, err = on(string(dgst)).Do("HSET", dgst, "repo:"+repo, mediatypes[rng.Intn(len(mediatypes))])
			}
		case n < 860:
			op, ownWrite = "plain DEL", false
			key := someKey(dgst)
			_, err = on(key).Do("DEL", key)
		case n < 900:
			op, ownWrite = "TTL expiry", false
			key := someKey(dgst)
			if _, err = on(key).Do("PEXPIRE", key, 1+rng.Intn(3)); err == nil {
				redistest.WaitFor(t, 5*time.Second, key+" to expire", func() bool { n, _ := redis.Int(on(key).Do("EXISTS", key)); return n == 0 })
			}
		case n < 999:
			op, ownWrite = "filler (eviction)", false
			fillers++
			key := fmt.Sprint("filler:", i)
			_, err = on(key).Do("SET", key, strings.Repeat("x", 64<<10))
		default:
			// Every server's tracking starts over (tracking.go, errFlushed): once each
			// has, the fences that follow are heard.
			op, ownWrite = "FLUSHALL", false
			started := []int64{writer.tier.sessions.Load(), reader.tier.sessions.Load()}
			srv.each(t, "FLUSHALL")
			for i, p := range []*Client{writer, reader} {
				redistest.WaitFor(t, 10*time.Second, "tracking to start over after FLUSHALL", func() bool {
					return p.tier.sessions.Load() >= started[i]+int64(len(srv.conns)) && p.Stats().TierServing
				})
			}
		}
		if err != nil && err != ErrUnknown {
			t.Fatalf("op %d (%s): %v", i, op, err)
		}
		before := evicted()
		if ownWrite { // the writer reads its own write at once, with no fence
			check(i, writer, "the writer", repo, dgst, before, op)
		}
		f.wait(t)
		fences++
	}
	stopBackground()
	t.Logf("%d operations: %d checks, 0 stale, %d of them answered by the tier; %d fences; %d rechecked after an eviction "+
		"(%d keys evicted, %d fillers)", ops, checks, fromTier, fences, retried, evicted(), fillers)
	if evicted() == 0 || fromTier < checks/4 {
		t.Fatal("the run evicted nothing, or the reader's tier served few of its reads: it did not test what it should")
	}
}

// A blob HEAD (a repository Stat, then the global one, in one request) makes one
// REPOSTAT through the tier, whose reply fills both entries; the next HEAD makes none.
func TestLocalTierOneCommandPerHead(t *testing.T) {
	for _, scheme := range schemes {
		t.Run(scheme, func(t *testing.T) {
			s := redistest.Start(t, "scheme", scheme)
			o := Options{Addrs: []string{s.Addr}}
			writer, reader := tiered(t, o), tiered(t, o)
			f := newFence(s.Dial(t), writer, reader)
			if err := writer.RepoSetDescriptor(ctx, "team/app", blob, desc); err != nil {
				t.Fatal(err)
			}
			f.wait(t)
			calls := func() int64 { return statCalls(t, s) }
			for i, want := range []int64{1, 0} {
				request, end := context.WithCancel(ctx)
				before := calls()
				if got, err := reader.RepoStat(request, "team/app", blob); err != nil || !reflect.DeepEqual(got, desc) {
					t.Fatalf("HEAD %d, the repository Stat: %v, %v", i, got, err)
				}
				if got, err := reader.Stat(request, blob); err != nil || !reflect.DeepEqual(got, desc) {
					t.Fatalf("HEAD %d, the global Stat: %v, %v", i, got, err)
				}
				end()
				if n := calls() - before; n != want {
					t.Fatalf("HEAD %d sent %d commands, want %d", i, n, want)
				}
			}
		})
	}
}

// CVE-2026-35172 through the tier: a blob cleared from one repository does not come
// back to it when another repository caches it again, though the reader's tier held
// the first repository's descriptor.
func TestLocalTierClearedBlobStaysCleared(t *testing.T) {
	for _, scheme := range schemes {
		t.Run(scheme, func(t *testing.T) {
			s := redistest.Start(t, "scheme", scheme)
			o := Options{Addrs: []string{s.Addr}}
			writer, reader := tiered(t, o), tiered(t, o)
			f := newFence(s.Dial(t), writer, reader)
			for _, repo := range []string{"team/a", "team/b"} {
				if err := writer.RepoSetDescriptor(ctx, repo, blob, desc); err != nil {
					t.Fatal(err)
				}
			}
			f.wait(t)
			for i := 0; i < 2; i++ { // a miss that fills the tier, then a hit from it
				if got, err := stat(reader, "team/a", blob); err != nil || !reflect.DeepEqual(got, desc) {
					t.Fatalf("team/a before the clear: %v, %v", got, err)
				}
			}
			if n := reader.Stats().TierServed; n != 1 {
				t.Fatalf("the tier served %d Stats, want 1", n)
			}
			if err := writer.RepoClear(ctx, "team/a", blob); err != nil {
				t.Fatal(err)
			}
			if err := writer.RepoSetDescriptor(ctx, "team/b", blob, desc); err != nil {
				t.Fatal(err)
			}
			f.wait(t)
			for _, p := range []*Client{writer, reader} {
				if _, err := stat(p, "team/a", blob); err != ErrUnknown {
					t.Fatalf("team/a sees the blob team/b cached again: %v", err)
				}
				if got, err := stat(p, "team/b", blob); err != nil || !reflect.DeepEqual(got, desc) {
					t.Fatalf("team/b: %v, %v", got, err)
				}
			}
		})
	}
}

// trackingClient is the id of p's tracking connection on the server c is to.
func trackingClient(t *testing.T, c redis.Conn) string {
	t.Helper()
	list, err := redis.String(c.Do("CLIENT", "LIST", "TYPE", "pubsub"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		// The connection that tracks with its invalidations redirected to itself.
		id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
		if strings.Contains(line, " redir="+id+" ") {
			return id
		}
	}
	t.Fatalf("no tracking connection in %q", list)
	return ""
}

// Losing the tracking connection empties the tier and stops it serving until tracking
// is back; a change meanwhile (whose invalidation nobody hears) is read from Redis. The
// same when Redis restarts. Then the tier fills again.
func TestLocalTierTrackingLost(t *testing.T) {
	s := redistest.Start(t)
	var log redistest.Logs
	p := tiered(t, Options{Addrs: []string{s.Addr}, Logf: log.Logf})
	if err := p.RepoSetDescriptor(ctx, "team/app", blob, desc); err != nil {
		t.Fatal(err)
	}
	c := s.Dial(t)
	f := newFence(c, p)
	fill := func(what string) {
		t.Helper()
		redistest.WaitFor(t, 10*time.Second, "the tier serving "+what, func() bool { return p.Stats().TierServing })
		// The invalidation of the last write may still be on its way: one arriving
		// after the miss below would drop the entry it stored.
		f.wait(t)
		before := p.Stats().TierServed
		for i := 0; i < 2; i++ {
			stat(p, "team/app", blob) //nolint:errcheck
		}
		// The repository Stat's reply fills the global Stat's entry too (WITHGLOBAL).
		if s := p.Stats(); s.TierEntries != 2 || s.TierServed != before+1 {
			t.Fatalf("%s: the tier holds %d entries and served %d; want 2 and 1", what, s.TierEntries, s.TierServed-before)
		}
	}
	fill("at start")

	started := time.Now()
	if _, err := c.Do("CLIENT", "KILL", "ID", trackingClient(t, c)); err != nil {
		t.Fatal(err)
	}
	// A stock registry's write, as the connection is gone: the mediatype changes.
	if _, err := c.Do("HSET", "repository::team/app::blobs::"+string(blob), "mediatype", "application/octet-stream"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, "the tier to stop", func() bool { s := p.Stats(); return s.TierEntries == 0 && !s.TierServing })
	if got, err := stat(p, "team/app", blob); err != nil || got.MediaType != "application/octet-stream" {
		t.Fatalf("after CLIENT KILL: %v, %v; want the changed mediatype", got, err)
	}
	fill("after CLIENT KILL")
	t.Logf("tracking back %v after CLIENT KILL", time.Since(started))

	s.Kill()
	redistest.WaitFor(t, 5*time.Second, "the tier to stop", func() bool { s := p.Stats(); return s.TierEntries == 0 && !s.TierServing })
	back := redistest.StartOn(t, s.Port)
	defer back.Kill()
	// The new server is empty: a miss, from Redis or from the tier once it is back.
	redistest.WaitFor(t, 10*time.Second, "the provider to reach the new server", func() bool {
		_, err := stat(p, "team/app", blob)
		return err == ErrUnknown && !p.Stats().BreakerOpen
	})
	if err := p.RepoSetDescriptor(ctx, "team/app", blob, desc); err != nil {
		t.Fatal(err)
	}
	f.srv.conns[0] = back.Dial(t) // the fence's connection went with the old server
	fill("after the restart")
	if n := log.Count("local tier off"); n != 2 {
		t.Fatalf("logged the tier going off %d times, want 2: %q", n, log.Lines)
	}
}

// Resharding under reads: slots move from the three masters to a fourth that joins
// empty (untracked until it holds slots and the tracker lists it), while a writer
// instance writes and every answer of a reader instance is checked against the
// server's: an answer that differs must come right within the lease and a margin (the
// invalidation in flight, or a slot the reader's tier still holds from its old master,
// whose next slot check drops it). The worst such delay is reported.
func TestClusterTierResharding(t *testing.T) {
	nodes := redistest.StartCluster(t, 3, 0, []string{"scheme", "blob"})
	added := redistest.StartClusterNode(t, []string{"scheme", "blob"})
	added.Join(t, nodes[0], nodes)
	masters := append(append([]*redistest.Server{}, nodes...), added)
	o := Options{Addrs: redistest.Addrs(nodes)}
	writer, reader := tiered(t, o), tiered(t, o)
	srv := clusterServers(t, nodes)

	repos := []string{"team-a/app", "team-b/app"}
	var digests []digest.Digest
	for i := 0; i < 32; i++ {
		digests = append(digests, digest.FromString(fmt.Sprint("resharded blob ", i)))
	}
	// The slots of half the digests move, one at a time, to the new master.
	done := make(chan struct{})
	var moved atomic.Int64
	go func() {
		defer close(done)
		for _, d := range digests[:16] {
			redistest.MoveSlot(t, nodes[0].Slot(t, string(d)), nodes[srv.index(t, string(d))], added, masters, 20*time.Millisecond)
			moved.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	truth := func(repo string, d digest.Digest) (Descriptor, error) {
		args := []interface{}{"LAYERCACHE.STAT", d}
		if repo != "" {
			args = []interface{}{"LAYERCACHE.REPOSTAT", repo, d}
		}
		reply, err := writer.Do(ctx, d, args...)
		if err == redis.ErrNil || reply == nil {
			return Descriptor{}, ErrUnknown
		}
		values, _ := reply.([]interface{})
		if err != nil || len(values) != 3 {
			t.Fatalf("the server's answer: %v, %v", reply, err)
		}
		return Descriptor{Digest: digest.Digest(values[0].(string)), Size: values[1].(int64), MediaType: values[2].(string)}, nil
	}
	const bound = DefaultLocalLease + 2*time.Second
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	var checks, late, fromTier int
	var worst time.Duration
	for moving := true; moving || checks < 2000; {
		select {
		case <-done:
			moving = false
		default:
		}
		d, repo := digests[rng.Intn(len(digests))], repos[rng.Intn(len(repos))]
		switch n := rng.Intn(10); {
		case n < 2:
			writer.RepoSetDescriptor(ctx, repo, d, Descriptor{Digest: d, Size: rng.Int63n(1000), MediaType: "application/octet-stream"}) //nolint:errcheck
		case n < 3:
			writer.RepoClear(ctx, repo, d) //nolint:errcheck
		case n < 4:
			writer.Clear(ctx, d) //nolint:errcheck
		default:
			if rng.Intn(3) == 0 {
				repo = ""
			}
			held := reader.tier.holds(entryKey{repo: repo, dgst: d})
			if held {
				fromTier++
			}
			checks++
			for started, first := time.Now(), true; ; first = false {
				got, gotErr := stat(reader, repo, d)
				want, wantErr := truth(repo, d)
				if reflect.DeepEqual(got, want) && gotErr == wantErr {
					if !first {
						late++
						worst = max(worst, time.Since(started))
						t.Logf("Stat(%q, %s) (from the tier: %v) right after %v", repo, d, held, time.Since(started))
					}
					break
				}
				if time.Since(started) > bound {
					t.Fatalf("the reader's Stat(%q, %s) = %v, %v for %v; the server's: %v, %v", repo, d, got, gotErr, bound, want, wantErr)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	t.Logf("%d checks while %d slots moved, %d of them answered by the tier; %d answers differed from the server's at first, "+
		"each right within %v (bound %v)", checks, moved.Load(), fromTier, late, worst, bound)
	if fromTier < checks/4 {
		t.Fatal("the reader's tier served few of its reads: the run did not test what it should")
	}
}

// A slot moved to a master the reader does not track yet, and written there at once:
// no tracking session hears that write, and the reader's tier held the key's miss
// from the old master. The old master's slot check drops its entries within the
// lease, and the reader reads the write.
func TestClusterTierSlotMoved(t *testing.T) {
	nodes := redistest.StartCluster(t, 3, 0, []string{"scheme", "blob"})
	added := redistest.StartClusterNode(t, []string{"scheme", "blob"})
	added.Join(t, nodes[0], nodes)
	reader := tiered(t, Options{Addrs: redistest.Addrs(nodes)})
	srv := clusterServers(t, nodes)
	for i := 0; i < 2; i++ { // a miss that fills the tier, then the tier's
		if _, err := reader.Stat(ctx, blob); err != ErrUnknown {
			t.Fatalf("before the move: %v", err)
		}
	}
	if served := reader.Stats().TierServed; served != 1 {
		t.Fatalf("the tier served %d Stats, want 1", served)
	}
	redistest.MoveSlot(t, nodes[0].Slot(t, string(blob)), nodes[srv.index(t, string(blob))], added, append(nodes, added), 0)
	added.Do(t, "LAYERCACHE.SETDESCRIPTOR", blob, desc.Digest, desc.Size, desc.MediaType)
	written := time.Now()
	const bound = DefaultLocalLease + time.Second
	redistest.WaitFor(t, bound, "the reader to read the write on the new master", func() bool {
		got, err := reader.Stat(ctx, blob)
		return err == nil && reflect.DeepEqual(got, desc)
	})
	t.Logf("the reader read the write %v after it (lease %v)", time.Since(written), DefaultLocalLease)
}

// On a cluster, repeated Stats cost no round trip: the tier serves every master's
// entries (commands counted on every node).
func TestClusterTierRepeatedStat(t *testing.T) {
	nodes := redistest.StartCluster(t, 3, 0, []string{"scheme", "blob"})
	c := tiered(t, Options{Addrs: redistest.Addrs(nodes)})
	calls := func() int64 { return statCalls(t, nodes...) }
	srv := clusterServers(t, nodes)
	var digests []digest.Digest
	owners := map[int]bool{}
	for i := 0; len(digests) < 30; i++ {
		d := digest.FromString(fmt.Sprint("blob ", i))
		digests = append(digests, d)
		owners[srv.index(t, string(d))] = true
		if err := c.RepoSetDescriptor(ctx, "team/app", d, Descriptor{Digest: d, Size: 1, MediaType: desc.MediaType}); err != nil {
			t.Fatal(err)
		}
	}
	if len(owners) != 3 {
		t.Fatalf("the digests are on %d masters, want 3", len(owners))
	}
	for round, want := range []int64{int64(len(digests)), 0} {
		before := calls()
		for _, d := range digests {
			if _, err := c.RepoStat(ctx, "team/app", d); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Stat(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		if n := calls() - before; n != want {
			t.Fatalf("round %d: %d Stats and %d repository Stats sent %d commands, want %d", round, len(digests), len(digests), n, want)
		}
	}
}
