package domain

import (
	"sort"
	"strings"
)

// Dispute statuses. A case opens, goes to mediation, ends in an agreement
// or a failure (a failure may be referred to the courts or the police), and
// is closed; it may be withdrawn before an outcome.
var DisputeStatuses = []string{"open", "mediating", "agreed", "failed", "referred", "withdrawn", "closed"}

// transitions is the dispute state machine: status -> statuses it may move to.
var transitions = map[string][]string{
	"open":      {"mediating", "withdrawn"},
	"mediating": {"agreed", "failed", "withdrawn"},
	"agreed":    {"closed"},
	"failed":    {"referred", "closed"},
	"referred":  {"closed"},
	"withdrawn": {"closed"},
	"closed":    nil,
}

// AllowedFrom lists the statuses a dispute in status s may move to.
func AllowedFrom(s string) []string { return transitions[s] }

// CheckTransition says whether from -> to is an edge of the state machine.
func CheckTransition(from, to string) *Rejection {
	if _, ok := transitions[from]; !ok {
		return reject(CodeInvalidTransition, "dispute.status", "from status %q is not a status: want one of %s", clip(from), strings.Join(DisputeStatuses, ", "))
	}
	if !contains(DisputeStatuses, to) {
		return reject(CodeInvalidField, "dispute.status", "%q is not a status: want one of %s", clip(to), strings.Join(DisputeStatuses, ", "))
	}
	if !contains(transitions[from], to) {
		allowed := transitions[from]
		if len(allowed) == 0 {
			return reject(CodeInvalidTransition, "dispute.status", "%s -> %s not allowed: %s is final", from, to, from)
		}
		sorted := append([]string(nil), allowed...)
		sort.Strings(sorted)
		return reject(CodeInvalidTransition, "dispute.status", "%s -> %s not allowed: from %s a dispute may move to %s", from, to, from, strings.Join(sorted, ", "))
	}
	return nil
}
