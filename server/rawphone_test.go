package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// rawPhone is an enrolled device that pushes hand-made mutations, one at
// a time, so that a test states exactly what the server is sent.
type rawPhone struct {
	t      *testing.T
	e      *testenv.Env
	ctx    context.Context
	client pb.SyncServiceClient
	seq    uint64
	clock  *domain.Clock
	// deviceID is the device's id, as enrolled.
	deviceID string
}

func newRawPhone(t *testing.T, e *testenv.Env, userID string) *rawPhone {
	t.Helper()
	resp, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(t.Context(), &pb.EnrollRequest{Code: e.Secret(userID), DeviceName: "phone of " + userID})
	if err != nil {
		t.Fatalf("enroll %s: %v", userID, err)
	}
	return &rawPhone{t: t, e: e, ctx: metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+resp.GetToken()),
		client: pb.NewSyncServiceClient(e.Conn()), clock: domain.NewClock(userID, domain.HLC{}, 0, time.Now), deviceID: resp.GetDeviceId()}
}

// push sends one mutation (its seq and hlc filled in) and returns the
// server's result.
func (p *rawPhone) push(m *pb.Mutation) *pb.MutationResult {
	p.t.Helper()
	p.seq++
	m.Seq = p.seq
	if m.Hlc == "" {
		m.Hlc = p.clock.Tick().String()
	}
	resp, err := p.client.Sync(p.ctx, &pb.SyncRequest{Mutations: []*pb.Mutation{m}, PageSize: 1})
	if err != nil {
		p.t.Fatalf("push %v: %v", m, err)
	}
	for _, r := range resp.GetResults() {
		if r.GetSeq() == m.Seq {
			return r
		}
	}
	p.t.Fatalf("push %v: no result in %v", m, resp.GetResults())
	return nil
}

// mustApply pushes m and fails unless it was applied.
func (p *rawPhone) mustApply(what string, m *pb.Mutation) {
	p.t.Helper()
	if r := p.push(m); r.GetStatus() != pb.MutationStatus_MUTATION_STATUS_APPLIED {
		p.t.Fatalf("%s: %v, want applied", what, r)
	}
}

// mustRefuse pushes m and fails unless it was rejected with code on field.
func (p *rawPhone) mustRefuse(what string, m *pb.Mutation, code, field string) {
	p.t.Helper()
	r := p.push(m)
	if r.GetStatus() != pb.MutationStatus_MUTATION_STATUS_REJECTED || r.GetCode() != code || r.GetField() != field {
		p.t.Fatalf("%s: %v, want rejected %s on %s", what, r, code, field)
	}
}

// read pulls the device's whole scope and returns record id as the device
// gets it (nil if it is not in its scope).
func (p *rawPhone) read(id string) *pb.Record {
	p.t.Helper()
	var cursors []*pb.Cursor
	var found *pb.Record
	for {
		resp, err := p.client.Sync(p.ctx, &pb.SyncRequest{Cursors: cursors, PageSize: 5000})
		if err != nil {
			p.t.Fatalf("pull: %v", err)
		}
		for _, r := range resp.GetRecords() {
			if r.GetId() == id {
				found = r
			}
		}
		cursors = resp.GetCursors()
		if !resp.GetMore() {
			return found
		}
	}
}

// stored reads a record from the server's database.
func stored(t *testing.T, e *testenv.Env, id string) *pb.Record {
	t.Helper()
	r, err := e.Store.Record(t.Context(), id)
	if err != nil {
		t.Fatalf("record %s: %v", id, err)
	}
	return r
}

func create(id string, k pb.Kind, fields map[string]string) *pb.Mutation {
	return &pb.Mutation{RecordId: id, Kind: k, Op: pb.Op_OP_CREATE, Fields: fields}
}

func op(id string, k pb.Kind, o pb.Op, fields map[string]string) *pb.Mutation {
	return &pb.Mutation{RecordId: id, Kind: k, Op: o, Fields: fields}
}

// newID makes a record id.
func newID() string { return domain.NewRecordID() }
