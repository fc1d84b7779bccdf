// Package assertion shows how an MCP server behind Airlock can check the
// identity assertion the edge attaches to every request it forwards
// (header Airlock-Assertion): who the agent is, which resource the edge
// authorized the call for, and a digest of exactly that request.
//
// The connector already refuses requests without a valid assertion;
// checking again in the server means that even a process that can reach
// the server's port directly cannot call it as an agent. Wrap the
// server's handler:
//
//	keys := assertion.NewKeys("https://edge.example.com:8443")
//	http.Handle("/mcp", assertion.Require(keys, "demo", mcpHandler))
//
// and read the agent in the handler with [Agent].
package assertion

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/airlockhq/airlock/pkg/token"
)

// MaxBody bounds the body Require reads to check its digest.
const MaxBody = 16 << 20

// Keys fetches and caches the edge's published signing keys
// (/.well-known/jwks.json), fetching again at most once a minute when an
// assertion names a key it does not know. It is safe for concurrent use.
type Keys struct {
	// Issuer is the edge's public URL, the iss of its assertions.
	Issuer string
	// Client fetches the JWKS; it must trust the edge's CA (Airlock's
	// ca.pem). Nil means http.DefaultClient.
	Client *http.Client

	// mu guards keys and fetched.
	mu      sync.Mutex
	keys    *token.PublicKeys
	fetched time.Time
}

// NewKeys returns the keys of the edge at issuer.
func NewKeys(issuer string) *Keys { return &Keys{Issuer: issuer} }

// Lookup implements [token.KeyLookup].
func (k *Keys) Lookup(kid string) (*token.Key, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys != nil {
		if key, ok := k.keys.Lookup(kid); ok {
			return key, true
		}
	}
	if time.Since(k.fetched) < time.Minute && k.keys != nil {
		return nil, false
	}
	if err := k.fetchLocked(); err != nil {
		return nil, false
	}
	return k.keys.Lookup(kid)
}

func (k *Keys) fetchLocked() error {
	client := k.Client
	if client == nil {
		client = http.DefaultClient
	}
	k.fetched = time.Now()
	url := k.Issuer + token.PathJWKS
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading %s: %w", url, err)
	}
	pk, err := token.ParseJWKS(data)
	if err != nil {
		return fmt.Errorf("reading %s: %w", url, err)
	}
	k.keys = pk
	return nil
}

type agentKey struct{}

// Agent returns the verified assertion of the request, set by Require.
func Agent(ctx context.Context) (*token.AssertionClaims, bool) {
	c, ok := ctx.Value(agentKey{}).(*token.AssertionClaims)
	return c, ok
}

// Require lets a request through to next only with a valid assertion of
// the edge for resource that matches the request's method and body;
// anything else gets 401.
func Require(keys *Keys, resource string, next http.Handler) http.Handler {
	v := &token.Verifier{Keys: keys, Issuer: keys.Issuer, MaxLifetime: token.AssertionLifetime,
		Leeway: 5 * time.Second}
	var replays token.ReplayCache
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, err := v.VerifyAssertion(r.Header.Get(token.AssertionHeader), resource)
		if err != nil {
			http.Error(w, "a valid Airlock identity assertion is required", http.StatusUnauthorized)
			return
		}
		// An assertion is a receipt for one call: refuse it the second time.
		if !replays.First(claims.ID, claims.ExpiresAt.Add(5*time.Second), time.Now()) {
			http.Error(w, "this Airlock identity assertion was already used", http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			http.Error(w, "request body unreadable or too large", http.StatusRequestEntityTooLarge)
			return
		}
		if claims.Request.HTTPMethod != r.Method || claims.Request.BodySHA256 != token.BodyDigest(body) {
			http.Error(w, "the request is not the one the edge authorized", http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), agentKey{}, claims)))
	})
}
