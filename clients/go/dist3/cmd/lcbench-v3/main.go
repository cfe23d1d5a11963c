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

var ctx = context.Background()

func digestOf(n int) digest.Digest { return digest.Digest(fmt.Sprintf("sha256:%064x", n)) }

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

type operation struct {
	name string
	run  func(p cache.BlobDescriptorCacheProvider, i, v int) error
}

func operations() []operation {
	desc := func(n int) v1.Descriptor {
		return v1.Descriptor{Digest: digestOf(n), Size: 2797, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}
	}
	repo := func(p cache.BlobDescriptorCacheProvider) distribution.BlobDescriptorService {
		r, err := p.RepositoryScoped("bench/app")
		if err != nil {
			log.Fatal(err)
		}
		return r
	}
	return []operation{
		{"repository Stat, hit", func(p cache.BlobDescriptorCacheProvider, i, v int) error {
			_, err := repo(p).Stat(ctx, digestOf(i%100))
			return err
		}},
		{"repository Stat, miss", func(p cache.BlobDescriptorCacheProvider, i, v int) error {
			if _, err := repo(p).Stat(ctx, digestOf(1_000_000+i)); err != distribution.ErrBlobUnknown {
				return fmt.Errorf("a miss returned %v", err)
			}
			return nil
		}},
		{"repository SetDescriptor", func(p cache.BlobDescriptorCacheProvider, i, v int) error {
			n := 2_000_000 + v*100_000 + i
			return repo(p).SetDescriptor(ctx, digestOf(n), desc(n))
		}},
		{"repository Clear", func(p cache.BlobDescriptorCacheProvider, i, v int) error {
			return repo(p).Clear(ctx, digestOf(2_000_000+v*100_000+i))
		}},
		{"global Stat", func(p cache.BlobDescriptorCacheProvider, i, v int) error {
			_, err := p.Stat(ctx, digestOf(i%100))
			return err
		}},
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "redis-server with the layercache module")
	rtts := flag.String("rtt", "0.5ms,2ms", "round trips to add, comma-separated")
	n := flag.Int("n", 400, "operations per measurement")
	out := flag.String("out", "", "BENCHMARKS.md to write the section into")
	flag.Parse()

	seed := ours(*addr)
	r, _ := seed.RepositoryScoped("bench/app")
	for i := 0; i < 100; i++ {
		if err := r.SetDescriptor(ctx, digestOf(i), v1.Descriptor{Digest: digestOf(i), Size: 2797, MediaType: "application/octet-stream"}); err != nil {
			log.Fatal(err)
		}
	}
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
		for _, op := range operations() {
			var p50s, p99s []time.Duration
			for vi, v := range variants {
				p := v(via)
				p.Stat(ctx, digestOf(0)) //nolint:errcheck // a connection in the pool
				lat := make([]time.Duration, *n)
				for i := range lat {
					start := time.Now()
					if err := op.run(p, i, vi); err != nil {
						log.Fatalf("%s: %v", op.name, err)
					}
					lat[i] = time.Since(start)
				}
				p50, p99 := benchkit.Percentiles(lat)
				p50s, p99s = append(p50s, p50), append(p99s, p99)
			}
			speedup := float64(p50s[0]) / float64(p50s[1])
			target := ""
			if t, ok := targets[op.name]; ok && d == 2*time.Millisecond {
				target = fmt.Sprintf("≥ %g×: met", t)
				if speedup < t {
					target = fmt.Sprintf("≥ %g×: **not met**", t)
				}
			}
			fmt.Fprintf(&table, "| %s | %s | %s / %s | %s / %s | %.2f× | %s |\n", op.name, benchkit.RTTName(d),
				benchkit.Ms(p50s[0]), benchkit.Ms(p99s[0]), benchkit.Ms(p50s[1]), benchkit.Ms(p99s[1]), speedup, target)
			log.Printf("%s at %s: v3 %s, layercache %s ms (p50)", op.name, benchkit.RTTName(d), benchkit.Ms(p50s[0]), benchkit.Ms(p50s[1]))
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
