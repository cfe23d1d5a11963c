package dist2

import (
	"context"
	"errors"
	"testing"

	storagedriver "github.com/docker/distribution/registry/storage/driver"
	storagemiddleware "github.com/docker/distribution/registry/storage/driver/middleware"
	layercache "github.com/layercache/go-layercache"
	"github.com/layercache/go-layercache/internal/redistest"
)

// The middleware as 2.8's NewApp makes it: storage alone until the provider binds it
// (and Unbound says so meanwhile); then a tag written through one registry's driver is
// read through another's, and a tag absent in storage is the line's PathNotFoundError.
func TestMiddlewareBoundByTheProvider(t *testing.T) {
	s := redistest.Start(t)
	storage := &files{m: map[string][]byte{}}
	made := func() storagedriver.StorageDriver {
		d, err := storagemiddleware.Get(MiddlewareName, map[string]interface{}{"hold": "30s"}, storage)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, b := made(), made()
	if err := Unbound(); err == nil {
		t.Fatal("no error for a middleware no provider bound")
	}
	if n := Bind(provider(t, layercache.Options{Addrs: []string{s.Addr}}).Client); n != 2 {
		t.Fatalf("bound %d drivers, want 2", n)
	}
	if err := Unbound(); err != nil {
		t.Fatal(err)
	}
	tag := "/docker/registry/v2/repositories/team/app/_manifests/tags/latest/current/link"
	if _, err := b.GetContent(ctx, tag); !errors.As(err, &storagedriver.PathNotFoundError{}) {
		t.Fatalf("an absent tag: %v", err)
	}
	if _, err := b.GetContent(ctx, tag); !errors.As(err, &storagedriver.PathNotFoundError{}) {
		t.Fatalf("an absent tag, from the cache: %v", err)
	}
	if err := a.PutContent(ctx, tag, []byte(blob)); err != nil {
		t.Fatal(err)
	}
	if got, err := b.GetContent(ctx, tag); err != nil || string(got) != string(blob) {
		t.Fatalf("the tag through the other registry: %q, %v", got, err)
	}
	if hits := s.Info(t, "layercache", "layercache_link_hits"); hits == 0 {
		t.Fatal("no read was the cache's")
	}
	if _, err := storagemiddleware.Get(MiddlewareName, map[string]interface{}{"hold": "soon"}, storage); err == nil {
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
