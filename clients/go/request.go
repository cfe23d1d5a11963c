package layercache

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"
)

// requestMemo is what one registry request has read: distribution asks the same Stat
// several times in one request (a blob HEAD makes three repository Stats of the
// blob: the handler's, the blob statter's and the notification listener's), and
// within one request the first answer stands, as if the request had run a few
// microseconds earlier, which it may always have. It lives as long as the request's
// context (keyed by its Done channel, which what derives from it shares), holds at
// most memoEntries answers, and forgets a digest the request itself writes. A context
// that cannot end (Background) has none.
type requestMemo struct {
	mu      sync.Mutex
	answers map[entryKey]memoAnswer
}

type memoAnswer struct {
	d   Descriptor
	err error
}

const memoEntries = 64

// request is ctx's memo; nil for a context that cannot end.
func (c *Client) request(ctx context.Context) *requestMemo {
	done := ctx.Done()
	if done == nil {
		return nil
	}
	if m, ok := c.requests.Load(done); ok {
		return m.(*requestMemo)
	}
	m, loaded := c.requests.LoadOrStore(done, &requestMemo{answers: map[entryKey]memoAnswer{}})
	if !loaded {
		context.AfterFunc(ctx, func() { c.requests.Delete(done) })
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
	if len(m.answers) < memoEntries {
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
