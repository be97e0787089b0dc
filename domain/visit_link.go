package domain

// CheckVisitLink is the scope rule for a new visit (permissions.go, last
// column): its household must be linked to its author. linkedMember is the
// member the household is linked to ("" if none or unknown). The server
// checks it against the org at commit; a device checks it before queueing,
// against the links its last sync brought, so that a visit it already
// knows will be refused is not accepted offline.
func CheckVisitLink(authorID, householdID, linkedMember string) *Rejection {
	if linkedMember != authorID {
		return reject(CodePermissionDenied, "visit.household_id", "household %s is not linked to you", householdID)
	}
	return nil
}
