package server

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// caller is who is calling, as decided from the credential.
type caller struct {
	admin     bool
	account   string            // an administrator's account name (domain.OwnerAccount for admin.token)
	scope     domain.AdminScope // an administrator's scope
	deviceID  string
	userID    string
	role      pb.Role
	villageID string
	townID    string
}

type callerKey struct{}

func callerFrom(ctx context.Context) *caller {
	c, _ := ctx.Value(callerKey{}).(*caller)
	return c
}

// ErrRevokedMessage starts the status message a revoked device gets; the
// device wipes its local data when it sees it.
const ErrRevokedMessage = "device revoked"

func bearer(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if t, ok := strings.CutPrefix(v, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	return ""
}

// authenticate decides who calls method.
func (s *Server) authenticate(ctx context.Context, method string) (context.Context, error) {
	service := method
	if i := strings.LastIndex(method, "/"); i > 0 {
		service = method[:i]
	}
	switch service {
	case "/fieldsync.v1.EnrollService":
		return ctx, nil
	case "/fieldsync.v1.AdminService":
		c, err := s.adminCaller(ctx, bearer(ctx))
		if errors.Is(err, errNotAdmin) {
			return nil, status.Error(codes.Unauthenticated, "admin credential missing or wrong: send \"authorization: Bearer <token>\" with the token from syncd's data directory (admin.token) or your own administrator account's token")
		}
		if err != nil {
			return nil, err
		}
		return context.WithValue(ctx, callerKey{}, c), nil
	case "/fieldsync.v1.ExportService":
		if c, err := s.adminCaller(ctx, bearer(ctx)); err == nil {
			return context.WithValue(ctx, callerKey{}, c), nil
		} else if !errors.Is(err, errNotAdmin) {
			return nil, err
		}
		c, err := s.device(ctx)
		if err != nil {
			return nil, err
		}
		if c.role != pb.Role_ROLE_HQ {
			return nil, status.Error(codes.PermissionDenied, "export is for HQ: use the admin credential or an HQ user's device")
		}
		return context.WithValue(ctx, callerKey{}, c), nil
	case "/fieldsync.v1.SyncService", "/fieldsync.v1.AttachmentService":
		c, err := s.device(ctx)
		if err != nil {
			return nil, err
		}
		return context.WithValue(ctx, callerKey{}, c), nil
	}
	if s.openService(service) {
		return ctx, nil
	}
	return nil, status.Errorf(codes.Unimplemented, "unknown service %s", service)
}

func (s *Server) isAdmin(token string) bool {
	if token == "" || s.cfg.AdminTokenHash == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(store.HashSecret(token)), []byte(s.cfg.AdminTokenHash)) == 1
}

// device authenticates a device credential: from the auth cache
// (authcache.go) if the credential succeeded within the last few seconds,
// else from the store.
func (s *Server) device(ctx context.Context) (*caller, error) {
	token := bearer(ctx)
	if token == "" {
		return nil, status.Error(codes.Unauthenticated, "device credential missing: enroll the device first (fieldctl device enroll)")
	}
	key := keyOf(token)
	c, gen := s.auth.get(key)
	if c != nil {
		return c, nil
	}
	d, err := s.store.DeviceByToken(ctx, hex.EncodeToString(key[:])) // = store.HashSecret(token)
	if errors.Is(err, store.ErrNotFound) {
		st, _ := status.New(codes.Unauthenticated, "device credential unknown: enroll the device again with a new code (this server does not know the device: "+
			"restored from a backup taken before it enrolled, or another server); the phone keeps its work and sends it after enrolling").
			WithDetails(&errdetails.ErrorInfo{Reason: UnknownDeviceReason, Domain: "fieldsync.v1"})
		return nil, st.Err()
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "look up device: %v", err)
	}
	if d.RevokedMs != 0 {
		return nil, errRevokedStatus()
	}
	u, err := s.store.User(ctx, d.UserID)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "device %s belongs to user %s, who is no longer known: ask an administrator", d.DeviceID, d.UserID)
	}
	c = &caller{deviceID: d.DeviceID, userID: d.UserID, role: u.User.GetRole(), villageID: u.VillageID, townID: u.TownID}
	s.auth.put(key, c, gen)
	return c, nil
}

func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	actx, err := s.authenticate(ctx, info.FullMethod)
	if err != nil {
		s.credentialRefused(ctx, info.FullMethod, err)
		return nil, err
	}
	noteCaller(actx, callerFrom(actx))
	return handler(actx, req)
}

type authStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authStream) Context() context.Context { return a.ctx }

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		s.credentialRefused(ss.Context(), info.FullMethod, err)
		return err
	}
	noteCaller(ctx, callerFrom(ctx))
	return handler(srv, &authStream{ServerStream: ss, ctx: ctx})
}
