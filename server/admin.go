package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

type adminService struct {
	pb.UnimplementedAdminServiceServer
	s *Server
}

// adminWho marks changes made by an administrator in the changelog.
var adminWho = store.AdminChange

// ImportOrg upserts units, users, households and assignments. Each bad row
// is reported and skipped; the good rows are stored. On a server that is a
// region, a row naming an id of another region (regionRowErrors) refuses
// the whole call: nothing is stored, and those rows are listed (the file
// was sent to the wrong region).
func (x *adminService) ImportOrg(ctx context.Context, req *pb.ImportOrgRequest) (*pb.ImportOrgResponse, error) {
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.cityOnly("importing the org"); err != nil { // the org is city-wide
		return nil, err
	}
	if errs := regionRowErrors(x.s.cfg.Region, req); len(errs) > 0 {
		x.s.log.Warn("import refused: rows of other regions; nothing stored", "region", x.s.cfg.Region, "rows", len(errs), "first", errs[0].GetMessage())
		return &pb.ImportOrgResponse{Errors: errs}, nil
	}
	resp := &pb.ImportOrgResponse{}
	err = x.s.store.Write(ctx, func(tx *store.Tx) error {
		resp.Reset()
		bad := func(table string, i int, field, format string, args ...any) {
			resp.Errors = append(resp.Errors, &pb.RowError{Table: table, Index: int32(i), Field: field, Message: fmt.Sprintf(format, args...)})
		}
		// Towns before villages before grids, so that parents exist.
		order := make([]int, len(req.GetUnits()))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return req.GetUnits()[order[a]].GetKind() < req.GetUnits()[order[b]].GetKind() })
		var movedUnits []string        // units now in another village or town
		movedFrom := map[string]bool{} // villages whose records may now lie elsewhere
		for _, i := range order {
			u := req.GetUnits()[i]
			old, err := tx.Unit(u.GetId())
			isNew := errors.Is(err, store.ErrNotFound)
			if err != nil && !isNew {
				return err
			}
			if isNew {
				old.Unit = nil
			}
			field, msg, village, town, err := checkUnit(tx, u, old.Unit)
			if err != nil {
				return err
			}
			if msg != "" {
				bad("units", i, field, "%s", msg)
				continue
			}
			if err := tx.PutUnit(u, village, town); err != nil {
				return err
			}
			resp.Units++
			if isNew || (old.VillageID == village && old.TownID == town) {
				continue // where it was
			}
			movedUnits = append(movedUnits, u.GetId())
			if old.VillageID != "" {
				movedFrom[old.VillageID] = true
			}
			if u.GetKind() == pb.UnitKind_UNIT_KIND_VILLAGE {
				grids, err := tx.SetGridsTown(u.GetId(), town)
				if err != nil {
					return err
				}
				movedUnits = append(movedUnits, grids...)
			}
		}
		for i, u := range req.GetUsers() {
			field, msg, village, town, err := checkUser(tx, u)
			if err != nil {
				return err
			}
			if msg != "" {
				bad("users", i, field, "%s", msg)
				continue
			}
			if err := tx.PutUser(u, village, town); err != nil {
				return err
			}
			resp.Users++
		}
		for i, h := range req.GetHouseholds() {
			field, msg, moved, err := x.s.putHousehold(tx, h, c.actor())
			if err != nil {
				return err
			}
			resp.RecordsMoved += int32(moved)
			if msg != "" {
				bad("households", i, field, "%s", msg)
				continue
			}
			resp.Households++
		}
		// What lies in a moved unit moves with it, without importing it
		// again: the people who work there, and the records filed there.
		// After the households of this import, which are already where
		// their grids now lie: each record is written once, straight to
		// its new place.
		if _, err := tx.RehomeUsers(movedUnits); err != nil {
			return err
		}
		for _, v := range slices.Sorted(maps.Keys(movedFrom)) {
			n, err := rehomeVillage(tx, v)
			if err != nil {
				return err
			}
			resp.RecordsMoved += int32(n)
		}
		for i, a := range req.GetAssignments() {
			field, msg, err := checkAssignment(tx, a.GetHouseholdId(), a.GetMemberId())
			if err != nil {
				return err
			}
			if msg != "" {
				bad("assignments", i, field, "%s", msg)
				continue
			}
			if _, err := tx.Link(a.GetHouseholdId(), a.GetMemberId(), adminWho, c.actor()); err != nil {
				return err
			}
			if err := x.s.setHouseholdMember(tx, a.GetHouseholdId(), a.GetMemberId()); err != nil {
				return err
			}
			resp.Assignments++
		}
		// Users, roles and units may have changed: once committed, and
		// before any device is poked, every device's next call reads its
		// caller again.
		tx.AfterCommit(func() { x.s.auth.clear() })
		return tx.Audit(c.actor(), store.AuditImportOrg, "org", auditDetail(map[string]any{
			"units": resp.Units, "users": resp.Users, "households": resp.Households,
			"assignments": resp.Assignments, "records_moved": resp.RecordsMoved, "rejected": len(resp.Errors)}))
	})
	if isDiskFull(err) {
		return nil, x.s.diskFull("import", "server out of disk space: nothing was stored; free space on the server's data directory and import again", err)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "import: %v; nothing was stored, retry", err)
	}
	return resp, nil
}

