package connector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/airlockhq/airlock/pkg/token"
)

// keyUpdateWait is how long a request whose assertion names an unknown
// key waits for the edge's key update, which may travel behind it on the
// control stream.
const keyUpdateWait = 2 * time.Second

// edgeKeys are the signing keys one edge announced on a tunnel; they
// verify the identity assertion of every request it sends. It is safe for
// concurrent use.
type edgeKeys struct {
	issuer string

	// mu guards keys and changed.
	mu      sync.Mutex
	keys    *token.PublicKeys
	changed chan struct{} // closed at the next update
}

func newEdgeKeys(issuer string, jwks []byte) (*edgeKeys, error) {
	k := &edgeKeys{issuer: issuer, changed: make(chan struct{})}
	if err := k.set(jwks); err != nil {
		return nil, err
	}
	return k, nil
}

// set replaces the keys with a JWKS from the edge.
func (k *edgeKeys) set(jwks []byte) error {
	pk, err := token.ParseJWKS(jwks)
	if err != nil {
		return fmt.Errorf("reading the edge's signing keys: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = pk
	close(k.changed)
	k.changed = make(chan struct{})
	return nil
}

// Lookup implements [token.KeyLookup].
func (k *edgeKeys) Lookup(kid string) (*token.Key, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys.Lookup(kid)
}

// waitChange waits for a key update on changed, at most keyUpdateWait.
func waitChange(ctx context.Context, changed <-chan struct{}) {
	t := time.NewTimer(keyUpdateWait)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
	}
}

// verify checks the identity assertion of a request for resource.
func (k *edgeKeys) verify(ctx context.Context, raw, resource string) (*token.AssertionClaims, error) {
	if raw == "" {
		return nil, errors.New("the request carries no identity assertion")
	}
	v := &token.Verifier{Keys: k, Issuer: k.issuer, MaxLifetime: token.AssertionLifetime, Leeway: assertionLeeway}
	// Take the update channel before looking: an update that lands
	// between a failed lookup and the wait must still wake us.
	k.mu.Lock()
	changed := k.changed
	k.mu.Unlock()
	c, err := v.VerifyAssertion(raw, resource)
	if errors.Is(err, token.ErrUnknownKey) {
		waitChange(ctx, changed)
		c, err = v.VerifyAssertion(raw, resource)
	}
	return c, err
}

// assertionLeeway is the clock skew allowed between edge and connector.
const assertionLeeway = 5 * time.Second
