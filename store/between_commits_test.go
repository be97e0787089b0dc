package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/store"
)

// BetweenCommits runs its function on the writer when no transaction is
// open: not while a write is in progress, and writes queued meanwhile wait
// for it. On a closed store it says so.
func TestBetweenCommitsRunsOutsideTransactions(t *testing.T) {
	ctx := context.Background()
	s, err := store.OpenServer(ctx, filepath.Join(t.TempDir(), "fieldsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	inWrite, release := make(chan struct{}), make(chan struct{})
	writeDone := make(chan error, 1)
	go func() {
		writeDone <- s.Write(ctx, func(*store.Tx) error { close(inWrite); <-release; return nil })
	}()
	<-inWrite

	ran := make(chan struct{})
	betweenDone := make(chan error, 1)
	go func() { betweenDone <- s.BetweenCommits(ctx, func() { close(ran) }) }()
	select {
	case <-ran:
		t.Fatal("BetweenCommits ran its function while a write transaction was open")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-writeDone; err != nil {
		t.Fatal(err)
	}
	if err := <-betweenDone; err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	default:
		t.Fatal("BetweenCommits returned without running its function")
	}

	// The function holds the writer: a write queued while it runs waits.
	hold, holding := make(chan struct{}), make(chan struct{})
	go s.BetweenCommits(ctx, func() { close(holding); <-hold })
	<-holding
	written := make(chan error, 1)
	go func() { written <- s.Write(ctx, func(*store.Tx) error { return nil }) }()
	select {
	case <-written:
		t.Fatal("a write committed while a BetweenCommits function held the writer")
	case <-time.After(100 * time.Millisecond):
	}
	close(hold)
	if err := <-written; err != nil {
		t.Fatal(err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.BetweenCommits(ctx, func() {}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("BetweenCommits on a closed store: %v, want ErrClosed", err)
	}
}
