package layercache

import (
	"sync"
	"time"
)

// breaker lets the registry fail open: after FailAfter consecutive connection failures
// it opens, and calls skip Redis (a cache miss, at once) for a window; then one call
// probes. A failed probe doubles the window (up to BackoffMax); a success closes the
// breaker. Each state change is logged once, not each skipped call.
type breaker struct {
	failAfter int
	min, max  time.Duration
	logf      func(format string, args ...interface{})

	mu       sync.Mutex
	failures int           // consecutive, while closed
	window   time.Duration // 0: closed
	until    time.Time     // open: no call before this
	probing  bool          // open: a probe is in flight
}

func newBreaker(o Options) *breaker {
	return &breaker{failAfter: o.FailAfter, min: o.BackoffMin, max: o.BackoffMax, logf: o.Logf}
}

// allow reports whether a call may go to Redis now. Every allowed call must report its
// outcome to done.
func (b *breaker) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.window == 0 {
		return true
	}
	if b.probing || time.Now().Before(b.until) {
		return false
	}
	b.probing = true
	return true
}

// done records the outcome of an allowed call: failed means Redis could not be reached
// or could not serve (not an error reply about the call itself); err says why.
func (b *breaker) done(failed bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !failed:
		if b.window != 0 {
			b.logf("layercache: Redis answers again; the cache is back in use")
		}
		b.failures, b.window, b.probing = 0, 0, false
	case b.window != 0: // a failed probe, or a call let through before the breaker opened
		if b.probing {
			b.probing = false
			b.window *= 2
			if b.window > b.max {
				b.window = b.max
			}
			b.until = time.Now().Add(b.window)
		}
	default:
		b.failures++
		if b.failures >= b.failAfter {
			b.window, b.until = b.min, time.Now().Add(b.min)
			b.logf("layercache: Redis unreachable after %d failed calls (last: %v); the registry serves from storage, retrying after %v, up to every %v",
				b.failures, err, b.min, b.max)
		}
	}
}

// open reports whether calls are being skipped.
func (b *breaker) open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.window != 0
}
