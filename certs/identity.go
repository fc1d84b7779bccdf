package certs

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// DefaultTrustDomain is the SPIFFE trust domain of a deployment that names
// none.
const DefaultTrustDomain = "airlock.local"

// Kind is the role an identity plays. The kind is part of the SPIFFE path,
// so a certificate of one kind never passes as another.
type Kind string

// The kinds of identity in a deployment.
const (
	KindAgent     Kind = "agent"
	KindConnector Kind = "connector"
	KindEdge      Kind = "edge"
	KindAdmin     Kind = "admin"
)

// ParseKind returns the Kind named s, or an error naming the valid kinds.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindAgent, KindConnector, KindEdge, KindAdmin:
		return k, nil
	}
	return "", fmt.Errorf("unknown identity kind %q (want agent, connector, edge or admin)", s)
}

// ErrNoIdentity is returned when a certificate carries no SPIFFE identity.
var ErrNoIdentity = errors.New("certificate carries no SPIFFE identity")

var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// ValidName reports whether name may be used as the name of an identity:
// 1 to 64 lowercase letters, digits, dots, dashes and underscores, starting
// and ending with a letter or digit.
func ValidName(name string) bool {
	return namePattern.MatchString(name)
}

// Identity is a workload identity: spiffe://<domain>/<kind>/<name>.
// The zero value is not a valid identity.
type Identity struct {
	Domain string
	Kind   Kind
	Name   string
}

// NewIdentity returns the identity of the given kind and name in domain,
// checking every part.
func NewIdentity(domain string, kind Kind, name string) (Identity, error) {
	id := Identity{Domain: domain, Kind: kind, Name: name}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// Validate reports every problem with the identity at once.
func (id Identity) Validate() error {
	var errs []error
	if id.Domain == "" || strings.ContainsAny(id.Domain, "/:@?#") {
		errs = append(errs, fmt.Errorf("invalid trust domain %q", id.Domain))
	}
	if _, err := ParseKind(string(id.Kind)); err != nil {
		errs = append(errs, err)
	}
	if !ValidName(id.Name) {
		errs = append(errs, fmt.Errorf("invalid name %q: use 1 to 64 lowercase letters, digits, '.', '-' or '_'", id.Name))
	}
	return errors.Join(errs...)
}

// URI returns the SPIFFE ID as a URL, ready for a certificate's URI SAN.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.Domain, Path: "/" + string(id.Kind) + "/" + id.Name}
}

// String returns the SPIFFE ID, for example spiffe://airlock.local/agent/ci.
func (id Identity) String() string {
	return id.URI().String()
}

// ParseIdentity parses a SPIFFE ID of the form spiffe://<domain>/<kind>/<name>.
func ParseIdentity(s string) (Identity, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Identity{}, fmt.Errorf("parsing SPIFFE ID %q: %w", s, err)
	}
	if u.Scheme != "spiffe" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" {
		return Identity{}, fmt.Errorf("parsing SPIFFE ID %q: not of the form spiffe://<domain>/<kind>/<name>", s)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 2 {
		return Identity{}, fmt.Errorf("parsing SPIFFE ID %q: path must be /<kind>/<name>", s)
	}
	id := Identity{Domain: u.Host, Kind: Kind(parts[0]), Name: parts[1]}
	if err := id.Validate(); err != nil {
		return Identity{}, fmt.Errorf("parsing SPIFFE ID %q: %w", s, err)
	}
	// Only the canonical spelling is an identity: an empty query or
	// fragment, percent-escapes or a differently cased scheme would let two
	// strings name one identity.
	if id.String() != s {
		return Identity{}, fmt.Errorf("parsing SPIFFE ID %q: not in canonical form (want %q)", s, id.String())
	}
	return id, nil
}

// IdentityOf returns the identity in the certificate's URI SAN. A
// certificate must carry exactly one SPIFFE URI; one with none returns
// [ErrNoIdentity].
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var found []*url.URL
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			found = append(found, u)
		}
	}
	switch len(found) {
	case 0:
		return Identity{}, ErrNoIdentity
	case 1:
		return ParseIdentity(found[0].String())
	default:
		return Identity{}, fmt.Errorf("certificate carries %d SPIFFE IDs, want one", len(found))
	}
}

// Fingerprint returns the hex SHA-256 of the certificate's DER bytes, the
// value Airlock logs to name a certificate.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}
