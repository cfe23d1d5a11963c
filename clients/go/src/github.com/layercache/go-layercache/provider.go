// Package layercache is a blob-descriptor cache provider for CNCF distribution (the
// cache.BlobDescriptorCacheProvider of distribution 2.8, which Harbor's fork also
// has) that speaks only the layercache Redis module's LAYERCACHE.* commands: each
// operation is one round trip and one atomic step, where distribution's own redis
// provider sends two to four commands (Stat 3, SetDescriptor 4, Clear 2).
//
// It reads and writes distribution's own keys (the module's `distribution` scheme), so
// registries using this provider and registries using distribution's redis provider
// share one cache; with the module's `blob` scheme it runs on Redis Cluster too.
package layercache

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/docker/distribution"
	"github.com/docker/distribution/reference"
	"github.com/docker/distribution/registry/storage/cache"
	"github.com/gomodule/redigo/redis"
	"github.com/opencontainers/go-digest"
)

// NewBlobDescriptorCacheProvider returns a cache provider that keeps blob descriptors
// through the LAYERCACHE.* commands of the Redis that pool connects to, which must
// have the layercache module loaded. Calls fail open as with New's default Options.
func NewBlobDescriptorCacheProvider(pool *redis.Pool) cache.BlobDescriptorCacheProvider {
	return &provider{conns: poolSource{pool}, breaker: newBreaker(Options{}.withDefaults())}
}

type provider struct {
	conns   connSource
	breaker *breaker
	// local and tracker are the local tier, nil when it is off.
	local   *local
	tracker *tracker
}

// close stops the local tier's tracking (tests; a registry keeps its provider).
func (p *provider) close() {
	if p.tracker != nil {
		p.tracker.close()
	}
}

var _ distribution.BlobDescriptorService = &repository{}

// Stat returns the global descriptor of dgst (LAYERCACHE.STAT).
func (p *provider) Stat(ctx context.Context, dgst digest.Digest) (distribution.Descriptor, error) {
	if err := dgst.Validate(); err != nil {
		return distribution.Descriptor{}, err
	}
	return p.stat(entryKey{"", dgst}, "LAYERCACHE.STAT", dgst)
}

// SetDescriptor stores the global descriptor of dgst (LAYERCACHE.SETDESCRIPTOR): digest
// and size overwritten, mediatype only if absent.
func (p *provider) SetDescriptor(ctx context.Context, dgst digest.Digest, desc distribution.Descriptor) error {
	if err := dgst.Validate(); err != nil {
		return err
	}
	if err := cache.ValidateDescriptor(desc); err != nil {
		return err
	}
	defer p.forget(dgst)
	return p.do(dgst, "", "LAYERCACHE.SETDESCRIPTOR", dgst, desc.Digest, desc.Size, desc.MediaType)
}

// Clear removes the global descriptor of dgst (LAYERCACHE.CLEAR); ErrBlobUnknown when
// there was none.
func (p *provider) Clear(ctx context.Context, dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return err
	}
	defer p.forget(dgst)
	return p.removed(dgst, "", "LAYERCACHE.CLEAR", dgst)
}

// RepositoryScoped returns the descriptor service of one repository, whose descriptors
// carry the repository's own mediatype and which sees only the blobs it holds.
func (p *provider) RepositoryScoped(repo string) (distribution.BlobDescriptorService, error) {
	if _, err := reference.ParseNormalizedNamed(repo); err != nil {
		return nil, err
	}
	return &repository{p: p, repo: repo}, nil
}

type repository struct {
	p    *provider
	repo string
}

// Stat returns the descriptor as the repository sees it (LAYERCACHE.REPOSTAT):
// ErrBlobUnknown unless the repository holds the blob.
func (r *repository) Stat(ctx context.Context, dgst digest.Digest) (distribution.Descriptor, error) {
	if err := dgst.Validate(); err != nil {
		return distribution.Descriptor{}, err
	}
	return r.p.stat(entryKey{r.repo, dgst}, "LAYERCACHE.REPOSTAT", r.repo, dgst)
}

// SetDescriptor records that the repository holds the blob, its descriptor and the
// repository's mediatype, under both digests when they differ by algorithm, in one
// step (LAYERCACHE.REPOSETDESCRIPTOR).
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
	defer r.p.forget(dgst, desc.Digest)
	err := r.p.do(dgst, r.repo, "LAYERCACHE.REPOSETDESCRIPTOR", r.repo, dgst, desc.Digest, desc.Size, desc.MediaType)
	if !replyCode(err, "CROSSSLOT") {
		return err
	}
	// In a cluster the alias may hash to another slot than dgst: Redis refused the two
	// keys and nothing was written. The same writes, as one-key commands: dgst's
	// membership, repository mediatype and descriptor (whose digest is the alias), then
	// the alias's own.
	if err := r.p.do(dgst, r.repo, "LAYERCACHE.REPOSETDESCRIPTOR", r.repo, dgst, dgst, desc.Size, desc.MediaType); err != nil {
		return err
	}
	if err := r.p.do(dgst, "", "LAYERCACHE.SETDESCRIPTOR", dgst, desc.Digest, desc.Size, desc.MediaType); err != nil {
		return err
	}
	return r.p.do(desc.Digest, r.repo, "LAYERCACHE.REPOSETDESCRIPTOR", r.repo, desc.Digest, desc.Digest, desc.Size, desc.MediaType)
}

