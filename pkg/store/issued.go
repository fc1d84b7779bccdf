package store

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Issued records the latest certificate the edge issued to one identity.
type Issued struct {
	// Identity is the SPIFFE ID of the certificate; it is the record's key.
	Identity string `json:"identity"`
	// Kind is what the identity is: "agent" or "connector".
	Kind string `json:"kind"`
	// Name is the identity's name.
	Name string `json:"name"`
	// Serial is the certificate's serial in decimal.
	Serial string `json:"serial"`
	// Fingerprint is the hex SHA-256 of the certificate's DER.
	Fingerprint string `json:"fingerprint"`
	// NotBefore is the start of the certificate's validity.
	NotBefore time.Time `json:"not_before"`
	// NotAfter is the end of the certificate's validity.
	NotAfter time.Time `json:"not_after"`
	// IssuedAt is when the edge issued the certificate.
	IssuedAt time.Time `json:"issued_at"`
	// Via is how the certificate was issued: "enroll", "renew" or "issue".
	Via string `json:"via"`
	// LastSeen is when the identity last connected; zero if never seen.
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// RecordIssued stores c as the latest certificate of c.Identity, replacing
// the earlier record of that identity but keeping its LastSeen; c.LastSeen
// is ignored. Identity must not be empty.
func (s *Store) RecordIssued(c Issued) error {
	if c.Identity == "" {
		return fmt.Errorf("recording issued certificate %s: identity must not be empty", c.Serial)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketIssued))
		var old Issued
		if _, err := getJSON(b, c.Identity, &old); err != nil {
			return err
		}
		c.LastSeen = old.LastSeen
		return putJSON(b, c.Identity, c)
	})
	if err != nil {
		return fmt.Errorf("recording issued certificate for %s: %w", c.Identity, err)
	}
	return nil
}

// Identities returns the latest record of every identity, sorted by
// Identity.
func (s *Store) Identities() ([]Issued, error) {
	var ids []Issued
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		// Keys are the identities, and bbolt iterates in key order.
		ids, err = listJSON[Issued](tx.Bucket([]byte(bucketIssued)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing identities: %w", err)
	}
	return ids, nil
}

// Touch sets LastSeen of identity to at. An identity without a record is
// left alone and gives a nil error.
func (s *Store) Touch(identity string, at time.Time) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketIssued))
		var c Issued
		found, err := getJSON(b, identity, &c)
		if err != nil || !found {
			return err
		}
		c.LastSeen = at
		return putJSON(b, identity, c)
	})
	if err != nil {
		return fmt.Errorf("touching identity %s: %w", identity, err)
	}
	return nil
}
