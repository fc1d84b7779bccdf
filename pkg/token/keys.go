package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/airlockhq/airlock/pkg/store"
)

// Signing algorithms the edge signs with (RFC 7518 and RFC 8037).
const (
	AlgES256 = "ES256"
	AlgEdDSA = "EdDSA"
)

// keysBucket is the store bucket of signing keys.
const keysBucket = "token-keys"

// Storage keeps signing keys; [store.Store] implements it. Records hold
// private keys: the store must be private to the edge (bbolt file 0600).
type Storage interface {
	Put(bucket, key string, value []byte) error
	Delete(bucket, key string) error
	List(bucket string) ([]store.KV, error)
}

// Key is one signing key.
type Key struct {
	// ID is the JWS kid.
	ID string
	// Alg is the only algorithm tokens under this key may use.
	Alg string
	// Signer is the private key; nil for keys known only by their public
	// half (a connector's copy of the edge's keys).
	Signer crypto.Signer
	// Public is the public key.
	Public crypto.PublicKey
	// CreatedAt is when the key was made.
	CreatedAt time.Time
	// RetiredAt is when a newer key replaced it for signing; zero for the
	// signing key.
	RetiredAt time.Time
}

// keyRecord is a Key as stored.
type keyRecord struct {
	ID        string    `json:"id"`
	Alg       string    `json:"alg"`
	PKCS8     []byte    `json:"pkcs8"`
	CreatedAt time.Time `json:"created_at"`
	RetiredAt time.Time `json:"retired_at,omitzero"`
}

// KeySet holds the edge's signing keys: one signs, retired ones stay
// published until every token they signed has expired. It is safe for
// concurrent use.
type KeySet struct {
	st Storage
	// keep is how long a retired key stays published: the longest
	// lifetime of anything it signed, plus leeway.
	keep time.Duration
	now  func() time.Time

	// mu guards keys (newest first) and onChange.
	mu       sync.RWMutex
	keys     []*Key
	onChange []func()
}

// OpenKeySet loads the keys from st, removes retired keys past keep, and
// makes a first key with alg when there is none. now may be nil.
func OpenKeySet(st Storage, alg string, keep time.Duration, now func() time.Time) (*KeySet, error) {
	if now == nil {
		now = time.Now
	}
	ks := &KeySet{st: st, keep: keep, now: now}
	records, err := st.List(keysBucket)
	if err != nil {
		return nil, fmt.Errorf("loading signing keys: %w", err)
	}
	for _, rec := range records {
		k, err := decodeKey(rec.Value)
		if err != nil {
			return nil, fmt.Errorf("loading signing keys: %w", err)
		}
		ks.keys = append(ks.keys, k)
	}
	slices.SortFunc(ks.keys, func(a, b *Key) int { return b.CreatedAt.Compare(a.CreatedAt) })
	if len(ks.keys) == 0 || !ks.keys[0].RetiredAt.IsZero() {
		if _, err := ks.Rotate(alg); err != nil {
			return nil, err
		}
	}
	if _, err := ks.Prune(); err != nil {
		return nil, err
	}
	return ks, nil
}

func decodeKey(v []byte) (*Key, error) {
	var rec keyRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("decoding key record: %w", err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(rec.PKCS8)
	if err != nil {
		return nil, fmt.Errorf("decoding key %s: %w", rec.ID, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok || algOf(signer.Public()) != rec.Alg {
		return nil, fmt.Errorf("key %s does not match its algorithm %s", rec.ID, rec.Alg)
	}
	return &Key{ID: rec.ID, Alg: rec.Alg, Signer: signer, Public: signer.Public(),
		CreatedAt: rec.CreatedAt, RetiredAt: rec.RetiredAt}, nil
}

// algOf returns the JWS algorithm of a public key, or "".
func algOf(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return AlgES256
		}
	case ed25519.PublicKey:
		return AlgEdDSA
	}
	return ""
}

func newSigner(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgES256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgEdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf(
		"signing algorithm %q is not supported (want %s or %s)",
		alg,
		AlgES256,
		AlgEdDSA,
	)
}

// Rotate makes a new signing key with alg (ES256 when empty) and retires
// the current one, which stays published for the keep period. It returns
// the new key.
func (ks *KeySet) Rotate(alg string) (*Key, error) {
	signer, err := newSigner(alg)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	rand.Read(id[:])
	now := ks.now()
	k := &Key{ID: hex.EncodeToString(id[:]), Alg: algOf(signer.Public()), Signer: signer,
		Public: signer.Public(), CreatedAt: now}

	ks.mu.Lock()
	var retired *Key
	if len(ks.keys) > 0 && ks.keys[0].RetiredAt.IsZero() {
		r := *ks.keys[0]
		r.RetiredAt = now
		retired = &r
	}
	for _, rec := range []*Key{retired, k} {
		if rec == nil {
			continue
		}
		if err := ks.putLocked(rec); err != nil {
			ks.mu.Unlock()
			return nil, err
		}
	}
	if retired != nil {
		ks.keys[0] = retired
	}
	ks.keys = append([]*Key{k}, ks.keys...)
	ks.mu.Unlock()
	ks.changed()
	return k, nil
}

func (ks *KeySet) putLocked(k *Key) error {
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
	if err != nil {
		return fmt.Errorf("encoding key %s: %w", k.ID, err)
	}
	rec, _ := json.Marshal(keyRecord{
		ID:        k.ID,
		Alg:       k.Alg,
		PKCS8:     der,
		CreatedAt: k.CreatedAt,
		RetiredAt: k.RetiredAt,
	})
	if err := ks.st.Put(keysBucket, k.ID, rec); err != nil {
		return fmt.Errorf("storing key %s: %w", k.ID, err)
	}
	return nil
}

// Prune removes the retired keys whose keep period is over and returns
// their IDs. Tokens they signed are refused from then on as signed by an
// unknown key.
func (ks *KeySet) Prune() ([]string, error) {
	ks.mu.Lock()
	var gone []string
	cutoff := ks.now().Add(-ks.keep)
	kept := ks.keys[:0:0]
	for _, k := range ks.keys {
		if k.RetiredAt.IsZero() || k.RetiredAt.After(cutoff) {
			kept = append(kept, k)
			continue
		}
		if err := ks.st.Delete(keysBucket, k.ID); err != nil {
			ks.mu.Unlock()
			return nil, fmt.Errorf("removing key %s: %w", k.ID, err)
		}
		gone = append(gone, k.ID)
	}
	ks.keys = kept
	ks.mu.Unlock()
	if len(gone) > 0 {
		ks.changed()
	}
	return gone, nil
}

// OnChange registers fn to run after every rotation or removal.
func (ks *KeySet) OnChange(fn func()) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.onChange = append(ks.onChange, fn)
}

