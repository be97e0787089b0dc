package server

import (
	"cmp"
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

type enrollService struct {
	pb.UnimplementedEnrollServiceServer
	s *Server
}

// Enroll trades a one-time code for a device credential. The server keeps
// only the credential's hash.
func (x *enrollService) Enroll(ctx context.Context, req *pb.EnrollRequest) (*pb.EnrollResponse, error) {
	code := NormalizeCode(req.GetCode())
	if code == "" || len(code) > 64 {
		return nil, status.Error(codes.InvalidArgument, "code: missing or malformed: give the enrollment code your administrator issued (fieldctl admin enroll-code)")
	}
	if err := domain.CheckDisplayText("device_name", req.GetDeviceName(), 200); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := domain.CheckDisplayText("app_version", req.GetAppVersion(), 64); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	resp := &pb.EnrollResponse{DeviceId: "d" + domain.RandomToken(5), Token: domain.RandomToken(20)}
	err := x.s.store.Write(ctx, func(tx *store.Tx) error {
		userID, err := tx.UseEnrollCode(store.HashSecret(code), tx.Now().UnixMilli())
		if err != nil {
			return err
		}
		u, err := tx.User(userID)
		if err != nil {
			return err
		}
		// Codes are cancelled when their user is disabled; this catches
		// one that slipped past.
		if disabled, err := tx.UserDisabled(userID); err != nil || disabled != 0 {
			return cmp.Or(err, store.ErrCodeCancelled)
		}
		resp.UserId, resp.UserName, resp.Role, resp.VillageId = userID, u.User.GetName(), u.User.GetRole(), u.VillageID
		if err := tx.PutDevice(&pb.Device{Id: resp.DeviceId, UserId: userID, Name: req.GetDeviceName(),
			AppVersion: req.GetAppVersion(), EnrolledMs: tx.Now().UnixMilli()}, store.HashSecret(resp.Token)); err != nil {
			return err
		}
		return tx.Audit(resp.DeviceId, store.AuditEnrollDevice, userID, auditDetail(map[string]any{
			"name": req.GetDeviceName(), "app_version": req.GetAppVersion(), "code_ref": CodeRef(code)}))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, status.Error(codes.NotFound, "code: unknown enrollment code: check it, or ask your administrator for a new one")
	case errors.Is(err, store.ErrCodeUsed):
		return nil, status.Error(codes.FailedPrecondition, "code: already used to enroll a device: each code enrolls one device; ask for a new one")
	case errors.Is(err, store.ErrCodeCancelled):
		return nil, status.Error(codes.FailedPrecondition, "code: cancelled by the administrator: ask them for a new one")
	case errors.Is(err, store.ErrCodeExpired):
		return nil, status.Error(codes.FailedPrecondition, "code: expired: ask your administrator for a new one")
	case isDiskFull(err):
		return nil, x.s.diskFull("enroll", "server out of disk space: the device was not enrolled; try the same code again later (tell the server's operator)", err)
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "enroll: %v; retry", err)
	}
	return resp, nil
}

// NormalizeCode strips the spaces and dashes people type into codes and
// lower-cases them.
func NormalizeCode(code string) string {
	return strings.ToLower(codeSeparators.Replace(strings.TrimSpace(code)))
}

// codeSeparators are what people type between a code's groups (a
// Replacer builds its tables once, on first use).
var codeSeparators = strings.NewReplacer(" ", "", "-", "")
