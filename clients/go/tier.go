package layercache

import (
	"container/list"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
)

// entryKey names a Stat reply: repo is "" for the global Stat.
type entryKey struct {
	repo string
	dgst digest.Digest
}

// entry is one Stat reply: a descriptor, or a miss (ErrUnknown).
type entry struct {
	key  entryKey
	desc Descriptor
	miss bool
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
// to max Stat replies (hits and misses), least recently used evicted first, and
//
//   - serves only within its lease: the tracking connection (tracking.go) renews it
//     each time a PING it sent comes back, to the PING's sending time plus the lease.
//     Redis writes an invalidation to that connection before it replies to the write,
//     so every change acknowledged before the PING was sent has been heard when the
//     PONG is; a silent connection (a black hole) stops the tier within the lease;
//   - stores a reply only if no invalidation of its keys (nor a reset) came between
//     the read's start and its reply, and only if the reply came from the server the
//     tier tracks (the same epoch: a connection to a deposed master is another epoch);
//   - never serves a reply past the expiry of a key it was read from (the module's
//     WITHTTL): Redis reports an expired key only once it deletes it, which may be
//     long after (or, with active expiry off, never);
//   - empties whenever tracking starts or stops, Redis flushes, swaps a database
//     (the module's `__layercache__:events`), or the master changes.
//
// An entry depends on the keys its command reads: a global Stat on the blob's
// descriptor key, a repository Stat on that too and on the repository's set and its
// repository hash (scheme distribution), or on the digest key alone (scheme blob).
type tier struct {
	max           int
	lease         time.Duration
	served        atomic.Int64 // Stats answered from the tier
	stored        atomic.Int64 // Stat replies stored
	invalidations atomic.Int64 // key names Redis reported changed
	sessions      atomic.Int64 // tracking sessions started

	mu         sync.Mutex
	epoch      uint64     // the server tracked; 0: not tracking
	leaseUntil time.Time  // serving until
	lru        *list.List // of *entry, most recently used first
	entries    map[entryKey]*list.Element
	byDigest   map[digest.Digest]map[entryKey]bool
	byRepo     map[string]map[entryKey]bool
	inflight   map[*ticket]bool
	// seen, when set (tests), hears every key name an invalidation carried, after the
	// entries depending on it were dropped.
	seen func(key string)
}

func newTier(max int, lease time.Duration) *tier {
	l := &tier{max: max, lease: lease}
	l.clear()
	return l
}

// clear drops every entry and voids every read in flight; mu held or not yet shared.
func (l *tier) clear() {
	l.lru = list.New()
	l.entries = map[entryKey]*list.Element{}
	l.byDigest = map[digest.Digest]map[entryKey]bool{}
	l.byRepo = map[string]map[entryKey]bool{}
	for t := range l.inflight {
		t.valid = false
	}
	l.inflight = map[*ticket]bool{}
}

// reset empties the tier and says which server it tracks now (0: none; it stores
// nothing and does not serve until tracking is back and renews the lease).
func (l *tier) reset(epoch uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clear()
	if epoch != l.epoch {
		l.leaseUntil = time.Time{}
	}
	l.epoch = epoch
}

// renew extends the lease to until, if the tier still tracks epoch.
func (l *tier) renew(epoch uint64, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.epoch == epoch && until.After(l.leaseUntil) {
		l.leaseUntil = until
	}
}

// serving reports whether the tier may answer now; mu held.
func (l *tier) serving() bool {
	return l.epoch != 0 && time.Now().Before(l.leaseUntil)
}

// get returns the stored reply for k, if the tier holds one and may serve it.
func (l *tier) get(k entryKey) (desc Descriptor, ok bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[k]
	if !ok || !l.serving() {
		return desc, false, nil
	}
	v := e.Value.(*entry)
	if !v.expires.IsZero() && !time.Now().Before(v.expires) {
		l.remove(k)
		return desc, false, nil
	}
	l.lru.MoveToFront(e)
	l.served.Add(1)
	if v.miss {
		return desc, true, ErrUnknown
	}
	return v.desc, true, nil
}

// begin registers a read of k about to be sent; nil when the tier is not active.
func (l *tier) begin(k entryKey) *ticket {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.epoch == 0 {
		return nil
	}
	t := &ticket{key: k, epoch: l.epoch, valid: true}
	l.inflight[t] = true
	return t
}

// finish stores the reply of t's read, a descriptor or ErrUnknown, from the server of
// epoch, unless an invalidation of its keys (or a reset) came between begin and now
// (the reply may then predate a change, and Redis will not report that change again),
// or the reply is not from the server tracked.
func (l *tier) finish(t *ticket, epoch uint64, desc Descriptor, expires time.Time, err error) {
	if t == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.inflight, t)
	if !t.valid || t.epoch != l.epoch || epoch != l.epoch || err != nil && err != ErrUnknown {
		return
	}
	l.remove(t.key)
	l.entries[t.key] = l.lru.PushFront(&entry{key: t.key, desc: desc, miss: err != nil, expires: expires})
	l.stored.Add(1)
	index(l.byDigest, t.key.dgst, t.key)
	index(l.byRepo, t.key.repo, t.key)
	if l.lru.Len() > l.max {
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
	l.lru.Remove(e)
	delete(l.entries, k)
	unindex(l.byDigest, k.dgst, k)
	unindex(l.byRepo, k.repo, k)
}

// drop removes the stored entries and voids the reads in flight that depend on a
// changed key: stored are those entries, match says which reads.
func (l *tier) drop(stored map[entryKey]bool, match func(entryKey) bool) {
	for k := range stored {
		l.remove(k)
	}
	for t := range l.inflight {
		if match(t.key) {
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
	l.drop(copyKeys(l.byDigest[dgst]), func(k entryKey) bool { return k.dgst == dgst })
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
			l.drop(copyKeys(l.byRepo[repo]), func(k entryKey) bool { return k.repo == repo })
		default:
			k := entryKey{repo, dgst}
			l.drop(map[entryKey]bool{k: true}, func(t entryKey) bool { return t == k })
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

// trackedPrefixes are the key prefixes the tier tracks, for both key schemes:
// distribution's `blobs::<digest>`, `repository::<repo>::blobs` and
// `repository::<repo>::blobs::<digest>`, and the blob scheme's bare digests (of the
// algorithms go-digest validates; nothing else reaches a Stat).
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
		if tail == "blobs" {
			return repo, "", true
		}
		if strings.HasPrefix(tail, "blobs::") {
			return repo, digest.Digest(tail[len("blobs::"):]), true
		}
		return "", "", false
	}
	return "", digest.Digest(key), true // scheme blob: the key is the digest
}

// holds reports whether the tier would answer k now.
func (l *tier) holds(k entryKey) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.entries[k]
	return ok && l.serving()
}

// stats are the tier's counters, and whether it may serve now.
func (l *tier) stats() (served, entries, invalidations int64, serving bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.served.Load(), int64(l.lru.Len()), l.invalidations.Load(), l.serving()
}
