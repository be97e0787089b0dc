package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// One group commit whose jobs fail and succeed in turn: the first job of a
// commit runs without a savepoint, so its failure rolls back the whole
// transaction and the rest of the batch commits in a new one; a later job's
// failure is undone by its savepoint. Every failed job's writes are gone,
// every other job's are kept, and the audit chain has no gap.
func TestGroupCommitFailedJobs(t *testing.T) {
	ctx := context.Background()
	s, err := OpenServer(ctx, filepath.Join(t.TempDir(), "fieldsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	commits0, jobs0, _ := s.CommitStats()
	// Hold the writer in a job of its own while the batch queues behind it.
	hold, held := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.Write(ctx, func(tx *Tx) error {
			close(held)
			<-hold
			return tx.Audit(AuditAdmin, AuditImportOrg, "org", "{}")
		})
	}()
	<-held

	boom := errors.New("boom")
	plan := []bool{false, false, true, false, true, false} // true: the job succeeds
	results := make([]chan error, len(plan))
	for i, ok := range plan {
		results[i] = make(chan error, 1)
		go func() {
			results[i] <- s.Write(ctx, func(tx *Tx) error {
				if err := tx.Audit(fmt.Sprintf("job%d", i), AuditEnrollDevice, "U1", "{}"); err != nil {
					return err
				}
				if !ok {
					return boom
				}
				return nil
			})
		}()
		// Queue in plan order: wait until the job is in the writer's queue.
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
	for i, ok := range plan {
		err := <-results[i]
		if ok && err != nil {
			t.Errorf("job %d: %v, want success", i, err)
		}
		if !ok && !errors.Is(err, boom) {
			t.Errorf("job %d: %v, want its own error", i, err)
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
	if fmt.Sprint(actors) != fmt.Sprint([]string{AuditAdmin, "job2", "job4"}) {
		t.Fatalf("audit entries by %v, want the holder's, job2's and job4's", actors)
	}
	// Two commits: the holder's, then jobs 2-5 together (jobs 0 and 1,
	// each first in its transaction, were rolled back with it).
	commits, jobs, busy := s.CommitStats()
	if commits-commits0 != 2 || jobs-jobs0 != 5 {
		t.Errorf("CommitStats: %d commits, %d jobs; want 2 commits carrying 5 jobs", commits-commits0, jobs-jobs0)
	}
	if busy <= 0 {
		t.Errorf("CommitStats: writer busy %v after committing", busy)
	}
	last, err := s.VerifyAudit(ctx)
	if err != nil || last.Seq != 3 {
		t.Fatalf("VerifyAudit: last %d, %v; want 3 intact entries", last.Seq, err)
	}
}
