package server_test

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// A second town beside the sample org's T01, with one member and one
// household.
const (
	town2      = "T02"
	town2Membr = "U-t2-member"
	town2House = "H901"
)

func importTown2(t *testing.T, e *testenv.Env) {
	t.Helper()
	admin, ctx := e.Admin()
	resp, err := admin.ImportOrg(ctx, &pb.ImportOrgRequest{
		Units: []*pb.Unit{
			{Id: town2, Kind: pb.UnitKind_UNIT_KIND_TOWN, Name: "岐亭鎮"},
			{Id: "V901", Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: town2, Name: "杏花村"},
			{Id: "G901", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V901", Name: "王家塆"},
		},
		Users:       []*pb.User{{Id: town2Membr, Name: "王小明", Role: pb.Role_ROLE_MEMBER, UnitId: "G901"}},
		Households:  []*pb.Household{{Id: town2House, GridId: "G901", Head: "王大海", Members: "2"}},
		Assignments: []*pb.Assignment{{HouseholdId: town2House, MemberId: town2Membr}},
	})
	if err != nil || len(resp.GetErrors()) > 0 {
		t.Fatalf("import town 2: %v %v", err, resp.GetErrors())
	}
}

// createAccount creates an administrator account with the owner credential
// and returns a context that calls as it.
func createAccount(t *testing.T, e *testenv.Env, name, town string) context.Context {
	t.Helper()
	admin, ctx := e.Admin()
	resp, err := admin.CreateAdminAccount(ctx, &pb.CreateAdminAccountRequest{Name: name, TownId: town})
	if err != nil {
		t.Fatalf("create account %s: %v", name, err)
	}
	if resp.GetToken() == "" || resp.GetAccount().GetName() != name || resp.GetAccount().GetTownId() != town {
		t.Fatalf("create account %s: %+v", name, resp)
	}
	return as(resp.GetToken())
}

func as(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// wantDenied fails unless err is PermissionDenied and its message has each
// of words.
func wantDenied(t *testing.T, what string, err error, words ...string) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("%s: %v, want PermissionDenied", what, err)
	}
	for _, w := range words {
		if !strings.Contains(status.Convert(err).Message(), w) {
			t.Fatalf("%s: %q does not say %q", what, status.Convert(err).Message(), w)
		}
	}
}

func deviceID(t *testing.T, d *syncer.Device) string {
	t.Helper()
	id, err := d.Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id.DeviceID
}

func deviceIDs(t *testing.T, admin pb.AdminServiceClient, ctx context.Context, req *pb.ListDevicesRequest) []string {
	t.Helper()
	var ids []string
	for {
		resp, err := admin.ListDevices(ctx, req)
		if err != nil {
			t.Fatalf("list devices: %v", err)
		}
		for _, d := range resp.GetDevices() {
			ids = append(ids, d.GetId())
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			return ids
		}
	}
}