// checkText checks an imported name or phone number: one line of visible
// text (domain.CheckDisplayText) of at most max bytes.
func checkText(v string, max int, required bool) string {
	if required && v == "" {
		return "required"
	}
	var te *domain.TextError
	if errors.As(domain.CheckDisplayText("", v, max), &te) {
		return te.Reason
	}
	return ""
}

// checkUnit checks an imported unit against prev, the unit of that id as
// stored (nil if none), and returns where it lies.
func checkUnit(tx *store.Tx, u, prev *pb.Unit) (field, msg, village, town string, err error) {
	if !domain.IsOrgID(u.GetId()) {
		return "id", fmt.Sprintf("malformed id %q: want 1-64 of letters, digits and _:-", u.GetId()), "", "", nil
	}
	if m := checkText(u.GetName(), 200, true); m != "" {
		return "name", m, "", "", nil
	}
	// A unit keeps its kind: a village turned into a grid would leave its
	// grids without a village and its secretary with another's village.
	if prev != nil && prev.GetKind() != u.GetKind() {
		return "kind", fmt.Sprintf("%s is a %s, and a unit's kind cannot change: give the %s a new id", u.GetId(),
			unitKindName(prev.GetKind()), unitKindName(u.GetKind())), "", "", nil
	}
	want := map[pb.UnitKind]pb.UnitKind{pb.UnitKind_UNIT_KIND_VILLAGE: pb.UnitKind_UNIT_KIND_TOWN, pb.UnitKind_UNIT_KIND_GRID: pb.UnitKind_UNIT_KIND_VILLAGE}
	switch u.GetKind() {
	case pb.UnitKind_UNIT_KIND_TOWN:
		if u.GetParentId() != "" {
			return "parent_id", "a town has no parent", "", "", nil
		}
		return "", "", "", u.GetId(), nil
	case pb.UnitKind_UNIT_KIND_VILLAGE, pb.UnitKind_UNIT_KIND_GRID:
		p, err := tx.Unit(u.GetParentId())
		if errors.Is(err, store.ErrNotFound) || (err == nil && p.Unit.GetKind() != want[u.GetKind()]) {
			return "parent_id", fmt.Sprintf("unknown %s %q: a %s lies in a %s", unitKindName(want[u.GetKind()]), u.GetParentId(), unitKindName(u.GetKind()), unitKindName(want[u.GetKind()])), "", "", nil
		}
		if err != nil {
			return "", "", "", "", err
		}
		if u.GetKind() == pb.UnitKind_UNIT_KIND_VILLAGE {
			return "", "", u.GetId(), p.TownID, nil
		}
		return "", "", p.VillageID, p.TownID, nil
	}
	return "kind", "want town, village or grid", "", "", nil
}

func unitKindName(k pb.UnitKind) string {
	switch k {
	case pb.UnitKind_UNIT_KIND_TOWN:
		return "town"
	case pb.UnitKind_UNIT_KIND_VILLAGE:
		return "village"
	case pb.UnitKind_UNIT_KIND_GRID:
		return "grid"
	}
	return "unit"
}

