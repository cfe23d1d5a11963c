package layercache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterTracker keeps the local tier on a Redis Cluster: a tracking session per
// master (tracker.session, broadcast tracking of every key, a connection each), each
// confirming with every PING that its master's slots have not changed (clusterSlots).
// It lists the masters every second (a slot map reload, which keeps go-redis's map
// fresh too), starts a session for a new master and ends the session of one that is
// no longer a master, dropping that master's entries alone.
type clusterTracker struct {
	*tracker
	cluster *clusterTopology
	epochs  atomic.Uint64 // the last session epoch given; they start above clusterEpoch
}

func newClusterTracker(t *tier, cluster *clusterTopology, o Options) *clusterTracker {
	tr := &clusterTracker{tracker: &tracker{tier: t, o: o, tlsConfig: cluster.tlsConfig, stop: make(chan struct{}), done: make(chan struct{})}, cluster: cluster}
	tr.epochs.Store(clusterEpoch)
	cluster.tier = t
	return tr
}

func (c *clusterTracker) run() {
	defer close(c.done)
	running := map[string]chan struct{}{}
	var wg sync.WaitGroup
	defer func() {
		for _, stop := range running {
			close(stop)
		}
		wg.Wait()
	}()
	for {
		if masters, err := c.cluster.masters(); err == nil {
			for addr, stop := range running {
				if !masters[addr] {
					close(stop)
					delete(running, addr)
					c.tier.end(c.tier.epochOf(addr))
				}
			}
			for addr := range masters {
				if running[addr] == nil {
					stop := make(chan struct{})
					running[addr] = stop
					wg.Add(1)
					go func() {
						defer wg.Done()
						c.master(addr, stop)
					}()
				}
			}
		}
		select {
		case <-c.stop:
			return
		case <-time.After(time.Second):
		}
	}
}

// master tracks addr until stop (it is no longer a master) or the tracker closes: one
// session at a time, again a second after a failure; its entries go with each session.
func (c *clusterTracker) master(addr string, stop <-chan struct{}) {
	logged, quiet := "", false
	for {
		epoch := c.epochs.Add(1)
		active, err := c.session(addr, epoch, stop, quiet, clusterSlots)
		c.tier.end(epoch)
		select {
		case <-stop:
			return
		case <-c.stop:
			return
		default:
		}
		if quiet = err == errFlushed; quiet {
			continue // emptied, as a flush wants; tracking again at once
		}
		if why := fmt.Sprint(err); active || why != logged {
			c.o.Logf("layercache: local tier off for the slots of %s, their entries dropped, until tracking resumes: %s", addr, why)
			logged = why
		}
		select {
		case <-stop:
			return
		case <-c.stop:
			return
		case <-time.After(time.Second):
		}
	}
}

// slotCheck asks a tracked server for what its session's entries depend on beyond
// their keys (tier.confirm).
type slotCheck func(ctx context.Context, client *redis.Client) (string, error)

// clusterSlots is a master's slot configuration: its own line of CLUSTER NODES from
// the slots on (the slots it serves, the ones migrating and importing marked); ""
// when it is no master, or its cluster is not ok (a master cut off from the majority,
// which the majority may replace: it refuses queries then, and its entries must stop).
func clusterSlots(ctx context.Context, client *redis.Client) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, client.Options().ReadTimeout)
	defer cancel()
	var info, nodes *redis.StringCmd
	if _, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
		info, nodes = p.ClusterInfo(ctx), p.ClusterNodes(ctx)
		return nil
	}); err != nil {
		return "", err
	}
	if !strings.Contains(info.Val(), "cluster_state:ok") {
		return "", nil
	}
	for _, line := range strings.Split(nodes.Val(), "\n") {
		// <id> <ip:port@cport> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> ...
		f := strings.Fields(line)
		flags := "," + field(f, 2) + ","
		if len(f) < 8 || !strings.Contains(flags, ",myself,") {
			continue
		}
		if !strings.Contains(flags, ",master,") {
			return "", nil
		}
		return "master " + strings.Join(f[8:], " "), nil
	}
	return "", errors.New("CLUSTER NODES has no line for the node itself")
}

func field(f []string, i int) string {
	if i < len(f) {
		return f[i]
	}
	return ""
}

// masters are the addresses of the cluster's masters, from a slot map reload.
func (c *clusterTopology) masters() (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.DialTimeout+c.o.ReadTimeout)
	defer cancel()
	var mu sync.Mutex
	all := map[string]bool{}
	err := c.client.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		all[node.Options().Addr] = true
		return nil
	})
	return all, err
}
