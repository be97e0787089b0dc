package e2e

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Review (session 8): a device of this version syncing with a syncd built
// before changed_cursors_only (which skips the request's field 6 as
// unknown: simulated by clearing it) gets every cursor and no
// left_buckets. The device merged that into the cursors it sent, so it
// never purged what left its scope: H001, relinked from Member to
// Member2, stayed on Member's phone. The answer now says whether it lists
// only changed cursors; without that, the device takes it as the whole
// scope.
func TestReviewDeviceAgainstServerWithoutChangedCursorsOnly(t *testing.T) {
	old := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*pb.SyncRequest); ok {
			r.ChangedCursorsOnly = false
		}
		return h(ctx, req)
	}
	e := testenv.Start(t, testenv.WithUnaryInterceptor(old))
	e.ImportSample()
	d := e.Device(testenv.Member)
	testenv.Sync(t, d)
	if _, err := d.Get("H001"); err != nil {
		t.Fatalf("member lacks H001 before the relink: %v", err)
	}
	admin, ctx := e.Admin()
	_, err := admin.AssignHousehold(ctx, &pb.AssignHouseholdRequest{HouseholdId: "H001", MemberId: testenv.Member2})
	ok(t, err)
	testenv.Sync(t, d)
	if _, err := d.Get("H001"); err == nil {
		cur, _ := d.Cursors()
		t.Errorf("member still holds H001 after it was linked to another member; cursors %v", cur)
	}
}
