package faults

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/internal/redistest"
	"github.com/opencontainers/go-digest"
)

// clusterSet is a 3-master, 3-replica cluster in scheme blob.
type clusterSet struct {
	nodes   []*redistest.Server
	masters []*redistest.Server
}

func startCluster(t *testing.T) *clusterSet {
	t.Helper()
	// As a cache cluster should run: the masters that hold their slots serve them while
	// another's are uncovered (before its replica's promotion).
	c := &clusterSet{nodes: redistest.StartCluster(t, 3, 1, []string{"scheme", "blob", "--cluster-require-full-coverage", "no"})}
	for _, n := range c.nodes {
		if role, _ := redis.Values(n.Dial(t).Do("ROLE")); len(role) > 0 && fmt.Sprintf("%s", role[0]) == "master" {
			c.masters = append(c.masters, n)
		}
	}
	if len(c.masters) != 3 {
		t.Fatalf("%d masters", len(c.masters))
	}
	return c
}

// master is the port of the master that serves key now, as node says.
func masterPort(t *testing.T, node *redistest.Server, key string) int {
	t.Helper()
	c := node.Dial(t)
	slot, err := redis.Int(c.Do("CLUSTER", "KEYSLOT", key))
	if err != nil {
		t.Fatal(err)
	}
	ranges, err := redis.Values(c.Do("CLUSTER", "SLOTS"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ranges {
		entry, _ := r.([]interface{})
		from, _ := redis.Int(entry[0], nil)
		to, _ := redis.Int(entry[1], nil)
		if slot >= from && slot <= to {
			master, _ := entry[2].([]interface{})
			port, _ := redis.Int(master[1], nil)
			return port
		}
	}
	return 0
}

// replicaOf is the replica of master.
func (c *clusterSet) replicaOf(t *testing.T, master *redistest.Server) *redistest.Server {
	t.Helper()
	for _, n := range c.nodes {
		info, _ := redis.String(n.Dial(t).Do("INFO", "replication"))
		if strings.Contains(info, fmt.Sprintf("master_port:%d", master.Port)) {
			return n
		}
	}
	t.Fatalf("no replica of %s", master.Addr)
	return nil
}

// promoted is when replica reported itself master, polled every 10 ms until limit.
func promoted(t *testing.T, replica *redistest.Server, limit time.Duration) time.Time {
	t.Helper()
	var at time.Time
	redistest.WaitFor(t, limit, replica.Addr+" promoted", func() bool {
		c, err := redis.Dial("tcp", replica.Addr)
		if err != nil {
			return false
		}
		defer c.Close()
		role, _ := redis.Values(c.Do("ROLE"))
		if len(role) > 0 && fmt.Sprintf("%s", role[0]) == "master" {
			at = time.Now()
			return true
		}
		return false
	})
	return at
}

// On a cluster, a fault of one master touches only its slots: the healthy masters'
// slots keep answering at normal latency, the faulty one's requests are bounded, and
// after a failover its slots are hits again within a second of the promotion.
func TestClusterOneMaster(t *testing.T) {
	for _, fault := range []string{"hung 12 s", "killed", "black-holed 6 s"} {
		t.Run(fault, func(t *testing.T) {
			set := startCluster(t)
			faulty := set.masters[0]
			replica := set.replicaOf(t, faulty)
			var proxy *redistest.Proxy
			if fault == "black-holed 6 s" {
				proxy = set.throughProxy(t, faulty)
			}
			c := client(t, options(redistest.Addrs(set.masters)...))
			warm(t, c)
			onFaulty := map[digest.Digest]bool{}
			for _, d := range digests {
				owner := masterPort(t, set.masters[1], string(d))
				onFaulty[d] = owner == faulty.Port || proxy != nil && fmt.Sprint(owner) == strings.Split(proxy.Addr, ":")[1]
			}
			l := startLoad(c, workers, nil)
			time.Sleep(500 * time.Millisecond)
			start := time.Now()
			var end, promotedAt time.Time
			switch fault {
			case "hung 12 s":
				faulty.Stop()
				promotedAt = promoted(t, replica, 30*time.Second)
				time.Sleep(time.Until(start.Add(12 * time.Second)))
				end = time.Now()
				faulty.Continue()
			case "killed":
				faulty.Kill()
				promotedAt = promoted(t, replica, 30*time.Second)
				time.Sleep(2 * time.Second)
				end = time.Now()
			default:
				proxy.BlackHole()
				time.Sleep(6 * time.Second)
				end = time.Now()
				proxy.Heal()
			}
			time.Sleep(time.Second)
			l.halt()
			// The breaker of a master's address that no slot maps to any more (killed,
			// or a replica now) does not stay open in Stats (the breaker_open metric).
			redistest.WaitFor(t, 10*time.Second, "no breaker open", func() bool { return !c.Stats().BreakerOpen })
			var healthy, bad []request
			for _, q := range l.between(start, end) {
				if onFaulty[q.dgst] {
					bad = append(bad, q)
				} else {
					healthy = append(healthy, q)
				}
			}
			h := measure("cluster, one master "+fault+": healthy slots", healthy, start)
			h.openP99 = 0
			hits := 0
			for _, q := range healthy {
				if q.hit {
					hits++
				}
			}
			h.note = fmt.Sprintf("%.2f%% hits", 100*float64(hits)/float64(max(len(healthy), 1)))
			if h.errors != 0 || hits < len(healthy)*99/100 || h.p99 > 20*time.Millisecond {
				t.Errorf("%s: healthy slots had %d errors, %d hits of %d, p99 %v", fault, h.errors, hits, len(healthy), h.p99)
			}
			report(t, h)

			f := measure("cluster, one master "+fault+": its slots", bad, start.Add(2*timeout))
			if fault == "killed" {
				f.openP99 = 0 // refused at once: the breaker need not open
			}
			if !promotedAt.IsZero() {
				f.recovered = l.firstHit(promotedAt, func(q request) bool { return onFaulty[q.dgst] }).Sub(promotedAt)
				f.note = fmt.Sprintf("promoted %s ms after the fault", ms(promotedAt.Sub(start)))
				if f.recovered < 0 || f.recovered > time.Second+margin {
					t.Errorf("%s: its slots were hits again %v after the promotion", fault, f.recovered)
				}
			} else {
				f.recovered = l.firstHit(end, func(q request) bool { return onFaulty[q.dgst] }).Sub(end)
			}
			if f.max > timeout+margin {
				t.Errorf("%s: a request to the faulty slots took %v", fault, f.max)
			}
			if f.errors == 0 {
				t.Errorf("%s: no request to the faulty slots failed: the fault never reached the provider", fault)
			}
			report(t, f)
		})
	}
}

// throughProxy announces master at a proxy of its own: clients reach it through the
// proxy (which can black-hole them); the cluster bus does not.
func (c *clusterSet) throughProxy(t *testing.T, master *redistest.Server) *redistest.Proxy {
	t.Helper()
	proxy := redistest.NewProxy(t, master.Addr)
	port, key := strings.Split(proxy.Addr, ":")[1], faultySlotKey(t, c, master)
	master.Do(t, "CONFIG", "SET", "cluster-announce-port", port)
	// Every node, since the provider takes its slot map from any of them.
	for _, n := range c.nodes {
		redistest.WaitFor(t, 10*time.Second, "the proxy announced by "+n.Addr, func() bool {
			return fmt.Sprint(masterPort(t, n, key)) == port
		})
	}
	return proxy
}

// faultySlotKey is one of the digests the master serves.
func faultySlotKey(t *testing.T, set *clusterSet, master *redistest.Server) string {
	t.Helper()
	for _, d := range digests {
		if masterPort(t, set.masters[1], string(d)) == master.Port {
			return string(d)
		}
	}
	t.Fatal("no digest on the master")
	return ""
}

// Every master hung: every request bounded, the breakers open within a timeout, and
// the cache is back once they are.
func TestClusterAllMastersHung(t *testing.T) {
	set := startCluster(t)
	o := options(redistest.Addrs(set.masters)...)
	log := logs(&o)
	c := client(t, o)
	warm(t, c)
	l := startLoad(c, workers, nil)
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	for _, m := range set.masters {
		m.Stop()
	}
	time.Sleep(3 * time.Second)
	end := time.Now()
	for _, m := range set.masters {
		m.Continue()
	}
	redistest.WaitFor(t, 10*time.Second, "hits again", func() bool { return !l.firstHit(end, nil).IsZero() })
	l.halt()
	r := measure("cluster, all masters hung 3 s", l.between(start, end), start.Add(2*timeout))
	r.recovered = l.firstHit(end, nil).Sub(end)
	r.note = fmt.Sprintf("%d breakers opened", log.Count("unreachable"))
	if r.max > timeout+margin || r.openP99 > time.Millisecond || log.Count("unreachable") < 3 {
		t.Errorf("all masters hung: max %v, p99 once open %v, %d breakers opened", r.max, r.openP99, log.Count("unreachable"))
	}
	report(t, r)
}

// The local tier on a cluster under a fault of one master: that master's entries stop
// serving within the lease (its tracking connection dead or silent), a write to its
// slots after the fault (on the promoted replica, or on the black-holed master behind
// the clients' backs) is never served stale past the lease, and the healthy masters'
// entries keep serving from the tier, their writes heard at once.
func TestClusterTierOneMaster(t *testing.T) {
	lease := layercache.DefaultLocalLease
	for _, fault := range []string{"hung", "killed", "black-holed"} {
		t.Run(fault, func(t *testing.T) {
			set := startCluster(t)
			faulty := set.masters[0]
			replica := set.replicaOf(t, faulty)
			victim, healthy := digest.Digest(faultySlotKey(t, set, faulty)), digest.Digest(faultySlotKey(t, set, set.masters[1]))
			var proxy *redistest.Proxy
			if fault == "black-holed" {
				proxy = set.throughProxy(t, faulty)
			}
			o := options(redistest.Addrs(set.masters)...)
			o.LocalEntries = 1000
			c := client(t, o)
			warm(t, c)
			redistest.WaitFor(t, 10*time.Second, "the tier serving both", func() bool {
				before := c.Stats().TierServed
				c.RepoStat(ctx, repo, victim)  //nolint:errcheck
				c.RepoStat(ctx, repo, healthy) //nolint:errcheck
				return c.Stats().TierServed == before+2
			})
			type read struct {
				at   time.Time
				took time.Duration
				dgst digest.Digest
				size int64 // 0: no hit
				tier bool
			}
			var mu sync.Mutex
			var got []read
			stop := make(chan struct{})
			var readers sync.WaitGroup
			for _, d := range []digest.Digest{victim, healthy} {
				readers.Add(1)
				go func() {
					defer readers.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						r := read{at: time.Now(), dgst: d}
						before := c.Stats().TierServed
						if desc, err := c.RepoStat(ctx, repo, d); err == nil {
							r.size, r.tier = desc.Size, c.Stats().TierServed > before
						}
						r.took = time.Since(r.at)
						mu.Lock()
						got = append(got, r)
						mu.Unlock()
						time.Sleep(500 * time.Microsecond)
					}
				}()
			}
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			write := func(s *redistest.Server, d digest.Digest) time.Time {
				s.Do(t, "LAYERCACHE.REPOSETDESCRIPTOR", repo, d, d, 999, descriptor(d).MediaType)
				return time.Now()
			}
			// written: the victim's new descriptor; until: before the faulty master's
			// slots are served again, by its promoted replica (which holds the old
			// descriptor too, and may be tracked before promoted sees it: no promotion
			// comes before the cluster's node timeout) or by it after the heal.
			var written, until time.Time
			fail, heal := faulty.Stop, faulty.Continue
			if fault == "killed" {
				fail, heal = faulty.Kill, func() {}
			}
			switch fault {
			case "hung", "killed":
				fail()
				until = start.Add(redistest.NodeTimeout)
				promoted(t, replica, 30*time.Second)
				written = write(replica, victim)
				time.Sleep(2 * time.Second)
				heal()
			default:
				proxy.BlackHole()
				time.Sleep(100 * time.Millisecond)
				written = write(faulty, victim) // behind the clients' backs
				time.Sleep(3 * time.Second)
				until = time.Now()
				proxy.Heal()
			}
			healthyWritten := write(set.masters[1], healthy)
			time.Sleep(2 * time.Second)
			close(stop)
			readers.Wait()
			// A hit of the victim's old descriptor after the write served what the server no
			// longer held; one from the tier past the lease after the fault and before the
			// faulty master's slots were served again (by its promoted replica, or by it
			// after the heal), from a session no longer proven alive.
			var stale, tierPastLease, healthyReads, healthyTier, healthyStale int
			var lastStale, back time.Time
			var took []time.Duration
			for _, r := range got {
				took = append(took, r.took)
				if r.dgst == victim && r.tier && r.size == 999 && back.IsZero() {
					back = r.at
				}
				switch {
				case r.dgst == victim && r.size == 1234 && r.at.After(written):
					stale++
					lastStale = r.at
				case r.dgst == victim && r.tier && r.size == 1234 && r.at.After(start.Add(lease+margin)) && r.at.Before(until):
					tierPastLease++
				case r.dgst == healthy:
					healthyReads++
					if r.tier {
						healthyTier++
					}
					if r.at.After(healthyWritten.Add(margin)) && r.size != 999 {
						healthyStale++
					}
				}
			}
			row := row{name: "cluster with the tier, one master " + fault, calls: len(got), stale: stale, recovered: back.Sub(written),
				p50: quantile(took, 0.5), p99: quantile(took, 0.99), max: quantile(took, 1),
				note: fmt.Sprintf("recovered: its slots from the tier again, the write read; healthy slots: %d%% from the tier, %d stale after their write",
					100*healthyTier/max(healthyReads, 1), healthyStale)}
			if back.IsZero() {
				t.Errorf("%s: the tier never served the faulty slots' new descriptor", fault)
			}
			if stale > 0 {
				row.note += fmt.Sprintf("; its slots stale until %s ms after the write (lease %s ms)", ms(lastStale.Sub(written)), ms(lease))
				if lastStale.Sub(written) > lease+margin {
					t.Errorf("%s: the tier served the faulty master's old descriptor %v after the write", fault, lastStale.Sub(written))
				}
			}
			if tierPastLease > 0 {
				t.Errorf("%s: the tier served the faulty master's entry %d times past the lease after the fault", fault, tierPastLease)
			}
			if healthyStale > 0 || healthyTier < healthyReads*9/10 {
				t.Errorf("%s: healthy slots: %d stale, %d of %d reads from the tier", fault, healthyStale, healthyTier, healthyReads)
			}
			report(t, row)
		})
	}
}
