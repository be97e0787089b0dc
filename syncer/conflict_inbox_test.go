package syncer_test

import (
	"errors"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// inbox returns a device's conflict inbox, failing the test on error.
func inbox(t *testing.T, d *syncer.Device) []syncer.ConflictItem {
	t.Helper()
	cs, err := d.Conflicts()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func field(t *testing.T, d *syncer.Device, id, name string) string {
	t.Helper()
	it, err := d.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return it.Field(name)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// conflictOn makes the member and the secretary edit one field of H001
// concurrently and syncs both so that each device holds the conflict.
// Which value stands is the later clock's, and two phones' clocks a
// millisecond apart may go either way: it returns the value that stands.
func conflictOn(t *testing.T, member, sec *syncer.Device, name, mine, theirs string) string {
	t.Helper()
	must(t, member.Update("H001", syncer.NewFields().Set(name, mine)))
	must(t, sec.Update("H001", syncer.NewFields().Set(name, theirs)))
	testenv.Sync(t, member)
	testenv.Sync(t, sec)
	testenv.Sync(t, member)
	return field(t, member, "H001", name)
}

// authorOf is who the inbox item says wrote value ("?" if no value is it).
func authorOf(c syncer.ConflictItem, value string) string {
	for _, v := range append([]syncer.ConflictValue{c.Standing}, c.Losing...) {
		if v.Value == value {
			return v.AuthorID
		}
	}
	return "?"
}

// The inbox lists a field in conflict with the value that stands and the
// one that lost, each with its author as far as the device can tell (its
// own user's always); keep mine, take theirs and a new value each clear
// the conflict on the settling device at once (before any sync), on the
// server, and on the other device, and it stays cleared when the server's
// record comes back.
func TestConflictInboxSettlesFieldConflictsKeepMineTakeTheirsNewValue(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, sec := e.Device(testenv.Member), e.Device(testenv.Secretary)
	testenv.Sync(t, member)
	testenv.Sync(t, sec)

	for _, tc := range []struct {
		name, field, mine, theirs string
		want                      func(standing string) string
		settle                    func(d *syncer.Device) error
		on                        string // "member" or "secretary": who settles
	}{
		{"keep mine", "phone", "13800000011", "13800000022", func(string) string { return "13800000011" },
			func(d *syncer.Device) error { return d.KeepMine("H001", "phone") }, "member"},
		{"take theirs", "tags", "低保,独居老人", "五保", func(standing string) string { return standing },
			func(d *syncer.Device) error { return d.TakeTheirs("H001", "tags") }, "member"},
		{"new value", "members", "5", "6", func(string) string { return "7" },
			func(d *syncer.Device) error { return d.Settle("H001", "members", "7") }, "secretary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			standing := conflictOn(t, member, sec, tc.field, tc.mine, tc.theirs)
			lost := tc.mine
			if standing == tc.mine {
				lost = tc.theirs
			}
			for _, d := range []*syncer.Device{member, sec} {
				cs := inbox(t, d)
				if len(cs) != 1 || cs[0].RecordID != "H001" || cs[0].Kind != "household" || cs[0].Field != tc.field {
					t.Fatalf("inbox: want one conflict on H001.%s, got %+v", tc.field, cs)
				}
				c := cs[0]
				if c.Standing.Value != standing || len(c.Losing) != 1 || c.Losing[0].Value != lost || c.Losing[0].Reason == "" || c.Losing[0].AuthorID == "" {
					t.Fatalf("inbox item: want %q standing over %q, got %+v", standing, lost, c)
				}
			}
			// Each device knows its own user's value; the server named the
			// loser's author.
			if a := authorOf(inbox(t, member)[0], tc.mine); a != testenv.Member {
				t.Fatalf("author of the member's value on the member's device: %q", a)
			}
			if a := authorOf(inbox(t, sec)[0], tc.theirs); a != testenv.Secretary {
				t.Fatalf("author of the secretary's value on the secretary's device: %q", a)
			}
			by := member
			if tc.on == "secretary" {
				by = sec
			}
			want := tc.want(standing)
			must(t, tc.settle(by))
			if cs := inbox(t, by); len(cs) != 0 {
				t.Fatalf("the settling device still lists %+v before syncing", cs)
			}
			if got := field(t, by, "H001", tc.field); got != want {
				t.Fatalf("%s on the settling device: %q, want %q", tc.field, got, want)
			}
			testenv.Sync(t, by)
			if cs := inbox(t, by); len(cs) != 0 {
				t.Fatalf("the server's record brought the conflict back: %+v", cs)
			}
			for _, d := range []*syncer.Device{member, sec} {
				testenv.Sync(t, d)
				if cs := inbox(t, d); len(cs) != 0 {
					t.Fatalf("still in conflict after sync: %+v", cs)
				}
				if got := field(t, d, "H001", tc.field); got != want {
					t.Fatalf("%s after sync: %q, want %q", tc.field, got, want)
				}
			}
		})
	}
}

// A status conflict (two mediators move a case from the same status) is
// settled from the inbox: take theirs keeps the current status, keep mine
// makes the losing move when it is still allowed, and refuses it offline,
// saying why, when it is not.
func TestConflictInboxSettlesADisputeStatusConflict(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	med1, med2 := e.Device(testenv.Mediator), e.Device(testenv.Mediator2)
	open := func() string {
		id, err := med1.Create("dispute", syncer.NewFields().Set("category", "quarrel").Set("title", "宅基地边界争吵").Set("mediators", testenv.Mediator2))
		must(t, err)
		testenv.Sync(t, med1)
		testenv.Sync(t, med2)
		return id
	}
	// med1 moves first and wins; med2's concurrent move is the conflict.
	race := func(id, first, second string) {
		must(t, med1.Transition(id, first))
		must(t, med2.Transition(id, second))
		testenv.Sync(t, med1)
		testenv.Sync(t, med2)
		testenv.Sync(t, med1)
		cs := inbox(t, med2)
		if len(cs) != 1 || cs[0].Field != "status" || cs[0].Standing.Value != first || cs[0].Standing.AuthorID != testenv.Mediator ||
			len(cs[0].Losing) != 1 || cs[0].Losing[0].Value != second || cs[0].Losing[0].AuthorID != testenv.Mediator2 {
			t.Fatalf("inbox of %s: want status %s (by %s) over %s (by %s), got %+v", testenv.Mediator2, first, testenv.Mediator, second, testenv.Mediator2, cs)
		}
	}

	// Keep mine: mediating stands, withdrawn lost; mediating -> withdrawn
	// is allowed, so keeping it makes the move.
	a := open()
	race(a, "mediating", "withdrawn")
	must(t, med2.KeepMine(a, "status"))
	if got, cs := field(t, med2, a, "status"), inbox(t, med2); got != "withdrawn" || len(cs) != 0 {
		t.Fatalf("after keep mine, offline: status %s, inbox %+v; want withdrawn and empty", got, cs)
	}
	testenv.Sync(t, med2)
	testenv.Sync(t, med1)
	for _, d := range []*syncer.Device{med1, med2} {
		it, err := d.Get(a)
		must(t, err)
		if it.Field("status") != "withdrawn" || len(it.Record.GetConflicts()) != 0 {
			t.Fatalf("after sync: status %s, conflicts %v; want withdrawn and none", it.Field("status"), it.Record.GetConflicts())
		}
		var moves []string
		for _, h := range it.Record.GetHistory() {
			moves = append(moves, h.GetFrom()+">"+h.GetTo())
			if h.GetAtMs() == 0 {
				t.Fatalf("history without the server's time: %v", it.Record.GetHistory())
			}
		}
		if want := []string{">open", "open>mediating", "mediating>withdrawn"}; len(moves) != len(want) || moves[0] != want[0] || moves[1] != want[1] || moves[2] != want[2] {
			t.Fatalf("history %v, want %v", moves, want)
		}
	}

	// Take theirs: the current status stays, the losing move is dismissed.
	b := open()
	race(b, "withdrawn", "mediating")
	// Keeping mine would move withdrawn -> mediating: refused offline.
	err := med2.KeepMine(b, "status")
	var rej *domain.Rejection
	if !errors.As(err, &rej) || rej.Code != domain.CodeInvalidTransition || rej.Field != "dispute.status" {
		t.Fatalf("keep mine withdrawn -> mediating: %v, want an invalid_transition on dispute.status", err)
	}
	must(t, med2.TakeTheirs(b, "status"))
	if got, cs := field(t, med2, b, "status"), inbox(t, med2); got != "withdrawn" || len(cs) != 0 {
		t.Fatalf("after take theirs, offline: status %s, inbox %+v", got, cs)
	}
	testenv.Sync(t, med2)
	testenv.Sync(t, med1)
	for _, d := range []*syncer.Device{med1, med2} {
		if got, cs := field(t, d, b, "status"), inbox(t, d); got != "withdrawn" || len(cs) != 0 {
			t.Fatalf("after sync: status %s, inbox %+v", got, cs)
		}
	}
}

// Keep mine needs a value of the user's among those in conflict.
func TestKeepMineWithoutAValueOfMineIsRefused(t *testing.T) {
	c := syncer.ConflictItem{RecordID: "H001", Kind: "household", Field: "phone",
		Standing: syncer.ConflictValue{Value: "1", AuthorID: "U-a"},
		Losing:   []syncer.ConflictValue{{Value: "2", AuthorID: "U-b"}, {Value: "3", AuthorID: ""}}}
	if _, err := c.MineValue("U-c"); !errors.Is(err, syncer.ErrNotMine) {
		t.Fatalf("MineValue of a user who wrote none: %v, want ErrNotMine", err)
	}
	if _, err := c.MineValue(""); !errors.Is(err, syncer.ErrNotMine) {
		t.Fatalf("an unknown author is nobody's: %v", err)
	}
	if v, err := c.MineValue("U-b"); err != nil || v != "2" {
		t.Fatalf("MineValue(U-b) = %q, %v; want 2", v, err)
	}
	if v, err := c.MineValue("U-a"); err != nil || v != "1" {
		t.Fatalf("MineValue(U-a) = %q, %v; want the standing 1", v, err)
	}
}

// A voided visit shows voided on the device at once and refuses further
// edits offline (code voided); after sync the server's void carries its
// time, and the secretary's device shows it voided too.
func TestVoidedVisitIsMarkedAndRefusesEdits(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, sec := e.Device(testenv.Member), e.Device(testenv.Secretary)
	testenv.Sync(t, member)
	id, err := member.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-11-20").Set("needs", "屋顶漏雨"))
	must(t, err)
	testenv.Sync(t, member)
	must(t, member.Void(id, "重复录入"))
	it, err := member.Get(id)
	must(t, err)
	if !it.Voided() || it.Record.GetVoid().GetReason() != "重复录入" || it.Record.GetVoid().GetAuthorId() != testenv.Member {
		t.Fatalf("not voided on the device at once: %v", it.Record.GetVoid())
	}
	err = member.Update(id, syncer.NewFields().Set("help", "已联系"))
	var rej *domain.Rejection
	if !errors.As(err, &rej) || rej.Code != domain.CodeVoided {
		t.Fatalf("edit of a voided visit: %v, want code %s", err, domain.CodeVoided)
	}
	if rep := testenv.Sync(t, member); rep.Rejected != 0 {
		t.Fatalf("the void was refused: %+v", rep)
	}
	testenv.Sync(t, sec)
	for _, d := range []*syncer.Device{member, sec} {
		it, err := d.Get(id)
		must(t, err)
		if !it.Voided() || it.Record.GetVoid().GetAtMs() == 0 || it.Field("needs") != "屋顶漏雨" {
			t.Fatalf("after sync: void %v, needs %q; want voided with the server's time, fields kept", it.Record.GetVoid(), it.Field("needs"))
		}
	}
}
