package e2e

import (
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A revoked device's credential, replayed by anyone (a copied phone, a
// script), is refused on every service it could reach, and a Watch it held
// open is closed.
func TestRevokedCredentialReplayIsRefused(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	resp, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(t.Context(), &pb.EnrollRequest{Code: e.Secret(testenv.Member), DeviceName: "lost phone"})
	ok(t, err)
	ctx := rawDevice(t, e, testenv.Member) // another device of the same user stays in
	lost := withToken(t, resp.GetToken())
	client := pb.NewSyncServiceClient(e.Conn())
	if _, err := client.Sync(lost, &pb.SyncRequest{}); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	watch, err := client.Watch(lost, &pb.WatchRequest{})
	ok(t, err)

	admin, actx := e.Admin()
	_, err = admin.RevokeDevice(actx, &pb.RevokeDeviceRequest{DeviceId: resp.GetDeviceId()})
	ok(t, err)

	if _, err := watch.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Errorf("open Watch after revocation: %v, want PermissionDenied", err)
	}
	for i := 0; i < 3; i++ { // refused every time, not only at the first contact
		_, err := client.Sync(lost, &pb.SyncRequest{})
		if status.Code(err) != codes.PermissionDenied || !strings.HasPrefix(status.Convert(err).Message(), "device revoked") {
			t.Fatalf("replayed credential, try %d: %v", i+1, err)
		}
	}
	w, err := client.Watch(lost, &pb.WatchRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("new Watch with the revoked credential: %v", err)
	}
	if err == io.EOF {
		t.Error("Watch ended cleanly for a revoked credential")
	}
	if _, err := client.Sync(ctx, &pb.SyncRequest{}); err != nil {
		t.Errorf("the user's other device: %v", err)
	}
}
