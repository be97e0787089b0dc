package domain

import (
	"fmt"
	"strings"
)

// Regions (issue 16). A province runs one syncd per region (a county, or a
// set of towns), each with its own SQLite database, all publishing to one
// NATS JetStream cluster (or to HQ's cluster over leaf nodes). The rules
// that keep them apart live here, so that syncd, fieldctl and HQ agree:
//
//   - A region has a name: 1-32 of a-z and 0-9, starting with a letter
//     (CheckRegion). It is a NATS subject token and, upper-cased, part of a
//     stream name.
//   - Each region publishes its own changelog stream, RegionStream(r)
//     (FIELDSYNC_CHANGES_<R>), on subjects under RegionSubjectPrefix(r)
//     (fieldsync.changes.<r>.<town>.<kind>), every message with the header
//     HeaderRegion. A syncd without a region keeps FIELDSYNC_CHANGES and
//     fieldsync.changes.<town>.<kind>: it must not share a JetStream
//     account with regions (the subjects overlap, which JetStream refuses).
//   - HQ reads HQStreamName (FIELDSYNC_HQ), a stream with no subjects of
//     its own that sources every region's stream; JetStream keeps each
//     source's order.
//   - Ids never collide across regions: records made on phones are
//     UUIDv7; every id an administrator gives (unit, person, household) in
//     region r starts with RegionIDPrefix(r) ("r-"), which r's syncd
//     checks at import (RegionOwns) and fieldctl routes by (RegionOfID).
//     Change ids are <lineage>-<n> with a random lineage per database.
//     Change numbers and record versions count per region: a consumer
//     orders and compares them within one region (HeaderRegion), and a
//     record lives in exactly one region.

// HQStreamName is HQ's stream: it sources every region's changelog.
const HQStreamName = "FIELDSYNC_HQ"

// HeaderRegion names the region whose database committed the change; absent
// on a syncd run without a region.
const HeaderRegion = "Fieldsync-Region"

// maxRegion is the longest region name.
const maxRegion = 32

// CheckRegion says what is wrong with a region name ("" is no region, and
// fine).
func CheckRegion(r string) error {
	if r == "" {
		return nil
	}
	if len(r) > maxRegion {
		return fmt.Errorf("region %q: at most %d characters", r, maxRegion)
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return fmt.Errorf("region %q: want lower-case letters a-z and digits 0-9, starting with a letter (e.g. xiaonan, yunmeng2)", r)
		}
	}
	return nil
}

// RegionStream is the changelog stream of region r: FIELDSYNC_CHANGES for
// no region, else FIELDSYNC_CHANGES_<R> (r upper-cased).
func RegionStream(r string) string {
	if r == "" {
		return StreamName
	}
	return StreamName + "_" + strings.ToUpper(r)
}

// RegionSubjectPrefix starts every changelog subject region r publishes:
// fieldsync.changes for no region, else fieldsync.changes.<r>. The stream's
// subjects are RegionSubjectPrefix(r) + ".>".
func RegionSubjectPrefix(r string) string {
	if r == "" {
		return SubjectPrefix
	}
	return SubjectPrefix + "." + r
}

// RegionSubject is the subject under which region r publishes a change
// the database stored with subject stored (fieldsync.changes.<town>.<kind>,
// ChangeSubject): fieldsync.changes.<r>.<town>.<kind>. With no region, or
// for a subject that is not a changelog subject, it is stored unchanged.
func RegionSubject(r, stored string) string {
	if r == "" || !strings.HasPrefix(stored, SubjectPrefix+".") {
		return stored
	}
	return RegionSubjectPrefix(r) + stored[len(SubjectPrefix):]
}

// RegionIDPrefix is what every administrator-given id of region r starts
// with: "r-" ("" for no region).
func RegionIDPrefix(r string) string {
	if r == "" {
		return ""
	}
	return r + "-"
}

// RegionOwns reports whether region r may hold the administrator-given id
// (a unit, person or household): always with no region, else when the id
// starts with "r-" and has something after it.
func RegionOwns(r, id string) bool {
	if r == "" {
		return true
	}
	p := RegionIDPrefix(r)
	return len(id) > len(p) && strings.HasPrefix(id, p)
}

// RegionOfID is the region an administrator-given id names: the part
// before its first "-" when that is a region name, else "".
func RegionOfID(id string) string {
	i := strings.IndexByte(id, '-')
	if i <= 0 || i == len(id)-1 || CheckRegion(id[:i]) != nil {
		return ""
	}
	return id[:i]
}

// RegionOwnsError is the error of an id that is not region r's.
func RegionOwnsError(r, field, id string) error {
	return fmt.Errorf("%s %q: this server is region %q and holds only ids that start with %q (each region imports its own units, people and households; route a province's files with fieldctl admin import -regions)", field, id, r, RegionIDPrefix(r))
}
