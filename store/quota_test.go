package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fieldsync/fieldsync/store"
)

// A device's quota counts: per device and day, summed per user, and a
// device's earlier days dropped when its first push of a new day is
// counted (the table keeps about one row per device).
func TestQuotaUsageKeepsTodayPerDeviceAndUser(t *testing.T) {
	ctx := context.Background()
	s, err := store.OpenServer(ctx, filepath.Join(t.TempDir(), "fieldsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	add := func(dev, user string, day int, records int64) {
		t.Helper()
		if err := s.Write(ctx, func(tx *store.Tx) error {
			_, _, found, err := tx.QuotaUsage(dev, user, day)
			if err != nil {
				return err
			}
			return tx.AddQuotaUsage(dev, user, day, store.QuotaUsage{Records: records, Bytes: 100 * records}, !found)
		}); err != nil {
			t.Fatal(err)
		}
	}
	add("D1", "U1", 20261207, 3)
	add("D1", "U1", 20261207, 2)
	add("D2", "U1", 20261207, 4)
	add("D3", "U2", 20261207, 7)
	err = s.Write(ctx, func(tx *store.Tx) error {
		dev, user, found, err := tx.QuotaUsage("D1", "U1", 20261207)
		if err != nil {
			return err
		}
		if !found || dev.Records != 5 || dev.Bytes != 500 || user.Records != 9 || user.Bytes != 900 {
			t.Errorf("D1 of U1: device %+v (found %v), user %+v; want 5 records, 500 bytes; user 9, 900", dev, found, user)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	add("D1", "U1", 20261208, 1)
	got, err := s.QuotaUsageOn(ctx, 20261207, []string{"D1", "D2", "D3", "D9"})
	if err != nil {
		t.Fatal(err)
	}
	if _, kept := got["D1"]; kept || got["D2"].Records != 4 || got["D3"].Records != 7 || len(got) != 2 {
		t.Fatalf("usage of 2026-12-07 after D1's first push of the 8th: %+v; want D1's old day gone, D2 4, D3 7", got)
	}
	if got, _ := s.QuotaUsageOn(ctx, 20261208, []string{"D1"}); got["D1"].Records != 1 {
		t.Fatalf("usage of 2026-12-08: %+v", got)
	}
}
