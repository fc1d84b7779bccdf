package demoserver

import (
	"context"
	"sync"
	"sync/atomic"
)

// Stats counts what a demo server has handled. It is safe for concurrent use.
type Stats struct {
	calls atomic.Int64

	mu        sync.Mutex
	cancelled int64
	// changed is closed, and replaced, every time cancelled grows.
	changed chan struct{}
}

// newStats returns zeroed counters.
func newStats() *Stats {
	return &Stats{changed: make(chan struct{})}
}

// Calls returns the number of tools/call requests received. An ask call
// counts twice on protocol 2026-07-28, where the client answers by retrying
// the call, and once on older versions.
func (s *Stats) Calls() int64 {
	return s.calls.Load()
}

// Cancelled returns the number of wait calls that ended because their
// context was cancelled rather than because the time passed.
func (s *Stats) Cancelled() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cancelled
}

// AwaitCancelled blocks until Cancelled reaches at least n or ctx is done,
// in which case it returns the context's error. Tests use it to learn that a
// cancellation has reached the server without sleeping.
func (s *Stats) AwaitCancelled(ctx context.Context, n int64) error {
	for {
		s.mu.Lock()
		count, changed := s.cancelled, s.changed
		s.mu.Unlock()
		if count >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// recordCancelled counts one cancelled wait call and wakes AwaitCancelled.
func (s *Stats) recordCancelled() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancelled++
	close(s.changed)
	s.changed = make(chan struct{})
}
