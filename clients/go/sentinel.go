package layercache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// sentinels find the master of a Sentinel set for a direct topology, and follow it:
//
//   - Asking is bounded: every sentinel is asked at once (SENTINEL MASTER), and the
//     answer is the one with the highest config-epoch among the first majority to
//     answer, or among those that answered within DialTimeout. Hung sentinels cost one
//     DialTimeout, whatever their number.
//   - Every sentinel's `+switch-master` is subscribed to: the master moves the moment
//     any sentinel announces a new one, and the old master's connections are closed
//     then, not when it is finally demoted.
//   - The sentinels are asked again every refreshEvery, and soon after a connection
//     failure; an answer moves the master only if its config-epoch is newer than the
//     current master's, so a sentinel that has not yet heard of a failover cannot move
//     the provider back to a deposed master, or if the master a +switch-master named
//     went unconfirmed by every answer for unconfirmedAfter.
type sentinels struct {
	o       Options
	d       *direct
	clients []*redis.SentinelClient
	subs    []*redis.PubSub

	mu sync.Mutex
	// epoch is the config-epoch of the last master an answer named; announced is when
	// a +switch-master moved the provider to a master no answer has named yet (zero:
	// none). An answer naming another master moves the provider if its epoch is newer,
	// or once the announcement went unconfirmed for unconfirmedAfter (a sentinel that
	// announced what the majority never agreed to).
	epoch      int64
	announced  time.Time
	refreshing atomic.Bool
	stop       chan struct{}
	done       sync.WaitGroup
}

const (
	refreshEvery     = 5 * time.Second
	unconfirmedAfter = 3 * refreshEvery
)

func newSentinels(o Options, tlsConfig *tls.Config, d *direct) *sentinels {
	s := &sentinels{o: o, d: d, stop: make(chan struct{})}
	for _, addr := range o.Addrs {
		s.clients = append(s.clients, redis.NewSentinelClient(&redis.Options{
			Addr:                  addr,
			Protocol:              2,
			Username:              o.SentinelUsername,
			Password:              o.SentinelPassword,
			MaxRetries:            -1,
			DialTimeout:           o.DialTimeout,
			ReadTimeout:           o.DialTimeout,
			WriteTimeout:          o.DialTimeout,
			ContextTimeoutEnabled: true,
			PoolSize:              2,
			TLSConfig:             tlsConfig,
			DisableIdentity:       true,
		}))
	}
	for _, c := range s.clients {
		s.subs = append(s.subs, c.Subscribe(context.Background(), "+switch-master"))
	}
	s.done.Add(len(s.subs) + 1)
	for i, sub := range s.subs {
		go s.listen(s.o.Addrs[i], sub)
	}
	go s.refreshLoop()
	return s
}

// answer is one sentinel's word on the master.
type answer struct {
	addr  string
	epoch int64
	err   error
}

// ask asks every sentinel at once, within DialTimeout; see sentinels.
func (s *sentinels) ask(ctx context.Context) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.DialTimeout)
	defer cancel()
	answers := make(chan answer, len(s.clients))
	for i, c := range s.clients {
		go func() {
			m, err := c.Master(ctx, s.o.MasterName).Result()
			if err != nil {
				answers <- answer{err: fmt.Errorf("sentinel %s: %w", s.o.Addrs[i], err)}
				return
			}
			epoch, _ := strconv.ParseInt(m["config-epoch"], 10, 64)
			if m["ip"] == "" || m["port"] == "" {
				answers <- answer{err: fmt.Errorf("sentinel %s: no master %s", s.o.Addrs[i], s.o.MasterName)}
				return
			}
			answers <- answer{addr: net.JoinHostPort(m["ip"], m["port"]), epoch: epoch}
		}()
	}
	var best answer
	var errs []error
	got := 0
	for range s.clients {
		select {
		case a := <-answers:
			if a.err != nil {
				errs = append(errs, a.err)
				continue
			}
			if got++; best.addr == "" || a.epoch > best.epoch {
				best = a
			}
			if got > len(s.clients)/2 {
				return best, nil
			}
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
		}
		if ctx.Err() != nil {
			break
		}
	}
	if best.addr != "" {
		return best, nil
	}
	return best, fmt.Errorf("layercache: no sentinel named the master of %s: %w", s.o.MasterName, errors.Join(errs...))
}

// first asks for the master when none is known yet.
func (s *sentinels) first(ctx context.Context) (*server, error) {
	a, err := s.ask(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, _ := s.d.current(); cur != nil {
		return cur, nil // another call got there first
	}
	s.epoch = a.epoch
	if srv := s.d.use(a.addr, false); srv != nil {
		return srv, nil
	}
	return nil, redis.ErrClosed // Close came between the answer and the switch
}

// refresh asks again and moves to a newer master; see sentinels.
func (s *sentinels) refresh() {
	a, err := s.ask(context.Background())
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, _ := s.d.current()
	unconfirmed := !s.announced.IsZero() && time.Since(s.announced) > unconfirmedAfter
	switch {
	case cur == nil, a.addr != cur.addr && (a.epoch > s.epoch || unconfirmed):
		s.d.use(a.addr, false)
	case a.addr != cur.addr:
		return // a sentinel that has not heard of the failover yet
	}
	s.epoch, s.announced = a.epoch, time.Time{}
}

// refreshSoon refreshes in the background, one refresh at a time.
func (s *sentinels) refreshSoon() {
	if s.refreshing.CompareAndSwap(false, true) {
		go func() {
			defer s.refreshing.Store(false)
			s.refresh()
		}()
	}
}

func (s *sentinels) refreshLoop() {
	defer s.done.Done()
	tick := time.NewTicker(refreshEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.refreshSoon()
		}
	}
}

// listen follows one sentinel's +switch-master announcements: "<name> <old-ip>
// <old-port> <new-ip> <new-port>". go-redis re-subscribes after a lost connection (and
// pings it every second); what is announced meanwhile the refresh catches.
func (s *sentinels) listen(addr string, sub *redis.PubSub) {
	defer s.done.Done()
	for m := range sub.Channel(redis.WithChannelHealthCheckInterval(time.Second)) {
		f := strings.Fields(m.Payload)
		if len(f) != 5 || f[0] != s.o.MasterName {
			continue
		}
		s.mu.Lock()
		s.announced = time.Now()
		s.d.use(net.JoinHostPort(f[3], f[4]), false)
		s.mu.Unlock()
		s.refreshSoon() // learns the new master's config-epoch
	}
}

func (s *sentinels) close() {
	close(s.stop)
	for _, sub := range s.subs {
		sub.Close()
	}
	s.done.Wait()
	for _, c := range s.clients {
		c.Close()
	}
}
