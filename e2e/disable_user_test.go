package e2e

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// Disabling a person revokes every device of theirs (a synced phone is
// refused at its next sync and wipes), cancels their outstanding codes,
// and refuses new codes, saying how to enable them; the person's
// colleagues are untouched. Enabling lets new codes work again.
func TestDisabledUserLosesDevicesAndCodes(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	phone := e.Device(testenv.Member)
	testenv.Sync(t, phone)
	if n := len(must[[]*syncer.Item](t)(phone.List("household"))); n == 0 {
		t.Fatal("the phone holds no household before: the wipe would prove nothing")
	}
	second := e.Device(testenv.Member)
	colleague := e.Device(testenv.Member2)
	pending := e.Secret(testenv.Member)
	otherCode := e.Secret(testenv.Member2)
	ids := []string{must[*syncer.Identity](t)(phone.Identity()).DeviceID, must[*syncer.Identity](t)(second.Identity()).DeviceID}
	slices.Sort(ids)

	admin, actx := e.Admin()
	resp := must[*pb.DisableUserResponse](t)(admin.DisableUser(actx, &pb.DisableUserRequest{UserId: testenv.Member}))
	if !slices.Equal(resp.GetRevokedDeviceIds(), ids) || !slices.Equal(resp.GetCancelledCodeRefs(), []string{server.CodeRef(pending)}) || resp.GetAlreadyDisabledMs() != 0 {
		t.Fatalf("disable: %v, want devices %v and code %s", resp, ids, server.CodeRef(pending))
	}

	if _, err := phone.Sync(t.Context()); !errors.Is(err, syncer.ErrRevoked) {
		t.Fatalf("sync of a disabled user's phone: %v, want ErrRevoked", err)
	}
	if items := must[[]*syncer.Item](t)(phone.List("")); len(items) != 0 {
		t.Fatalf("a disabled user's phone still holds %d records", len(items))
	}
	enroll := pb.NewEnrollServiceClient(e.Conn())
	_, err := enroll.Enroll(t.Context(), &pb.EnrollRequest{Code: pending, DeviceName: "spare"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "cancelled") {
		t.Fatalf("enroll with the disabled user's code: %v, want FailedPrecondition cancelled", err)
	}
	_, err = admin.CreateEnrollmentCode(actx, &pb.CreateEnrollmentCodeRequest{UserId: testenv.Member})
	if msg := status.Convert(err).Message(); status.Code(err) != codes.FailedPrecondition || !strings.Contains(msg, "is disabled") || !strings.Contains(msg, "fieldctl admin users enable "+testenv.Member) {
		t.Fatalf("a new code for a disabled user: %v, want refused saying how to enable", err)
	}

	// The colleague goes on: their phone syncs, their code enrolls.
	testenv.Sync(t, colleague)
	must[*pb.EnrollResponse](t)(enroll.Enroll(t.Context(), &pb.EnrollRequest{Code: otherCode, DeviceName: "colleague's spare"}))

	again := must[*pb.DisableUserResponse](t)(admin.DisableUser(actx, &pb.DisableUserRequest{UserId: testenv.Member}))
	if again.GetAlreadyDisabledMs() == 0 || len(again.GetRevokedDeviceIds())+len(again.GetCancelledCodeRefs()) != 0 {
		t.Fatalf("disable twice: %v", again)
	}
	if _, err := admin.DisableUser(actx, &pb.DisableUserRequest{UserId: "U-nobody"}); status.Code(err) != codes.NotFound {
		t.Fatalf("disable an unknown user: %v", err)
	}

	en := must[*pb.EnableUserResponse](t)(admin.EnableUser(actx, &pb.EnableUserRequest{UserId: testenv.Member}))
	if en.GetDisabledMs() == 0 {
		t.Fatalf("enable: %v, want when they were disabled", en)
	}
	fresh := e.Device(testenv.Member) // a new code works again
	testenv.Sync(t, fresh)

	var actions []string
	for _, a := range must[[]store.AuditEntry](t)(e.Store.AuditLog(t.Context(), 0, 100)) {
		if a.Target == testenv.Member && (a.Action == store.AuditDisableUser || a.Action == store.AuditEnableUser) {
			actions = append(actions, a.Action)
		}
	}
	if !slices.Equal(actions, []string{"disable_user", "disable_user", "enable_user"}) {
		t.Fatalf("audit of disable and enable: %v", actions)
	}
	must[store.AuditEntry](t)(e.Store.VerifyAudit(t.Context()))
}

// Red team: a second unused code of a person whose device was revoked
// still enrolled. Revoking a device cancels the person's codes made
// before it; one made after works.
func TestRevokingADeviceCancelsTheUsersOlderCodes(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	phone := e.Device(testenv.Member)
	spare := e.Secret(testenv.Member)
	other := e.Secret(testenv.Member2)
	admin, actx := e.Admin()
	ok(t, func() error {
		_, err := admin.RevokeDevice(actx, &pb.RevokeDeviceRequest{DeviceId: must[*syncer.Identity](t)(phone.Identity()).DeviceID})
		return err
	}())
	enroll := pb.NewEnrollServiceClient(e.Conn())
	_, err := enroll.Enroll(t.Context(), &pb.EnrollRequest{Code: spare, DeviceName: "found in a drawer"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "cancelled") {
		t.Fatalf("enroll with a code made before the revocation: %v, want refused as cancelled", err)
	}
	must[*pb.EnrollResponse](t)(enroll.Enroll(t.Context(), &pb.EnrollRequest{Code: other, DeviceName: "another person's"}))
	must[*pb.EnrollResponse](t)(enroll.Enroll(t.Context(), &pb.EnrollRequest{Code: e.Secret(testenv.Member), DeviceName: "replacement"}))
}

// Codes are listed by reference, never the code, with their state; one is
// cancelled by reference, or all of a user's at once, and each
// cancellation is audited.
func TestEnrollmentCodesListAndCancel(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	a, b, c := e.Secret(testenv.Member), e.Secret(testenv.Member), e.Secret(testenv.Member2)
	used := e.Secret(testenv.Mediator)
	enroll := pb.NewEnrollServiceClient(e.Conn())
	must[*pb.EnrollResponse](t)(enroll.Enroll(t.Context(), &pb.EnrollRequest{Code: used}))
	admin, actx := e.Admin()

	list := func(user string) map[string]*pb.EnrollmentCode {
		t.Helper()
		out := map[string]*pb.EnrollmentCode{}
		for token := ""; ; {
			r := must[*pb.ListEnrollmentCodesResponse](t)(admin.ListEnrollmentCodes(actx, &pb.ListEnrollmentCodesRequest{UserId: user, PageSize: 1, PageToken: token}))
			for _, x := range r.GetCodes() {
				if out[x.GetCodeRef()] != nil {
					t.Fatalf("code %s listed twice", x.GetCodeRef())
				}
				out[x.GetCodeRef()] = x
			}
			if token = r.GetNextPageToken(); token == "" {
				return out
			}
		}
	}
	all := list("")
	if len(all) != 4 {
		t.Fatalf("%d codes listed, want 4", len(all))
	}
	for _, s := range []string{a, b, c, used} {
		x := all[server.CodeRef(s)]
		if x == nil || x.GetCreatedMs() == 0 || x.GetExpiresMs() <= x.GetCreatedMs() || x.GetCancelledMs() != 0 {
			t.Fatalf("code %s: %v", server.CodeRef(s), x)
		}
		if strings.Contains(x.String(), s) {
			t.Fatal("the listing holds a code")
		}
	}
	if all[server.CodeRef(used)].GetUsedMs() == 0 || all[server.CodeRef(a)].GetUsedMs() != 0 {
		t.Fatal("used state wrong")
	}
	if n := len(list(testenv.Member)); n != 2 {
		t.Fatalf("%d codes of %s, want 2", n, testenv.Member)
	}

	r := must[*pb.CancelEnrollmentCodesResponse](t)(admin.CancelEnrollmentCodes(actx, &pb.CancelEnrollmentCodesRequest{CodeRef: server.CodeRef(a)}))
	if !slices.Equal(r.GetCancelledCodeRefs(), []string{server.CodeRef(a)}) {
		t.Fatalf("cancel by reference: %v", r)
	}
	if _, err := enroll.Enroll(t.Context(), &pb.EnrollRequest{Code: a}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("enroll with a cancelled code: %v", err)
	}
	for _, bad := range []struct {
		req  *pb.CancelEnrollmentCodesRequest
		code codes.Code
		msg  string
	}{
		{&pb.CancelEnrollmentCodesRequest{CodeRef: server.CodeRef(a)}, codes.FailedPrecondition, "already cancelled"},
		{&pb.CancelEnrollmentCodesRequest{CodeRef: server.CodeRef(used)}, codes.FailedPrecondition, "already used"},
		{&pb.CancelEnrollmentCodesRequest{CodeRef: "000000000000"}, codes.NotFound, "no enrollment code"},
		{&pb.CancelEnrollmentCodesRequest{CodeRef: "xyz"}, codes.InvalidArgument, "12 hex digits"},
		{&pb.CancelEnrollmentCodesRequest{}, codes.InvalidArgument, "either code_ref"},
		{&pb.CancelEnrollmentCodesRequest{UserId: "U-nobody"}, codes.NotFound, "unknown user"},
	} {
		_, err := admin.CancelEnrollmentCodes(actx, bad.req)
		if status.Code(err) != bad.code || !strings.Contains(status.Convert(err).Message(), bad.msg) {
			t.Errorf("cancel %v: %v, want %v %q", bad.req, err, bad.code, bad.msg)
		}
	}
	r = must[*pb.CancelEnrollmentCodesResponse](t)(admin.CancelEnrollmentCodes(actx, &pb.CancelEnrollmentCodesRequest{UserId: testenv.Member}))
	if !slices.Equal(r.GetCancelledCodeRefs(), []string{server.CodeRef(b)}) {
		t.Fatalf("cancel a user's codes: %v, want only the outstanding one", r)
	}
	if x := list(testenv.Member)[server.CodeRef(b)]; x.GetCancelledMs() == 0 {
		t.Fatalf("listing after cancel: %v", x)
	}
	must[*pb.EnrollResponse](t)(enroll.Enroll(t.Context(), &pb.EnrollRequest{Code: c})) // another user's code is untouched
	n := 0
	for _, x := range must[[]store.AuditEntry](t)(e.Store.AuditLog(t.Context(), 0, 100)) {
		if x.Action == store.AuditCancelEnrollmentCodes {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d cancellations audited, want 2", n)
	}
}
