package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/docker/distribution"
	"github.com/docker/distribution/registry/storage/cache"
	"github.com/gomodule/redigo/redis"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/dist2"
	"github.com/layercache/go-layercache/internal/benchkit"
)

// node is a cluster node this benchmark started.
type node struct {
	cmd        *exec.Cmd
	port, bus  int
	addr, root string
}

// startNodes starts n cluster-enabled servers with the module in the blob scheme, each
// bus on a free port of its own; several are joined as masters by redis-cli --cluster
// create, a single one takes every slot. It returns once every node reports
// cluster_state:ok, with a function that kills them (also on error).
func startNodes(serverBinary, module string, n int) ([]*node, func(), error) {
	var nodes []*node
	stop := func() {
		for _, x := range nodes {
			x.cmd.Process.Kill()
			x.cmd.Wait()
			os.RemoveAll(x.root)
		}
	}
	for i := 0; i < n; i++ {
		port, err := freePort()
		if err != nil {
			return nil, stop, err
		}
		bus, err := freePort()
		if err != nil {
			return nil, stop, err
		}
		root, err := os.MkdirTemp("", "lcbench-node-")
		if err != nil {
			return nil, stop, err
		}
		cmd := exec.Command(serverBinary, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", root, "--save", "",
			"--logfile", filepath.Join(root, "redis.log"), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", fmt.Sprint(bus), "--loadmodule", module, "scheme", "blob")
		if err := cmd.Start(); err != nil {
			return nil, stop, err
		}
		x := &node{cmd: cmd, port: port, bus: bus, addr: fmt.Sprintf("127.0.0.1:%d", port), root: root}
		nodes = append(nodes, x)
		if err := until(20*time.Second, func() bool { return do(x.addr, "PING") == nil }); err != nil {
			return nil, stop, fmt.Errorf("node %s did not start", x.addr)
		}
	}
	if n == 1 {
		if err := do(nodes[0].addr, "CLUSTER", "ADDSLOTSRANGE", 0, 16383); err != nil {
			return nil, stop, err
		}
	} else {
		args := []string{"--cluster", "create"}
		for _, x := range nodes {
			args = append(args, x.addr)
		}
		if out, err := exec.Command("redis-cli", append(args, "--cluster-yes")...).CombinedOutput(); err != nil {
			return nil, stop, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
		}
	}
	for _, x := range nodes {
		if err := until(60*time.Second, func() bool {
			info, err := redis.String(doReply(x.addr, "CLUSTER", "INFO"))
			return err == nil && strings.Contains(info, "cluster_state:ok")
		}); err != nil {
			return nil, stop, fmt.Errorf("%s: cluster_state not ok", x.addr)
		}
	}
	return nodes, stop, nil
}

func until(limit time.Duration, ok func() bool) error {
	for deadline := time.Now().Add(limit); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", limit)
		}
	}
	return nil
}

func doReply(addr string, command string, args ...interface{}) (interface{}, error) {
	c, err := redis.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Do(command, args...)
}

func do(addr string, command string, args ...interface{}) error {
	_, err := doReply(addr, command, args...)
	return err
}

// announce makes every node announce port ports[i] (a delay proxy in front of it; 0:
// its own) to clients, and waits until every node's CLUSTER SLOTS says so.
func announce(nodes []*node, ports []int) error {
	for i, x := range nodes {
		if err := do(x.addr, "CONFIG", "SET", "cluster-announce-port", ports[i], "cluster-announce-bus-port", x.bus); err != nil {
			return err
		}
	}
	want := map[int]bool{}
	for i, x := range nodes {
		if ports[i] == 0 {
			want[x.port] = true
		} else {
			want[ports[i]] = true
		}
	}
	return until(30*time.Second, func() bool {
		for _, x := range nodes {
			slots, err := redis.Values(doReply(x.addr, "CLUSTER", "SLOTS"))
			if err != nil {
				return false
			}
			for _, s := range slots {
				entry, _ := s.([]interface{})
				master, _ := entry[2].([]interface{})
				if port, _ := redis.Int(master[1], nil); !want[port] {
					return false
				}
			}
		}
		return true
	})
}

func clusterProvider(addrs []string) (cache.BlobDescriptorCacheProvider, error) {
	return dist2.New(layercache.Options{Addrs: addrs, Cluster: true, PoolSize: 64})
}

// tieredClusterProvider is clusterProvider with the local tier, once every master's
// tracking is on.
func tieredClusterProvider(addrs []string) (*dist2.Provider, error) {
	p, err := dist2.New(layercache.Options{Addrs: addrs, Cluster: true, PoolSize: 64, LocalEntries: 10000})
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); !p.Stats().TierServing; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			p.Close()
			return nil, fmt.Errorf("the tier on the cluster did not serve within 10 s")
		}
	}
	return p, nil
}

func seedCluster(p cache.BlobDescriptorCacheProvider) error {
	r, _ := p.RepositoryScoped("bench/app")
	for i := 0; i < 100; i++ {
		if err := r.SetDescriptor(ctx, benchkit.Digest(i), distribution.Descriptor{Digest: benchkit.Digest(i), Size: 2797, MediaType: "application/octet-stream"}); err != nil {
			return err
		}
	}
	return nil
}

