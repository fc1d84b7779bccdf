package enroll

import (
	"net/http"
	"sync"
	"time"
)

// retiredCloseAfter are the moments, after a rotation, at which a retired
// transport closes the connections that have become idle since: most
// requests in flight are done within the first, and the last bounds how
// long an old connection outlives its last request.
var retiredCloseAfter = []time.Duration{time.Second, 10 * time.Second, time.Minute}

// rotatingTransport sends each request through its current transport and
// replaces that transport on rotate. It is safe for concurrent use.
type rotatingTransport struct {
	newTransport func() *http.Transport

	// mu guards cur.
	mu  sync.Mutex
	cur *http.Transport
}

var _ http.RoundTripper = (*rotatingTransport)(nil)

func newRotatingTransport(fresh func() *http.Transport) *rotatingTransport {
	return &rotatingTransport{newTransport: fresh, cur: fresh()}
}

// RoundTrip implements [http.RoundTripper].
func (r *rotatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	t := r.cur
	r.mu.Unlock()
	return t.RoundTrip(req)
}

// CloseIdleConnections closes the idle connections of the current
// transport; [http.Client.CloseIdleConnections] calls it.
func (r *rotatingTransport) CloseIdleConnections() {
	r.mu.Lock()
	t := r.cur
	r.mu.Unlock()
	t.CloseIdleConnections()
}

// rotate makes new requests use a new transport. The old one keeps its
// requests in flight and closes its connections as they become idle.
func (r *rotatingTransport) rotate() {
	r.mu.Lock()
	old := r.cur
	r.cur = r.newTransport()
	r.mu.Unlock()
	old.CloseIdleConnections()
	for _, d := range retiredCloseAfter {
		time.AfterFunc(d, old.CloseIdleConnections)
	}
}
