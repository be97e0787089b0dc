package server

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// applyOne applies one new mutation of the caller's device: validation, the
// permission table, scope, then the kind's merge rule. A rejection is a
// result, kept for retries, never an error: the device's number advances
// either way so that nothing queued behind it is blocked. An error means
// the store failed and the whole push is undone. Every result is kept with
// the mutation's content hash (store.MutationHash, taken before the merge
// touches m), applied ones too: a retry gets it again, and other content
// under the same number is told apart.
func (s *Server) applyOne(tx *store.Tx, c *caller, m *pb.Mutation, hash []byte) (*pb.MutationResult, error) {
	res := &pb.MutationResult{Seq: m.GetSeq(), RecordId: m.GetRecordId(), Status: pb.MutationStatus_MUTATION_STATUS_APPLIED}
	rej, conflict, err := s.applyChecked(tx, c, m)
	switch {
	case err != nil:
		return nil, err
	case rej != nil:
		res.Status, res.Code, res.Field, res.Reason = pb.MutationStatus_MUTATION_STATUS_REJECTED, rej.Code, rej.Field, rej.Reason
	case conflict:
		res.Status, res.Reason = pb.MutationStatus_MUTATION_STATUS_CONFLICT, "met a concurrent change: kept as a conflict on the record for a person to settle"
	}
	var link domain.ChainLink
	if m.GetKind() == pb.Kind_KIND_EVENT {
		// The device chains its next events on this one, refused or not:
		// a refused one stands in the stored chain (RefusedLinks), and the
		// last one is where a restored copy chains its unsent events
		// (ChainHead).
		link = domain.ChainLink{Prev: m.GetFields()["prev_hash"], Hash: m.GetFields()["hash"]}
	}
	return res, tx.PutResult(c.deviceID, res, link, hash)
}

func (s *Server) applyChecked(tx *store.Tx, c *caller, in *pb.Mutation) (*domain.Rejection, bool, error) {
	if r := domain.ValidateMutation(in); r != nil {
		return r, false, nil
	}
	if r := domain.CheckWrite(c.role, in); r != nil {
		return r, false, nil
	}
	// The clock's node is the device the credential names, and a clock far
	// ahead of the server's is cut back so that it cannot win every merge.
	m := proto.Clone(in).(*pb.Mutation)
	h, _ := domain.ParseHLC(m.GetHlc()) // validated above
	h.Node = c.deviceID
	m.Hlc = domain.ClampFuture(h, tx.Now()).String()

	cur, meta, err := tx.Record(m.GetRecordId())
	if errors.Is(err, store.ErrNotFound) {
		cur = nil
	} else if err != nil {
		return nil, false, err
	}
	if cur != nil {
		if r, err := s.checkRecordScope(tx, c, cur, meta, m.GetOp()); r != nil || err != nil {
			return r, false, err
		}
		if v, ok := m.GetFields()["member_id"]; ok && cur.GetKind() == pb.Kind_KIND_HOUSEHOLD && cur.GetVoid() == nil &&
			(m.GetOp() == pb.Op_OP_UPDATE || m.GetOp() == pb.Op_OP_SETTLE) {
			if r, err := checkHouseholdMember(tx, v, meta); r != nil || err != nil {
				return r, false, err
			}
		}
		if v, ok := m.GetFields()["households"]; ok && cur.GetKind() == pb.Kind_KIND_PROJECT && cur.GetVoid() == nil {
			if r, err := checkAddedHouseholds(tx, cur, v, meta); r != nil || err != nil {
				return r, false, err
			}
		}
	} else if m.GetOp() == pb.Op_OP_CREATE {
		var r *domain.Rejection
		if meta, r, err = s.placeNew(tx, c, m); r != nil || err != nil {
			return r, false, err
		}
	}
	var lookupErr error
	next, conflict, rej := domain.Apply(cur, m, domain.Actor{UserID: c.userID, DeviceID: c.deviceID, Role: c.role, Now: tx.Now(), UserOf: func(dev string) string {
		return authorOf(tx, dev, &lookupErr)
	}})
	if lookupErr != nil {
		return nil, false, lookupErr
	}
	if rej != nil {
		return rej, false, nil
	}
	report := m.GetKind() == pb.Kind_KIND_DISPUTE && cur == nil && c.role == pb.Role_ROLE_MEMBER
	if report {
		if err := fillReport(tx, next, m.GetHlc()); err != nil {
			return nil, false, err
		}
	}
	if _, setsMediators := m.GetFields()["mediators"]; !report && m.GetKind() == pb.Kind_KIND_DISPUTE && (cur == nil || setsMediators) {
		if r, err := checkMediators(tx, next); r != nil || err != nil {
			return r, false, err
		}
	}
	next.Buckets = bucketsFor(next, meta)
	if cur != nil && proto.Equal(cur, next) {
		return nil, false, nil // a repeat with no effect: no change to record
	}
	if _, err := tx.PutRecord(cur, next, meta, store.ChangeInfo{DeviceID: c.deviceID, UserID: c.userID}); err != nil {
		return nil, false, err
	}
	if m.GetKind() == pb.Kind_KIND_HOUSEHOLD {
		if _, ok := m.GetFields()["member_id"]; ok {
			if err := s.followMemberID(tx, c, next); err != nil {
				return nil, false, err
			}
		}
	}
	if m.GetKind() == pb.Kind_KIND_DISPUTE {
		if err := tx.SetMediators(next.GetId(), domain.SplitList(next.GetFields()["mediators"].GetValue())); err != nil {
			return nil, false, err
		}
	}
	return nil, conflict, nil
}

