// Package layercache is the version-free core of the layercache provider for CNCF
// distribution: the LAYERCACHE.* commands of the layercache Redis module, one round trip
// and one atomic step each, over one node, Sentinel or Redis Cluster, failing open
// through a breaker, with an optional local tier kept exact by Redis's tracking. The
// adapters (dist2 for distribution 2.8 and Harbor, dist3 for v3) turn it into each line's
// BlobDescriptorCacheProvider.
package layercache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"
)

// Descriptor is what the cache holds of a blob: its digest, size and mediatype.
type Descriptor struct {
	Digest    digest.Digest
	Size      int64
	MediaType string
}

// Client runs the module's commands for a registry. It is safe for concurrent use.
type Client struct {
	o       Options
	topo    topology
	replies *replyLog
	// paid holds the registry requests whose call already failed on a connection, per
	// server (paidKey): a request pays at most one timeout per server, so the
	// write-back distribution sends after a failed Stat, in the same request, is
	// skipped, while on a cluster its calls to healthy masters still run.
	paid sync.Map
	// requests holds each running registry request's Stat answers (request.go).
	requests sync.Map
	// tier and tracker are the local tier, nil when it is off.
	tier    *tier
	tracker interface {
		run()
		close()
	}
	// closed makes Close once, whoever calls it (dist3.New hands the Client out beside
	// the provider, so it may have two owners); closeErr is its error.
	closed   sync.Once
	closeErr error
}

// paidKey is a request (requestOf) and the breaker of the server it paid a timeout to.
type paidKey struct {
	request any
	server  *breaker
}

// topology is where a call about a key goes: one server (a node, or the master the
// sentinels name) or the cluster node of the key's slot.
type topology interface {
	route(ctx context.Context, key string) route
	// owner is the address of the server of key, as the tier names its sessions: ""
	// for the one server; on a cluster the master of key's slot ("" when unknown).
	owner(ctx context.Context, key string) string
	// skipped hears of a call its breaker skipped (a cluster refreshes its slot map).
	skipped()
	breakers() []*breaker
	close() error
}

// route is the server a call goes to: its breaker, and how to run a command there.
type route struct {
	breaker *breaker
	// run runs a command; epoch says which server answered (0: none; a cluster's
	// answers are all clusterEpoch).
	run func(ctx context.Context, args ...interface{}) (reply interface{}, epoch uint64, err error)
	// failed hears of a connection failure of the server of epoch, or of a reply of a
	// server that cannot serve (unavailable).
	failed func(epoch uint64, unavailable bool)
	// replaced reports whether the server of epoch is no longer the current one (a
	// failover moved the master and closed its connections); nil: never.
	replaced func(epoch uint64) bool
}

// New returns a Client for the Redis o describes, which must have the layercache module
// loaded. A node is not dialled, nor are sentinels asked: an unreachable Redis is
// reported by the first calls (and the breaker's log), and the registry serves from
// storage meanwhile. A cluster is asked for its slots and each master for its scheme,
// which must be blob; a cluster that does not answer is logged, not an error.
func New(o Options) (*Client, error) {
	o = o.withDefaults()
	if len(o.Addrs) == 0 {
		return nil, errors.New("layercache: no Redis address")
	}
	routeLibraryLogs(o.Logf)
	c := &Client{o: o, replies: newReplyLog(o.Logf)}
	if o.LocalEntries > 0 {
		c.tier = newTier(o.LocalEntries, o.LocalBytes, o.LocalLease)
	}
	if o.cluster() {
		cluster, err := newCluster(o)
		if err != nil {
			return nil, err
		}
		c.topo = cluster
		if c.tier != nil {
			c.tracker = newClusterTracker(c.tier, cluster, o)
		}
	} else {
		d, err := newDirect(o)
		if err != nil {
			return nil, err
		}
		c.topo = d
		if c.tier != nil {
			c.tracker = newTracker(c.tier, d, o)
		}
	}
	if c.tracker != nil {
		go c.tracker.run()
	}
	return c, nil
}

// Close ends tracking and closes every connection; a second Close does nothing and
// returns the first one's error.
func (c *Client) Close() error {
	c.closed.Do(func() {
		if c.tracker != nil {
			c.tracker.close()
		}
		c.closeErr = c.topo.close()
	})
	return c.closeErr
}

// Stat returns the global descriptor of dgst (LAYERCACHE.STAT); ErrUnknown when the
// cache holds none.
func (c *Client) Stat(ctx context.Context, dgst digest.Digest) (Descriptor, error) {
	return c.stat(ctx, entryKey{dgst: dgst}, "LAYERCACHE.STAT", dgst)
}