func checkUser(tx *store.Tx, u *pb.User) (field, msg, village, town string, err error) {
	if !domain.IsOrgID(u.GetId()) {
		return "id", fmt.Sprintf("malformed id %q: want 1-64 of letters, digits and _:-", u.GetId()), "", "", nil
	}
	if m := checkText(u.GetName(), 200, true); m != "" {
		return "name", m, "", "", nil
	}
	if m := checkText(u.GetPhone(), 40, false); m != "" {
		return "phone", m, "", "", nil
	}
	want := []pb.UnitKind{pb.UnitKind_UNIT_KIND_VILLAGE}
	where := "village"
	switch u.GetRole() {
	case pb.Role_ROLE_MEMBER:
		want, where = []pb.UnitKind{pb.UnitKind_UNIT_KIND_GRID}, "grid"
	case pb.Role_ROLE_MEDIATOR:
	case pb.Role_ROLE_SECRETARY: // of a village, or of a whole town
		want, where = []pb.UnitKind{pb.UnitKind_UNIT_KIND_VILLAGE, pb.UnitKind_UNIT_KIND_TOWN}, "village or a town"
	case pb.Role_ROLE_HQ:
		return "", "", "", "", nil
	default:
		return "role", "want member, mediator, secretary or hq", "", "", nil
	}
	un, err := tx.Unit(u.GetUnitId())
	if errors.Is(err, store.ErrNotFound) || (err == nil && !slices.Contains(want, un.Unit.GetKind())) {
		return "unit_id", fmt.Sprintf("unknown %s %q: a %s works in a %s", where, u.GetUnitId(), domain.RoleName(u.GetRole()), where), "", "", nil
	}
	return "", "", un.VillageID, un.TownID, err
}

// putHousehold creates or updates an imported household's record; moved
// counts the household's visits it wrote again because the household now
// lies in another village or town.
func (s *Server) putHousehold(tx *store.Tx, h *pb.Household, actor string) (field, msg string, moved int, err error) {
	if !domain.IsOrgID(h.GetId()) {
		return "id", fmt.Sprintf("malformed id %q: want 1-64 of letters, digits and _:-", h.GetId()), 0, nil
	}
	grid, err := tx.Unit(h.GetGridId())
	if errors.Is(err, store.ErrNotFound) || (err == nil && grid.Unit.GetKind() != pb.UnitKind_UNIT_KIND_GRID) {
		return "grid_id", fmt.Sprintf("unknown grid %q", h.GetGridId()), 0, nil
	}
	if err != nil {
		return "", "", 0, err
	}
	values := map[string]string{"grid_id": h.GetGridId(), "head": h.GetHead(), "address": h.GetAddress(),
		"phone": h.GetPhone(), "members": h.GetMembers(), "tags": h.GetTags()}
	spec := domain.SpecOf(pb.Kind_KIND_HOUSEHOLD)
	for _, name := range []string{"head", "address", "phone", "members", "tags"} {
		if m := checkText(values[name], 0, false); m != "" {
			return name, m, 0, nil // names people read in tables and spreadsheets
		}
		if values[name] == "" {
			if spec.Field(name).Required {
				return name, "required", 0, nil
			}
			delete(values, name)
			continue
		}
		if r := spec.CheckValue(spec.Field(name), values[name]); r != nil {
			return name, r.Reason, 0, nil
		}
	}
	if m := checkText(h.GetRetired(), 400, false); m != "" {
		return "retired", m, 0, nil
	}
	cur, curMeta, err := tx.Record(h.GetId())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", "", 0, err
	}
	if cur != nil && cur.GetKind() != pb.Kind_KIND_HOUSEHOLD {
		return "id", fmt.Sprintf("%s is a %s record, not a household", h.GetId(), domain.KindName(cur.GetKind())), 0, nil
	}
	hlc := s.clock.Tick().String()
	next := &pb.Record{Id: h.GetId(), Kind: pb.Kind_KIND_HOUSEHOLD, Fields: map[string]*pb.FieldValue{}, AuthorId: "admin", OriginDeviceId: "admin"}
	if cur != nil {
		next = proto.Clone(cur).(*pb.Record)
	}
	// A household whose grid now lies in another village or town (the
	// household's grid changed, or the grid was moved) is written again
	// even with the same fields, so that it and its visits move.
	meta := store.RecordMeta{VillageID: grid.VillageID, TownID: grid.TownID}
	changed := cur == nil || curMeta != meta
	for k, v := range values {
		if next.Fields[k].GetValue() != v {
			next.Fields[k] = &pb.FieldValue{Value: v, Hlc: hlc}
			changed = true
		}
	}
	if retire(next, h.GetRetired(), hlc, actor, tx.Now().UnixMilli()) {
		changed = true
	}
	if !changed {
		return "", "", 0, nil
	}
	next.Buckets = bucketsFor(next, meta)
	if _, err := tx.PutRecord(cur, next, meta, adminWho); err != nil {
		return "", "", 0, err
	}
	if cur != nil && curMeta != meta {
		moved, err = refileVisits(tx, h.GetId(), meta)
		return "", "", moved, err
	}
	return "", "", 0, nil
}