// A town administrator issues codes, assigns households, lists and
// revokes devices in its own town, and is refused, naming its scope,
// everywhere else and for what is the city's (the org import, the export,
// the administrator accounts).
func TestTownAdministratorActsOnlyInItsTown(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	importTown2(t, e)
	admin, owner := e.Admin()
	wang := createAccount(t, e, "王芳", testenv.Town)

	// Enrollment codes.
	_, err := admin.CreateEnrollmentCode(wang, &pb.CreateEnrollmentCodeRequest{UserId: town2Membr})
	wantDenied(t, "code for a user of another town", err, `"U-t2-member"`, "town T02", `"王芳"`, "scope: town T01")
	_, err = admin.CreateEnrollmentCode(wang, &pb.CreateEnrollmentCodeRequest{UserId: testenv.HQ})
	wantDenied(t, "code for an HQ user", err, "no town")
	if _, err := admin.CreateEnrollmentCode(wang, &pb.CreateEnrollmentCodeRequest{UserId: testenv.Member}); err != nil {
		t.Fatalf("code for a user of its own town: %v", err)
	}

	// Households.
	_, err = admin.AssignHousehold(wang, &pb.AssignHouseholdRequest{HouseholdId: town2House, MemberId: town2Membr})
	wantDenied(t, "assign in another town", err, `household "H901"`, "town T02")
	if _, err := admin.AssignHousehold(wang, &pb.AssignHouseholdRequest{HouseholdId: "H001", MemberId: testenv.Member2}); err != nil {
		t.Fatalf("assign in its own town: %v", err)
	}

	// Devices: the list shows its town's only; revocation likewise.
	mine := e.Device(testenv.Member)
	theirs := e.Device(town2Membr)
	mineID, theirsID := deviceID(t, mine), deviceID(t, theirs)
	if got := deviceIDs(t, admin, wang, &pb.ListDevicesRequest{}); !slices.Equal(got, []string{mineID}) {
		t.Fatalf("town administrator lists %v, want only %s (its town's)", got, mineID)
	}
	// Across pages too: one device per page.
	if got := deviceIDs(t, admin, wang, &pb.ListDevicesRequest{PageSize: 1}); !slices.Equal(got, []string{mineID}) {
		t.Fatalf("town administrator lists %v one by one, want only %s", got, mineID)
	}
	if got := deviceIDs(t, admin, owner, &pb.ListDevicesRequest{}); len(got) != 2 {
		t.Fatalf("owner lists %v, want both devices", got)
	}
	_, err = admin.ListDevices(wang, &pb.ListDevicesRequest{UserId: town2Membr})
	wantDenied(t, "list another town's user's devices", err, "town T02")
	_, err = admin.RevokeDevice(wang, &pb.RevokeDeviceRequest{DeviceId: theirsID})
	wantDenied(t, "revoke another town's device", err, theirsID, "town T02")
	if _, err := admin.RevokeDevice(wang, &pb.RevokeDeviceRequest{DeviceId: mineID}); err != nil {
		t.Fatalf("revoke its own town's device: %v", err)
	}
	testenv.Sync(t, theirs) // untouched

	// What is the city's.
	_, err = admin.ImportOrg(wang, testenv.SampleOrg())
	wantDenied(t, "import", err, "city administrator", `"王芳"`)
	stream, err := pb.NewExportServiceClient(e.Conn()).Export(wang, &pb.ExportRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	wantDenied(t, "export", err, "city administrator")
	_, err = admin.CreateAdminAccount(wang, &pb.CreateAdminAccountRequest{Name: "李強"})
	wantDenied(t, "create an account", err, "city administrator")
	_, err = admin.ListAdminAccounts(wang, &pb.ListAdminAccountsRequest{})
	wantDenied(t, "list accounts", err, "city administrator")
	_, err = admin.DisableAdminAccount(wang, &pb.DisableAdminAccountRequest{Name: "王芳"})
	wantDenied(t, "disable an account", err, "city administrator")

	// A city account does what the owner does.
	li := createAccount(t, e, "li.qiang", "")
	if got := deviceIDs(t, admin, li, &pb.ListDevicesRequest{}); len(got) != 2 {
		t.Fatalf("city administrator lists %v, want both devices", got)
	}
	if _, err := admin.CreateEnrollmentCode(li, &pb.CreateEnrollmentCodeRequest{UserId: town2Membr}); err != nil {
		t.Fatalf("city administrator, code in town 2: %v", err)
	}
	if _, err := admin.CreateAdminAccount(li, &pb.CreateAdminAccountRequest{Name: "趙敏", TownId: town2}); err != nil {
		t.Fatalf("city administrator creates an account: %v", err)
	}
	stream, err = pb.NewExportServiceClient(e.Conn()).Export(li, &pb.ExportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil && err != io.EOF {
		t.Fatalf("city administrator's export: %v", err)
	}
}

// A disabled account's credential is refused from its very next call, on
// every admin service; enabling it again issues a new credential and the
// old one stays refused.
func TestDisabledAdministratorIsRefusedAtOnce(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	admin, owner := e.Admin()
	created, err := admin.CreateAdminAccount(owner, &pb.CreateAdminAccountRequest{Name: "王芳"})
	if err != nil {
		t.Fatal(err)
	}
	wang := as(created.GetToken())
	for range 3 { // calls in a row, as a cache would serve them
		if _, err := admin.ListDevices(wang, &pb.ListDevicesRequest{}); err != nil {
			t.Fatalf("active account: %v", err)
		}
	}
	resp, err := admin.DisableAdminAccount(owner, &pb.DisableAdminAccountRequest{Name: "王芳"})
	if err != nil || resp.GetAccount().GetDisabledMs() == 0 {
		t.Fatalf("disable: %+v, %v", resp, err)
	}
	_, err = admin.ListDevices(wang, &pb.ListDevicesRequest{})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), `"王芳" was disabled`) {
		t.Fatalf("disabled account's next call: %v, want Unauthenticated saying it was disabled", err)
	}
	stream, err := pb.NewExportServiceClient(e.Conn()).Export(wang, &pb.ExportRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "disabled") {
		t.Fatalf("disabled account's export: %v, want Unauthenticated saying it was disabled", err)
	}

	again, err := admin.EnableAdminAccount(owner, &pb.EnableAdminAccountRequest{Name: "王芳"})
	if err != nil || again.GetToken() == "" || again.GetToken() == created.GetToken() || again.GetAccount().GetDisabledMs() != 0 {
		t.Fatalf("enable: %+v, %v; want a new token", again, err)
	}
	if _, err := admin.ListDevices(wang, &pb.ListDevicesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("old credential after enable: %v, want Unauthenticated", err)
	}
	if _, err := admin.ListDevices(as(again.GetToken()), &pb.ListDevicesRequest{}); err != nil {
		t.Fatalf("new credential after enable: %v", err)
	}
	list, err := admin.ListAdminAccounts(owner, &pb.ListAdminAccountsRequest{})
	if err != nil || len(list.GetAccounts()) != 1 || list.GetAccounts()[0].GetCreatedBy() != "owner" {
		t.Fatalf("list: %+v, %v", list, err)
	}
}

