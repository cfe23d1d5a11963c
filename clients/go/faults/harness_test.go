// Package faults is the provider's fault suite (make test-faults): each case starts its
// own servers, sentinels and proxies, runs registry-like load through a Client while
// one fault happens, prints one row of the table below, and asserts DESIGN.md's bounds.
package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/internal/redistest"
	"github.com/opencontainers/go-digest"
)

// The client's timeouts in the suite, and the margin a bound gets on this shared
// machine.
const (
	timeout = 500 * time.Millisecond
	margin  = 250 * time.Millisecond
	workers = 16
	repo    = "team/app"
)

// options are the suite's client options for addrs.
func options(addrs ...string) layercache.Options {
	return layercache.Options{Addrs: addrs, DialTimeout: timeout, ReadTimeout: timeout,
		BackoffMin: 250 * time.Millisecond, BackoffMax: time.Second}
}

// row is one line of the fault table.
type row struct {
	name                   string
	calls, errors, paid    int
	p50, p99, max, openP99 time.Duration // of requests during the fault; openP99 once the breaker settled
	recovered              time.Duration // from the fault's end (the server back, or the failover) to the first hit; -1: not measured
	lost, stale            int
	note                   string
}

var (
	tableMu sync.Mutex
	table   []row
)

func report(t *testing.T, r row) {
	t.Helper()
	tableMu.Lock()
	table = append(table, r)
	tableMu.Unlock()
	t.Log(r.String())
}

func (r row) String() string {
	rec := "-"
	if r.recovered >= 0 {
		rec = ms(r.recovered)
	}
	return fmt.Sprintf("| %s | %d | %d | %s / %s / %s | %s | %d | %s | %d | %d | %s |", r.name, r.calls, r.errors,
		ms(r.p50), ms(r.p99), ms(r.max), ms(r.openP99), r.paid, rec, r.lost, r.stale, r.note)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	// Every client, server and proxy of the cases is closed by now: no goroutine of
	// the provider's may be left (go-redis's, ours), after a grace for those ending.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		fmt.Printf("goroutines leaked: %d at start, %d at the end:\n%s\n", before, n, buf[:runtime.Stack(buf, true)])
		code = 1
	}
	fmt.Println("\n| case | requests | errors | p50 / p99 / max ms | p99 once open ms | paid a timeout | recovered ms | writes lost | stale reads | note |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range table {
		fmt.Println(r.String())
	}
	os.Exit(code)
}

// digests are the blobs the load asks about.
var digests = func() []digest.Digest {
	var all []digest.Digest
	for i := 0; i < 64; i++ {
		all = append(all, digest.FromString(fmt.Sprint("layer ", i)))
	}
	return all
}()

func descriptor(d digest.Digest) layercache.Descriptor {
	return layercache.Descriptor{Digest: d, Size: 1234, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}
}

// request is one registry request: a cache Stat and, when it is not a hit, the
// write-back distribution's NewCachedBlobStatter sends, in one request context.
type request struct {
	at   time.Time
	took time.Duration
	hit  bool
	err  error // what the Stat returned, unless a miss
	dgst digest.Digest
}

// load runs workers goroutines of requests against c, each paced by a millisecond.
type load struct {
	c    *layercache.Client
	pick func(i int) digest.Digest
	mu   sync.Mutex
	reqs []request
	stop chan struct{}
	wg   sync.WaitGroup
}

func startLoad(c *layercache.Client, n int, pick func(i int) digest.Digest) *load {
	if pick == nil {
		pick = func(i int) digest.Digest { return digests[i%len(digests)] }
	}
	l := &load{c: c, pick: pick, stop: make(chan struct{})}
	for g := 0; g < n; g++ {
		l.wg.Add(1)
		go func(g int) {
			defer l.wg.Done()
			for i := g; ; i += n {
				select {
				case <-l.stop:
					return
				default:
				}
				l.one(l.pick(i))
				time.Sleep(time.Millisecond)
			}
		}(g)
	}
	return l
}

// one makes one request and records it.
func (l *load) one(d digest.Digest) request {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := request{at: time.Now(), dgst: d}
	_, err := l.c.RepoStat(ctx, repo, d)
	if err != nil {
		l.c.RepoSetDescriptor(ctx, repo, d, descriptor(d)) //nolint:errcheck // as distribution: best effort
	}
	r.took, r.hit = time.Since(r.at), err == nil
	if err != nil && !errors.Is(err, layercache.ErrUnknown) {
		r.err = err
	}
	l.mu.Lock()
	l.reqs = append(l.reqs, r)
	l.mu.Unlock()
	return r
}

func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

// between are the requests started in [from, to).
func (l *load) between(from, to time.Time) []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []request
	for _, r := range l.reqs {
		if !r.at.Before(from) && r.at.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// firstHit is when the first hit at or after from was asked (zero: none).
func (l *load) firstHit(from time.Time, ok func(request) bool) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, r := range l.reqs {
		if r.hit && !r.at.Before(from) && (ok == nil || ok(r)) && (first.IsZero() || r.at.Before(first)) {
			first = r.at
		}
	}
	return first
}

// measure fills a row's figures from the requests of the fault window; settled is
// when the breaker had had time to open.
func measure(name string, reqs []request, settled time.Time) row {
	r := row{name: name, calls: len(reqs), recovered: -1}
	var all, open []time.Duration
	for _, q := range reqs {
		all = append(all, q.took)
		if !q.at.Before(settled) {
			open = append(open, q.took)
		}
		if q.err != nil {
			r.errors++
		}
		if q.took >= timeout*8/10 {
			r.paid++
		}
	}
	r.p50, r.p99, r.max = quantile(all, 0.5), quantile(all, 0.99), quantile(all, 1)
	r.openP99 = quantile(open, 0.99)
	return r
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(q*float64(len(s)-1))]
}

// bounded asserts DESIGN.md's bounds on a fault of a server: no request over one
// timeout; at most the requests in flight at the fault plus FailAfter paid it; once
// the breaker settled, misses at memory speed.
func bounded(t *testing.T, r row, inFlight int) {
	t.Helper()
	if r.max > timeout+margin {
		t.Errorf("%s: a request took %v, over one timeout (%v)", r.name, r.max, timeout)
	}
	if limit := inFlight + 3 + 4; r.paid > limit { // + FailAfter, + one probe per window (0.25, 0.5, 1, 1 s)
		t.Errorf("%s: %d requests paid a timeout; want at most %d", r.name, r.paid, limit)
	}
	if r.openP99 > time.Millisecond {
		t.Errorf("%s: once the breaker was open, p99 %v; want <= 1 ms", r.name, r.openP99)
	}
}

// client is layercache.New(o), closed at the end of the test.
func client(t *testing.T, o layercache.Options) *layercache.Client {
	t.Helper()
	c, err := layercache.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// warm writes every digest's descriptor and waits until a Stat of each is a hit.
func warm(t *testing.T, c *layercache.Client) {
	t.Helper()
	for _, d := range digests {
		if err := c.RepoSetDescriptor(context.Background(), repo, d, descriptor(d)); err != nil {
			t.Fatal(err)
		}
	}
	redistest.WaitFor(t, 10*time.Second, "the cache answering", func() bool {
		_, err := c.RepoStat(context.Background(), repo, digests[0])
		return err == nil
	})
}

// logs counts a client's log lines.
func logs(o *layercache.Options) *redistest.Logs {
	var l redistest.Logs
	o.Logf = l.Logf
	return &l
}
