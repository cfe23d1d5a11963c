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
	_ distribution.BlobDescriptorService = layercache.Scope[distribution.Descriptor]{}
)

// New returns the provider for the Redis o describes (layercache.New).
func New(o layercache.Options) (*Provider, error) {
	c, err := layercache.New(o)
	if err != nil {
		return nil, err
	}
	return &Provider{c}, nil
}

// line is the core's view of distribution 2.8's types.
var line = layercache.Line[distribution.Descriptor]{
	From: func(d distribution.Descriptor) layercache.Descriptor {
		return layercache.Descriptor{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}
	},
	To: func(d layercache.Descriptor) distribution.Descriptor {
		return distribution.Descriptor{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}
	},
	Validate: cache.ValidateDescriptor,
	Errors:   errs,
}

// Stat returns the global descriptor of dgst.
func (p *Provider) Stat(ctx context.Context, dgst digest.Digest) (distribution.Descriptor, error) {
	return line.Stat(p.Client, ctx, "", dgst)
}

// SetDescriptor stores the global descriptor of dgst: digest and size overwritten,
// mediatype only if absent.
func (p *Provider) SetDescriptor(ctx context.Context, dgst digest.Digest, desc distribution.Descriptor) error {
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
		return nil, err
	}
	return line.Scope(p.Client, repo), nil
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
