package fieldsync

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/mobile/fieldsync/schema"
	"google.golang.org/grpc"
)

// The listener hears every local write (with its op, record and kind) and
// every sync that changed data (with its report), and each sync's start
// and end (syncing true, then false with the error's code); a sync that
// changed nothing is no data change; SetListener(nil) silences it.
func TestListenerHearsWritesAndSyncs(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := phone(t, e, testenv.Member)
	syncOnce(t, member)
	rec := &recorder{t: t}
	member.SetListener(rec)
	today := time.Now().Format("2006-01-02")

	visit := must[string](t)(member.RecordVisit("H001", today, "張大山", "", "", ""))
	ok(t, member.Update(visit, `{"help":"米一袋"}`))
	ok(t, member.Update("H001", `{"phone":"13900000009"}`))
	changes, states := rec.snapshot()
	want := []schema.Change{
		{Source: "write", Op: "create", RecordID: visit, Kind: "visit"},
		{Source: "write", Op: "update", RecordID: visit, Kind: "visit"},
		{Source: "write", Op: "update", RecordID: "H001", Kind: "household"},
	}
	if len(changes) != len(want) || len(states) != 0 {
		t.Fatalf("after 3 writes: changes %+v, states %+v", changes, states)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Fatalf("change %d: %+v, want %+v", i, changes[i], want[i])
		}
	}
	// A write refused on the phone is no change.
	if _, err := member.RecordVisit("H001", "不是日期", "", "", "", ""); err == nil {
		t.Fatal("a visit with a bad date was taken")
	}
	if c, _ := rec.snapshot(); len(c) != 3 {
		t.Fatalf("a refused write was heard: %+v", c[3:])
	}

	rep := syncOnce(t, member)
	changes, states = rec.snapshot()
	if len(changes) != 4 || changes[3].Source != "sync" || changes[3].Report == nil || *changes[3].Report != rep || rep.Pushed != 3 {
		t.Fatalf("after a sync: changes %+v, report %+v", changes, rep)
	}
	if len(states) != 2 || !states[0].Syncing || states[1].Syncing || states[1].Pending != 0 || states[1].LastSyncMs == 0 || !states[1].Enrolled {
		t.Fatalf("sync states %+v: want syncing, then done", states)
	}
	// Nothing new: no data change, but the states still come.
	if rep := syncOnce(t, member); rep.Changed {
		t.Fatalf("a no-op sync says it changed data: %+v", rep)
	}
	changes, states = rec.snapshot()
	if len(changes) != 4 || len(states) != 4 {
		t.Fatalf("after a no-op sync: %d changes, %d states; want 4 and 4", len(changes), len(states))
	}

	// A failed sync ends with its code.
	e.Stop()
	if _, err := member.SyncOnce(3000); ErrorCode(errMessage(err)) != CodeRetryLater {
		t.Fatalf("sync with the server gone: %v", err)
	}
	_, states = rec.snapshot()
	if last := states[len(states)-1]; last.Syncing || last.LastErrorCode != CodeRetryLater || last.LastError == "" {
		t.Fatalf("state after a failed sync: %+v", last)
	}

	member.SetListener(nil)
	must[string](t)(member.RecordVisit("H002", today, "張小河", "", "", ""))
	if c, _ := rec.snapshot(); len(c) != 4 {
		t.Fatalf("a removed listener was called: %+v", c[4:])
	}
}

// hang holds every Sync call until its caller gives up, while on is set.
type hang struct{ on atomic.Bool }

func (h *hang) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	if h.on.Load() && info.FullMethod == "/fieldsync.v1.SyncService/Sync" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return next(ctx, req)
}

// SyncOnce keeps to its time limit (as a WorkManager worker or a BGTask
// must) against a server that does not answer: it returns retry_later
// soon after the limit, the visit kept; the next SyncOnce sends it.
func TestSyncOnceKeepsItsTimeLimit(t *testing.T) {
	h := &hang{}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(h.intercept))
	e.ImportSample()
	member := phone(t, e, testenv.Member)
	syncOnce(t, member)
	must[string](t)(member.RecordVisit("H001", time.Now().Format("2006-01-02"), "張大山", "", "", ""))
	h.on.Store(true)
	start := time.Now()
	_, err := member.SyncOnce(700)
	took := time.Since(start)
	wantCode(t, "a sync the server does not answer", err, CodeRetryLater)
	if took < 700*time.Millisecond || took > 3*time.Second {
		t.Fatalf("SyncOnce(700 ms) took %v", took)
	}
	if st := status(t, member); st.Pending != 1 {
		t.Fatalf("status after the cut sync: %+v, want the visit kept", st)
	}
	h.on.Store(false)
	if rep := syncOnce(t, member); rep.Pushed != 1 || rep.Applied != 1 {
		t.Fatalf("the next sync: %+v", rep)
	}

	// Close stops a sync under way at once (the app is being killed).
	h.on.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := member.SyncOnce(60000)
		done <- err
	}()
	waitFor(t, 5*time.Second, "the sync to start", func() bool { return status(t, member).Syncing })
	start = time.Now()
	ok(t, member.Close())
	select {
	case err := <-done:
		wantCode(t, "a sync cut by Close", err, CodeClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Close left a sync of a server that does not answer running")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the sync stopped %v after Close", took)
	}
}
