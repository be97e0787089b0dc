package e2e

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// holds fails unless the device holds exactly the server's state of each
// record.
func holds(t testing.TB, e *testenv.Env, d *syncer.Device, ids ...string) {
	t.Helper()
	for _, id := range ids {
		sameAsServer(t, e, d, id)
	}
}

// lacks fails if the device holds any of the records.
func lacks(t testing.TB, d *syncer.Device, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if it, err := d.Get(id); !errors.Is(err, syncer.ErrNotFound) {
			t.Errorf("device still holds %s: %+v (err %v)", id, it, err)
		}
	}
}

// rejection finds the device's kept rejection of a record.
func rejection(t testing.TB, d *syncer.Device, recordID, op string) *syncer.Rejection {
	t.Helper()
	for _, r := range must[[]*syncer.Rejection](t)(d.Rejections()) {
		if r.RecordID == recordID && r.Op == op {
			return r
		}
	}
	t.Fatalf("no kept rejection of the %s of %s", op, recordID)
	return nil
}

// A household is reassigned while both members' devices are offline (the
// server is up; the devices do not sync). The old member kept working on
// it: an edit and a new visit.
//
// The rule: the server applies writes in its commit order and judges each
// by the scope at that commit, never by the device's clock (which may be
// days off). The old member's writes reach the server after the
// reassignment, so they are rejected with permission_denied and kept on
// the old device, shown as rejected with the reason; what the old member
// synced before the reassignment stays on the server and goes to the new
// member. The old device then holds none of the server's data of the
// household, the new one all of it.
//
// Then, byte-wise: neither the old member's device files nor a raw pull
// answer for that member hold the name or address of any household outside
// their scope, the reassigned one included.
func TestScopeReassignWhileOffline(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e
	admin, actx := e.Admin()
	// M1 links H1 and H2; M2 (same grid) links nothing yet.
	_, err := admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "H2", MemberId: "M1"})
	ok(t, err)
	old, oldPath := fileDevice(t, e, "M1")
	gain := e.Device("M2")
	testenv.Sync(t, old)
	testenv.Sync(t, gain)
	before := must[string](t)(old.Create("visit", syncer.NewFields().Set("household_id", "H1").Set("visited_on", "2026-11-10").
		Set("met", "歐陽翠花").Set("needs", "孫子上學路遠").Set("help", "聯繫校車")))
	testenv.Sync(t, old)
	holds(t, e, old, "H1", "H2", f.id(t, "VH1"), before)
	lacks(t, gain, "H1", "H2", f.id(t, "VH1"), before)

	// Offline: the old member edits the household, amends their earlier
	// visit and records a new one.
	ok(t, old.Update("H1", syncer.NewFields().Set("needs", "屋頂漏水，需要修繕")))
	ok(t, old.Update(before, syncer.NewFields().Set("follow_up", "下月再訪")))
	offline := must[string](t)(old.Create("visit", syncer.NewFields().Set("household_id", "H1").Set("visited_on", "2026-11-20").
		Set("met", "戶主").Set("needs", "屋頂漏水").Set("help", "上報村委")))
	if st := must[*syncer.Status](t)(old.Status()); st.Pending != 3 {
		t.Fatalf("old device has %d pending, want 3", st.Pending)
	}
	// Meanwhile the household is reassigned.
	resp, err := admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "H1", MemberId: "M2"})
	ok(t, err)
	if resp.GetPreviousMemberId() != "M1" {
		t.Fatalf("previous member %q, want M1", resp.GetPreviousMemberId())
	}
	h1Before := serverRecord(t, e, "H1")

	// Both sync, the old device first.
	rep := testenv.Sync(t, old)
	if rep.Pushed != 3 || rep.Rejected != 3 || rep.Applied != 0 {
		t.Fatalf("old device's sync: %+v, want 3 pushed, all rejected", rep)
	}
	testenv.Sync(t, gain)
	for round := 0; round < 2; round++ { // and again: nothing changes
		testenv.Sync(t, old)
		testenv.Sync(t, gain)
	}

	// The old device: none of the household's records from the server.
	lacks(t, old, "H1", f.id(t, "VH1"), before)
	holds(t, e, old, "H2", f.id(t, "E_M1"))
	if _, in := must[map[string]uint64](t)(old.Cursors())[domain.HouseholdBucket("H1")]; in {
		t.Errorf("old device keeps a cursor on h:H1")
	}
	// Its own writes stay, rejected with the reason.
	edit := rejection(t, old, "H1", "update")
	if edit.Code != domain.CodePermissionDenied || edit.Field != "household" || edit.Reason != "household H1 is not linked to you" {
		t.Errorf("rejected edit: %+v", edit)
	}
	amend := rejection(t, old, before, "update")
	if amend.Code != domain.CodePermissionDenied || amend.Field != "visit" || amend.Reason != "household H1 of this visit is not linked to you" {
		t.Errorf("rejected amendment: %+v", amend)
	}
	visit := rejection(t, old, offline, "create")
	if visit.Code != domain.CodePermissionDenied || visit.Field != "visit.household_id" || visit.Reason != "household H1 is not linked to you" {
		t.Errorf("rejected visit: %+v", visit)
	}
	it := must[*syncer.Item](t)(old.Get(offline))
	if it.State != "rejected" || it.Reason != "visit.household_id: household H1 is not linked to you" || it.Version != 0 {
		t.Errorf("rejected visit shown as %s %q version %d", it.State, it.Reason, it.Version)
	}
	if it.Field("needs") != "屋頂漏水" || it.Field("help") != "上報村委" || it.Field("household_id") != "H1" {
		t.Errorf("rejected visit lost the member's text: %v", it.Record)
	}
	if st := must[*syncer.Status](t)(old.Status()); st.Pending != 0 || st.Rejected != 3 {
		t.Errorf("old device: %d pending, %d rejected; want 0 and 3", st.Pending, st.Rejected)
	}

	// The new device: all of the household, as the server has it; the
	// rejected writes changed nothing there.
	holds(t, e, gain, "H1", f.id(t, "VH1"), before)
	lacks(t, gain, offline, "H2")
	if got := serverRecord(t, e, "H1"); !proto.Equal(got, h1Before) {
		t.Errorf("the rejected edit changed H1: %v", got)
	}
	if _, err := e.Store.Record(context.Background(), offline); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the rejected visit reached the server: %v", err)
	}
	if got := serverRecord(t, e, before).GetFields()["follow_up"]; got != nil {
		t.Errorf("the rejected amendment reached the server: %v", got)
	}
	// The new member works on it at once.
	ok(t, gain.Update("H1", syncer.NewFields().Set("needs", "屋頂漏水，已報修")))
	next := must[string](t)(gain.Create("visit", syncer.NewFields().Set("household_id", "H1").Set("visited_on", "2026-11-21")))
	if rep := testenv.Sync(t, gain); rep.Applied != 2 {
		t.Fatalf("new member's writes: %+v", rep)
	}
	holds(t, e, gain, "H1", next)
	testenv.Sync(t, old)
	lacks(t, old, "H1", next)

	// Byte-wise: the old member's scope is H2 (and their own events); no
	// other household's head or address is anywhere in their device's
	// files, once the log is checkpointed (as the syncer should after a
	// purge), nor in a pull answer for them.
	outside := []string{"歐陽翠花", "彭店村張家塆一組18號", "諸葛明月", "龜山村李家塆三組5號", "上官飛燕", "杏花村王家塆四組9號"}
	inside := []string{"司馬長風", "彭店村張家塆二組7號"}
	replica, err := store.OpenReplica(context.Background(), oldPath)
	ok(t, err)
	ok(t, replica.Checkpoint(context.Background()))
	ok(t, replica.Close())
	checkFiles := func(when string) {
		t.Helper()
		files := dbFiles(t, oldPath)
		var all []byte
		for name, b := range files {
			if found := holdsText(b, outside); len(found) > 0 {
				t.Errorf("%s: %s holds out-of-scope %q", when, name, found)
			}
			all = append(all, b...)
		}
		if found := holdsText(all, inside); len(found) != len(inside) {
			t.Errorf("%s: the device files hold only %q of the in-scope %q: the search does not work", when, found, inside)
		}
	}
	checkFiles("device open")
	ok(t, old.Close())
	checkFiles("device closed")

	_, resps := newRaw(t, e, "M1").pullAll()
	var wire []byte
	for _, r := range resps {
		b, err := proto.Marshal(r)
		ok(t, err)
		wire = append(wire, b...)
	}
	if found := holdsText(wire, outside); len(found) > 0 {
		t.Errorf("a pull answer for M1 holds out-of-scope %q", found)
	}
	if found := holdsText(wire, inside); len(found) != len(inside) {
		t.Errorf("a pull answer for M1 holds only %q of the in-scope %q", found, inside)
	}
}

