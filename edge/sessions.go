package edge

import (
	"sync"
	"time"
)

// binding remembers who created an MCP session and which connector
// instance serves it.
type binding struct {
	agent     string
	connector string
	instance  string
	lastUsed  time.Time
}

type sessionKey struct {
	resource string
	id       string
}

// sessionTable maps MCP session IDs to their bindings. It is safe for
// concurrent use.
type sessionTable struct {
	idle time.Duration
	now  func() time.Time

	// mu guards m.
	mu sync.Mutex
	m  map[sessionKey]*binding
}

func newSessionTable(idle time.Duration, now func() time.Time) *sessionTable {
	return &sessionTable{idle: idle, now: now, m: map[sessionKey]*binding{}}
}

// bind records a session the upstream just created.
func (t *sessionTable) bind(resource, id string, b binding) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b.lastUsed = t.now()
	t.m[sessionKey{resource, id}] = &b
}

// lookup returns the session's binding and marks it used; ok is false for
// an unknown or expired session.
func (t *sessionTable) lookup(resource, id string) (binding, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := sessionKey{resource, id}
	b, ok := t.m[k]
	if !ok {
		return binding{}, false
	}
	now := t.now()
	if now.Sub(b.lastUsed) > t.idle {
		delete(t.m, k)
		return binding{}, false
	}
	b.lastUsed = now
	return *b, true
}

// forget drops a session (after DELETE, or when its connector is gone).
func (t *sessionTable) forget(resource, id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, sessionKey{resource, id})
}

// sweep drops every session idle for longer than the idle timeout and
// returns how many are left.
func (t *sessionTable) sweep() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for k, b := range t.m {
		if now.Sub(b.lastUsed) > t.idle {
			delete(t.m, k)
		}
	}
	return len(t.m)
}
