package enroll

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Paths of the edge's certificate endpoints, on its HTTPS front door.
const (
	// PathEnroll takes a join token and a CSR; no client certificate is
	// needed. POST, JSON [Request] with Token set, answers [Response].
	PathEnroll = "/v1/enroll"
	// PathRenew takes a CSR from a holder of a valid agent or connector
	// certificate, presented over mutual TLS. POST, JSON [Request]
	// without Token, answers [Response].
	PathRenew = "/v1/renew"
	// PathTrustBundle serves the PEM bundle of every root the deployment
	// trusts right now. GET, no client certificate needed.
	PathTrustBundle = "/v1/trust-bundle"
)

// Request is the body of an enrollment or a renewal.
type Request struct {
	// Token is the join token, for enrollment only.
	Token string `json:"token,omitempty"`
	// Kind and Name, for enrollment only, are what the holder expects to
	// become: the edge refuses a token of another kind, or for another
	// name when Name is set, and the token stays unused.
	Kind string `json:"kind,omitempty"`
	Name string `json:"name,omitempty"`
	// CSR is a PEM "CERTIFICATE REQUEST" for the key the holder made. Its
	// names are ignored: the identity comes from the token (enrollment)
	// or the presented certificate (renewal).
	CSR string `json:"csr"`
}

// Response answers a successful enrollment or renewal.
type Response struct {
	// Identity is the SPIFFE ID the certificate asserts.
	Identity string `json:"identity"`
	// Certificate is the PEM chain, leaf first, without the root.
	Certificate string `json:"certificate"`
	// TrustBundle is the PEM bundle of every root the deployment trusts.
	TrustBundle string `json:"trust_bundle"`
}

// ErrorResponse is the body of every refusal (HTTP 4xx or 5xx), in the
// shape of an OAuth 2.0 error (RFC 6749 section 5.2).
type ErrorResponse struct {
	// Error is a stable code, one of the Code constants.
	Error string `json:"error"`
	// Description says what was wrong, for a person.
	Description string `json:"error_description"`
	// RequestID matches the edge's logs.
	RequestID string `json:"request_id,omitempty"`
}

// Error codes of [ErrorResponse].
const (
	CodeInvalidRequest = "invalid_request" // malformed body or CSR
	CodeInvalidToken   = "invalid_token"   // unknown, used, expired, or for another kind or name
	CodeInvalidCSR     = "invalid_csr"     // bad signature, foreign names, weak key
	CodeUnauthorized   = "unauthorized"    // renewal without a valid certificate
	CodeRevoked        = "revoked"         // the identity or the serial is revoked
	CodeServerError    = "server_error"
)

// tokenPrefix starts every join token, so that one found in a log or a
// paste is recognised at once.
const tokenPrefix = "airlock-join-v1"

// JoinToken is a parsed join token:
// airlock-join-v1.<id>.<secret>.<pin>, where pin is the unpadded
// base64url SHA-256 of the DER of a root the edge trusts. The pin lets a
// new host check the edge it enrolls with before it trusts anything.
type JoinToken struct {
	ID     string
	Secret string
	Pin    string
}

// String returns the token in its wire form.
func (t JoinToken) String() string {
	return strings.Join([]string{tokenPrefix, t.ID, t.Secret, t.Pin}, ".")
}

// ErrMalformedToken is returned by [ParseJoinToken] for a string that is
// not a join token.
var ErrMalformedToken = errors.New("malformed join token (want airlock-join-v1.<id>.<secret>.<pin>)")

// ParseJoinToken parses the wire form of a join token.
func ParseJoinToken(s string) (JoinToken, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || parts[0] != tokenPrefix {
		return JoinToken{}, ErrMalformedToken
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 128 || strings.Trim(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return JoinToken{}, ErrMalformedToken
		}
	}
	return JoinToken{ID: parts[1], Secret: parts[2], Pin: parts[3]}, nil
}

// Pin returns the pin of a root certificate's DER bytes, as join tokens
// carry it.
func Pin(rootDER []byte) string {
	sum := sha256.Sum256(rootDER)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// SecretHash returns the SHA-256 of a join token's secret, the only form
// of it the edge stores.
func SecretHash(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// RefusedError is a refusal from the edge's certificate endpoints.
type RefusedError struct {
	Status      int
	Code        string
	Description string
	RequestID   string
}

func (e *RefusedError) Error() string {
	msg := fmt.Sprintf("edge refused (%d): %s", e.Status, e.Description)
	if e.Code != "" {
		msg = fmt.Sprintf("edge refused (%d %s): %s", e.Status, e.Code, e.Description)
	}
	if e.RequestID != "" {
		msg += " (request " + e.RequestID + ")"
	}
	return msg
}
