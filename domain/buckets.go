package domain

import (
	"slices"
	"sort"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Buckets group records for sync. A user's scope is a set of buckets and a
// device keeps one cursor per bucket. The grain keeps cursors few: a member
// holds one bucket per linked household (5-10), a mediator one per case, a
// secretary one for the village or the town, HQ one for everything.
//
//	h:<household>  the household, its visits and its needs
//	v:<village>    everything in the village
//	t:<town>       everything in the town
//	d:<dispute>    one dispute
//	u:<user>       a user's own events, the disputes they reported, the
//	               needs they raised without a household, the projects
//	               they lead (or made, when a branch leads them)
//	all            everything (HQ)
//
// Every record sits in its own bucket (h:, d: or u:; a reported dispute
// in its reporter's u: too) and in the v:, t: and
// all buckets of the village and town it lies in (RecordBuckets). A record
// is read by a user exactly when one of its buckets is in the user's scope
// (ScopeBuckets); the table of who reads what is in permissions.go.
const AllBucket = "all"

// HouseholdBucket names the bucket of a household and its visits.
func HouseholdBucket(id string) string { return "h:" + id }

// VillageBucket names the bucket of everything in a village.
func VillageBucket(id string) string { return "v:" + id }

// TownBucket names the bucket of everything in a town.
func TownBucket(id string) string { return "t:" + id }

// DisputeBucket names the bucket of one dispute.
func DisputeBucket(id string) string { return "d:" + id }

// UserBucket names the bucket of a user's own events.
func UserBucket(id string) string { return "u:" + id }

// RecordBuckets lists the buckets record r sits in, given the village and
// town it lies in (a visit lies where its household does; a dispute or an
// event in its village_id): its own bucket, then v:, t: and all.
func RecordBuckets(r *pb.Record, villageID, townID string) []string {
	var own string
	switch r.GetKind() {
	case pb.Kind_KIND_HOUSEHOLD:
		own = HouseholdBucket(r.GetId())
	case pb.Kind_KIND_VISIT:
		own = HouseholdBucket(r.GetFields()["household_id"].GetValue())
	case pb.Kind_KIND_DISPUTE:
		own = DisputeBucket(r.GetId())
	case pb.Kind_KIND_EVENT:
		own = UserBucket(r.GetAuthorId())
	case pb.Kind_KIND_NEED:
		// With the household, where its member and its visits are; else
		// with whoever raised it.
		if h := r.GetFields()["household_id"].GetValue(); h != "" {
			own = HouseholdBucket(h)
		} else {
			own = UserBucket(r.GetAuthorId())
		}
	case pb.Kind_KIND_PROJECT:
		// With its leader (a member leads it), else with whoever made it.
		if l := r.GetFields()["leader_id"].GetValue(); l != "" {
			own = UserBucket(l)
		} else {
			own = UserBucket(r.GetAuthorId())
		}
	}
	out := []string{own}
	if r.GetKind() == pb.Kind_KIND_DISPUTE {
		// A member's report stays with them, so they see what came of it.
		if by := r.GetFields()["reported_by"].GetValue(); by != "" {
			out = append(out, UserBucket(by))
		}
	}
	if villageID != "" {
		out = append(out, VillageBucket(villageID))
	}
	if townID != "" {
		out = append(out, TownBucket(townID))
	}
	return append(out, AllBucket)
}

// Reader is what the server knows of a user when it computes their scope:
// their role and unit from the org, the households linked to them and the
// cases naming them as a mediator.
type Reader struct {
	Role      pb.Role
	UserID    string
	VillageID string // a secretary of a village, a mediator's village, a member's grid's village
	TownID    string // a town secretary's town (VillageID empty)
	// Linked lists the households linked to a member.
	Linked []string
	// Mediates lists the disputes whose mediators name the user.
	Mediates []string
}

// ScopeBuckets lists the buckets a user may read, sorted: the read side of
// the permission table (see permissions.go).
func ScopeBuckets(u Reader) []string {
	var out []string
	switch u.Role {
	case pb.Role_ROLE_HQ:
		return []string{AllBucket}
	case pb.Role_ROLE_MEMBER:
		for _, h := range u.Linked {
			out = append(out, HouseholdBucket(h))
		}
	case pb.Role_ROLE_MEDIATOR:
		for _, d := range u.Mediates {
			out = append(out, DisputeBucket(d))
		}
	case pb.Role_ROLE_SECRETARY:
		switch {
		case u.VillageID != "":
			out = append(out, VillageBucket(u.VillageID))
		case u.TownID != "":
			out = append(out, TownBucket(u.TownID))
		}
	}
	if u.UserID != "" {
		out = append(out, UserBucket(u.UserID))
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// StreamName is the JetStream stream that carries the changelog.
const StreamName = "FIELDSYNC_CHANGES"

// SubjectPrefix starts every changelog subject.
const SubjectPrefix = "fieldsync.changes"

// ChangeSubject is the changelog subject of a change to a record of kind k
// in town (the record's town), as the database stores it:
// fieldsync.changes.<town>.<kind>. HQ filters by town with
// fieldsync.changes.<town>.> and by kind with fieldsync.changes.*.<kind>.
// A syncd run with a region publishes it under RegionSubject.
func ChangeSubject(town string, k pb.Kind) string {
	if town == "" {
		town = "none"
	}
	return SubjectPrefix + "." + town + "." + KindName(k)
}

// The changelog's kinds besides the records' (ChangeSubject): a unit, a
// person, a household link, a device's health and a refused event's chain
// link, each on fieldsync.changes.<town>.<kind>.
const (
	ChangeUnit    = "unit"
	ChangePerson  = "person"
	ChangeLink    = "link"
	ChangeDevice  = "device"
	ChangeRefused = "refused"
)

// OrgChangeSubject is the subject of a change of one of the org kinds
// above (ChangeUnit...) in town (a town id; "" is "none": HQ people,
// a device of someone who works in no town).
func OrgChangeSubject(town, kind string) string {
	if town == "" {
		town = "none"
	}
	return SubjectPrefix + "." + town + "." + kind
}

// Changelog message headers, beside Nats-Msg-Id (the change id).
const (
	HeaderSeq      = "Fieldsync-Seq"    // the change number
	HeaderRecordID = "Fieldsync-Record" // the record id
	// HeaderLineage is the server database's lineage when the stream was
	// (re)built: every message of the stream carries the same one, and a
	// consumer that meets a new one reloads from the start.
	HeaderLineage = "Fieldsync-Lineage"
)
