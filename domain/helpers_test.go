package domain_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Fixed UUIDv7 ids (version nibble 7, variant 10xx), so failures are
// reproducible.
const (
	householdID = "0190f3a2-1b2c-7d3e-8f40-51627384a5b6"
	visitID     = "0190f3a2-1b2c-7d3e-8f40-51627384a5b7"
	disputeID   = "0190f3a2-1b2c-7d3e-8f40-51627384a5b8"
	eventID     = "0190f3a2-1b2c-7d3e-8f40-51627384a5b9"
	// A UUIDv4: a well-formed id, but not one a device makes for a new record.
	uuidV4 = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
)

// hlc returns the string form of an HLC reading.
func hlc(wall int64, counter uint16, node string) string {
	return domain.HLC{Wall: wall, Counter: counter, Node: node}.String()
}

// mustParseHLC parses s or fails the test.
func mustParseHLC(t testing.TB, s string) domain.HLC {
	t.Helper()
	h, err := domain.ParseHLC(s)
	if err != nil {
		t.Fatalf("ParseHLC(%q): %v", s, err)
	}
	return h
}

// cjk returns n copies of a three-byte Chinese character.
func cjk(n int) string { return strings.Repeat("调", n) }

// mutation builds a mutation with seq 1.
func mutation(kind pb.Kind, op pb.Op, id, at string, fields map[string]string) *pb.Mutation {
	return &pb.Mutation{Seq: 1, RecordId: id, Kind: kind, Op: op, Hlc: at, Fields: fields}
}

// mustApply validates m, applies it to cur and fails the test on any
// rejection.
func mustApply(t testing.TB, cur *pb.Record, m *pb.Mutation, a domain.Actor) (*pb.Record, bool) {
	t.Helper()
	if rej := domain.ValidateMutation(m); rej != nil {
		t.Fatalf("ValidateMutation(%v): %v", m, rej)
	}
	next, conflict, rej := domain.Apply(cur, m, a)
	if rej != nil {
		t.Fatalf("Apply(%v): %v", m, rej)
	}
	return next, conflict
}

// wantRejection fails the test unless got is a rejection with the given code
// and field.
func wantRejection(t testing.TB, got *domain.Rejection, code, field string) {
	t.Helper()
	if got == nil {
		t.Fatalf("got no rejection, want %s on %s", code, field)
	}
	if got.Code != code || got.Field != field {
		t.Fatalf("got rejection %s on %q (%s), want %s on %q", got.Code, got.Field, got.Reason, code, field)
	}
}

// fieldValue returns a record's value of field name, or "" if unset.
func fieldValue(r *pb.Record, name string) string { return r.GetFields()[name].GetValue() }

// wantEqual fails the test unless got and want are equal protobuf messages.
func wantEqual(t testing.TB, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("got\n\t%v\nwant\n\t%v", got, want)
	}
}

// newHousehold creates a household record with head and phone set at hlc at.
func newHousehold(t testing.TB, at string) *pb.Record {
	t.Helper()
	m := mutation(pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_CREATE, householdID, at, map[string]string{
		"grid_id": "g-01", "head": "王建国", "phone": "13800000000",
	})
	r, _ := mustApply(t, nil, m, domain.Actor{UserID: "sec1", DeviceID: "devS"})
	return r
}

// newDispute creates an open dispute with mediator m1 at hlc at.
func newDispute(t testing.TB, at string) *pb.Record {
	t.Helper()
	m := mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_CREATE, disputeID, at, map[string]string{
		"village_id": "v-01", "category": "dispute", "title": "宅基地边界纠纷",
	})
	r, _ := mustApply(t, nil, m, domain.Actor{UserID: "m1", DeviceID: "devM1"})
	return r
}
