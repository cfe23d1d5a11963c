package layercache

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/FZambia/sentinel"
	"github.com/docker/distribution/configuration"
	"github.com/gomodule/redigo/redis"
)

// Pool is a redigo pool for the registry configuration's `redis` section (address,
// password, database, timeouts, pool sizes), for NewBlobDescriptorCacheProvider. Its
// connections are checked only when idle for longer than IdleCheck. For Sentinel, TLS
// and ACL users, use New with FromConfiguration.
func Pool(config *configuration.Configuration) *redis.Pool {
	r := config.Redis
	pool, _ := newPool(Options{ // nothing that can fail: no TLS files to read, no cluster
		Addrs: []string{r.Addr}, Password: r.Password, DB: r.DB,
		DialTimeout: r.DialTimeout, ReadTimeout: r.ReadTimeout, WriteTimeout: r.WriteTimeout,
		MaxIdle: r.Pool.MaxIdle, MaxActive: r.Pool.MaxActive, IdleTimeout: r.Pool.IdleTimeout,
	}.withDefaults(), nil)
	return pool
}

// PingIdle is a TestOnBorrow that pings only connections idle for longer than IdleCheck.
func PingIdle(c redis.Conn, lastUsed time.Time) error {
	if time.Since(lastUsed) < IdleCheck {
		return nil
	}
	_, err := c.Do("PING")
	return err
}

// connSource hands out a connection for one command on key, and hears of calls that
// failed to reach Redis.
type connSource interface {
	conn(key string) redis.Conn
	failed()
}

type poolSource struct{ *redis.Pool }

func (p poolSource) conn(string) redis.Conn { return p.Get() }

// failed: the pool drops broken connections itself, and a new one asks Sentinel.
func (p poolSource) failed() {}

// newSource returns where o's connections come from: one pool (a node, or the master
// Sentinel names, dialled hearing of each new connection's address) or a cluster.
func newSource(o Options, dialled func(addr string)) (connSource, error) {
	if o.cluster() {
		return newCluster(o)
	}
	pool, err := newPool(o, dialled)
	if err != nil {
		return nil, err
	}
	return poolSource{pool}, nil
}

// dialOptions are the options of connections to servers, and to sentinels.
func (o Options) dialOptions() (server, sentinels []redis.DialOption, err error) {
	server = []redis.DialOption{
		redis.DialConnectTimeout(o.DialTimeout),
		redis.DialReadTimeout(o.ReadTimeout),
		redis.DialWriteTimeout(o.WriteTimeout),
		redis.DialUsername(o.Username),
		redis.DialPassword(o.Password),
		redis.DialDatabase(o.DB),
	}
	sentinels = []redis.DialOption{
		redis.DialConnectTimeout(o.DialTimeout),
		redis.DialReadTimeout(o.ReadTimeout),
		redis.DialWriteTimeout(o.WriteTimeout),
		redis.DialUsername(o.SentinelUsername),
		redis.DialPassword(o.SentinelPassword),
	}
	if o.TLS || o.SentinelTLS {
		config, err := o.tlsConfig()
		if err != nil {
			return nil, nil, err
		}
		tlsOptions := []redis.DialOption{redis.DialUseTLS(true), redis.DialTLSConfig(config), redis.DialTLSHandshakeTimeout(o.DialTimeout)}
		if o.TLS {
			server = append(server, tlsOptions...)
		}
		if o.SentinelTLS {
			sentinels = append(sentinels, tlsOptions...)
		}
	}
	return server, sentinels, nil
}

// newPool returns the pool of connections to the server o names, or to the master its
// sentinels name; dialled (if not nil) hears the address of each new connection. Calls
// never wait for a connection (Wait is false): past MaxActive a call fails at once, and
// the registry serves it from storage.
func newPool(o Options, dialled func(addr string)) (*redis.Pool, error) {
	dial, err := o.dialer()
	if err != nil {
		return nil, err
	}
	check := ping
	if o.MasterName != "" {
		check = isMaster
	}
	return &redis.Pool{
		Dial: func() (redis.Conn, error) {
			c, addr, err := dial()
			if err == nil && dialled != nil {
				dialled(addr)
			}
			return c, err
		},
		TestOnBorrow: idleCheck(o.IdleCheck, check),
		MaxIdle:      o.MaxIdle,
		MaxActive:    o.MaxActive,
		IdleTimeout:  o.IdleTimeout,
		Wait:         false,
	}, nil
}

