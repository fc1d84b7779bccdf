package store

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// KV is one record of a generic bucket, as returned by [Store.List].
type KV struct {
	// Key is the record's key.
	Key string
	// Value is a copy of the stored value; the caller owns it.
	Value []byte
}

// errEmptyName is returned for an empty bucket name or key.
var errEmptyName = errors.New("bucket and key must not be empty")

// Put stores value under key in the named generic bucket, creating the
// bucket when needed and replacing any earlier value. Generic buckets are
// kept apart from the store's own records, so any non-empty name is allowed.
func (s *Store) Put(bucket, key string, value []byte) error {
	if bucket == "" || key == "" {
		return fmt.Errorf("putting %s/%s: %w", bucket, key, errEmptyName)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(kvPrefix + bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), value)
	})
	if err != nil {
		return fmt.Errorf("putting %s/%s: %w", bucket, key, err)
	}
	return nil
}

// Get returns a copy of the value under key in the named generic bucket, or
// nil and a nil error when the bucket or the key is missing. The caller
// owns the returned slice.
func (s *Store) Get(bucket, key string) ([]byte, error) {
	var value []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(kvPrefix + bucket))
		if b == nil {
			return nil
		}
		// bbolt's slices are only valid inside the transaction.
		if v := b.Get([]byte(key)); v != nil {
			value = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("getting %s/%s: %w", bucket, key, err)
	}
	return value, nil
}

// List returns every record of the named generic bucket in key order (byte
// order of the keys). A missing bucket gives an empty list and a nil error.
func (s *Store) List(bucket string) ([]KV, error) {
	var kvs []KV
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(kvPrefix + bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			kvs = append(kvs, KV{Key: string(k), Value: bytes.Clone(v)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing bucket %s: %w", bucket, err)
	}
	return kvs, nil
}

// Delete removes key from the named generic bucket. A missing bucket or
// key is not an error.
func (s *Store) Delete(bucket, key string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(kvPrefix + bucket))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("deleting %s/%s: %w", bucket, key, err)
	}
	return nil
}