// Clear removes the repository's membership, its mediatype and the global descriptor
// in one step (LAYERCACHE.REPOCLEAR), so another repository caching the blob again
// cannot make it visible here (CVE-2026-35172); ErrBlobUnknown unless the repository
// held it.
func (r *repository) Clear(ctx context.Context, dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return err
	}
	defer r.p.forget(dgst)
	return r.p.removed(dgst, r.repo, "LAYERCACHE.REPOCLEAR", r.repo, dgst)
}

// stat is a Stat through the local tier: its stored reply when it holds one; otherwise
// Redis's, which it then stores unless an invalidation of its keys arrived meanwhile.
func (p *provider) stat(k entryKey, command string, args ...interface{}) (distribution.Descriptor, error) {
	if p.local == nil {
		desc, _, err := p.descriptor(k.dgst, command, args...)
		return desc, err
	}
	if desc, ok, err := p.local.get(k); ok {
		return desc, err
	}
	t := p.local.begin(k)
	desc, answered, err := p.descriptor(k.dgst, command, args...)
	if answered {
		p.local.finish(t, desc, err)
	} else {
		p.local.finish(t, desc, ErrUnavailable) // not a reply of Redis's: not stored
	}
	return desc, err
}

// forget drops the local tier's replies about the digests a write of this provider
// touched, once the write is done: the instance reads its own writes at once, without
// waiting for Redis's invalidation.
func (p *provider) forget(dgsts ...digest.Digest) {
	if p.local != nil {
		for _, d := range dgsts {
			p.local.dropDigest(d)
		}
	}
}

// ErrUnavailable is what Clear returns while Redis is skipped (the breaker is open): a
// delete must not succeed while the cache may still hold the descriptor.
var ErrUnavailable = errors.New("layercache: Redis unavailable, cache skipped")

// call runs one command about dgst (in a cluster, on the node of dgst's slot) on a
// pooled connection, through the breaker; skipped reports a call the breaker did not
// let through.
func (p *provider) call(dgst digest.Digest, command string, args ...interface{}) (reply interface{}, skipped bool, err error) {
	if !p.breaker.allow() {
		return nil, true, nil
	}
	conn := p.conns.conn(string(dgst))
	reply, err = conn.Do(command, args...)
	// A broken connection (dial failure, network error, a server that cannot serve) is
	// Redis failing; a full pool is the registry's own load, and an error reply is about
	// this call.
	failed := (conn.Err() != nil || unavailableReply(err)) && !errors.Is(err, redis.ErrPoolExhausted)
	conn.Close()
	if failed {
		p.conns.failed()
	}
	p.breaker.done(failed, err)
	return reply, false, err
}

// descriptor runs a command that replies [digest, size, mediatype] or nil; a skipped
// call is a miss. answered says the result is Redis's reply (not a skipped call, a
// broken connection or a reply it could not read).
func (p *provider) descriptor(dgst digest.Digest, command string, args ...interface{}) (desc distribution.Descriptor, answered bool, err error) {
	reply, skipped, err := p.call(dgst, command, args...)
	if skipped {
		return desc, false, distribution.ErrBlobUnknown
	}
	if err == nil && reply == nil {
		return desc, true, distribution.ErrBlobUnknown
	}
	values, err := redis.Values(reply, err)
	if err != nil {
		return desc, false, mapError(err, dgst, "")
	}
	if _, err := redis.Scan(values, &desc.Digest, &desc.Size, &desc.MediaType); err != nil {
		return distribution.Descriptor{}, false, err
	}
	return desc, true, nil
}

// do runs a write that replies OK; a skipped write is as if the cache had evicted it.
func (p *provider) do(dgst digest.Digest, repo string, command string, args ...interface{}) error {
	_, _, err := p.call(dgst, command, args...)
	return mapError(err, dgst, repo)
}

// removed runs a removal that replies 1 or 0; 0 is ErrBlobUnknown, a skipped removal
// ErrUnavailable.
func (p *provider) removed(dgst digest.Digest, repo string, command string, args ...interface{}) error {
	reply, skipped, err := p.call(dgst, command, args...)
	if skipped {
		return ErrUnavailable
	}
	n, err := redis.Int(reply, err)
	if err != nil {
		return mapError(err, dgst, repo)
	}
	if n == 0 {
		return distribution.ErrBlobUnknown
	}
	return nil
}

// replyCode reports an error reply that starts with code.
func replyCode(err error, code string) bool {
	var reply redis.Error
	return errors.As(err, &reply) && strings.HasPrefix(string(reply), code+" ")
}

// mapError turns the module's error codes into distribution's errors where it has an
// equivalent; any other error passes through unchanged.
func mapError(err error, dgst digest.Digest, repo string) error {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return err
	}
	code, message, _ := strings.Cut(string(reply), " ")
	switch code {
	case "DIGEST_INVALID":
		return distribution.ErrBlobInvalidDigest{Digest: dgst, Reason: errors.New(message)}
	case "NAME_INVALID":
		return distribution.ErrRepositoryNameInvalid{Name: repo, Reason: errors.New(message)}
	case "SIZE_INVALID":
		return distribution.ErrBlobInvalidLength
	}
	return err
}
