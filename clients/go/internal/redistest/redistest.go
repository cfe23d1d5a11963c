// Package redistest starts what the provider's tests run against: redis-servers with
// the layercache module, sentinels, TLS certificates, on free loopback ports, each
// ended by its pid at the end of its test.
package redistest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/layercache/go-layercache/internal/benchkit"
	"github.com/opencontainers/go-digest"
)

// Server is a redis-server (or sentinel) the test started.
type Server struct {
	cmd  *exec.Cmd
	Addr string
	Port int
	Dir  string
}

// Module is the layercache module the tests load: $LAYERCACHE_MODULE, else the
// checkout's release build (make release).
func Module(t testing.TB) string {
	module := os.Getenv("LAYERCACHE_MODULE")
	if module == "" {
		_, file, _, _ := runtime.Caller(0)
		module = filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "target", "release", "liblayercache.so")
	}
	if _, err := os.Stat(module); err != nil {
		t.Fatalf("the layercache module: %v (make release builds it; LAYERCACHE_MODULE names another)", err)
	}
	return module
}

// Start starts $REDIS_SERVER on a free loopback port with the layercache module and
// moduleArgs (module arguments, then `--option value` server options), and waits until
// its log says it is ready.
func Start(t testing.TB, moduleArgs ...string) *Server {
	t.Helper()
	return StartOn(t, FreePort(t), moduleArgs...)
}

// StartOn is Start on port: a server back where a killed one was.
func StartOn(t testing.TB, port int, moduleArgs ...string) *Server {
	t.Helper()
	return StartProcess(t, port, "Ready to accept connections", append([]string{"--loadmodule", Module(t)}, moduleArgs...))
}

// StartProcess runs the server binary with --port port and argv, until ready appears in
// its log; argv may start with a configuration file (a sentinel's).
func StartProcess(t testing.TB, port int, ready string, argv []string) *Server {
	t.Helper()
	binary := os.Getenv("REDIS_SERVER")
	if binary == "" {
		binary = "redis-server"
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "redis.log")
	argv = append(argv, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir, "--logfile", log)
	cmd := exec.Command(binary, argv...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Server{cmd: cmd, Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, Dir: dir}
	t.Cleanup(s.Kill)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if text, _ := os.ReadFile(log); strings.Contains(string(text), ready) {
			return s
		}
	}
	text, _ := os.ReadFile(log)
	t.Fatalf("%s %v did not start:\n%s", binary, argv, text)
	return nil
}

// Kill ends the server (SIGKILL, by its pid), at once.
func (s *Server) Kill() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck // a stopped server must be able to die
		s.cmd.Process.Kill()                  //nolint:errcheck
		s.cmd.Wait()                          //nolint:errcheck
	}
}

// Stop and Continue freeze and thaw the server (SIGSTOP, SIGCONT): a hung server.
func (s *Server) Stop()     { s.cmd.Process.Signal(syscall.SIGSTOP) } //nolint:errcheck
func (s *Server) Continue() { s.cmd.Process.Signal(syscall.SIGCONT) } //nolint:errcheck

// Log is the server's log so far.
func (s *Server) Log() string {
	text, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	return string(text)
}

