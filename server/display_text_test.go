package server_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// unsafeTexts are what a name or version may not hold: a terminal escape
// sequence, a right-to-left override, a C1 control (NEL), and the
// invisible and line-breaking characters the rule lists.
var unsafeTexts = []string{"phone\x1b[2J", "phone\u202eenohp", "phone\u0085", "ph\u200bone", "phone\nrm", "phone\u2028", "\u2066phone\u2069", "phone\x7f"}

// TestEnrollAndSyncRefuseControlCharactersInNames: the server refuses a
// device name or app version that would act on a terminal or hide what it
// says, with InvalidArgument naming the field; Chinese, emoji and
// combining marks are kept byte for byte.
func TestEnrollAndSyncRefuseControlCharactersInNames(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	enroll := pb.NewEnrollServiceClient(e.Conn())
	code := e.Secret(testenv.Member)
	for _, bad := range unsafeTexts {
		for _, req := range []*pb.EnrollRequest{{Code: code, DeviceName: bad}, {Code: code, DeviceName: "phone", AppVersion: bad}} {
			field := "device_name"
			if req.GetAppVersion() != "" {
				field = "app_version"
			}
			_, err := enroll.Enroll(t.Context(), req)
			if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), field+": character ") {
				t.Errorf("enroll with %s %q: %v, want InvalidArgument naming %s", field, bad, err, field)
			}
		}
	}

	// The code was not spent by the refusals; a name of Chinese, emoji
	// (a ZWJ family, a flag) and combining marks is kept as sent.
	name, version := "周建國的手機 👩\u200d👩\u200d👧 🇨🇳 Jose\u0301", "2.1.0-測試+e\u0301"
	resp, err := enroll.Enroll(t.Context(), &pb.EnrollRequest{Code: code, DeviceName: name, AppVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+resp.GetToken())
	client := pb.NewSyncServiceClient(e.Conn())
	for _, bad := range unsafeTexts {
		_, err := client.Sync(ctx, &pb.SyncRequest{AppVersion: bad})
		if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), "app_version: character ") {
			t.Errorf("sync with app_version %q: %v, want InvalidArgument naming app_version", bad, err)
		}
	}
	if _, err := client.Sync(ctx, &pb.SyncRequest{AppVersion: version}); err != nil {
		t.Fatal(err)
	}
	admin, actx := e.Admin()
	devs, err := admin.ListDevices(actx, &pb.ListDevicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs.GetDevices()) != 1 || devs.GetDevices()[0].GetName() != name || devs.GetDevices()[0].GetAppVersion() != version {
		t.Errorf("stored devices: %v", devs.GetDevices())
	}
}

// TestImportRefusesControlCharactersInOrgNames: units, users and
// households are checked by the same rule, each refusal naming the row
// and the field.
func TestImportRefusesControlCharactersInOrgNames(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	admin, ctx := e.Admin()
	resp, err := admin.ImportOrg(ctx, &pb.ImportOrgRequest{
		Units:      []*pb.Unit{{Id: "G09", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: testenv.Village, Name: "新灣\u202e組"}},
		Users:      []*pb.User{{Id: "U-x", Name: "某\x1b[2J人", Role: pb.Role_ROLE_MEMBER, UnitId: testenv.Grid}, {Id: "U-y", Name: "某人", Phone: "138\u200b0000", Role: pb.Role_ROLE_MEMBER, UnitId: testenv.Grid}},
		Households: []*pb.Household{{Id: "H009", GridId: testenv.Grid, Head: "周\u0085新戶", Members: "3"}, {Id: "H010", GridId: testenv.Grid, Head: "周新戶", Address: "周家塆\u206720號", Members: "3"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, re := range resp.GetErrors() {
		got[fmt.Sprintf("%s[%d]", re.GetTable(), re.GetIndex())] = re.GetField() + ": " + re.GetMessage()
	}
	for id, want := range map[string]string{
		"units[0]":      `name: character 3 is a text direction control (\u202e)`,
		"users[0]":      `name: character 2 is ESC, which starts terminal escape sequences (\x1b)`,
		"users[1]":      `phone: character 4 is an invisible character (\u200b)`,
		"households[0]": `head: character 2 is a C1 control character (\x85)`,
		"households[1]": `address: character 4 is a text direction control (\u2067)`,
	} {
		if !strings.HasPrefix(got[id], want) {
			t.Errorf("%s: %q, want it to start with %q", id, got[id], want)
		}
	}
	if len(got) != 5 {
		t.Errorf("row errors: %v", resp.GetErrors())
	}
}
