// Command lcbench-go measures the latency of the layercache provider against
// distribution's own redis provider with Redis across a network: a delay proxy between
// client and server adds half the round trip each way, and each operation runs
// sequentially, reporting p50 and p99. `make bench-go` runs it and writes the table to
// BENCHMARKS.md.
//
//	lcbench-go -addr 127.0.0.1:6379 -rtt 0.5ms,2ms -n 400 -out BENCHMARKS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"strings"
	"time"

	"github.com/docker/distribution"
	"github.com/docker/distribution/registry/storage/cache"
	dredis "github.com/docker/distribution/registry/storage/cache/redis"
	garyburd "github.com/garyburd/redigo/redis"
	"github.com/layercache/go-layercache/internal/benchkit"
	"github.com/opencontainers/go-digest"
)

var ctx = context.Background()

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "redis-server with the layercache module")
	rtts := flag.String("rtt", "0.5ms,2ms", "round trips to add, comma-separated")
	n := flag.Int("n", 400, "operations per measurement")
	out := flag.String("out", "", "BENCHMARKS.md to write the section into")
	server := flag.String("server", "redis-server", "the server binary, for the sentinel of the Sentinel table")
	module := flag.String("module", "", "liblayercache.so, for the cluster nodes of the Cluster tables")
	clusterSeconds := flag.Float64("throughput-seconds", 5, "how long each 32-client throughput run lasts")
	mixOps := flag.Int("mix", 4000, "operations of the pull-like mix, per provider and round trip")
	plainAddr := flag.String("plain-addr", "", "a redis-server without the module, for distribution's provider in the mix")
	flag.Parse()

	type variant struct {
		name     string
		provider func(addr string) cache.BlobDescriptorCacheProvider
	}
	variants := []variant{
		{"distribution, PING per borrow", func(a string) cache.BlobDescriptorCacheProvider {
			return dredis.NewRedisBlobDescriptorCacheProvider(&garyburd.Pool{
				Dial:         func() (garyburd.Conn, error) { return garyburd.Dial("tcp", a) },
				MaxIdle:      4,
				TestOnBorrow: func(c garyburd.Conn, _ time.Time) error { _, err := c.Do("PING"); return err },
			})
		}},
		{"distribution", func(a string) cache.BlobDescriptorCacheProvider {
			return dredis.NewRedisBlobDescriptorCacheProvider(&garyburd.Pool{
				Dial:    func() (garyburd.Conn, error) { return garyburd.Dial("tcp", a) },
				MaxIdle: 4,
			})
		}},
		{"layercache", func(a string) cache.BlobDescriptorCacheProvider { return plain(a) }},
	}
	// The data the hits read: 100 blobs in the repository, written through the module.
	seed := plain(*addr)
	for i := 0; i < 100; i++ {
		r, _ := seed.RepositoryScoped("bench/app")
		if err := r.SetDescriptor(ctx, benchkit.Digest(i), distribution.Descriptor{Digest: benchkit.Digest(i), Size: 2797, MediaType: "application/octet-stream"}); err != nil {
			log.Fatal(err)
		}
	}

	var durations []time.Duration
	for _, rtt := range strings.Split(*rtts, ",") {
		d, err := time.ParseDuration(rtt)
		if err != nil {
			log.Fatal(err)
		}
		durations = append(durations, d)
	}

	var table strings.Builder
	table.WriteString("| operation | added RTT | distribution, PING per borrow p50 / p99 | distribution p50 / p99 | layercache p50 / p99 | p50 speed-up over distribution | target at 2 ms |\n|---|---|---|---|---|---:|---|\n")
	targets := map[string]float64{"repository Stat, hit": 2.8, "repository SetDescriptor": 3.5, "repository Clear": 1.9}
	operations := benchkit.Operations[distribution.Descriptor, distribution.BlobDescriptorService, cache.BlobDescriptorCacheProvider](
		func(d digest.Digest) distribution.Descriptor {
			return distribution.Descriptor{Digest: d, Size: 2797, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}
		}, distribution.ErrBlobUnknown)
	for _, d := range durations {
		rtt := benchkit.RTTName(d)
		via, err := benchkit.Proxy(*addr, d/2)
		if err != nil {
			log.Fatal(err)
		}
		for _, op := range operations {
			var p50s, p99s []time.Duration
			for vi, v := range variants {
				p50, p99, err := benchkit.Latency(v.provider(via), op, vi, *n)
				if err != nil {
					log.Fatalf("%s %v", v.name, err)
				}
				p50s, p99s = append(p50s, p50), append(p99s, p99)
			}
			speedup := float64(p50s[1]) / float64(p50s[2])
			fmt.Fprintf(&table, "| %s | %s | %s / %s | %s / %s | %s / %s | %.2f× | %s |\n", op.Name, rtt,
				benchkit.Ms(p50s[0]), benchkit.Ms(p99s[0]), benchkit.Ms(p50s[1]), benchkit.Ms(p99s[1]), benchkit.Ms(p50s[2]), benchkit.Ms(p99s[2]),
				speedup, benchkit.Target(d, targets[op.Name], speedup))
			log.Printf("%s at %s: distribution+PING %s, distribution %s, layercache %s ms (p50)", op.Name, rtt, benchkit.Ms(p50s[0]), benchkit.Ms(p50s[1]), benchkit.Ms(p50s[2]))
		}
	}
	section := fmt.Sprintf("## Go provider latency\n\n`make bench-go` (`clients/go/.../cmd/lcbench-go`): distribution's redis provider and the "+
		"layercache provider against one redis-server with the module, through a proxy that delays every packet by half "+
		"the added round trip each way; one client, operations one after another, %d per measurement, latency in ms. "+
		"\"PING per borrow\" is distribution's registry pool (`TestOnBorrow` pings); the others use a pool that "+
		"does not (a plain redigo pool for distribution; go-redis's, which checks a borrowed connection without a round trip, for layercache). Speed-up: distribution's p50 (without the PING) over layercache's.\n\n%s",
		*n, table.String())
	sentinelRows, err := sentinelTable(*addr, *server, durations, *n)
	if err != nil {
		log.Fatal(err)
	}
	section += "\nThrough Sentinel: repository Stat hits on Harbor's pool (its distribution fork's `TestOnBorrow` asks " +
		"`ROLE` on every borrow), with distribution's redis provider (what Harbor runs) and with the module's command " +
		"(the same command as the provider, so the pools alone differ: the target), and with the layercache provider " +
		"(`New` with `MasterName`: go-redis's pool, no check per borrow that costs a round trip, the master followed " +
		"through `+switch-master`). One sentinel watches the master through the same delay proxy, so it names the " +
		"proxy's address.\n\n" + sentinelRows
	tierRows, err := tierTable(*addr, durations, *n)
	if err != nil {
		log.Fatal(err)
	}
	mixRows, err := mixTable(*addr, *plainAddr, durations, 10_000, *mixOps)
	if err != nil {
		log.Fatal(err)
	}
	section += "\nThe local tier (`LocalEntries`): repeated repository Stat hits on the provider without and with it (" +
		"100 digests, all in the tier), and the invalidation delay: a repository SetDescriptor acknowledged on one instance " +
		"until the other instance's tier has dropped the entry (the start of its first Stat, polled from the tier, that " +
		"answers the new size). Redis sends the invalidation as it makes the change, before the writer's reply, and both cross " +
		"half a round trip of proxy, so the entry is mostly gone before the write is acknowledged: a delay of 0 within the " +
		"poll's step. Latency in ms.\n\n" + tierRows +
		fmt.Sprintf("\nA pull-like mix: %d operations, 95%% repository Stats on one instance drawn by Zipf (s = 1.1) over 10,000 "+
			"blobs, 5%% repository SetDescriptors of such blobs by another instance, the same draws for each provider, "+
			"the tier starting empty. Commands per operation as the server counts them (INFO commandstats; for the module "+
			"its LAYERCACHE commands, for distribution's provider every command, on a server without the module).\n\n", *mixOps) + mixRows
	clusterRows, err := clusterTable(*addr, *server, *module, durations, *n, *clusterSeconds)
	if err != nil {
		log.Fatal(err)
	}
	section += "\nOn Redis Cluster (the blob scheme, 3 masters started by the benchmark): repository Stat hits through a " +
		"delay proxy in front of each master, which the masters announce (`cluster-announce-port`), so that the provider " +
		"(go-redis's cluster client) crosses it as the one-node provider crosses its own; then 32 goroutines of " +
		"repository Stat hits over 100 digests, without the proxy, on the 3-master cluster and on a 1-master cluster, " +
		"with the CPU the servers and the benchmark used.\n\n" + clusterRows
	fmt.Print(section)
	if *out != "" {
		if err := benchkit.WriteSection(*out, "go", section); err != nil {
			log.Fatal(err)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
