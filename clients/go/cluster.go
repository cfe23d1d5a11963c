package layercache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterTopology is a Redis Cluster through go-redis's ClusterClient, which follows
// MOVED, ASK and TRYAGAIN, so resharding and failover are the cluster's business. Each
// master has a breaker of its own: a fault of one node touches only its slots. While a
// node's breaker skips calls, the slot map is refreshed (at most every refreshGap), so
// a replica promoted in its place serves its slots as soon as the cluster says so.
type clusterTopology struct {
	o      Options
	client *redis.ClusterClient
	// unmapped guards the calls made while the slot map cannot be had.
	unmapped *breaker
	mapped   atomic.Bool

	mu       sync.Mutex
	nodes    map[string]*master
	reloaded atomic.Int64 // unix nanoseconds of the last refresh asked

	// tier is the local tier (cluster_tier.go), nil when it is off; tlsConfig the
	// servers' TLS, for its tracking connections.
	tier      *tier
	tlsConfig *tls.Config
}

// master is a master's breaker, and when a call was last routed to it.
type master struct {
	breaker *breaker
	routed  time.Time
}

// A node's breaker that no call has been routed to for pruneAfter (twice BackoffMax)
// is forgotten: its address left the slot map (a master killed, or a replica now), and
// it would hold BreakerOpen for good. A node that comes back gets a new one.
func (c *clusterTopology) pruneAfter() time.Duration { return 2 * c.o.BackoffMax }

const refreshGap = 250 * time.Millisecond

// newCluster connects to the cluster o's addresses seed, and checks that every master
// runs the layercache module in the blob scheme (the only one valid in a cluster): a
// cluster that answers otherwise is an error; one that does not answer is logged, and
// the provider starts failing open.
func newCluster(o Options) (*clusterTopology, error) {
	if o.MasterName != "" {
		return nil, errors.New("layercache: a cluster has no Sentinel master name")
	}
	if o.DB != 0 {
		return nil, errors.New("layercache: Redis Cluster has only database 0")
	}
	serverTLS, _, err := o.tlsConfigs()
	if err != nil {
		return nil, err
	}
	node := o.serverOptions("", serverTLS)
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 o.Addrs,
		Username:              node.Username,
		Password:              node.Password,
		MaxRedirects:          3,
		MaxRetries:            -1,
		DialTimeout:           node.DialTimeout,
		ReadTimeout:           node.ReadTimeout,
		WriteTimeout:          node.WriteTimeout,
		ContextTimeoutEnabled: true,
		PoolSize:              node.PoolSize,
		PoolTimeout:           node.PoolTimeout,
		MaxIdleConns:          node.MaxIdleConns,
		ConnMaxIdleTime:       node.ConnMaxIdleTime,
		TLSConfig:             serverTLS,
		DisableIdentity:       true,
		Dialer:                node.Dialer,
	})
	c := &clusterTopology{o: o, client: client, unmapped: newBreaker("cluster "+strings.Join(o.Addrs, ","), o), nodes: map[string]*master{},
		tlsConfig: serverTLS}
	ctx, cancel := context.WithTimeout(context.Background(), o.DialTimeout+o.ReadTimeout)
	defer cancel()
	err = client.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		return nodeScheme(ctx, node)
	})
	var refused *schemeError
	switch {
	case errors.As(err, &refused):
		client.Close()
		return nil, err
	case err == nil:
		c.mapped.Store(true)
	default:
		o.Logf("layercache: Redis Cluster at %s not reachable at start (%v); the registry serves from storage until it is", strings.Join(o.Addrs, ","), err)
	}
	return c, nil
}

// schemeError: a master that cannot serve the provider.
type schemeError struct{ msg string }

func (e *schemeError) Error() string { return e.msg }

func nodeScheme(ctx context.Context, node *redis.Client) error {
	addr := node.Options().Addr
	setting, err := node.ConfigGet(ctx, "layercache.scheme").Result()
	if code, _ := ReplyCode(err); code != "" {
		return &schemeError{fmt.Sprintf("layercache: cluster master %s: CONFIG GET layercache.scheme: %v (the provider's user needs +config|get)", addr, err)}
	}
	switch {
	case err != nil:
		return fmt.Errorf("cluster master %s: %w", addr, err)
	case setting["layercache.scheme"] == "":
		return &schemeError{fmt.Sprintf("layercache: cluster master %s does not have the layercache module loaded", addr)}
	case setting["layercache.scheme"] != "blob":
		return &schemeError{fmt.Sprintf("layercache: cluster master %s runs the layercache module in scheme %q; a cluster needs scheme blob", addr, setting["layercache.scheme"])}
	}
	return nil
}

