package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// rawUser is a device credential of a user driven with raw Sync calls, to
// send what a well-behaved syncer would refuse locally and to look at the
// exact answers.
type rawUser struct {
	t      testing.TB
	userID string
	ctx    context.Context
	client pb.SyncServiceClient
	seq    uint64
	wall   int64
	count  uint16
}

// newRaw enrolls a credential for userID through the real Enroll RPC.
func newRaw(t testing.TB, e *testenv.Env, userID string) *rawUser {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(ctx, &pb.EnrollRequest{Code: e.Secret(userID), DeviceName: "raw " + userID})
	if err != nil {
		t.Fatalf("enroll %s: %v", userID, err)
	}
	return &rawUser{t: t, userID: userID, client: pb.NewSyncServiceClient(e.Conn()),
		ctx: metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+resp.GetToken())}
}

// clock returns a fresh HLC at the current wall time, strictly after the
// previous one.
func (r *rawUser) clock() string {
	now := time.Now().UnixMilli()
	if now > r.wall {
		r.wall, r.count = now, 0
	} else {
		r.count++
	}
	return domain.HLC{Wall: r.wall, Counter: r.count, Node: "raw"}.String()
}

// push numbers and sends mutations (in calls of at most the server's limit)
// and returns one result per mutation, in order. It pulls nothing.
func (r *rawUser) push(muts ...*pb.Mutation) []*pb.MutationResult {
	r.t.Helper()
	var out []*pb.MutationResult
	for len(muts) > 0 {
		n := min(len(muts), 1000)
		batch := muts[:n]
		muts = muts[n:]
		for _, m := range batch {
			r.seq++
			m.Seq = r.seq
			if m.Hlc == "" {
				m.Hlc = r.clock()
			}
		}
		ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		// Page size 1: the answer carries the results and as few records
		// as the server allows.
		resp, err := r.client.Sync(ctx, &pb.SyncRequest{Mutations: batch, PageSize: 1})
		cancel()
		if err != nil {
			r.t.Fatalf("push as %s: %v", r.userID, err)
		}
		if len(resp.GetResults()) != len(batch) {
			r.t.Fatalf("push as %s: %d results for %d mutations", r.userID, len(resp.GetResults()), len(batch))
		}
		out = append(out, resp.GetResults()...)
	}
	return out
}

// mustApply pushes mutations and fails unless every one is applied.
func (r *rawUser) mustApply(muts ...*pb.Mutation) {
	r.t.Helper()
	for i, res := range r.push(muts...) {
		if res.GetStatus() != pb.MutationStatus_MUTATION_STATUS_APPLIED {
			r.t.Fatalf("%s: mutation %d (%v %v %s): %v", r.userID, i, muts[i].GetOp(), muts[i].GetKind(), muts[i].GetRecordId(), res)
		}
	}
}

// pullAll pulls the user's whole scope from cursor 0, page by page, and
// returns the records by id and every answer as it came.
func (r *rawUser) pullAll() (map[string]*pb.Record, []*pb.SyncResponse) {
	r.t.Helper()
	got := map[string]*pb.Record{}
	var resps []*pb.SyncResponse
	var cursors []*pb.Cursor
	for page := 0; ; page++ {
		ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		resp, err := r.client.Sync(ctx, &pb.SyncRequest{Cursors: cursors, PageSize: 2000})
		cancel()
		if err != nil {
			r.t.Fatalf("pull as %s: %v", r.userID, err)
		}
		resps = append(resps, resp)
		for _, rec := range resp.GetRecords() {
			got[rec.GetId()] = rec
		}
		cursors = resp.GetCursors()
		if !resp.GetMore() {
			return got, resps
		}
		if page > 1000 {
			r.t.Fatalf("pull as %s did not finish", r.userID)
		}
	}
}

// kv turns name, value, name, value ... into a map.
func kv(pairs ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return m
}

func mkVisit(household, date string, more ...string) *pb.Mutation {
	f := kv(more...)
	f["household_id"], f["visited_on"] = household, date
	return &pb.Mutation{RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE, Fields: f}
}

func mkDispute(village, title string, more ...string) *pb.Mutation {
	f := kv(more...)
	f["village_id"], f["title"] = village, title
	if f["category"] == "" {
		f["category"] = "dispute"
	}
	return &pb.Mutation{RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_CREATE, Fields: f}
}

func mkEvent(village, subject string, more ...string) *pb.Mutation {
	f := kv(more...)
	f["village_id"], f["subject"] = village, subject
	if f["type"] == "" {
		f["type"] = "meeting"
	}
	if f["occurred_on"] == "" {
		f["occurred_on"] = "2026-11-20"
	}
	f["hash"] = domain.EventHash(f)
	return &pb.Mutation{RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_EVENT, Op: pb.Op_OP_CREATE, Fields: f}
}

func mkHousehold(id, grid, head string) *pb.Mutation {
	return &pb.Mutation{RecordId: id, Kind: pb.Kind_KIND_HOUSEHOLD, Op: pb.Op_OP_CREATE, Fields: kv("grid_id", grid, "head", head)}
}

