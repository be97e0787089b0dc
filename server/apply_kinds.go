package server

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// The server's side of needs, projects, voids, settles and the
// secretary's member_id (domain/permissions.go is the table): where a new
// record may lie, which existing records a writer reaches, what the
// server fills in, and the links table following household.member_id.

// placeInVillage checks that a new record filed in village vid (a
// dispute, event, need or project) lies in the caller's unit: their
// village, or any village of a town secretary's town.
func placeInVillage(tx *store.Tx, c *caller, kind, vid string) (store.RecordMeta, *domain.Rejection, error) {
	u, err := tx.Unit(vid)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Unit.GetKind() != pb.UnitKind_UNIT_KIND_VILLAGE) {
		return store.RecordMeta{}, &domain.Rejection{Code: domain.CodeNotFound, Field: kind + ".village_id", Reason: "unknown village " + vid}, nil
	}
	if err != nil {
		return store.RecordMeta{}, nil, err
	}
	meta := store.RecordMeta{VillageID: vid, TownID: u.TownID}
	switch {
	case c.villageID != "":
		if vid != c.villageID {
			return meta, &domain.Rejection{Code: domain.CodePermissionDenied, Field: kind + ".village_id",
				Reason: "village " + vid + " is not yours (" + c.villageID + ")"}, nil
		}
	case c.role == pb.Role_ROLE_SECRETARY && c.townID != "":
		// A town secretary files records in any village of the town.
		if u.TownID != c.townID {
			return meta, &domain.Rejection{Code: domain.CodePermissionDenied, Field: kind + ".village_id",
				Reason: "village " + vid + " is not in your town (" + c.townID + ")"}, nil
		}
	default:
		return meta, &domain.Rejection{Code: domain.CodePermissionDenied, Field: kind + ".village_id",
			Reason: "you work in no village: ask an administrator to set your unit"}, nil
	}
	return meta, nil, nil
}

// householdIn checks a household a new record names (field is the
// record's field path): it exists, lies in village vid and is not
// retired. It returns the member it is linked to.
func householdIn(tx *store.Tx, field, hid, vid string) (string, *domain.Rejection, error) {
	meta, linked, err := tx.Household(hid)
	if errors.Is(err, store.ErrNotFound) {
		return "", &domain.Rejection{Code: domain.CodeNotFound, Field: field, Reason: "unknown household " + hid}, nil
	}
	if err != nil {
		return "", nil, err
	}
	if vid != "" && meta.VillageID != vid {
		return "", &domain.Rejection{Code: domain.CodeInvalidField, Field: field,
			Reason: fmt.Sprintf("household %s lies in village %s, not in %s: name a household of the record's village", hid, meta.VillageID, vid)}, nil
	}
	if r, err := notRetired(tx, field, hid); r != nil || err != nil {
		return "", r, err
	}
	return linked, nil, nil
}

// notRetired refuses a new record naming a household that left (retired
// through import, i.e. voided).
func notRetired(tx *store.Tx, field, hid string) (*domain.Rejection, error) {
	h, _, err := tx.Record(hid)
	if err != nil {
		return nil, err
	}
	if v := h.GetVoid(); v != nil {
		return &domain.Rejection{Code: domain.CodeVoided, Field: field,
			Reason: fmt.Sprintf("household %s was retired (%s): it takes no new records", hid, v.GetReason())}, nil
	}
	return nil, nil
}

// visitOf checks a visit a new record names: an existing visit of
// household hid.
func visitOf(tx *store.Tx, field, visitID, hid string) (*domain.Rejection, error) {
	if hid == "" {
		return &domain.Rejection{Code: domain.CodeInvalidField, Field: field,
			Reason: "a record made from a visit names the visit's household too (household_id)"}, nil
	}
	v, _, err := tx.Record(visitID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && v.GetKind() != pb.Kind_KIND_VISIT) {
		return &domain.Rejection{Code: domain.CodeNotFound, Field: field, Reason: "unknown visit " + visitID}, nil
	}
	if err != nil {
		return nil, err
	}
	if got := v.GetFields()["household_id"].GetValue(); got != hid {
		return &domain.Rejection{Code: domain.CodeInvalidField, Field: field,
			Reason: fmt.Sprintf("visit %s is a visit to household %s, not to %s", visitID, got, hid)}, nil
	}
	return nil, nil
}

