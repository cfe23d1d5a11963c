package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/distribution/registry/storage/cache"
	dredis "github.com/docker/distribution/registry/storage/cache/redis"
	garyburd "github.com/garyburd/redigo/redis"
	"github.com/gomodule/redigo/redis"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/dist2"
	"github.com/layercache/go-layercache/internal/benchkit"
)

// sentinelTable measures repository Stat hits through Sentinel at each round trip, on
// Harbor's pool (its distribution fork: ROLE on every borrow) with distribution's redis
// provider and with the module's command, and on the layercache provider (New with
// MasterName: no check per borrow). One sentinel, started from serverBinary, watches
// the master through the delay proxy, so it names the proxy's address and every client
// connection crosses it.
func sentinelTable(addr, serverBinary string, rtts []time.Duration, n int) (string, error) {
	var table strings.Builder
	table.WriteString("| added RTT | Harbor's pool, distribution's redis provider p50 / p99 | Harbor's pool, LAYERCACHE.REPOSTAT p50 / p99 | layercache p50 / p99 | p50 speed-up over the same command on Harbor's pool | over distribution's provider on it | target at 2 ms |\n|---|---|---|---|---:|---:|---|\n")
	for _, d := range rtts {
		via, err := benchkit.Proxy(addr, d/2)
		if err != nil {
			return "", err
		}
		sentinelAddr, stop, err := startSentinel(serverBinary, via)
		if err != nil {
			return "", err
		}
		pool := harborPool(sentinelAddr)
		harbor := dredis.NewRedisBlobDescriptorCacheProvider(pool)
		ours, err := dist2.New(layercache.Options{Addrs: []string{sentinelAddr}, MasterName: "bench"})
		if err != nil {
			stop()
			return "", err
		}
		var p50s, p99s []time.Duration
		for _, stat := range []func(int) error{statOf(harbor), func(i int) error {
			c := pool.Get()
			defer c.Close()
			_, err := garyburd.Values(c.Do("LAYERCACHE.REPOSTAT", "bench/app", benchkit.Digest(i%100).String()))
			return err
		}, statOf(ours)} {
			p50, p99, err := measure(stat, n)
			if err != nil {
				stop()
				return "", err
			}
			p50s, p99s = append(p50s, p50), append(p99s, p99)
		}
		stop()
		speedup := float64(p50s[1]) / float64(p50s[2])
		target := ""
		if d == 2*time.Millisecond {
			target = "≥ 1.9×: met"
			if speedup < 1.9 {
				target = "≥ 1.9×: **not met**"
			}
		}
		fmt.Fprintf(&table, "| %s | %s / %s | %s / %s | %s / %s | %.2f× | %.2f× | %s |\n", benchkit.RTTName(d),
			benchkit.Ms(p50s[0]), benchkit.Ms(p99s[0]), benchkit.Ms(p50s[1]), benchkit.Ms(p99s[1]), benchkit.Ms(p50s[2]), benchkit.Ms(p99s[2]),
			speedup, float64(p50s[0])/float64(p50s[2]), target)
	}
	return table.String(), nil
}

// statOf is a repository Stat hit of digest i%100 through p.
func statOf(p cache.BlobDescriptorCacheProvider) func(int) error {
	repo, err := p.RepositoryScoped("bench/app")
	return func(i int) error {
		if err != nil {
			return err
		}
		_, err := repo.Stat(ctx, benchkit.Digest(i%100))
		return err
	}
}

// measure runs stat(0) to fill the pool, then stat(0..n-1) one after another; their
// p50 and p99.
func measure(stat func(int) error, n int) (time.Duration, time.Duration, error) {
	if err := stat(0); err != nil {
		return 0, 0, err
	}
	lat := make([]time.Duration, n)
	for i := range lat {
		start := time.Now()
		if err := stat(i); err != nil {
			return 0, 0, err
		}
		lat[i] = time.Since(start)
	}
	p50, p99 := benchkit.Percentiles(lat)
	return p50, p99, nil
}

// harborPool is the pool Harbor's distribution fork builds for
// `redis.sentinelMasterSet` (FZambia/sentinel there): a new connection asks the
// sentinel for the master, and every borrow checks ROLE. distribution's own redis
// provider runs on it, as in Harbor.
func harborPool(sentinelAddr string) *garyburd.Pool {
	return &garyburd.Pool{
		MaxIdle: 4,
		Dial: func() (garyburd.Conn, error) {
			s, err := garyburd.Dial("tcp", sentinelAddr)
			if err != nil {
				return nil, err
			}
			defer s.Close()
			master, err := garyburd.Strings(s.Do("SENTINEL", "get-master-addr-by-name", "bench"))
			if err != nil || len(master) != 2 {
				return nil, fmt.Errorf("sentinel: %v %v", master, err)
			}
			return garyburd.Dial("tcp", net.JoinHostPort(master[0], master[1]))
		},
		TestOnBorrow: func(c garyburd.Conn, _ time.Time) error {
			role, err := garyburd.Values(c.Do("ROLE"))
			if err != nil || len(role) == 0 || fmt.Sprintf("%s", role[0]) != "master" {
				return errors.New("role check failed")
			}
			return nil
		},
	}
}

// startSentinel runs a sentinel watching master (the proxy's address) as "bench", on
// a free port; its address and a function that kills it.
func startSentinel(serverBinary, master string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "lcbench-sentinel-")
	if err != nil {
		return "", nil, err
	}
	host, port, _ := strings.Cut(master, ":")
	conf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("sentinel monitor bench %s %s 1\n", host, port)), 0o644); err != nil {
		return "", nil, err
	}
	sentinelPort, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(serverBinary, conf, "--sentinel", "--port", fmt.Sprint(sentinelPort), "--bind", "127.0.0.1",
		"--dir", dir, "--logfile", filepath.Join(dir, "sentinel.log"))
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) }
	addr := fmt.Sprintf("127.0.0.1:%d", sentinelPort)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := redis.Dial("tcp", addr); err == nil {
			named, err := redis.Strings(c.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "bench"))
			c.Close()
			if err == nil && len(named) == 2 && named[1] == port {
				return addr, stop, nil
			}
		}
	}
	stop()
	return "", nil, fmt.Errorf("the sentinel on %s did not start", addr)
}
