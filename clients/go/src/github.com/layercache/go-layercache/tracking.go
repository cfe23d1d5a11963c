package layercache

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

// tracker keeps the local tier's one tracking connection: it turns broadcast tracking
// on for the tracked prefixes, redirected to itself (RESP2 delivers invalidations as
// messages on `__redis__:invalidate`, so the connection subscribes there), and reads
// invalidations until the connection fails, the server stops answering its PINGs, or
// the pool dials another master (a Sentinel failover; Sentinel's CLIENT KILL TYPE
// normal does not end a subscribed connection). The tier is active only while that
// connection is, and empties at each change.
type tracker struct {
	local *local
	dial  func() (redis.Conn, string, error)
	logf  func(format string, args ...interface{})
	// ping is how often the connection is PINGed; a reply later than 3 pings ends it.
	ping time.Duration

	mu   sync.Mutex
	conn redis.Conn // the tracking connection, nil while there is none
	addr string     // the server it is to
	stop chan struct{}
}

// run keeps tracking until close, reconnecting after a second when it cannot.
func (t *tracker) run() {
	logged := ""
	for {
		active, err := t.session()
		t.local.setActive(false)
		select {
		case <-t.stop:
			return
		default:
		}
		// Once per state change, not once a second while Redis is down.
		if why := fmt.Sprint(err); active || why != logged {
			t.logf("layercache: local tier off and emptied until tracking resumes: %s", why)
			logged = why
		}
		select {
		case <-t.stop:
			return
		case <-time.After(time.Second):
		}
	}
}

// session dials, turns tracking on and reads invalidations until the connection ends;
// active says whether tracking got as far as on.
func (t *tracker) session() (active bool, err error) {
	c, addr, err := t.dial()
	if err != nil {
		return false, err
	}
	defer c.Close()
	id, err := redis.Int64(c.Do("CLIENT", "ID"))
	if err != nil {
		return false, fmt.Errorf("CLIENT ID: %w", err)
	}
	args := []interface{}{"TRACKING", "on", "REDIRECT", id, "BCAST"}
	for _, p := range trackedPrefixes {
		args = append(args, "PREFIX", p)
	}
	if _, err := c.Do("CLIENT", args...); err != nil {
		return false, fmt.Errorf("CLIENT TRACKING: %w", err)
	}
	c.Send("SUBSCRIBE", "__redis__:invalidate")
	c.Flush()
	if _, err := redis.ReceiveWithTimeout(c, 3*t.ping); err != nil {
		return false, fmt.Errorf("SUBSCRIBE __redis__:invalidate: %w", err)
	}
	t.mu.Lock()
	select {
	case <-t.stop:
		t.mu.Unlock()
		return false, nil
	default:
	}
	t.conn, t.addr = c, addr
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.conn = nil
		t.mu.Unlock()
	}()
	t.local.setActive(true)
	t.logf("layercache: local tier on (tracking %s)", addr)

	pinged := make(chan struct{})
	defer close(pinged)
	go func() {
		tick := time.NewTicker(t.ping)
		defer tick.Stop()
		for {
			select {
			case <-pinged:
				return
			case <-tick.C:
				// Send and Flush may run beside Receive (redigo allows one of each).
				if c.Send("PING") != nil || c.Flush() != nil {
					return
				}
			}
		}
	}()
	for {
		reply, err := redis.ReceiveWithTimeout(c, 3*t.ping)
		if err != nil {
			return true, fmt.Errorf("tracking connection to %s: %w", addr, err)
		}
		if err := t.message(reply); err != nil {
			return true, err
		}
	}
}

// message handles one message of the subscribed connection: an invalidation's key
// names, a flush (a null payload), or the reply to a PING.
func (t *tracker) message(reply interface{}) error {
	m, ok := reply.([]interface{})
	if !ok || len(m) < 2 {
		return fmt.Errorf("unexpected reply on the tracking connection: %v", reply)
	}
	kind, _ := redis.String(m[0], nil)
	switch {
	case kind == "pong":
	case kind == "message" && len(m) == 3 && m[2] == nil:
		t.local.setActive(true) // FLUSHALL or FLUSHDB: everything changed
	case kind == "message" && len(m) == 3:
		keys, err := redis.Strings(m[2], nil)
		if err != nil {
			return fmt.Errorf("unexpected invalidation %v: %w", m[2], err)
		}
		t.local.invalidated(keys)
	default:
		return fmt.Errorf("unexpected message on the tracking connection: %v", reply)
	}
	return nil
}

// dialled hears of every connection the pool dials: one to another server than the
// tracking connection's means the master changed, and tracking starts over there.
func (t *tracker) dialled(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn != nil && addr != t.addr {
		t.logf("layercache: the master moved from %s to %s; local tier emptied, tracking again", t.addr, addr)
		t.local.setActive(false)
		t.conn.Close()
		t.conn = nil
	}
}

// close ends tracking for good.
func (t *tracker) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	close(t.stop)
	if t.conn != nil {
		t.conn.Close()
	}
}

// errTrackingCluster: the tier keeps one tracking connection, to one server.
var errTrackingCluster = errors.New("layercache: the local tier is not available on Redis Cluster")
