package e2e

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// A phone whose clock jumps two days ahead after its last sync makes two
// edits of one field, one after the other. The server clamps both clocks to
// the same now+5min, so the second edit no longer sorts after the first: it
// is kept as a "conflict" and the user's own earlier value stays. The
// device's own sequential edits must never conflict, and the later must win
// (invariant 3, merge rule "the later HLC wins").
func TestReviewFutureClockOwnSequentialEdits(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	var shift atomic.Int64
	member := e.Device(testenv.Member, func(o *syncer.Options) {
		o.Now = func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	})
	testenv.Sync(t, member)

	shift.Store(int64(48 * time.Hour)) // the phone's clock is set two days ahead
	ok(t, member.Update("H001", syncer.NewFields().Set("phone", "13911110001")))
	time.Sleep(3 * time.Millisecond)
	ok(t, member.Update("H001", syncer.NewFields().Set("phone", "13911110002")))
	testenv.Sync(t, member)

	h := serverRecord(t, e, "H001")
	if got := h.GetFields()["phone"].GetValue(); got != "13911110002" {
		t.Errorf("phone = %q, want the device's later edit 13911110002", got)
	}
	if len(h.GetConflicts()) != 0 {
		t.Errorf("the device's own sequential edits made conflicts: %v", h.GetConflicts())
	}
}

// gate blocks Sync calls on the server while armed, as a field phone's
// stalled link (half-open TCP, no answer) would.
type gate struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g *gate) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if info.FullMethod == pb.SyncService_Sync_FullMethodName && g.armed.Load() {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h(ctx, req)
}

// While a sync waits on a slow or stalled link, the user's local writes
// block: Device.mu is held across the network call. Invariant 5: every
// user action works with no network.
func TestReviewLocalWriteBlockedBySync(t *testing.T) {
	g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(g.intercept))
	e.ImportSample()
	member := e.Device(testenv.Member)
	testenv.Sync(t, member)

	g.armed.Store(true)
	syncDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := member.Sync(ctx)
		syncDone <- err
	}()
	<-g.entered // the sync is on the wire

	writeDone := make(chan error, 1)
	go func() { writeDone <- member.Update("H001", syncer.NewFields().Set("phone", "13911119999")) }()
	var werr error
	select {
	case werr = <-writeDone:
	case <-time.After(2 * time.Second):
		t.Errorf("a local Update waited more than 2s for a sync stuck on the network")
		g.armed.Store(false)
		close(g.release)
		<-syncDone
		werr = <-writeDone
		ok(t, werr)
		return
	}
	ok(t, werr)
	g.armed.Store(false)
	close(g.release)
	<-syncDone
}

// A household moved to another village by an administrator's re-import
// leaves the village secretary's scope, but the secretary's device keeps
// it for ever: PutRecord deletes the record's row of the bucket it left, so
// no pull of v:<old village> ever says the record left (invariant 4: a
// record that leaves a user's scope is purged at the next sync).
func TestReviewMovedHouseholdPurgedFromOldSecretary(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	sec := e.Device(testenv.Secretary)
	testenv.Sync(t, sec)
	if _, err := sec.Get("H001"); err != nil {
		t.Fatalf("secretary should hold H001 before the move: %v", err)
	}

	admin, ctx := e.Admin()
	resp, err := admin.ImportOrg(ctx, &pb.ImportOrgRequest{Households: []*pb.Household{
		{Id: "H001", GridId: testenv.Grid2, Head: "張大山", Address: "張家塆1號", Phone: "13800000001", Members: "4"},
	}})
	ok(t, err)
	if len(resp.GetErrors()) > 0 {
		t.Fatalf("import: %v", resp.GetErrors())
	}
	if b := serverRecord(t, e, "H001").GetBuckets(); contains(b, domain.VillageBucket(testenv.Village)) {
		t.Fatalf("H001 still sits in %s: %v", testenv.Village, b)
	}

	testenv.Sync(t, sec)
	if it, err := sec.Get("H001"); err == nil {
		t.Errorf("secretary of %s still holds H001 (buckets %v) after it moved to %s", testenv.Village, it.Record.GetBuckets(), testenv.Village2)
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// A Write racing Close can be queued after the writer drained the queue and
// stopped: it then waits on j.done for ever (a hung RPC and a leaked
// goroutine). store/server.go Write selects between s.jobs<-j and <-s.quit
// at random once quit is closed.
func TestReviewStoreWriteRacingCloseHangs(t *testing.T) {
	for round := 0; round < 300; round++ {
		st, err := store.OpenServer(context.Background(), filepath.Join(t.TempDir(), "s.db"))
		ok(t, err)
		var wg sync.WaitGroup
		for i := 0; i < 256; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if err := st.Write(context.Background(), func(*store.Tx) error { return nil }); errors.Is(err, store.ErrClosed) {
						return
					}
				}
			}()
		}
		time.Sleep(2 * time.Millisecond)
		ok(t, st.Close())
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: a Write queued during Close never returned", round)
		}
	}
}

