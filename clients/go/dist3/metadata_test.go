package dist3

import (
	"context"
	"errors"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	storagemiddleware "github.com/distribution/distribution/v3/registry/storage/driver/middleware"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/internal/redistest"
)

// The middleware as v3's NewApp makes it over the provider's Client: a tag written
// through one registry's driver is read through another's, and a tag absent in storage
// is the line's PathNotFoundError, from storage and then from the cache.
func TestMiddleware(t *testing.T) {
	s := redistest.Start(t)
	_, c, err := New(layercache.Options{Addrs: []string{s.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := RegisterMiddleware(c); err != nil {
		t.Fatal(err)
	}
	storage := &files{m: map[string][]byte{}}
	made := func(options map[string]any) (storagedriver.StorageDriver, error) {
		return storagemiddleware.Get(ctx, MiddlewareName, options, storage)
	}
	a, _ := made(nil)
	b, err := made(map[string]any{"hold": "30s"})
	if err != nil {
		t.Fatal(err)
	}
	tag := "/docker/registry/v2/repositories/team/app/_manifests/tags/latest/current/link"
	for range 2 {
		if _, err := b.GetContent(ctx, tag); !errors.As(err, &storagedriver.PathNotFoundError{}) {
			t.Fatalf("an absent tag: %v", err)
		}
	}
	manifest := "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	if err := a.PutContent(ctx, tag, []byte(manifest)); err != nil {
		t.Fatal(err)
	}
	if got, err := b.GetContent(ctx, tag); err != nil || string(got) != manifest {
		t.Fatalf("the tag through the other registry: %q, %v", got, err)
	}
	if hits := s.Info(t, "layercache", "layercache_link_hits"); hits == 0 {
		t.Fatal("no read was the cache's")
	}
	if _, err := made(map[string]any{"hold": 60}); err == nil {
		t.Fatal("a hold that is no duration was taken")
	}
}

// files is a storage driver of files in memory, as much of one as the test calls.
type files struct {
	storagedriver.StorageDriver
	m map[string][]byte
}

func (f *files) Name() string { return "files" }

func (f *files) GetContent(_ context.Context, path string) ([]byte, error) {
	b, ok := f.m[path]
	if !ok {
		return nil, storagedriver.PathNotFoundError{Path: path, DriverName: f.Name()}
	}
	return b, nil
}

func (f *files) PutContent(_ context.Context, path string, content []byte) error {
	f.m[path] = content
	return nil
}