// RepoStat returns the descriptor as repo sees it (LAYERCACHE.REPOSTAT): ErrUnknown
// unless the repository holds the blob.
func (c *Client) RepoStat(ctx context.Context, repo string, dgst digest.Digest) (Descriptor, error) {
	return c.stat(ctx, entryKey{repo: repo, dgst: dgst}, "LAYERCACHE.REPOSTAT", repo, dgst)
}

// SetDescriptor stores the global descriptor of dgst (LAYERCACHE.SETDESCRIPTOR): digest
// and size overwritten, mediatype only if absent. A write Redis skipped is as if the
// cache had evicted it.
func (c *Client) SetDescriptor(ctx context.Context, dgst digest.Digest, d Descriptor) error {
	defer c.forget(ctx, dgst)
	return c.write(ctx, dgst, "LAYERCACHE.SETDESCRIPTOR", dgst, d.Digest, d.Size, d.MediaType)
}

// write runs a write that replies OK; a skipped write is as if the cache had evicted it.
func (c *Client) write(ctx context.Context, dgst digest.Digest, args ...interface{}) error {
	if _, _, err := c.call(ctx, dgst, args...); err != nil && !errors.Is(err, errSkipped) {
		return err
	}
	return nil
}

// RepoSetDescriptor records that repo holds the blob, its descriptor and the
// repository's mediatype, under both digests when they differ by algorithm, in one step
// (LAYERCACHE.REPOSETDESCRIPTOR). On a cluster whose slots split the two digests, the
// same writes go as one-key commands.
func (c *Client) RepoSetDescriptor(ctx context.Context, repo string, dgst digest.Digest, d Descriptor) error {
	defer c.forget(ctx, dgst, d.Digest)
	err := c.write(ctx, dgst, "LAYERCACHE.REPOSETDESCRIPTOR", repo, dgst, d.Digest, d.Size, d.MediaType)
	if code, _ := ReplyCode(err); code != "CROSSSLOT" {
		return err
	}
	// Redis refused the two keys and nothing was written. dgst's membership, repository
	// mediatype and descriptor (whose digest is the alias), then the alias's own.
	if err := c.write(ctx, dgst, "LAYERCACHE.REPOSETDESCRIPTOR", repo, dgst, dgst, d.Size, d.MediaType); err != nil {
		return err
	}
	if err := c.write(ctx, dgst, "LAYERCACHE.SETDESCRIPTOR", dgst, d.Digest, d.Size, d.MediaType); err != nil {
		return err
	}
	return c.write(ctx, d.Digest, "LAYERCACHE.REPOSETDESCRIPTOR", repo, d.Digest, d.Digest, d.Size, d.MediaType)
}

// Clear removes the global descriptor of dgst (LAYERCACHE.CLEAR); ErrUnknown when
// there was none, ErrUnavailable when Redis was skipped.
func (c *Client) Clear(ctx context.Context, dgst digest.Digest) error {
	defer c.forget(ctx, dgst)
	return c.removed(ctx, dgst, "LAYERCACHE.CLEAR", dgst)
}

// RepoClear removes repo's membership, its mediatype and the global descriptor in one
// step (LAYERCACHE.REPOCLEAR), so another repository caching the blob again cannot make
// it visible here (CVE-2026-35172); ErrUnknown unless the repository held it.
func (c *Client) RepoClear(ctx context.Context, repo string, dgst digest.Digest) error {
	defer c.forget(ctx, dgst)
	return c.removed(ctx, dgst, "LAYERCACHE.REPOCLEAR", repo, dgst)
}

// Do runs any command on the server of key's slot, through its breaker, within one
// timeout (tools and tests; a skipped call is ErrUnavailable).
func (c *Client) Do(ctx context.Context, key digest.Digest, args ...interface{}) (interface{}, error) {
	reply, _, err := c.call(ctx, key, args...)
	if errors.Is(err, errSkipped) {
		return nil, ErrUnavailable
	}
	return reply, err
}