// refileVisits moves a household's visits to where the household now lies
// (a visit lies where its household does: see placeNew), in the
// household's transaction. Each visit is written again with its new
// buckets and village and town, its fields untouched, as a change of its
// own: devices of the village (or town) it left get it as gone and purge
// it, those of the new one pull it, and HQ and the changelog see it moved.
// The household's bucket, and so its member, keep it.
// It returns how many visits it wrote.
func refileVisits(tx *store.Tx, householdID string, meta store.RecordMeta) (int, error) {
	visits, err := tx.HouseholdVisits(householdID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range visits {
		moved, err := refile(tx, v, meta)
		if err != nil {
			return n, err
		}
		if moved {
			n++
		}
	}
	return n, nil
}

// refile writes a record again where it now lies (meta), its fields
// untouched, as a change of its own, unless its buckets there are the ones
// it has; it says whether it wrote.
func refile(tx *store.Tx, cur *pb.Record, meta store.RecordMeta) (bool, error) {
	next := proto.Clone(cur).(*pb.Record)
	next.Buckets = bucketsFor(next, meta)
	if slices.Equal(next.GetBuckets(), cur.GetBuckets()) {
		return false, nil // already there
	}
	_, err := tx.PutRecord(cur, next, meta, adminWho)
	return err == nil, err
}

// rehomeVillage writes again, where they now lie, the records filed in a
// village after a unit moved: a household whose grid now lies in another
// village or town (with its visits: refileVisits), and the village's
// events and disputes when the village moved to another town. Records
// already in place are left alone. It returns how many it wrote.
func rehomeVillage(tx *store.Tx, villageID string) (int, error) {
	recs, metas, err := tx.VillageRecords(villageID)
	if err != nil {
		return 0, err
	}
	village, err := tx.Unit(villageID)
	if err != nil {
		return 0, fmt.Errorf("village %s: %w", villageID, err)
	}
	grids := map[string]store.RecordMeta{} // grid -> where it lies now
	n := 0
	// Households first: each takes its visits along, so visits are not
	// written from the copies read above.
	for i, r := range recs {
		if r.GetKind() != pb.Kind_KIND_HOUSEHOLD {
			continue
		}
		gid := r.GetFields()["grid_id"].GetValue()
		meta, ok := grids[gid]
		if !ok {
			grid, err := tx.Unit(gid)
			if err != nil {
				return n, fmt.Errorf("grid of household %s: %w", r.GetId(), err)
			}
			meta = store.RecordMeta{VillageID: grid.VillageID, TownID: grid.TownID}
			grids[gid] = meta
		}
		if meta == metas[i] {
			continue
		}
		moved, err := refile(tx, r, meta)
		if err != nil {
			return n, err
		}
		if moved {
			n++
		}
		visits, err := refileVisits(tx, r.GetId(), meta)
		n += visits
		if err != nil {
			return n, err
		}
	}
	// Events and disputes lie in their own village_id: this village.
	here := store.RecordMeta{VillageID: villageID, TownID: village.TownID}
	for i, r := range recs {
		if (r.GetKind() != pb.Kind_KIND_EVENT && r.GetKind() != pb.Kind_KIND_DISPUTE) || metas[i] == here {
			continue
		}
		moved, err := refile(tx, r, here)
		if err != nil {
			return n, err
		}
		if moved {
			n++
		}
	}
	return n, nil
}

func checkAssignment(tx *store.Tx, householdID, memberID string) (field, msg string, err error) {
	h, _, err := tx.Record(householdID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && h.GetKind() != pb.Kind_KIND_HOUSEHOLD) {
		return "household_id", fmt.Sprintf("unknown household %q", householdID), nil
	}
	if err != nil {
		return "", "", err
	}
	u, err := tx.User(memberID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.User.GetRole() != pb.Role_ROLE_MEMBER) {
		return "member_id", fmt.Sprintf("unknown member %q: households are linked to users with role member", memberID), nil
	}
	return "", "", err
}

// AssignHousehold links a household to a member, replacing the old link.
// The new member's devices get the household at their next sync; the old
// member's devices purge it.
func (x *adminService) AssignHousehold(ctx context.Context, req *pb.AssignHouseholdRequest) (*pb.AssignHouseholdResponse, error) {
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := x.s.regionOwnsAll("household_id", req.GetHouseholdId(), "member_id", req.GetMemberId()); err != nil {
		return nil, err
	}
	resp := &pb.AssignHouseholdResponse{}
	var field, msg string
	var denied error
	err = x.s.store.Write(ctx, func(tx *store.Tx) error {
		var err error
		if field, msg, err = checkAssignment(tx, req.GetHouseholdId(), req.GetMemberId()); err != nil || msg != "" {
			return err
		}
		if denied, err = c.mayAssign(tx, req.GetHouseholdId(), req.GetMemberId()); err != nil || denied != nil {
			return err
		}
		if resp.PreviousMemberId, err = tx.Link(req.GetHouseholdId(), req.GetMemberId(), adminWho, c.actor()); err != nil {
			return err
		}
		if err := x.s.setHouseholdMember(tx, req.GetHouseholdId(), req.GetMemberId()); err != nil {
			return err
		}
		// Links are not part of a cached caller (the scope reads them at
		// every call), but an admin change of the org clears the cache all
		// the same.
		tx.AfterCommit(func() { x.s.auth.clear() })
		return tx.Audit(c.actor(), store.AuditAssignHousehold, req.GetHouseholdId(), auditDetail(map[string]any{
			"member_id": req.GetMemberId(), "previous_member_id": resp.PreviousMemberId}))
	})
	switch {
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "assign: %v; retry", err)
	case denied != nil:
		return nil, denied
	case msg != "":
		return nil, status.Errorf(codes.InvalidArgument, "%s: %s", field, msg)
	}
	x.s.hub.poke([]string{domain.HouseholdBucket(req.GetHouseholdId())})
	return resp, nil
}

