package store_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

func openRegion(t *testing.T, path string, opts ...store.ServerOption) (*store.Server, error) {
	t.Helper()
	s, err := store.OpenServer(context.Background(), path, opts...)
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

// TestRegionIsPinnedAtFirstStart: a new database takes the region it is
// first opened with and keeps it; another region, or none, is refused
// with a message naming both; opening without the option reads it.
func TestRegionIsPinnedAtFirstStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := openRegion(t, path, store.WithRegion("xiaonan"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Region() != "xiaonan" {
		t.Fatalf("Region() = %q, want xiaonan", s.Region())
	}
	s.Close()

	if s, err := openRegion(t, path, store.WithRegion("xiaonan")); err != nil || s.Region() != "xiaonan" {
		t.Fatalf("same region again: %v", err)
	} else {
		s.Close()
	}
	_, err = openRegion(t, path, store.WithRegion("yunmeng"))
	if err == nil || !strings.Contains(err.Error(), `region "xiaonan"`) || !strings.Contains(err.Error(), `not region "yunmeng"`) || !strings.Contains(err.Error(), "-region xiaonan") {
		t.Fatalf("another region: want a refusal naming both, got %v", err)
	}
	_, err = openRegion(t, path, store.WithRegion(""))
	if err == nil || !strings.Contains(err.Error(), "-region xiaonan") {
		t.Fatalf("no region on a region's database: want a refusal, got %v", err)
	}
	// Tools that open the database without saying (restore, inspect) read
	// the pin.
	s, err = openRegion(t, path)
	if err != nil || s.Region() != "xiaonan" {
		t.Fatalf("open without WithRegion: region %q, %v", s.Region(), err)
	}
}

// TestRegionRefusedOnADatabaseUsedWithoutOne: a database that holds a
// change made without a region cannot become a region's (its ids lack the
// prefix); one that holds nothing can, and one never given a region stays
// as it was.
func TestRegionRefusedOnADatabaseUsedWithoutOne(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := openRegion(t, path, store.WithRegion(""))
	if err != nil {
		t.Fatal(err)
	}
	if s.Region() != "" {
		t.Fatalf("Region() = %q", s.Region())
	}
	if err := s.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.PutRecord(nil, &pb.Record{Id: "r1", Kind: pb.Kind_KIND_EVENT}, store.RecordMeta{VillageID: "v1", TownID: "t1"}, store.ChangeInfo{DeviceID: "d1", UserID: "U1"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = openRegion(t, path, store.WithRegion("xiaonan"))
	if err == nil || !strings.Contains(err.Error(), "already holds changes made without a region") || !strings.Contains(err.Error(), `"xiaonan-"`) {
		t.Fatalf("want a refusal saying the ids lack the prefix, got %v", err)
	}
	// Still usable as it was.
	if s, err := openRegion(t, path, store.WithRegion("")); err != nil || s.Region() != "" {
		t.Fatalf("reopen without a region: %v", err)
	}

	// An empty database started once without a region may still become one.
	empty := filepath.Join(t.TempDir(), "e.db")
	s, err = openRegion(t, empty, store.WithRegion(""))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := openRegion(t, empty, store.WithRegion("yunmeng")); err != nil || s.Region() != "yunmeng" {
		t.Fatalf("empty database with a region: %v", err)
	}
	if _, err := openRegion(t, filepath.Join(t.TempDir(), "bad.db"), store.WithRegion("Bad-Name")); err == nil || !strings.Contains(err.Error(), "lower-case") {
		t.Fatalf("bad region name: %v", err)
	}
}
