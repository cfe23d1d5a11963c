package layercache

import (
	"bytes"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercache/go-layercache/internal/redistest"
	"github.com/opencontainers/go-digest"
)

func TestPlaceOf(t *testing.T) {
	hex := blob.Encoded()
	cases := []struct {
		path string
		want place
	}{
		{storageRoot + "repositories/team/app/_manifests/tags/latest/current/link", place{repo: "team/app", link: "_manifests/tags/latest/current/link"}},
		{storageRoot + "repositories/a/b/c/_layers/sha256/" + hex + "/link", place{repo: "a/b/c", link: "_layers/sha256/" + hex + "/link"}},
		{storageRoot + "repositories/team/app/_manifests/tags/latest", place{repo: "team/app", link: "_manifests/tags/latest"}},
		{storageRoot + "repositories/team/app", place{repo: "team/app"}},
		{storageRoot + "repositories/team/app/_uploads/x/data", place{}},
		{storageRoot + "blobs/sha256/" + hex[:2] + "/" + hex + "/data", place{data: blob}},
		{storageRoot + "blobs/sha256/" + hex[:2] + "/" + hex, place{data: blob}},
		{storageRoot + "blobs/sha256/" + hex[:2] + "/abc/data", place{}},
		{"/elsewhere/repositories/team/app/_layers/x/link", place{}},
	}
	for i, c := range cases {
		if got := placeOf(c.path); got != c.want {
			t.Errorf("case %d: placeOf(%s) = %+v, want %+v", i+1, c.path, got, c.want)
		}
	}
	if got := placeOf(cases[1].path).named(); got != blob.String() {
		t.Errorf("a layer link names %q", got)
	}
	if got := placeOf(cases[0].path).named(); got != "" {
		t.Errorf("a tag's current link names %q", got)
	}
}

// memoryStorage is a storage driver's files, shared by the instances of a test.
type memoryStorage struct {
	mu    sync.Mutex
	files map[string][]byte
	reads int
}

var errNotFound = errors.New("path not found")

var memoryErrors = Storage{NotFound: func() error { return errNotFound }, IsNotFound: func(err error) bool { return err == errNotFound }}

func (s *memoryStorage) get(path string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	b, ok := s.files[path]
	if !ok {
		return nil, errNotFound
	}
	return b, nil
}

func (s *memoryStorage) put(path string, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = b
	return nil
}

func (s *memoryStorage) remove(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.files {
		if p == path || strings.HasPrefix(p, path+"/") {
			delete(s.files, p)
		}
	}
	return nil
}

// instance is a registry: the shared storage behind its metadata cache.
type instance struct {
	m *Metadata
	s *memoryStorage
}