// A mutation numbered 0 (the device's numbering starts at 1) is answered
// APPLIED although nothing was applied: applyPush takes seq <= last_seq
// (0) for a retry. Invariant 6: bad input gets a clear error; invariant 2:
// results must be true.
func TestReviewSeqZeroAnsweredApplied(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	en, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(context.Background(), &pb.EnrollRequest{Code: e.Secret(testenv.Member), DeviceName: "raw"})
	ok(t, err)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+en.GetToken())
	before := serverRecord(t, e, "H001").GetFields()["phone"].GetValue()
	m := &pb.Mutation{Seq: 0, RecordId: "H001", Kind: pb.Kind_KIND_HOUSEHOLD, Op: pb.Op_OP_UPDATE,
		Fields: map[string]string{"phone": "13900000000"}, Hlc: domain.HLC{Wall: time.Now().UnixMilli(), Node: en.GetDeviceId()}.String()}
	resp, err := pb.NewSyncServiceClient(e.Conn()).Sync(ctx, &pb.SyncRequest{Mutations: []*pb.Mutation{m}})
	if status.Code(err) == codes.InvalidArgument {
		return // fixed: refused with a clear error
	}
	ok(t, err)
	r := resp.GetResults()[0]
	after := serverRecord(t, e, "H001").GetFields()["phone"].GetValue()
	if r.GetStatus() == pb.MutationStatus_MUTATION_STATUS_APPLIED && after == before {
		t.Errorf("mutation seq 0 answered APPLIED but nothing was applied (phone still %q)", after)
	}
}

// failAfter lets n Sync calls through, then fails the next one before the
// server handles it (a link lost between two pages).
type failAfter struct {
	armed atomic.Bool
	n     atomic.Int32
}

func (f *failAfter) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if info.FullMethod == pb.SyncService_Sync_FullMethodName && f.armed.Load() && f.n.Add(-1) < 0 {
		return nil, status.Error(codes.Unavailable, "test: link lost between pages")
	}
	return h(ctx, req)
}

// With paging, the answer that acknowledges a device's write need not carry
// the written record. The device then drops the mutation from the outbox
// and rebuilds the view from its stale base: the user's acknowledged edit
// disappears (state "synced"). If the link drops before the next page, the
// next edit of that field carries a stale base_hlc and the server records a
// spurious conflict against the user's own previous edit (invariant 3).
func TestReviewPagedSyncDropsOwnAcknowledgedEdit(t *testing.T) {
	f := &failAfter{}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(f.intercept))
	e.ImportSample()
	member := e.Device(testenv.Member, func(o *syncer.Options) { o.PageSize = 1 })
	sec := e.Device(testenv.Secretary)
	testenv.Sync(t, member)
	testenv.Sync(t, sec)

	// Another change sorts first in the member's scope (h:H001 < h:H003).
	ok(t, sec.Update("H001", syncer.NewFields().Set("tags", "重點戶")))
	testenv.Sync(t, sec)

	ok(t, member.Update("H003", syncer.NewFields().Set("phone", "13911113333")))
	f.n.Store(1)
	f.armed.Store(true)
	if _, err := member.Sync(t.Context()); err == nil {
		t.Fatal("sync succeeded although its second page failed")
	}
	f.armed.Store(false)
	if got := serverRecord(t, e, "H003").GetFields()["phone"].GetValue(); got != "13911113333" {
		t.Fatalf("server phone = %q: the edit was not applied on page 1", got)
	}
	it := must[*syncer.Item](t)(member.Get("H003"))
	if it.Field("phone") != "13911113333" {
		t.Errorf("device shows H003 phone %q (state %s) after the server acknowledged 13911113333", it.Field("phone"), it.State)
	}

	ok(t, member.Update("H003", syncer.NewFields().Set("phone", "13911114444")))
	testenv.Sync(t, member)
	h := serverRecord(t, e, "H003")
	if len(h.GetConflicts()) != 0 {
		t.Errorf("the member's two sequential edits made a conflict: %v", h.GetConflicts())
	}
}

// The stream's last message is deleted (an operator's "nats stream rmm", or
// a tail JetStream dropped): the relay's lastInStream reads GetMsg(LastSeq),
// which no longer exists, so the relay fails and retries for ever and no
// change is published again. The stream must heal from SQLite.
func TestReviewRelayHealsAfterLastMessageDeleted(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	testenv.Sync(t, member)
	waitStream(t, e)
	st, err := e.JS.Stream(t.Context(), domain.StreamName)
	ok(t, err)
	info, err := st.Info(t.Context())
	ok(t, err)
	ok(t, st.DeleteMsg(t.Context(), info.State.LastSeq))
	e = restart(t, e)
	member2 := e.Device(testenv.Member2)
	testenv.Sync(t, member2)
	must[string](t)(member2.Create("visit", syncer.NewFields().Set("household_id", "H004").Set("visited_on", "2026-11-20")))
	testenv.Sync(t, member2)
	last := must[uint64](t)(e.Store.LastSeq(t.Context()))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := e.Server.Relay().WaitPublished(ctx, last); err != nil {
		t.Errorf("relay stuck after the stream's last message was deleted: %v", err)
	}
}

