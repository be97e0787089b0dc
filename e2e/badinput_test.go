package e2e

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// rawDevice enrolls a credential for userID and returns a context carrying
// it, to send requests a well-behaved device would never make.
func rawDevice(t *testing.T, e *testenv.Env, userID string) context.Context {
	t.Helper()
	resp, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(t.Context(), &pb.EnrollRequest{Code: e.Secret(userID), DeviceName: "raw"})
	ok(t, err)
	return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+resp.GetToken())
}

func hlc() string { return domain.HLC{Wall: 1_790_000_000_000, Node: "x"}.String() }

// Bad mutations each come back rejected with the field at fault and what is
// allowed, and the good ones queued behind them are applied.
func TestBadInputIsRejectedAndDoesNotBlock(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	medCtx := rawDevice(t, e, testenv.Mediator)
	client := pb.NewSyncServiceClient(e.Conn())

	// A dispute to work on, already closed.
	dispute := domain.NewRecordID()
	seq := uint64(0)
	next := func() uint64 { seq++; return seq }
	setup := []*pb.Mutation{
		{Seq: next(), RecordId: dispute, Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_CREATE, Hlc: hlc(),
			Fields: map[string]string{"category": "dispute", "title": "山林權屬糾紛", "village_id": testenv.Village}},
		{Seq: next(), RecordId: dispute, Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_TRANSITION, Hlc: hlc(), FromStatus: "open", Fields: map[string]string{"status": "withdrawn"}},
		{Seq: next(), RecordId: dispute, Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_TRANSITION, Hlc: hlc(), FromStatus: "withdrawn", Fields: map[string]string{"status": "closed"}},
	}
	resp, err := client.Sync(medCtx, &pb.SyncRequest{Mutations: setup})
	ok(t, err)
	for _, r := range resp.GetResults() {
		if r.GetStatus() != pb.MutationStatus_MUTATION_STATUS_APPLIED {
			t.Fatalf("setup mutation %d: %v", r.GetSeq(), r)
		}
	}

	good := domain.NewRecordID()
	cases := []struct {
		name      string
		m         *pb.Mutation
		code      string
		field     string
		reasonHas string
	}{
		{"oversized note", &pb.Mutation{RecordId: dispute, Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_APPEND,
			Fields: map[string]string{"notes": strings.Repeat("調", 1400)}}, domain.CodeInvalidField, "dispute.notes", "at most 4000 bytes"},
		{"invalid transition", &pb.Mutation{RecordId: dispute, Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_TRANSITION, FromStatus: "closed",
			Fields: map[string]string{"status": "open"}}, domain.CodeInvalidTransition, "dispute.status", "closed is final"},
		{"malformed id", &pb.Mutation{RecordId: "not a uuid!", Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_CREATE,
			Fields: map[string]string{"category": "case", "title": "x", "village_id": testenv.Village}}, domain.CodeInvalidField, "mutation.record_id", "malformed id"},
		{"unknown category", &pb.Mutation{RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_CREATE,
			Fields: map[string]string{"category": "fight", "title": "x", "village_id": testenv.Village}}, domain.CodeInvalidField, "dispute.category", "problem, quarrel, dispute, hazard, case"},
		{"unknown village", &pb.Mutation{RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_CREATE,
			Fields: map[string]string{"category": "case", "title": "x", "village_id": "V99"}}, domain.CodeNotFound, "dispute.village_id", "unknown village V99"},
		{"member's kind", &pb.Mutation{RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE,
			Fields: map[string]string{"household_id": "H001", "visited_on": "2026-11-20"}}, domain.CodePermissionDenied, "visit", "mediator may not"},
		{"good, behind the bad", &pb.Mutation{RecordId: good, Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_CREATE,
			Fields: map[string]string{"category": "hazard", "title": "危房隱患", "village_id": testenv.Village}}, "", "", ""},
	}
	var batch []*pb.Mutation
	for _, c := range cases {
		c.m.Seq, c.m.Hlc = next(), hlc()
		batch = append(batch, c.m)
	}
	resp, err = client.Sync(medCtx, &pb.SyncRequest{Mutations: batch})
	ok(t, err)
	if len(resp.GetResults()) != len(cases) {
		t.Fatalf("got %d results for %d mutations", len(resp.GetResults()), len(cases))
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := resp.GetResults()[i]
			if c.code == "" {
				if r.GetStatus() != pb.MutationStatus_MUTATION_STATUS_APPLIED {
					t.Fatalf("got %v, want applied", r)
				}
				return
			}
			if r.GetStatus() != pb.MutationStatus_MUTATION_STATUS_REJECTED || r.GetCode() != c.code || r.GetField() != c.field || !strings.Contains(r.GetReason(), c.reasonHas) {
				t.Fatalf("got %v, want rejected %s on %s with %q", r, c.code, c.field, c.reasonHas)
			}
		})
	}
	if got := serverRecord(t, e, good).GetFields()["title"].GetValue(); got != "危房隱患" {
		t.Errorf("the good dispute's title is %q", got)
	}
	if got := serverRecord(t, e, dispute).GetFields()["status"].GetValue(); got != "closed" {
		t.Errorf("the closed dispute's status is %q", got)
	}
}