// route is the breaker of the master of key's slot, as the slot map says now; until
// there is a slot map, the cluster's own, whose call asks for the map first.
func (c *clusterTopology) route(ctx context.Context, key string) route {
	failed := func(uint64, bool) { c.refresh() }
	run := func(ctx context.Context, args ...interface{}) (interface{}, uint64, error) {
		return c.run(ctx, key, args)
	}
	if !c.mapped.Load() {
		return route{breaker: c.unmapped, failed: failed, run: func(ctx context.Context, args ...interface{}) (interface{}, uint64, error) {
			if _, err := c.client.MasterForKey(ctx, key); err != nil {
				return nil, 0, err
			}
			c.mapped.Store(true)
			return run(ctx, args...)
		}}
	}
	node, err := c.client.MasterForKey(ctx, key) // from the map go-redis holds
	if err != nil {
		return route{breaker: c.unmapped, failed: failed, run: func(context.Context, ...interface{}) (interface{}, uint64, error) {
			return nil, 0, err
		}}
	}
	return route{breaker: c.node(node.Options().Addr), run: run, failed: failed}
}

// run runs a command on the node of key's slot. With the local tier, a master it
// tracks is asked directly, and its answer carries the master's session epoch (the
// tier stores only what the master tracked answered itself); a redirection (MOVED,
// ASK: its slots changed) drops that master's entries, and the command goes the
// cluster's way. go-redis 9.7 takes a command's first argument as its key unless told
// otherwise, and the module's keys (digests) come after the repository: without the
// key's position, each call would be a MOVED.
func (c *clusterTopology) run(ctx context.Context, key string, args []interface{}) (interface{}, uint64, error) {
	if node, epoch := c.tracked(ctx, key); node != nil {
		reply, err := node.Do(ctx, args...).Result()
		if code, _ := ReplyCode(err); code != "MOVED" && code != "ASK" {
			return reply, epoch, err
		}
		c.tier.empty(epoch)
		c.refresh()
	}
	cmd := redis.NewCmd(ctx, args...)
	for i, a := range args {
		if a == key {
			cmd.SetFirstKeyPos(int8(i))
			break
		}
	}
	_ = c.client.Process(ctx, cmd)
	reply, err := cmd.Result()
	return reply, clusterEpoch, err
}

// clusterEpoch is the epoch of a cluster call answered the cluster's way (see route):
// the cluster has no server replacements to tell apart, but an answer must still read
// as Redis's for the request's memo. The tier's sessions have epochs above it.
const clusterEpoch = 1

// tracked is the master of key's slot and its tier session's epoch, when the tier
// tracks it; nil otherwise.
func (c *clusterTopology) tracked(ctx context.Context, key string) (*redis.Client, uint64) {
	if c.tier == nil {
		return nil, 0
	}
	node, err := c.client.MasterForKey(ctx, key)
	if err != nil {
		return nil, 0
	}
	if epoch := c.tier.epochOf(node.Options().Addr); epoch != 0 {
		return node, epoch
	}
	return nil, 0
}

// owner is the address of the master of key's slot as the slot map says now, "" when
// unknown.
func (c *clusterTopology) owner(ctx context.Context, key string) string {
	node, err := c.client.MasterForKey(ctx, key)
	if err != nil {
		return ""
	}
	return node.Options().Addr
}

func (c *clusterTopology) node(addr string) *breaker {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[addr]
	if n == nil {
		n = &master{breaker: newBreaker(addr, c.o)}
		c.nodes[addr] = n
	}
	n.routed = time.Now()
	return n.breaker
}

// refresh asks for the slot map again, in the background, at most every refreshGap:
// a master that died answers nothing, so without this its slots would stay mapped to
// it after its replica took over.
func (c *clusterTopology) refresh() {
	now := time.Now().UnixNano()
	last := c.reloaded.Load()
	if now-last >= int64(refreshGap) && c.reloaded.CompareAndSwap(last, now) {
		c.client.ReloadState(context.Background())
	}
}

func (c *clusterTopology) skipped() { c.refresh() }

func (c *clusterTopology) breakers() []*breaker {
	c.mu.Lock()
	defer c.mu.Unlock()
	all := []*breaker{c.unmapped}
	for addr, n := range c.nodes {
		if time.Since(n.routed) > c.pruneAfter() {
			delete(c.nodes, addr)
			continue
		}
		all = append(all, n.breaker)
	}
	return all
}

func (c *clusterTopology) close() error { return c.client.Close() }