// A mediator is removed from a case while offline with a note queued: the
// note comes back rejected and stays on the device; the case is purged.
// A mediator added gets the case from cursor 0. Nobody can remove the last
// mediator.
func TestScopeMediatorRemoved(t *testing.T) {
	e := testenv.Start(t)
	importOrg(t, e, scopeOrg())
	d1, d2, d3 := e.Device("D1"), e.Device("D2"), e.Device("D3")
	id := must[string](t)(d1.Create("dispute", syncer.NewFields().Set("category", "dispute").Set("title", "山林權屬糾紛").
		Set("parties", "張家；李家").Set("mediators", "D2")))
	testenv.Sync(t, d1)
	testenv.Sync(t, d2)
	testenv.Sync(t, d3)
	holds(t, e, d1, id)
	holds(t, e, d2, id)
	lacks(t, d3, id)
	if got := serverRecord(t, e, id).GetFields()["mediators"].GetValue(); got != "D1,D2" {
		t.Fatalf("mediators %q, want D1,D2", got)
	}

	// D1, offline, adds a note and edits the parties.
	ok(t, d1.Append(id, "notes", "雙方約定下週再談"))
	ok(t, d1.Update(id, syncer.NewFields().Set("parties", "張家；李家；王家")))
	// D2 takes D1 off the case.
	ok(t, d2.Update(id, syncer.NewFields().Set("mediators", "D2")))
	if rep := testenv.Sync(t, d2); rep.Applied != 1 {
		t.Fatalf("removing D1: %+v", rep)
	}
	// Nobody may leave a case with no mediator.
	ok(t, d2.Update(id, syncer.NewFields().Set("mediators", "")))
	if rep := testenv.Sync(t, d2); rep.Rejected != 1 {
		t.Fatalf("removing every mediator: %+v, want rejected", rep)
	}
	r := rejection(t, d2, id, "update")
	if r.Code != domain.CodeInvalidField || r.Field != "dispute.mediators" || !strings.Contains(r.Reason, "at least one mediator") {
		t.Errorf("removing every mediator: %+v", r)
	}
	// Nor name someone who is not a mediator.
	ok(t, d2.Update(id, syncer.NewFields().Set("mediators", "D2,M1")))
	testenv.Sync(t, d2)
	if r := must[[]*syncer.Rejection](t)(d2.Rejections()); len(r) != 2 || r[1].Field != "dispute.mediators" || r[1].Reason != "unknown mediator M1" {
		t.Errorf("naming a member as mediator: %+v", r)
	}
	if got := serverRecord(t, e, id).GetFields()["mediators"].GetValue(); got != "D2" {
		t.Fatalf("mediators %q, want D2", got)
	}
	// D2 adds D3, who gets the case at the next sync.
	ok(t, d2.Update(id, syncer.NewFields().Set("mediators", "D2,D3")))
	if rep := testenv.Sync(t, d2); rep.Applied != 1 {
		t.Fatalf("adding D3: %+v", rep)
	}
	testenv.Sync(t, d3)
	holds(t, e, d3, id)
	if c := must[map[string]uint64](t)(d3.Cursors()); c[domain.DisputeBucket(id)] == 0 {
		t.Errorf("D3 has no cursor on the case: %v", c)
	}

	// D1 syncs: both queued writes rejected, kept; the case purged.
	rep := testenv.Sync(t, d1)
	if rep.Rejected != 2 {
		t.Fatalf("D1's sync: %+v, want 2 rejected", rep)
	}
	lacks(t, d1, id)
	for _, op := range []string{"append", "update"} {
		r := rejection(t, d1, id, op)
		if r.Code != domain.CodePermissionDenied || r.Field != "dispute" || r.Reason != "you are not a mediator of dispute "+id {
			t.Errorf("D1's %s: %+v", op, r)
		}
	}
	d := serverRecord(t, e, id)
	if len(d.GetEntries()) != 0 || d.GetFields()["parties"].GetValue() != "張家；李家" {
		t.Errorf("D1's rejected writes reached the case: %v", d)
	}
	// D2 and D3 agree with the server.
	testenv.Sync(t, d2)
	holds(t, e, d2, id)
	holds(t, e, d3, id)
}

