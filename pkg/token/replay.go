package token

import (
	"sync"
	"time"
)

// ReplayCache remembers the jti of every assertion seen until it expires,
// so that each one is accepted once: an assertion is a receipt for one
// call. It is safe for concurrent use; the zero value is ready.
type ReplayCache struct {
	// mu guards seen.
	mu   sync.Mutex
	seen map[string]time.Time // jti → when it may be forgotten
}

// maxReplayEntries bounds the cache. Entries live at most the assertion
// lifetime plus leeway, so this is far above any real rate; when it is
// reached anyway, new assertions are refused rather than old ones
// forgotten.
const maxReplayEntries = 1 << 20

// First records jti until forget and reports whether it was new. A full
// cache reports false.
func (c *ReplayCache) First(jti string, forget, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]time.Time{}
	}
	if until, ok := c.seen[jti]; ok && now.Before(until) {
		return false
	}
	if len(c.seen) >= maxReplayEntries/2 {
		for k, until := range c.seen {
			if !now.Before(until) {
				delete(c.seen, k)
			}
		}
	}
	if len(c.seen) >= maxReplayEntries {
		return false
	}
	c.seen[jti] = forget
	return true
}