// Enrollment code lifetimes.
const (
	DefaultCodeTTL = 24 * time.Hour
	MaxCodeTTL     = 30 * 24 * time.Hour
)

// CreateEnrollmentCode issues a one-time code for a user; only its hash is
// kept.
func (x *adminService) CreateEnrollmentCode(ctx context.Context, req *pb.CreateEnrollmentCodeRequest) (*pb.CreateEnrollmentCodeResponse, error) {
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	if ttl == 0 {
		ttl = DefaultCodeTTL
	}
	if ttl < 0 || ttl > MaxCodeTTL {
		return nil, status.Errorf(codes.InvalidArgument, "ttl_seconds: %d, want 1 to %d (30 days)", req.GetTtlSeconds(), int64(MaxCodeTTL/time.Second))
	}
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := x.s.regionOwnsAll("user_id", req.GetUserId()); err != nil {
		return nil, err
	}
	code := domain.RandomToken(10) // 80 random bits, 16 characters
	resp := &pb.CreateEnrollmentCodeResponse{Code: code}
	var unknown bool
	var denied error
	var disabled int64
	err = x.s.store.Write(ctx, func(tx *store.Tx) error {
		u, err := tx.User(req.GetUserId())
		if errors.Is(err, store.ErrNotFound) {
			unknown = true
			return nil
		} else if err != nil {
			return err
		} else if denied = c.mayAct(fmt.Sprintf("user %q", req.GetUserId()), u.TownID); denied != nil {
			return nil
		}
		if disabled, err = tx.UserDisabled(req.GetUserId()); err != nil || disabled != 0 {
			return err
		}
		resp.ExpiresMs = tx.Now().Add(ttl).UnixMilli()
		if err := tx.PutEnrollCode(store.HashSecret(code), req.GetUserId(), resp.ExpiresMs); err != nil {
			return err
		}
		// Never the code: only a reference to it (CodeRef) that matches
		// the device's enroll_device entry.
		return tx.Audit(c.actor(), store.AuditCreateEnrollmentCode, req.GetUserId(), auditDetail(map[string]any{
			"expires_ms": resp.ExpiresMs, "code_ref": CodeRef(code)}))
	})
	switch {
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "create code: %v; retry", err)
	case unknown:
		return nil, status.Errorf(codes.NotFound, "user_id: unknown user %q: import the user first", req.GetUserId())
	case denied != nil:
		return nil, denied
	case disabled != 0:
		return nil, status.Error(codes.FailedPrecondition, disabledMessage(req.GetUserId()))
	}
	return resp, nil
}

