package server

import (
	"context"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// ImportOrg pokes the devices of a user whose role or unit changed
// (PutUser -> OnCommit). Found by review: the auth cache was cleared only
// after Write returned, so a device that synced on that poke could be
// served its old caller and the old scope. The cache is now cleared in the
// writer (Tx.AfterCommit), before the poke.
func TestReviewPokeAfterAuthCacheClear(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenServer(ctx, filepath.Join(t.TempDir(), "fieldsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := New(Config{Store: st})
	// The device's sync on the poke, as the hub would trigger it. Set
	// before the first write: the writer reads OnCommit.
	var dctxp atomic.Pointer[context.Context]
	seenc := make(chan *caller, 1)
	poke := st.OnCommit
	st.OnCommit = func(last uint64, buckets []string) {
		poke(last, buckets)
		if dctx := dctxp.Load(); dctx != nil && slices.Contains(buckets, "u:U-sec") {
			c, _ := s.device(*dctx)
			select {
			case seenc <- c:
			default:
			}
		}
	}
	admin := &adminService{s: s}
	actx := context.WithValue(ctx, callerKey{}, &caller{admin: true, account: "owner"}) // as authenticate sets it
	org := &pb.ImportOrgRequest{
		Units: []*pb.Unit{
			{Id: "T01", Kind: pb.UnitKind_UNIT_KIND_TOWN, Name: "t"},
			{Id: "V01", Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: "T01", Name: "v1"},
			{Id: "V02", Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: "T01", Name: "v2"},
		},
		Users: []*pb.User{{Id: "U-sec", Name: "s", Role: pb.Role_ROLE_SECRETARY, UnitId: "V01"}},
	}
	if _, err := admin.ImportOrg(actx, org); err != nil {
		t.Fatal(err)
	}
	code, err := admin.CreateEnrollmentCode(actx, &pb.CreateEnrollmentCodeRequest{UserId: "U-sec"})
	if err != nil {
		t.Fatal(err)
	}
	enr, err := (&enrollService{s: s}).Enroll(ctx, &pb.EnrollRequest{Code: code.GetCode(), DeviceName: "p"})
	if err != nil {
		t.Fatal(err)
	}
	dctx := metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+enr.GetToken()))
	if c, err := s.device(dctx); err != nil || c.villageID != "V01" {
		t.Fatalf("caller %+v, %v", c, err) // now cached
	}
	dctxp.Store(&dctx)
	org.Users[0].UnitId = "V02" // the secretary moves to V02
	if _, err := admin.ImportOrg(actx, org); err != nil {
		t.Fatal(err)
	}
	var seen *caller
	select {
	case seen = <-seenc: // OnCommit runs after the import's caller hears of the commit
	case <-time.After(10 * time.Second):
		t.Fatal("no poke of u:U-sec")
	}
	if seen == nil {
		t.Fatal("the sync the poke triggers was refused")
	}
	if scope, _ := s.scope(ctx, seen); seen.villageID != "V02" {
		t.Fatalf("the sync the poke triggers authenticates as village %s (scope %v); want V02", seen.villageID, scope)
	}
}
