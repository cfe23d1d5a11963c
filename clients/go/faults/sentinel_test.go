package faults

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/internal/redistest"
	"github.com/opencontainers/go-digest"
)

// sentinelSet is a primary, its replica and three sentinels, with the time the first
// sentinel announced a new master.
type sentinelSet struct {
	primary, replica *redistest.Server
	sentinels        []*redistest.Server
	mu               sync.Mutex
	announced        time.Time
}

func startSentinels(t *testing.T) *sentinelSet {
	t.Helper()
	s := &sentinelSet{primary: redistest.Start(t)}
	s.replica = redistest.Start(t, "--replicaof", "127.0.0.1", fmt.Sprint(s.primary.Port))
	s.sentinels = redistest.Sentinels(t, s.primary, 3, "")
	redistest.ReplicaSynced(t, s.sentinels[0].Addr)
	for _, sn := range s.sentinels {
		c := redis.PubSubConn{Conn: sn.Dial(t)}
		if err := c.Subscribe("+switch-master"); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				switch c.Receive().(type) {
				case redis.Message:
					s.mu.Lock()
					if s.announced.IsZero() {
						s.announced = time.Now()
					}
					s.mu.Unlock()
				case error:
					return
				}
			}
		}()
	}
	return s
}

func (s *sentinelSet) options() layercache.Options {
	o := options(redistest.Addrs(s.sentinels)...)
	o.MasterName = "layercache"
	return o
}

// waitAnnounced waits for a sentinel's +switch-master and says when it came.
func (s *sentinelSet) waitAnnounced(t *testing.T) time.Time {
	t.Helper()
	var at time.Time
	redistest.WaitFor(t, 30*time.Second, "a sentinel announcing the new master", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		at = s.announced
		return !at.IsZero()
	})
	return at
}

// writes acknowledges unique repository writes through c until stopped, and checks
// afterwards which of those acknowledged after a time the new master lacks.
type writes struct {
	c     *layercache.Client
	mu    sync.Mutex
	acked map[digest.Digest]time.Time
	stop  chan struct{}
	done  sync.WaitGroup
}

func startWrites(c *layercache.Client) *writes {
	w := &writes{c: c, acked: map[digest.Digest]time.Time{}, stop: make(chan struct{})}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			d := digest.FromString(fmt.Sprint("write ", i))
			// Do, not RepoSetDescriptor: a write the breaker skipped is not acknowledged.
			if _, err := w.c.Do(ctx, d, "LAYERCACHE.REPOSETDESCRIPTOR", repo, d, d, 1, "application/octet-stream"); err == nil {
				w.mu.Lock()
				w.acked[d] = time.Now()
				w.mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w
}

// lost counts the writes acknowledged after since that master does not hold.
func (w *writes) lost(t *testing.T, master *redistest.Server, since time.Time) (lost, after int) {
	close(w.stop)
	w.done.Wait()
	c := master.Dial(t)
	for d, at := range w.acked {
		if at.Before(since) {
			continue
		}
		after++
		if reply, err := c.Do("LAYERCACHE.REPOSTAT", repo, d); err != nil || reply == nil {
			lost++
		}
	}
	return lost, after
}

// staleChecks reads the cleared blobs through c until stopped: a hit for one asked
// after its clear was acknowledged (plus the invalidation's way, 50 ms) is a stale read.
type staleChecks struct {
	mu      sync.Mutex
	cleared time.Time
	stale   int
	stop    chan struct{}
	done    sync.WaitGroup
}

var clearedBlobs = func() []digest.Digest {
	var all []digest.Digest
	for i := 0; i < 8; i++ {
		all = append(all, digest.FromString(fmt.Sprint("cleared ", i)))
	}
	return all
}()

func startStaleChecks(t *testing.T, c *layercache.Client) *staleChecks {
	t.Helper()
	for _, d := range clearedBlobs {
		if err := c.RepoSetDescriptor(ctx, repo, d, descriptor(d)); err != nil {
			t.Fatal(err)
		}
	}
	s := &staleChecks{stop: make(chan struct{})}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			default:
			}
			asked := time.Now()
			_, err := c.RepoStat(ctx, repo, clearedBlobs[i%len(clearedBlobs)])
			s.mu.Lock()
			if err == nil && !s.cleared.IsZero() && asked.After(s.cleared.Add(50*time.Millisecond)) {
				s.stale++
			}
			s.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	return s
}

