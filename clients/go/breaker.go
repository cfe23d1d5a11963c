package layercache

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// breaker is what happens when Redis hangs, is black-holed, refuses connections or
// cannot serve: the registry fails open, and pays Redis's timeout as few times as it
// can. There is one breaker per server (per master on a cluster, so one node's fault
// touches only its slots).
//
//   - Closed: calls go to Redis. A connection failure makes it suspect: from then on
//     one call at a time goes to Redis (the others are misses at once) until a call
//     succeeds, which clears it, or FailAfter consecutive failures open it. So after the
//     first failure at most FailAfter-1 more calls pay a timeout; calls already in
//     flight when the fault began pay theirs, as nothing could have known.
//   - Open: every call is a miss at once. After the window one call probes; never two
//     at once. The probe's success closes the breaker; its failure doubles the window
//     (BackoffMin up to BackoffMax). Results of calls admitted before it opened
//     (stragglers) change nothing. A probe that go-redis's pool refused without
//     dialling (see dialer) learnt nothing: the next call probes.
//   - Flapping: a probe's success that the next calls contradict (a server that takes
//     some connections and refuses others, as at its client limit: the probe gets the
//     one connection) does not reset the back-off. Reopened within BackoffMax of
//     closing, the breaker takes up the window it had, doubled, and logs only the first
//     such reopening; once closed for BackoffMax it logs the episode in one line, with
//     its count.
//
// Only connection failures count (dial errors, timeouts, broken connections, and the
// replies of a server that cannot serve: LOADING, READONLY, MASTERDOWN, CLUSTERDOWN,
// max clients); error replies about the call do not. Each state change is logged once.
type breaker struct {
	name      string // in log lines: "" or the node's address
	failAfter int
	min, max  time.Duration
	logf      func(format string, args ...interface{})

	mu       sync.Mutex
	failures int           // consecutive, while closed
	trial    bool          // suspect: the one call admitted is in flight
	window   time.Duration // 0: closed
	until    time.Time     // open: no probe before this
	probe    uint64        // open: the token of the probe in flight, 0 none
	probeAt  time.Time     // open: when the probe in flight was admitted
	tokens   uint64
	opens    int64 // times opened

	closedAt  time.Time     // when a probe last closed it
	last      time.Duration // the window it had then
	flaps     int           // reopenings within BackoffMax of closing, this episode
	flapSince time.Time     // the episode's first
}

// pass is an admitted call's token, given back to done.
type pass struct {
	probe uint64 // the probe's token; 0 for a call admitted while closed
	trial bool   // the one call admitted while suspect
}

func newBreaker(name string, o Options) *breaker {
	return &breaker{name: name, failAfter: o.FailAfter, min: o.BackoffMin, max: o.BackoffMax, logf: o.Logf}
}

// allow reports whether a call may go to Redis now; an admitted call must report its
// outcome to done with the pass.
func (b *breaker) allow() (pass, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.window == 0 && b.failures == 0:
		return pass{}, true
	case b.window == 0: // suspect
		if b.trial {
			return pass{}, false
		}
		b.trial = true
		return pass{trial: true}, true
	case b.probe != 0 || time.Now().Before(b.until):
		return pass{}, false
	}
	b.tokens++
	b.probe, b.probeAt = b.tokens, time.Now()
	return pass{probe: b.probe}, true
}

// done records the outcome of an admitted call: failed means Redis could not be
// reached or could not serve; err says why.
func (b *breaker) done(p pass, failed bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.trial {
		b.trial = false
	}
	if b.window != 0 {
		if p.probe == 0 || p.probe != b.probe {
			return // a straggler from before the breaker opened
		}
		b.probe = 0
		if !failed {
			b.last, b.window, b.failures, b.closedAt = b.window, 0, 0, time.Now()
			if b.flaps == 0 {
				b.logf("layercache: Redis%s answers again; the cache is back in use", b.where())
			}
			return
		}
		if failedBefore(err, b.probeAt) {
			return // refused by go-redis's pool, not by Redis: the next call probes
		}
		b.window = min(2*b.window, b.max)
		b.until = time.Now().Add(b.window)
		return
	}
	now := time.Now()
	settled := now.Sub(b.closedAt) >= b.max
	if settled && b.flaps > 0 {
		b.logf("layercache: Redis%s holds again, after failing again right after it answered %d times in %v; the cache is back in use",
			b.where(), b.flaps, b.closedAt.Sub(b.flapSince).Round(time.Millisecond))
		b.flaps = 0
	}
	if !failed {
		b.failures = 0
		return
	}
	b.failures++
	if b.failures < b.failAfter {
		return
	}
	b.opens++
	if !settled { // its last probe's success was contradicted: flapping
		if b.flaps++; b.flaps == 1 {
			b.flapSince = now
		}
		b.window = min(2*b.last, b.max)
		b.until = now.Add(b.window)
		if b.flaps == 1 {
			b.logf("layercache: Redis%s failed again right after it answered (last: %v): a server that takes some connections and refuses others; backing off up to every %v, and logging once it holds",
				b.where(), err, b.max)
		}
		return
	}
	b.window, b.until = b.min, now.Add(b.min)
	b.logf("layercache: Redis%s unreachable after %d failed calls (last: %v); the registry serves from storage, retrying after %v, up to every %v",
		b.where(), b.failures, err, b.min, b.max)
}

// abandon gives back an admitted call's pass without an outcome (its request went away
// before Redis was asked): nothing was learnt of Redis.
func (b *breaker) abandon(p pass) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.trial {
		b.trial = false
	}
	if p.probe != 0 && p.probe == b.probe {
		b.probe = 0
	}
}

// reset closes the breaker without a probe: the server it guarded was replaced (a new
// master).
func (b *breaker) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures, b.window, b.probe, b.flaps, b.closedAt = 0, 0, 0, 0, time.Time{}
}

func (b *breaker) where() string {
	if b.name == "" {
		return ""
	}
	return " at " + b.name
}

// state reports whether calls are being skipped, and how often the breaker opened.
func (b *breaker) state() (open bool, opens int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.window != 0, b.opens
}

// dialer wraps go-redis's dialer so that a failed dial says when it failed. go-redis's
// pool has a breaker of its own: after PoolSize failed dials (counted over the pool's
// life: a successful dial does not reset the count) it stops dialling, answers every
// call at once with its last dial error, and retries one dial a second until one
// succeeds. A probe refused that way asked Redis nothing; taken as a failure, it would
// double the window and keep the cache off up to BackoffMax after go-redis dials again.
func dialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, &dialFailure{err: err, at: time.Now()}
		}
		return conn, nil
	}
}

// dialFailure is a failed dial and when it failed; to go-redis it is the dial's error
// (go-redis retries a cluster call on a refused dial, and tells timeouts apart).
type dialFailure struct {
	err error
	at  time.Time
}

func (e *dialFailure) Error() string { return e.err.Error() }
func (e *dialFailure) Unwrap() error { return e.err }
func (e *dialFailure) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.err, &t) && t.Timeout()
}

// failedBefore reports whether err is a dial that failed before t: an answer go-redis
// kept from an earlier call.
func failedBefore(err error, t time.Time) bool {
	var d *dialFailure
	return errors.As(err, &d) && d.at.Before(t)
}
