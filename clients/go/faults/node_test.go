package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/internal/redistest"
	"github.com/opencontainers/go-digest"
)

// serverFault runs the load against one server while fault holds for hold, then heal
// (nil: the fault stays); it asserts the bounds and the breaker's logging, and
// reports the row.
func serverFault(t *testing.T, name string, addr string, fault, heal func(), hold time.Duration) row {
	t.Helper()
	o := options(addr)
	log := logs(&o)
	c := client(t, o)
	warm(t, c)
	l := startLoad(c, workers, nil)
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	fault()
	time.Sleep(hold)
	end := time.Now()
	var healed time.Time // the server is back (a restarted one once it is ready)
	if heal != nil {
		heal()
		healed = time.Now()
		redistest.WaitFor(t, 10*time.Second, "hits again after "+name, func() bool { return !l.firstHit(healed, nil).IsZero() })
	}
	l.halt()
	r := measure(name, l.between(start, end), start.Add(2*timeout))
	if heal != nil {
		r.recovered = l.firstHit(healed, nil).Sub(healed)
		// One back-off window, or go-redis's own dial retry (once a second) if longer.
		if bound := max(o.BackoffMax, time.Second); r.recovered > bound+margin {
			t.Errorf("%s: hits again %v after the server was back, over one back-off window (%v)", name, r.recovered, bound)
		}
		if n := log.Count("answers again"); n != 1 {
			t.Errorf("%s: logged the return %d times: %q", name, n, log.Lines)
		}
	}
	bounded(t, r, workers)
	if n := log.Count("unreachable"); n != 1 {
		t.Errorf("%s: logged the fault %d times: %q", name, n, log.Lines)
	}
	if n := log.Count("layercache: Redis"); n > 4 {
		t.Errorf("%s: %d log lines of the breaker; want at most 4: %q", name, n, log.Lines)
	}
	r.note = strings.TrimPrefix(fmt.Sprintf("%s, %d log lines", r.note, log.Count("layercache: Redis")), ", ")
	report(t, r)
	return r
}

func TestHungServer(t *testing.T) {
	s := redistest.Start(t)
	serverFault(t, "hung server (SIGSTOP 3 s)", s.Addr, s.Stop, s.Continue, 3*time.Second)
}

func TestBlackHoleHealing(t *testing.T) {
	s := redistest.Start(t)
	p := redistest.NewProxy(t, s.Addr)
	serverFault(t, "black hole, healing after 3 s", p.Addr, p.BlackHole, p.Heal, 3*time.Second)
}

func TestBlackHoleForGood(t *testing.T) {
	s := redistest.Start(t)
	p := redistest.NewProxy(t, s.Addr)
	serverFault(t, "black hole, for good", p.Addr, p.BlackHole, nil, 3*time.Second)
}

func TestKilledServer(t *testing.T) {
	s := redistest.Start(t)
	restart := func() { redistest.StartOn(t, s.Port) }
	serverFault(t, "killed server, restarted after 3 s", s.Addr, s.Kill, restart, 3*time.Second)
}

// A provider quiet for a while (its pool full of idle connections) meets a hung
// server: its first request pays one timeout, not one per idle connection.
func TestQuietProviderMeetsHungServer(t *testing.T) {
	s := redistest.Start(t)
	o := options(s.Addr)
	c := client(t, o)
	warm(t, c)
	l := startLoad(c, workers, nil) // sixteen connections in the pool
	time.Sleep(300 * time.Millisecond)
	l.halt()
	time.Sleep(2 * time.Second)
	s.Stop()
	defer s.Continue()
	l = &load{c: c}
	start := time.Now()
	first := l.one(digests[0])
	for time.Since(start) < 2*time.Second {
		l.one(digests[1])
	}
	r := measure("quiet provider meets a hung server", l.between(start, time.Now()), start.Add(3*timeout))
	r.note = "first request " + ms(first.took) + " ms"
	if first.took > timeout+margin {
		t.Errorf("the first request after the quiet took %v, over one timeout", first.took)
	}
	if r.paid > 3+3 { // FailAfter, then one probe per window (0.25, 0.5, 1 s)
		t.Errorf("%d sequential requests paid a timeout in 2 s", r.paid)
	}
	report(t, r)
}

// A slow server (20 ms on every exchange) is not a failure: the breaker stays closed.
func TestSlowServer(t *testing.T) {
	s := redistest.Start(t)
	p := redistest.NewProxy(t, s.Addr)
	o := options(p.Addr)
	c := client(t, o)
	warm(t, c)
	p.Delay(20 * time.Millisecond)
	l := startLoad(c, workers, nil)
	start := time.Now()
	time.Sleep(2 * time.Second)
	l.halt()
	r := measure("slow server (20 ms per exchange)", l.between(start, time.Now()), start)
	r.openP99 = 0
	if st := c.Stats(); st.BreakerOpens != 0 || r.errors != 0 || r.p50 < 20*time.Millisecond {
		t.Errorf("slow server: breaker opened %d times, %d errors, p50 %v", st.BreakerOpens, r.errors, r.p50)
	}
	report(t, r)
}

