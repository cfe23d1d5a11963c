package benchkit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// Service is a distribution line's BlobDescriptorService over its descriptor type D.
type Service[D any] interface {
	Stat(ctx context.Context, dgst digest.Digest) (D, error)
	SetDescriptor(ctx context.Context, dgst digest.Digest, desc D) error
	Clear(ctx context.Context, dgst digest.Digest) error
}

// Provider is a line's BlobDescriptorCacheProvider: its global service, and S for a
// repository.
type Provider[D any, S Service[D]] interface {
	Service[D]
	RepositoryScoped(repo string) (S, error)
}

// Digest is the n-th digest of the benchmarks.
func Digest(n int) digest.Digest { return digest.Digest(fmt.Sprintf("sha256:%064x", n)) }

// Operation runs one cache operation, iteration i of variant v.
type Operation[P any] struct {
	Name string
	Run  func(p P, i, v int) error
}

// Operations are the latency tables' operations on the repository "bench/app", whose
// blobs 0 to 99 are cached (hits), on a line whose descriptor desc makes and whose
// ErrBlobUnknown is unknown. Writes use digests of their own per variant.
func Operations[D any, S Service[D], P Provider[D, S]](desc func(digest.Digest) D, unknown error) []Operation[P] {
	ctx := context.Background()
	repo := func(p P) (S, error) { return p.RepositoryScoped("bench/app") }
	written := func(i, v int) digest.Digest { return Digest(2_000_000 + v*100_000 + i) }
	return []Operation[P]{
		{"repository Stat, hit", func(p P, i, v int) error {
			r, err := repo(p)
			if err == nil {
				_, err = r.Stat(ctx, Digest(i%100))
			}
			return err
		}},
		{"repository Stat, miss", func(p P, i, v int) error {
			r, err := repo(p)
			if err != nil {
				return err
			}
			if _, err := r.Stat(ctx, Digest(1_000_000+i)); !errors.Is(err, unknown) {
				return fmt.Errorf("a miss returned %v", err)
			}
			return nil
		}},
		{"repository SetDescriptor", func(p P, i, v int) error {
			r, err := repo(p)
			if err == nil {
				err = r.SetDescriptor(ctx, written(i, v), desc(written(i, v)))
			}
			return err
		}},
		{"repository Clear", func(p P, i, v int) error {
			r, err := repo(p)
			if err == nil {
				err = r.Clear(ctx, written(i, v))
			}
			return err
		}},
		{"global Stat", func(p P, i, v int) error {
			_, err := p.Stat(ctx, Digest(i%100))
			return err
		}},
	}
}

// Latency runs op n times one after another on p as variant v, after one unmeasured
// run (iteration n) that puts a connection in the pool; the p50 and p99.
func Latency[P any](p P, op Operation[P], v, n int) (time.Duration, time.Duration, error) {
	if err := op.Run(p, n, v); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", op.Name, err)
	}
	lat := make([]time.Duration, n)
	for i := range lat {
		start := time.Now()
		if err := op.Run(p, i, v); err != nil {
			return 0, 0, fmt.Errorf("%s: %w", op.Name, err)
		}
		lat[i] = time.Since(start)
	}
	p50, p99 := Percentiles(lat)
	return p50, p99, nil
}

// Target is a table's target cell: "≥ t×: met" or not met for a speed-up at 2 ms, and
// "" for other round trips or operations without a target (t 0).
func Target(rtt time.Duration, t, speedup float64) string {
	switch {
	case t == 0 || rtt != 2*time.Millisecond:
		return ""
	case speedup < t:
		return fmt.Sprintf("≥ %g×: **not met**", t)
	}
	return fmt.Sprintf("≥ %g×: met", t)
}