// clusterTable measures the provider on a 3-master cluster (the blob scheme): repository
// Stat hits at each round trip (a delay proxy in front of each master, which the
// masters announce) against the single node at addr through the same delay, and with
// the local tier (repeated Stats: no round trip), and
// 32-way throughput on 3 masters against a 1-master cluster, with the CPU it took.
func clusterTable(addr, serverBinary, module string, rtts []time.Duration, n int, seconds float64) (string, error) {
	nodes, stop, err := startNodes(serverBinary, module, 3)
	defer stop()
	if err != nil {
		return "", err
	}
	var addrs []string
	for _, x := range nodes {
		addrs = append(addrs, x.addr)
	}
	seed, err := clusterProvider(addrs)
	if err != nil {
		return "", err
	}
	if err := seedCluster(seed); err != nil {
		return "", err
	}
	var table strings.Builder
	table.WriteString("| added RTT | one node p50 / p99 | 3-master cluster p50 / p99 | cluster p50 / one node's | target: within 10% " +
		"| the cluster with the tier p50 / p99 |\n|---|---|---|---:|---|---|\n")
	for _, d := range rtts {
		ports := make([]int, len(nodes))
		var via []string
		for i, x := range nodes {
			a, err := benchkit.Proxy(x.addr, d/2)
			if err != nil {
				return "", err
			}
			via = append(via, a)
			ports[i], _ = strconv.Atoi(a[strings.LastIndex(a, ":")+1:])
		}
		if err := announce(nodes, ports); err != nil {
			return "", err
		}
		p, err := clusterProvider(via)
		if err != nil {
			return "", err
		}
		singleVia, err := benchkit.Proxy(addr, d/2)
		if err != nil {
			return "", err
		}
		single, err := measureStat(plain(singleVia), n)
		if err != nil {
			return "", err
		}
		clustered, err := measureStat(p, n)
		if err != nil {
			return "", err
		}
		tp, err := tieredClusterProvider(via)
		if err != nil {
			return "", err
		}
		tiered, err := measureStat(tp, n)
		tp.Close()
		if err != nil {
			return "", err
		}
		ratio := float64(clustered[0]) / float64(single[0])
		target := "met"
		if ratio > 1.10 {
			target = "**not met**"
		}
		fmt.Fprintf(&table, "| %s | %s / %s | %s / %s | %.2f× | %s | %s / %s |\n", benchkit.RTTName(d), benchkit.Ms(single[0]), benchkit.Ms(single[1]),
			benchkit.Ms(clustered[0]), benchkit.Ms(clustered[1]), ratio, target, benchkit.Ms(tiered[0]), benchkit.Ms(tiered[1]))
	}
	if err := announce(nodes, make([]int, len(nodes))); err != nil {
		return "", err
	}

	one, stopOne, err := startNodes(serverBinary, module, 1)
	defer stopOne()
	if err != nil {
		return "", err
	}
	single, err := clusterProvider([]string{one[0].addr})
	if err != nil {
		return "", err
	}
	if err := seedCluster(single); err != nil {
		return "", err
	}
	three, err := clusterProvider(addrs)
	if err != nil {
		return "", err
	}
	table.WriteString("\n| 32 clients, repository Stat hits | ops/s | servers' CPU (one core = 100%) | the benchmark's own CPU | ops/s against 1 master | target: ≥ 2× |\n|---|---:|---:|---:|---:|---|\n")
	var base float64
	for _, c := range []struct {
		name  string
		p     cache.BlobDescriptorCacheProvider
		nodes []*node
	}{{"1 master", single, one}, {"3 masters", three, nodes}} {
		rate, serverCPU, ownCPU, err := throughput(c.p, c.nodes, 32, seconds)
		if err != nil {
			return "", err
		}
		vs, target := "", ""
		if base == 0 {
			base = rate
		} else {
			vs = fmt.Sprintf("%.2f×", rate/base)
			target = "met"
			if rate/base < 2 {
				target = "**not met**"
			}
		}
		fmt.Fprintf(&table, "| %s | %.0f | %.0f%% | %.0f%% | %s | %s |\n", c.name, rate, 100*serverCPU, 100*ownCPU, vs, target)
	}
	return table.String(), nil
}

// throughput runs clients goroutines of repository Stat hits for seconds; ops/s, and
// the CPU the servers and this process used, in cores.
func throughput(p cache.BlobDescriptorCacheProvider, nodes []*node, clients int, seconds float64) (float64, float64, float64, error) {
	repo, _ := p.RepositoryScoped("bench/app")
	var ops atomic.Int64
	var failed atomic.Value
	serverBefore, ownBefore := serverCPU(nodes), ownCPU()
	start := time.Now()
	deadline := start.Add(time.Duration(seconds * float64(time.Second)))
	var wg sync.WaitGroup
	for g := 0; g < clients; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; time.Now().Before(deadline); i += clients {
				if _, err := repo.Stat(ctx, benchkit.Digest(i%100)); err != nil {
					failed.Store(err)
					return
				}
				ops.Add(1)
			}
		}(g)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if err, _ := failed.Load().(error); err != nil {
		return 0, 0, 0, err
	}
	return float64(ops.Load()) / elapsed, (serverCPU(nodes) - serverBefore) / elapsed, (ownCPU() - ownBefore) / elapsed, nil
}

// serverCPU is the CPU seconds the nodes' processes have used (/proc/<pid>/stat).
func serverCPU(nodes []*node) float64 {
	var total float64
	for _, x := range nodes {
		text, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", x.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name in parentheses; utime and stime are 14 and 15.
		fields := strings.Fields(string(text[strings.LastIndexByte(string(text), ')')+2:]))
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		total += (utime + stime) / 100 // USER_HZ
	}
	return total
}

func ownCPU() float64 {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return float64(u.Utime.Nano()+u.Stime.Nano()) / 1e9
}