// placeVillageRecord places a new dispute, event, need or project: in the
// caller's unit, and what it names (household, visit, leader, households)
// in the same village.
func placeVillageRecord(tx *store.Tx, c *caller, m *pb.Mutation) (store.RecordMeta, *domain.Rejection, error) {
	kind := domain.KindName(m.GetKind())
	f := m.GetFields()
	vid := f["village_id"]
	meta, r, err := placeInVillage(tx, c, kind, vid)
	if r != nil || err != nil {
		return meta, r, err
	}
	switch m.GetKind() {
	case pb.Kind_KIND_NEED, pb.Kind_KIND_DISPUTE:
		hid := f["household_id"]
		if hid != "" {
			linked, r, err := householdIn(tx, kind+".household_id", hid, vid)
			if r != nil || err != nil {
				return meta, r, err
			}
			if m.GetKind() == pb.Kind_KIND_NEED && c.role == pb.Role_ROLE_MEMBER {
				// As a visit: a member raises needs of the households
				// linked to them.
				if r := domain.CheckVisitLink(c.userID, hid, linked); r != nil {
					r.Field = "need.household_id"
					return meta, r, nil
				}
			}
		}
		if v := f["visit_id"]; v != "" {
			if r, err := visitOf(tx, kind+".visit_id", v, hid); r != nil || err != nil {
				return meta, r, err
			}
		}
	case pb.Kind_KIND_PROJECT:
		if l := f["leader_id"]; l != "" {
			u, err := tx.User(l)
			if errors.Is(err, store.ErrNotFound) || (err == nil && (u.User.GetRole() != pb.Role_ROLE_MEMBER || u.VillageID != vid)) {
				return meta, &domain.Rejection{Code: domain.CodeInvalidField, Field: "project.leader_id",
					Reason: fmt.Sprintf("%s is not a member working in village %s: a project is led by one of the village's members", l, vid)}, nil
			}
			if err != nil {
				return meta, nil, err
			}
		}
		if r, err := checkProjectHouseholds(tx, f["households"], vid); r != nil || err != nil {
			return meta, r, err
		}
	}
	return meta, nil, nil
}

// checkProjectHouseholds checks a project's beneficiary households: each
// a household of the project's village, not retired.
func checkProjectHouseholds(tx *store.Tx, list, vid string) (*domain.Rejection, error) {
	for _, hid := range domain.SplitList(list) {
		if _, r, err := householdIn(tx, "project.households", hid, vid); r != nil || err != nil {
			return r, err
		}
	}
	return nil, nil
}

// checkScopeNewKinds is checkRecordScope for needs and projects, and for
// voids of visits and events (op is the mutation's).
func checkScopeNewKinds(tx *store.Tx, c *caller, cur *pb.Record, meta store.RecordMeta, op pb.Op) (*domain.Rejection, error) {
	kind := domain.KindName(cur.GetKind())
	deny := func(format string, args ...any) *domain.Rejection {
		return &domain.Rejection{Code: domain.CodePermissionDenied, Field: kind, Reason: fmt.Sprintf(format, args...)}
	}
	if c.role == pb.Role_ROLE_SECRETARY {
		if !secretaryCovers(c, meta) {
			return deny("%s %s is not in your %s", kind, cur.GetId(), secretaryUnit(c)), nil
		}
		return nil, nil
	}
	own := cur.GetAuthorId() == c.userID
	if hid := cur.GetFields()["household_id"].GetValue(); c.role == pb.Role_ROLE_MEMBER && cur.GetKind() == pb.Kind_KIND_NEED && hid != "" {
		linked, err := tx.LinkedMember(hid)
		if err != nil {
			return nil, err
		}
		if linked != c.userID {
			return deny("household %s of need %s is not linked to you", hid, cur.GetId()), nil
		}
	}
	if op == pb.Op_OP_VOID {
		if !own {
			return deny("only its author (%s) or the village secretary voids %s %s", cur.GetAuthorId(), kind, cur.GetId()), nil
		}
		return nil, nil
	}
	if c.role != pb.Role_ROLE_MEMBER {
		return deny("a %s does not write %s records", domain.RoleName(c.role), kind), nil
	}
	switch cur.GetKind() {
	case pb.Kind_KIND_NEED:
		if own {
			return nil, nil
		}
		hid := cur.GetFields()["household_id"].GetValue()
		if (op == pb.Op_OP_APPEND || op == pb.Op_OP_ATTACH) && hid != "" {
			// A note, or a photo, on a need of a household they visit.
			linked, err := tx.LinkedMember(hid)
			if err != nil {
				return nil, err
			}
			if linked == c.userID {
				return nil, nil
			}
			return deny("need %s is not yours and its household %s is not linked to you", cur.GetId(), hid), nil
		}
		return deny("need %s was raised by %s: a member changes only the needs they raised", cur.GetId(), cur.GetAuthorId()), nil
	case pb.Kind_KIND_PROJECT:
		if own || cur.GetFields()["leader_id"].GetValue() == c.userID {
			return nil, nil
		}
		return deny("project %s is not led by you", cur.GetId()), nil
	}
	return deny("a member does not write %s records", kind), nil
}

