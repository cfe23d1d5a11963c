package layercache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"
)

// Metadata is the metadata cache (DESIGN.md section 7): a registry's storage reads of
// a repository's links (tags, manifest revisions, layers; present or absent) and of
// manifest bytes, served from Redis. Each line's storage driver middleware (dist2,
// dist3) hands it the driver's GetContent, Reader, PutContent, Delete and Move; a nil
// *Metadata passes them to storage alone.
//
// Why it is exact across instances: the module keeps a generation per repository, so a
// fill of what was read from storage is refused once a write dropped the link since
// the read began; and each write is bracketed, LINKDROP before the storage write (a
// write in flight: no fill stored) and LINKDONE after. A write whose LINKDROP Redis
// does not acknowledge is refused before storage is touched; a LINKDONE that is lost
// leaves fills refused until the hold ends, by when the storage write is over. Manifest
// bytes are content-addressed: the module keeps them only under their own digest, and
// they leave the cache when garbage collection deletes the blob (PURGE).
type Metadata struct {
	c    *Client
	hold time.Duration
}

// DefaultHold is how long a registry write to links may take before a lost LINKDONE
// stops holding fills back.
const DefaultHold = time.Minute

// maxData is the most bytes kept per blob: distribution's limit on a manifest.
const maxData = 4 << 20

// Metadata returns the metadata cache over c; hold is the longest a storage write to
// links may take (0: DefaultHold).
func (c *Client) Metadata(hold time.Duration) *Metadata {
	if hold <= 0 {
		hold = DefaultHold
	}
	return &Metadata{c: c, hold: hold}
}

// HoldOption reads the storage middleware's option `hold` (a duration: "60s"; absent:
// DefaultHold), for both lines.
func HoldOption(options map[string]interface{}) (time.Duration, error) {
	switch v := options["hold"].(type) {
	case nil:
		return 0, nil
	case string:
		return time.ParseDuration(v)
	case time.Duration:
		return v, nil
	}
	return 0, fmt.Errorf("layercache: middleware option hold must be a duration (60s), not %v", options["hold"])
}

// Storage is how a driver middleware's line spells a path that does not exist.
type Storage struct {
	// NotFound is the line's PathNotFoundError for the path.
	NotFound func() error
	// IsNotFound reports whether err is one.
	IsNotFound func(err error) bool
}

// GetContent returns the content at path: a repository's link from the cache when it
// holds it, else from read, whose answer (present or absent) then fills the cache.
func (m *Metadata) GetContent(ctx context.Context, path string, s Storage, read func() ([]byte, error)) ([]byte, error) {
	if p := placeOf(path); m != nil && p.isLink() {
		return m.link(ctx, p, s, read)
	}
	return read()
}

func (m *Metadata) link(ctx context.Context, p place, s Storage, read func() ([]byte, error)) ([]byte, error) {
	l, err := m.c.Link(ctx, p.repo, p.link)
	if err == nil && l.Known {
		if l.Absent {
			return nil, s.NotFound()
		}
		return []byte(l.Value), nil
	}
	content, readErr := read()
	if err != nil { // Redis did not answer: nothing to fill
		return content, readErr
	}
	switch {
	case readErr == nil && digest.Digest(content).Validate() == nil:
		m.c.LinkSet(ctx, p.repo, l.Gen, p.link, string(content))
	case readErr != nil && s.IsNotFound(readErr):
		m.c.LinkSet(ctx, p.repo, l.Gen, p.link, "")
	}
	return content, readErr
}

// Reader opens the content at path from offset: on a manifest route
// (ManifestRoute), a blob's data from its start is a manifest (both lines read one
// whole through Reader), served from the cache when it holds the bytes, else read
// through open and kept once read to its end. Layers are never kept.
func (m *Metadata) Reader(ctx context.Context, path string, offset int64, open func() (io.ReadCloser, error)) (io.ReadCloser, error) {
	p := placeOf(path)
	if _, manifest := ManifestRoute(ctx); m == nil || p.data == "" || offset != 0 || !manifest {
		return open()
	}
	if content, err := m.c.Data(ctx, p.data); err == nil {
		return io.NopCloser(bytes.NewReader(content)), nil
	}
	r, err := open()
	if err != nil {
		return r, err
	}
	return &keeping{ReadCloser: r, keep: func(content []byte) {
		if p.data.Algorithm().FromBytes(content) == p.data {
			m.c.SetData(context.WithoutCancel(ctx), p.data, content)
		}
	}}, nil
}