// dialer returns how to connect to the server o names, or to the master its sentinels
// name: a new connection, and the address it is to.
func (o Options) dialer() (func() (redis.Conn, string, error), error) {
	if len(o.Addrs) == 0 {
		return nil, errors.New("layercache: no Redis address")
	}
	server, sentinels, err := o.dialOptions()
	if err != nil {
		return nil, err
	}
	if o.MasterName == "" {
		addr := o.Addrs[0]
		return func() (redis.Conn, string, error) { c, err := dial(addr, server); return c, addr, err }, nil
	}
	s := &sentinel.Sentinel{
		Addrs:      o.Addrs,
		MasterName: o.MasterName,
		Dial:       func(addr string) (redis.Conn, error) { return redis.Dial("tcp", addr, sentinels...) },
	}
	// A new connection goes to the master the sentinels name, and is checked to be the
	// master (just after a failover a sentinel may still name the old one).
	return func() (redis.Conn, string, error) {
		addr, err := s.MasterAddr()
		if err != nil {
			return nil, "", err
		}
		c, err := dial(addr, server)
		if err != nil {
			return nil, "", err
		}
		if err := isMaster(c); err != nil {
			c.Close()
			return nil, "", fmt.Errorf("layercache: %s, named master of %s by Sentinel: %w", addr, o.MasterName, err)
		}
		return c, addr, nil
	}, nil
}

// idleCheck is a TestOnBorrow that runs check only on connections idle for longer than
// idle.
func idleCheck(idle time.Duration, check func(redis.Conn) error) func(redis.Conn, time.Time) error {
	return func(c redis.Conn, lastUsed time.Time) error {
		if time.Since(lastUsed) < idle {
			return nil
		}
		return check(c)
	}
}

func ping(c redis.Conn) error {
	_, err := c.Do("PING")
	return err
}

func isMaster(c redis.Conn) error {
	if !sentinel.TestRole(c, "master") {
		return errors.New("not a master (ROLE)")
	}
	return nil
}

func (o Options) tlsConfig() (*tls.Config, error) {
	config := &tls.Config{ServerName: o.TLSServerName, MinVersion: tls.VersionTLS12}
	if o.TLSCAFile != "" {
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("layercache: TLS CA file: %w", err)
		}
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("layercache: TLS CA file %s holds no PEM certificate", o.TLSCAFile)
		}
	}
	if o.TLSCertFile != "" || o.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("layercache: TLS client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{cert}
	}
	return config, nil
}

// dial connects to one server; the connection it returns reports itself broken (Err)
// once the server answers that it cannot serve, so the pool drops it.
func dial(addr string, options []redis.DialOption) (redis.Conn, error) {
	c, err := redis.Dial("tcp", addr, options...)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c}, nil
}

// conn is a server connection that turns a reply of `READONLY` (a master demoted to
// replica), `LOADING`, `MASTERDOWN` or `CLUSTERDOWN` into a broken connection: redigo's pool closes a
// connection whose Err is set instead of keeping it, and the next dial asks Sentinel
// for the master again.
type conn struct {
	redis.Conn
	unavailable error
}

func (c *conn) Do(command string, args ...interface{}) (interface{}, error) {
	reply, err := c.Conn.Do(command, args...)
	if unavailableReply(err) {
		c.unavailable = err
	}
	return reply, err
}

// ReceiveWithTimeout (and DoWithTimeout, which redis.ConnWithTimeout asks for too) let
// the local tier's tracking connection wait for invalidations longer than the read
// timeout.
func (c *conn) ReceiveWithTimeout(timeout time.Duration) (interface{}, error) {
	return redis.ReceiveWithTimeout(c.Conn, timeout)
}

func (c *conn) DoWithTimeout(timeout time.Duration, command string, args ...interface{}) (interface{}, error) {
	return redis.DoWithTimeout(c.Conn, timeout, command, args...)
}

func (c *conn) Err() error {
	if c.unavailable != nil {
		return c.unavailable
	}
	return c.Conn.Err()
}

// unavailableReply reports an error reply of a server that cannot serve the cache now.
func unavailableReply(err error) bool {
	return replyCode(err, "READONLY") || replyCode(err, "LOADING") || replyCode(err, "MASTERDOWN") || replyCode(err, "CLUSTERDOWN")
}
