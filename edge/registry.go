package edge

import (
	"crypto/x509"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/tunnel"
)

// link is one acknowledged tunnel from a connector.
type link struct {
	id        uint64
	conn      *quic.Conn
	connector string
	instance  string
	resources []string
	remote    string
	software  string
	heartbeat time.Duration // how often the connector sends heartbeats; 0 if it does not say
	since     time.Time
	notAfter  time.Time
	identity  certs.Identity
	leaf      *x509.Certificate

	inFlight  atomic.Int64
	draining  atomic.Bool
	lastHeard atomic.Int64 // unix nanoseconds of the last control frame

	// ctrlMu serializes writes on ctrl, the control stream.
	ctrlMu sync.Mutex
	ctrl   *quic.Stream
}

// send writes a control message to the connector.
func (l *link) send(m *tunnel.Message) error {
	l.ctrlMu.Lock()
	defer l.ctrlMu.Unlock()
	return tunnel.WriteFrame(l.ctrl, m)
}

// usable reports whether the link may take new streams.
func (l *link) usable() bool {
	return !l.draining.Load() && l.conn.Context().Err() == nil
}

// quiet reports whether a connector that sends heartbeats has missed two:
// it may be gone (a crash, a partition) though the tunnel is not dropped
// yet, so new requests go elsewhere if they can.
func (l *link) quiet(now time.Time) bool {
	return l.heartbeat > 0 && now.UnixNano()-l.lastHeard.Load() > int64(2*l.heartbeat)
}

// registry knows the live links and which resources they serve. It is safe
// for concurrent use.
type registry struct {
	// mu guards the fields below.
	mu         sync.Mutex
	next       uint64
	rotor      uint64
	byResource map[string][]*link
	links      map[uint64]*link
}

func newRegistry() *registry {
	return &registry{byResource: map[string][]*link{}, links: map[uint64]*link{}}
}

// add registers l and returns the links of older instances of the same
// connector, which the caller closes: a restarted connector must never
// share traffic with its dead predecessor.
func (r *registry) add(l *link) (stale []*link) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, old := range r.links {
		if old.connector == l.connector && old.instance != l.instance {
			stale = append(stale, old)
			r.removeLocked(old)
		}
	}
	r.next++
	l.id = r.next
	r.links[l.id] = l
	for _, res := range l.resources {
		r.byResource[res] = append(r.byResource[res], l)
	}
	return stale
}

// remove forgets l; it is a no-op for a link already removed.
func (r *registry) remove(l *link) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(l)
}

func (r *registry) removeLocked(l *link) {
	if r.links[l.id] != l {
		return
	}
	delete(r.links, l.id)
	for _, res := range l.resources {
		r.byResource[res] = slices.DeleteFunc(r.byResource[res], func(x *link) bool { return x == l })
		if len(r.byResource[res]) == 0 {
			delete(r.byResource, res)
		}
	}
}

// pick returns the usable link serving resource with the fewest requests
// in flight, or nil. With instance set, only links of that connector
// instance count (an MCP session is pinned to the connector that answered
// initialize). Ties go round-robin.
func (r *registry) pick(resource, connector, instance string) *link {
	r.mu.Lock()
	defer r.mu.Unlock()
	cands := r.byResource[resource]
	if len(cands) == 0 {
		return nil
	}
	r.rotor++
	now := time.Now()
	var best *link
	bestQuiet := false
	for i := range cands {
		l := cands[(int(r.rotor)+i)%len(cands)]
		if !l.usable() || (instance != "" && (l.connector != connector || l.instance != instance)) {
			continue
		}
		// A quiet link is taken only when no other will do.
		quiet := l.quiet(now)
		switch {
		case best == nil, bestQuiet && !quiet:
		case quiet && !bestQuiet, l.inFlight.Load() >= best.inFlight.Load():
			continue
		}
		best, bestQuiet = l, quiet
	}
	return best
}

// snapshot returns the live links, oldest first.
func (r *registry) snapshot() []*link {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*link, 0, len(r.links))
	for _, l := range r.links {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b *link) int { return int(a.id - b.id) })
	return out
}

// counts returns the number of live links and of distinct connector
// instances.
func (r *registry) counts() (links, connectors int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, l := range r.links {
		seen[l.connector+"/"+l.instance] = true
	}
	return len(r.links), len(seen)
}
