package e2e

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// A member logs three events, the middle one by mistake, and voids it (one
// synced before the void, one queued with it). The void marks the event
// and leaves its fields alone, so the server's events of that phone still
// form a chain that verifies; dropping the voided event instead would
// break it.
func TestVoidedEventKeepsDevicesChainVerifiable(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	sec := e.Device(testenv.Secretary)
	syncAll(t, member, sec)
	ev := func(subject string) string {
		return must[string](t)(member.Create("event", syncer.NewFields().Set("type", "service_request").
			Set("occurred_on", "2026-11-21").Set("subject", subject).Set("service_mode", "proxy")))
	}
	first := ev("代辦醫保報銷")
	mistake := ev("代辦醫保報銷（重複）")
	testenv.Sync(t, member)
	before := serverRecord(t, e, mistake)
	ok(t, member.Void(mistake, "誤錄：與上一條重複"))
	last := ev("代辦殘疾證年審")
	syncAll(t, member, sec)
	noRejections(t, "the member", member)

	voided := serverRecord(t, e, mistake)
	if v := voided.GetVoid(); v == nil || v.GetAuthorId() != testenv.Member || v.GetReason() != "誤錄：與上一條重複" {
		t.Fatalf("server's event: void %v, want the member's", v)
	}
	if !proto.Equal(&pb.Record{Fields: voided.GetFields()}, &pb.Record{Fields: before.GetFields()}) {
		t.Errorf("the void changed the event's fields:\nbefore %v\nafter  %v", before.GetFields(), voided.GetFields())
	}

	// The server's events from the member's phone, in their order on the
	// chain (the export gives every record).
	dev := deviceID(t, member)
	var chain []*pb.Record
	for _, r := range export(t, e) {
		if r.GetKind() == pb.Kind_KIND_EVENT && r.GetOriginDeviceId() == dev {
			chain = append(chain, r)
		}
	}
	ids := func(rs []*pb.Record) (out []string) {
		for _, r := range rs {
			out = append(out, r.GetId())
		}
		slices.Sort(out)
		return out
	}
	want := []string{first, mistake, last}
	slices.Sort(want)
	if !slices.Equal(ids(chain), want) {
		t.Fatalf("the phone's events on the server: %v, want %v", ids(chain), want)
	}
	if err := domain.VerifyChain(chain); err != nil {
		t.Errorf("the chain with a voided event: %v", err)
	}
	var without []*pb.Record
	for _, r := range chain {
		if r.GetVoid() == nil {
			without = append(without, r)
		}
	}
	if err := domain.VerifyChain(without); err == nil {
		t.Error("the chain verifies without the voided event: the test shows nothing")
	}
	// Every phone holding it sees it voided, as the server has it.
	sameAsServer(t, e, member, mistake)
	sameAsServer(t, e, sec, mistake)
}
