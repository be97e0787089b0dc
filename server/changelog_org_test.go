package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// orgChange is one change of the changelog with its subject.
type orgChange struct {
	subject string
	*pb.Change
}

// kindOf names which one of a change's bodies is set, failing unless
// exactly one is.
func kindOf(t *testing.T, c *pb.Change) string {
	t.Helper()
	var set []string
	for name, ok := range map[string]bool{"record": c.GetRecord() != nil, domain.ChangeUnit: c.GetUnit() != nil,
		domain.ChangePerson: c.GetPerson() != nil, domain.ChangeLink: c.GetLink() != nil,
		domain.ChangeDevice: c.GetDevice() != nil, domain.ChangeRefused: c.GetRefused() != nil} {
		if ok {
			set = append(set, name)
		}
	}
	if len(set) != 1 {
		t.Fatalf("change %d carries %v, want exactly one of record, unit, person, link, device, refused", c.GetSeq(), set)
	}
	return set[0]
}

// changesSince waits until the relay published every change, checks that
// the stream (real JetStream) holds exactly the database's changes, and
// returns the changes after seq with their subjects.
func changesSince(t *testing.T, e *testenv.Env, after uint64) []orgChange {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	last, err := e.Store.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Server.Relay().WaitPublished(ctx, last); err != nil {
		t.Fatalf("relay: %v", err)
	}
	if err := testenv.StreamMatchesDB(ctx, e.JS, e.Store); err != nil {
		t.Fatalf("the stream does not match the database: %v", err)
	}
	_, stream := e.StreamChanges()
	if uint64(len(stream)) != last {
		t.Fatalf("the stream holds %d changes, the database %d", len(stream), last)
	}
	rows, err := e.Store.ChangesAfter(ctx, after, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out []orgChange
	for i, r := range rows {
		c := &pb.Change{}
		if err := proto.Unmarshal(r.Body, c); err != nil {
			t.Fatal(err)
		}
		if c.GetSeq() != after+uint64(i)+1 || c.GetChangeId() != fmt.Sprintf("%s-%d", e.Store.Instance(), c.GetSeq()) {
			t.Fatalf("change %d after %d is %d (%s): not gap-free", i, after, c.GetSeq(), c.GetChangeId())
		}
		kindOf(t, c)
		out = append(out, orgChange{r.Subject, c})
	}
	return out
}

// ofKind keeps the changes of one kind ("record", domain.ChangeUnit...).
func ofKind(t *testing.T, cs []orgChange, kind string) []orgChange {
	t.Helper()
	var out []orgChange
	for _, c := range cs {
		if kindOf(t, c.Change) == kind {
			out = append(out, c)
		}
	}
	return out
}

func lastSeq(t *testing.T, e *testenv.Env) uint64 {
	t.Helper()
	n, err := e.Store.LastSeq(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestChangelogCarriesTheOrg: an import puts each unit, person and
// household link on the stream (real JetStream) with its subject and
// region; importing the same rows again appends nothing; an administrator's
// assignment and a secretary's relink from a phone are dated links naming
// who made them; a unit's move carries the unit and the people working in
// it; disabling and enabling a person publishes them.
func TestChangelogCarriesTheOrg(t *testing.T) {
	e := testenv.Start(t)
	start := time.Now().UnixMilli()
	e.ImportSample()
	org := testenv.SampleOrg()
	cs := changesSince(t, e, 0)

	units := ofKind(t, cs, domain.ChangeUnit)
	if len(units) != len(org.GetUnits()) {
		t.Fatalf("%d unit changes, want %d", len(units), len(org.GetUnits()))
	}
	byUnit := map[string]orgChange{}
	for _, c := range units {
		byUnit[c.GetUnit().GetUnit().GetId()] = c
		if c.subject != "fieldsync.changes."+testenv.Town+".unit" || c.GetRegion() != testenv.Town || c.GetDeviceId() != "admin" || c.GetCommittedMs() < start {
			t.Errorf("unit change %v on %s", c.Change, c.subject)
		}
	}
	for _, u := range org.GetUnits() {
		got := byUnit[u.GetId()].GetUnit()
		if !proto.Equal(got.GetUnit(), u) || got.GetTownId() != testenv.Town {
			t.Errorf("unit %s on the stream: %v, want %v in town %s", u.GetId(), got, u, testenv.Town)
		}
	}
	if g := byUnit[testenv.Grid].GetUnit(); g.GetVillageId() != testenv.Village {
		t.Errorf("grid %s lies in village %q on the stream, want %s", testenv.Grid, g.GetVillageId(), testenv.Village)
	}

	people := ofKind(t, cs, domain.ChangePerson)
	if len(people) != len(org.GetUsers()) {
		t.Fatalf("%d person changes, want %d", len(people), len(org.GetUsers()))
	}
	for _, c := range people {
		p := c.GetPerson()
		want := "fieldsync.changes." + testenv.Town + ".person"
		if p.GetRole() == pb.Role_ROLE_HQ {
			want = "fieldsync.changes.none.person"
		}
		if c.subject != want || p.GetName() == "" || p.GetDisabledMs() != 0 {
			t.Errorf("person change %v on %s, want on %s", p, c.subject, want)
		}
		if p.GetId() == testenv.Member && (p.GetName() != "張國華" || p.GetUnitId() != testenv.Grid || p.GetVillageId() != testenv.Village || p.GetRole() != pb.Role_ROLE_MEMBER) {
			t.Errorf("member on the stream: %v", p)
		}
	}

	links := ofKind(t, cs, domain.ChangeLink)
	if len(links) != len(org.GetAssignments()) {
		t.Fatalf("%d link changes, want %d", len(links), len(org.GetAssignments()))
	}
	for _, c := range links {
		l := c.GetLink()
		if c.subject != "fieldsync.changes."+testenv.Town+".link" || l.GetMemberId() == "" || l.GetPreviousMemberId() != "" ||
			!strings.HasPrefix(l.GetBy(), "admin:") || l.GetTownId() != testenv.Town || l.GetVillageId() == "" {
			t.Errorf("link change %v on %s", l, c.subject)
		}
	}
	// The same rows again: nothing changed, nothing appended.
	before := lastSeq(t, e)
	e.ImportSample()
	if after := lastSeq(t, e); after != before {
		cs := changesSince(t, e, before)
		t.Fatalf("a second import of the same rows appended %d changes: %v", after-before, cs)
	}

	// An administrator's assignment: a dated link naming the admin.
	admin, actx := e.Admin()
	before = lastSeq(t, e)
	assignedAt := time.Now().UnixMilli()
	if _, err := admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "H001", MemberId: testenv.Member2}); err != nil {
		t.Fatal(err)
	}
	links = ofKind(t, changesSince(t, e, before), domain.ChangeLink)
	if len(links) != 1 {
		t.Fatalf("assignment: %d link changes, want 1", len(links))
	}
	if l := links[0].GetLink(); l.GetHouseholdId() != "H001" || l.GetMemberId() != testenv.Member2 || l.GetPreviousMemberId() != testenv.Member ||
		l.GetBy() != domain.AdminActor(domain.OwnerAccount) || links[0].GetCommittedMs() < assignedAt || links[0].GetDeviceId() != "admin" {
		t.Fatalf("assignment's link change: %v at %d", l, links[0].GetCommittedMs())
	}

	// A secretary's relink from a phone: by the secretary, from their device.
	sec := newRawPhone(t, e, testenv.Secretary)
	before = lastSeq(t, e)
	relink := op("H001", pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_UPDATE, map[string]string{"member_id": testenv.Member})
	relink.BaseHlc = map[string]string{"member_id": stored(t, e, "H001").GetFields()["member_id"].GetHlc()}
	sec.mustApply("the secretary relinks H001", relink)
	links = ofKind(t, changesSince(t, e, before), domain.ChangeLink)
	if len(links) != 1 {
		t.Fatalf("relink: %d link changes, want 1", len(links))
	}
	if l := links[0].GetLink(); l.GetMemberId() != testenv.Member || l.GetPreviousMemberId() != testenv.Member2 ||
		l.GetBy() != "secretary:"+testenv.Secretary || links[0].GetUserId() != testenv.Secretary || links[0].GetDeviceId() == "admin" {
		t.Fatalf("relink's link change: %v by %s/%s", l, links[0].GetDeviceId(), links[0].GetUserId())
	}
	// And unlinking: member "" with the previous member.
	before = lastSeq(t, e)
	unlink := op("H001", pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_UPDATE, map[string]string{"member_id": ""})
	unlink.BaseHlc = map[string]string{"member_id": stored(t, e, "H001").GetFields()["member_id"].GetHlc()}
	sec.mustApply("the secretary unlinks H001", unlink)
	links = ofKind(t, changesSince(t, e, before), domain.ChangeLink)
	if len(links) != 1 || links[0].GetLink().GetMemberId() != "" || links[0].GetLink().GetPreviousMemberId() != testenv.Member {
		t.Fatalf("unlink's link changes: %v", links)
	}

	// A grid moved to the other village: the grid, and the people who
	// work in it (their village changed), each once.
	before = lastSeq(t, e)
	resp, err := admin.ImportOrg(actx, &pb.ImportOrgRequest{Units: []*pb.Unit{{Id: testenv.Grid, Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: testenv.Village2, Name: "張家塆"}}})
	if err != nil || len(resp.GetErrors()) > 0 {
		t.Fatalf("move the grid: %v %v", resp.GetErrors(), err)
	}
	cs = changesSince(t, e, before)
	if us := ofKind(t, cs, domain.ChangeUnit); len(us) != 1 || us[0].GetUnit().GetVillageId() != testenv.Village2 || us[0].GetUnit().GetUnit().GetParentId() != testenv.Village2 {
		t.Fatalf("the grid's move: unit changes %v", us)
	}
	moved := map[string]bool{}
	for _, c := range ofKind(t, cs, domain.ChangePerson) {
		if c.GetPerson().GetVillageId() != testenv.Village2 {
			t.Errorf("a moved person on the stream: %v", c.GetPerson())
		}
		moved[c.GetPerson().GetId()] = true
	}
	if len(moved) != 2 || !moved[testenv.Member] || !moved[testenv.Member2] {
		t.Fatalf("people moved with the grid on the stream: %v, want %s and %s", moved, testenv.Member, testenv.Member2)
	}

	// Disabling publishes the person with when; enabling publishes them again.
	before = lastSeq(t, e)
	if _, err := admin.DisableUser(actx, &pb.DisableUserRequest{UserId: testenv.Mediator}); err != nil {
		t.Fatal(err)
	}
	ps := ofKind(t, changesSince(t, e, before), domain.ChangePerson)
	if len(ps) != 1 || ps[0].GetPerson().GetId() != testenv.Mediator || ps[0].GetPerson().GetDisabledMs() < start {
		t.Fatalf("disable: person changes %v", ps)
	}
	before = lastSeq(t, e)
	if _, err := admin.EnableUser(actx, &pb.EnableUserRequest{UserId: testenv.Mediator}); err != nil {
		t.Fatal(err)
	}
	ps = ofKind(t, changesSince(t, e, before), domain.ChangePerson)
	if len(ps) != 1 || ps[0].GetPerson().GetDisabledMs() != 0 {
		t.Fatalf("enable: person changes %v", ps)
	}
}

// TestChangelogCarriesDeviceHealth: a device's enrollment, a sync with a
// new app version, a change in its pending work and its revocation each
// publish its health; a sync within the hour that changes none of them
// does not.
func TestChangelogCarriesDeviceHealth(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	before := lastSeq(t, e)
	phone := newRawPhone(t, e, testenv.Member)
	ds := ofKind(t, changesSince(t, e, before), domain.ChangeDevice)
	if len(ds) != 1 {
		t.Fatalf("enrollment: %d device changes, want 1", len(ds))
	}
	dev := ds[0].GetDevice()
	if dev.GetUserId() != testenv.Member || dev.GetEnrolledMs() == 0 || dev.GetName() != "phone of "+testenv.Member ||
		ds[0].subject != "fieldsync.changes."+testenv.Town+".device" || ds[0].GetDeviceId() != dev.GetDeviceId() {
		t.Fatalf("enrollment's device change: %v on %s", ds[0].Change, ds[0].subject)
	}

	visit := func(pending uint32, version string) []orgChange {
		t.Helper()
		before := lastSeq(t, e)
		phone.seq++
		m := create(newID(), pb.Kind_KIND_VISIT, map[string]string{"household_id": "H002", "visited_on": "2026-12-01"})
		m.Seq, m.Hlc = phone.seq, phone.clock.Tick().String()
		resp, err := phone.client.Sync(phone.ctx, &pb.SyncRequest{Mutations: []*pb.Mutation{m}, PageSize: 1, AppVersion: version, PendingCount: pending})
		if err != nil || len(resp.GetResults()) != 1 || resp.GetResults()[0].GetStatus() != pb.MutationStatus_MUTATION_STATUS_APPLIED {
			t.Fatalf("sync: %v %v", resp.GetResults(), err)
		}
		cs := changesSince(t, e, before)
		if len(ofKind(t, cs, "record")) != 1 {
			t.Fatalf("sync: %d record changes, want the visit", len(ofKind(t, cs, "record")))
		}
		return ofKind(t, cs, domain.ChangeDevice)
	}
	if ds := visit(0, "1.4.0"); len(ds) != 1 || ds[0].GetDevice().GetAppVersion() != "1.4.0" || ds[0].GetDevice().GetLastSeq() != 1 {
		t.Fatalf("a new app version: device changes %v", ds)
	}
	if ds := visit(0, "1.4.0"); len(ds) != 0 {
		t.Fatalf("a sync within the hour with nothing new: device changes %v, want none", ds)
	}
	if ds := visit(0, ""); len(ds) != 0 {
		t.Fatalf("a sync that does not say its version: device changes %v, want none", ds)
	}
	if ds := visit(3, ""); len(ds) != 1 || ds[0].GetDevice().GetPendingCount() != 3 || ds[0].GetDevice().GetAppVersion() != "1.4.0" {
		t.Fatalf("pending work changed: device changes %v", ds)
	}

	// Calls that push nothing: the first writes the device's contact (and
	// nothing changed); the next, a minute early for another contact,
	// says its pending work changed.
	pull := func(pending uint32) {
		t.Helper()
		if _, err := phone.client.Sync(phone.ctx, &pb.SyncRequest{PageSize: 1, PendingCount: pending}); err != nil {
			t.Fatal(err)
		}
	}
	before = lastSeq(t, e)
	pull(3)
	if ds := ofKind(t, changesSince(t, e, before), domain.ChangeDevice); len(ds) != 0 {
		t.Fatalf("a pull-only call with nothing new: device changes %v", ds)
	}
	before = lastSeq(t, e)
	pull(0)
	if ds := ofKind(t, changesSince(t, e, before), domain.ChangeDevice); len(ds) != 1 || ds[0].GetDevice().GetPendingCount() != 0 {
		t.Fatalf("a pull-only call whose pending work changed: device changes %v", ds)
	}

	before = lastSeq(t, e)
	admin, actx := e.Admin()
	if _, err := admin.RevokeDevice(actx, &pb.RevokeDeviceRequest{DeviceId: dev.GetDeviceId()}); err != nil {
		t.Fatal(err)
	}
	ds = ofKind(t, changesSince(t, e, before), domain.ChangeDevice)
	if len(ds) != 1 || ds[0].GetDevice().GetRevokedMs() == 0 || ds[0].GetDeviceId() != "admin" {
		t.Fatalf("revocation: device changes %v", ds)
	}
	before = lastSeq(t, e)
	if _, err := admin.RevokeDevice(actx, &pb.RevokeDeviceRequest{DeviceId: dev.GetDeviceId()}); err != nil {
		t.Fatal(err)
	}
	if after := lastSeq(t, e); after != before {
		t.Fatalf("revoking a revoked device appended %d changes", after-before)
	}
}

// TestChangelogCarriesRefusedEvents: an event the server refuses is on
// the stream with its link in the device's chain, as RefusedLinks keeps
// it; an applied event travels as a record only.
func TestChangelogCarriesRefusedEvents(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	phone := newRawPhone(t, e, testenv.Member)
	event := func(village string, prev string) *pb.Mutation {
		f := map[string]string{"village_id": village, "subject": "入戶走訪", "type": "meeting", "occurred_on": "2026-11-20"}
		if prev != "" {
			f["prev_hash"] = prev
		}
		f["hash"] = domain.EventHash(f)
		return create(newID(), pb.Kind_KIND_EVENT, f)
	}
	before := lastSeq(t, e)
	first := event(testenv.Village, "")
	phone.mustApply("an event in the member's village", first)
	// Another village's event: the member does not work there.
	refused := event(testenv.Village2, first.GetFields()["hash"])
	if r := phone.push(refused); r.GetStatus() != pb.MutationStatus_MUTATION_STATUS_REJECTED {
		t.Fatalf("an event in another village: %v, want refused", r)
	}
	cs := changesSince(t, e, before)
	if n := len(ofKind(t, cs, "record")); n != 1 {
		t.Fatalf("%d record changes, want the applied event's", n)
	}
	rs := ofKind(t, cs, domain.ChangeRefused)
	if len(rs) != 1 {
		t.Fatalf("%d refused-event changes, want 1", len(rs))
	}
	got := rs[0].GetRefused()
	links, err := e.Store.RefusedLinks(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dev := got.GetDeviceId()
	if len(links[dev]) != 1 || links[dev][0] != (domain.ChainLink{Prev: got.GetPrevHash(), Hash: got.GetHash()}) {
		t.Fatalf("refused link on the stream %v, kept %v", got, links[dev])
	}
	if got.GetPrevHash() != first.GetFields()["hash"] || got.GetHash() != refused.GetFields()["hash"] || got.GetRecordId() != refused.GetRecordId() ||
		got.GetDeviceSeq() != 2 || got.GetUserId() != testenv.Member || got.GetCode() == "" || got.GetReason() == "" ||
		rs[0].subject != "fieldsync.changes."+testenv.Town+".refused" {
		t.Fatalf("refused event on the stream: %v on %s", got, rs[0].subject)
	}
}