// A member moves to a grid in another village (an import upserts them with
// the new unit) and their links change in the same import: they get the
// new household with its visits by others, lose the old one, keep their
// own events, and may file events only in their new village.
func TestScopeMemberMoved(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e
	m1 := e.Device("M1")
	m3 := e.Device("M3")
	testenv.Sync(t, m1)
	testenv.Sync(t, m3)
	holds(t, e, m1, "H1", f.id(t, "VH1"), f.id(t, "E_M1"))
	holds(t, e, m3, "H3", f.id(t, "VH3"))

	importOrg(t, e, &pb.ImportOrgRequest{
		Users: []*pb.User{{Id: "M1", Name: "張國華", Role: pb.Role_ROLE_MEMBER, UnitId: "G2"}},
		Assignments: []*pb.Assignment{
			{HouseholdId: "H1", MemberId: "M2"}, {HouseholdId: "H3", MemberId: "M1"},
		},
	})
	testenv.Sync(t, m1)
	testenv.Sync(t, m3)
	holds(t, e, m1, "H3", f.id(t, "VH3"), f.id(t, "E_M1"))
	lacks(t, m1, "H1", f.id(t, "VH1"))
	lacks(t, m3, "H3", f.id(t, "VH3"))

	// Writes follow the new unit.
	visit := must[string](t)(m1.Create("visit", syncer.NewFields().Set("household_id", "H3").Set("visited_on", "2026-11-23")))
	inNew := must[string](t)(m1.Create("event", syncer.NewFields().Set("type", "meeting").Set("village_id", "V2").
		Set("occurred_on", "2026-11-23").Set("subject", "新網格見面會")))
	inOld := must[string](t)(m1.Create("event", syncer.NewFields().Set("type", "meeting").Set("village_id", "V1").
		Set("occurred_on", "2026-11-23").Set("subject", "舊網格告別會")))
	rep := testenv.Sync(t, m1)
	if rep.Applied != 2 || rep.Rejected != 1 {
		t.Fatalf("moved member's writes: %+v, want 2 applied, 1 rejected", rep)
	}
	holds(t, e, m1, visit, inNew)
	r := rejection(t, m1, inOld, "create")
	if r.Code != domain.CodePermissionDenied || r.Field != "event.village_id" || r.Reason != "village V1 is not yours (V2)" {
		t.Errorf("event in the old village: %+v", r)
	}
	// The new village's secretary sees the new work; the old one's does not.
	s1, s2 := newRaw(t, e, "S1"), newRaw(t, e, "S2")
	got1, _ := s1.pullAll()
	got2, _ := s2.pullAll()
	for _, id := range []string{visit, inNew} {
		if got1[id] != nil || got2[id] == nil {
			t.Errorf("%s: in S1's pull %v, in S2's %v; want only S2's", id, got1[id] != nil, got2[id] != nil)
		}
	}
}

