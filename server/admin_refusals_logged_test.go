package server_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// An administrator account's refusals reach the operator like a device's:
// acting outside its scope is logged naming the person, and a disabled
// account's token is counted and logged as such, not as "other".
func TestAdministratorAccountRefusalsLoggedByName(t *testing.T) {
	logs := &logBuffer{}
	opt, url := withMetrics(t, logs)
	e := testenv.Start(t, opt)
	e.ImportSample()
	importTown2(t, e)
	admin, owner := e.Admin()
	wang := createAccount(t, e, "王芳", testenv.Town)

	_, err := admin.DisableUser(wang, &pb.DisableUserRequest{UserId: town2Membr})
	wantDenied(t, "disable a user of another town", err, "town T02")
	if _, err := admin.DisableAdminAccount(owner, &pb.DisableAdminAccountRequest{Name: "王芳"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ListDevices(wang, &pb.ListDevicesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a disabled account's call: %v, want Unauthenticated", err)
	}

	log := logs.String()
	for _, want := range []string{
		`msg="administrator refused outside its scope" method=/fieldsync.v1.AdminService/DisableUser`,
		`caller=admin:王芳`,
		`msg="credential refused" reason=admin_disabled`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log has no %q; log:\n%s", want, log)
		}
	}
	if v := value(scrape(t, url), "fieldsync_credential_refusals_total", "reason", "admin_disabled"); v != 1 {
		t.Errorf("fieldsync_credential_refusals_total{reason=admin_disabled} = %v, want 1", v)
	}
}
