package store

import (
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// errRevocationTarget is returned for a revocation that does not name
// exactly one of an identity and a serial.
var errRevocationTarget = errors.New("exactly one of identity and serial must be set")

// Revocation withdraws trust from certificates before they expire.
// Exactly one of Identity and Serial is set.
type Revocation struct {
	// Identity is a SPIFFE ID: every certificate of it issued at or before
	// RevokedAt is revoked.
	Identity string `json:"identity,omitempty"`
	// Serial is the decimal serial of the one certificate revoked.
	Serial string `json:"serial,omitempty"`
	// Reason is free text for operators; it may be empty.
	Reason string `json:"reason,omitempty"`
	// RevokedAt is when the revocation was made.
	RevokedAt time.Time `json:"revoked_at"`
}

// key returns the record key of r: "identity:<id>" or "serial:<serial>".
func (r Revocation) key() (string, error) {
	switch {
	case (r.Identity == "") == (r.Serial == ""):
		return "", errRevocationTarget
	case r.Identity != "":
		return "identity:" + r.Identity, nil
	default:
		return "serial:" + r.Serial, nil
	}
}

// AddRevocation stores r, replacing an earlier revocation of the same
// identity or serial. It returns an error when r sets both or neither of
// Identity and Serial.
//
// NOTE: a replacement never moves RevokedAt backward: if the stored one is
// later, it is kept, so that re-revoking an identity never un-revokes the
// certificates issued in between.
func (s *Store) AddRevocation(r Revocation) error {
	key, err := r.key()
	if err != nil {
		return fmt.Errorf("adding revocation: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketRevocations))
		var old Revocation
		found, err := getJSON(b, key, &old)
		if err != nil {
			return err
		}
		if found && old.RevokedAt.After(r.RevokedAt) {
			r.RevokedAt = old.RevokedAt
		}
		return putJSON(b, key, r)
	})
	if err != nil {
		return fmt.Errorf("adding revocation %s: %w", key, err)
	}
	return nil
}

// Revocations returns every revocation, oldest RevokedAt first (identity
// revocations before serial ones, then by key, among those made at the same
// instant).
func (s *Store) Revocations() ([]Revocation, error) {
	var revs []Revocation
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		revs, err = listJSON[Revocation](tx.Bucket([]byte(bucketRevocations)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing revocations: %w", err)
	}

	// Records come in key order; the stable sort keeps it for ties.
	slices.SortStableFunc(revs, func(a, b Revocation) int {
		return a.RevokedAt.Compare(b.RevokedAt)
	})
	return revs, nil
}
