package e2e

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// Devices work while the server is down, then sync in turn: afterwards
// every device, the server, the changelog and an HQ export agree, the
// concurrent household edit is kept as a conflict, and the concurrent
// dispute transitions leave one status and one conflict.
func TestOfflineWorkConverges(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	sec := e.Device(testenv.Secretary)
	med1 := e.Device(testenv.Mediator)
	med2 := e.Device(testenv.Mediator2)
	hq := e.Device(testenv.HQ)
	all := []*syncer.Device{member, sec, med1, med2, hq}
	for _, d := range all {
		testenv.Sync(t, d)
	}
	dispute := must[string](t)(med1.Create("dispute", syncer.NewFields().Set("category", "quarrel").
		Set("title", "宅基地邊界爭吵").Set("parties", "張大山；趙春梅").Set("mediators", testenv.Mediator2)))
	testenv.Sync(t, med1)
	testenv.Sync(t, med2)
	if _, err := med2.Get(dispute); err != nil {
		t.Fatalf("co-mediator did not get the dispute: %v", err)
	}

	// The server goes down; everyone keeps working.
	e.Stop()
	ok(t, member.Update("H001", syncer.NewFields().Set("phone", "13900000001")))
	ok(t, sec.Update("H001", syncer.NewFields().Set("phone", "13700000001")))
	visit := must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", "H001").
		Set("visited_on", "2026-11-20").Set("met", "張大山").Set("needs", "屋頂漏水，需要修繕").Set("help", "聯繫村委會")))
	ok(t, med1.Transition(dispute, "mediating"))
	ok(t, med2.Transition(dispute, "withdrawn"))
	ok(t, med1.Append(dispute, "notes", "雙方同意週五再談"))
	ok(t, med2.Append(dispute, "notes", "趙家提出補償要求"))
	event := must[string](t)(sec.Create("event", syncer.NewFields().Set("type", "party_day").
		Set("occurred_on", "2026-11-21").Set("subject", "主題黨日：學習調解條例")))
	for _, d := range []*syncer.Device{member, sec, med1, med2} {
		it := must[*syncer.Item](t)(d.Get(map[*syncer.Device]string{member: visit, sec: event, med1: dispute, med2: dispute}[d]))
		if it.State != "pending" {
			t.Fatalf("offline record %s is %s, want pending", it.ID, it.State)
		}
	}
	if _, err := member.Sync(t.Context()); err == nil {
		t.Fatal("sync with the server down succeeded")
	}

	e = restart(t, e)
	for round := 0; round < 2; round++ {
		for _, d := range all {
			testenv.Sync(t, d)
		}
	}

	// The household: the later edit wins, the other is a conflict.
	h := serverRecord(t, e, "H001")
	phone := h.GetFields()["phone"].GetValue()
	if phone != "13900000001" && phone != "13700000001" {
		t.Fatalf("phone = %q, want one of the two edits", phone)
	}
	if len(h.GetConflicts()) != 1 || h.GetConflicts()[0].GetField() != "phone" || h.GetConflicts()[0].GetValue() == phone {
		t.Fatalf("conflicts = %v, want one phone conflict holding the losing edit", h.GetConflicts())
	}
	if it := must[*syncer.Item](t)(member.Get("H001")); it.State != "conflict" {
		t.Errorf("member sees H001 as %s, want conflict", it.State)
	}

	// The dispute: med1 synced first, so mediating stands and withdrawn is
	// a conflict; both notes are kept.
	d := serverRecord(t, e, dispute)
	if got := d.GetFields()["status"].GetValue(); got != "mediating" {
		t.Errorf("status = %q, want mediating", got)
	}
	var statusConflicts int
	for _, c := range d.GetConflicts() {
		if c.GetField() == "status" && c.GetValue() == "withdrawn" {
			statusConflicts++
		}
	}
	if statusConflicts != 1 {
		t.Errorf("conflicts = %v, want one status conflict for withdrawn", d.GetConflicts())
	}
	var notes []string
	for _, en := range d.GetEntries() {
		notes = append(notes, en.GetText())
	}
	if len(notes) != 2 {
		t.Errorf("notes = %q, want both", notes)
	}

	// Every device holds the server's state of what it shares.
	for _, id := range []string{"H001", visit} {
		sameAsServer(t, e, member, id)
		sameAsServer(t, e, sec, id)
		sameAsServer(t, e, hq, id)
	}
	for _, dev := range []*syncer.Device{med1, med2, sec, hq} {
		sameAsServer(t, e, dev, dispute)
	}
	sameAsServer(t, e, sec, event)
	sameAsServer(t, e, hq, event)
	if _, err := member.Get(dispute); err == nil {
		t.Error("a member holds a dispute he does not mediate")
	}

	// HQ's export has every record once, equal to the server's.
	seen := map[string]int{}
	for _, r := range export(t, e) {
		seen[r.GetId()]++
		if !proto.Equal(r, serverRecord(t, e, r.GetId())) {
			t.Errorf("export of %s differs from the server", r.GetId())
		}
	}
	for _, id := range []string{"H001", visit, dispute, event} {
		if seen[id] != 1 {
			t.Errorf("export holds %s %d times", id, seen[id])
		}
	}

	// The changelog: every change once, in order; replaying it by version
	// gives the server's state.
	changes := waitStream(t, e)
	replay := map[string]*pb.Record{}
	for _, c := range changes {
		if c.GetRecord() == nil {
			continue // a unit, person, link, device or refused event
		}
		if cur := replay[c.GetRecord().GetId()]; cur == nil || c.GetRecord().GetVersion() > cur.GetVersion() {
			replay[c.GetRecord().GetId()] = c.GetRecord()
		}
	}
	for id, r := range replay {
		if !proto.Equal(r, serverRecord(t, e, id)) {
			t.Errorf("changelog replay of %s differs from the server", id)
		}
	}
	// The secretary's event chain verifies.
	ev := serverRecord(t, e, event)
	if err := domain.VerifyChain([]*pb.Record{ev}); err != nil {
		t.Errorf("event chain: %v", err)
	}
}
