// Package store keeps an edge's persistent state in a bbolt file in its data
// folder: join tokens, revocations and the identities it has issued
// certificates to.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Names of the buckets that hold the typed records. Generic buckets of
// [Store.Put] live under kvPrefix, so they can never collide with these.
const (
	bucketJoinTokens  = "join_tokens"
	bucketRevocations = "revocations"
	bucketIssued      = "issued"
	kvPrefix          = "kv/"
)

// lockTimeout is how long Open waits for the file lock before it gives up.
const lockTimeout = time.Second

// ErrExists is returned when a record to be created is already stored.
var ErrExists = errors.New("already exists")

// Store is an edge's persistent state in one bbolt file. It is safe for
// concurrent use; writes are serialized by bbolt's single writer.
type Store struct {
	db *bolt.DB
}

// Open opens the bbolt file at path, creating it with mode 0600 and its
// folder with mode 0700 when they are missing. Only one process can hold the
// file open: when another holds it, Open fails after one second with an error
// that wraps [bolterrors.ErrTimeout]. The caller must [Store.Close] the store.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating folder of store %s: %w", path, err)
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store %s is in use by another process (is another edge running on this data folder?): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}

	// Create the typed buckets once, so that every later transaction
	// can rely on them being there.
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{bucketJoinTokens, bucketRevocations, bucketIssued} {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("creating buckets in store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close releases the file and its lock. The store must not be used after.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing store %s: %w", s.db.Path(), err)
	}
	return nil
}

// getJSON decodes the record under key in b into v. It reports false, and
// leaves v alone, when there is no such record.
func getJSON(b *bolt.Bucket, key string, v any) (bool, error) {
	data := b.Get([]byte(key))
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("decoding record %s: %w", key, err)
	}
	return true, nil
}

// putJSON stores v under key in b, JSON-encoded.
func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding record %s: %w", key, err)
	}
	return b.Put([]byte(key), data)
}

// listJSON decodes every record of b, in key order.
func listJSON[T any](b *bolt.Bucket) ([]T, error) {
	var items []T
	err := b.ForEach(func(k, v []byte) error {
		var item T
		if err := json.Unmarshal(v, &item); err != nil {
			return fmt.Errorf("decoding record %s: %w", k, err)
		}
		items = append(items, item)
		return nil
	})
	return items, err
}
