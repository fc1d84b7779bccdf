package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AssertionHeader carries the edge's identity assertion on every request
// it forwards, to the connector and on to the upstream.
const AssertionHeader = "Airlock-Assertion"

// AssertionLifetime is how long an assertion is valid: long enough to
// cross the tunnel, too short to be worth stealing.
const AssertionLifetime = 30 * time.Second

// AssertionClaims are the claims of an identity assertion: who sent this
// one request, to which resource, and a digest of exactly what the edge
// authorized. sub is the agent's SPIFFE ID, aud the resource name.
type AssertionClaims struct {
	jwt.RegisteredClaims
	// Request describes the authorized request.
	Request RequestDigest `json:"req"`
	// Scope is the scope of the agent's access token.
	Scope string `json:"scope,omitempty"`
}

// RequestDigest pins an assertion to one request.
type RequestDigest struct {
	// HTTPMethod is POST, GET or DELETE.
	HTTPMethod string `json:"http_method"`
	// Method is the JSON-RPC method of a POST, "" for a response or for
	// GET and DELETE.
	Method string `json:"method,omitempty"`
	// Name is the target of the method: the tool, prompt or resource URI.
	Name string `json:"name,omitempty"`
	// BodySHA256 is the base64url SHA-256 of the body, "" without one.
	BodySHA256 string `json:"body_sha256,omitempty"`
}

// BodyDigest returns the BodySHA256 of body: "" when it is empty.
func BodyDigest(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	sum := sha256.Sum256(body)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// NewAssertion returns the claims of an assertion issued now by issuer.
func NewAssertion(issuer, agent, resource string, req RequestDigest, scope string, now time.Time) *AssertionClaims {
	var id [12]byte
	rand.Read(id[:])
	return &AssertionClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   agent,
			Audience:  jwt.ClaimStrings{resource},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(AssertionLifetime)),
			ID:        hex.EncodeToString(id[:]),
		},
		Request: req,
		Scope:   scope,
	}
}

// VerifyAssertion checks an identity assertion for resource: signature,
// typ, iss, aud, times, sub and jti. The caller compares the digest with
// the request it carries. Every failure is an [*InvalidError].
func (v *Verifier) VerifyAssertion(raw, resource string) (*AssertionClaims, error) {
	var c AssertionClaims
	if err := v.parse(raw, TypAssertion, resource, &c); err != nil {
		return nil, err
	}
	if err := v.checkCommon(&c.RegisteredClaims); err != nil {
		return nil, err
	}
	return &c, nil
}

// AssertedAgent returns the agent an identity assertion names, without
// verifying it: only for code behind a connector, which verified the
// assertion before it passed the request on. "" when raw is not one.
func AssertedAgent(raw string) string {
	var c AssertionClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		return ""
	}
	return c.Subject
}
