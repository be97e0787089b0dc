package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// errNotAdmin: the credential is neither the owner's nor an account's.
var errNotAdmin = errors.New("not an administrator credential")

// adminCaller authenticates an administrator: the owner credential
// (admin.token, city-wide, named domain.OwnerAccount), or an account's.
//
// Accounts are read from the store at every call, not kept in the auth
// cache: administrators make few calls, a lookup by a unique index costs
// microseconds, and so a disabled account is refused from its very next
// call with no cache to invalidate.
func (s *Server) adminCaller(ctx context.Context, token string) (*caller, error) {
	if token == "" {
		return nil, errNotAdmin
	}
	if s.isAdmin(token) {
		return &caller{admin: true, account: domain.OwnerAccount}, nil
	}
	a, err := s.store.AdminAccountByToken(ctx, store.HashSecret(token))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errNotAdmin
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "look up administrator account: %v", err)
	case a.DisabledMs != 0:
		return nil, status.Errorf(codes.Unauthenticated, "administrator account %q was disabled at %s: ask a city administrator to enable it again (fieldctl admin accounts enable), which issues a new token",
			a.Name, time.UnixMilli(a.DisabledMs).UTC().Format(time.RFC3339))
	}
	return &caller{admin: true, account: a.Name, scope: domain.AdminScope{TownID: a.TownID}}, nil
}

// adminFrom is the administrator calling; nil (and the refusal) if the
// context carries none, which only a call that skipped authentication
// can: refused rather than taken for the owner.
func adminFrom(ctx context.Context) (*caller, error) {
	c := callerFrom(ctx)
	if c == nil || !c.admin {
		return nil, status.Error(codes.PermissionDenied, "not an administrator")
	}
	return c, nil
}

// actor is the audit log's actor for this administrator's actions.
func (c *caller) actor() string { return domain.AdminActor(c.account) }

// who names the administrator and their scope in refusals.
func (c *caller) who() string {
	return fmt.Sprintf("administrator %q (scope: %s)", c.account, c.scope)
}

// cityOnly refuses a town administrator what only a city administrator
// may do.
func (c *caller) cityOnly(what string) error {
	if c.scope.City() {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "%s is for a city administrator: %s may act only inside town %s; ask a city administrator",
		what, c.who(), c.scope.TownID)
}

// mayAct refuses a town administrator acting on what (e.g. `user "U-7"`)
// lying in townID, if that is outside its town.
func (c *caller) mayAct(what, townID string) error {
	if domain.AdminMayAct(c.scope, townID) {
		return nil
	}
	where := "town " + townID
	if townID == "" {
		where = "no town (HQ)"
	}
	return status.Errorf(codes.PermissionDenied, "%s lies in %s, outside the scope of %s: ask a city administrator or one of %s",
		what, where, c.who(), where)
}

// accountPB is an account as the API shows it.
func accountPB(a store.AdminAccount) *pb.AdminAccount {
	return &pb.AdminAccount{Name: a.Name, TownId: a.TownID, CreatedMs: a.CreatedMs, CreatedBy: a.CreatedBy, DisabledMs: a.DisabledMs}
}

