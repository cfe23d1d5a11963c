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
	"fmt"

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
	_ distribution.BlobDescriptorService = &repository{}
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

// Stat returns the global descriptor of dgst.
func (p *Provider) Stat(ctx context.Context, dgst digest.Digest) (v1.Descriptor, error) {
	if err := dgst.Validate(); err != nil {
		return v1.Descriptor{}, err
	}
	d, err := p.Client.Stat(ctx, dgst)
	return descriptor(d), mapError(err, dgst, "")
}

// SetDescriptor stores the global descriptor of dgst: digest and size overwritten,
// mediatype only if absent.
func (p *Provider) SetDescriptor(ctx context.Context, dgst digest.Digest, desc v1.Descriptor) error {
	if err := dgst.Validate(); err != nil {
		return err
	}
	if err := cache.ValidateDescriptor(desc); err != nil {
		return err
	}
	return mapError(p.Client.SetDescriptor(ctx, dgst, core(desc)), dgst, "")
}

// Clear removes the global descriptor of dgst; ErrBlobUnknown when there was none.
func (p *Provider) Clear(ctx context.Context, dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return err
	}
	return mapError(p.Client.Clear(ctx, dgst), dgst, "")
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
	return &repository{c: p.Client, repo: repo}, nil
}

type repository struct {
	c    *layercache.Client
	repo string
}

// Stat returns the descriptor as the repository sees it: ErrBlobUnknown unless the
// repository holds the blob.
func (r *repository) Stat(ctx context.Context, dgst digest.Digest) (v1.Descriptor, error) {
	if err := dgst.Validate(); err != nil {
		return v1.Descriptor{}, err
	}
	d, err := r.c.RepoStat(ctx, r.repo, dgst)
	return descriptor(d), mapError(err, dgst, r.repo)
}

// SetDescriptor records that the repository holds the blob, its descriptor and the
// repository's mediatype, under both digests when they differ by algorithm, in one
// step.
func (r *repository) SetDescriptor(ctx context.Context, dgst digest.Digest, desc v1.Descriptor) error {
	if err := dgst.Validate(); err != nil {
		return err
	}
	if err := cache.ValidateDescriptor(desc); err != nil {
		return err
	}
	if dgst != desc.Digest && dgst.Algorithm() == desc.Digest.Algorithm() {
		return fmt.Errorf("layercache: digest for descriptors differ but algorithm does not: %q != %q", dgst, desc.Digest)
	}
	return mapError(r.c.RepoSetDescriptor(ctx, r.repo, dgst, core(desc)), dgst, r.repo)
}

// Clear removes the repository's membership, its mediatype and the global descriptor
// in one step, so another repository caching the blob again cannot make it visible
// here (CVE-2026-35172); ErrBlobUnknown unless the repository held it.
func (r *repository) Clear(ctx context.Context, dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return err
	}
	return mapError(r.c.RepoClear(ctx, r.repo, dgst), dgst, r.repo)
}

func descriptor(d layercache.Descriptor) v1.Descriptor {
	return v1.Descriptor{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}
}

func core(d v1.Descriptor) layercache.Descriptor {
	return layercache.Descriptor{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}
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

func mapError(err error, dgst digest.Digest, repo string) error { return errs.Map(err, dgst, repo) }
