package edge

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/airlockhq/airlock/pkg/logkey"
	"github.com/airlockhq/airlock/pkg/mcp"
	"github.com/airlockhq/airlock/pkg/token"
)

// authorizeToken checks the request's access token (RFC 6750 section
// 2.1, header only: checkTarget refuses any query string, tokens in it
// included) against this endpoint and the agent's certificate.
// A missing or invalid token gets 401 with a challenge that points at the
// endpoint's protected-resource metadata (RFC 9728 section 5.1).
func (e *Edge) authorizeToken(w http.ResponseWriter, r *http.Request, x *exchange) bool {
	scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if raw == "" || !strings.EqualFold(scheme, "Bearer") {
		e.metrics.tokens.WithLabelValues("missing").Inc()
		e.challenge(w, x, http.StatusUnauthorized, "",
			"an access token is required: get one from the token endpoint with the agent certificate")
		return false
	}
	vt, err := e.verifyCached(strings.TrimSpace(raw), e.endpointURL(x.resource), x.leaf)
	if err == nil && vt.claims.Subject != x.agent.String() {
		err = fmt.Errorf("token of %s presented by %s", vt.claims.Subject, x.agent)
	}
	if err != nil {
		e.metrics.tokens.WithLabelValues("invalid").Inc()
		e.logger.InfoContext(r.Context(), "access token refused", logkey.RequestID, x.id,
			logkey.AgentID, x.agent.String(), logkey.Error, err)
		e.challenge(
			w,
			x,
			http.StatusUnauthorized,
			"invalid_token",
			"the access token is invalid or expired",
		)
		return false
	}
	if vt.scopeErr != nil {
		e.challenge(
			w,
			x,
			http.StatusUnauthorized,
			"invalid_token",
			"the access token's scope is unreadable",
		)
		return false
	}
	x.scope, x.tokenID, x.claims = vt.scope, vt.claims.ID, vt.claims
	return true
}

// checkScope enforces the token's scope as a ceiling on what the message
// does: 403 insufficient_scope names the scope that would allow it.
func (e *Edge) checkScope(w http.ResponseWriter, x *exchange, method, name string) bool {
	if x.scope.Allows(x.resource, method, name) {
		return true
	}
	e.metrics.tokens.WithLabelValues("insufficient_scope").Inc()
	need := token.Needed(x.resource, method, name)
	c := fmt.Sprintf(
		`Bearer error="insufficient_scope", scope=%q, resource_metadata=%q`,
		need,
		e.metadataURL(x.resource),
	)
	w.Header().Set("WWW-Authenticate", c)
	msg := fmt.Sprintf(
		"the access token's scope does not allow %s; it needs %s",
		describe(method, name),
		need,
	)
	x.fail(w, http.StatusForbidden, mcp.CodeInsufficientScope, msg)
	return false
}

func describe(method, name string) string {
	if name == "" {
		return method
	}
	return fmt.Sprintf("%s of %q", method, name)
}

// challenge answers with a Bearer challenge and a JSON-RPC error.
func (e *Edge) challenge(w http.ResponseWriter, x *exchange, status int, code, msg string) {
	c := fmt.Sprintf(`Bearer resource_metadata=%q`, e.metadataURL(x.resource))
	if code != "" {
		c = fmt.Sprintf(
			`Bearer error=%q, error_description=%q, resource_metadata=%q`,
			code,
			msg,
			e.metadataURL(x.resource),
		)
	}
	w.Header().Set("WWW-Authenticate", c)
	x.fail(w, status, mcp.CodeUnauthenticated, msg)
}

// verifiedToken is an access token that passed verification, with its
// scope read once.
type verifiedToken struct {
	claims   *token.AccessClaims
	scope    token.Scope
	scopeErr error
}

// tokenCache remembers verified tokens, so that an agent's token is
// checked cryptographically once and then only for time and binding. It
// is safe for concurrent use.
type tokenCache struct {
	// mu guards entries and gen.
	mu      sync.Mutex
	entries map[string]*verifiedToken
	gen     uint64 // counts clears
}

// maxCachedTokens bounds the cache; when full it starts over.
const maxCachedTokens = 10000

// get returns the token cached under key, and the generation to put a
// new entry with.
func (c *tokenCache) get(key string) (*verifiedToken, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[key], c.gen
}

// put caches vt unless the cache was cleared since gen: a token verified
// under a key removed meanwhile must not come back.
func (c *tokenCache) put(key string, vt *verifiedToken, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.entries == nil || len(c.entries) >= maxCachedTokens {
		c.entries = map[string]*verifiedToken{}
	}
	c.entries[key] = vt
}

// clear forgets every token; the signing keys changed.
func (c *tokenCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = nil
	c.gen++
}

// verifyCached verifies raw for the audience and certificate. A token
// verified before is only checked again for its expiry and binding, which
// are all that can change for the same bytes.
func (e *Edge) verifyCached(
	raw, audience string,
	leaf *x509.Certificate,
) (*verifiedToken, error) {
	key := audience + " " + raw
	vt, gen := e.tokens.get(key)
	if vt != nil {
		if e.now().After(vt.claims.ExpiresAt.Add(tokenLeeway)) {
			return nil, &token.InvalidError{Reason: "expired"}
		}
		if vt.claims.Cnf.X5tS256 != token.Thumbprint(leaf) {
			return nil, &token.InvalidError{
				Reason: "bound to another certificate than the one presented",
			}
		}
		return vt, nil
	}
	c, err := e.verifier.VerifyAccess(raw, audience, leaf)
	if err != nil {
		return nil, err
	}
	vt = &verifiedToken{claims: c}
	vt.scope, vt.scopeErr = token.ParseScope(c.Scope, nil)
	e.tokens.put(key, vt, gen)
	return vt, nil
}

// assertion signs the identity assertion of a request the edge is about
// to forward.
func (e *Edge) assertion(x *exchange, httpMethod string, body []byte) (string, error) {
	digest := token.RequestDigest{HTTPMethod: httpMethod, Method: x.method, Name: x.target,
		BodySHA256: token.BodyDigest(body)}
	claims := token.NewAssertion(
		e.issuer,
		x.agent.String(),
		x.resource,
		digest,
		x.scope.String(),
		time.Now(),
	)
	return e.keys.Sign(token.TypAssertion, claims)
}
