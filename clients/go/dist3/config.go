package dist3

import (
	"errors"

	"github.com/distribution/distribution/v3/configuration"
	layercache "github.com/layercache/go-layercache"
)

// FromConfiguration reads Options from a registry configuration: distribution v3's own
// `redis` section, unchanged (addrs, mastername, username, password,
// sentinelusername, sentinelpassword, db, tls: {certificate, key, rootcas}, the
// timeouts, poolsize, maxidleconns, connmaxidletime), and from `storage.cache` what it
// cannot say:
//
//	redis:
//	  addrs: [sentinel-1:26379, sentinel-2:26379, sentinel-3:26379]
//	  mastername: mymaster        # the addresses are then sentinels
//	  username: registry
//	  password: secret
//	  tls:
//	    rootcas: [/etc/registry/redis-ca.pem]
//	storage:
//	  cache:
//	    blobdescriptor: layercache
//	    tls: true                 # TLS with the system's roots, when redis.tls names none
//	    tlsservername: redis.internal
//	    cluster: true             # one address seeding a Redis Cluster (several without mastername are one)
//	    localentries: 100000      # the local tier, off by default
//	    localbytes: 67108864      # its bound on the metadata cache's values (64 MiB)
//
// As in v3, TLS (to the server and the sentinels) is on when redis.tls names a
// certificate, a key or root CAs. v3's go-redis options the provider sets itself
// (protocol, retries, context timeouts, routing) are not read.
func FromConfiguration(config *configuration.Configuration) (layercache.Options, error) {
	r, t := config.Redis.Options, config.Redis.TLS
	o := layercache.Options{
		Addrs:            r.Addrs,
		MasterName:       r.MasterName,
		Username:         r.Username,
		Password:         r.Password,
		SentinelUsername: r.SentinelUsername,
		SentinelPassword: r.SentinelPassword,
		DB:               r.DB,
		DialTimeout:      r.DialTimeout,
		ReadTimeout:      r.ReadTimeout,
		WriteTimeout:     r.WriteTimeout,
		PoolSize:         r.PoolSize,
		MaxIdle:          r.MaxIdleConns,
		IdleTimeout:      r.ConnMaxIdleTime,
		TLSCertFile:      t.Certificate,
		TLSKeyFile:       t.Key,
		TLSCAFiles:       t.RootCAs,
	}
	o.TLS = t.Certificate != "" || t.Key != "" || len(t.RootCAs) != 0
	err := layercache.CacheSettings(&o, config.Storage["cache"], func(name, key string, value interface{}) (bool, error) {
		var err error
		switch name {
		case "tls":
			var on bool
			on, err = layercache.SettingBool(key, value)
			o.TLS = o.TLS || on
		case "tlsservername":
			o.TLSServerName, err = layercache.SettingString(key, value)
		case "blobdescriptorsize": // the inmemory cache's, ignored as v3's redis cache ignores it
		default:
			return false, nil
		}
		return true, err
	})
	if err != nil {
		return layercache.Options{}, err
	}
	o.SentinelTLS = o.TLS
	if len(o.Addrs) == 0 {
		return layercache.Options{}, errors.New("layercache: redis.addrs is required")
	}
	return o, nil
}
