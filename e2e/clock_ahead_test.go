package e2e

import (
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// skewedClock is a phone's wall clock that a test sets ahead.
type skewedClock struct{ ahead atomic.Int64 }

func (c *skewedClock) now() time.Time { return time.Now().Add(time.Duration(c.ahead.Load())) }

// A phone whose clock jumps three days ahead edits a household field
// offline; a secretary edits the same field a little later in real time.
// In both sync orders: the edit stamped ahead wins (the server cuts it to
// its own time plus domain.MaxFutureSkew), the secretary's value is kept
// as a conflict naming her and her device, the phone's next writes are
// stamped within the tolerance of the server's time, its own successive
// edits keep their order, and both orders end in the same state.
func TestClockThreeDaysAheadComesBackAfterSync(t *testing.T) {
	results := map[string]string{}
	for _, order := range []string{"phone first", "secretary first"} {
		t.Run(order, func(t *testing.T) {
			results[order] = clockAheadRun(t, order == "phone first")
		})
	}
	if a, b := results["phone first"], results["secretary first"]; a == "" || b == "" || a != b {
		t.Fatalf("the sync order shows in the final state:\n\tphone first:     %s\n\tsecretary first: %s", a, b)
	}
}

// clockAheadRun plays the story with one sync order and returns the final
// state of the household, without clocks (the cut clock depends on when
// the phone synced) and with device ids named by role.
func clockAheadRun(t *testing.T, phoneFirst bool) string {
	e := testenv.Start(t)
	e.ImportSample()
	clk := &skewedClock{}
	phone := e.Device(testenv.Member, func(o *syncer.Options) { o.Now = clk.now })
	sec := e.Device(testenv.Secretary)
	testenv.Sync(t, phone)
	testenv.Sync(t, sec)
	phoneID := must[*syncer.Identity](t)(phone.Identity()).DeviceID
	secID := must[*syncer.Identity](t)(sec.Identity()).DeviceID

	// The phone's clock jumps three days ahead; offline, it edits H001.
	clk.ahead.Store(int64(72 * time.Hour))
	ok(t, phone.Update("H001", syncer.NewFields().Set("phone", "13900000003").Set("needs", "屋頂漏水")))
	ahead := fieldClock(t, phone, "H001", "phone")
	if d := time.Until(time.UnixMilli(ahead.Wall)); d < 71*time.Hour {
		t.Fatalf("the offline edit is stamped %v ahead, want three days: the test's clock did not skew", d)
	}
	// A little later, in real time, the secretary edits the same field.
	ok(t, sec.Update("H001", syncer.NewFields().Set("phone", "13700000007")))

	first, second := phone, sec
	if !phoneFirst {
		first, second = sec, phone
	}
	for range 2 {
		testenv.Sync(t, first)
		testenv.Sync(t, second)
	}

	h := serverRecord(t, e, "H001")
	if got := h.GetFields()["phone"].GetValue(); got != "13900000003" {
		t.Errorf("phone = %q, want the edit stamped ahead (13900000003): it was made before the later edit reached the server", got)
	}
	if w := mustHLC(t, h.GetFields()["phone"].GetHlc()).Wall; w > time.Now().Add(domain.MaxFutureSkew).UnixMilli() {
		t.Errorf("the server kept the phone's clock %v ahead, want at most %v", time.Until(time.UnixMilli(w)), domain.MaxFutureSkew)
	}
	cs := h.GetConflicts()
	if len(cs) != 1 || cs[0].GetField() != "phone" || cs[0].GetValue() != "13700000007" ||
		cs[0].GetAuthorId() != testenv.Secretary || mustHLC(t, cs[0].GetHlc()).Node != secID {
		t.Fatalf("conflicts %v, want the secretary's phone 13700000007 by %s on device %s", cs, testenv.Secretary, secID)
	}
	sameAsServer(t, e, phone, "H001")
	sameAsServer(t, e, sec, "H001")

	// After the sync the phone's clock is back: its next write is stamped
	// within the tolerance of the server's time, not three days ahead.
	ok(t, phone.Update("H001", syncer.NewFields().Set("tags", "獨居老人")))
	next := fieldClock(t, phone, "H001", "tags")
	now := time.Now()
	if next.Wall > now.Add(domain.MaxFutureSkew+time.Millisecond).UnixMilli() || next.Wall < now.Add(-time.Minute).UnixMilli() {
		t.Fatalf("after the sync the phone stamps %v (%v from the server's time), want within %v of it", next, time.UnixMilli(next.Wall).Sub(now), domain.MaxFutureSkew)
	}
	// Its own successive edits keep their order: the later needs wins over
	// the one stamped three days ahead, with no conflict.
	ok(t, phone.Update("H001", syncer.NewFields().Set("needs", "屋頂已修")))
	ok(t, phone.Update("H001", syncer.NewFields().Set("tags", "獨居老人,低保")))
	testenv.Sync(t, phone)
	testenv.Sync(t, sec)
	h = serverRecord(t, e, "H001")
	if got := h.GetFields()["needs"].GetValue(); got != "屋頂已修" {
		t.Errorf("needs = %q, want the phone's later edit 屋頂已修", got)
	}
	if got := h.GetFields()["tags"].GetValue(); got != "獨居老人,低保" {
		t.Errorf("tags = %q, want the phone's later edit", got)
	}
	if len(h.GetConflicts()) != 1 {
		t.Errorf("conflicts %v, want only the secretary's", h.GetConflicts())
	}
	sameAsServer(t, e, phone, "H001")
	sameAsServer(t, e, sec, "H001")
	return describeRecord(h, map[string]string{phoneID: "phone", secID: "secretary"})
}

// Notes sort by clock: a mediator whose phone ran three days ahead appends
// a note offline, syncs, and appends another; the second sorts after the
// first, though the phone's clock came back in between.
func TestClockAheadOwnNotesKeepTheirOrder(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	clk := &skewedClock{}
	med := e.Device(testenv.Mediator, func(o *syncer.Options) { o.Now = clk.now })
	testenv.Sync(t, med)
	dispute := must[string](t)(med.Create("dispute", syncer.NewFields().Set("category", "quarrel").
		Set("title", "宅基地邊界爭吵").Set("parties", "張大山；趙春梅")))
	testenv.Sync(t, med)

	clk.ahead.Store(int64(72 * time.Hour))
	ok(t, med.Append(dispute, "notes", "第一次"))
	testenv.Sync(t, med) // the note is cut to the server's time plus the tolerance; the clock comes back
	ok(t, med.Append(dispute, "notes", "第二次"))
	ok(t, med.Append(dispute, "notes", "第三次"))
	testenv.Sync(t, med)

	var got []string
	for _, en := range serverRecord(t, e, dispute).GetEntries() {
		got = append(got, en.GetText())
	}
	if want := []string{"第一次", "第二次", "第三次"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("notes in clock order %q, want the order they were written %q", got, want)
	}
	sameAsServer(t, e, med, dispute)
}

// fieldClock reads the clock of a field in a device's local view.
func fieldClock(t *testing.T, d *syncer.Device, id, field string) domain.HLC {
	t.Helper()
	it := must[*syncer.Item](t)(d.Get(id))
	return mustHLC(t, it.Record.GetFields()[field].GetHlc())
}

func mustHLC(t *testing.T, s string) domain.HLC {
	t.Helper()
	h, err := domain.ParseHLC(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// describeRecord writes a record's fields and conflicts without clock
// times, naming the writing devices by names.
func describeRecord(r *pb.Record, names map[string]string) string {
	var parts []string
	for k, v := range r.GetFields() {
		node := names[mustNode(v.GetHlc())]
		parts = append(parts, fmt.Sprintf("%s=%q by %s", k, v.GetValue(), node))
	}
	sort.Strings(parts)
	for _, c := range r.GetConflicts() {
		parts = append(parts, fmt.Sprintf("conflict %s=%q by %s on %s (%s)", c.GetField(), c.GetValue(), c.GetAuthorId(), names[mustNode(c.GetHlc())], c.GetReason()))
	}
	return strings.Join(parts, "; ")
}

func mustNode(h string) string {
	p, err := domain.ParseHLC(h)
	if err != nil {
		return "bad clock " + h
	}
	return p.Node
}
