package server_test

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// lastAnswer keeps the last Sync call to finish, request and answer, the
// answer decoded from its wire encoding (the pull puts records in as
// stored bytes).
type lastAnswer struct {
	mu   sync.Mutex
	req  *pb.SyncRequest
	resp *pb.SyncResponse
}

func (l *lastAnswer) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if r, ok := req.(*pb.SyncRequest); ok && err == nil {
		b, merr := proto.Marshal(resp.(*pb.SyncResponse))
		back := &pb.SyncResponse{}
		if merr == nil {
			merr = proto.Unmarshal(b, back)
		}
		if merr != nil {
			panic(merr)
		}
		l.mu.Lock()
		l.req, l.resp = proto.Clone(r).(*pb.SyncRequest), back
		l.mu.Unlock()
	}
	return resp, err
}

// An echo whose record another device changed between the push and the
// reading of the answer is sent in full: the hash is compared with the
// record as it is when the answer is read, not as the push left it.
func TestEchoRecordChangedBetweenPushAndPullGoesInFull(t *testing.T) {
	l := &lastAnswer{}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(l.intercept))
	e.ImportSample()
	member, sec := e.Device(testenv.Member), e.Device(testenv.Secretary)
	sync1 := func(d *syncer.Device) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := d.Sync(ctx); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}
	sync1(member)
	sync1(sec)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(sec.Update("H001", syncer.NewFields().Set("tags", "獨居老人")))
	must(member.Update("H001", syncer.NewFields().Set("phone", "13900000009")))

	// The secretary's sync runs inside the member's, after its push: the
	// hook fires for the secretary's call too, and does nothing there.
	var fired atomic.Bool
	server.BetweenPushAndPull(t, func() {
		if fired.CompareAndSwap(false, true) {
			sync1(sec)
		}
	})
	sync1(member)
	if !fired.Load() {
		t.Fatal("the hook never ran")
	}
	l.mu.Lock()
	req, resp := l.req, l.resp
	l.mu.Unlock()
	sent := false
	for _, h := range req.GetExpected() {
		sent = sent || h.GetRecordId() == "H001"
	}
	if !sent {
		t.Fatalf("the member's request sent no hash for H001: %v", req.GetExpected())
	}
	// The last answer seen is the member's (the secretary's finished
	// inside it).
	var full *pb.Record
	for _, r := range resp.GetRecords() {
		if r.GetId() == "H001" {
			full = r
		}
	}
	for _, ec := range resp.GetEchoes() {
		if ec.GetRecordId() == "H001" {
			t.Fatalf("H001 was echoed though the secretary changed it after the push: %v", ec)
		}
	}
	if full == nil {
		t.Fatalf("the member's answer lacks H001 (records %d, echoes %v)", len(resp.GetRecords()), resp.GetEchoes())
	}
	it, err := member.Get("H001")
	must(err)
	det := proto.MarshalOptions{Deterministic: true}
	got, _ := det.Marshal(it.Record)
	want, _ := det.Marshal(full)
	if !bytes.Equal(got, want) {
		t.Fatalf("the member holds H001 as\n%v\nthe server sent\n%v", it.Record, full)
	}
	if it.Field("tags") != "獨居老人" || it.Field("phone") != "13900000009" {
		t.Errorf("member's H001: tags %q phone %q, want both writes", it.Field("tags"), it.Field("phone"))
	}
}

// A request's hashes are checked before anything is applied: at most one
// per mutation, a record id, 32 bytes of SHA-256. The error names the
// field and what is allowed.
func TestEchoExpectedChecked(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	p := newRawPhone(t, e, testenv.Member)
	visit := func() *pb.Mutation {
		return &pb.Mutation{Seq: 1, RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE, Hlc: p.clock.Tick().String(),
			Fields: map[string]string{"household_id": "H001", "visited_on": "2026-12-06"}}
	}
	for _, tc := range []struct {
		name string
		req  *pb.SyncRequest
		want string
	}{
		{"more hashes than mutations", &pb.SyncRequest{Expected: []*pb.RecordHash{{RecordId: "H001", Hash: make([]byte, 32)}}},
			"expected: 1 record hashes for 0 mutations; at most one per mutation"},
		{"short hash", &pb.SyncRequest{Mutations: []*pb.Mutation{visit()}, Expected: []*pb.RecordHash{{RecordId: "H001", Hash: make([]byte, 16)}}},
			"expected[0].hash: 16 bytes, want 32 (domain.EchoHash, SHA-256)"},
		{"no record id", &pb.SyncRequest{Mutations: []*pb.Mutation{visit()}, Expected: []*pb.RecordHash{{Hash: make([]byte, 32)}}},
			"expected[0].record_id: 0 bytes, want 1 to 80"},
	} {
		_, err := p.client.Sync(p.ctx, tc.req)
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != tc.want {
			t.Errorf("%s: %v, want InvalidArgument %q", tc.name, err, tc.want)
		}
	}
	// Nothing was applied: the device's first number is still free.
	if r := p.push(visit()); r.GetStatus() != pb.MutationStatus_MUTATION_STATUS_APPLIED {
		t.Errorf("the first visit after the refusals: %v", r)
	}
}
