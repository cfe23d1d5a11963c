package layercache

import (
	"context"
	"net/http"
	"path"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// requestMemo is what one registry request has read: distribution asks the same Stat
// several times in one request (a blob HEAD makes three repository Stats of the
// blob: the handler's, the blob statter's and the notification listener's), and
// within one request the first answer stands, as if the request had run a few
// microseconds earlier, which it may always have. It lives as long as the context
// that made it (keyed by requestOf), holds at most memoEntries answers, and forgets a
// digest the request itself writes. A context that is no request (Background) has
// none; a cancellable context that is no registry request (no *http.Request: an
// embedder's root context may never end) has one for unnamedSpan at a time.
type requestMemo struct {
	mu      sync.Mutex
	answers map[entryKey]memoAnswer
	expires time.Time // zero: when the request ends
}

// unnamedSpan is how long a cancellable context without a registry request stands as
// one request: its memo, and its mark of a paid timeout (Client.paid).
const unnamedSpan = time.Second

// unnamed reports whether key (from requestOf) is a context's Done channel, not a
// registry request.
func unnamed(key any) bool {
	_, request := key.(*http.Request)
	return !request
}

type memoAnswer struct {
	d   Descriptor
	err error
}

const memoEntries = 64

// requestOf is what identifies ctx's registry request: the *http.Request distribution
// puts in its request contexts (their "http.request" value, which derived contexts
// keep, even when detached by context.WithoutCancel, as v3's notification listener
// detaches its Stat after serving a blob), else the context's Done channel (shared by
// what derives from it); nil when it has neither (Background).
func requestOf(ctx context.Context) any {
	if r, ok := ctx.Value("http.request").(*http.Request); ok && r != nil {
		return r
	}
	if done := ctx.Done(); done != nil {
		return done
	}
	return nil
}

// request is ctx's memo; nil for a context that is no request. A detached context
// reads its request's memo but makes none, since nothing would end it.
func (c *Client) request(ctx context.Context) *requestMemo {
	key := requestOf(ctx)
	if key == nil {
		return nil
	}
	if m, ok := c.requests.Load(key); ok {
		if memo := m.(*requestMemo); memo.expires.IsZero() || time.Now().Before(memo.expires) {
			return memo
		}
		c.requests.CompareAndDelete(key, m)
	}
	if ctx.Done() == nil {
		return nil
	}
	memo := &requestMemo{answers: map[entryKey]memoAnswer{}}
	if unnamed(key) {
		memo.expires = time.Now().Add(unnamedSpan)
	}
	m, loaded := c.requests.LoadOrStore(key, memo)
	if !loaded {
		context.AfterFunc(ctx, func() { c.requests.CompareAndDelete(key, m) })
	}
	return m.(*requestMemo)
}

func (m *requestMemo) get(k entryKey) (Descriptor, error, bool) {
	if m == nil {
		return Descriptor{}, nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.answers[k]
	return a.d, a.err, ok
}

func (m *requestMemo) put(k entryKey, d Descriptor, err error) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, held := m.answers[k]; !held && len(m.answers) < memoEntries { // the first answer stands
		m.answers[k] = memoAnswer{d, err}
	}
}

// drop forgets every answer about dgst.
func (m *requestMemo) drop(dgst digest.Digest) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.answers {
		if k.dgst == dgst {
			delete(m.answers, k)
		}
	}
}

// ManifestRoute is the reference (a tag or a digest) of ctx's registry request when it
// is to a manifest route (/v2/<name>/manifests/<reference>), and whether it is one:
// distribution v3 gives its manifests and its blobs one repository-scoped cache, while
// each route answers only for its own links (_manifests/revisions or _layers), so an
// adapter keeps the manifest routes off the repository's blob entries (dist3).
func ManifestRoute(ctx context.Context) (reference string, ok bool) {
	r, isRequest := ctx.Value("http.request").(*http.Request)
	if !isRequest || r == nil {
		return "", false
	}
	p := path.Clean(r.URL.Path)
	return path.Base(p), path.Base(path.Dir(p)) == "manifests"
}