// keeping is a reader that hands what it read to keep once it reached the end, if
// that was at most maxData bytes.
type keeping struct {
	io.ReadCloser
	read []byte
	over bool
	keep func([]byte)
}

func (k *keeping) Read(b []byte) (int, error) {
	n, err := k.ReadCloser.Read(b)
	if !k.over {
		k.read = append(k.read, b[:n]...)
		if k.over = len(k.read) > maxData; k.over {
			k.read = nil
		}
	}
	if err == io.EOF && !k.over && k.keep != nil {
		k.keep(k.read)
		k.keep = nil
	}
	return n, err
}

// PutContent writes content at path through write, bracketed for the cache when path
// is a repository's. A link whose content its path names (a layer's, a revision's, a
// tag's index entry: all writers write the same) is stored as written; a tag's current
// link is dropped, and the next read fills it.
func (m *Metadata) PutContent(ctx context.Context, path string, content []byte, write func() error) error {
	p := placeOf(path)
	if m == nil || p.repo == "" {
		return write() // blob data is content-addressed: nothing cached changes
	}
	var value *string
	if p.isLink() && p.named() == string(content) {
		v := string(content)
		value = &v
	}
	return m.write(ctx, p, value, write)
}

// Delete removes path through remove, bracketed for the cache: every link at or under
// it is dropped (a tag, a repository); a blob's data takes the blob out of the cache.
func (m *Metadata) Delete(ctx context.Context, path string, remove func() error) error {
	p := placeOf(path)
	switch {
	case m == nil:
	case p.repo != "":
		return m.write(ctx, p, nil, remove)
	case p.data != "":
		if err := remove(); err != nil {
			return err
		}
		return m.c.Purge(ctx, p.data)
	}
	return remove()
}

// Move moves src to dst through move, bracketed for the cache when dst is a
// repository's (an upload's move to a blob's data changes nothing cached).
func (m *Metadata) Move(ctx context.Context, src, dst string, move func() error) error {
	if p := placeOf(dst); m != nil && p.repo != "" {
		return m.write(ctx, p, nil, move)
	}
	return move()
}

func (m *Metadata) write(ctx context.Context, p place, value *string, write func() error) error {
	if err := m.c.LinkDrop(ctx, p.repo, m.hold, p.link); err != nil {
		return fmt.Errorf("layercache: %s %s not written: the metadata cache could not drop it: %w", p.repo, p.link, err)
	}
	err := write()
	if err != nil {
		value = nil
	}
	if doneErr := m.c.LinkDone(context.WithoutCancel(ctx), p.repo, p.link, value); doneErr != nil {
		m.c.o.Logf("layercache: metadata cache: %s %s written, its fills held back for up to %v: %v", p.repo, p.link, m.hold, doneErr)
	}
	return err
}

// storageRoot is where distribution keeps everything in its storage driver.
const storageRoot = "/docker/registry/v2/"

// place is what a storage path is to the cache: a repository's link or directory
// (repo, and link relative to the repository: "" for the repository itself), a blob's
// data or directory (data), or nothing the cache holds (zero).
type place struct {
	repo, link string
	data       digest.Digest
}

func placeOf(path string) place {
	rest, ok := strings.CutPrefix(path, storageRoot)
	if !ok {
		return place{}
	}
	if r, ok := strings.CutPrefix(rest, "repositories/"); ok {
		parts := strings.Split(strings.TrimSuffix(r, "/"), "/")
		for i, part := range parts {
			if strings.HasPrefix(part, "_") {
				if i == 0 || (part != "_manifests" && part != "_layers") {
					return place{} // uploads: never read from the cache
				}
				return place{repo: strings.Join(parts[:i], "/"), link: strings.Join(parts[i:], "/")}
			}
		}
		return place{repo: strings.Join(parts, "/")} // the repository's directory
	}
	// blobs/<algorithm>/<first two>/<encoded>/data, or the blob's directory
	parts := strings.Split(strings.TrimSuffix(strings.TrimSuffix(rest, "/"), "/data"), "/")
	if len(parts) == 4 && parts[0] == "blobs" {
		if d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[3]); d.Validate() == nil {
			return place{data: d}
		}
	}
	return place{}
}