// Dial is a plain connection to the server, closed at the end of the test.
func (s *Server) Dial(t testing.TB) redis.Conn {
	t.Helper()
	c, err := redis.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Do runs one command on a new connection.
func (s *Server) Do(t testing.TB, args ...interface{}) interface{} {
	t.Helper()
	reply, err := s.Dial(t).Do(args[0].(string), args[1:]...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return reply
}

// InfoField is an integer field of an INFO reply (-1: not there).
func InfoField(info, name string) int64 {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// Info is the integer field name of the server's INFO section, asked now.
func (s *Server) Info(t testing.TB, section, name string) int64 {
	t.Helper()
	info, err := redis.String(s.Dial(t).Do("INFO", section))
	if err != nil {
		t.Fatal(err)
	}
	return InfoField(info, name)
}

// FreePort is a loopback port free now.
func FreePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Sentinels starts n sentinels watching primary as master "layercache" (quorum 2, down
// after 1 s), with extra configuration lines (TLS, passwords).
func Sentinels(t testing.TB, primary *Server, n int, extra string) []*Server {
	t.Helper()
	var all []*Server
	for i := 0; i < n; i++ {
		conf := filepath.Join(t.TempDir(), "sentinel.conf")
		text := fmt.Sprintf("sentinel monitor layercache 127.0.0.1 %d 2\nsentinel down-after-milliseconds layercache 1000\n"+
			"sentinel failover-timeout layercache 10000\n%s", primary.Port, extra)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		all = append(all, StartProcess(t, FreePort(t), "+monitor master", []string{conf, "--sentinel"}))
	}
	return all
}

// Addrs are the servers' addresses.
func Addrs(servers []*Server) []string {
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.Addr)
	}
	return addrs
}

// ReplicaSynced waits until the sentinel at addr knows a replica of "layercache" whose
// link to the master is up.
func ReplicaSynced(t testing.TB, sentinel string) {
	t.Helper()
	WaitFor(t, 30*time.Second, "the replica in sync, known to the sentinels", func() bool {
		c, err := redis.Dial("tcp", sentinel)
		if err != nil {
			return false
		}
		defer c.Close()
		replicas, err := redis.Values(c.Do("SENTINEL", "REPLICAS", "layercache"))
		if err != nil || len(replicas) == 0 {
			return false
		}
		fields, _ := redis.StringMap(replicas[0], nil)
		return fields["master-link-status"] == "ok"
	})
}

// MasterPort is the port the sentinel at addr names as master (0: none).
func MasterPort(sentinel string) int {
	c, err := redis.Dial("tcp", sentinel)
	if err != nil {
		return 0
	}
	defer c.Close()
	a, err := redis.Strings(c.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "layercache"))
	if err != nil || len(a) != 2 {
		return 0
	}
	var port int
	fmt.Sscan(a[1], &port)
	return port
}

// WaitFor polls ok until it holds, at first every 20 µs, backing off to every 50 ms;
// it fails the test after limit.
func WaitFor(t testing.TB, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	pause := 20 * time.Microsecond
	for deadline := time.Now().Add(limit); !ok(); time.Sleep(pause) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		if pause < 50*time.Millisecond {
			pause *= 2
		}
	}
}

// Logs collects what a provider logs.
type Logs struct {
	mu    sync.Mutex
	Lines []string
}

