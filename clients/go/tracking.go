package layercache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// tracker keeps the local tier's one tracking connection to the current server: it
// turns broadcast tracking on for the tracked prefixes, redirected to itself (RESP2
// delivers invalidations as messages on `__redis__:invalidate`, so the connection
// subscribes there, and to the module's `__layercache__:events`), PINGs it every
// quarter of the lease, renews the tier's lease with each PONG, and reads
// invalidations until the connection fails or goes silent for three leases, or the
// server changes (a Sentinel failover, or a server that could not serve replaced). The tier
// is reset at each of those.
type tracker struct {
	tier      *tier
	d         *direct // nil on a cluster (cluster_tier.go runs the sessions)
	o         Options
	tlsConfig *tls.Config
	stop      chan struct{}
	done      chan struct{}
}

func newTracker(t *tier, d *direct, o Options) *tracker {
	tr := &tracker{tier: t, d: d, o: o, tlsConfig: d.tlsConfig, stop: make(chan struct{}), done: make(chan struct{})}
	d.onChange = func() { t.reset(0, false) }
	return tr
}

// run keeps tracking until close, trying again a second after a failure.
func (t *tracker) run() {
	defer close(t.done)
	logged := ""
	quiet := false // a new session after a flush, not logged
	for {
		s, changed := t.d.current()
		var err error
		active := false
		if s == nil {
			err = fmt.Errorf("no master known yet")
			t.d.server(context.Background()) //nolint:errcheck // asks the sentinels, bounded
		} else {
			active, err = t.session(s.addr, s.epoch, changed, quiet, nil)
		}
		quiet = err == errFlushed
		t.tier.reset(0, false)
		select {
		case <-t.stop:
			return
		default:
		}
		if err == errFlushed {
			continue // emptied, as a flush wants; tracking again at once
		}
		// Once per state change, not once a second while Redis is down.
		if why := fmt.Sprint(err); active || why != logged {
			t.o.Logf("layercache: local tier off and emptied until tracking resumes: %s", why)
			logged = why
		}
		select {
		case <-t.stop:
			return
		case <-changed:
		case <-time.After(time.Second):
		}
	}
}

// session tracks the server at addr as the session of epoch until the connection ends
// or changed is closed (addr is no longer the current server, or no longer a master);
// active says whether tracking got as far as on. On a cluster, check (cluster_tier.go)
// confirms the master's slots with each PING.
func (t *tracker) session(addr string, epoch uint64, changed <-chan struct{}, quiet bool, check slotCheck) (active bool, err error) {
	options := t.o.serverOptions(addr, t.tlsConfig)
	options.PoolSize = 1
	// The links keys are tracked when the scheme is known: distribution's are under
	// `repository::`; the blob scheme's are bare repository names, so there every key
	// is tracked (the Redis is the cache's). A user without +config|get tracks the
	// prefixes, and the tier keeps no links.
	var links bool
	options.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			return fmt.Errorf("CLIENT ID: %w", err)
		}
		scheme, _ := cn.ConfigGet(ctx, "layercache.scheme").Result()
		args := []interface{}{"CLIENT", "TRACKING", "on", "REDIRECT", id, "BCAST"}
		links = scheme["layercache.scheme"] != ""
		if scheme["layercache.scheme"] != "blob" {
			for _, p := range trackedPrefixes {
				args = append(args, "PREFIX", p)
			}
		}
		cmd := redis.NewCmd(ctx, args...)
		if err := cn.Process(ctx, cmd); err != nil {
			return fmt.Errorf("CLIENT TRACKING: %w", err)
		}
		return nil
	}
	client := redis.NewClient(options)
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := client.Subscribe(ctx, invalidations, datasetEvents)
	defer sub.Close()
	for range 2 { // the two subscriptions confirmed
		if _, err := sub.ReceiveTimeout(ctx, t.o.DialTimeout+t.o.ReadTimeout); err != nil {
			return false, fmt.Errorf("tracking %s: %w", addr, err)
		}
	}
	select {
	case <-t.stop:
		return false, nil
	case <-changed:
		return false, nil
	default:
	}
	if check == nil {
		t.tier.reset(epoch, links)
	} else {
		t.tier.start(epoch, addr, links, true)
	}
	t.tier.sessions.Add(1)
	if !quiet {
		t.o.Logf("layercache: local tier on (tracking %s)", addr)
	}

	var mu sync.Mutex
	sent := map[string]time.Time{}
	pinged := make(chan struct{})
	defer close(pinged)
	go func() {
		tick := time.NewTicker(t.o.LocalLease / 4)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-pinged:
				return
			case <-tick.C:
			}
			payload := strconv.Itoa(n)
			mu.Lock()
			sent[payload] = time.Now()
			mu.Unlock()
			if sub.Ping(ctx, payload) != nil {
				return
			}
			if check != nil {
				sent := time.Now()
				if slots, err := check(ctx, client); err == nil {
					t.tier.confirm(epoch, slots, sent.Add(t.o.LocalLease))
				}
			}
		}
	}()
	for {
		// Silent for a lease, the tier stops serving (its lease ends); silent for three,
		// the connection is given up.
		msg, err := sub.ReceiveTimeout(ctx, 3*t.o.LocalLease)
		if err != nil && strings.Contains(err.Error(), "unsupported pubsub message payload: <nil>") {
			// FLUSHALL or FLUSHDB: everything changed. go-redis cannot read the message
			// (a null payload) and reconnects, which may lose invalidations: start over.
			return true, errFlushed
		}
		if err != nil {
			return true, fmt.Errorf("tracking connection to %s: %w", addr, err)
		}
		select {
		case <-t.stop:
			return true, nil
		case <-changed:
			return true, fmt.Errorf("the server changed from %s", addr)
		default:
		}
		switch m := msg.(type) {
		case *redis.Pong:
			mu.Lock()
			at, ok := sent[m.Payload]
			delete(sent, m.Payload)
			mu.Unlock()
			if ok {
				t.tier.renew(epoch, at.Add(t.o.LocalLease))
			}
		case *redis.Message:
			if m.Channel == datasetEvents {
				t.tier.empty(epoch) // SWAPDB, or a dataset loaded: everything may have changed
				continue
			}
			t.tier.invalidated(m.PayloadSlice)
		default:
			return true, fmt.Errorf("unexpected message on the tracking connection: %v", msg)
		}
	}
}

// invalidations is where Redis delivers broadcast tracking's invalidations (RESP2);
// datasetEvents where the module announces SWAPDB and loads, which Redis does not
// report to tracking clients (Redis 7.0 sends nothing for SWAPDB).
const (
	invalidations = "__redis__:invalidate"
	datasetEvents = "__layercache__:events"
)

// errFlushed: Redis flushed the database; the session ends and the tier empties.
var errFlushed = errors.New("flushed")

// close ends tracking for good.
func (t *tracker) close() {
	close(t.stop)
	<-t.done
}