func (p place) isLink() bool {
	return p.repo != "" && strings.HasSuffix(p.link, "/link")
}

// named is the digest a link's path names (".../<algorithm>/<encoded>/link"), which
// is its content for every link but a tag's current one; "" for that one.
func (p place) named() string {
	parts := strings.Split(p.link, "/")
	if len(parts) < 4 || parts[len(parts)-2] == "current" {
		return ""
	}
	return parts[len(parts)-3] + ":" + parts[len(parts)-2]
}

// CachedLink is a link as the cache holds it: Known false when it holds none; else
// Absent (storage has no such link) or Value, its digest. Gen is the repository's
// generation, for the fill of an unknown one.
type CachedLink struct {
	Gen           int64
	Known, Absent bool
	Value         string
}

// Link returns the cached link at path of repo (LAYERCACHE.LINK), from the local tier
// when it holds it; an error when Redis did not answer.
func (c *Client) Link(ctx context.Context, repo, path string) (CachedLink, error) {
	k := entryKey{repo: repo, link: path}
	reply, err := c.metadata(ctx, k, digest.Digest(repo), "LAYERCACHE.LINK", repo, path)
	if err != nil {
		return CachedLink{}, err
	}
	if reply.tier {
		return CachedLink{Known: true, Absent: reply.value == "", Value: reply.value}, nil
	}
	return CachedLink{Gen: reply.gen, Known: reply.known, Absent: reply.known && reply.value == "", Value: reply.value}, nil
}

// metadataReply is a LINK or DATA answer: from the tier (tier), or Redis's: known (or
// not cached), its value and, of a LINK, the generation.
type metadataReply struct {
	tier, known bool
	value       string
	gen         int64
}

// metadata runs LINK or DATA (args) about k through the local tier, as stat runs a
// Stat: a stored value when it may serve one, else Redis's (WITHTTL), which it then
// stores unless tier.go's rules say not to. Only known values are stored.
func (c *Client) metadata(ctx context.Context, k entryKey, route digest.Digest, args ...interface{}) (metadataReply, error) {
	var t *ticket
	if c.tier != nil {
		if v, ok := c.tier.value(k); ok {
			return metadataReply{tier: true, known: true, value: v}, nil
		}
		t = c.tier.begin(k, c.topo.owner(ctx, string(route)))
	}
	sent := time.Now()
	reply, epoch, err := c.call(ctx, route, append(args, "WITHTTL")...)
	var r metadataReply
	var ttl int64 = -1
	switch values, _ := reply.([]interface{}); {
	case err != nil && err != redis.Nil:
	case k.link == dataEntry && len(values) == 2: // DATA: [bytes, ttl], or nil
		r.value, r.known = values[0].(string)
		ttl, _ = values[1].(int64)
	case k.link == dataEntry:
	case len(values) == 3: // LINK: [gen, entry, ttl]
		r.gen, _ = values[0].(int64)
		r.value, r.known = values[1].(string)
		ttl, _ = values[2].(int64)
	default:
		err = fmt.Errorf("layercache: unexpected reply %v to %v", reply, args[0])
	}
	if c.tier != nil {
		var e *entry
		if err == nil && r.known {
			e = &entry{value: r.value}
			if ttl >= 0 {
				e.expires = sent.Add(time.Duration(ttl) * time.Millisecond)
			}
		}
		c.tier.finishEntry(t, epoch, e)
	}
	if err == redis.Nil {
		err = nil
	}
	return r, err
}

// LinkSet fills the link at path of repo with value ("" absent) if the repository's
// generation is still gen (LAYERCACHE.LINKSET); a refused or lost fill is a miss later.
func (c *Client) LinkSet(ctx context.Context, repo string, gen int64, path, value string) {
	c.call(ctx, digest.Digest(repo), "LAYERCACHE.LINKSET", repo, gen, path, value) //nolint:errcheck // a fill may be lost
}

