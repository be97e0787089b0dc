package domain

import pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"

// Buckets group records for sync. A user's scope is a set of buckets and a
// device keeps one cursor per bucket. The grain keeps cursors few: a member
// holds one bucket per linked household (5-10), a mediator one per case, a
// secretary one for the village, HQ one for everything.
//
//	h:<household>  the household and its visits
//	v:<village>    everything in the village
//	d:<dispute>    one dispute
//	u:<user>       a user's own events
//	all            everything (HQ)
const AllBucket = "all"

// HouseholdBucket names the bucket of a household and its visits.
func HouseholdBucket(id string) string { return "h:" + id }

// VillageBucket names the bucket of everything in a village.
func VillageBucket(id string) string { return "v:" + id }

// DisputeBucket names the bucket of one dispute.
func DisputeBucket(id string) string { return "d:" + id }

// UserBucket names the bucket of a user's own events.
func UserBucket(id string) string { return "u:" + id }

// StreamName is the JetStream stream that carries the changelog.
const StreamName = "FIELDSYNC_CHANGES"

// SubjectPrefix starts every changelog subject.
const SubjectPrefix = "fieldsync.changes"

// ChangeSubject is the changelog subject of a change to a record of kind k
// in region (the record's town): fieldsync.changes.<region>.<kind>. HQ
// filters by region with fieldsync.changes.<town>.> and by kind with
// fieldsync.changes.*.<kind>.
func ChangeSubject(region string, k pb.Kind) string {
	if region == "" {
		region = "none"
	}
	return SubjectPrefix + "." + region + "." + KindName(k)
}

// Changelog message headers, beside Nats-Msg-Id (the change id).
const (
	HeaderSeq      = "Fieldsync-Seq"    // the change number
	HeaderRecordID = "Fieldsync-Record" // the record id
)
