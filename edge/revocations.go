package edge

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/pkg/store"
)

// ErrRevoked is the cause of a request or tunnel ended by a revocation.
var ErrRevoked = errors.New("certificate revoked")

// ErrCertExpired is the cause of a request or tunnel ended because the
// certificate that opened it expired.
var ErrCertExpired = errors.New("certificate expired")

// revocations is the in-memory copy of the store's revocation list,
// consulted at every handshake and every request. It is safe for
// concurrent use.
type revocations struct {
	// mu guards the maps.
	mu         sync.RWMutex
	byIdentity map[string]store.Revocation
	bySerial   map[string]store.Revocation
}

func loadRevocations(st *store.Store) (*revocations, error) {
	list, err := st.Revocations()
	if err != nil {
		return nil, fmt.Errorf("loading revocations: %w", err)
	}
	r := &revocations{byIdentity: map[string]store.Revocation{}, bySerial: map[string]store.Revocation{}}
	for _, rev := range list {
		r.addLocked(rev)
	}
	return r, nil
}

func (r *revocations) add(rev store.Revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(rev)
}

func (r *revocations) addLocked(rev store.Revocation) {
	if rev.Serial != "" {
		r.bySerial[rev.Serial] = rev
		return
	}
	r.byIdentity[rev.Identity] = rev
}

// check returns the revocation that covers leaf, if any. An identity
// revocation covers every certificate of the identity issued up to the
// moment of the revocation, so the same name can be enrolled again later
// with a new join token.
func (r *revocations) check(id certs.Identity, leaf *x509.Certificate) (store.Revocation, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if rev, ok := r.bySerial[leaf.SerialNumber.String()]; ok {
		return rev, true
	}
	rev, ok := r.byIdentity[id.String()]
	if ok && !issuedAt(leaf).After(rev.RevokedAt) {
		return rev, true
	}
	return store.Revocation{}, false
}

// coversRecord reports whether the revocations cover the certificate an
// issue record describes.
func (r *revocations) coversRecord(rec store.Issued) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.bySerial[rec.Serial]; ok {
		return true
	}
	rev, ok := r.byIdentity[rec.Identity]
	return ok && !rec.NotBefore.Add(certs.Backdate).After(rev.RevokedAt)
}

// issuedAt is when the CA signed leaf: the CA backdates NotBefore.
func issuedAt(leaf *x509.Certificate) time.Time {
	return leaf.NotBefore.Add(certs.Backdate)
}

// parseRevocationTarget reads what `airlock admin revoke` names: a SPIFFE
// ID, kind/name in this trust domain, or a decimal certificate serial.
func parseRevocationTarget(domain, target string) (store.Revocation, error) {
	target = strings.TrimSpace(target)
	if strings.HasPrefix(target, "spiffe://") {
		id, err := certs.ParseIdentity(target)
		if err != nil {
			return store.Revocation{}, err
		}
		if id.Domain != domain {
			return store.Revocation{}, fmt.Errorf("identity %s is outside trust domain %s", id, domain)
		}
		return store.Revocation{Identity: id.String()}, nil
	}
	if kind, name, ok := strings.Cut(target, "/"); ok {
		k, err := certs.ParseKind(kind)
		if err != nil {
			return store.Revocation{}, err
		}
		id, err := certs.NewIdentity(domain, k, name)
		if err != nil {
			return store.Revocation{}, err
		}
		return store.Revocation{Identity: id.String()}, nil
	}
	if n, ok := new(big.Int).SetString(target, 10); ok && n.Sign() > 0 {
		return store.Revocation{Serial: n.String()}, nil
	}
	return store.Revocation{}, fmt.Errorf("revocation target %q is neither a SPIFFE ID, kind/name, nor a decimal serial", target)
}
