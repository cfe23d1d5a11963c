package layercache

import (
	"container/list"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
)

// entryKey names a reply: a Stat's (repo "" for the global Stat), or for the
// metadata cache a link of repo (link its path, dgst "") or a blob's bytes (link
// dataEntry).
type entryKey struct {
	repo string
	dgst digest.Digest
	link string
}

// dataEntry is the link of an entryKey that names a blob's bytes.
const dataEntry = "data"

// entry is one reply: a descriptor, or a miss (ErrUnknown); or a metadata value (a
// link's digest, "" for absent; a blob's bytes).
type entry struct {
	key   entryKey
	epoch uint64 // the session it was read in
	desc  Descriptor
	miss  bool
	value string
	// expires is when the first key the reply was read from expires (zero: none).
	expires time.Time
}

// ticket is a read in flight whose reply may be stored; an invalidation of its key
// (or a reset) before the reply arrives voids it.
type ticket struct {
	key   entryKey
	epoch uint64
	valid bool
}

// tier is the in-process tier, and why an entry it serves is still fresh: it holds up
// to max Stat replies (hits and misses) and metadata values (at most maxBytes of
// them), least recently used evicted first, each read in one tracking session (one per
// server tracked: the one server, or each master of a cluster), and
//
//   - serves an entry only within its session's lease: the session's tracking
//     connection (tracking.go) renews it each time a PING it sent comes back, to the
//     PING's sending time plus the lease. Redis writes an invalidation to that
//     connection before it replies to the write, so every change acknowledged before
//     the PING was sent has been heard when the PONG is; a silent connection (a black
//     hole) stops the session's entries within the lease;
//   - on a cluster, serves an entry only while its master's slots are confirmed
//     unchanged, by a check sent within the lease (cluster_tier.go): a slot that moves
//     or starts migrating, a master demoted or out of a healthy cluster, drops the
//     session's entries, so a write another node takes is never missed for longer;
//   - stores a reply only if no invalidation of its keys (nor a reset of its session)
//     came between the read's start and its reply, and only if the reply came, with no
//     redirection, from the server the session tracks;
//   - never serves a reply past the expiry of a key it was read from (the module's
//     WITHTTL): Redis reports an expired key only once it deletes it, which may be
//     long after (or, with active expiry off, never);
//   - empties a session's entries whenever its tracking starts or stops, Redis flushes,
//     swaps a database (the module's `__layercache__:events`), or the master changes.
//
// An entry depends on the keys its command reads: a global Stat on the blob's
// descriptor key, a repository Stat on that too and on the repository's set and its
// repository hash (scheme distribution), or on the digest key alone (scheme blob); a
// link on its repository's links key, a blob's bytes on the blob's key. An
// invalidation from any session drops what depends on the key. A link is stored only
// while the session tracks its key: scheme distribution tracks `repository::`; scheme
// blob, whose links key is the bare repository name, tracks every key (the tracker
// asks the scheme; links says it knows).
type tier struct {
	max           int
	maxBytes      int
	lease         time.Duration
	served        atomic.Int64 // Stats answered from the tier
	stored        atomic.Int64 // Stat replies stored
	invalidations atomic.Int64 // key names Redis reported changed
	sessions      atomic.Int64 // tracking sessions started

	mu        sync.Mutex
	tracked   map[uint64]*session // by epoch
	byAddr    map[string]uint64   // the session of each server tracked ("": the one server)
	bytes     int                 // of the values held
	lru       *list.List          // of *entry, most recently used first
	entries   map[entryKey]*list.Element
	byDigest  map[digest.Digest]map[entryKey]bool
	byRepo    map[string]map[entryKey]bool
	bySession map[uint64]map[entryKey]bool
	inflight  map[*ticket]bool
	// seen, when set (tests), hears every key name an invalidation carried, after the
	// entries depending on it were dropped.
	seen func(key string)
}

// session is the tracking of one server.
type session struct {
	addr       string
	links      bool      // it tracks the links keys
	leaseUntil time.Time // serving until
	// On a cluster: the master's slot configuration as last confirmed, and until when
	// that confirmation lets the session serve; checked says it must be confirmed.
	checked    bool
	slots      string
	slotsUntil time.Time
}

