package server_test

import (
	"bytes"
	"context"
	"fmt"
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
	if !sentHash(req, "H001") {
		t.Fatalf("the member's request sent no hash for H001: %v", req)
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

// sentHash reports whether req carries a hash for record id, in either
// form: on a mutation (expect_hash) or the older expected.
func sentHash(req *pb.SyncRequest, id string) bool {
	for _, m := range req.GetMutations() {
		if m.GetRecordId() == id && len(m.GetExpectHash()) > 0 {
			return true
		}
	}
	for _, h := range req.GetExpected() {
		if h.GetRecordId() == id {
			return true
		}
	}
	return false
}

// A request's hashes are checked before anything is applied: a
// mutation's expect_hash is 16 bytes (domain.EchoHash) or none; the older
// expected has at most one per mutation, a record id, 32 bytes of
// SHA-256. The error names the field and what is allowed.
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
			"expected[0].hash: 16 bytes, want 32 (SHA-256; the older form of mutations[].expect_hash)"},
		{"no record id", &pb.SyncRequest{Mutations: []*pb.Mutation{visit()}, Expected: []*pb.RecordHash{{Hash: make([]byte, 32)}}},
			"expected[0].record_id: 0 bytes, want 1 to 80"},
		{"expect_hash of SHA-256's 32 bytes", &pb.SyncRequest{Mutations: []*pb.Mutation{withHash(visit(), 32)}},
			"mutations[0].expect_hash: 32 bytes, want 16 (domain.EchoHash) or none"},
		{"short expect_hash on the second mutation", &pb.SyncRequest{Mutations: []*pb.Mutation{visit(), withSeq(withHash(visit(), 8), 2)}},
			"mutations[1].expect_hash: 8 bytes, want 16 (domain.EchoHash) or none"},
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

func withHash(m *pb.Mutation, n int) *pb.Mutation {
	m.ExpectHash = bytes.Repeat([]byte{1}, n)
	return m
}

func withSeq(m *pb.Mutation, seq uint64) *pb.Mutation {
	m.Seq = seq
	return m
}

// Both forms of a device's hashes get echoes: on the record's mutation
// (expect_hash, domain.EchoHash's 16 bytes, as a device sends it now) and
// beside the mutations (expected: the record id and the whole SHA-256, as
// an older device sends it). A hash that is not the record's gets it in
// full, and where a record has both, the mutation's counts. A retry is
// told by the mutation's content without its expect_hash: sent again with
// another hash, or none, it gets its kept result, not a numbering gone
// back.
func TestEchoBothFormsOfTheHash(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	p := newRawPhone(t, e, testenv.Member)
	actor := domain.Actor{UserID: testenv.Member, DeviceID: p.deviceID, Role: pb.Role_ROLE_MEMBER}
	// The server takes a mutation's clock as the device's: its node is
	// the device id, as on a phone.
	clock := domain.NewClock(p.deviceID, domain.HLC{}, 0, time.Now)
	// visit makes the device's next visit and the record it computes.
	visit := func(seq uint64) (*pb.Mutation, *pb.Record) {
		t.Helper()
		m := &pb.Mutation{Seq: seq, RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE, Hlc: clock.Tick().String(),
			Fields: map[string]string{"household_id": "H001", "visited_on": "2026-12-06", "met": fmt.Sprintf("戶主 %d", seq)}}
		recs, err := domain.Expect([]*pb.Mutation{m}, func(string) (*pb.Record, error) { return nil, nil }, actor)
		if err != nil || recs[m.GetRecordId()] == nil {
			t.Fatalf("expect visit %d: %v, %v", seq, recs, err)
		}
		return m, recs[m.GetRecordId()]
	}
	hashed := func(m *pb.Mutation, h []byte) *pb.Mutation {
		c := proto.Clone(m).(*pb.Mutation)
		c.ExpectHash = h
		return c
	}
	// sync sends req and checks that it answered every mutation, applied,
	// with numbers that agree, and that each id in want came back as an
	// echo (true) or in full (false).
	sync := func(what string, req *pb.SyncRequest, want map[string]bool) {
		t.Helper()
		resp, err := p.client.Sync(p.ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if resp.GetNumbering() != pb.Numbering_NUMBERING_UNSPECIFIED || len(resp.GetResults()) != len(req.GetMutations()) {
			t.Fatalf("%s: numbering %v, results %v; want every mutation answered, numbers agreeing", what, resp.GetNumbering(), resp.GetResults())
		}
		for _, r := range resp.GetResults() {
			if r.GetStatus() != pb.MutationStatus_MUTATION_STATUS_APPLIED {
				t.Fatalf("%s: %v, want applied", what, r)
			}
		}
		for id, echo := range want {
			full, echoed := false, false
			for _, r := range resp.GetRecords() {
				full = full || r.GetId() == id
			}
			for _, ec := range resp.GetEchoes() {
				echoed = echoed || ec.GetRecordId() == id
			}
			if full == echo || echoed != echo {
				t.Errorf("%s: %s in full %v, as an echo %v; want echoed %v", what, id, full, echoed, echo)
			}
		}
	}
	m1, r1 := visit(1)
	sync("older form (expected, 32 bytes)", &pb.SyncRequest{Mutations: []*pb.Mutation{m1},
		Expected: domain.ExpectedHashes(map[string]*pb.Record{m1.GetRecordId(): r1})}, map[string]bool{m1.GetRecordId(): true})
	m2, r2 := visit(2)
	sync("expect_hash (16 bytes)", &pb.SyncRequest{Mutations: []*pb.Mutation{hashed(m2, domain.EchoHash(r2))}},
		map[string]bool{m2.GetRecordId(): true})
	m3, r3 := visit(3)
	sync("expect_hash not the record's", &pb.SyncRequest{Mutations: []*pb.Mutation{hashed(m3, make([]byte, 16))}},
		map[string]bool{m3.GetRecordId(): false})
	m4, r4 := visit(4)
	sync("retry of 2 without its hash and of 3 with another, then 4", &pb.SyncRequest{Mutations: []*pb.Mutation{
		m2, hashed(m3, domain.EchoHash(r3)), hashed(m4, domain.EchoHash(r4))}},
		map[string]bool{m2.GetRecordId(): false, m3.GetRecordId(): true, m4.GetRecordId(): true})
	m5, r5 := visit(5)
	sync("both forms, the mutation's not the record's", &pb.SyncRequest{Mutations: []*pb.Mutation{hashed(m5, make([]byte, 16))},
		Expected: domain.ExpectedHashes(map[string]*pb.Record{m5.GetRecordId(): r5})}, map[string]bool{m5.GetRecordId(): false})
}
