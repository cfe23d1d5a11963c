package faults

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/internal/redistest"
)

// The metadata cache through a server's faults: workers read tag links (a manifest GET
// by tag) through a registry's metadata cache with the tier on, and a writer moves the
// tags through it every 10 ms, while the server is hung, black-holed or killed. Every
// read must be storage's answer within one timeout; a write the cache cannot announce
// is refused before storage is touched; once the fault heals, another instance and
// this one read every tag as storage holds it (no stale read).
func TestMetadataHungServer(t *testing.T) {
	s := redistest.Start(t)
	metadataFault(t, "metadata cache: hung server (SIGSTOP 3 s)", s.Addr, s.Stop, s.Continue)
}

func TestMetadataBlackHoleHealing(t *testing.T) {
	s := redistest.Start(t)
	p := redistest.NewProxy(t, s.Addr)
	metadataFault(t, "metadata cache: black hole, healing after 3 s", p.Addr, p.BlackHole, p.Heal)
}

func TestMetadataKilledServer(t *testing.T) {
	s := redistest.Start(t)
	metadataFault(t, "metadata cache: killed server, restarted after 3 s", s.Addr, s.Kill, func() { redistest.StartOn(t, s.Port) })
}

// tagStorage is a registry's store of tag links, shared by the instances.
type tagStorage struct {
	mu    sync.Mutex
	files map[string]string
}

var errAbsent = errors.New("path not found")

func (s *tagStorage) get(path string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.files[path]
	if !ok {
		return nil, errAbsent
	}
	return []byte(v), nil
}

func tagPath(i int) string {
	return fmt.Sprintf("/docker/registry/v2/repositories/%s/_manifests/tags/t%d/current/link", repo, i%8)
}

func readTag(m *layercache.Metadata, s *tagStorage, path string) (string, error) {
	errs := layercache.Storage{NotFound: func() error { return errAbsent }, IsNotFound: func(err error) bool { return err == errAbsent }}
	b, err := m.GetContent(context.Background(), path, errs, func() ([]byte, error) { return s.get(path) })
	return string(b), err
}

func metadataFault(t *testing.T, name, addr string, fault, heal func()) {
	o := options(addr)
	o.LocalEntries = 1000
	c := client(t, o)
	m := c.Metadata(0)
	storage := &tagStorage{files: map[string]string{}}
	for i := range 8 {
		storage.files[tagPath(i)] = digests[i].String()
	}
	redistest.WaitFor(t, 10*time.Second, "the tier serving", func() bool { return c.Stats().TierServing })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var reads []request
	var written, refused int
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i += workers {
				select {
				case <-stop:
					return
				default:
				}
				at := time.Now()
				_, err := readTag(m, storage, tagPath(i))
				mu.Lock()
				reads = append(reads, request{at: at, took: time.Since(at), hit: err == nil, err: err})
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Add(1)
	go func() { // the writer: tags moved through the cache
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			path, value := tagPath(i), digests[8+i%56].String()
			err := m.PutContent(context.Background(), path, []byte(value), func() error {
				storage.mu.Lock()
				storage.files[path] = value
				storage.mu.Unlock()
				return nil
			})
			mu.Lock()
			if err != nil {
				refused++
			} else {
				written++
			}
			mu.Unlock()
		}
	}()
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	fault()
	time.Sleep(3 * time.Second)
	end := time.Now()
	heal()
	time.Sleep(2 * time.Second) // the breaker's window, tracking back
	close(stop)
	wg.Wait()

	var during []request
	for _, r := range reads {
		if !r.at.Before(start) && r.at.Before(end) {
			during = append(during, r)
		}
	}
	r := measure(name, during, start.Add(2*timeout))
	// After the fault: this instance, and another with a fresh tier, read what storage holds.
	other := client(t, options(addr)).Metadata(0)
	for i := range 8 {
		want, _ := storage.get(tagPath(i))
		for _, mm := range []*layercache.Metadata{m, other} {
			if got, err := readTag(mm, storage, tagPath(i)); err != nil || got != string(want) {
				r.stale++
				t.Errorf("%s: after the fault, t%d is %q (%v); storage holds %q", name, i, got, err, want)
			}
		}
	}
	r.note = fmt.Sprintf("%d tag moves written, %d refused", written, refused)
	if r.max > timeout+margin {
		t.Errorf("%s: a read took %v, over one timeout (%v)", name, r.max, timeout)
	}
	if refused == 0 {
		t.Errorf("%s: no tag move was refused during the fault", name)
	}
	report(t, r)
}