// Regression (passes): a revoked device is refused, wiped at its next
// contact, and stays unusable after that; its credential is refused too.
func TestReviewRevokedDeviceIsWiped(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	testenv.Sync(t, member)
	must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-11-20")))
	id := must[*syncer.Identity](t)(member.Identity())
	admin, ctx := e.Admin()
	_, err := admin.RevokeDevice(ctx, &pb.RevokeDeviceRequest{DeviceId: id.DeviceID})
	ok(t, err)
	if _, err := member.Sync(t.Context()); !errors.Is(err, syncer.ErrRevoked) {
		t.Fatalf("sync of a revoked device: %v, want ErrRevoked", err)
	}
	if items := must[[]*syncer.Item](t)(member.List("")); len(items) != 0 {
		t.Fatalf("revoked device still holds %d records", len(items))
	}
	if _, err := member.Sync(t.Context()); !errors.Is(err, syncer.ErrNotEnrolled) {
		t.Fatalf("second sync after wipe: %v, want ErrNotEnrolled", err)
	}
}

// Regression (passes): with page_size 1, a secretary whose own events sit
// in two buckets of its scope (u:<self> and v:<village>) ends up holding
// exactly the server's records of its scope, each as the server has it,
// including records changed between its sync calls.
func TestReviewPageSizeOneMultiBucketConverges(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	sec := e.Device(testenv.Secretary, func(o *syncer.Options) { o.PageSize = 1 })
	member := e.Device(testenv.Member)
	med := e.Device(testenv.Mediator)
	testenv.Sync(t, member)
	testenv.Sync(t, med)
	for i := 0; i < 3; i++ {
		must[string](t)(sec.Create("event", syncer.NewFields().Set("type", "meeting").Set("occurred_on", "2026-11-20").Set("subject", "例會")))
		must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", "H00"+string(rune('1'+i))).Set("visited_on", "2026-11-20")))
	}
	must[string](t)(med.Create("dispute", syncer.NewFields().Set("category", "quarrel").Set("title", "爭吵")))
	testenv.Sync(t, member)
	testenv.Sync(t, med)
	testenv.Sync(t, sec)
	ok(t, member.Update("H002", syncer.NewFields().Set("needs", "修屋頂")))
	testenv.Sync(t, member)
	testenv.Sync(t, sec)

	want := map[string]bool{}
	for _, r := range export(t, e) {
		if contains(r.GetBuckets(), domain.VillageBucket(testenv.Village)) || contains(r.GetBuckets(), domain.UserBucket(testenv.Secretary)) {
			want[r.GetId()] = true
			sameAsServer(t, e, sec, r.GetId())
		}
	}
	items := must[[]*syncer.Item](t)(sec.List(""))
	if len(items) != len(want) {
		t.Fatalf("secretary holds %d records, scope has %d", len(items), len(want))
	}
}

// A new village secretary's device pages through its village after two
// households moved out of it: the gone rows it skips take no room in a
// page, and must not end the paging before the rest of the village is sent
// (a page that read as many rows as it may must say there is more).
func TestReviewPullMoreAfterSkippedGoneRows(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	admin, actx := e.Admin()
	hh := func(id, grid, head string) *pb.Household {
		return &pb.Household{Id: id, GridId: grid, Head: head, Address: "addr " + id, Members: "2"}
	}
	_, err := admin.ImportOrg(actx, &pb.ImportOrgRequest{Households: []*pb.Household{hh("H001", testenv.Grid2, "a"), hh("H002", testenv.Grid2, "b")}})
	ok(t, err)
	_, err = admin.ImportOrg(actx, &pb.ImportOrgRequest{Households: []*pb.Household{hh("H003", testenv.Grid, "c"), hh("H004", testenv.Grid, "d"), hh("H005", testenv.Grid, "e")}})
	ok(t, err)
	enr, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(t.Context(), &pb.EnrollRequest{Code: e.Secret(testenv.Secretary), DeviceName: "p"})
	ok(t, err)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+enr.GetToken())
	client := pb.NewSyncServiceClient(e.Conn())
	var cursors []*pb.Cursor
	got := map[string]bool{}
	for page := 0; ; page++ {
		if page == 20 {
			t.Fatal("still paging after 20 pages of 2")
		}
		resp, err := client.Sync(ctx, &pb.SyncRequest{Cursors: cursors, PageSize: 2})
		ok(t, err)
		for _, r := range resp.GetRecords() {
			got[r.GetId()] = true
		}
		cursors = resp.GetCursors()
		if !resp.GetMore() {
			break
		}
	}
	for _, id := range []string{"H003", "H004", "H005"} {
		if !got[id] {
			t.Errorf("the secretary's device never got %s (got %v)", id, got)
		}
	}
	for _, id := range []string{"H001", "H002"} {
		if got[id] {
			t.Errorf("the secretary's device got %s, which moved out of its village", id)
		}
	}
}
