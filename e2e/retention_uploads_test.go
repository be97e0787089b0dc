package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/store"
)

// syncd's retention pass removes the bytes of an upload nobody finished
// within store.UnfinishedUploadTTL (a phone that never came back), and
// keeps complete files, and unfinished ones until then.
func TestRetentionSweepsUnfinishedUploads(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{}
	e := testenv.Start(t, testenv.WithRetention(retentionWindow, clock.Now))
	files := e.Daemon.Files
	put := func(data []byte, whole bool) string {
		t.Helper()
		s := sha256.Sum256(data)
		sha := hex.EncodeToString(s[:])
		if _, err := files.Begin(ctx, sha, int64(len(data)), "application/pdf"); err != nil {
			t.Fatal(err)
		}
		n := len(data)
		if !whole {
			n = len(data) / 2
		}
		if _, err := files.PutChunk(ctx, sha, 0, data[:n], store.FileCharge{Limit: -1}); err != nil {
			t.Fatal(err)
		}
		if whole {
			if err := files.Complete(ctx, sha, "rec-1"); err != nil {
				t.Fatal(err)
			}
		}
		return sha
	}
	abandoned := put([]byte("%PDF-1.4 abandoned half way"), false)
	done := put([]byte("%PDF-1.4 finished"), true)

	// Within the time to live: kept.
	if _, err := e.Daemon.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if fi, err := files.Stat(ctx, abandoned); err != nil || fi.Stored == 0 {
		t.Fatalf("a fresh unfinished upload: %+v %v, want kept", fi, err)
	}
	clock.advance(store.UnfinishedUploadTTL + time.Hour)
	if _, err := e.Daemon.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := files.Stat(ctx, abandoned); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an upload unfinished past the time to live: %v, want swept", err)
	}
	if fi, err := files.Stat(ctx, done); err != nil || !fi.Complete {
		t.Errorf("a complete file: %+v %v, want kept", fi, err)
	}
}
