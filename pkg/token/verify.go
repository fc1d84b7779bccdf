package token

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWS typ headers. An access token is never accepted as an assertion,
// nor the other way round (RFC 8725 section 3.11).
const (
	TypAccess    = "at+jwt" // RFC 9068
	TypAssertion = "airlock-assertion+jwt"
)

// Limits of verification.
const (
	// MaxTokenBytes bounds a token before it is parsed at all.
	MaxTokenBytes = 8 << 10
	// MaxLeeway bounds the clock skew allowed on exp, nbf and iat.
	MaxLeeway = 30 * time.Second
)

// AccessClaims are the claims of an Airlock access token.
type AccessClaims struct {
	jwt.RegisteredClaims
	// Scope is the space-separated scope (see [Scope]).
	Scope string `json:"scope"`
	// ClientID is the agent's SPIFFE ID, as RFC 9068 asks.
	ClientID string `json:"client_id,omitempty"`
	// Cnf binds the token to the agent's certificate (RFC 8705 section 3).
	Cnf *Confirmation `json:"cnf,omitempty"`
}

// Confirmation is the cnf claim of a certificate-bound token.
type Confirmation struct {
	// X5tS256 is the base64url SHA-256 of the certificate's DER.
	X5tS256 string `json:"x5t#S256"`
}

// Thumbprint returns the RFC 8705 x5t#S256 thumbprint of a certificate.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// InvalidError says why a token was refused. Its text is for logs; the
// peer learns only that the token is invalid.
type InvalidError struct {
	Reason string
	Err    error
}

func (e *InvalidError) Error() string {
	if e.Err != nil {
		return "invalid token: " + e.Reason + ": " + e.Err.Error()
	}
	return "invalid token: " + e.Reason
}

func (e *InvalidError) Unwrap() error { return e.Err }

// ErrUnknownKey is in the chain of an [InvalidError] for a token whose
// kid names no published key.
var ErrUnknownKey = errors.New("unknown signing key")

func invalid(reason string, err error) error { return &InvalidError{Reason: reason, Err: err} }

// forbiddenHeaders may point a verifier at keys the token chose itself
// (RFC 8725 section 3.10); a token carrying any of them is refused.
var forbiddenHeaders = []string{"jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "crit"}

// Verifier checks Airlock JWTs: access tokens at the edge, assertions at
// the connector. It is safe for concurrent use.
type Verifier struct {
	// Keys finds the key a token names.
	Keys KeyLookup
	// Issuer is the only accepted iss.
	Issuer string
	// MaxLifetime bounds exp - iat.
	MaxLifetime time.Duration
	// Leeway is the clock skew allowed; at most [MaxLeeway].
	Leeway time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// parse checks the signature and the standard claims of raw for the
// audience and fills claims.
func (v *Verifier) parse(raw, typ, audience string, claims jwt.Claims) error {
	if len(raw) > MaxTokenBytes {
		reason := fmt.Sprintf("token of %d bytes is over the limit of %d", len(raw), MaxTokenBytes)
		return invalid(reason, nil)
	}
	now := v.Now
	if now == nil {
		now = time.Now
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{AlgES256, AlgEdDSA}),
		jwt.WithIssuer(v.Issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(min(v.Leeway, MaxLeeway)),
		jwt.WithTimeFunc(now),
		// One token, one spelling: base64 with stray padding bits would
		// let other strings carry the same signed bytes.
		jwt.WithStrictDecoding(),
	)
	keyFunc := func(t *jwt.Token) (any, error) { return v.key(t, typ) }
	_, err := p.ParseWithClaims(raw, claims, keyFunc)
	if err != nil {
		return invalid("verifying", err)
	}
	return nil
}

// key picks the verification key of t: the published key its kid names,
// only for the one algorithm of that key.
func (v *Verifier) key(t *jwt.Token, typ string) (any, error) {
	for _, h := range forbiddenHeaders {
		if _, ok := t.Header[h]; ok {
			return nil, fmt.Errorf("header %q is not accepted", h)
		}
	}
	if got, _ := t.Header["typ"].(string); got != typ {
		return nil, fmt.Errorf("typ %q, want %q", got, typ)
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errors.New("no kid")
	}
	k, ok := v.Keys.Lookup(kid)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, kid)
	}
	if t.Method.Alg() != k.Alg {
		return nil, fmt.Errorf(
			"algorithm %s, but key %q signs only with %s",
			t.Method.Alg(),
			kid,
			k.Alg,
		)
	}
	return k.Public, nil
}

// checkCommon checks what every Airlock token must carry beyond the
// parser's checks: sub, jti, iat and a bounded lifetime.
func (v *Verifier) checkCommon(c *jwt.RegisteredClaims) error {
	switch {
	case c.Subject == "":
		return invalid("no sub", nil)
	case c.ID == "":
		return invalid("no jti", nil)
	case c.IssuedAt == nil:
		return invalid("no iat", nil)
	}
	if life := c.ExpiresAt.Sub(c.IssuedAt.Time); life > v.MaxLifetime {
		reason := fmt.Sprintf("lifetime %s is over the maximum of %s", life, v.MaxLifetime)
		return invalid(reason, nil)
	}
	return nil
}

// VerifyAccess checks an access token presented to the MCP endpoint
// audience over a TLS connection whose client certificate is cert: the
// signature under a published key with that key's algorithm, typ, iss,
// aud, exp, nbf and iat within the leeway, the lifetime, sub, jti, and
// the binding to cert (RFC 8705 section 3). Every failure is an
// [*InvalidError].
func (v *Verifier) VerifyAccess(
	raw, audience string,
	cert *x509.Certificate,
) (*AccessClaims, error) {
	var c AccessClaims
	if err := v.parse(raw, TypAccess, audience, &c); err != nil {
		return nil, err
	}
	if err := v.checkCommon(&c.RegisteredClaims); err != nil {
		return nil, err
	}
	if c.Cnf == nil || c.Cnf.X5tS256 == "" {
		return nil, invalid("no cnf: the token is not bound to a certificate", nil)
	}
	if c.Cnf.X5tS256 != Thumbprint(cert) {
		return nil, invalid("bound to another certificate than the one presented", nil)
	}
	if c.Scope == "" {
		return nil, invalid("no scope", nil)
	}
	return &c, nil
}
