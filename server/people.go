package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// disabledMessage is what a refused code for a disabled user says.
func disabledMessage(userID string) string {
	return fmt.Sprintf("user_id: %s is disabled: no enrollment code can be made for them; enable them first with fieldctl admin users enable %s", userID, userID)
}

// mayActOnUser refuses a town administrator acting on a user outside its
// town; ErrNotFound for an unknown user.
func (c *caller) mayActOnUser(tx *store.Tx, userID string) (denied, err error) {
	u, err := tx.User(userID)
	if err != nil {
		return nil, err
	}
	return c.mayAct(fmt.Sprintf("user %q", userID), u.TownID), nil
}

// DisableUser cuts a person off: each of their devices is revoked (refused
// from now on, and wiped at its next contact, as RevokeDevice), their
// outstanding enrollment codes are cancelled, and no new code is made for
// them until EnableUser. One transaction, one audit entry.
func (x *adminService) DisableUser(ctx context.Context, req *pb.DisableUserRequest) (*pb.DisableUserResponse, error) {
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	resp := &pb.DisableUserResponse{}
	var denied error
	err = x.s.store.Write(ctx, func(tx *store.Tx) error {
		resp.Reset()
		if denied, err = c.mayActOnUser(tx, req.GetUserId()); err != nil || denied != nil {
			return err
		}
		was, err := tx.SetUserDisabled(req.GetUserId(), true)
		if err != nil {
			return err
		}
		resp.AlreadyDisabledMs = was
		if resp.RevokedDeviceIds, err = tx.UserDevices(req.GetUserId()); err != nil {
			return err
		}
		for _, d := range resp.RevokedDeviceIds {
			if err := tx.RevokeDevice(d); err != nil {
				return err
			}
		}
		if resp.CancelledCodeRefs, err = tx.CancelEnrollCodes(req.GetUserId(), ""); err != nil {
			return err
		}
		devices := resp.RevokedDeviceIds
		tx.AfterCommit(func() {
			for _, d := range devices {
				x.s.auth.forgetDevice(d)
			}
		})
		return tx.Audit(c.actor(), store.AuditDisableUser, req.GetUserId(), auditDetail(map[string]any{
			"revoked_devices": strings.Join(resp.RevokedDeviceIds, ","), "cancelled_codes": strings.Join(resp.CancelledCodeRefs, ","),
			"already_disabled": was != 0}))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "user_id: unknown user %q (the id from users.csv)", req.GetUserId())
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "disable user: %v; nothing was changed, retry", err)
	case denied != nil:
		return nil, denied
	}
	for _, d := range resp.RevokedDeviceIds {
		x.s.hub.drop(d)
	}
	return resp, nil
}

// EnableUser lets a disabled person be given enrollment codes again. Their
// revoked devices stay revoked: each must enroll again with a new code.
func (x *adminService) EnableUser(ctx context.Context, req *pb.EnableUserRequest) (*pb.EnableUserResponse, error) {
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	resp := &pb.EnableUserResponse{}
	var denied error
	err = x.s.store.Write(ctx, func(tx *store.Tx) error {
		if denied, err = c.mayActOnUser(tx, req.GetUserId()); err != nil || denied != nil {
			return err
		}
		was, err := tx.SetUserDisabled(req.GetUserId(), false)
		if err != nil {
			return err
		}
		resp.DisabledMs = was
		return tx.Audit(c.actor(), store.AuditEnableUser, req.GetUserId(), auditDetail(map[string]any{"was_disabled": was != 0}))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "user_id: unknown user %q (the id from users.csv)", req.GetUserId())
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "enable user: %v; nothing was changed, retry", err)
	case denied != nil:
		return nil, denied
	}
	return resp, nil
}