// mkUpdate sets fields of record id, made with base (the record as the
// writer saw it, nil if never seen) in view.
func mkUpdate(kind pb.Kind, id string, base *pb.Record, pairs ...string) *pb.Mutation {
	m := &pb.Mutation{RecordId: id, Kind: kind, Op: pb.Op_OP_UPDATE, Fields: kv(pairs...), BaseHlc: map[string]string{}}
	for name := range m.Fields {
		m.BaseHlc[name] = base.GetFields()[name].GetHlc()
	}
	return m
}

// putTownSecretary stores a secretary whose unit is a town, as an import
// of such a user would (server/auth.go reads the village and town from
// the users table: no village, the town).
func putTownSecretary(t testing.TB, e *testenv.Env, id, name, town string) {
	t.Helper()
	ok(t, e.Store.Write(context.Background(), func(tx *store.Tx) error {
		return tx.PutUser(&pb.User{Id: id, Name: name, Role: pb.Role_ROLE_SECRETARY, UnitId: town}, "", town)
	}))
}

// importOrg imports an org and fails on any row error.
func importOrg(t testing.TB, e *testenv.Env, req *pb.ImportOrgRequest) *pb.ImportOrgResponse {
	t.Helper()
	admin, ctx := e.Admin()
	resp, err := admin.ImportOrg(ctx, req)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if len(resp.GetErrors()) > 0 {
		t.Fatalf("import rejected rows: %v", resp.GetErrors())
	}
	return resp
}

// fileDevice is an enrolled device whose database file the test knows.
// It is the one phone of the e2e tests left plain on purpose: its tests
// search the file's bytes to prove that a purge removed what left the
// scope, which a key would hide (encryption_at_rest_test.go searches an
// encrypted one).
func fileDevice(t testing.TB, e *testenv.Env, userID string) (*syncer.Device, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "device.db")
	d, err := syncer.OpenWith(path, &syncer.Options{ConnectTimeout: time.Second})
	ok(t, err)
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Enroll(ctx, e.Code(userID), "phone of "+userID); err != nil {
		t.Fatalf("enroll %s: %v", userID, err)
	}
	return d, path
}

// dbFiles reads a SQLite database's files as bytes: the database, and its
// write-ahead log and shared-memory index if they exist.
func dbFiles(t testing.TB, path string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		ok(t, err)
		out[filepath.Base(p)] = b
	}
	return out
}

// holdsText reports which of texts occur in b, byte for byte (UTF-8).
func holdsText(b []byte, texts []string) []string {
	var found []string
	for _, s := range texts {
		if strings.Contains(string(b), s) {
			found = append(found, s)
		}
	}
	return found
}

// deviceIDs lists the ids of the records a device holds, by kind.
func deviceIDs(t testing.TB, d *syncer.Device) map[string]*syncer.Item {
	t.Helper()
	items, err := d.List("")
	ok(t, err)
	out := map[string]*syncer.Item{}
	for _, it := range items {
		out[it.ID] = it
	}
	return out
}

func mkNeed(village, household, summary string, more ...string) *pb.Mutation {
	f := kv(more...)
	f["village_id"], f["summary"] = village, summary
	if household != "" {
		f["household_id"] = household
	}
	if f["category"] == "" {
		f["category"] = "livelihood"
	}
	return &pb.Mutation{RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_NEED, Op: pb.Op_OP_CREATE, Fields: f}
}

func mkProject(village, title string, more ...string) *pb.Mutation {
	f := kv(more...)
	f["village_id"], f["title"] = village, title
	return &pb.Mutation{RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_PROJECT, Op: pb.Op_OP_CREATE, Fields: f}
}

// mkTransition moves record id from status from to status to, with the
// fields the move carries.
func mkTransition(kind pb.Kind, id, from, to string, more ...string) *pb.Mutation {
	f := kv(more...)
	f["status"] = to
	return &pb.Mutation{RecordId: id, Kind: kind, Op: pb.Op_OP_TRANSITION, Fields: f, FromStatus: from}
}

func mkAppend(kind pb.Kind, id, field, text string) *pb.Mutation {
	return &pb.Mutation{RecordId: id, Kind: kind, Op: pb.Op_OP_APPEND, Fields: kv(field, text)}
}

func mkVoid(kind pb.Kind, id, reason string) *pb.Mutation {
	return &pb.Mutation{RecordId: id, Kind: kind, Op: pb.Op_OP_VOID, Fields: kv("reason", reason)}
}

// mkSettle settles field of record id with value, made with base (the
// record as the writer saw it) in view.
func mkSettle(kind pb.Kind, id string, base *pb.Record, field, value string) *pb.Mutation {
	m := mkUpdate(kind, id, base, field, value)
	m.Op = pb.Op_OP_SETTLE
	return m
}

// outcome renders a mutation's result as the matrices write it: "applied"
// (a met conflict too: the write was allowed), or the rejection's code
// and field.
func outcome(res *pb.MutationResult) string {
	switch res.GetStatus() {
	case pb.MutationStatus_MUTATION_STATUS_APPLIED, pb.MutationStatus_MUTATION_STATUS_CONFLICT:
		return "applied"
	case pb.MutationStatus_MUTATION_STATUS_REJECTED:
		return res.GetCode() + " " + res.GetField()
	}
	return res.GetStatus().String()
}
