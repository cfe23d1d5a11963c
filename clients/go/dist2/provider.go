// Package dist2 is the layercache provider for distribution 2.8
// (github.com/docker/distribution, which Harbor's fork also is): its
// cache.BlobDescriptorCacheProvider over the layercache core, one round trip and one
// atomic step per operation, where distribution's own redis provider sends two to four
// commands (Stat 3, SetDescriptor 4, Clear 2).
//
// It reads and writes distribution's own keys (the module's `distribution` scheme), so
// registries using this provider and registries using distribution's redis provider
// share one cache; with the module's `blob` scheme it runs on Redis Cluster too.
package dist2

import (
	"context"
	"fmt"

	"github.com/docker/distribution"
	"github.com/docker/distribution/reference"
	"github.com/docker/distribution/registry/storage/cache"
	layercache "github.com/layercache/go-layercache"
	"github.com/opencontainers/go-digest"
)

// Provider is distribution 2.8's blob-descriptor cache provider over a layercache
// Client.
type Provider struct {
	*layercache.Client
}

var (
	_ cache.BlobDescriptorCacheProvider  = &Provider{}
	_ distribution.BlobDescriptorService = &repository{}
)

// New returns the provider for the Redis o describes (layercache.New).
func New(o layercache.Options) (*Provider, error) {
	c, err := layercache.New(o)
	if err != nil {
		return nil, err
	}
	return &Provider{c}, nil
}

// Stat returns the global descriptor of dgst.
func (p *Provider) Stat(ctx context.Context, dgst digest.Digest) (distribution.Descriptor, error) {
	if err := dgst.Validate(); err != nil {
		return distribution.Descriptor{}, err
	}
	d, err := p.Client.Stat(ctx, dgst)
	return descriptor(d), mapError(err, dgst, "")
}

// SetDescriptor stores the global descriptor of dgst: digest and size overwritten,
// mediatype only if absent.
func (p *Provider) SetDescriptor(ctx context.Context, dgst digest.Digest, desc distribution.Descriptor) error {
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
func (r *repository) Stat(ctx context.Context, dgst digest.Digest) (distribution.Descriptor, error) {
	if err := dgst.Validate(); err != nil {
		return distribution.Descriptor{}, err
	}
	d, err := r.c.RepoStat(ctx, r.repo, dgst)
	return descriptor(d), mapError(err, dgst, r.repo)
}

// SetDescriptor records that the repository holds the blob, its descriptor and the
// repository's mediatype, under both digests when they differ by algorithm, in one
// step.
func (r *repository) SetDescriptor(ctx context.Context, dgst digest.Digest, desc distribution.Descriptor) error {
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

func descriptor(d layercache.Descriptor) distribution.Descriptor {
	return distribution.Descriptor{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}
}

func core(d distribution.Descriptor) layercache.Descriptor {
	return layercache.Descriptor{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}
}

// errs are distribution 2.8's errors for the core's and the module's.
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
