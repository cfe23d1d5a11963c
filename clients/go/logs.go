package layercache

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// go-redis logs through one logger per process (redis.SetLogger). New points it at the
// Logf of the Client made last, so that no line of the provider's libraries reaches the
// registry's stderr in go-redis's own format. A bad pub/sub connection is dropped: it
// is a tracking connection lost, which the tier reports itself ("local tier off").
var libraryLogf atomic.Pointer[func(format string, args ...interface{})]

type libraryLogger struct{}

func (libraryLogger) Printf(_ context.Context, format string, args ...interface{}) {
	if strings.HasPrefix(format, "redis: discarding bad PubSub connection") {
		return
	}
	if logf := libraryLogf.Load(); logf != nil {
		(*logf)("layercache: go-redis: "+strings.TrimPrefix(format, "redis: "), args...)
	}
}

// routeLibraryLogs sends go-redis's lines to logf from now on.
func routeLibraryLogs(logf func(format string, args ...interface{})) {
	libraryLogf.Store(&logf)
	redis.SetLogger(libraryLogger{})
}