// A server at its client limit refuses new connections ("max number of clients
// reached", then closes them): that is a failure, the refused connection is never
// pooled, and the cache is back once the limit is raised.
func TestMaxClients(t *testing.T) {
	s := redistest.Start(t)
	fault, heal := clientLimit(t, s, 1)
	r := serverFault(t, "max clients (CONFIG SET maxclients 1)", s.Addr, fault, heal, 2*time.Second)
	if r.paid > 0 {
		t.Errorf("a refused connection cost a timeout %d times", r.paid)
	}
}

// A server that takes some connections and refuses others (maxclients 2: the probe
// succeeds on the one connection it gets, the other callers' dials are refused) for
// 10 s: the breaker backs off as for a server that refuses all, misses stay fast, and
// the episode is a few log lines, not one per open/close cycle.
func TestHalfAvailableServer(t *testing.T) {
	s := redistest.Start(t)
	fault, heal := clientLimit(t, s, 2)
	serverFault(t, "half available (maxclients 2, 16 callers, 10 s)", s.Addr, fault, heal, 10*time.Second)
}

// clientLimit is a fault that sets s's maxclients to n (one of them the admin
// connection it keeps) and drops every other client, and its heal.
func clientLimit(t *testing.T, s *redistest.Server, n int) (fault, heal func()) {
	admin := s.Dial(t)
	fault = func() {
		admin.Do("CONFIG", "SET", "maxclients", n)                    //nolint:errcheck
		admin.Do("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") //nolint:errcheck
	}
	heal = func() { admin.Do("CONFIG", "SET", "maxclients", 10000) } //nolint:errcheck
	return fault, heal
}

// Error replies are not connection failures: NOPERM (an ACL user without
// LAYERCACHE.REPOSTAT) and OOM (a full Redis that refuses writes) leave the breaker
// closed, and are logged once per code per minute and counted.
func TestErrorReplies(t *testing.T) {
	for _, c := range []struct {
		name, code string
		setup      func(s *redistest.Server, o *layercache.Options)
		fresh      bool // ask about blobs never cached, so each request writes back
	}{
		{"NOPERM (ACL user without layercache.repostat)", "NOPERM", func(s *redistest.Server, o *layercache.Options) {
			rule := "registry on >secret -@all +layercache.reposetdescriptor ~blobs::* ~repository::*"
			if _, err := s.Dial(t).Do("ACL", redis.Args{"SETUSER"}.AddFlat(strings.Fields(rule))...); err != nil {
				t.Fatal(err)
			}
			o.Username, o.Password = "registry", "secret"
		}, false},
		{"OOM (maxmemory 1, noeviction)", "OOM", func(s *redistest.Server, o *layercache.Options) {
			s.Do(t, "CONFIG", "SET", "maxmemory", 1, "maxmemory-policy", "noeviction")
		}, true},
	} {
		t.Run(c.code, func(t *testing.T) {
			s := redistest.Start(t)
			o := options(s.Addr)
			log := logs(&o)
			c.setup(s, &o)
			cl := client(t, o)
			var pick func(i int) digest.Digest
			if c.fresh {
				pick = func(i int) digest.Digest { return digest.FromString(fmt.Sprint("fresh ", i)) }
			}
			l := startLoad(cl, workers, pick)
			start := time.Now()
			time.Sleep(2 * time.Second)
			l.halt()
			r := measure(c.name, l.between(start, time.Now()), start)
			st := cl.Stats()
			r.note = fmt.Sprintf("%d %s replies counted, %d logged", st.ErrorReplies[c.code], c.code, log.Count(c.code))
			if st.BreakerOpens != 0 || st.ErrorReplies[c.code] == 0 || log.Count(c.code) != 1 {
				t.Errorf("%s: breaker opened %d times, %d replies counted, logged %d times: %q", c.name, st.BreakerOpens,
					st.ErrorReplies[c.code], log.Count(c.code), log.Lines)
			}
			if r.max > timeout {
				t.Errorf("%s: a request took %v", c.name, r.max)
			}
			report(t, r)
		})
	}
}

// No connection churn: sixteen concurrent callers on a healthy server, with the
// default options, open no new connections once warm.
func TestNoChurn(t *testing.T) {
	s := redistest.Start(t)
	c := client(t, layercache.Options{Addrs: []string{s.Addr}})
	warm(t, c)
	l := startLoad(c, workers, nil)
	time.Sleep(time.Second)
	accepted := func() int64 { return s.Info(t, "stats", "total_connections_received") }
	before, start := accepted(), time.Now()
	time.Sleep(2 * time.Second)
	opened := accepted() - before - 1 // the INFO's own connection
	l.halt()
	r := measure("healthy server, default options: connections opened", l.between(start, time.Now()), start)
	r.openP99, r.recovered = 0, -1
	r.note = fmt.Sprintf("%d new connections in 2 s", opened)
	if opened != 0 {
		t.Errorf("16 callers opened %d connections in 2 s once warm", opened)
	}
	report(t, r)
}

// ctx is a background context for the checks.
var ctx = context.Background()