func newTier(max, maxBytes int, lease time.Duration) *tier {
	l := &tier{max: max, maxBytes: maxBytes, lease: lease, tracked: map[uint64]*session{}, byAddr: map[string]uint64{}}
	l.clear()
	return l
}

// clear drops every entry and voids every read in flight; mu held or not yet shared.
func (l *tier) clear() {
	l.lru = list.New()
	l.bytes = 0
	l.entries = map[entryKey]*list.Element{}
	l.byDigest = map[digest.Digest]map[entryKey]bool{}
	l.byRepo = map[string]map[entryKey]bool{}
	l.bySession = map[uint64]map[entryKey]bool{}
	for t := range l.inflight {
		t.valid = false
	}
	l.inflight = map[*ticket]bool{}
}

// reset empties the tier and says which server it tracks now, the tier's only session
// (0: none; it stores nothing and does not serve until tracking is back and renews the
// lease), and whether that session tracks the links keys.
func (l *tier) reset(epoch uint64, links bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clear()
	old := l.tracked[epoch]
	l.tracked, l.byAddr = map[uint64]*session{}, map[string]uint64{}
	if epoch != 0 {
		l.startLocked(epoch, "", links, false)
		if old != nil {
			l.tracked[epoch].leaseUntil = old.leaseUntil // the same server: its lease holds
		}
	}
}

// start opens a session tracking addr (a cluster's master: checked, its slots must be
// confirmed before it serves); it serves once its lease is renewed.
func (l *tier) start(epoch uint64, addr string, links, checked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.startLocked(epoch, addr, links, checked)
}

func (l *tier) startLocked(epoch uint64, addr string, links, checked bool) {
	l.endLocked(l.byAddr[addr])
	l.tracked[epoch] = &session{addr: addr, links: links, checked: checked}
	l.byAddr[addr] = epoch
}

// end closes the session of epoch: its entries go, its reads in flight are void.
func (l *tier) end(epoch uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.endLocked(epoch)
}

func (l *tier) endLocked(epoch uint64) {
	s := l.tracked[epoch]
	if s == nil {
		return
	}
	l.emptyLocked(epoch)
	delete(l.tracked, epoch)
	if l.byAddr[s.addr] == epoch {
		delete(l.byAddr, s.addr)
	}
}

// empty drops the entries of the session of epoch and voids its reads in flight.
func (l *tier) empty(epoch uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.emptyLocked(epoch)
}

func (l *tier) emptyLocked(epoch uint64) {
	l.drop(copyKeys(l.bySession[epoch]), func(t *ticket) bool { return t.epoch == epoch })
}

// renew extends the lease of the session of epoch to until.
func (l *tier) renew(epoch uint64, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.tracked[epoch]; s != nil && until.After(s.leaseUntil) {
		s.leaseUntil = until
	}
}

// confirm says the master of the session of epoch had the slot configuration slots
// (its own line of CLUSTER NODES; "" when it is no master of a healthy cluster) at a
// check sent before until minus the lease. A configuration other than the last one
// confirmed drops the session's entries: a slot moved or is moving, and a write to
// one of its keys may reach another node, which this session does not hear.
func (l *tier) confirm(epoch uint64, slots string, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.tracked[epoch]
	if s == nil {
		return
	}
	if slots != s.slots {
		l.emptyLocked(epoch)
		s.slots = slots
	}
	if slots == "" {
		s.slotsUntil = time.Time{}
	} else if until.After(s.slotsUntil) {
		s.slotsUntil = until
	}
}

// epochOf is the session tracking addr ("": the one server), 0 when there is none.
func (l *tier) epochOf(addr string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byAddr[addr]
}

// serving reports whether the session of epoch may answer now; mu held.
func (l *tier) serving(epoch uint64) bool {
	s := l.tracked[epoch]
	now := time.Now()
	return s != nil && now.Before(s.leaseUntil) && (!s.checked || now.Before(s.slotsUntil))
}

// get returns the stored Stat reply for k, if the tier holds one and may serve it.
func (l *tier) get(k entryKey) (desc Descriptor, ok bool, err error) {
	v, ok := l.lookup(k)
	switch {
	case !ok:
		return desc, false, nil
	case v.miss:
		return desc, true, ErrUnknown
	}
	return v.desc, true, nil
}

