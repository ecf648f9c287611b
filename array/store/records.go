package store

import (
	"bytes"
	"context"

	bolt "go.etcd.io/bbolt"
)

// Records is a small transactional key-value area in the array's
// metadata store, for the layers above the engine (links, replicas), so
// everything an array knows commits in one bbolt file.
func (s *Store) PutRecord(ctx context.Context, bucket, key string, data []byte) error {
	return s.PutRecords(ctx, bucket, map[string][]byte{key: data})
}

// PutRecords stores several records of a bucket in one transaction: one
// commit, and so one fsync, however many there are.
func (s *Store) PutRecords(ctx context.Context, bucket string, recs map[string][]byte) error {
	if err := s.checkOpen(ctx); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(recordBucket(bucket))
		if err != nil {
			return err
		}
		for k, data := range recs {
			if err := b.Put([]byte(k), data); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteRecord removes a record; a missing one is not an error.
func (s *Store) DeleteRecord(ctx context.Context, bucket, key string) error {
	return s.updateRecords(ctx, bucket, func(b *bolt.Bucket) error { return b.Delete([]byte(key)) })
}

// DeleteRecords removes, in one transaction, every record of a bucket
// whose key begins with prefix.
func (s *Store) DeleteRecords(ctx context.Context, bucket, prefix string) error {
	return s.updateRecords(ctx, bucket, func(b *bolt.Bucket) error {
		var keys [][]byte
		_ = underPrefix(b, prefix, func(k, _ []byte) error {
			keys = append(keys, bytes.Clone(k))
			return nil
		})
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// updateRecords runs fn on a bucket of records in one write transaction;
// a bucket never written has nothing to change, and fn is not called.
func (s *Store) updateRecords(ctx context.Context, bucket string, fn func(b *bolt.Bucket) error) error {
	if err := s.checkOpen(ctx); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(recordBucket(bucket))
		if b == nil {
			return nil
		}
		return fn(b)
	})
}

// Records calls fn, in key order, for every record of a bucket whose key
// begins with prefix ("" for all). It seeks to the prefix, so reading one
// pod's records costs what they hold, not what the bucket holds.
func (s *Store) Records(ctx context.Context, bucket, prefix string, fn func(key string, data []byte) error) error {
	if err := s.checkOpen(ctx); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(recordBucket(bucket))
		if b == nil {
			return nil
		}
		return underPrefix(b, prefix, func(k, v []byte) error { return fn(string(k), v) })
	})
}

// underPrefix calls fn, in key order, for the records of b whose keys
// begin with prefix, seeking to the first rather than walking the bucket.
func underPrefix(b *bolt.Bucket, prefix string, fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func recordBucket(name string) []byte { return []byte("rec:" + name) }

func (s *Store) checkOpen(ctx context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.check(ctx)
}