// stat is a Stat through the local tier: its stored reply when it may serve one;
// otherwise Redis's, which it then stores unless tier.go's rules say not to.
//
// Within one registry request the first answer stands (request.go): distribution asks
// the same Stat up to three times per blob HEAD, and then the global Stat of the blob,
// which a repository Stat's reply answers too (WITHGLOBAL: read in the same step, it
// is what a STAT would have answered then), for the request and the tier.
func (c *Client) stat(ctx context.Context, k entryKey, args ...interface{}) (Descriptor, error) {
	r := c.request(ctx)
	if d, err, ok := r.get(k); ok {
		return d, err
	}
	if c.tier != nil {
		if d, ok, err := c.tier.get(k); ok {
			r.put(k, d, err)
			return d, err
		}
	}
	global := entryKey{dgst: k.dgst}
	if k.repo != "" {
		args = append(args, "WITHGLOBAL")
	}
	var own, globals *ticket
	if c.tier != nil {
		owner := c.topo.owner(ctx, string(k.dgst))
		own = c.tier.begin(k, owner)
		if k.repo != "" {
			globals = c.tier.begin(global, owner)
		}
		// WITHTTL: a hit says when the first key it was read from expires, counted from
		// before the call was sent, so the tier never serves it past that.
		args = append(args, "WITHTTL")
	}
	sent := time.Now()
	reply, err := c.descriptor(ctx, k.dgst, args...)
	var expires time.Time
	if reply.ttl >= 0 {
		expires = sent.Add(time.Duration(reply.ttl) * time.Millisecond)
	}
	if c.tier != nil {
		c.tier.finish(own, reply.epoch, reply.desc, expires, err)
		c.tier.finishGlobal(globals, reply.epoch, reply.global, expires)
	}
	if reply.epoch != 0 && (err == nil || err == ErrUnknown) { // Redis's answer, not a skip or a failure
		r.put(k, reply.desc, err)
		if reply.global != nil {
			r.put(global, *reply.global, nil)
		}
	}
	return reply.desc, err
}

// forget drops the tier's replies, and the request's, about the digests a write
// touched, once the write is done: the instance reads its own writes at once.
func (c *Client) forget(ctx context.Context, dgsts ...digest.Digest) {
	r := c.request(ctx)
	for _, d := range dgsts {
		if c.tier != nil {
			c.tier.dropDigest(d)
		}
		r.drop(d)
	}
}

// errSkipped: the breaker did not let the call through.
var errSkipped = errors.New("layercache: call skipped")

// call runs one command about dgst (in a cluster, on the node of dgst's slot) through
// that server's breaker, within one timeout: the context's deadline, else ReadTimeout.
// epoch says which server answered (0: none did).
func (c *Client) call(ctx context.Context, dgst digest.Digest, args ...interface{}) (reply interface{}, epoch uint64, err error) {
	for i, a := range args {
		if d, ok := a.(digest.Digest); ok {
			args[i] = string(d)
		}
	}
	r := c.topo.route(ctx, string(dgst))
	if key := requestOf(ctx); key != nil {
		if at, ok := c.paid.Load(paidKey{key, r.breaker}); ok {
			if !unnamed(key) || time.Since(at.(time.Time)) < unnamedSpan {
				return nil, 0, errSkipped
			}
			c.paid.CompareAndDelete(paidKey{key, r.breaker}, at)
		}
	}
	p, ok := r.breaker.allow()
	if !ok {
		c.topo.skipped()
		return nil, 0, errSkipped
	}
	if ctx.Done() == nil { // Background: nothing can cancel the call
		return c.run(ctx, r, p, args)
	}
	// go-redis bounds a call by the context's deadline but does not stop at its
	// cancellation: the call runs aside, and a cancelled request returns at once; the
	// call's outcome still reaches the breaker when it ends, within its timeout.
	type result struct {
		reply interface{}
		epoch uint64
		err   error
	}
	done := make(chan result, 1)
	go func() {
		reply, epoch, err := c.run(ctx, r, p, args)
		done <- result{reply, epoch, err}
	}()
	select {
	case res := <-done:
		return res.reply, res.epoch, res.err
	case <-ctx.Done():
		if ctx.Err() == context.DeadlineExceeded {
			res := <-done // the call ends at that deadline too
			return res.reply, res.epoch, res.err
		}
		return nil, 0, ctx.Err()
	}
}