// authorOf names the user of the device that wrote a value, for the author
// of a conflict: the administrators' clock node is "admin" (see
// Server.clock), a device unknown here has no author. A failed read is
// kept in *errp, and undoes the push.
func authorOf(tx *store.Tx, dev string, errp *error) string {
	if dev == "admin" {
		return "admin"
	}
	user, err := tx.DeviceUser(dev)
	if err != nil && !errors.Is(err, store.ErrNotFound) && *errp == nil {
		*errp = err
	}
	return user
}

// checkRecordScope says whether the caller may write an existing record
// with op, by the last column of the permission table
// (domain/permissions.go): a member only their linked households and the
// visits to them (authorship is the merge rule's to check for an update,
// this one's for a void or settle), a secretary only their village's or
// town's households, visits (to void) and events (to void), a mediator
// only the cases naming them; needs and projects as checkScopeNewKinds
// says. Settling a field takes the same scope as updating it; attaching a
// file (OP_ATTACH) the same as a note on the record (a member adds a photo
// to a need of a household linked to them, as a note; the merge rule lets
// only a visit's author add to it). It is decided
// from the org as it is at this commit, whatever the device believed when
// it queued the write.
func (s *Server) checkRecordScope(tx *store.Tx, c *caller, cur *pb.Record, meta store.RecordMeta, op pb.Op) (*domain.Rejection, error) {
	kind := domain.KindName(cur.GetKind())
	deny := func(format string, args ...any) *domain.Rejection {
		r := &domain.Rejection{Code: domain.CodePermissionDenied, Field: kind}
		r.Reason = fmt.Sprintf(format, args...)
		return r
	}
	switch cur.GetKind() {
	case pb.Kind_KIND_HOUSEHOLD:
		switch c.role {
		case pb.Role_ROLE_MEMBER:
			linked, err := tx.LinkedMember(cur.GetId())
			if err != nil {
				return nil, err
			}
			if linked != c.userID {
				return deny("household %s is not linked to you", cur.GetId()), nil
			}
		case pb.Role_ROLE_SECRETARY:
			if !secretaryCovers(c, meta) {
				return deny("household %s is not in your %s", cur.GetId(), secretaryUnit(c)), nil
			}
		default:
			return deny("a %s does not write households", domain.RoleName(c.role)), nil
		}
	case pb.Kind_KIND_VISIT:
		if c.role == pb.Role_ROLE_SECRETARY { // the table lets a secretary only void
			if !secretaryCovers(c, meta) {
				return deny("visit %s is not in your %s", cur.GetId(), secretaryUnit(c)), nil
			}
			return nil, nil
		}
		hid := cur.GetFields()["household_id"].GetValue()
		linked, err := tx.LinkedMember(hid)
		if err != nil {
			return nil, err
		}
		if c.role != pb.Role_ROLE_MEMBER || linked != c.userID {
			return deny("household %s of this visit is not linked to you", hid), nil
		}
		if (op == pb.Op_OP_VOID || op == pb.Op_OP_SETTLE) && cur.GetAuthorId() != c.userID {
			return deny("only its author (%s) or the village secretary voids or settles visit %s", cur.GetAuthorId(), cur.GetId()), nil
		}
	case pb.Kind_KIND_DISPUTE:
		if !contains(domain.SplitList(cur.GetFields()["mediators"].GetValue()), c.userID) {
			return deny("you are not a mediator of dispute %s", cur.GetId()), nil
		}
	case pb.Kind_KIND_EVENT:
		if op != pb.Op_OP_VOID {
			return deny("events are append-only"), nil
		}
		return checkScopeNewKinds(tx, c, cur, meta, op)
	case pb.Kind_KIND_NEED, pb.Kind_KIND_PROJECT:
		return checkScopeNewKinds(tx, c, cur, meta, op)
	}
	return nil, nil
}