// Each audit entry of an administrator's action names the person who
// acted: admin:<account name>, and admin:owner for the admin.token
// credential.
func TestAuditNamesTheAdministratorWhoActed(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample() // as the owner
	admin, owner := e.Admin()
	wang := createAccount(t, e, "王芳", testenv.Town)
	if _, err := admin.CreateEnrollmentCode(wang, &pb.CreateEnrollmentCodeRequest{UserId: testenv.Member}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AssignHousehold(wang, &pb.AssignHouseholdRequest{HouseholdId: "H001", MemberId: testenv.Member2}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DisableAdminAccount(owner, &pb.DisableAdminAccountRequest{Name: "王芳"}); err != nil {
		t.Fatal(err)
	}
	// Refused actions leave no entry.
	admin.CreateEnrollmentCode(wang, &pb.CreateEnrollmentCodeRequest{UserId: testenv.Member})

	entries, err := e.Store.AuditLog(t.Context(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range entries {
		got = append(got, a.Actor+" "+a.Action+" "+a.Target)
	}
	want := []string{
		"admin:owner import_org org",
		"admin:owner create_admin_account 王芳",
		"admin:王芳 create_enrollment_code " + testenv.Member,
		"admin:王芳 assign_household H001",
		"admin:owner disable_admin_account 王芳",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if entries[1].Detail != `{"scope":"town T01","town_id":"T01"}` {
		t.Errorf("account creation detail %s", entries[1].Detail)
	}
	if _, err := e.Store.VerifyAudit(t.Context()); err != nil {
		t.Fatalf("audit chain: %v", err)
	}
}

// Account names and scopes are checked, each refusal naming the field and
// what is allowed.
func TestAdministratorAccountInputIsChecked(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	admin, owner := e.Admin()
	for _, c := range []struct {
		req   *pb.CreateAdminAccountRequest
		code  codes.Code
		words string
	}{
		{&pb.CreateAdminAccountRequest{Name: ""}, codes.InvalidArgument, "name: required"},
		{&pb.CreateAdminAccountRequest{Name: "owner"}, codes.InvalidArgument, "name: \"owner\" is the owner credential's name"},
		{&pb.CreateAdminAccountRequest{Name: "王\u202e芳"}, codes.InvalidArgument, "name: character U+202E"},
		{&pb.CreateAdminAccountRequest{Name: "wang\x1b[31m"}, codes.InvalidArgument, "name: character U+001B"},
		{&pb.CreateAdminAccountRequest{Name: " 王芳"}, codes.InvalidArgument, "name: starts or ends with a space"},
		{&pb.CreateAdminAccountRequest{Name: strings.Repeat("王", 65)}, codes.InvalidArgument, "name: 65 characters is too long: at most 64"},
		{&pb.CreateAdminAccountRequest{Name: "王芳", TownId: testenv.Village}, codes.InvalidArgument, `town_id: unknown town "V01"`},
		{&pb.CreateAdminAccountRequest{Name: "王芳", TownId: "T 1"}, codes.InvalidArgument, `town_id: malformed id "T 1"`},
	} {
		_, err := admin.CreateAdminAccount(owner, c.req)
		if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.words) {
			t.Errorf("create %q in %q: %v, want %v saying %q", c.req.GetName(), c.req.GetTownId(), err, c.code, c.words)
		}
	}
	createAccount(t, e, "王芳", testenv.Town)
	createAccount(t, e, "Wang Fang", "")
	_, err := admin.CreateAdminAccount(owner, &pb.CreateAdminAccountRequest{Name: "王芳"})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("same name twice: %v, want AlreadyExists", err)
	}
	if _, err := admin.DisableAdminAccount(owner, &pb.DisableAdminAccountRequest{Name: "nobody"}); status.Code(err) != codes.NotFound {
		t.Fatalf("disable an unknown account: %v, want NotFound", err)
	}
	list, err := admin.ListAdminAccounts(owner, &pb.ListAdminAccountsRequest{})
	if err != nil || len(list.GetAccounts()) != 2 {
		t.Fatalf("list: %+v, %v", list, err)
	}
	// Nothing refused was stored, and no credential was.
	entries, err := e.Store.AuditLog(t.Context(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range entries {
		if a.Action == store.AuditCreateAdminAccount {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d account creations audited, want 2", n)
	}
}
