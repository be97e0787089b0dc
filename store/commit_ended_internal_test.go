package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// A job whose failure ended the whole transaction (as SQLite does on some
// errors: here the job ends it itself, since a real full disk cannot be
// made to strike a given job) gets its own error; the jobs before and
// after it in the batch commit in a new transaction.
func TestGroupCommitJobThatEndedTheTransaction(t *testing.T) {
	ctx := context.Background()
	s, err := OpenServer(ctx, filepath.Join(t.TempDir(), "fieldsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hold, held := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.Write(ctx, func(tx *Tx) error { close(held); <-hold; return nil })
	}()
	<-held
	boom := errors.New("boom")
	const n = 5
	results := make([]chan error, n)
	for i := range n {
		results[i] = make(chan error, 1)
		go func() {
			results[i] <- s.Write(ctx, func(tx *Tx) error {
				if err := tx.Audit(fmt.Sprintf("job%d", i), AuditEnrollDevice, "U1", "{}"); err != nil {
					return err
				}
				if i == 2 {
					if _, err := tx.Exec("ROLLBACK"); err != nil {
						return err
					}
					return boom
				}
				return nil
			})
		}()
		deadline := time.Now().Add(10 * time.Second)
		for len(s.jobs) != i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("job %d never queued", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	close(hold)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i := range n {
		err := <-results[i]
		if i == 2 && !errors.Is(err, boom) {
			t.Errorf("job 2: %v, want its own error", err)
		}
		if i != 2 && err != nil {
			t.Errorf("job %d: %v, want success", i, err)
		}
	}
	es, err := s.AuditLog(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actors []string
	for _, e := range es {
		actors = append(actors, e.Actor)
	}
	if want := "[job0 job1 job3 job4]"; fmt.Sprint(actors) != want {
		t.Fatalf("audit entries by %v, want %s", actors, want)
	}
	if _, err := s.VerifyAudit(ctx); err != nil {
		t.Fatal(err)
	}
}
