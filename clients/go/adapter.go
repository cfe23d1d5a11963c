package layercache

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// Line is what an adapter says of its distribution line: how its descriptor type D
// converts to and from the core's, how it validates one (the line's
// cache.ValidateDescriptor), and how it spells the errors. Its methods are the
// BlobDescriptorService methods over a Client, for repo ("" for the global service),
// so that each adapter's methods are one line each.
type Line[D any] struct {
	From     func(D) Descriptor
	To       func(Descriptor) D
	Validate func(D) error
	Errors   ErrorMap
}

// Stat returns dgst's descriptor, global or as repo sees it: the line's ErrBlobUnknown
// unless the cache holds it.
func (l *Line[D]) Stat(c *Client, ctx context.Context, repo string, dgst digest.Digest) (D, error) {
	if err := dgst.Validate(); err != nil {
		var none D
		return none, err
	}
	var d Descriptor
	var err error
	if repo == "" {
		d, err = c.Stat(ctx, dgst)
	} else {
		d, err = c.RepoStat(ctx, repo, dgst)
	}
	return l.To(d), l.Errors.Map(err, dgst, repo)
}

// SetDescriptor stores dgst's descriptor: globally (digest and size overwritten,
// mediatype only if absent), or that repo holds the blob, with the repository's
// mediatype, under both digests when they differ by algorithm, in one step.
func (l *Line[D]) SetDescriptor(c *Client, ctx context.Context, repo string, dgst digest.Digest, desc D) error {
	if err := dgst.Validate(); err != nil {
		return err
	}
	if err := l.Validate(desc); err != nil {
		return err
	}
	d := l.From(desc)
	if repo == "" {
		return l.Errors.Map(c.SetDescriptor(ctx, dgst, d), dgst, "")
	}
	if dgst != d.Digest && dgst.Algorithm() == d.Digest.Algorithm() {
		return fmt.Errorf("layercache: digest for descriptors differ but algorithm does not: %q != %q", dgst, d.Digest)
	}
	return l.Errors.Map(c.RepoSetDescriptor(ctx, repo, dgst, d), dgst, repo)
}

// Clear removes dgst's global descriptor, or repo's membership, its mediatype and the
// global descriptor in one step, so another repository caching the blob again cannot
// make it visible there (CVE-2026-35172); the line's ErrBlobUnknown when there was
// none.
func (l *Line[D]) Clear(c *Client, ctx context.Context, repo string, dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return err
	}
	if repo == "" {
		return l.Errors.Map(c.Clear(ctx, dgst), dgst, "")
	}
	return l.Errors.Map(c.RepoClear(ctx, repo, dgst), dgst, repo)
}

// Scope is a line's BlobDescriptorService over a Client for one repository (or the
// global one, repo ""): what an adapter's RepositoryScoped returns.
func (l *Line[D]) Scope(c *Client, repo string) Scope[D] {
	return Scope[D]{line: l, c: c, repo: repo}
}

// Scope is the service Line.Scope returns.
type Scope[D any] struct {
	line *Line[D]
	c    *Client
	repo string
}

// Stat is Line.Stat in the scope.
func (s Scope[D]) Stat(ctx context.Context, dgst digest.Digest) (D, error) {
	return s.line.Stat(s.c, ctx, s.repo, dgst)
}

// SetDescriptor is Line.SetDescriptor in the scope.
func (s Scope[D]) SetDescriptor(ctx context.Context, dgst digest.Digest, desc D) error {
	return s.line.SetDescriptor(s.c, ctx, s.repo, dgst, desc)
}

// Clear is Line.Clear in the scope.
func (s Scope[D]) Clear(ctx context.Context, dgst digest.Digest) error {
	return s.line.Clear(s.c, ctx, s.repo, dgst)
}

// ErrorMap says how a distribution line spells the core's errors and the module's
// error codes; Map uses it.
type ErrorMap struct {
	Unknown       error                                        // a miss (ErrBlobUnknown)
	InvalidDigest func(dgst digest.Digest, reason error) error // DIGEST_INVALID
	InvalidName   func(repo string, reason error) error        // NAME_INVALID
	InvalidLength error                                        // SIZE_INVALID
}

// Map turns err, of a call about dgst in repo, into the line's error where it has an
// equivalent; any other error passes through unchanged.
func (m *ErrorMap) Map(err error, dgst digest.Digest, repo string) error {
	if err == ErrUnknown {
		return m.Unknown
	}
	code, message := ReplyCode(err)
	switch code {
	case "DIGEST_INVALID":
		return m.InvalidDigest(dgst, errors.New(message))
	case "NAME_INVALID":
		return m.InvalidName(repo, errors.New(message))
	case "SIZE_INVALID":
		return m.InvalidLength
	}
	return err
}