// CreateAdminAccount creates an account for a person and returns its
// credential, this once (only its hash is kept).
func (x *adminService) CreateAdminAccount(ctx context.Context, req *pb.CreateAdminAccountRequest) (*pb.CreateAdminAccountResponse, error) {
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.cityOnly("managing administrator accounts"); err != nil {
		return nil, err
	}
	if m := domain.CheckAdminName(req.GetName()); m != "" {
		return nil, status.Errorf(codes.InvalidArgument, "name: %s", m)
	}
	if t := req.GetTownId(); t != "" && !domain.IsOrgID(t) {
		return nil, status.Errorf(codes.InvalidArgument, "town_id: malformed id %q: want a town's id (units.csv, kind town), or nothing for a city-wide account", t)
	}
	token := domain.RandomToken(20) // as admin.token: 160 random bits
	resp := &pb.CreateAdminAccountResponse{Token: token}
	var badTown, exists bool
	err = x.s.store.Write(ctx, func(tx *store.Tx) error {
		if t := req.GetTownId(); t != "" {
			u, err := tx.Unit(t)
			if errors.Is(err, store.ErrNotFound) || (err == nil && u.Unit.GetKind() != pb.UnitKind_UNIT_KIND_TOWN) {
				badTown = true
				return nil
			}
			if err != nil {
				return err
			}
		}
		a, err := tx.PutAdminAccount(store.AdminAccount{Name: req.GetName(), TownID: req.GetTownId(), CreatedBy: c.account}, store.HashSecret(token))
		if errors.Is(err, store.ErrExists) {
			exists = true
			return nil
		}
		if err != nil {
			return err
		}
		resp.Account = accountPB(a)
		return tx.Audit(c.actor(), store.AuditCreateAdminAccount, a.Name, auditDetail(map[string]any{
			"town_id": a.TownID, "scope": domain.AdminScope{TownID: a.TownID}.String()}))
	})
	switch {
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "create administrator account: %v; nothing was stored, retry", err)
	case badTown:
		return nil, status.Errorf(codes.InvalidArgument, "town_id: unknown town %q: give the id of a unit of kind town (units.csv), or nothing for a city-wide account", req.GetTownId())
	case exists:
		return nil, status.Errorf(codes.AlreadyExists, "name: an administrator named %q exists already (see fieldctl admin accounts list): choose another name, or enable that account again", req.GetName())
	}
	return resp, nil
}

// ListAdminAccounts lists every account, disabled ones too, by name.
func (x *adminService) ListAdminAccounts(ctx context.Context, req *pb.ListAdminAccountsRequest) (*pb.ListAdminAccountsResponse, error) {
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.cityOnly("listing administrator accounts"); err != nil {
		return nil, err
	}
	as, err := x.s.store.AdminAccounts(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "list administrator accounts: %v", err)
	}
	resp := &pb.ListAdminAccountsResponse{}
	for _, a := range as {
		resp.Accounts = append(resp.Accounts, accountPB(a))
	}
	return resp, nil
}

// DisableAdminAccount cuts an account off: its next call is refused.
func (x *adminService) DisableAdminAccount(ctx context.Context, req *pb.DisableAdminAccountRequest) (*pb.DisableAdminAccountResponse, error) {
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.cityOnly("managing administrator accounts"); err != nil {
		return nil, err
	}
	resp := &pb.DisableAdminAccountResponse{}
	err = x.s.store.Write(ctx, func(tx *store.Tx) error {
		before, err := tx.AdminAccount(req.GetName())
		if err != nil {
			return err
		}
		a, err := tx.DisableAdminAccount(req.GetName())
		if err != nil {
			return err
		}
		resp.Account = accountPB(a)
		return tx.Audit(c.actor(), store.AuditDisableAdminAccount, a.Name, auditDetail(map[string]any{
			"already_disabled": before.DisabledMs != 0}))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "name: no administrator named %q (see fieldctl admin accounts list)", req.GetName())
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "disable administrator account: %v; retry", err)
	}
	return resp, nil
}

// EnableAdminAccount makes an account active again with a new credential,
// returned this once: the old credential stays refused, so that enabling
// an account disabled for a lost phone or laptop does not revive it.
func (x *adminService) EnableAdminAccount(ctx context.Context, req *pb.EnableAdminAccountRequest) (*pb.EnableAdminAccountResponse, error) {
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.cityOnly("managing administrator accounts"); err != nil {
		return nil, err
	}
	token := domain.RandomToken(20)
	resp := &pb.EnableAdminAccountResponse{Token: token}
	err = x.s.store.Write(ctx, func(tx *store.Tx) error {
		a, err := tx.EnableAdminAccount(req.GetName(), store.HashSecret(token))
		if err != nil {
			return err
		}
		resp.Account = accountPB(a)
		return tx.Audit(c.actor(), store.AuditEnableAdminAccount, a.Name, auditDetail(map[string]any{"new_token": true}))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "name: no administrator named %q (see fieldctl admin accounts list)", req.GetName())
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "enable administrator account: %v; retry", err)
	}
	return resp, nil
}
