package edge

import (
	"context"
	"crypto/x509"
	"sync"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/store"
)

// activeRequests knows the agent requests being served, so that a
// revocation can end them at once, SSE streams included. It is safe for
// concurrent use.
type activeRequests struct {
	// mu guards byID.
	mu   sync.Mutex
	next uint64
	byID map[uint64]activeRequest
}

type activeRequest struct {
	id     certs.Identity
	leaf   *x509.Certificate
	cancel context.CancelCauseFunc
}

func newActiveRequests() *activeRequests {
	return &activeRequests{byID: map[uint64]activeRequest{}}
}

// track registers a request and returns the function that forgets it.
func (a *activeRequests) track(id certs.Identity, leaf *x509.Certificate, cancel context.CancelCauseFunc) func() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.next++
	n := a.next
	a.byID[n] = activeRequest{id: id, leaf: leaf, cancel: cancel}
	return func() {
		a.mu.Lock()
		delete(a.byID, n)
		a.mu.Unlock()
	}
}

// cancelRevoked ends every request whose certificate the revocations
// cover and says how many.
func (a *activeRequests) cancelRevoked(r *revocations) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, req := range a.byID {
		if _, ok := r.check(req.id, req.leaf); ok {
			req.cancel(ErrRevoked)
			n++
		}
	}
	return n
}

// lastSeen records in the store when identities were last seen, at most
// once per interval per identity, so that a busy agent costs the store
// one write a minute. It is safe for concurrent use.
type lastSeen struct {
	st       *store.Store
	interval time.Duration

	// mu guards written.
	mu      sync.Mutex
	written map[string]time.Time
}

func newLastSeen(st *store.Store, interval time.Duration) *lastSeen {
	return &lastSeen{st: st, interval: interval, written: map[string]time.Time{}}
}

// touch notes that id was seen now. Errors are dropped: last seen is a
// hint for operators, never a reason to fail a request.
func (s *lastSeen) touch(id string, now time.Time) {
	s.mu.Lock()
	if now.Sub(s.written[id]) < s.interval {
		s.mu.Unlock()
		return
	}
	s.written[id] = now
	s.mu.Unlock()
	s.st.Touch(id, now)
}
