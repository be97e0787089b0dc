package e2e

import (
	"context"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// dropReplies loses the reply of the next n Sync calls after the server
// has handled them (and so committed their mutations), as a dropped
// connection on a field phone's link would.
type dropReplies struct{ n atomic.Int32 }

func (d *dropReplies) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if info.FullMethod == pb.SyncService_Sync_FullMethodName && err == nil && d.n.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "test: reply lost after commit")
	}
	return resp, err
}

func TestLostReplyRetryHasNoDuplicate(t *testing.T) {
	drop := &dropReplies{}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(drop.intercept))
	e.ImportSample()
	// Not synced yet: the device cannot judge H999 and queues it.
	member := e.Device(testenv.Member)
	before := must[uint64](t)(e.Store.LastSeq(t.Context()))

	var ids []string
	for i, hh := range []string{"H001", "H002", "H003"} {
		ids = append(ids, must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", hh).
			Set("visited_on", "2026-11-2"+string(rune('1'+i))).Set("needs", "需要幫助"))))
	}
	// One visit the server rejects: its result is lost too, and must come
	// back the same on the retry.
	bad := must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", "H999").Set("visited_on", "2026-11-24")))

	drop.n.Store(1)
	if _, err := member.Sync(t.Context()); err == nil {
		t.Fatal("sync succeeded although its reply was dropped")
	}
	if st := must[*syncer.Status](t)(member.Status()); st.Pending != 4 {
		t.Fatalf("after a lost reply the device has %d pending, want 4 (it cannot know they were applied)", st.Pending)
	}
	afterLost := must[uint64](t)(e.Store.LastSeq(t.Context()))
	if n := recordChangesSince(t, e, before); n != 3 {
		t.Fatalf("server committed %d record changes, want 3", n)
	}

	rep := testenv.Sync(t, member)
	if rep.Applied != 3 || rep.Rejected != 1 {
		t.Fatalf("retry report %+v, want 3 applied and 1 rejected", rep)
	}
	if n := recordChangesSince(t, e, afterLost); n != 0 {
		t.Fatalf("the retry committed %d more record changes, want none", n)
	}
	for _, id := range ids {
		sameAsServer(t, e, member, id)
	}
	it := must[*syncer.Item](t)(member.Get(bad))
	if it.State != "rejected" || it.Reason != "visit.household_id: unknown household H999" {
		t.Fatalf("rejected visit: state %q reason %q", it.State, it.Reason)
	}
	if st := must[*syncer.Status](t)(member.Status()); st.Pending != 0 || st.Rejected != 1 {
		t.Fatalf("status %+v, want 0 pending and 1 rejected", st)
	}
	// The changelog holds each change exactly once.
	changes := waitStream(t, e)
	perRecord := map[string]int{}
	for _, c := range changes {
		perRecord[c.GetRecord().GetId()]++
	}
	for _, id := range ids {
		if perRecord[id] != 1 {
			t.Errorf("visit %s has %d changes in the stream, want 1", id, perRecord[id])
		}
	}
	if perRecord[bad] != 0 {
		t.Errorf("the rejected visit reached the changelog")
	}
}