func (ks *KeySet) changed() {
	ks.mu.RLock()
	fns := slices.Clone(ks.onChange)
	ks.mu.RUnlock()
	for _, fn := range fns {
		fn()
	}
}

// Signing returns the key that signs now.
func (ks *KeySet) Signing() *Key {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.keys[0]
}

// Keys returns the published keys, newest first. The slice is the
// caller's; the keys are shared and must not be changed.
func (ks *KeySet) Keys() []*Key {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return slices.Clone(ks.keys)
}

// Lookup returns the published key with the ID.
func (ks *KeySet) Lookup(kid string) (*Key, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for _, k := range ks.keys {
		if k.ID == kid {
			return k, true
		}
	}
	return nil, false
}

// JWKS returns the published public keys as a JSON Web Key Set (RFC 7517
// section 5).
func (ks *KeySet) JWKS() ([]byte, error) {
	var set jose.JSONWebKeySet
	for _, k := range ks.Keys() {
		jwk := jose.JSONWebKey{Key: k.Public, KeyID: k.ID, Algorithm: k.Alg, Use: "sig"}
		set.Keys = append(set.Keys, jwk)
	}
	return json.Marshal(set)
}

// Sign signs claims with the signing key, with the JWS typ header typ.
func (ks *KeySet) Sign(typ string, claims jwt.Claims) (string, error) {
	k := ks.Signing()
	t := jwt.NewWithClaims(signingMethod(k.Alg), claims)
	t.Header["kid"] = k.ID
	t.Header["typ"] = typ
	return t.SignedString(k.Signer)
}

func signingMethod(alg string) jwt.SigningMethod {
	if alg == AlgEdDSA {
		return jwt.SigningMethodEdDSA
	}
	return jwt.SigningMethodES256
}

// PublicKeys is a read-only set of published keys, as a verifier that
// does not sign holds them (a connector, an upstream server).
type PublicKeys struct {
	keys []*Key
}

// ParseJWKS reads a JSON Web Key Set of ES256 and EdDSA signing keys.
// Keys of other types or uses are skipped; a set without any usable key
// is an error.
func ParseJWKS(data []byte) (*PublicKeys, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("reading JWKS: %w", err)
	}
	pk := &PublicKeys{}
	for _, jwk := range set.Keys {
		alg := algOf(jwk.Key)
		otherUse := jwk.Use != "" && jwk.Use != "sig"
		if alg == "" || jwk.KeyID == "" || otherUse || jwk.Algorithm != alg {
			continue
		}
		pk.keys = append(pk.keys, &Key{ID: jwk.KeyID, Alg: alg, Public: jwk.Key})
	}
	if len(pk.keys) == 0 {
		return nil, errors.New("reading JWKS: no ES256 or EdDSA signing key")
	}
	return pk, nil
}

// Lookup returns the key with the ID.
func (pk *PublicKeys) Lookup(kid string) (*Key, bool) {
	for _, k := range pk.keys {
		if k.ID == kid {
			return k, true
		}
	}
	return nil, false
}

// KeyLookup finds a published key by its kid; [KeySet] and [PublicKeys]
// implement it.
type KeyLookup interface {
	Lookup(kid string) (*Key, bool)
}

var (
	_ KeyLookup = (*KeySet)(nil)
	_ KeyLookup = (*PublicKeys)(nil)
)
