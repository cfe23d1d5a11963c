package faults

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/internal/redistest"
)

// reads asks the tier about one blob every half millisecond, recording when each hit
// was asked and what it answered.
type reads struct {
	mu   sync.Mutex
	hits []hit
	n    int
	stop chan struct{}
	done sync.WaitGroup
}

type hit struct {
	at   time.Time
	size int64
}

func startReads(c *layercache.Client) *reads {
	r := &reads{stop: make(chan struct{})}
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		for {
			select {
			case <-r.stop:
				return
			default:
			}
			at := time.Now()
			d, err := c.RepoStat(ctx, repo, digests[0])
			r.mu.Lock()
			r.n++
			if err == nil {
				r.hits = append(r.hits, hit{at, d.Size})
			}
			r.mu.Unlock()
			time.Sleep(500 * time.Microsecond)
		}
	}()
	return r
}

// stale are the hits asked after since that answered other than want (-1: any hit).
func (r *reads) stale(since time.Time, want int64) (n int, last time.Time) {
	close(r.stop)
	r.done.Wait()
	for _, h := range r.hits {
		if h.at.After(since) && h.size != want {
			n++
			last = h.at
		}
	}
	return n, last
}

// tiered is a client with the local tier through addr, once it serves a descriptor of
// digests[0] from the tier.
func tiered(t *testing.T, addr string) *layercache.Client {
	t.Helper()
	o := options(addr)
	o.LocalEntries = 1000
	c := client(t, o)
	redistest.WaitFor(t, 10*time.Second, "the tier serving", func() bool { return c.Stats().TierServing })
	if err := c.RepoSetDescriptor(ctx, repo, digests[0], descriptor(digests[0])); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, "the tier holding the descriptor", func() bool {
		before := c.Stats().TierServed
		_, err := c.RepoStat(ctx, repo, digests[0])
		return err == nil && c.Stats().TierServed > before
	})
	return c
}

// The tier under a black hole: its tracking connection goes silent, so it hears of
// no change; it stops serving within the lease of the last PONG, and another client's
// delete is served stale at most that long.
func TestTierBlackHole(t *testing.T) {
	s := redistest.Start(t)
	p := redistest.NewProxy(t, s.Addr)
	c := tiered(t, p.Addr)
	lease := layercache.DefaultLocalLease
	w := s.Dial(t)
	r := startReads(c)
	time.Sleep(200 * time.Millisecond)
	hole := time.Now()
	p.BlackHole()
	time.Sleep(20 * time.Millisecond)
	if _, err := w.Do("LAYERCACHE.REPOCLEAR", repo, digests[0]); err != nil {
		t.Fatal(err)
	}
	cleared := time.Now()
	time.Sleep(2 * time.Second)
	stale, last := r.stale(cleared, -1)
	p.Heal()
	healed := time.Now()
	redistest.WaitFor(t, 10*time.Second, "the tier serving again", func() bool { return c.Stats().TierServing })
	row := row{name: "tier under a black hole", calls: r.n, stale: stale, recovered: time.Since(healed)}
	if stale > 0 {
		row.note = fmt.Sprintf("served stale until %s ms after the hole (lease %s ms)", ms(last.Sub(hole)), ms(lease))
		if last.Sub(hole) > lease+50*time.Millisecond {
			t.Errorf("the tier served a deleted blob %v after its tracking went silent (lease %v)", last.Sub(hole), lease)
		}
	}
	report(t, row)
}

// SWAPDB of the cache's database: Redis 7.0 tells tracking clients nothing; the
// module announces it, and the tier empties at once.
func TestTierSwapDB(t *testing.T) {
	s := redistest.Start(t)
	c := tiered(t, s.Addr)
	w := s.Dial(t)
	other := descriptor(digests[0])
	other.Size = 999
	if _, err := w.Do("SELECT", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Do("LAYERCACHE.REPOSETDESCRIPTOR", repo, digests[0], digests[0], other.Size, other.MediaType); err != nil {
		t.Fatal(err)
	}
	r := startReads(c)
	time.Sleep(100 * time.Millisecond)
	if _, err := w.Do("SWAPDB", 0, 1); err != nil {
		t.Fatal(err)
	}
	swapped := time.Now()
	time.Sleep(time.Second)
	stale, last := r.stale(swapped.Add(10*time.Millisecond), other.Size)
	row := row{name: "SWAPDB of the cache's database", calls: r.n, stale: stale, recovered: -1}
	if stale > 0 {
		row.note = fmt.Sprintf("stale until %s ms after SWAPDB", ms(last.Sub(swapped)))
		t.Errorf("the tier answered the swapped-out database %d times after SWAPDB", stale)
	}
	report(t, row)
}

// TTL expiry with active expiry off: Redis reports an expired key only when it deletes
// it, here never; the tier serves an entry no longer than the first of its keys lives
// (WITHTTL).
func TestTierTTLExpiry(t *testing.T) {
	s := redistest.Start(t, "ttl", "1", "--enable-debug-command", "local")
	s.Do(t, "DEBUG", "SET-ACTIVE-EXPIRE", 0)
	c := tiered(t, s.Addr) // its write gave every key a TTL of 1 s
	expired := firstExpiry(t, s)
	r := startReads(c)
	time.Sleep(2 * time.Second)
	stale, last := r.stale(expired, -1)
	if c.Stats().TierServed == 0 {
		t.Error("the tier served nothing before the expiry: the case tested nothing")
	}
	row := row{name: "TTL expiry, active expiry off (layercache.ttl 1 s)", calls: r.n, stale: stale, recovered: -1}
	if stale > 0 {
		row.note = fmt.Sprintf("served %s ms past the expiry", ms(last.Sub(expired)))
		t.Errorf("the tier served an entry %d times past its keys' expiry", stale)
	}
	report(t, row)
}

// firstExpiry is when the first of s's keys to expire is expired for Redis: the
// millisecond after its PEXPIRETIME (Redis still serves a key during the millisecond
// it expires at).
func firstExpiry(t *testing.T, s *redistest.Server) time.Time {
	t.Helper()
	c := s.Dial(t)
	keys, err := redis.Strings(c.Do("KEYS", "*"))
	if err != nil || len(keys) == 0 {
		t.Fatalf("KEYS: %q, %v", keys, err)
	}
	first := int64(-1)
	for _, k := range keys {
		at, err := redis.Int64(c.Do("PEXPIRETIME", k))
		if err != nil || at < 0 {
			t.Fatalf("PEXPIRETIME %s: %d, %v (every key written should carry layercache.ttl)", k, at, err)
		}
		if first < 0 || at < first {
			first = at
		}
	}
	return time.UnixMilli(first + 1)
}