// Scope changes wake the devices they concern: a running device is poked
// when a household is assigned to its member or its mediator is added to a
// case, and syncs them without waiting for its interval.
func TestScopeChangePokesRunningDevices(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e
	m2 := e.Device("M2")
	d2 := e.Device("D2")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	for _, d := range []*syncer.Device{m2, d2} {
		go func() { done <- d.Run(ctx, time.Hour) }()
	}
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}()
	// Wait until each device's poke stream is up: its own new events,
	// written elsewhere, reach it without waiting an hour.
	for _, u := range []struct {
		user string
		d    *syncer.Device
	}{{"M2", m2}, {"D2", d2}} {
		testenv.WaitFor(t, 10*time.Second, "the first background sync of "+u.user, func() bool {
			st, err := u.d.Status()
			return err == nil && st.LastSyncMs != 0
		})
		var last string
		var sent time.Time
		testenv.WaitFor(t, 10*time.Second, "a poke to reach "+u.user, func() bool {
			if last != "" {
				if _, err := u.d.Get(last); err == nil {
					return true
				}
			}
			if time.Since(sent) > 200*time.Millisecond { // the stream may not have been up: write again
				m := mkEvent("V1", "喚醒測試")
				f.raw[u.user].mustApply(m)
				last, sent = m.GetRecordId(), time.Now()
			}
			return false
		})
	}

	admin, actx := e.Admin()
	_, err := admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "H1", MemberId: "M2"})
	ok(t, err)
	x1 := f.id(t, "X1")
	f.raw["D1"].mustApply(mkUpdate(pb.Kind_KIND_DISPUTE, x1, serverRecord(t, e, x1), "mediators", "D1,D2"))
	testenv.WaitFor(t, 10*time.Second, "the assigned household to reach M2's running device", func() bool {
		_, err := m2.Get("H1")
		return err == nil
	})
	testenv.WaitFor(t, 10*time.Second, "the case to reach its new mediator's running device", func() bool {
		_, err := d2.Get(x1)
		return err == nil
	})
}

