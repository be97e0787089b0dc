package server

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// Audit actions of HQ credentials.
const (
	auditAddHQCredential    = "add_hq_credential"
	auditRevokeHQCredential = "revoke_hq_credential"
)

var hqNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// HQUsers reads the HQ credentials in use from the database: the HQ users
// of the embedded NATS (NewNATSAuth).
func HQUsers(ctx context.Context, st *store.Server) ([]HQUser, error) {
	creds, err := st.HQCredentials(ctx)
	if err != nil {
		return nil, err
	}
	var out []HQUser
	for _, c := range creds {
		if c.RevokedMs == 0 {
			out = append(out, HQUser{Name: c.Name, PublicKey: c.PublicKey})
		}
	}
	return out, nil
}

// applyHQUsers gives the embedded NATS the HQ users the database holds now.
func (s *Server) applyHQUsers(ctx context.Context) error {
	s.hqMu.Lock()
	defer s.hqMu.Unlock()
	users, err := HQUsers(ctx, s.store)
	if err != nil {
		return err
	}
	return s.cfg.NATSAuth.SetHQUsers(users)
}

func (x *adminService) natsAuth() (*NATSAuth, error) {
	if x.s.cfg.NATSAuth == nil {
		return nil, status.Error(codes.FailedPrecondition, "syncd uses an external NATS (-nats): create HQ's credentials on that NATS server, not here")
	}
	return x.s.cfg.NATSAuth, nil
}

// hqCredentialAdmin is the administrator managing HQ credentials: a city
// administrator only, as an HQ credential reads every change of the city
// (the changelog is not split by town).
func hqCredentialAdmin(ctx context.Context, what string) (*caller, error) {
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	return c, c.cityOnly(what + " (it reads every change of the city)")
}

func toHQCredential(c store.HQCredential) *pb.HQCredential {
	return &pb.HQCredential{Name: c.Name, PublicKey: c.PublicKey, CreatedMs: c.CreatedMs, RevokedMs: c.RevokedMs}
}

// AddHQCredential makes an NKey for an HQ consumer, stores its public key
// and lets it connect to the embedded NATS at once; the seed is answered
// once and never stored.
func (x *adminService) AddHQCredential(ctx context.Context, req *pb.AddHQCredentialRequest) (*pb.AddHQCredentialResponse, error) {
	c, err := hqCredentialAdmin(ctx, "adding an HQ credential")
	if err != nil {
		return nil, err
	}
	if _, err := x.natsAuth(); err != nil {
		return nil, err
	}
	name := req.GetName()
	if !hqNameRE.MatchString(name) {
		return nil, status.Errorf(codes.InvalidArgument, "name %q: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. hq-city)", name)
	}
	pub, seed, err := NewHQKey()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "make an NKey: %v", err)
	}
	err = x.s.store.Write(ctx, func(tx *store.Tx) error {
		if err := tx.AddHQCredential(name, pub); err != nil {
			return err
		}
		return tx.Audit(c.actor(), auditAddHQCredential, name, auditDetail(map[string]any{"public_key": pub}))
	})
	switch {
	case errors.Is(err, store.ErrExists):
		return nil, status.Errorf(codes.AlreadyExists, "name %q: an HQ credential of that name exists (revoked ones keep their name): choose another name", name)
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "add HQ credential: %v; retry", err)
	}
	if err := x.s.applyHQUsers(ctx); err != nil {
		x.s.log.Error("nats: HQ credential stored but not applied to the embedded NATS; restart syncd to apply it", "name", name, "err", err)
		return nil, status.Errorf(codes.Internal, "HQ credential %q stored but not applied to NATS (%v): restart syncd, then use it", name, err)
	}
	creds, err := x.s.store.HQCredentials(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read HQ credential back: %v", err)
	}
	resp := &pb.AddHQCredentialResponse{Seed: string(seed)}
	for _, c := range creds {
		if c.Name == name {
			resp.Credential = toHQCredential(c)
		}
	}
	return resp, nil
}

// ListHQCredentials lists HQ's credentials, revoked ones too.
func (x *adminService) ListHQCredentials(ctx context.Context, _ *pb.ListHQCredentialsRequest) (*pb.ListHQCredentialsResponse, error) {
	if _, err := hqCredentialAdmin(ctx, "listing HQ credentials"); err != nil {
		return nil, err
	}
	creds, err := x.s.store.HQCredentials(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "list HQ credentials: %v; retry", err)
	}
	resp := &pb.ListHQCredentialsResponse{}
	for _, c := range creds {
		resp.Credentials = append(resp.Credentials, toHQCredential(c))
	}
	return resp, nil
}

// RevokeHQCredential cuts an HQ credential off: its connections to the
// embedded NATS are closed and it cannot connect again.
func (x *adminService) RevokeHQCredential(ctx context.Context, req *pb.RevokeHQCredentialRequest) (*pb.RevokeHQCredentialResponse, error) {
	c, err := hqCredentialAdmin(ctx, "revoking an HQ credential")
	if err != nil {
		return nil, err
	}
	if _, err := x.natsAuth(); err != nil {
		return nil, err
	}
	var already bool
	err = x.s.store.Write(ctx, func(tx *store.Tx) error {
		var err error
		if already, err = tx.RevokeHQCredential(req.GetName()); err != nil {
			return err
		}
		return tx.Audit(c.actor(), auditRevokeHQCredential, req.GetName(), auditDetail(map[string]any{"already_revoked": already}))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "name: no HQ credential %q (see fieldctl admin hq-credential list)", req.GetName())
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "revoke HQ credential: %v; retry", err)
	}
	if err := x.s.applyHQUsers(ctx); err != nil {
		x.s.log.Error("nats: HQ credential revoked in the database but still accepted by the embedded NATS; restart syncd", "name", req.GetName(), "err", err)
		return nil, status.Error(codes.Internal, fmt.Sprintf("revoked in the database but NATS still accepts it (%v): restart syncd", err))
	}
	return &pb.RevokeHQCredentialResponse{AlreadyRevoked: already}, nil
}
