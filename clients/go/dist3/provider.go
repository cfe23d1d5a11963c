// Package dist3 is the layercache provider for distribution v3
// (github.com/distribution/distribution/v3, whose Descriptor is image-spec's
// v1.Descriptor): its cache.BlobDescriptorCacheProvider over the layercache core, one
// round trip and one atomic step per operation, where v3's own redis provider sends
// three per repository Stat, four per SetDescriptor and two per Clear.
//
// It reads and writes distribution's own keys (the module's `distribution` scheme), so
// registries using this provider and registries using v3's redis provider share one
// cache; with the module's `blob` scheme it runs on Redis Cluster too. New wraps it as
// v3 wraps its redis provider (metrics.NewPrometheusCacheProvider, "cache_redis"), so
// the registry's cache metrics keep their series.
package dist3

import (
	"context"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage/cache"
	"github.com/distribution/distribution/v3/registry/storage/cache/metrics"
	"github.com/distribution/reference"
	layercache "github.com/layercache/go-layercache"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Provider is distribution v3's blob-descriptor cache provider over a layercache
// Client.
type Provider struct {
	*layercache.Client
}

var (
	_ cache.BlobDescriptorCacheProvider  = &Provider{}
	_ distribution.BlobDescriptorService = layercache.Scope[v1.Descriptor]{}
)

// New returns the provider for the Redis o describes (layercache.New), wrapped in v3's
// cache metrics as its redis provider is, and the Client (Stats, Close).
func New(o layercache.Options) (cache.BlobDescriptorCacheProvider, *layercache.Client, error) {
	c, err := layercache.New(o)
	if err != nil {
		return nil, nil, err
	}
	return metrics.NewPrometheusCacheProvider(&Provider{c}, "cache_redis", "Number of seconds taken by redis"), c, nil
}

// line is the core's view of distribution v3's types.
var line = layercache.Line[v1.Descriptor]{
	From: func(d v1.Descriptor) layercache.Descriptor {
		return layercache.Descriptor{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}
	},
	To: func(d layercache.Descriptor) v1.Descriptor {
		return v1.Descriptor{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}
	},
	Validate: cache.ValidateDescriptor,
	Errors:   errs,
}

// Stat returns the global descriptor of dgst.
func (p *Provider) Stat(ctx context.Context, dgst digest.Digest) (v1.Descriptor, error) {
	return line.Stat(p.Client, ctx, "", dgst)
}

// SetDescriptor stores the global descriptor of dgst: digest and size overwritten,
// mediatype only if absent.
func (p *Provider) SetDescriptor(ctx context.Context, dgst digest.Digest, desc v1.Descriptor) error {
	return line.SetDescriptor(p.Client, ctx, "", dgst, desc)
}

// Clear removes the global descriptor of dgst; ErrBlobUnknown when there was none.
func (p *Provider) Clear(ctx context.Context, dgst digest.Digest) error {
	return line.Clear(p.Client, ctx, "", dgst)
}

// RepositoryScoped returns the descriptor service of one repository, whose descriptors
// carry the repository's own mediatype and which sees only the blobs it holds.
func (p *Provider) RepositoryScoped(repo string) (distribution.BlobDescriptorService, error) {
	if _, err := reference.ParseNormalizedNamed(repo); err != nil {
		if err == reference.ErrNameTooLong {
			return nil, distribution.ErrRepositoryNameInvalid{Name: repo, Reason: err}
		}
		return nil, err
	}
	return repository{line.Scope(p.Client, repo)}, nil
}

// repository is a repository's descriptor service. v3 gives one to both the
// repository's blob statter (its _layers links) and its manifest statter (its
// _manifests/revisions links), while the cache holds one membership per repository;
// without a cache a blob HEAD of a manifest's digest and a manifest GET of a layer's
// digest are 404s. So the manifest routes (layercache.ManifestRoute) keep off the
// repository's entries: there a SetDescriptor writes nothing (2.8 has no cache on its
// manifests either), so every entry is a blob's, and a Stat of the digest the route
// names is a miss without a round trip (a Stat of another digest there, a manifest
// PUT's check of the blobs it references, reads the cache). A Clear still goes to
// Redis (removing is never wrong), and on a manifest route a miss is no error: v3's
// cachedBlobStatter fails a manifest DELETE on the cache's ErrBlobUnknown, and the
// manifest routes never wrote the entry.
type repository struct {
	layercache.Scope[v1.Descriptor]
}

func (r repository) Stat(ctx context.Context, dgst digest.Digest) (v1.Descriptor, error) {
	if ref, ok := layercache.ManifestRoute(ctx); ok && ref == dgst.String() {
		return v1.Descriptor{}, distribution.ErrBlobUnknown
	}
	return r.Scope.Stat(ctx, dgst)
}

func (r repository) SetDescriptor(ctx context.Context, dgst digest.Digest, desc v1.Descriptor) error {
	if _, ok := layercache.ManifestRoute(ctx); ok {
		return nil
	}
	return r.Scope.SetDescriptor(ctx, dgst, desc)
}

func (r repository) Clear(ctx context.Context, dgst digest.Digest) error {
	err := r.Scope.Clear(ctx, dgst)
	if _, ok := layercache.ManifestRoute(ctx); ok && err == distribution.ErrBlobUnknown {
		return nil
	}
	return err
}

// errs are distribution v3's errors for the core's and the module's.
var errs = layercache.ErrorMap{
	Unknown: distribution.ErrBlobUnknown,
	InvalidDigest: func(dgst digest.Digest, reason error) error {
		return distribution.ErrBlobInvalidDigest{Digest: dgst, Reason: reason}
	},
	InvalidName: func(repo string, reason error) error {
		return distribution.ErrRepositoryNameInvalid{Name: repo, Reason: reason}
	},
	InvalidLength: distribution.ErrBlobInvalidLength,
}
