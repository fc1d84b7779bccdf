package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// ErrNoPeerCertificate is returned when the TLS peer presented no verified
// certificate.
var ErrNoPeerCertificate = errors.New("no verified client certificate")

// WrongKindError says that a peer's certificate names an identity of
// another kind than the one the endpoint serves.
type WrongKindError struct {
	Identity Identity
	Want     []Kind
}

func (e *WrongKindError) Error() string {
	return fmt.Sprintf("certificate identity %s is a %s, not a %v", e.Identity, e.Identity.Kind, e.Want)
}

// PeerIdentity returns the identity of a TLS peer whose chain crypto/tls
// has verified, checking that it belongs to the trust domain and is of one
// of the wanted kinds. It returns [ErrNoPeerCertificate] when there is no
// verified chain and a *[WrongKindError] for another kind.
func PeerIdentity(cs tls.ConnectionState, domain string, kinds ...Kind) (Identity, *x509.Certificate, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, nil, ErrNoPeerCertificate
	}
	leaf := cs.VerifiedChains[0][0]
	id, err := IdentityOf(leaf)
	if err != nil {
		return Identity{}, leaf, err
	}
	if id.Domain != domain {
		return Identity{}, leaf, fmt.Errorf("certificate identity %s is outside trust domain %s", id, domain)
	}
	if !slices.Contains(kinds, id.Kind) {
		return id, leaf, &WrongKindError{Identity: id, Want: kinds}
	}
	return id, leaf, nil
}
