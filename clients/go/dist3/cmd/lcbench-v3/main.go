// Command lcbench-v3 measures the latency of the layercache provider for distribution
// v3 against v3's own redis provider (on go-redis, as v3 builds it) with Redis across a
// network: a delay proxy between client and server adds half the round trip each way,
// and each operation runs sequentially, reporting p50 and p99. `make bench-go` runs it
// and writes its section of BENCHMARKS.md.
//
//	lcbench-v3 -addr 127.0.0.1:6379 -rtt 0.5ms,2ms -n 400 -out BENCHMARKS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage/cache"
	rediscache "github.com/distribution/distribution/v3/registry/storage/cache/redis"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/dist3"
	"github.com/layercache/go-layercache/internal/benchkit"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/redis/go-redis/v9"
)

func ours(addr string) cache.BlobDescriptorCacheProvider {
	p, _, err := dist3.New(layercache.Options{Addrs: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	return p
}

func theirs(addr string) cache.BlobDescriptorCacheProvider {
	return rediscache.NewRedisBlobDescriptorCacheProvider(redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}}))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "redis-server with the layercache module")
	rtts := flag.String("rtt", "0.5ms,2ms", "round trips to add, comma-separated")
	n := flag.Int("n", 400, "operations per measurement")
	out := flag.String("out", "", "BENCHMARKS.md to write the section into")
	flag.Parse()

	seed, _ := ours(*addr).RepositoryScoped("bench/app")
	for i := 0; i < 100; i++ {
		if err := seed.SetDescriptor(context.Background(), benchkit.Digest(i), v1.Descriptor{Digest: benchkit.Digest(i), Size: 2797, MediaType: "application/octet-stream"}); err != nil {
			log.Fatal(err)
		}
	}
	operations := benchkit.Operations[v1.Descriptor, distribution.BlobDescriptorService, cache.BlobDescriptorCacheProvider](
		func(d digest.Digest) v1.Descriptor {
			return v1.Descriptor{Digest: d, Size: 2797, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}
		}, distribution.ErrBlobUnknown)
	variants := []func(string) cache.BlobDescriptorCacheProvider{theirs, ours}
	targets := map[string]float64{"repository Stat, hit": 2.8, "repository SetDescriptor": 3.5, "repository Clear": 1.9}
	var table strings.Builder
	table.WriteString("| operation | added RTT | v3's redis provider p50 / p99 | layercache p50 / p99 | p50 speed-up | target at 2 ms |\n|---|---|---|---|---:|---|\n")
	for _, rtt := range strings.Split(*rtts, ",") {
		d, err := time.ParseDuration(rtt)
		if err != nil {
			log.Fatal(err)
		}
		via, err := benchkit.Proxy(*addr, d/2)
		if err != nil {
			log.Fatal(err)
		}
		for _, op := range operations {
			var p50s, p99s []time.Duration
			for vi, v := range variants {
				p50, p99, err := benchkit.Latency(v(via), op, vi, *n)
				if err != nil {
					log.Fatal(err)
				}
				p50s, p99s = append(p50s, p50), append(p99s, p99)
			}
			speedup := float64(p50s[0]) / float64(p50s[1])
			fmt.Fprintf(&table, "| %s | %s | %s / %s | %s / %s | %.2f× | %s |\n", op.Name, benchkit.RTTName(d),
				benchkit.Ms(p50s[0]), benchkit.Ms(p99s[0]), benchkit.Ms(p50s[1]), benchkit.Ms(p99s[1]), speedup, benchkit.Target(d, targets[op.Name], speedup))
			log.Printf("%s at %s: v3 %s, layercache %s ms (p50)", op.Name, benchkit.RTTName(d), benchkit.Ms(p50s[0]), benchkit.Ms(p50s[1]))
		}
	}
	section := "### distribution v3\n\nThe layercache provider for v3 (`dist3`) against v3's own redis provider (go-redis, " +
		"v3's defaults), repository operations one after another through the same delay proxy, " +
		fmt.Sprint(*n) + " per measurement. Latency in ms.\n\n" + table.String()
	fmt.Print(section)
	if *out != "" {
		if err := benchkit.WriteSection(*out, "go-v3", section); err != nil {
			log.Fatal(err)
		}
	}
}
