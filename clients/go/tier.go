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
// them), least recently used evicted first, and
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
// repository hash (scheme distribution), or on the digest key alone (scheme blob); a
// link on its repository's links key, a blob's bytes on the blob's key. A link is
// stored only while the session tracks its key: scheme distribution tracks
// `repository::`; scheme blob, whose links key is the bare repository name, tracks
// every key (the tracker asks the scheme; links says it knows).
type tier struct {
	max           int
	maxBytes      int
	lease         time.Duration
	served        atomic.Int64 // Stats answered from the tier
	stored        atomic.Int64 // Stat replies stored
	invalidations atomic.Int64 // key names Redis reported changed
	sessions      atomic.Int64 // tracking sessions started

	mu         sync.Mutex
	epoch      uint64     // the server tracked; 0: not tracking
	links      bool       // the session tracks the links keys
	bytes      int        // of the values held
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

func newTier(max, maxBytes int, lease time.Duration) *tier {
	l := &tier{max: max, maxBytes: maxBytes, lease: lease}
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
	for t := range l.inflight {
		t.valid = false
	}
	l.inflight = map[*ticket]bool{}
}

// reset empties the tier and says which server it tracks now (0: none; it stores
// nothing and does not serve until tracking is back and renews the lease), and whether
// that session tracks the links keys.
func (l *tier) reset(epoch uint64, links bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clear()
	l.links = links
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
	if !ok || !l.serving() {
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

// begin registers a read of k about to be sent; nil when the tier is not active (or,
// for a link, does not track its key).
func (l *tier) begin(k entryKey) *ticket {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.epoch == 0 || k.link != "" && k.link != dataEntry && !l.links {
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
	if e == nil || !t.valid || t.epoch != l.epoch || epoch != l.epoch || len(e.value) > l.maxBytes {
		return
	}
	l.remove(t.key)
	e.key = t.key
	l.entries[t.key] = l.lru.PushFront(e)
	l.bytes += len(e.value)
	l.stored.Add(1)
	index(l.byDigest, t.key.dgst, t.key)
	index(l.byRepo, t.key.repo, t.key)
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
	l.bytes -= len(l.lru.Remove(e).(*entry).value)
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

// dropRepo forgets every reply about repo (its links, its Stats): what the provider's
// own writes to the repository's links call at once.
func (l *tier) dropRepo(repo string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropRepoLocked(repo)
}

func (l *tier) dropRepoLocked(repo string) {
	l.drop(copyKeys(l.byRepo[repo]), func(k entryKey) bool { return k.repo == repo })
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
	_, ok := l.entries[k]
	return ok && l.serving()
}

// stats are the tier's counters, and whether it may serve now.
func (l *tier) stats() (served, entries, bytes, invalidations int64, serving bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.served.Load(), int64(l.lru.Len()), int64(l.bytes), l.invalidations.Load(), l.serving()
}