// ListEnrollmentCodes pages through enrollment codes in the order they
// were made, by reference: the codes themselves are not kept.
func (x *adminService) ListEnrollmentCodes(ctx context.Context, req *pb.ListEnrollmentCodesRequest) (*pb.ListEnrollmentCodesResponse, error) {
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	if size < 0 || size > 1000 {
		return nil, status.Errorf(codes.InvalidArgument, "page_size: %d, want 0 (default 100) to 1000", req.GetPageSize())
	}
	var afterMs int64
	var afterRef string
	if t := req.GetPageToken(); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		ms, ref, ok := strings.Cut(string(b), " ")
		n, perr := strconv.ParseInt(ms, 10, 64)
		if err != nil || !ok || perr != nil {
			return nil, status.Error(codes.InvalidArgument, "page_token: not a token this server gave: start again without it")
		}
		afterMs, afterRef = n, ref
	}
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	if !c.scope.City() {
		// A town administrator lists one of its town's users at a time.
		if req.GetUserId() == "" {
			return nil, c.cityOnly("listing every user's enrollment codes (give user_id)")
		}
		u, err := x.s.store.User(ctx, req.GetUserId())
		var denied error
		if err == nil {
			denied = c.mayAct(fmt.Sprintf("user %q", req.GetUserId()), u.TownID)
		}
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, status.Errorf(codes.NotFound, "user_id: unknown user %q (the id from users.csv)", req.GetUserId())
		case err != nil:
			return nil, status.Errorf(codes.Unavailable, "list codes: %v", err)
		case denied != nil:
			return nil, denied
		}
	}
	cs, err := x.s.store.EnrollCodes(ctx, req.GetUserId(), afterMs, afterRef, size+1)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "list codes: %v", err)
	}
	resp := &pb.ListEnrollmentCodesResponse{}
	for i, c := range cs {
		if i == size {
			last := cs[size-1]
			resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d %s", last.CreatedMs, last.Ref)))
			break
		}
		resp.Codes = append(resp.Codes, &pb.EnrollmentCode{CodeRef: c.Ref, UserId: c.UserID, CreatedMs: c.CreatedMs,
			ExpiresMs: c.ExpiresMs, UsedMs: c.UsedMs, CancelledMs: c.CancelledMs})
	}
	return resp, nil
}

// CancelEnrollmentCodes cancels one outstanding code by its reference, or
// every outstanding code of a user. A cancelled code enrolls nothing.
func (x *adminService) CancelEnrollmentCodes(ctx context.Context, req *pb.CancelEnrollmentCodesRequest) (*pb.CancelEnrollmentCodesResponse, error) {
	ref, user := strings.ToLower(strings.TrimSpace(req.GetCodeRef())), req.GetUserId()
	switch {
	case (ref == "") == (user == ""):
		return nil, status.Error(codes.InvalidArgument, "give either code_ref (one code, as fieldctl admin codes list shows it) or user_id (all of a user's outstanding codes), not both")
	case ref != "" && (len(ref) != store.CodeRefLen || strings.Trim(ref, "0123456789abcdef") != ""):
		return nil, status.Errorf(codes.InvalidArgument, "code_ref: %q is not a code reference: want the %d hex digits fieldctl admin codes list shows", req.GetCodeRef(), store.CodeRefLen)
	}
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	resp := &pb.CancelEnrollmentCodesResponse{}
	var refused string
	var denied error
	err = x.s.store.Write(ctx, func(tx *store.Tx) error {
		resp.Reset()
		refused = ""
		target := user
		if ref != "" {
			c, err := tx.EnrollCodeByRef(ref)
			if err != nil {
				return err
			}
			target = c.UserID
			switch {
			case c.UsedMs != 0:
				refused = fmt.Sprintf("code_ref: code %s was already used to enroll a device of %s: revoke that device instead (fieldctl admin devices -user %s)", ref, c.UserID, c.UserID)
			case c.CancelledMs != 0:
				refused = fmt.Sprintf("code_ref: code %s is already cancelled", ref)
			case !c.Outstanding(tx.Now().UnixMilli()):
				refused = fmt.Sprintf("code_ref: code %s has expired: it enrolls nothing already", ref)
			}
			if refused != "" {
				return nil
			}
		}
		if denied, err = c.mayActOnUser(tx, target); err != nil || denied != nil {
			return err
		}
		if resp.CancelledCodeRefs, err = tx.CancelEnrollCodes(user, ref); err != nil {
			return err
		}
		return tx.Audit(c.actor(), store.AuditCancelEnrollmentCodes, target, auditDetail(map[string]any{
			"code_refs": strings.Join(resp.CancelledCodeRefs, ",")}))
	})
	switch {
	case errors.Is(err, store.ErrNotFound) && ref != "":
		return nil, status.Errorf(codes.NotFound, "code_ref: no enrollment code %s (see fieldctl admin codes list)", ref)
	case errors.Is(err, store.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "user_id: unknown user %q (the id from users.csv)", user)
	case errors.Is(err, store.ErrAmbiguousCodeRef):
		return nil, status.Errorf(codes.FailedPrecondition, "code_ref: %s names two codes: cancel the user's codes with user_id instead (fieldctl admin codes cancel --user U)", ref)
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "cancel codes: %v; nothing was changed, retry", err)
	case denied != nil:
		return nil, denied
	case refused != "":
		return nil, status.Error(codes.FailedPrecondition, refused)
	}
	return resp, nil
}