// checkHouseholdMember checks a secretary's new household.member_id (an
// update or a settle): "" unlinks; else a member working in a grid of the
// household's village.
func checkHouseholdMember(tx *store.Tx, member string, meta store.RecordMeta) (*domain.Rejection, error) {
	if member == "" {
		return nil, nil
	}
	u, err := tx.User(member)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.User.GetRole() != pb.Role_ROLE_MEMBER) {
		return &domain.Rejection{Code: domain.CodeInvalidField, Field: "household.member_id",
			Reason: fmt.Sprintf("unknown member %s: households are linked to users with role member (\"\" unlinks)", member)}, nil
	}
	if err != nil {
		return nil, err
	}
	if u.VillageID != meta.VillageID {
		return &domain.Rejection{Code: domain.CodeInvalidField, Field: "household.member_id",
			Reason: fmt.Sprintf("member %s works in village %s, not in the household's village %s: link a member of the same village", member, u.VillageID, meta.VillageID)}, nil
	}
	return nil, nil
}

// followMemberID makes the links table follow a household's member_id as
// the merge left it (a write that lost leaves the link as it was), audits
// the change with the secretary's name, and clears the callers cache as
// an administrator's assignment does. The devices of both members are
// woken by Tx.Link/Unlink; the household's bucket by the record's write.
func (s *Server) followMemberID(tx *store.Tx, c *caller, next *pb.Record) error {
	fv, ok := next.GetFields()["member_id"]
	if !ok {
		return nil
	}
	want := fv.GetValue()
	prev, err := tx.LinkedMember(next.GetId())
	if err != nil || prev == want {
		return err
	}
	who := store.ChangeInfo{DeviceID: c.deviceID, UserID: c.userID}
	if want == "" {
		_, err = tx.Unlink(next.GetId(), who, secretaryActor(c.userID))
	} else {
		_, err = tx.Link(next.GetId(), want, who, secretaryActor(c.userID))
	}
	if err != nil {
		return err
	}
	tx.AfterCommit(func() { s.auth.clear() })
	name := ""
	if u, err := tx.User(c.userID); err == nil {
		name = u.User.GetName()
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return tx.Audit(secretaryActor(c.userID), store.AuditAssignHousehold, next.GetId(), auditDetail(map[string]any{
		"member_id": want, "previous_member_id": prev, "by": name, "device_id": c.deviceID}))
}

// secretaryActor names a secretary in the audit log.
func secretaryActor(userID string) string { return "secretary:" + userID }

// fillReport gives a member's new dispute (a report) the village's
// mediators: it lands in their queues. None in the village leaves it
// empty; the village secretary still reads it in v:.
func fillReport(tx *store.Tx, next *pb.Record, hlc string) error {
	ids, err := tx.VillageUsers(next.GetFields()["village_id"].GetValue(), pb.Role_ROLE_MEDIATOR)
	if err != nil {
		return err
	}
	next.Fields["mediators"] = &pb.FieldValue{Value: strings.Join(ids, ","), Hlc: hlc}
	return nil
}

// setHouseholdMember writes an administrator's link into the household
// record's member_id (a change, so devices and the changelog see it), so
// that the record and the links table agree.
func (s *Server) setHouseholdMember(tx *store.Tx, hid, member string) error {
	cur, meta, err := tx.Record(hid)
	if err != nil {
		return err
	}
	if fv, ok := cur.GetFields()["member_id"]; ok && fv.GetValue() == member {
		return nil
	}
	next := proto.Clone(cur).(*pb.Record)
	if next.Fields == nil {
		next.Fields = map[string]*pb.FieldValue{}
	}
	next.Fields["member_id"] = &pb.FieldValue{Value: member, Hlc: s.clock.Tick().String()}
	next.Buckets = bucketsFor(next, meta)
	_, err = tx.PutRecord(cur, next, meta, adminWho)
	return err
}

// retire voids an imported household given a retirement reason: it
// leaves as a correction does (domain.Apply then refuses its changes, and
// placeNew new records naming it). It stays retired when a later import
// leaves the reason empty; it reports whether it changed the record.
func retire(h *pb.Record, reason, hlc, actor string, atMs int64) bool {
	if reason == "" || h.GetVoid() != nil {
		return false
	}
	h.Void = &pb.Void{Reason: reason, Hlc: hlc, AuthorId: actor, AtMs: atMs}
	return true
}

// checkAddedHouseholds checks the households a change of a project's
// beneficiaries adds (those already listed stay, retired or not): each a
// household of the project's village, not retired.
func checkAddedHouseholds(tx *store.Tx, cur *pb.Record, list string, meta store.RecordMeta) (*domain.Rejection, error) {
	had := domain.SplitList(cur.GetFields()["households"].GetValue())
	for _, hid := range domain.SplitList(list) {
		if contains(had, hid) {
			continue
		}
		if _, r, err := householdIn(tx, "project.households", hid, meta.VillageID); r != nil || err != nil {
			return r, err
		}
	}
	return nil, nil
}