// value returns the stored metadata value for k, if the tier holds one and may serve
// it.
func (l *tier) value(k entryKey) (string, bool) {
	v, ok := l.lookup(k)
	return v.value, ok
}

func (l *tier) lookup(k entryKey) (entry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[k]
	if !ok || !l.serving(e.Value.(*entry).epoch) {
		return entry{}, false
	}
	v := e.Value.(*entry)
	if !v.expires.IsZero() && !time.Now().Before(v.expires) {
		l.remove(k)
		return entry{}, false
	}
	l.lru.MoveToFront(e)
	l.served.Add(1)
	return *v, true
}

// begin registers a read of k about to be sent to addr (the server of its key: "" for
// the one server); nil when no session tracks addr (or, for a link, its session does
// not track its key).
func (l *tier) begin(k entryKey, addr string) *ticket {
	l.mu.Lock()
	defer l.mu.Unlock()
	epoch := l.byAddr[addr]
	s := l.tracked[epoch]
	// A cluster session stores only reads begun after a slot check: a slot change
	// before the first one would go unseen (confirm compares with the last check).
	if s == nil || s.checked && s.slots == "" || k.link != "" && k.link != dataEntry && !s.links {
		return nil
	}
	t := &ticket{key: k, epoch: epoch, valid: true}
	l.inflight[t] = true
	return t
}

// finish stores the reply of t's read, a descriptor or ErrUnknown, from the server of
// epoch, unless an invalidation of its keys (or a reset of its session) came between
// begin and now (the reply may then predate a change, and Redis will not report that
// change again), or the reply is not from the server t's session tracks.
func (l *tier) finish(t *ticket, epoch uint64, desc Descriptor, expires time.Time, err error) {
	if err != nil && err != ErrUnknown {
		l.finishEntry(t, epoch, nil)
		return
	}
	l.finishEntry(t, epoch, &entry{desc: desc, miss: err != nil, expires: expires})
}

// finishGlobal stores, for t's read of a global Stat, the global descriptor a
// repository Stat's reply carried (nil: none; the read then stores nothing), under
// finish's rules.
func (l *tier) finishGlobal(t *ticket, epoch uint64, global *Descriptor, expires time.Time) {
	if global == nil {
		l.finishEntry(t, epoch, nil)
		return
	}
	l.finish(t, epoch, *global, expires, nil)
}

// finishValue stores a metadata value as finish stores a Stat reply.
func (l *tier) finishValue(t *ticket, epoch uint64, value string, expires time.Time) {
	l.finishEntry(t, epoch, &entry{value: value, expires: expires})
}

// finishEntry stores e (nil: nothing to store) for t's read, under finish's rules,
// evicting the least recently used while over max entries or maxBytes.
func (l *tier) finishEntry(t *ticket, epoch uint64, e *entry) {
	if t == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.inflight, t)
	if e == nil || !t.valid || epoch != t.epoch || l.tracked[epoch] == nil || len(e.value) > l.maxBytes {
		return
	}
	l.remove(t.key)
	e.key, e.epoch = t.key, epoch
	l.entries[t.key] = l.lru.PushFront(e)
	l.bytes += len(e.value)
	l.stored.Add(1)
	index(l.byDigest, t.key.dgst, t.key)
	index(l.byRepo, t.key.repo, t.key)
	index(l.bySession, epoch, t.key)
	for l.lru.Len() > l.max || l.bytes > l.maxBytes {
		l.remove(l.lru.Back().Value.(*entry).key)
	}
}

func index[K comparable](m map[K]map[entryKey]bool, by K, k entryKey) {
	if m[by] == nil {
		m[by] = map[entryKey]bool{}
	}
	m[by][k] = true
}

func unindex[K comparable](m map[K]map[entryKey]bool, by K, k entryKey) {
	delete(m[by], k)
	if len(m[by]) == 0 {
		delete(m, by)
	}
}

// remove drops the entry of k, if any; mu held.
func (l *tier) remove(k entryKey) {
	e, ok := l.entries[k]
	if !ok {
		return
	}
	v := l.lru.Remove(e).(*entry)
	l.bytes -= len(v.value)
	delete(l.entries, k)
	unindex(l.byDigest, k.dgst, k)
	unindex(l.byRepo, k.repo, k)
	unindex(l.bySession, v.epoch, k)
}

