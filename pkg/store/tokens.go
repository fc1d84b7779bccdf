package store

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Errors of [Store.RedeemJoinToken]. A wrong secret gives ErrTokenUnknown,
// like an unknown ID, so that a caller never learns which one it was.
var (
	ErrTokenUnknown = errors.New("join token unknown")
	ErrTokenUsed    = errors.New("join token already used")
	ErrTokenExpired = errors.New("join token expired")
)

// JoinToken is a single-use token that lets an agent or a connector enroll
// and get its first certificate.
type JoinToken struct {
	// ID names the token; it is the key of its record.
	ID string `json:"id"`
	// Kind is what the token enrolls: "agent" or "connector".
	Kind string `json:"kind"`
	// Name is the name the enrolled identity gets.
	Name string `json:"name"`
	// SecretHash is the SHA-256 of the token's secret; the secret itself
	// is never stored.
	SecretHash []byte `json:"secret_hash"`
	// CreatedAt is when the token was made.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is the last instant at which the token can be redeemed.
	ExpiresAt time.Time `json:"expires_at"`
	// UsedAt is when the token was redeemed; zero while unused.
	UsedAt time.Time `json:"used_at,omitzero"`
	// UsedSerial is the serial of the certificate the token was redeemed
	// for; empty while unused.
	UsedSerial string `json:"used_serial,omitempty"`
}

// PutJoinToken stores a new token. The token needs an ID and a SecretHash of
// [sha256.Size] bytes. A token with the same ID already stored gives an error
// wrapping [ErrExists].
func (s *Store) PutJoinToken(t JoinToken) error {
	if t.ID == "" || len(t.SecretHash) != sha256.Size {
		return fmt.Errorf("storing join token %q: needs an id and a %d-byte secret hash", t.ID, sha256.Size)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketJoinTokens))
		if b.Get([]byte(t.ID)) != nil {
			return ErrExists
		}
		return putJSON(b, t.ID, t)
	})
	if err != nil {
		return fmt.Errorf("storing join token %s: %w", t.ID, err)
	}
	return nil
}

// RedeemJoinToken redeems the token id whose secret hashes to secretHash, as
// of now. In one write transaction it checks the token, calls use with it,
// and marks it used (UsedAt now, UsedSerial the serial use returns). It
// returns the updated token.
//
// The errors wrap [ErrTokenUnknown] for an unknown ID or a wrong secret,
// [ErrTokenUsed] for a used token and [ErrTokenExpired] when now is after
// ExpiresAt. When use fails, nothing is written, the token stays unused, and
// the error of use comes back wrapped. Of concurrent redemptions of one
// token, exactly one succeeds.
//
// NOTE: use runs inside the write transaction, so it must not call the
// Store (that would deadlock) and should be quick: it holds every writer.
func (s *Store) RedeemJoinToken(
	id string,
	secretHash []byte,
	now time.Time,
	use func(JoinToken) (serial string, err error),
) (JoinToken, error) {
	var t JoinToken
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketJoinTokens))
		found, err := getJSON(b, id, &t)
		if err != nil {
			return err
		}
		if !found {
			return ErrTokenUnknown
		}
		if err := checkRedeemable(t, secretHash, now); err != nil {
			return err
		}

		serial, err := use(t)
		if err != nil {
			return err
		}
		t.UsedAt, t.UsedSerial = now, serial
		return putJSON(b, id, t)
	})
	if err != nil {
		return JoinToken{}, fmt.Errorf("redeeming join token %s: %w", id, err)
	}
	return t, nil
}

// checkRedeemable reports why t cannot be redeemed with secretHash at now,
// or nil when it can.
func checkRedeemable(t JoinToken, secretHash []byte, now time.Time) error {
	// The length check guards against a record without a hash, which an
	// empty secretHash would otherwise match.
	match := subtle.ConstantTimeCompare(t.SecretHash, secretHash) == 1
	if !match || len(secretHash) != sha256.Size {
		return ErrTokenUnknown
	}
	if !t.UsedAt.IsZero() {
		return ErrTokenUsed
	}
	if now.After(t.ExpiresAt) {
		return ErrTokenExpired
	}
	return nil
}

// JoinTokens returns every stored token, oldest CreatedAt first (by ID
// among tokens created at the same instant).
func (s *Store) JoinTokens() ([]JoinToken, error) {
	var tokens []JoinToken
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		tokens, err = listJSON[JoinToken](tx.Bucket([]byte(bucketJoinTokens)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	slices.SortStableFunc(tokens, func(a, b JoinToken) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return tokens, nil
}

// PruneJoinTokens deletes every token whose ExpiresAt is before before,
// used or not (an expired token is refused anyway), and returns how many it
// deleted.
func (s *Store) PruneJoinTokens(before time.Time) (int, error) {
	var n int
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketJoinTokens))
		tokens, err := listJSON[JoinToken](b)
		if err != nil {
			return err
		}

		// Delete after the scan: deleting under a moving cursor can
		// skip the record that follows.
		for _, t := range tokens {
			if !t.ExpiresAt.Before(before) {
				continue
			}
			if err := b.Delete([]byte(t.ID)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("pruning join tokens: %w", err)
	}
	return n, nil
}
