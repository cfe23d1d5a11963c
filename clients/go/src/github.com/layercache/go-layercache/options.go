package layercache

import (
	"fmt"
	"log"
	"strconv"
	"strings"
	"time"

	"github.com/docker/distribution/configuration"
	"github.com/docker/distribution/registry/storage/cache"
)

// Options says how the provider reaches Redis: one node or Sentinel, with or without
// TLS and an ACL user. A zero field takes the default its comment gives; Addrs is the
// only one required.
type Options struct {
	// Addrs is the server's host:port; with MasterName set, the sentinels' addresses;
	// with Cluster (or several addresses and no MasterName), seed nodes of a Redis
	// Cluster, whose module must run scheme blob.
	Addrs []string
	// Cluster: Addrs seed a Redis Cluster, even when there is only one.
	Cluster bool
	// MasterName is the master set the sentinels watch (Harbor's `sentinelMasterSet`).
	// Empty: Addrs[0] is the server itself.
	MasterName string

	// Username and Password authenticate to the server (`AUTH [user] pass`); DB is the
	// database to SELECT.
	Username, Password string
	DB                 int
	// SentinelUsername and SentinelPassword authenticate to the sentinels, for sentinels
	// with `requirepass` or ACL users of their own.
	SentinelUsername, SentinelPassword string

	// TLS to the server, and SentinelTLS to the sentinels, with the settings below.
	TLS, SentinelTLS bool
	// TLSCAFile is a PEM bundle of the CAs to verify servers with (empty: the system's).
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are the client certificate and key, for servers with
	// `tls-auth-clients yes`.
	TLSCertFile, TLSKeyFile string
	// TLSServerName is the name to verify server certificates against (empty: the host
	// of the address dialed, as Sentinel reports it).
	TLSServerName string

	// Timeouts of connecting, and of each read and write (default 1 s each): a cache
	// must not hold a registry request for longer.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// Pool sizes, as redigo's Pool: idle connections kept (default 4), connections open
	// at most (0: no limit; past it a call is a miss, it does not wait), and how long an
	// idle connection is kept (0: for ever).
	MaxIdle, MaxActive int
	IdleTimeout        time.Duration
	// IdleCheck: a connection idle for longer is checked before use (PING, or ROLE
	// through Sentinel) (default IdleCheck).
	IdleCheck time.Duration

	// FailAfter consecutive connection failures open the breaker (default 3): calls
	// skip Redis for BackoffMin (default 500 ms), then one call probes; each failed probe
	// doubles the window, up to BackoffMax (default 8 s).
	FailAfter              int
	BackoffMin, BackoffMax time.Duration
	// Logf reports the breaker's and the local tier's state changes, once each
	// (default log.Printf).
	Logf func(format string, args ...interface{})

	// LocalEntries > 0 turns on the local tier: up to that many Stat and repository
	// Stat replies (hits and misses) kept in the process, least recently used evicted
	// first, and served with no round trip. It is kept exact by Redis's broadcast
	// tracking on one more connection (the user needs +client|id, +client|tracking,
	// +subscribe and the channel &__redis__:invalidate): an entry is dropped when any
	// key it was read from changes, and the tier empties and stops serving while that
	// connection is down or when the master changes. Not on Redis Cluster. Default 0:
	// off.
	LocalEntries int
}

// IdleCheck is the default Options.IdleCheck. distribution's pool pings on every borrow
// and Harbor's asks ROLE on every borrow, which doubles the round trips of every cache
// operation; a connection used within the last IdleCheck is handed out as it is, and a
// dead one fails its command, which the registry treats as a cache miss.
const IdleCheck = time.Minute

// withDefaults returns o with every zero field that has a default set to it.
func (o Options) withDefaults() Options {
	setDuration := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDuration(&o.DialTimeout, time.Second)
	setDuration(&o.ReadTimeout, time.Second)
	setDuration(&o.WriteTimeout, time.Second)
	setDuration(&o.IdleCheck, IdleCheck)
	setDuration(&o.BackoffMin, 500*time.Millisecond)
	setDuration(&o.BackoffMax, 8*time.Second)
	if o.MaxIdle == 0 {
		o.MaxIdle = 4
	}
	if o.FailAfter == 0 {
		o.FailAfter = 3
	}
	if o.Logf == nil {
		o.Logf = log.Printf
	}
	return o
}

// New returns the cache provider for the Redis that o describes, which must have the
// layercache module loaded. A node or Sentinel is not dialled: an unreachable Redis is
// reported by the first calls (and the breaker's log), and the registry serves from
// storage meanwhile. A cluster is asked for its slots and each master for its scheme,
// which must be blob; a cluster that is unreachable is logged, not an error.
func New(o Options) (cache.BlobDescriptorCacheProvider, error) {
	return open(o)
}

// open is New, with the provider's own type.
func open(o Options) (*provider, error) {
	o = o.withDefaults()
	if o.LocalEntries == 0 {
		conns, err := newSource(o, nil)
		if err != nil {
			return nil, err
		}
		return &provider{conns: conns, breaker: newBreaker(o)}, nil
	}
	if o.cluster() {
		return nil, errTrackingCluster
	}
	dial, err := o.dialer()
	if err != nil {
		return nil, err
	}
	p := &provider{local: newLocal(o.LocalEntries), breaker: newBreaker(o)}
	p.tracker = &tracker{local: p.local, dial: dial, logf: o.Logf, ping: time.Second, stop: make(chan struct{})}
	if p.conns, err = newSource(o, p.tracker.dialled); err != nil {
		return nil, err
	}
	go p.tracker.run()
	return p, nil
}