// run runs one admitted call on r within one timeout (the request's deadline, else
// ReadTimeout), and tells r's breaker how it went. A call that failed on a server
// replaced meanwhile (a failover closed its connections) says nothing of the current
// one: its outcome is not counted, and the call runs once more, on the current server,
// within the same timeout.
func (c *Client) run(request context.Context, r route, p pass, args []interface{}) (interface{}, uint64, error) {
	ctx, cancel := context.WithTimeout(request, c.o.ReadTimeout)
	defer cancel()
	reply, epoch, err := r.run(ctx, args...)
	if errors.Is(err, context.Canceled) { // the request went away before Redis was asked
		r.breaker.abandon(p)
		return nil, 0, err
	}
	failed, unavailable := failure(err)
	if (failed || errors.Is(err, redis.ErrClosed)) && r.replaced != nil && r.replaced(epoch) {
		r.breaker.abandon(p)
		var ok bool
		if p, ok = r.breaker.allow(); !ok {
			return nil, 0, errSkipped
		}
		if reply, epoch, err = r.run(ctx, args...); errors.Is(err, context.Canceled) {
			r.breaker.abandon(p)
			return nil, 0, err
		}
		failed, unavailable = failure(err)
	}
	r.breaker.done(p, failed, err)
	if failed {
		r.failed(epoch, unavailable)
		if key := requestOf(request); key != nil && request.Done() != nil { // a request, which ends
			paid := paidKey{key, r.breaker}
			if _, dup := c.paid.LoadOrStore(paid, time.Now()); !dup {
				context.AfterFunc(request, func() { c.paid.Delete(paid) })
			}
		}
		return nil, 0, err
	}
	if code, _ := ReplyCode(err); code != "" && code != "CROSSSLOT" { // CROSSSLOT: RepoSetDescriptor's to handle
		c.replies.seen(err)
	}
	return reply, epoch, err
}

// statReply is a Stat's reply: the descriptor; with WITHTTL the milliseconds until a
// key it was read from expires (-1: none does, or not asked); with WITHGLOBAL, on a
// hit, the global descriptor; and which server answered (0: none did).
type statReply struct {
	desc   Descriptor
	global *Descriptor
	ttl    int64
	epoch  uint64
}

// descriptor runs a command that replies [digest, size, mediatype] (then WITHTTL's
// integer, then WITHGLOBAL's global mediatype) or nil; a skipped or failed call is a
// miss (ErrUnknown), as is a nil reply.
func (c *Client) descriptor(ctx context.Context, dgst digest.Digest, args ...interface{}) (statReply, error) {
	miss := statReply{ttl: -1}
	reply, epoch, err := c.call(ctx, dgst, args...)
	switch {
	case err == redis.Nil:
		miss.epoch = epoch
		return miss, ErrUnknown
	case errors.Is(err, errSkipped):
		return miss, ErrUnknown
	case err != nil:
		return miss, err
	}
	values, _ := reply.([]interface{})
	if len(values) >= 3 {
		dg, ok1 := values[0].(string)
		size, ok2 := values[1].(int64)
		mediatype, ok3 := values[2].(string)
		got := statReply{desc: Descriptor{Digest: digest.Digest(dg), Size: size, MediaType: mediatype}, ttl: -1, epoch: epoch}
		ok := ok1 && ok2 && ok3
		for _, v := range values[3:] {
			switch v := v.(type) {
			case int64:
				got.ttl = v
			case string:
				got.global = &Descriptor{Digest: got.desc.Digest, Size: size, MediaType: v}
			default:
				ok = false
			}
		}
		if ok {
			return got, nil
		}
	}
	return miss, fmt.Errorf("layercache: unexpected reply %v to %v", reply, args[0])
}

// removed runs a removal that replies 1 or 0; 0 is ErrUnknown, a skipped call
// ErrUnavailable.
func (c *Client) removed(ctx context.Context, dgst digest.Digest, args ...interface{}) error {
	reply, _, err := c.call(ctx, dgst, args...)
	if errors.Is(err, errSkipped) {
		return ErrUnavailable
	}
	if err != nil {
		return err
	}
	if n, ok := reply.(int64); !ok || n == 0 {
		return ErrUnknown
	}
	return nil
}

// Stats are the Client's counters.
type Stats struct {
	// TierServed counts Stats (and metadata reads) answered by the local tier;
	// TierEntries is how many it holds, TierBytes the bytes of the metadata values
	// among them; TierServing whether it may serve now; TierInvalidations counts the
	// key names Redis reported changed.
	TierServed, TierEntries, TierBytes, TierInvalidations int64
	TierServing                                           bool
	// BreakerOpen: calls to some server are being skipped; BreakerOpens counts openings.
	BreakerOpen  bool
	BreakerOpens int64
	// ErrorReplies counts error replies by code (NOPERM, OOM, ...).
	ErrorReplies map[string]int64
}

// Stats returns the Client's counters now.
func (c *Client) Stats() Stats {
	var s Stats
	if c.tier != nil {
		s.TierServed, s.TierEntries, s.TierBytes, s.TierInvalidations, s.TierServing = c.tier.stats()
	}
	for _, b := range c.topo.breakers() {
		open, opens := b.state()
		s.BreakerOpen = s.BreakerOpen || open
		s.BreakerOpens += opens
	}
	c.replies.mu.Lock()
	s.ErrorReplies = make(map[string]int64, len(c.replies.counts))
	for code, n := range c.replies.counts {
		s.ErrorReplies[code] = n
	}
	c.replies.mu.Unlock()
	return s
}
