package dist2

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	storagedriver "github.com/docker/distribution/registry/storage/driver"
	storagemiddleware "github.com/docker/distribution/registry/storage/driver/middleware"
	layercache "github.com/layercache/go-layercache"
)

// MiddlewareName is the storage middleware that turns the metadata cache on:
//
//	middleware:
//	  storage:
//	    - name: layercache
//	      options:
//	        hold: 60s     # the longest a storage write to links may take (default 1m)
//
// It needs the blob-descriptor cache (storage.cache.blobdescriptor: layercache), whose
// Redis it shares. 2.8 applies storage middleware before it makes its cache provider
// (both in handlers.NewApp), so the middleware starts as storage alone and the
// provider binds it once made (Bind, which our patch of app.go calls; Unbound after).
const MiddlewareName = "layercache"

// made are the middleware's drivers not yet bound to a Client.
var made struct {
	sync.Mutex
	drivers []*driver
}

func init() {
	storagemiddleware.Register(MiddlewareName, func(d storagedriver.StorageDriver, options map[string]interface{}) (storagedriver.StorageDriver, error) { //nolint:errcheck // one name, registered once
		hold, err := layercache.HoldOption(options)
		if err != nil {
			return nil, err
		}
		w := &driver{StorageDriver: d, hold: hold}
		made.Lock()
		made.drivers = append(made.drivers, w)
		made.Unlock()
		return w, nil
	})
}

// Bind turns the metadata cache on, over c, in every layercache storage middleware
// made so far; it returns how many.
func Bind(c *layercache.Client) int {
	made.Lock()
	defer made.Unlock()
	for _, d := range made.drivers {
		d.m = c.Metadata(d.hold)
	}
	n := len(made.drivers)
	made.drivers = nil
	return n
}

// Unbound is an error when a layercache storage middleware was made and no
// layercache provider bound it (the registry's configuration lacks
// storage.cache.blobdescriptor: layercache).
func Unbound() error {
	made.Lock()
	defer made.Unlock()
	if len(made.drivers) > 0 {
		return errors.New("layercache: the layercache storage middleware needs storage.cache.blobdescriptor: layercache")
	}
	return nil
}

// driver is the storage driver with the metadata cache in front (layercache.Metadata;
// nil until bound: storage alone).
type driver struct {
	storagedriver.StorageDriver
	hold time.Duration
	m    *layercache.Metadata
}

func (d *driver) storage(path string) layercache.Storage {
	return layercache.Storage{
		NotFound: func() error { return storagedriver.PathNotFoundError{Path: path, DriverName: d.Name()} },
		IsNotFound: func(err error) bool {
			var notFound storagedriver.PathNotFoundError
			return errors.As(err, &notFound)
		},
	}
}

func (d *driver) GetContent(ctx context.Context, path string) ([]byte, error) {
	return d.m.GetContent(ctx, path, d.storage(path), func() ([]byte, error) { return d.StorageDriver.GetContent(ctx, path) })
}

func (d *driver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	return d.m.Reader(ctx, path, offset, func() (io.ReadCloser, error) { return d.StorageDriver.Reader(ctx, path, offset) })
}

func (d *driver) PutContent(ctx context.Context, path string, content []byte) error {
	return d.m.PutContent(ctx, path, content, func() error { return d.StorageDriver.PutContent(ctx, path, content) })
}

func (d *driver) Delete(ctx context.Context, path string) error {
	return d.m.Delete(ctx, path, func() error { return d.StorageDriver.Delete(ctx, path) })
}

func (d *driver) Move(ctx context.Context, src, dst string) error {
	return d.m.Move(ctx, src, dst, func() error { return d.StorageDriver.Move(ctx, src, dst) })
}

// Deletions is a driver that notes each path it deleted: garbage collection's, whose
// Paths the registry's garbage-collect then hands to layercache.Metadata.Collected.
type Deletions struct {
	storagedriver.StorageDriver
	mu    sync.Mutex
	Paths []string
}

func (d *Deletions) Delete(ctx context.Context, path string) error {
	err := d.StorageDriver.Delete(ctx, path)
	var notFound storagedriver.PathNotFoundError
	if err == nil || errors.As(err, &notFound) {
		d.mu.Lock()
		d.Paths = append(d.Paths, path)
		d.mu.Unlock()
	}
	return err
}