// FromConfiguration reads Options from a registry configuration: distribution 2.8's
// `redis` section (addr, password, db, timeouts, pool), and the keys it lacks from
// `storage.cache`, named as in Harbor's fork where it has them:
//
//	redis:
//	  addr: sentinel-1:26379,sentinel-2:26379,sentinel-3:26379
//	  password: secret
//	storage:
//	  cache:
//	    blobdescriptor: layercache
//	    sentinelMasterSet: mymaster   # Harbor's; the addresses are then sentinels
//	    username: registry            # Harbor's; the ACL user
//	    enabletls: true               # Harbor's; TLS to the server (and sentinels)
//	    tlscafile: /etc/registry/redis-ca.pem
//	    tlscertfile: /etc/registry/redis-client.pem
//	    tlskeyfile: /etc/registry/redis-client.key
//	    tlsservername: redis.internal
//	    sentineltls: true             # default: enabletls
//	    cluster: true                 # redis.addr seeds a Redis Cluster (implied by several addresses without sentinelMasterSet)
//	    sentinelusername: ...
//	    sentinelpassword: ...
//	    localentries: 100000          # the local tier, off by default
//
// Keys are matched without regard to case; an unknown key or a value of the wrong type
// is an error, so a misspelt setting does not pass unnoticed.
func FromConfiguration(config *configuration.Configuration) (Options, error) {
	r := config.Redis
	o := Options{
		Addrs:        splitAddrs(r.Addr),
		Password:     r.Password,
		DB:           r.DB,
		DialTimeout:  r.DialTimeout,
		ReadTimeout:  r.ReadTimeout,
		WriteTimeout: r.WriteTimeout,
		MaxIdle:      r.Pool.MaxIdle,
		MaxActive:    r.Pool.MaxActive,
		IdleTimeout:  r.Pool.IdleTimeout,
	}
	sentinelTLS := ""
	strs := map[string]*string{
		"sentinelmasterset": &o.MasterName,
		"username":          &o.Username,
		"sentinelusername":  &o.SentinelUsername,
		"sentinelpassword":  &o.SentinelPassword,
		"tlscafile":         &o.TLSCAFile,
		"tlscertfile":       &o.TLSCertFile,
		"tlskeyfile":        &o.TLSKeyFile,
		"tlsservername":     &o.TLSServerName,
	}
	for key, value := range config.Storage["cache"] {
		name := strings.ToLower(key)
		switch {
		case name == "blobdescriptor" || name == "layerinfo":
		case name == "cluster":
			b, err := parseBool(key, value)
			if err != nil {
				return Options{}, err
			}
			o.Cluster = b
		case name == "localentries":
			n, ok := value.(int)
			if !ok || n < 0 {
				return Options{}, fmt.Errorf("layercache: storage.cache.%s must be a number of entries, not %v", key, value)
			}
			o.LocalEntries = n
		case name == "enabletls":
			b, err := parseBool(key, value)
			if err != nil {
				return Options{}, err
			}
			o.TLS = b
		case name == "sentineltls":
			sentinelTLS = fmt.Sprint(value)
			b, err := parseBool(key, value)
			if err != nil {
				return Options{}, err
			}
			o.SentinelTLS = b
		case strs[name] != nil:
			s, ok := value.(string)
			if !ok {
				return Options{}, fmt.Errorf("layercache: storage.cache.%s must be a string, not %v", key, value)
			}
			*strs[name] = s
		default:
			return Options{}, fmt.Errorf("layercache: unknown setting storage.cache.%s", key)
		}
	}
	if sentinelTLS == "" {
		o.SentinelTLS = o.TLS
	}
	if len(o.Addrs) == 0 {
		return Options{}, fmt.Errorf("layercache: redis.addr is required")
	}
	return o, nil
}

func splitAddrs(s string) []string {
	var addrs []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// parseBool takes YAML's booleans and their string forms ("true", "false").
func parseBool(key string, value interface{}) (bool, error) {
	switch v := value.(type) {
	case bool:
		return v, nil
	case string:
		if b, err := strconv.ParseBool(v); err == nil {
			return b, nil
		}
	}
	return false, fmt.Errorf("layercache: storage.cache.%s must be true or false, not %v", key, value)
}

// Topology describes, for a log line, what o connects to (never the password).
func (o Options) Topology() string {
	s := strings.Join(o.Addrs, ",")
	if o.cluster() {
		s = "cluster seeded by " + s
	}
	if o.MasterName != "" {
		s = fmt.Sprintf("master %s through sentinels %s", o.MasterName, s)
		if o.SentinelTLS {
			s += " (TLS)"
		}
	}
	if o.TLS {
		s += ", TLS"
		if o.TLSCertFile != "" {
			s += " with a client certificate"
		}
	}
	if o.Username != "" {
		s += ", user " + o.Username
	}
	if o.LocalEntries > 0 {
		s += fmt.Sprintf(", local tier of %d entries", o.LocalEntries)
	}
	return s
}
