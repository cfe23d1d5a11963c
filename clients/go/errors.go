package layercache

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	// ErrUnknown: the cache holds no such descriptor (or Redis was skipped).
	ErrUnknown = errors.New("layercache: blob unknown to the cache")
	// ErrUnavailable is what a Clear returns while Redis is skipped (the breaker is
	// open): a delete must not succeed while the cache may still hold the descriptor.
	ErrUnavailable = errors.New("layercache: Redis unavailable, cache skipped")
)

// failure says whether err is Redis failing (not an error reply about the call, nor
// the caller giving up), and whether it is a reply of a server that cannot serve.
func failure(err error) (failed, unavailable bool) {
	switch {
	case err == nil || err == redis.Nil:
		return false, false
	case errors.Is(err, redis.ErrClosed):
		return false, false // the client was replaced (a new master) while the call ran
	}
	if code, message := ReplyCode(err); code != "" {
		switch code {
		case "READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN":
			return true, true
		case "WRONGPASS", "NOAUTH": // the connection could not be opened
			return true, false
		case "ERR":
			return strings.Contains(message, "max number of clients"), false
		}
		return false, false
	}
	return true, false
}

// ReplyCode splits an error reply into its code (the module's DIGEST_INVALID,
// NAME_INVALID, SIZE_INVALID, or Redis's NOPERM, OOM, ...) and message; "" when err is
// not an error reply.
func ReplyCode(err error) (code, message string) {
	var reply redis.Error
	if err == nil || !errors.As(err, &reply) || err == redis.Nil {
		return "", ""
	}
	code, message, _ = strings.Cut(reply.Error(), " ")
	return code, message
}

// replyLog logs error replies once per code per minute and counts them: an ACL user
// without a command (NOPERM) or a full Redis (OOM) must not leave the cache silently
// doing nothing.
type replyLog struct {
	logf   func(format string, args ...interface{})
	mu     sync.Mutex
	last   map[string]time.Time
	counts map[string]int64
}

func newReplyLog(logf func(format string, args ...interface{})) *replyLog {
	return &replyLog{logf: logf, last: map[string]time.Time{}, counts: map[string]int64{}}
}

func (l *replyLog) seen(err error) {
	code, _ := ReplyCode(err)
	if code == "" {
		code = "OTHER"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[code]++
	if now := time.Now(); now.Sub(l.last[code]) >= time.Minute {
		l.last[code] = now
		l.logf("layercache: Redis replies %v (%d %s replies so far; logged once a minute per code)", err, l.counts[code], code)
	}
}
