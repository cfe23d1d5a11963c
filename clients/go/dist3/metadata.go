package dist3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	storagemiddleware "github.com/distribution/distribution/v3/registry/storage/driver/middleware"
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
// Redis it shares.
const MiddlewareName = "layercache"

// RegisterMiddleware registers the storage middleware over c's Redis (nil: the
// configuration does not select layercache, and the middleware says so when used).
func RegisterMiddleware(c *layercache.Client) error {
	return storagemiddleware.Register(MiddlewareName, func(_ context.Context, d storagedriver.StorageDriver, options map[string]any) (storagedriver.StorageDriver, error) {
		if c == nil {
			return nil, errors.New("layercache: the layercache storage middleware needs storage.cache.blobdescriptor: layercache")
		}
		hold, err := layercache.HoldOption(options)
		if err != nil {
			return nil, err
		}
		return &driver{StorageDriver: d, m: c.Metadata(hold)}, nil
	})
}

// driver is the storage driver with the metadata cache in front (layercache.Metadata).
type driver struct {
	storagedriver.StorageDriver
	m *layercache.Metadata
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

// CollectGarbage is `registry garbage-collect` (v3's MarkAndSweep on the raw driver)
// that then takes out of the cache what it deleted (layercache.Metadata.Collected):
// the blob descriptors, memberships and bytes of the blobs, and the links.
func CollectGarbage(ctx context.Context, config *configuration.Configuration, opts storage.GCOpts, c *layercache.Client) (blobs, links int, err error) {
	raw, err := factory.Create(ctx, config.Storage.Type(), config.Storage.Parameters())
	if err != nil {
		return 0, 0, fmt.Errorf("failed to construct %s driver: %w", config.Storage.Type(), err)
	}
	rec := &Deletions{StorageDriver: raw}
	registry, err := storage.NewRegistry(ctx, rec)
	if err != nil {
		return 0, 0, fmt.Errorf("failed to construct registry: %w", err)
	}
	err = storage.MarkAndSweep(ctx, rec, registry, opts)
	blobs, links, purgeErr := c.Metadata(0).Collected(ctx, rec.Paths)
	if err == nil && purgeErr != nil {
		err = fmt.Errorf("layercache: purging what garbage collection deleted: %w", purgeErr)
	}
	return blobs, links, err
}

// Deletions is a driver that notes each path it deleted (garbage collection's).
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