// ListDevices pages through devices by id.
func (x *adminService) ListDevices(ctx context.Context, req *pb.ListDevicesRequest) (*pb.ListDevicesResponse, error) {
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	if size < 0 || size > 1000 {
		return nil, status.Errorf(codes.InvalidArgument, "page_size: %d, want 0 (default 100) to 1000", req.GetPageSize())
	}
	after, err := base64.RawURLEncoding.DecodeString(req.GetPageToken())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "page_token: not a token this server gave: start again without it")
	}
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	devs, err := x.listDevices(ctx, c, req.GetUserId(), string(after), size+1)
	if status.Code(err) == codes.PermissionDenied { // out of a town administrator's scope
		return nil, err
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "list devices: %v", err)
	}
	resp := &pb.ListDevicesResponse{Devices: devs}
	if len(devs) > size {
		resp.Devices = devs[:size]
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(devs[size-1].GetId()))
	}
	if err := x.s.addQuotaUsage(ctx, resp.Devices); err != nil {
		return nil, status.Errorf(codes.Unavailable, "list devices: %v", err)
	}
	return resp, nil
}

// RevokeDevice cuts a device off: its next contact is refused and tells it
// to wipe its local data.
func (x *adminService) RevokeDevice(ctx context.Context, req *pb.RevokeDeviceRequest) (*pb.RevokeDeviceResponse, error) {
	c, err := adminFrom(ctx)
	if err != nil {
		return nil, err
	}
	var denied error
	err = x.s.store.Write(ctx, func(tx *store.Tx) error {
		st, err := tx.DeviceState(req.GetDeviceId())
		if err != nil {
			return err
		}
		if denied, err = c.mayRevoke(tx, req.GetDeviceId()); err != nil || denied != nil {
			return err
		}
		if err := tx.RevokeDevice(req.GetDeviceId()); err != nil {
			return err
		}
		// The person's codes made before the revocation go with the
		// device: a second code issued with the first (or stolen with the
		// phone) must not enroll a replacement nobody asked for. A code
		// made after this works.
		var cancelled []string
		if st.RevokedMs == 0 {
			user, err := tx.DeviceUser(req.GetDeviceId())
			if err != nil {
				return err
			}
			if cancelled, err = tx.CancelEnrollCodes(user, ""); err != nil {
				return err
			}
		}
		// Once committed, before answering or poking: the device's very
		// next call reads the store and is refused.
		tx.AfterCommit(func() { x.s.auth.forgetDevice(req.GetDeviceId()) })
		return tx.Audit(c.actor(), store.AuditRevokeDevice, req.GetDeviceId(), auditDetail(map[string]any{
			"already_revoked": st.RevokedMs != 0, "cancelled_codes": strings.Join(cancelled, ",")}))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "device_id: unknown device %q (see fieldctl admin devices)", req.GetDeviceId())
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "revoke: %v; retry", err)
	case denied != nil:
		return nil, denied
	}
	x.s.hub.drop(req.GetDeviceId())
	return &pb.RevokeDeviceResponse{}, nil
}

// auditDetail is an audit entry's detail: JSON with sorted keys.
func auditDetail(v map[string]any) string {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: callers pass numbers, strings and booleans
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

// CodeRef names an enrollment code in the audit log without revealing it:
// the first 12 hex digits (48 bits) of its SHA-256, enough to tell codes
// apart and far too few to recover an 80-bit code from.
func CodeRef(code string) string { return store.HashSecret(NormalizeCode(code))[:12] }
