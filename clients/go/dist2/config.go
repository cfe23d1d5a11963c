package dist2

import (
	"fmt"
	"strconv"
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
				return layercache.Options{}, err
			}
			o.Cluster = b
		case name == "localentries":
			n, ok := value.(int)
			if !ok || n < 0 {
				return layercache.Options{}, fmt.Errorf("layercache: storage.cache.%s must be a number of entries, not %v", key, value)
			}
			o.LocalEntries = n
		case name == "enabletls":
			b, err := parseBool(key, value)
			if err != nil {
				return layercache.Options{}, err
			}
			o.TLS = b
		case name == "sentineltls":
			sentinelTLS = fmt.Sprint(value)
			b, err := parseBool(key, value)
			if err != nil {
				return layercache.Options{}, err
			}
			o.SentinelTLS = b
		case strs[name] != nil:
			s, ok := value.(string)
			if !ok {
				return layercache.Options{}, fmt.Errorf("layercache: storage.cache.%s must be a string, not %v", key, value)
			}
			*strs[name] = s
		default:
			return layercache.Options{}, fmt.Errorf("layercache: unknown setting storage.cache.%s", key)
		}
	}
	if sentinelTLS == "" {
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