// clear removes the blobs on master, as another registry's delete would.
func (s *staleChecks) clear(t *testing.T, master *redistest.Server) {
	c := master.Dial(t)
	for _, d := range clearedBlobs {
		if _, err := c.Do("LAYERCACHE.REPOCLEAR", repo, d); err != nil {
			t.Errorf("REPOCLEAR on the new master: %v", err)
		}
	}
	s.mu.Lock()
	s.cleared = time.Now()
	s.mu.Unlock()
}

func (s *staleChecks) halt() int {
	close(s.stop)
	s.done.Wait()
	return s.stale
}

// The primary killed, or partitioned (SIGSTOP for 8 s, then back, still believing it
// is the master until the sentinels demote it), under a busy provider, an idle one and
// one with the tier: no request over one timeout; no write acknowledged after a
// sentinel announced the new master is missing from it; no read after another
// registry's delete on the new master answers the deleted blob.
func TestSentinelPrimaryFault(t *testing.T) {
	for _, c := range []struct {
		name               string
		kill, idle, tiered bool
	}{
		{name: "Sentinel: primary killed, busy provider", kill: true},
		{name: "Sentinel: primary partitioned 8 s, busy provider"},
		{name: "Sentinel: primary partitioned 8 s, idle provider", idle: true},
		{name: "Sentinel: primary partitioned 8 s, busy provider with the tier", tiered: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			set := startSentinels(t)
			o := set.options()
			if c.tiered {
				o.LocalEntries = 10000
			}
			cl := client(t, o)
			warm(t, cl)
			if c.tiered {
				redistest.WaitFor(t, 10*time.Second, "the tier serving", func() bool { return cl.Stats().TierServing })
			}
			checks := startStaleChecks(t, cl)
			l := startLoad(cl, workers, nil)
			time.Sleep(500 * time.Millisecond)
			if c.idle { // sixteen idle connections to the primary, and nothing asked meanwhile
				l.halt()
				close(checks.stop)
				checks.done.Wait()
			}
			start := time.Now()
			if c.kill {
				set.primary.Kill()
			} else {
				set.primary.Stop()
			}
			announced := set.waitAnnounced(t)
			checks.clear(t, set.replica)
			if !c.kill {
				time.Sleep(time.Until(start.Add(8 * time.Second)))
				set.primary.Continue()
			}
			if c.idle { // back to work once the old primary answers again
				checks.stop = make(chan struct{})
				checks.done.Add(1)
				go func() { // the checker again, on the idle provider
					defer checks.done.Done()
					for i := 0; ; i++ {
						select {
						case <-checks.stop:
							return
						default:
						}
						if _, err := cl.RepoStat(ctx, repo, clearedBlobs[i%len(clearedBlobs)]); err == nil {
							checks.mu.Lock()
							checks.stale++
							checks.mu.Unlock()
						}
						time.Sleep(time.Millisecond)
					}
				}()
				l = startLoad(cl, workers, nil)
			}
			resumed := announced
			if c.idle {
				resumed = time.Now()
			}
			w := startWrites(cl)
			time.Sleep(3 * time.Second)
			end := time.Now()
			l.halt()
			stale := checks.halt()
			lost, after := w.lost(t, set.replica, announced)
			r := measure(c.name, l.between(start, end), end)
			r.openP99 = 0
			r.lost, r.stale = lost, stale
			r.recovered = l.firstHit(resumed, nil).Sub(resumed)
			r.note = fmt.Sprintf("announced %s ms after the fault; %d writes acknowledged after it", ms(announced.Sub(start)), after)
			if r.max > timeout+margin {
				t.Errorf("%s: a request took %v", c.name, r.max)
			}
			if lost != 0 || stale != 0 || after == 0 {
				t.Errorf("%s: %d of %d writes lost, %d stale reads", c.name, lost, after, stale)
			}
			if r.recovered < 0 || r.recovered > time.Second {
				t.Errorf("%s: hits %v after the announcement", c.name, r.recovered)
			}
			report(t, r)
		})
	}
}