// LinkDrop drops the links at or under each path of repo (LAYERCACHE.LINKDROP); with
// hold > 0 a write to them begins. ErrUnavailable when Redis was skipped.
func (c *Client) LinkDrop(ctx context.Context, repo string, hold time.Duration, paths ...string) error {
	defer c.forgetRepo(repo)
	args := []interface{}{"LAYERCACHE.LINKDROP", repo, hold.Milliseconds()}
	for _, p := range paths {
		args = append(args, p)
	}
	_, err := c.Do(ctx, digest.Digest(repo), args...)
	return err
}

// LinkDone ends the write LinkDrop began at path of repo (LAYERCACHE.LINKDONE),
// storing value when given and no other write is in flight.
func (c *Client) LinkDone(ctx context.Context, repo, path string, value *string) error {
	defer c.forgetRepo(repo)
	args := []interface{}{"LAYERCACHE.LINKDONE", repo, path}
	if value != nil {
		args = append(args, *value)
	}
	_, err := c.Do(ctx, digest.Digest(repo), args...)
	return err
}

// Data returns the blob's cached bytes (LAYERCACHE.DATA), from the local tier when it
// holds them; ErrUnknown when the cache holds none or Redis did not answer.
func (c *Client) Data(ctx context.Context, dgst digest.Digest) ([]byte, error) {
	reply, err := c.metadata(ctx, entryKey{dgst: dgst, link: dataEntry}, dgst, "LAYERCACHE.DATA", dgst)
	if err != nil || !reply.known {
		return nil, ErrUnknown
	}
	return []byte(reply.value), nil
}

// SetData keeps the blob's bytes (LAYERCACHE.SETDATA); a lost write is a miss later.
func (c *Client) SetData(ctx context.Context, dgst digest.Digest, content []byte) {
	c.call(ctx, dgst, "LAYERCACHE.SETDATA", dgst, content) //nolint:errcheck // as a fill
}

// Purge removes every cache entry of dgst (LAYERCACHE.PURGE): after garbage
// collection deleted the blob. ErrUnavailable when Redis was skipped.
func (c *Client) Purge(ctx context.Context, dgst digest.Digest) error {
	defer c.forget(ctx, dgst)
	if err := c.removed(ctx, dgst, "LAYERCACHE.PURGE", dgst); err != ErrUnknown {
		return err
	}
	return nil // the cache held none of it
}

// forgetRepo drops the tier's replies about repo once a write to its links is done:
// the instance reads its own writes at once.
func (c *Client) forgetRepo(repo string) {
	if c.tier != nil {
		c.tier.dropRepo(repo)
	}
}

// Collected takes out of the cache what garbage collection deleted (the paths the
// collector's driver deleted, on the raw driver behind every cache): a blob's data
// purges the blob (LAYERCACHE.PURGE: descriptors, memberships, bytes); a repository's
// links and directories are dropped, and a layer link also ends the repository's
// membership (LAYERCACHE.REPOCLEAR). It goes on past a failure and returns the first.
func (m *Metadata) Collected(ctx context.Context, deleted []string) (blobs, links int, err error) {
	keep := func(e error) {
		if err == nil && e != nil {
			err = e
		}
	}
	for _, path := range deleted {
		p := placeOf(path)
		switch {
		case p.data != "":
			keep(m.c.Purge(ctx, p.data))
			blobs++
		case p.repo != "":
			keep(m.c.LinkDrop(ctx, p.repo, 0, p.link))
			if d := p.layer(); d != "" {
				if e := m.c.RepoClear(ctx, p.repo, d); e != ErrUnknown {
					keep(e)
				}
			}
			links++
		}
	}
	return blobs, links, err
}

// layer is the blob a path under the repository's _layers names ("_layers/<algorithm>
// /<encoded>", with or without "/link"); "" for any other path.
func (p place) layer() digest.Digest {
	parts := strings.Split(strings.TrimSuffix(p.link, "/link"), "/")
	if len(parts) != 3 || parts[0] != "_layers" {
		return ""
	}
	if d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2]); d.Validate() == nil {
		return d
	}
	return ""
}