// A device queues a visit for a household the server does not know: it
// comes back rejected and stays on the device, and the visits behind it
// sync. Input the device itself can judge is refused at once. (Before its
// first sync: after it, the device knows its links and refuses the visit
// itself, see visit_to_unlinked_household_test.go.)
func TestDeviceKeepsRejectedAndSyncsTheRest(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	bad := must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", "H999").Set("visited_on", "2026-11-20")))
	good := must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", "H002").Set("visited_on", "2026-11-20").Set("help", "送米送油")))
	rep := testenv.Sync(t, member)
	if rep.Rejected != 1 || rep.Applied != 1 {
		t.Fatalf("report %+v, want 1 rejected and 1 applied", rep)
	}
	sameAsServer(t, e, member, good)
	it := must[*syncer.Item](t)(member.Get(bad))
	if it.State != "rejected" || !strings.Contains(it.Reason, "visit.household_id") {
		t.Fatalf("bad visit: %s %q", it.State, it.Reason)
	}
	rej := must[[]*syncer.Rejection](t)(member.Rejections())
	if len(rej) != 1 || rej[0].RecordID != bad || rej[0].Code != domain.CodeNotFound {
		t.Fatalf("rejections %+v", rej)
	}
	// Still kept after more syncs.
	testenv.Sync(t, member)
	if _, err := member.Get(bad); err != nil {
		t.Fatalf("rejected visit dropped: %v", err)
	}

	local := []struct {
		name  string
		err   error
		field string
	}{
		{"oversized note", func() error {
			_, err := member.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-11-20").Set("needs", strings.Repeat("難", 1500)))
			return err
		}(), "visit.needs"},
		{"bad date", func() error {
			_, err := member.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-13-01"))
			return err
		}(), "visit.visited_on"},
		{"not allowed", member.Update("H001", syncer.NewFields().Set("head", "改名")), "household.head"},
	}
	for _, c := range local {
		var r *domain.Rejection
		if c.err == nil || !errorsAs(c.err, &r) || r.Field != c.field {
			t.Errorf("%s: got %v, want a rejection of %s", c.name, c.err, c.field)
		}
	}
	if st := must[*syncer.Status](t)(member.Status()); st.Pending != 0 {
		t.Errorf("locally refused writes were queued: %d pending", st.Pending)
	}
}

func TestWrongEnrollmentCode(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	client := pb.NewEnrollServiceClient(e.Conn())
	code := e.Secret(testenv.Member)
	_, err := client.Enroll(t.Context(), &pb.EnrollRequest{Code: "aaaabbbbccccdddd"})
	if status.Code(err) != codes.NotFound || !strings.HasPrefix(status.Convert(err).Message(), "code: unknown enrollment code") {
		t.Fatalf("wrong code: %v", err)
	}
	_, err = client.Enroll(t.Context(), &pb.EnrollRequest{Code: ""})
	if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), "code:") {
		t.Fatalf("empty code: %v", err)
	}
	// Typed with dashes and upper case, it still works; once.
	typed := strings.ToUpper(code[:4] + "-" + code[4:])
	if _, err := client.Enroll(t.Context(), &pb.EnrollRequest{Code: typed}); err != nil {
		t.Fatalf("right code: %v", err)
	}
	_, err = client.Enroll(t.Context(), &pb.EnrollRequest{Code: code})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "already used") {
		t.Fatalf("reused code: %v", err)
	}
}