// All sentinels killed, or hung, while the master is well: the provider keeps serving
// from the master it knows, and a new provider's first request costs one timeout at
// most (the sentinels asked at once, not in turn).
func TestSentinelsDown(t *testing.T) {
	for _, hung := range []bool{false, true} {
		name := map[bool]string{false: "all sentinels killed", true: "all sentinels hung"}[hung]
		t.Run(name, func(t *testing.T) {
			set := startSentinels(t)
			o := set.options()
			log := logs(&o)
			cl := client(t, o)
			warm(t, cl)
			l := startLoad(cl, workers, nil)
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			for _, s := range set.sentinels {
				if hung {
					s.Stop()
				} else {
					s.Kill()
				}
			}
			fresh := client(t, set.options())
			asked := time.Now()
			_, err := fresh.RepoStat(ctx, repo, digests[0])
			first := time.Since(asked)
			time.Sleep(3 * time.Second)
			end := time.Now()
			l.halt()
			for _, s := range set.sentinels {
				s.Continue()
			}
			r := measure("Sentinel: "+name, l.between(start, end), end)
			r.openP99 = 0
			r.note = fmt.Sprintf("a new provider's first request: %s ms (%s)", ms(first), strings.ReplaceAll(fmt.Sprint(err), "\n", "; "))
			hits := 0
			for _, q := range l.between(start, end) {
				if q.hit {
					hits++
				}
			}
			if r.errors != 0 || hits < r.calls*99/100 || r.max > 100*time.Millisecond {
				t.Errorf("%s: the running provider had %d errors, %d hits of %d, max %v", name, r.errors, hits, r.calls, r.max)
			}
			if first > timeout+margin {
				t.Errorf("%s: a new provider's first request took %v", name, first)
			}
			if st := cl.Stats(); st.BreakerOpens != 0 || len(log.Lines) != 0 {
				t.Errorf("%s: the running provider's breaker opened %d times; it logged %q", name, st.BreakerOpens, log.Lines)
			}
			report(t, r)
		})
	}
}

// A planned failover (SENTINEL FAILOVER of a healthy primary) under 64 callers doing
// RepoStat and RepoClear costs nothing: the calls in flight on the old master when the
// provider switches (their connections closed) are no Redis failures and run again on
// the new master, so no breaker opens and no Clear answers ErrUnavailable.
func TestSentinelPlannedFailover(t *testing.T) {
	s := startSentinels(t)
	o := s.options()
	log := logs(&o)
	c := client(t, o)
	warm(t, c)
	var (
		mu                    sync.Mutex
		calls, clears, failed int
		seen                  = map[string]int{}
		worst                 time.Duration
		stop                  = make(chan struct{})
		wg                    sync.WaitGroup
	)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				d := digests[i%len(digests)]
				start := time.Now()
				c.RepoStat(ctx, repo, d) //nolint:errcheck // a miss or a hit
				err := c.RepoClear(ctx, repo, d)
				if err == nil || err == layercache.ErrUnknown {
					c.RepoSetDescriptor(ctx, repo, d, descriptor(d)) //nolint:errcheck
				}
				took := time.Since(start)
				mu.Lock()
				calls, clears, worst = calls+3, clears+1, max(worst, took)
				if err != nil && err != layercache.ErrUnknown {
					failed++
					seen[err.Error()]++
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	sn := s.sentinels[0].Dial(t)
	if _, err := sn.Do("SENTINEL", "FAILOVER", "layercache"); err != nil {
		t.Fatal(err)
	}
	s.waitAnnounced(t)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	st := c.Stats()
	r := row{name: "planned failover (SENTINEL FAILOVER, 64 callers)", calls: calls, errors: failed, max: worst, recovered: -1,
		note: fmt.Sprintf("%d Clears, %d failed; breaker opened %d times; the master's move logged %d time",
			clears, failed, st.BreakerOpens, log.Count("the master moved"))}
	if st.BreakerOpens != 0 || failed != 0 || log.Count("unreachable") != 0 {
		t.Errorf("%s: breaker opened %d times, %d Clears failed (%v): %q", r.name, st.BreakerOpens, failed, seen, log.Lines)
	}
	if worst > timeout+margin {
		t.Errorf("%s: a request took %v, over one timeout", r.name, worst)
	}
	report(t, r)
}
