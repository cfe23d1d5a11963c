package layercache

import (
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/layercache/go-layercache/internal/redistest"
)

// go-redis's own log lines (a killed tracking connection: "redis: discarding bad PubSub
// connection: EOF") reach the registry only through Logf, never its stderr directly.
func TestLibraryLogsThroughLogf(t *testing.T) {
	s := redistest.Start(t)
	stderr := captureStderr(t)
	var log redistest.Logs
	p := tiered(t, Options{Addrs: []string{s.Addr}, Logf: log.Logf})
	c := s.Dial(t)
	for i := 0; i < 3; i++ {
		redistest.WaitFor(t, 10*time.Second, "the tier serving", func() bool { return p.Stats().TierServing })
		if _, err := c.Do("CLIENT", "KILL", "ID", trackingClient(t, c)); err != nil {
			t.Fatal(err)
		}
		redistest.WaitFor(t, 10*time.Second, "the tier to stop", func() bool { return !p.Stats().TierServing })
	}
	redistest.WaitFor(t, 10*time.Second, "the tier serving", func() bool { return p.Stats().TierServing })
	if out := stderr(); strings.Contains(out, "redis: ") {
		t.Fatalf("written to stderr past Logf:\n%s", out)
	}
	if n := log.Count("local tier off"); n != 3 {
		t.Fatalf("Logf reported %d lost tracking connections; want 3", n)
	}
}

// captureStderr points file descriptor 2 at a file until the returned function, which
// gives what was written there.
func captureStderr(t *testing.T) func() string {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup2(int(f.Fd()), 2); err != nil {
		t.Fatal(err)
	}
	restore := sync.OnceFunc(func() { syscall.Dup2(saved, 2); syscall.Close(saved) }) //nolint:errcheck
	t.Cleanup(restore)
	return func() string {
		restore()
		data, _ := os.ReadFile(f.Name())
		return string(data)
	}
}
