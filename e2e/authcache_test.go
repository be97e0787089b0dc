package e2e

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
)

// syncd remembers device credentials for a few seconds (server/authcache.go).
// A revocation still refuses the device's very next call, with no wait:
// here pull-only calls, which write nothing and so are refused by the
// authentication alone, after calls that put the device in the cache.
func TestRevokeRefusesNextCallDespiteAuthCache(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	enroll := func(user string) (*pb.EnrollResponse, error) {
		return pb.NewEnrollServiceClient(e.Conn()).Enroll(t.Context(), &pb.EnrollRequest{Code: e.Secret(user), DeviceName: "phone of " + user})
	}
	member := must[*pb.EnrollResponse](t)(enroll(testenv.Member))
	hq := must[*pb.EnrollResponse](t)(enroll(testenv.HQ))
	mctx, hctx := withToken(t, member.GetToken()), withToken(t, hq.GetToken())
	client := pb.NewSyncServiceClient(e.Conn())
	exportFirst := func() error {
		s, err := pb.NewExportServiceClient(e.Conn()).Export(hctx, &pb.ExportRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		if err == io.EOF {
			err = nil
		}
		return err
	}
	for range 3 { // the first call writes the contact and fills the cache; the others are served from it
		_, err := client.Sync(mctx, &pb.SyncRequest{})
		ok(t, err)
		_, err = client.Sync(hctx, &pb.SyncRequest{})
		ok(t, err)
		ok(t, exportFirst())
	}

	admin, actx := e.Admin()
	for _, id := range []string{member.GetDeviceId(), hq.GetDeviceId()} {
		_, err := admin.RevokeDevice(actx, &pb.RevokeDeviceRequest{DeviceId: id})
		ok(t, err)
	}
	revoked := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied || !strings.HasPrefix(status.Convert(err).Message(), server.ErrRevokedMessage) {
			t.Errorf("%s right after RevokeDevice: %v, want PermissionDenied %q", what, err, server.ErrRevokedMessage)
		}
	}
	_, err := client.Sync(mctx, &pb.SyncRequest{})
	revoked("member's pull-only Sync", err)
	_, err = client.Sync(hctx, &pb.SyncRequest{})
	revoked("HQ's pull-only Sync", err)
	revoked("HQ's Export", exportFirst())
	wctx, cancel := context.WithTimeout(mctx, 10*time.Second) // a Watch let in would wait for pokes
	defer cancel()
	w, err := client.Watch(wctx, &pb.WatchRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	revoked("member's new Watch", err)
}

// A user's role and village changed by ImportOrg hold from the next call of
// their device, cached a moment before: its writes are judged by the new
// role and village, and the answer carries them.
func TestImportOrgRoleChangeSeenByNextSync(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	r := newRaw(t, e, testenv.Member)
	for range 3 { // fill the auth cache; the last calls are served from it
		res := r.push(mkDispute(testenv.Village2, "山林權屬糾紛"))
		if res[0].GetStatus() != pb.MutationStatus_MUTATION_STATUS_REJECTED {
			t.Fatalf("a member's dispute: %v, want rejected", res[0])
		}
	}
	resp, err := r.client.Sync(r.ctx, &pb.SyncRequest{})
	ok(t, err)
	if resp.GetRole() != pb.Role_ROLE_MEMBER || resp.GetVillageId() != testenv.Village {
		t.Fatalf("before: role %v, village %q", resp.GetRole(), resp.GetVillageId())
	}

	// The member becomes a mediator of the other village.
	importOrg(t, e, &pb.ImportOrgRequest{Users: []*pb.User{
		{Id: testenv.Member, Name: "張國華", Role: pb.Role_ROLE_MEDIATOR, UnitId: testenv.Village2}}})

	resp, err = r.client.Sync(r.ctx, &pb.SyncRequest{})
	ok(t, err)
	if resp.GetRole() != pb.Role_ROLE_MEDIATOR || resp.GetVillageId() != testenv.Village2 {
		t.Errorf("next Sync after the import: role %v, village %q; want mediator of %s", resp.GetRole(), resp.GetVillageId(), testenv.Village2)
	}
	res := r.push(mkDispute(testenv.Village2, "山林權屬糾紛"), mkDispute(testenv.Village, "宅基地糾紛"), mkVisit("H001", "2026-11-20"))
	if res[0].GetStatus() != pb.MutationStatus_MUTATION_STATUS_APPLIED {
		t.Errorf("the new mediator's dispute in their village: %v, want applied", res[0])
	}
	if res[1].GetStatus() != pb.MutationStatus_MUTATION_STATUS_REJECTED || !strings.Contains(res[1].GetReason(), "is not yours") {
		t.Errorf("a dispute in the old village: %v, want rejected as outside the village", res[1])
	}
	if res[2].GetStatus() != pb.MutationStatus_MUTATION_STATUS_REJECTED || res[2].GetCode() != domain.CodePermissionDenied {
		t.Errorf("a visit by the former member: %v, want permission_denied", res[2])
	}
}