func (i instance) read(t *testing.T, path string) string {
	t.Helper()
	b, err := i.m.GetContent(ctx, path, memoryErrors, func() ([]byte, error) { return i.s.get(path) })
	switch {
	case err == errNotFound:
		return "absent"
	case err != nil:
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func (i instance) put(t *testing.T, path, content string) {
	t.Helper()
	if err := i.m.PutContent(ctx, path, []byte(content), func() error { return i.s.put(path, []byte(content)) }); err != nil {
		t.Fatal(err)
	}
}

func (i instance) remove(t *testing.T, path string) {
	t.Helper()
	if err := i.m.Delete(ctx, path, func() error { return i.s.remove(path) }); err != nil {
		t.Fatal(err)
	}
}

const repoDir = storageRoot + "repositories/team/app"

var (
	other     = digest.Digest("sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752")
	tagLink   = repoDir + "/_manifests/tags/latest/current/link"
	layerLink = repoDir + "/_layers/sha256/" + blob.Encoded() + "/link"
)

// Every write path through one instance, read back through another that had cached
// what it read before: a tag pushed, moved, deleted; a layer linked (a push, a mount)
// and unlinked; the repository deleted; a fill of what was read before a write,
// refused; garbage collection's deletions. With the tier, a fence lets Redis's
// invalidations reach the reader first (tier_test.go). Each read is the storage's.
func TestMetadataNoStaleRead(t *testing.T) {
	for _, scheme := range schemes {
		for _, tier := range []bool{false, true} {
			name := scheme
			if tier {
				name += "/tier"
			}
			t.Run(name, func(t *testing.T) { metadataRun(t, scheme, tier) })
		}
	}
}

func metadataRun(t *testing.T, scheme string, tier bool) {
	s := redistest.Start(t, "scheme", scheme)
	storage := &memoryStorage{files: map[string][]byte{}}
	var a, b instance
	var wait func()
	if tier {
		ca, cb := tiered(t, Options{Addrs: []string{s.Addr}}), tiered(t, Options{Addrs: []string{s.Addr}})
		a, b = instance{ca.Metadata(0), storage}, instance{cb.Metadata(0), storage}
		f := newFence(s.Dial(t), ca, cb)
		wait = func() { f.wait(t) }
	} else {
		a, b = instance{newClient(t, Options{Addrs: []string{s.Addr}}).Metadata(0), storage}, instance{newClient(t, Options{Addrs: []string{s.Addr}}).Metadata(0), storage}
		wait = func() {}
	}
	stale := 0
	expect := func(what, path, want string) {
		t.Helper()
		b.read(t, path) // cached by b, then read again after the fence
		wait()
		if got := b.read(t, path); got != want {
			stale++
			t.Errorf("%s: %s through b is %q, want %q", what, path, got, want)
		}
	}
	expect("nothing yet", tagLink, "absent")
	a.put(t, tagLink, blob.String())
	expect("tag push", tagLink, blob.String())
	a.put(t, tagLink, other.String())
	expect("re-tag", tagLink, other.String())
	a.remove(t, repoDir+"/_manifests/tags/latest")
	expect("tag delete", tagLink, "absent")
	expect("pre-push HEAD", layerLink, "absent")
	a.put(t, layerLink, blob.String())
	expect("layer linked (a push, a mount)", layerLink, blob.String())
	a.remove(t, layerLink)
	expect("layer unlinked (a blob delete)", layerLink, "absent")
	a.put(t, layerLink, blob.String())
	a.put(t, tagLink, blob.String())
	expect("again", tagLink, blob.String())
	a.remove(t, repoDir)
	expect("repository delete: its tag", tagLink, "absent")
	expect("repository delete: its layer", layerLink, "absent")

	// A fill of what b read before a's write is refused.
	tag2 := repoDir + "/_manifests/tags/v2/current/link"
	link, err := b.m.c.Link(ctx, "team/app", "_manifests/tags/v2/current/link")
	if err != nil || link.Known {
		t.Fatalf("b's read before the write: %+v %v", link, err)
	}
	a.put(t, tag2, other.String())
	b.m.c.LinkSet(ctx, "team/app", link.Gen, "_manifests/tags/v2/current/link", "")
	expect("a fill read before the write", tag2, other.String())

	// Manifest bytes: read once from storage, then from the cache; garbage collection
	// deletes the blob and purges it, and its layer link.
	dataPath := storageRoot + "blobs/sha256/" + blob.Encoded()[:2] + "/" + blob.Encoded() + "/data"
	storage.put(dataPath, []byte("test"))
	a.put(t, layerLink, blob.String())
	manifest := registryRequest{ctx, httptest.NewRequest("GET", "/v2/team/app/manifests/latest", nil)}
	readData := func() string {
		r, err := b.m.Reader(manifest, dataPath, 0, func() (io.ReadCloser, error) {
			content, err := storage.get(dataPath)
			return io.NopCloser(bytes.NewReader(content)), err
		})
		if err != nil {
			t.Fatal(err)
		}
		content, _ := io.ReadAll(r)
		return string(content)
	}
	readData()
	wait()
	reads := storage.reads
	if got := readData(); got != "test" || storage.reads != reads {
		t.Fatalf("manifest bytes again: %q, %d storage reads", got, storage.reads-reads)
	}
	storage.remove(dataPath)
	storage.remove(layerLink)
	if blobs, links, err := a.m.Collected(ctx, []string{storageRoot + "blobs/sha256/" + blob.Encoded()[:2] + "/" + blob.Encoded(), layerLink}); blobs != 1 || links != 1 || err != nil {
		t.Fatalf("Collected: %d blobs, %d links, %v", blobs, links, err)
	}
	wait()
	if _, err := b.m.c.Data(ctx, blob); err != ErrUnknown {
		stale++
		t.Errorf("garbage collected: the bytes are still served (%v)", err)
	}
	expect("garbage collected: the layer link", layerLink, "absent")
	// A link read again is the tier's once Redis has answered it.
	served := b.m.c.Stats().TierServed
	for range 3 {
		b.read(t, tag2)
		wait()
	}
	if got := b.m.c.Stats().TierServed - served; tier && got == 0 {
		t.Fatal("the tier served no read of a link again")
	}
	t.Logf("%s, tier %v: %d stale reads, %d reads served by the tier", scheme, tier, stale, b.m.c.Stats().TierServed)
}

// Reads fail open to storage within one timeout while Redis is gone; a write that
// cannot reach Redis is refused before storage is touched; back, nothing is stale.
func TestMetadataFailsOpenAndRefusesWritesItCannotAnnounce(t *testing.T) {
	s := redistest.Start(t)
	storage := &memoryStorage{files: map[string][]byte{}}
	c := newClient(t, Options{Addrs: []string{s.Addr}, ReadTimeout: 200 * time.Millisecond, BackoffMin: 100 * time.Millisecond})
	a := instance{c.Metadata(0), storage}
	a.put(t, tagLink, blob.String())
	a.read(t, tagLink)
	s.Kill()
	worst := time.Duration(0)
	for range 20 {
		began := time.Now()
		if got := a.read(t, tagLink); got != blob.String() {
			t.Fatalf("read during the outage: %q", got)
		}
		worst = max(worst, time.Since(began))
	}
	began := time.Now()
	err := a.m.PutContent(ctx, tagLink, []byte(other), func() error { return storage.put(tagLink, []byte(other)) })
	if err == nil || string(storage.files[tagLink]) != blob.String() {
		t.Fatalf("a write during the outage: %v, storage holds %s", err, storage.files[tagLink])
	}
	t.Logf("outage: worst read %v, write refused in %v: %v", worst, time.Since(began), err)
	if worst > 500*time.Millisecond || time.Since(began) > 500*time.Millisecond {
		t.Fatalf("a call waited past its timeout")
	}
	redistest.StartOn(t, s.Port)
	redistest.WaitFor(t, 5*time.Second, "the cache back", func() bool {
		return c.LinkDrop(ctx, "team/x", 0, "") == nil
	})
	if got := a.read(t, tagLink); got != blob.String() {
		t.Fatalf("after the outage: %q", got)
	}
}

// On a manifest route, a blob's data read from its start is kept once read to its
// end, and served from the cache after; elsewhere (a layer) it is never kept.
func TestMetadataKeepsManifestsReadWhole(t *testing.T) {
	s := redistest.Start(t)
	m := newClient(t, Options{Addrs: []string{s.Addr}}).Metadata(0)
	dataPath := storageRoot + "blobs/sha256/" + blob.Encoded()[:2] + "/" + blob.Encoded() + "/data"
	opens := 0
	open := func() (io.ReadCloser, error) { opens++; return io.NopCloser(strings.NewReader("test")), nil }
	read := func(route string) string {
		rc, err := m.Reader(registryRequest{ctx, httptest.NewRequest("GET", route, nil)}, dataPath, 0, open)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		return string(b)
	}
	read("/v2/team/app/blobs/" + blob.String())
	read("/v2/team/app/blobs/" + blob.String())
	if opens != 2 {
		t.Fatalf("a layer's data was served from the cache (%d opens of 2)", opens)
	}
	read("/v2/team/app/manifests/latest")
	if got := read("/v2/team/app/manifests/latest"); got != "test" || opens != 3 {
		t.Fatalf("a manifest again: %q after %d opens, want 3", got, opens)
	}
	if got, _ := s.Do(t, "LAYERCACHE.DATA", blob).([]byte); !bytes.Equal(got, []byte("test")) {
		t.Fatal("the bytes are not in Redis")
	}
}

func TestHoldOption(t *testing.T) {
	cases := []struct {
		value interface{}
		want  time.Duration
		ok    bool
	}{
		{nil, 0, true},
		{"90s", 90 * time.Second, true},
		{"soon", 0, false},
		{60, 0, false},
	}
	for i, c := range cases {
		options := map[string]interface{}{}
		if c.value != nil {
			options["hold"] = c.value
		}
		got, err := HoldOption(options)
		if got != c.want || (err == nil) != c.ok {
			t.Errorf("case %d: hold %v: %v, %v", i+1, c.value, got, err)
		}
	}
}
