package layercache

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
)

// cluster reports whether o names a Redis Cluster: Cluster set, or several addresses
// without a Sentinel master name.
func (o Options) cluster() bool {
	return o.Cluster || o.MasterName == "" && len(o.Addrs) > 1
}

// clusterSource hands out connections bound to the node that holds a key's slot, which
// follow MOVED and ASK and retry TRYAGAIN (redisc's retry connection), so resharding
// and failover are the cluster's business, not the registry's.
type clusterSource struct {
	*redisc.Cluster
	refreshing atomic.Bool
}

// redirects is how many attempts a command gets: the first, then a MOVED or ASK, then
// a TRYAGAIN during a slot's migration.
const redirects = 4

func (c *clusterSource) conn(key string) redis.Conn {
	conn := c.Get()
	if err := redisc.BindConn(conn, key); err != nil {
		conn.Close()
		return errorConn{err}
	}
	retry, err := redisc.RetryConn(conn, redirects, 50*time.Millisecond)
	if err != nil {
		conn.Close()
		return errorConn{err}
	}
	return retry
}

// failed refreshes the slot map (CLUSTER SLOTS) after a call could not reach its node,
// in the background and one refresh at a time. redisc learns of resharding from MOVED
// replies, but a master that died answers nothing: without this, its slots would stay
// mapped to it after its replica took over.
func (c *clusterSource) failed() {
	if c.refreshing.CompareAndSwap(false, true) {
		go func() {
			defer c.refreshing.Store(false)
			c.Refresh()
		}()
	}
}

// newCluster connects to the cluster o's addresses seed, and checks that every master
// runs the layercache module in the blob scheme (the only one valid in a cluster): a
// cluster that answers otherwise is an error; one that does not answer is logged, and
// the provider starts failing open.
func newCluster(o Options) (connSource, error) {
	if o.MasterName != "" {
		return nil, errors.New("layercache: a cluster has no Sentinel master name")
	}
	if o.DB != 0 {
		return nil, errors.New("layercache: Redis Cluster has only database 0")
	}
	server, _, err := o.dialOptions()
	if err != nil {
		return nil, err
	}
	c := &redisc.Cluster{
		StartupNodes: o.Addrs,
		DialOptions:  server,
		CreatePool: func(addr string, options ...redis.DialOption) (*redis.Pool, error) {
			return &redis.Pool{
				Dial:         func() (redis.Conn, error) { return dial(addr, options) },
				MaxIdle:      o.MaxIdle,
				MaxActive:    o.MaxActive,
				IdleTimeout:  o.IdleTimeout,
				TestOnBorrow: idleCheck(o.IdleCheck, ping),
			}, nil
		},
	}
	if err := c.Refresh(); err != nil {
		o.Logf("layercache: Redis Cluster at %s not reachable at start (%v); the registry serves from storage until it is", strings.Join(o.Addrs, ","), err)
		return &clusterSource{Cluster: c}, nil
	}
	if err := checkScheme(c, server); err != nil {
		c.Close()
		return nil, err
	}
	return &clusterSource{Cluster: c}, nil
}

// checkScheme asks every master of the cluster for `layercache.scheme`.
func checkScheme(c *redisc.Cluster, options []redis.DialOption) error {
	conn := c.Get()
	defer conn.Close()
	if err := redisc.BindConn(conn); err != nil {
		return err
	}
	slots, err := redis.Values(conn.Do("CLUSTER", "SLOTS"))
	if err != nil {
		return fmt.Errorf("layercache: CLUSTER SLOTS: %w", err)
	}
	masters := map[string]bool{}
	for _, s := range slots {
		// [start, end, [host, port, id, ...], replicas...]
		entry, _ := s.([]interface{})
		if len(entry) < 3 {
			return fmt.Errorf("layercache: CLUSTER SLOTS: unexpected entry %v", s)
		}
		master, _ := entry[2].([]interface{})
		if len(master) < 2 {
			return fmt.Errorf("layercache: CLUSTER SLOTS: unexpected node %v", entry[2])
		}
		host, _ := redis.String(master[0], nil)
		port, _ := redis.Int(master[1], nil)
		masters[fmt.Sprintf("%s:%d", host, port)] = true
	}
	for addr := range masters {
		if err := nodeScheme(addr, options); err != nil {
			return err
		}
	}
	return nil
}

func nodeScheme(addr string, options []redis.DialOption) error {
	conn, err := redis.Dial("tcp", addr, options...)
	if err != nil {
		return fmt.Errorf("layercache: cluster master %s: %w", addr, err)
	}
	defer conn.Close()
	setting, err := redis.Strings(conn.Do("CONFIG", "GET", "layercache.scheme"))
	switch {
	case err != nil:
		return fmt.Errorf("layercache: cluster master %s: CONFIG GET layercache.scheme: %w (the provider's user needs +config|get)", addr, err)
	case len(setting) != 2:
		return fmt.Errorf("layercache: cluster master %s does not have the layercache module loaded", addr)
	case setting[1] != "blob":
		return fmt.Errorf("layercache: cluster master %s runs the layercache module in scheme %q; a cluster needs scheme blob", addr, setting[1])
	}
	return nil
}

// errorConn is a connection that could not be had: every call fails with err, and Err
// says it is broken.
type errorConn struct{ err error }

func (c errorConn) Do(string, ...interface{}) (interface{}, error) { return nil, c.err }
func (c errorConn) Send(string, ...interface{}) error              { return c.err }
func (c errorConn) Flush() error                                   { return c.err }
func (c errorConn) Receive() (interface{}, error)                  { return nil, c.err }
func (c errorConn) Err() error                                     { return c.err }
func (c errorConn) Close() error                                   { return nil }
