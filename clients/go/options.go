package layercache

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options says how a Client reaches Redis: one node, the master a set of sentinels
// names, or a Redis Cluster; with or without TLS and an ACL user. A zero field takes the
// default its comment gives; Addrs is the only one required.
type Options struct {
	// Addrs is the server's host:port; with MasterName set, the sentinels' addresses;
	// with Cluster (or several addresses and no MasterName), seed nodes of a Redis
	// Cluster, whose module must run scheme blob.
	Addrs []string
	// Cluster: Addrs seed a Redis Cluster, even when there is only one.
	Cluster bool
	// MasterName is the master set the sentinels watch. Empty: Addrs[0] is the server.
	MasterName string

	// Username and Password authenticate to the server; DB is the database to SELECT.
	Username, Password string
	DB                 int
	// SentinelUsername and SentinelPassword authenticate to the sentinels.
	SentinelUsername, SentinelPassword string

	// TLS to the server, and SentinelTLS to the sentinels, with the settings below.
	TLS, SentinelTLS bool
	// TLSCAFiles are PEM bundles of the CAs to verify servers with (none: the system's).
	TLSCAFiles []string
	// TLSCertFile and TLSKeyFile are the client certificate and key, for servers with
	// `tls-auth-clients yes`.
	TLSCertFile, TLSKeyFile string
	// TLSServerName is the name to verify server certificates against (empty: the host
	// of the address dialled).
	TLSServerName string

	// DialTimeout bounds connecting (default 1 s; also each ask of the sentinels, all
	// of them at once). ReadTimeout bounds a whole call, dial included, when the
	// caller's context has no earlier deadline (default 1 s): a cache must not hold a
	// registry request for longer. WriteTimeout bounds each write (default ReadTimeout).
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// PoolSize is how many connections to a server are open at most (default 10 per
	// CPU); a call that finds them all busy waits within its timeout. MaxIdle is how
	// many of them are kept idle (default 0: all, so steady load opens none), and
	// IdleTimeout closes one idle for longer (default 30 min). A connection is checked
	// when borrowed without a round trip (a closed socket is seen and dropped).
	PoolSize, MaxIdle int
	IdleTimeout       time.Duration

	// FailAfter consecutive connection failures open the breaker (default 3): calls
	// skip Redis for BackoffMin (default 500 ms), then one call probes; each failed probe
	// doubles the window, up to BackoffMax (default 8 s). Error replies do not count.
	FailAfter              int
	BackoffMin, BackoffMax time.Duration
	// Logf reports state changes (breaker, master, tier), once each, and error replies,
	// once per code per minute (default log.Printf); go-redis's own lines too (logs.go).
	Logf func(format string, args ...interface{})

	// LocalEntries > 0 turns on the local tier: up to that many Stat and repository
	// Stat replies (hits and misses), and with the metadata cache links and manifests,
	// kept in the process, least recently used evicted first, and served with no round
	// trip (tier.go says when). The user needs +client|id, +client|tracking,
	// +subscribe, +ping and the channels &__redis__:invalidate and
	// &__layercache__:events (and +config|get, for the tier to hold the metadata
	// cache's links). Not on Redis Cluster. Default 0: off.
	LocalEntries int
	// LocalLease is how long the tier serves after its tracking connection last proved
	// alive (default 500 ms; it is pinged every quarter of it).
	LocalLease time.Duration
	// LocalBytes bounds the bytes of the metadata cache's values (links, manifests)
	// the tier holds, besides LocalEntries (default 64 MiB).
	LocalBytes int
}

// DefaultLocalLease is the default Options.LocalLease: a tier whose tracking
// connection goes silent serves at most this long.
const DefaultLocalLease = 500 * time.Millisecond

// withDefaults returns o with every zero field that has a default set to it.
func (o Options) withDefaults() Options {
	setDuration := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDuration(&o.DialTimeout, time.Second)
	setDuration(&o.ReadTimeout, time.Second)
	setDuration(&o.WriteTimeout, o.ReadTimeout)
	setDuration(&o.BackoffMin, 500*time.Millisecond)
	setDuration(&o.BackoffMax, 8*time.Second)
	setDuration(&o.LocalLease, DefaultLocalLease)
	if o.FailAfter == 0 {
		o.FailAfter = 3
	}
	if o.LocalBytes == 0 {
		o.LocalBytes = 64 << 20
	}
	if o.Logf == nil {
		o.Logf = log.Printf
	}
	return o
}

// cluster reports whether o names a Redis Cluster: Cluster set, or several addresses
// without a Sentinel master name.
func (o Options) cluster() bool {
	return o.Cluster || o.MasterName == "" && len(o.Addrs) > 1
}

// serverOptions are go-redis's options for connections to addr. Each call carries its
// own deadline (ContextTimeoutEnabled), is tried once (no retries: one timeout per
// call), and a dial is tried once; a failed dial says when it failed (dialer).
func (o Options) serverOptions(addr string, tlsConfig *tls.Config) *redis.Options {
	options := &redis.Options{
		Addr:                  addr,
		Protocol:              2,
		Username:              o.Username,
		Password:              o.Password,
		DB:                    o.DB,
		MaxRetries:            -1,
		DialTimeout:           o.DialTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: true,
		PoolSize:              o.PoolSize,
		PoolTimeout:           o.ReadTimeout,
		MaxIdleConns:          o.MaxIdle,
		ConnMaxIdleTime:       o.IdleTimeout,
		TLSConfig:             tlsConfig,
		DisableIdentity:       true,
	}
	options.Dialer = dialer(dialContext(options))
	return options
}

// dialContext dials as go-redis's own dialer does, but within the call's context, the
// TLS handshake included: go-redis's uses tls.DialWithDialer, which ignores the
// context, so a server that accepts TCP and never completes the handshake held a call
// for DialTimeout.
func dialContext(o *redis.Options) func(ctx context.Context, network, addr string) (net.Conn, error) {
	netDialer := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 5 * time.Minute}
	if o.TLSConfig == nil {
		return netDialer.DialContext
	}
	return (&tls.Dialer{NetDialer: netDialer, Config: o.TLSConfig}).DialContext
}

// tlsConfigs are the TLS settings of connections to servers and to sentinels (nil: no
// TLS).
func (o Options) tlsConfigs() (server, sentinels *tls.Config, err error) {
	if !o.TLS && !o.SentinelTLS {
		return nil, nil, nil
	}
	config := &tls.Config{ServerName: o.TLSServerName, MinVersion: tls.VersionTLS12}
	for _, file := range o.TLSCAFiles {
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, nil, fmt.Errorf("layercache: TLS CA file: %w", err)
		}
		if config.RootCAs == nil {
			config.RootCAs = x509.NewCertPool()
		}
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("layercache: TLS CA file %s holds no PEM certificate", file)
		}
	}
	if o.TLSCertFile != "" || o.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("layercache: TLS client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{cert}
	}
	if o.TLS {
		server = config
	}
	if o.SentinelTLS {
		sentinels = config
	}
	return server, sentinels, nil
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
