// Package benchkit is what the Go benchmarks share (lcbench-go, and dist3's
// lcbench-v3): a delay proxy, percentiles, and the BENCHMARKS.md section writer.
package benchkit

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Proxy forwards connections to target, delaying every chunk by delay in each direction
// (so a round trip gains twice delay), in order.
func Proxy(target string, delay time.Duration) (string, error) {
	addr, _, err := CountingProxy(target, delay)
	return addr, err
}

// CountingProxy is Proxy, and counts the chunks clients send: each is a write the
// server answers, so the count is the round trips that crossed the proxy.
func CountingProxy(target string, delay time.Duration) (string, *atomic.Int64, error) {
	sent := &atomic.Int64{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			go pipe(client, server, delay, sent)
			go pipe(server, client, delay, nil)
		}
	}()
	return l.Addr().String(), sent, nil
}

type chunk struct {
	at   time.Time
	data []byte
}

func pipe(from, to net.Conn, delay time.Duration, count *atomic.Int64) {
	queue := make(chan chunk, 1024)
	go func() {
		defer to.Close()
		for c := range queue {
			waitUntil(c.at)
			if _, err := to.Write(c.data); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 && count != nil {
			count.Add(1)
		}
		if n > 0 {
			queue <- chunk{time.Now().Add(delay), append([]byte(nil), buf[:n]...)}
		}
		if err != nil {
			if err != io.EOF {
				from.Close()
			}
			close(queue)
			return
		}
	}
}

// waitUntil returns at t. time.Sleep alone overshoots by up to a millisecond on some
// machines (timer slack), which would hide the 0.5 ms case: sleep most of the way, then
// spin.
func waitUntil(t time.Time) {
	if d := time.Until(t) - 1500*time.Microsecond; d > 0 {
		time.Sleep(d)
	}
	for time.Now().Before(t) {
		runtime.Gosched()
	}
}

// Percentiles returns p50 and p99 of xs.
func Percentiles(xs []time.Duration) (time.Duration, time.Duration) {
	sort.Slice(xs, func(a, b int) bool { return xs[a] < xs[b] })
	return xs[len(xs)/2], xs[len(xs)*99/100]
}

// RTTName is "0.5ms" for 500 µs.
func RTTName(d time.Duration) string {
	return fmt.Sprintf("%gms", float64(d)/float64(time.Millisecond))
}

// Ms is d in milliseconds, two decimals.
func Ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// WriteSection replaces the text between <!-- name --> and <!-- /name --> in path, or
// appends it.
func WriteSection(path, name, body string) error {
	text, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	start, end := "<!-- "+name+" -->", "<!-- /"+name+" -->"
	block := start + "\n" + body + "\n" + end
	s := string(text)
	a, b := strings.Index(s, start), strings.Index(s, end)
	if a >= 0 && b > a {
		s = s[:a] + block + s[b+len(end):]
	} else {
		s += "\n" + block + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
