package node

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logLimiter lets through one log line per key (a peer, a remote address)
// per interval and counts the rest, so that a peer sending garbage cannot
// flood the log; the next line let through says how many were dropped.
type logLimiter struct {
	every  time.Duration
	mu     sync.Mutex
	keys   map[string]*limitState
	onDrop func()
}

type limitState struct {
	last       time.Time
	suppressed int
}

// maxLimiterKeys bounds the keys remembered (remote addresses are many);
// past it the table starts over.
const maxLimiterKeys = 4096

func newLogLimiter(every time.Duration, onDrop func()) *logLimiter {
	return &logLimiter{every: every, keys: map[string]*limitState{}, onDrop: onDrop}
}

// log writes the line unless key had one within the interval.
func (l *logLimiter) log(log *slog.Logger, level slog.Level, key, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	s := l.keys[key]
	if s == nil {
		if len(l.keys) >= maxLimiterKeys {
			l.keys = map[string]*limitState{}
		}
		s = &limitState{}
		l.keys[key] = s
	}
	if !s.last.IsZero() && now.Sub(s.last) < l.every {
		s.suppressed++
		l.mu.Unlock()
		if l.onDrop != nil {
			l.onDrop()
		}
		return
	}
	dropped := s.suppressed
	s.last, s.suppressed = now, 0
	l.mu.Unlock()
	if dropped > 0 {
		args = append(args, "suppressed_since_last", dropped)
	}
	log.Log(context.Background(), level, msg, args...)
}