// A household moves to a grid in another village (an import upserts it with
// the new grid), and its visits move with it: a visit lies where its
// household does. The old village's secretary purges the household and
// every visit to it; the new village's secretary gets them all; the linked
// member keeps them (their household bucket does not change); the server
// files the visits under the new village and town, and the changelog and
// the export show each visit once more, at a new change number, its fields
// untouched. Then it moves to another town: the town secretaries swap too.
func TestScopeHouseholdMoved(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e
	second := mkVisit("H1", "2026-11-12", "met", "歐陽翠花", "needs", "後山滑坡隱患", "help", "上報鎮應急辦")
	f.raw["M1"].mustApply(second)
	visits := []string{f.id(t, "VH1"), second.GetRecordId()}
	h1 := append([]string{"H1"}, visits...)

	s1, s1Path := fileDevice(t, e, "S1")
	s2, s3, ts1, ts2, m1 := e.Device("S2"), e.Device("S3"), e.Device("TS1"), e.Device("TS2"), e.Device("M1")
	syncAll := func() {
		t.Helper()
		for round := 0; round < 2; round++ { // and again: nothing changes
			for _, d := range []*syncer.Device{s1, s2, s3, ts1, ts2, m1} {
				testenv.Sync(t, d)
			}
		}
	}
	syncAll()
	holds(t, e, s1, h1...)
	holds(t, e, ts1, h1...)
	holds(t, e, m1, h1...)
	lacks(t, s2, h1...)
	lacks(t, s3, h1...)
	lacks(t, ts2, h1...)

	// move imports H1 into grid, then checks the server's side: H1 and
	// its visits lie in village and town, each visit's fields untouched
	// and changed once more, after the household, in the changelog and in
	// the export.
	move := func(grid, village, town string) {
		t.Helper()
		before := map[string]*pb.Record{}
		for _, id := range h1 {
			before[id] = serverRecord(t, e, id)
		}
		changesBefore := changesByRecord(waitStream(t, e))
		importOrg(t, e, &pb.ImportOrgRequest{Households: []*pb.Household{{Id: "H1", GridId: grid, Head: "歐陽翠花"}}})
		house := serverRecord(t, e, "H1")
		if house.GetVersion() <= before["H1"].GetVersion() || house.GetFields()["grid_id"].GetValue() != grid {
			t.Fatalf("H1 after the move: %v", house)
		}
		for _, id := range h1 {
			if m := recordPlace(t, e, id); m.VillageID != village || m.TownID != town {
				t.Errorf("%s lies in %s/%s on the server, want %s/%s", id, m.VillageID, m.TownID, village, town)
			}
		}
		changesAfter := changesByRecord(waitStream(t, e))
		exported := map[string]*pb.Record{}
		for _, r := range export(t, e) {
			exported[r.GetId()] = r
		}
		for _, id := range visits {
			got := serverRecord(t, e, id)
			want := proto.Clone(before[id]).(*pb.Record)
			want.Version = got.GetVersion()
			want.Buckets = domain.RecordBuckets(want, village, town)
			if !proto.Equal(got, want) {
				t.Errorf("visit %s after the move:\ngot  %v\nwant %v (only version and buckets changed)", id, got, want)
			}
			if got.GetVersion() <= house.GetVersion() {
				t.Errorf("visit %s at version %d, not after the household's move (%d)", id, got.GetVersion(), house.GetVersion())
			}
			if n, m := len(changesBefore[id]), len(changesAfter[id]); m != n+1 {
				t.Errorf("visit %s: %d changes in the changelog before the move, %d after; want one more", id, n, m)
				continue
			}
			last := changesAfter[id][len(changesAfter[id])-1]
			if last.GetSeq() != got.GetVersion() || !proto.Equal(last.GetRecord(), got) || last.GetRegion() != town || last.GetDeviceId() != "admin" {
				t.Errorf("visit %s: the move's change %d (region %q, by %q) carries %v; want change %d in %s by admin carrying %v",
					id, last.GetSeq(), last.GetRegion(), last.GetDeviceId(), last.GetRecord(), got.GetVersion(), town, got)
			}
			if !proto.Equal(exported[id], got) {
				t.Errorf("visit %s exported as %v, want %v", id, exported[id], got)
			}
		}
	}

	// To G2: village V2, same town T1.
	move("G2", "V2", "T1")
	syncAll()
	// (1) The old village's secretary holds none of it.
	lacks(t, s1, h1...)
	for id := range deviceIDs(t, s1) {
		if slices.Contains(h1, id) {
			t.Errorf("S1's list still shows %s", id)
		}
	}
	holds(t, e, s1, "H2", f.id(t, "VH2")) // the village's own stay
	// (2) The new village's secretary holds all of it, as the server has it.
	holds(t, e, s2, h1...)
	// (3) The member and the town's secretary keep it, at its new versions.
	holds(t, e, m1, h1...)
	holds(t, e, ts1, h1...)
	lacks(t, s3, h1...)
	lacks(t, ts2, h1...)
	// A pull from scratch agrees.
	got1, _ := newRaw(t, e, "S1").pullAll()
	got2, _ := newRaw(t, e, "S2").pullAll()
	for _, id := range h1 {
		if got1[id] != nil || got2[id] == nil {
			t.Errorf("%s: in S1's pull %v, in S2's %v; want only S2's", id, got1[id] != nil, got2[id] != nil)
		}
	}
	// Byte-wise: nothing of H1 or its visits is left in S1's files once the
	// log is checkpointed.
	outside := []string{"歐陽翠花", "彭店村張家塆一組18號", "後山滑坡隱患", "上報鎮應急辦"}
	inside := []string{"司馬長風", "彭店村張家塆二組7號"}
	replica, err := store.OpenReplica(context.Background(), s1Path)
	ok(t, err)
	ok(t, replica.Checkpoint(context.Background()))
	ok(t, replica.Close())
	var all []byte
	for name, b := range dbFiles(t, s1Path) {
		if found := holdsText(b, outside); len(found) > 0 {
			t.Errorf("%s of S1's device holds %q of the moved household", name, found)
		}
		all = append(all, b...)
	}
	if found := holdsText(all, inside); len(found) != len(inside) {
		t.Errorf("S1's device files hold only %q of the in-scope %q: the search does not work", found, inside)
	}

	// To G3: village V3 in town T2.
	move("G3", "V3", "T2")
	syncAll()
	lacks(t, s2, h1...)
	lacks(t, ts1, h1...)
	holds(t, e, s3, h1...)
	holds(t, e, ts2, h1...)
	holds(t, e, m1, h1...)
	lacks(t, s1, h1...)

	// The member still writes to the moved household's visits, and the new
	// village's secretary gets the write.
	ok(t, m1.Update(second.GetRecordId(), syncer.NewFields().Set("follow_up", "雨季前再訪")))
	if rep := testenv.Sync(t, m1); rep.Applied != 1 {
		t.Fatalf("member's write to a moved visit: %+v", rep)
	}
	testenv.Sync(t, s3)
	holds(t, e, s3, second.GetRecordId())

	// The grid itself moves (G3 to village V1 in town T1): H1 and its
	// visits move with it, without being imported again (TestScopeUnitMoved
	// follows a unit's move in full).
	resp := importOrg(t, e, &pb.ImportOrgRequest{Units: []*pb.Unit{{Id: "G3", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V1", Name: "王家塆"}}})
	g3 := append(slices.Clone(h1), "H4", f.id(t, "VH4")) // H4 was always in G3
	if got := resp.GetRecordsMoved(); got != int32(len(g3)) {
		t.Errorf("moving grid G3 moved %d records, want its %d: H1, H4 and their visits", got, len(g3))
	}
	for _, id := range g3 {
		if m := recordPlace(t, e, id); m.VillageID != "V1" || m.TownID != "T1" {
			t.Errorf("%s lies in %s/%s after its grid moved, want V1/T1", id, m.VillageID, m.TownID)
		}
	}
	syncAll()
	holds(t, e, s1, h1...)
	holds(t, e, ts1, h1...)
	lacks(t, s3, h1...)
	lacks(t, ts2, h1...)
}

// A unit moves, and what lies in it moves along without being imported
// again. First a grid moves to another village of the same town: its
// households and their visits go to the new village (the old village's
// secretary purges them, the new one's gets them), the village's events
// and disputes stay, and the grid's members now work in the new village.
// Then that village moves to another town: everything filed in it, and
// its grids and people, now lie in the new town, whose secretary gets
// them while the old town's purges them. A visit made after the moves is
// filed where its household now lies; importing the same units again
// moves nothing.
func TestScopeUnitMoved(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e
	ctx := context.Background()
	grid1 := []string{"H1", "H2", f.id(t, "VH1"), f.id(t, "VH2")}
	stays := []string{f.id(t, "X1"), f.id(t, "X2"), f.id(t, "E_M1"), f.id(t, "E_M2"), f.id(t, "E_D1"), f.id(t, "E_D2")}
	village2 := []string{"H3", f.id(t, "VH3"), f.id(t, "X3"), f.id(t, "E_M3")}

	s1, s2, s3, ts1, ts2, m1 := e.Device("S1"), e.Device("S2"), e.Device("S3"), e.Device("TS1"), e.Device("TS2"), e.Device("M1")
	syncAll := func() {
		t.Helper()
		for _, d := range []*syncer.Device{s1, s2, s3, ts1, ts2, m1} {
			testenv.Sync(t, d)
		}
	}
	places := func(ids []string, village, town string) {
		t.Helper()
		for _, id := range ids {
			if m := recordPlace(t, e, id); m.VillageID != village || m.TownID != town {
				t.Errorf("%s lies in %s/%s on the server, want %s/%s", id, m.VillageID, m.TownID, village, town)
			}
		}
	}
	works := func(village, town string, users ...string) {
		t.Helper()
		for _, id := range users {
			u, err := e.Store.User(ctx, id)
			ok(t, err)
			if u.VillageID != village || u.TownID != town {
				t.Errorf("user %s works in %s/%s, want %s/%s", id, u.VillageID, u.TownID, village, town)
			}
		}
	}
	syncAll()
	holds(t, e, s1, grid1...)
	lacks(t, s2, grid1...)

	// G1 (V1, T1) moves to V2 (T1).
	resp := importOrg(t, e, &pb.ImportOrgRequest{Units: []*pb.Unit{{Id: "G1", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V2", Name: "張家塆"}}})
	if got := resp.GetRecordsMoved(); got != int32(len(grid1)) {
		t.Errorf("moving G1 moved %d records, want its 2 households and their 2 visits", got)
	}
	places(grid1, "V2", "T1")
	places(stays, "V1", "T1")
	works("V2", "T1", "M1", "M2")
	works("V1", "T1", "S1", "D1")
	syncAll()
	lacks(t, s1, grid1...)
	holds(t, e, s1, stays...)
	holds(t, e, s2, grid1...)
	holds(t, e, ts1, grid1...)
	holds(t, e, m1, "H1", f.id(t, "VH1"))
	if id, err := m1.Identity(); err != nil || id.VillageID != "V2" {
		t.Errorf("M1's device says it works in %q (%v), want V2", id.VillageID, err)
	}

	// V2 (T1) moves to T2: G1 and G2, their households and visits, V2's
	// disputes and events, and its people.
	resp = importOrg(t, e, &pb.ImportOrgRequest{Units: []*pb.Unit{{Id: "V2", Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: "T2", Name: "龜山村"}}})
	moved := append(slices.Clone(grid1), village2...)
	if got := resp.GetRecordsMoved(); got != int32(len(moved)) {
		t.Errorf("moving V2 moved %d records, want the %d filed in it", got, len(moved))
	}
	places(moved, "V2", "T2")
	places(stays, "V1", "T1")
	for _, g := range []string{"G1", "G2"} {
		ok(t, e.Store.Write(ctx, func(tx *store.Tx) error {
			u, err := tx.Unit(g)
			if err == nil && (u.VillageID != "V2" || u.TownID != "T2") {
				t.Errorf("grid %s lies in %s/%s, want V2/T2", g, u.VillageID, u.TownID)
			}
			return err
		}))
	}
	works("V2", "T2", "M1", "M2", "M3", "D3", "S2")
	syncAll()
	lacks(t, ts1, moved...)
	holds(t, e, ts1, stays...)
	holds(t, e, ts2, moved...)
	holds(t, e, s2, moved...)
	lacks(t, s3, moved...)

	// A visit made now is filed where its household lies.
	v := mkVisit("H1", "2026-11-20", "met", "歐陽翠花", "needs", "屋頂漏水")
	f.raw["M1"].mustApply(v)
	places([]string{v.GetRecordId()}, "V2", "T2")

	// The same units again: nothing moves.
	resp = importOrg(t, e, &pb.ImportOrgRequest{Units: []*pb.Unit{
		{Id: "V2", Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: "T2", Name: "龜山村"},
		{Id: "G1", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V2", Name: "張家塆"}}})
	if got := resp.GetRecordsMoved(); got != 0 {
		t.Errorf("importing the same units again moved %d records", got)
	}
}

// changesByRecord groups changes by record id, in changelog order.
func changesByRecord(changes []*pb.Change) map[string][]*pb.Change {
	out := map[string][]*pb.Change{}
	for _, c := range changes {
		out[c.GetRecord().GetId()] = append(out[c.GetRecord().GetId()], c)
	}
	return out
}

// recordPlace reads the village and town the server files a record under
// (the records table's columns, beside the body).
func recordPlace(t testing.TB, e *testenv.Env, id string) store.RecordMeta {
	t.Helper()
	var m store.RecordMeta
	ok(t, e.Store.Write(context.Background(), func(tx *store.Tx) error {
		var err error
		_, m, err = tx.Record(id)
		return err
	}))
	return m
}
