package layercache

import (
	"time"

	"github.com/docker/distribution/configuration"
	"github.com/gomodule/redigo/redis"
)

// IdleCheck is how long a pooled connection may sit idle before Pool's TestOnBorrow
// pings it. distribution's own pool pings on every borrow, which doubles the round
// trips of every cache operation; a connection used within the last IdleCheck is
// handed out as it is, and a dead one fails its command, which the registry treats as
// a cache miss.
const IdleCheck = time.Minute

// Pool is a redigo pool for the registry configuration's `redis` section (address,
// password, database, timeouts, pool sizes), for NewBlobDescriptorCacheProvider. Its
// TestOnBorrow checks only connections idle for longer than IdleCheck.
func Pool(config *configuration.Configuration) *redis.Pool {
	cfg := config.Redis
	return &redis.Pool{
		Dial: func() (redis.Conn, error) {
			return redis.Dial("tcp", cfg.Addr,
				redis.DialConnectTimeout(cfg.DialTimeout),
				redis.DialReadTimeout(cfg.ReadTimeout),
				redis.DialWriteTimeout(cfg.WriteTimeout),
				redis.DialPassword(cfg.Password),
				redis.DialDatabase(cfg.DB))
		},
		MaxIdle:      cfg.Pool.MaxIdle,
		MaxActive:    cfg.Pool.MaxActive,
		IdleTimeout:  cfg.Pool.IdleTimeout,
		TestOnBorrow: PingIdle,
		Wait:         false, // no free connection: proceed without the cache, as distribution does
	}
}

// PingIdle is a TestOnBorrow that pings only connections idle for longer than IdleCheck.
func PingIdle(c redis.Conn, lastUsed time.Time) error {
	if time.Since(lastUsed) < IdleCheck {
		return nil
	}
	_, err := c.Do("PING")
	return err
}
