package server

import (
	"context"
	"errors"
	"fmt"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// A town administrator acts only on what lies in its town
// (domain.AdminMayAct): a user where their unit is, a household where its
// grid is, a device where its user is now. The checks below read the org
// in the action's own transaction, so they judge the org the action
// changes. They return the refusal (PermissionDenied) apart from the
// store's errors.

// mayAssign checks that the household and the member both lie in c's town.
func (c *caller) mayAssign(tx *store.Tx, householdID, memberID string) (denied, err error) {
	if c.scope.City() {
		return nil, nil
	}
	_, meta, err := tx.Record(householdID)
	if err != nil {
		return nil, err
	}
	if denied := c.mayAct(fmt.Sprintf("household %q", householdID), meta.TownID); denied != nil {
		return denied, nil
	}
	u, err := tx.User(memberID)
	if err != nil {
		return nil, err
	}
	return c.mayAct(fmt.Sprintf("member %q", memberID), u.TownID), nil
}

// mayRevoke checks that the device's user lies in c's town.
func (c *caller) mayRevoke(tx *store.Tx, deviceID string) (denied, err error) {
	if c.scope.City() {
		return nil, nil
	}
	userID, err := tx.DeviceUser(deviceID)
	if err != nil {
		return nil, err
	}
	town := ""
	if u, err := tx.User(userID); err == nil {
		town = u.TownID
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return c.mayAct(fmt.Sprintf("device %q (user %q)", deviceID, userID), town), nil
}

// listDevicesPage is how many devices listDevices reads per store call
// while filtering for a town administrator.
const listDevicesPage = 1000

// listDevices returns up to limit devices after afterID (of one user, if
// userID is set) that c may see: all for a city administrator, those whose
// user lies in its town for a town administrator. Filtered here, over the
// store's own listing, so that the listing stays one query for everyone
// else; a town administrator's listing reads the city's devices once,
// with one user lookup per distinct user (a city has thousands, not
// millions).
func (x *adminService) listDevices(ctx context.Context, c *caller, userID, afterID string, limit int) ([]*pb.Device, error) {
	if c.scope.City() {
		return x.s.store.ListDevices(ctx, userID, afterID, limit)
	}
	if userID != "" {
		// One user's devices: refused, not an empty list, when the user
		// lies elsewhere, so that the administrator knows why.
		u, err := x.s.store.User(ctx, userID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil // as for a city administrator: nobody's devices
		}
		if err != nil {
			return nil, err
		}
		if denied := c.mayAct(fmt.Sprintf("user %q", userID), u.TownID); denied != nil {
			return nil, denied
		}
		return x.s.store.ListDevices(ctx, userID, afterID, limit)
	}
	towns := map[string]string{} // user -> town ("" if unknown)
	townOf := func(id string) (string, error) {
		if t, ok := towns[id]; ok {
			return t, nil
		}
		u, err := x.s.store.User(ctx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
		towns[id] = u.TownID
		return u.TownID, nil
	}
	var out []*pb.Device
	for {
		page, err := x.s.store.ListDevices(ctx, "", afterID, listDevicesPage)
		if err != nil {
			return nil, err
		}
		for _, d := range page {
			t, err := townOf(d.GetUserId())
			if err != nil {
				return nil, err
			}
			if t == c.scope.TownID {
				out = append(out, d)
				if len(out) == limit {
					return out, nil
				}
			}
		}
		if len(page) < listDevicesPage {
			return out, nil
		}
		afterID = page[len(page)-1].GetId()
	}
}

// adminExportScope refuses Export to a town administrator. Export is HQ's
// read model of the whole city, resumed by change number: a stream
// filtered to one town would look complete while it is not (a consumer
// that mixes it with a full export could not tell), and its records of a
// town are what that town's secretary's device already syncs. So it is
// the city's, and refused, naming the scope, rather than filtered.
func adminExportScope(ctx context.Context) error {
	c := callerFrom(ctx)
	if c == nil || !c.admin {
		return nil // an HQ device: checked at authentication
	}
	return c.cityOnly("export (every record of the city)")
}
