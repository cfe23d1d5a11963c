package layercache

import (
	"context"
	"crypto/tls"
	"sync"

	"github.com/redis/go-redis/v9"
)

// direct is one server: a node, or the master the sentinels name (sentinel.go). It
// holds one go-redis client per server it has used, the current one only: when the
// master moves, or the server answers that it cannot serve, the client is replaced and
// the old one closed with every connection it had, so no call reaches a deposed master
// once a sentinel has announced the new one, and a refused connection never returns to
// a pool. Each replacement is a new epoch, which the tier uses to store only replies of
// the server it tracks.
type direct struct {
	o         Options
	tlsConfig *tls.Config
	breaker   *breaker
	sentinels *sentinels // nil for a node
	// onChange hears of every new server, before any call can reach it (the tier
	// empties).
	onChange func()

	mu      sync.Mutex
	cur     *server       // nil until the sentinels named a master
	changed chan struct{} // closed when cur changes
	epochs  uint64
	closed  bool
}

// server is one client to one server.
type server struct {
	addr   string
	epoch  uint64
	client *redis.Client
}

func newDirect(o Options) (*direct, error) {
	serverTLS, sentinelTLS, err := o.tlsConfigs()
	if err != nil {
		return nil, err
	}
	d := &direct{o: o, tlsConfig: serverTLS, breaker: newBreaker("", o), changed: make(chan struct{})}
	if o.MasterName == "" {
		d.use(o.Addrs[0], false)
		return d, nil
	}
	d.sentinels = newSentinels(o, sentinelTLS, d)
	return d, nil
}

func (d *direct) route(context.Context, string) route {
	return route{breaker: d.breaker, run: d.run, failed: d.failed, replaced: d.replaced}
}

func (d *direct) owner(context.Context, string) string { return "" }

// replaced reports whether the server of epoch was replaced by another (see route).
func (d *direct) replaced(epoch uint64) bool {
	s, _ := d.current()
	return epoch != 0 && s != nil && s.epoch != epoch
}

func (d *direct) run(ctx context.Context, args ...interface{}) (interface{}, uint64, error) {
	s, err := d.server(ctx)
	if err != nil {
		return nil, 0, err
	}
	reply, err := s.client.Do(ctx, args...).Result()
	return reply, s.epoch, err
}

// server is the current server; through Sentinel, the first call asks the sentinels.
func (d *direct) server(ctx context.Context) (*server, error) {
	if s, _ := d.current(); s != nil {
		return s, nil
	}
	return d.sentinels.first(ctx)
}

// current is the current server (nil: none yet) and a channel closed when it changes.
func (d *direct) current() (*server, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur, d.changed
}

// use makes addr the current server, with a new client, unless it already is and
// renew is false; the old client is closed.
func (d *direct) use(addr string, renew bool) *server {
	d.mu.Lock()
	old := d.cur
	if d.closed || old != nil && old.addr == addr && !renew {
		d.mu.Unlock()
		return old
	}
	d.epochs++
	if d.onChange != nil {
		d.onChange()
	}
	d.cur = &server{addr: addr, epoch: d.epochs, client: redis.NewClient(d.o.serverOptions(addr, d.tlsConfig))}
	close(d.changed)
	d.changed = make(chan struct{})
	s := d.cur
	d.mu.Unlock()
	if old != nil {
		old.client.Close()
		if old.addr != addr {
			d.breaker.reset()
			d.o.Logf("layercache: the master moved from %s to %s; connections to %s closed", old.addr, addr, old.addr)
		}
	}
	return s
}

// failed hears of a connection failure of the server of epoch: a server that cannot
// serve gets a new client (its connections closed); through Sentinel, the sentinels
// are asked again.
func (d *direct) failed(epoch uint64, unavailable bool) {
	if unavailable {
		if s, _ := d.current(); s != nil && s.epoch == epoch {
			d.use(s.addr, true)
		}
	}
	if d.sentinels != nil {
		d.sentinels.refreshSoon()
	}
}

func (d *direct) skipped() {}

func (d *direct) breakers() []*breaker { return []*breaker{d.breaker} }

func (d *direct) close() error {
	if d.sentinels != nil {
		d.sentinels.close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.cur != nil {
		return d.cur.client.Close()
	}
	return nil
}
