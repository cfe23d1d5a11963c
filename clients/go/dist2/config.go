package dist2

import (
	"fmt"
	"strings"

	"github.com/docker/distribution/configuration"
	layercache "github.com/layercache/go-layercache"
)

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
//	    localbytes: 67108864          # its bound on the metadata cache's values (64 MiB)
//
// Keys are matched without regard to case; an unknown key or a value of the wrong type
// is an error, so a misspelt setting does not pass unnoticed.
func FromConfiguration(config *configuration.Configuration) (layercache.Options, error) {
	r := config.Redis
	o := layercache.Options{
		Addrs:        splitAddrs(r.Addr),
		Password:     r.Password,
		DB:           r.DB,
		DialTimeout:  r.DialTimeout,
		ReadTimeout:  r.ReadTimeout,
		WriteTimeout: r.WriteTimeout,
		PoolSize:     r.Pool.MaxActive,
		MaxIdle:      r.Pool.MaxIdle,
		IdleTimeout:  r.Pool.IdleTimeout,
	}
	sentinelTLS := false
	strs := map[string]*string{
		"sentinelmasterset": &o.MasterName,
		"username":          &o.Username,
		"sentinelusername":  &o.SentinelUsername,
		"sentinelpassword":  &o.SentinelPassword,
		"tlscertfile":       &o.TLSCertFile,
		"tlskeyfile":        &o.TLSKeyFile,
		"tlsservername":     &o.TLSServerName,
	}
	err := layercache.CacheSettings(&o, config.Storage["cache"], func(name, key string, value interface{}) (bool, error) {
		var err error
		switch {
		case name == "enabletls":
			o.TLS, err = layercache.SettingBool(key, value)
		case name == "sentineltls":
			sentinelTLS = true
			o.SentinelTLS, err = layercache.SettingBool(key, value)
		case name == "tlscafile":
			var file string
			file, err = layercache.SettingString(key, value)
			o.TLSCAFiles = []string{file}
		case strs[name] != nil:
			*strs[name], err = layercache.SettingString(key, value)
		default:
			return false, nil
		}
		return true, err
	})
	if err != nil {
		return layercache.Options{}, err
	}
	if !sentinelTLS {
		o.SentinelTLS = o.TLS
	}
	if len(o.Addrs) == 0 {
		return layercache.Options{}, fmt.Errorf("layercache: redis.addr is required")
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