// secretaryCovers says whether a record lying at meta is in a secretary's
// unit: their village, or for a town secretary (no village) their town.
func secretaryCovers(c *caller, meta store.RecordMeta) bool {
	if c.villageID != "" {
		return meta.VillageID == c.villageID
	}
	return c.townID != "" && meta.TownID == c.townID
}

func secretaryUnit(c *caller) string {
	if c.villageID == "" && c.townID != "" {
		return "town (" + c.townID + ")"
	}
	return "village (" + c.villageID + ")"
}

// placeNew finds where a new record lies (its village and town) and checks
// that the caller may create it there.
func (s *Server) placeNew(tx *store.Tx, c *caller, m *pb.Mutation) (store.RecordMeta, *domain.Rejection, error) {
	kind := domain.KindName(m.GetKind())
	f := m.GetFields()
	switch m.GetKind() {
	case pb.Kind_KIND_VISIT:
		hid := f["household_id"]
		meta, linked, err := tx.Household(hid)
		if errors.Is(err, store.ErrNotFound) {
			return meta, &domain.Rejection{Code: domain.CodeNotFound, Field: "visit.household_id", Reason: "unknown household " + hid}, nil
		}
		if err != nil {
			return meta, nil, err
		}
		if r := domain.CheckVisitLink(c.userID, hid, linked); r != nil {
			return meta, r, nil
		}
		r, err := notRetired(tx, "visit.household_id", hid)
		return meta, r, err
	case pb.Kind_KIND_DISPUTE, pb.Kind_KIND_EVENT, pb.Kind_KIND_NEED, pb.Kind_KIND_PROJECT:
		return placeVillageRecord(tx, c, m)
	}
	return store.RecordMeta{}, &domain.Rejection{Code: domain.CodePermissionDenied, Field: kind, Reason: "devices do not create " + kind + " records"}, nil
}

// checkMediators checks a dispute's mediators as a create or a change of
// them would leave them: at least one, each a user with role mediator. A
// case nobody mediates could never be written to again. (Other writes do
// not check them again, so that a mediator's note is not refused because
// a co-mediator has since changed role.)
func checkMediators(tx *store.Tx, d *pb.Record) (*domain.Rejection, error) {
	list := d.GetFields()["mediators"].GetValue()
	if len(domain.SplitList(list)) == 0 {
		return &domain.Rejection{Code: domain.CodeInvalidField, Field: "dispute.mediators",
			Reason: "must name at least one mediator: a case nobody mediates could not be written to again"}, nil
	}
	return checkUsers(tx, "dispute.mediators", list, pb.Role_ROLE_MEDIATOR)
}

// checkUsers checks that every id in a list is a user with the given role.
func checkUsers(tx *store.Tx, field, list string, role pb.Role) (*domain.Rejection, error) {
	for _, id := range domain.SplitList(list) {
		u, err := tx.User(id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && u.User.GetRole() != role) {
			return &domain.Rejection{Code: domain.CodeInvalidField, Field: field, Reason: "unknown " + domain.RoleName(role) + " " + id}, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// bucketsFor lists the buckets a record sits in (see domain/buckets.go).
func bucketsFor(r *pb.Record, meta store.RecordMeta) []string {
	return domain.RecordBuckets(r, meta.VillageID, meta.TownID)
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