func (l *Logs) Logf(format string, args ...interface{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Lines = append(l.Lines, fmt.Sprintf(format, args...))
}

// Count is how many lines hold substr.
func (l *Logs) Count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.Lines {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// Certificates makes a CA and a server and a client certificate it signs (for
// 127.0.0.1 and localhost) with openssl, in a directory of the test's.
func Certificates(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	key := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"}
	run(append([]string{"req", "-x509", "-new", "-days", "2", "-subj", "/CN=layercache test CA", "-keyout", "ca.key", "-out", "ca.crt"}, key...)...)
	if err := os.WriteFile(filepath.Join(dir, "san.ext"), []byte("subjectAltName=IP:127.0.0.1,DNS:localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"server", "client"} {
		run(append([]string{"req", "-new", "-subj", "/CN=" + name, "-keyout", name + ".key", "-out", name + ".csr"}, key...)...)
		run("x509", "-req", "-days", "2", "-in", name+".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
			"-extfile", "san.ext", "-out", name+".crt")
	}
	return dir
}

// StartTLS starts a TLS-only server with the module (port 0, client certificates
// required): Port and Addr are its tls-port.
func StartTLS(t testing.TB, certs string, moduleArgs ...string) *Server {
	t.Helper()
	port := FreePort(t)
	argv := append([]string{"--loadmodule", Module(t)}, moduleArgs...)
	argv = append(argv, "--tls-cert-file", filepath.Join(certs, "server.crt"), "--tls-key-file", filepath.Join(certs, "server.key"),
		"--tls-ca-cert-file", filepath.Join(certs, "ca.crt"), "--tls-auth-clients", "yes", "--tls-port", fmt.Sprint(port))
	s := StartProcess(t, 0, "Ready to accept connections", argv)
	s.Port, s.Addr = port, fmt.Sprintf("127.0.0.1:%d", port)
	return s
}

// StartCluster starts masters*(1+replicas) cluster-enabled servers with moduleArgs
// (nil: no module) and joins them with redis-cli --cluster create; they are returned
// masters first, once every node reports cluster_state:ok.
func StartCluster(t testing.TB, masters, replicas int, moduleArgs []string) []*Server {
	t.Helper()
	var nodes []*Server
	for i := 0; i < masters*(1+replicas); i++ {
		nodes = append(nodes, StartClusterNode(t, moduleArgs))
	}
	create := append([]string{"--cluster", "create"}, Addrs(nodes)...)
	create = append(create, "--cluster-replicas", fmt.Sprint(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range nodes {
		WaitFor(t, 60*time.Second, n.Addr+" cluster_state:ok", func() bool {
			c, err := redis.Dial("tcp", n.Addr)
			if err != nil {
				return false
			}
			defer c.Close()
			info, err := redis.String(c.Do("CLUSTER", "INFO"))
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
	}
	// A replica that never synced may not be promoted (cluster-replica-validity-factor).
	for _, n := range nodes {
		WaitFor(t, 60*time.Second, n.Addr+" a master, or a replica in sync", func() bool {
			c, err := redis.Dial("tcp", n.Addr)
			if err != nil {
				return false
			}
			defer c.Close()
			info, err := redis.String(c.Do("INFO", "replication"))
			return err == nil && (strings.Contains(info, "role:master") || strings.Contains(info, "master_link_status:up"))
		})
	}
	return nodes
}

// NodeTimeout is the cluster-node-timeout of the nodes StartClusterNode starts: no
// replica is promoted sooner after its master fails.
const NodeTimeout = 2 * time.Second

// StartClusterNode starts one cluster-enabled server with moduleArgs (nil: no module),
// in no cluster yet.
func StartClusterNode(t testing.TB, moduleArgs []string) *Server {
	t.Helper()
	// The bus on a free port of its own: the default, port + 10000, may be taken or past
	// 65535.
	argv := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", fmt.Sprint(NodeTimeout.Milliseconds()),
		"--cluster-port", fmt.Sprint(FreePort(t)), "--repl-diskless-sync-delay", "0"}
	if moduleArgs != nil {
		argv = append(argv, append([]string{"--loadmodule", Module(t)}, moduleArgs...)...)
	}
	return StartProcess(t, FreePort(t), "Ready to accept connections", argv)
}

// Join makes the node s, started alone, a master without slots in the cluster of
// member, once every node of nodes knows it.
func (s *Server) Join(t testing.TB, member *Server, nodes []*Server) {
	t.Helper()
	port, err := redis.Strings(s.Dial(t).Do("CONFIG", "GET", "cluster-port"))
	if err != nil || len(port) != 2 {
		t.Fatalf("the cluster port of %s: %v %v", s.Addr, port, err)
	}
	if _, err := member.Dial(t).Do("CLUSTER", "MEET", "127.0.0.1", s.Port, port[1]); err != nil {
		t.Fatal(err)
	}
	id := s.ID(t)
	for _, n := range nodes {
		WaitFor(t, 30*time.Second, n.Addr+" to know "+s.Addr, func() bool {
			known, _ := redis.String(n.Dial(t).Do("CLUSTER", "NODES"))
			return strings.Contains(known, id)
		})
	}
	WaitFor(t, 30*time.Second, s.Addr+" cluster_state:ok", func() bool {
		info, _ := redis.String(s.Dial(t).Do("CLUSTER", "INFO"))
		return strings.Contains(info, "cluster_state:ok")
	})
}

// ID is the node's cluster id.
func (s *Server) ID(t testing.TB) string {
	t.Helper()
	id, err := redis.String(s.Dial(t).Do("CLUSTER", "MYID"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// MoveSlot moves slot from the master from to the master to as redis-cli --cluster
// reshard does: importing and migrating marks, its keys MIGRATEd in batches, then the
// new owner told to masters (to and from first); pause is slept between the steps.
func MoveSlot(t testing.TB, slot int, from, to *Server, masters []*Server, pause time.Duration) {
	t.Helper()
	src, dst := from.Dial(t), to.Dial(t)
	defer src.Close()
	defer dst.Close()
	do := func(c redis.Conn, args ...interface{}) interface{} {
		reply, err := c.Do(args[0].(string), args[1:]...)
		if err != nil {
			t.Fatalf("moving slot %d: %v: %v", slot, args, err)
		}
		return reply
	}
	do(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", from.ID(t))
	do(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", to.ID(t))
	time.Sleep(pause)
	for {
		keys, err := redis.Strings(do(src, "CLUSTER", "GETKEYSINSLOT", slot, 100), nil)
		if err != nil || len(keys) == 0 {
			break
		}
		args := []interface{}{"MIGRATE", "127.0.0.1", to.Port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		do(src, args...)
		time.Sleep(pause)
	}
	owner := to.ID(t)
	do(dst, "CLUSTER", "SETSLOT", slot, "NODE", owner)
	do(src, "CLUSTER", "SETSLOT", slot, "NODE", owner)
	for _, m := range masters {
		if m != from && m != to {
			m.Dial(t).Do("CLUSTER", "SETSLOT", slot, "NODE", owner) //nolint:errcheck // gossip tells the others too
		}
	}
}

// Slot is the cluster slot of key, as the node s says (CLUSTER KEYSLOT).
func (s *Server) Slot(t testing.TB, key string) int {
	t.Helper()
	n, err := redis.Int(s.Dial(t).Do("CLUSTER", "KEYSLOT", key))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Configuration is a case of an adapter's FromConfiguration: a registry configuration
// in YAML (its version, and an inmemory storage when it has none, are added), and the
// options it gives or the error it is refused with.
type Configuration[O any] struct {
	YAML string
	Want O
	Err  string
}

// CheckConfigurations parses each case with the line's parse (configuration.Parse)
// and checks what from (the adapter's FromConfiguration) makes of it.
func CheckConfigurations[C, O any](t *testing.T, cases []Configuration[O], parse func(io.Reader) (C, error), from func(C) (O, error)) {
	t.Helper()
	for n, c := range cases {
		text := "version: 0.1\n" + c.YAML
		if !strings.Contains(text, "storage:") {
			text += "\nstorage: {inmemory: {}}"
		}
		config, err := parse(strings.NewReader(text))
		if err != nil {
			t.Fatalf("case %d: %v", n, err)
		}
		got, err := from(config)
		if c.Err != "" {
			if err == nil || !strings.Contains(err.Error(), c.Err) {
				t.Errorf("case %d: error %v, want %q", n, err, c.Err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.Want) {
			t.Errorf("case %d:\n got %+v, %v\nwant %+v", n, got, err, c.Want)
		}
	}
}

// ClearedStaysCleared runs the CVE-2026-35172 sequence on a line's provider, given as
// its RepositoryScoped: team/a and team/b cache blob, team/a clears it (a second Clear
// is unknown, the line's ErrBlobUnknown), team/b caches it again, and team/a still
// does not see it while team/b does; the two repositories' services.
func ClearedStaysCleared[D any, S benchkit.Service[D]](t *testing.T, scoped func(string) (S, error), blob digest.Digest, desc D, unknown error) (a, b S) {
	t.Helper()
	ctx := context.Background()
	a, _ = scoped("team/a")
	b, _ = scoped("team/b")
	for _, r := range []S{a, b} {
		if err := r.SetDescriptor(ctx, blob, desc); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Stat(ctx, blob); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Clear(ctx, blob); err != nil {
		t.Fatal(err)
	}
	if err := a.Clear(ctx, blob); err != unknown {
		t.Fatalf("second Clear: %v", err)
	}
	if err := b.SetDescriptor(ctx, blob, desc); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Stat(ctx, blob); err != unknown {
		t.Fatalf("team/a sees the blob team/b cached again: %v", err)
	}
	if got, err := b.Stat(ctx, blob); err != nil || !reflect.DeepEqual(got, desc) {
		t.Fatalf("team/b: %v, %v", got, err)
	}
	return a, b
}