// drop removes the stored entries and voids the reads in flight that depend on a
// change: stored are those entries, match says which reads.
func (l *tier) drop(stored map[entryKey]bool, match func(*ticket) bool) {
	for k := range stored {
		l.remove(k)
	}
	for t := range l.inflight {
		if match(t) {
			t.valid = false
		}
	}
}

// dropDigest forgets every reply about dgst, global and of every repository: what the
// provider's own writes to dgst call at once.
func (l *tier) dropDigest(dgst digest.Digest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropDigestLocked(dgst)
}

func (l *tier) dropDigestLocked(dgst digest.Digest) {
	l.drop(copyKeys(l.byDigest[dgst]), func(t *ticket) bool { return t.key.dgst == dgst })
}

// dropRepo forgets every reply about repo (its links, its Stats): what the provider's
// own writes to the repository's links call at once.
func (l *tier) dropRepo(repo string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropRepoLocked(repo)
}

func (l *tier) dropRepoLocked(repo string) {
	l.drop(copyKeys(l.byRepo[repo]), func(t *ticket) bool { return t.key.repo == repo })
}

// invalidated drops what depends on the keys Redis reports changed (the key names of
// an invalidation message).
func (l *tier) invalidated(keys []string) {
	l.invalidations.Add(int64(len(keys)))
	l.mu.Lock()
	for _, key := range keys {
		repo, dgst, ok := dependents(key)
		switch {
		case !ok:
		case repo == "":
			l.dropDigestLocked(dgst)
		case dgst == "":
			l.dropRepoLocked(repo)
		default:
			k := entryKey{repo: repo, dgst: dgst}
			l.drop(map[entryKey]bool{k: true}, func(t *ticket) bool { return t.key == k })
		}
	}
	seen := l.seen
	l.mu.Unlock()
	if seen != nil {
		for _, key := range keys {
			seen(key)
		}
	}
}

func copyKeys(m map[entryKey]bool) map[entryKey]bool {
	c := make(map[entryKey]bool, len(m))
	for k := range m {
		c[k] = true
	}
	return c
}

// trackedPrefixes are the key prefixes the tier tracks when the scheme is distribution
// or not known: distribution's `blobs::<digest>`, `repository::<repo>::blobs`,
// `repository::<repo>::blobs::<digest>` and `repository::<repo>::links`, and the blob
// scheme's bare digests (of the algorithms go-digest validates; nothing else reaches a
// Stat). In scheme blob the tracker tracks every key.
var trackedPrefixes = []string{"blobs::", "repository::", "sha256:", "sha384:", "sha512:"}

// dependents says which entries depend on the key named key: those of dgst (repo ""),
// of repo (dgst ""), or the one of (repo, dgst); ok false for a key no entry reads.
func dependents(key string) (repo string, dgst digest.Digest, ok bool) {
	if strings.HasPrefix(key, "blobs::") {
		return "", digest.Digest(key[len("blobs::"):]), true
	}
	if strings.HasPrefix(key, "repository::") {
		// Repository names have no ':', so the first "::" ends the name.
		repo, tail, _ := strings.Cut(key[len("repository::"):], "::")
		if tail == "blobs" || tail == "links" {
			return repo, "", true
		}
		if strings.HasPrefix(tail, "blobs::") {
			return repo, digest.Digest(tail[len("blobs::"):]), true
		}
		return "", "", false
	}
	if digest.Digest(key).Validate() != nil {
		return key, "", true // scheme blob: a repository's links
	}
	return "", digest.Digest(key), true // scheme blob: the key is the digest
}

// holds reports whether the tier would answer k now.
func (l *tier) holds(k entryKey) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[k]
	return ok && l.serving(e.Value.(*entry).epoch)
}

// stats are the tier's counters, and whether it may serve now (on a cluster: every
// master's session may).
func (l *tier) stats() (served, entries, bytes, invalidations int64, serving bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	serving = len(l.tracked) > 0
	for epoch := range l.tracked {
		serving = serving && l.serving(epoch)
	}
	return l.served.Load(), int64(l.lru.Len()), int64(l.bytes), l.invalidations.Load(), serving
}
