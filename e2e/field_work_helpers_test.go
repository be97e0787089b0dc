package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// Helpers of the field-work scenarios (issue 12): needs, reported cases,
// voids, settles and a secretary's reassignment.

// move is one expected line of a record's status history.
type move struct{ from, to, author string }

// window is the wall-clock span of a test: every time the server stamps
// (a status change, a void) must fall inside it.
type window struct{ from, to int64 }

func openWindow() *window { return &window{from: time.Now().UnixMilli()} }

// close ends the window now.
func (w *window) close() { w.to = time.Now().UnixMilli() }

// checkHistory fails unless the record's history is exactly want, in order,
// each change stamped by the server (at_ms non-zero, inside w, never going
// back).
func checkHistory(t testing.TB, r *pb.Record, w *window, want ...move) {
	t.Helper()
	h := r.GetHistory()
	var got []string
	for _, c := range h {
		got = append(got, fmt.Sprintf("%q->%q by %s at %d", c.GetFrom(), c.GetTo(), c.GetAuthorId(), c.GetAtMs()))
	}
	if len(h) != len(want) {
		t.Fatalf("history of %s: %d changes, want %d:\n%s", r.GetId(), len(h), len(want), strings.Join(got, "\n"))
	}
	var last int64
	for i, c := range h {
		if c.GetFrom() != want[i].from || c.GetTo() != want[i].to || c.GetAuthorId() != want[i].author {
			t.Errorf("history of %s, change %d: %s; want %q->%q by %s", r.GetId(), i, got[i], want[i].from, want[i].to, want[i].author)
		}
		switch at := c.GetAtMs(); {
		case at == 0:
			t.Errorf("history of %s, change %d: not stamped by the server (at_ms 0)", r.GetId(), i)
		case at < w.from || at > w.to:
			t.Errorf("history of %s, change %d: at_ms %d outside the test's run [%d, %d]", r.GetId(), i, at, w.from, w.to)
		case at < last:
			t.Errorf("history of %s, change %d: at_ms %d before the previous change's %d", r.GetId(), i, at, last)
		}
		last = c.GetAtMs()
	}
}

// syncAll syncs each device in turn, twice, so that what one pushed in the
// first round reaches the others in the second.
func syncAll(t testing.TB, devs ...*syncer.Device) {
	t.Helper()
	for range 2 {
		for _, d := range devs {
			testenv.Sync(t, d)
		}
	}
}

// inboxHas says whether the device's conflict inbox lists a conflict on
// field of record id.
func inboxHas(t testing.TB, d *syncer.Device, id, field string) bool {
	t.Helper()
	for _, c := range must[[]syncer.ConflictItem](t)(d.Conflicts()) {
		if c.RecordID == id && c.Field == field {
			return true
		}
	}
	return false
}

// cleared fails unless the device holds the server's state of record id
// with no conflict left on it: not on the record, not in the inbox, not in
// its state.
func cleared(t testing.TB, e *testenv.Env, d *syncer.Device, id string) {
	t.Helper()
	sameAsServer(t, e, d, id)
	it := must[*syncer.Item](t)(d.Get(id))
	if len(it.Record.GetConflicts()) != 0 || it.State != "synced" {
		t.Errorf("device still shows %s as %s with conflicts %v", id, it.State, it.Record.GetConflicts())
	}
	for _, c := range must[[]syncer.ConflictItem](t)(d.Conflicts()) {
		if c.RecordID == id {
			t.Errorf("device's inbox still lists %s: %+v", id, c)
		}
	}
}

// deviceID is the device's id, as the server knows it.
func deviceID(t testing.TB, d *syncer.Device) string {
	t.Helper()
	return must[*syncer.Identity](t)(d.Identity()).DeviceID
}

// noRejections fails, naming each, if the device holds refused writes:
// in these scenarios every write is one its user may make.
func noRejections(t testing.TB, who string, d *syncer.Device) {
	t.Helper()
	for _, r := range must[[]*syncer.Rejection](t)(d.Rejections()) {
		t.Errorf("%s's %s of %s %s was refused: %s %s: %s", who, r.Op, r.Kind, r.RecordID, r.Code, r.Field, r.Reason)
	}
}
