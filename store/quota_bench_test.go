package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fieldsync/fieldsync/store"
)

// BenchmarkQuotaCount is what a push adds to the writer's transaction for
// the daily quotas: the device's and its user's usage read, then the
// device's row updated.
func BenchmarkQuotaCount(b *testing.B) {
	s, err := store.OpenServer(context.Background(), filepath.Join(b.TempDir(), "fieldsync.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	devices := []string{"D1", "D2"} // one user's two phones
	count := func(n int) error {
		return s.Write(context.Background(), func(tx *store.Tx) error {
			for i := range n {
				dev := devices[i%2]
				_, _, found, err := tx.QuotaUsage(dev, "U1", 20261207)
				if err != nil {
					return err
				}
				if err := tx.AddQuotaUsage(dev, "U1", 20261207, store.QuotaUsage{Records: 10, Bytes: 1500}, !found); err != nil {
					return err
				}
			}
			return nil
		})
	}
	// The writer prepares statements between transactions: one first
	// transaction, as any syncd has run.
	if err := count(2); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	// Many pushes a commit, so that the fsync weighs little.
	for left := b.N; left > 0; left -= 1000 {
		if err := count(min(left, 1000)); err != nil {
			b.Fatal(err)
		}
	}
}
