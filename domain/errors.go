package domain

import "fmt"

// Codes of a Rejection: stable, machine-readable, sent to the device with
// the mutation's result.
const (
	CodeInvalidField      = "invalid_field"
	CodeNotFound          = "not_found"
	CodePermissionDenied  = "permission_denied"
	CodeInvalidTransition = "invalid_transition"
	CodeAlreadyExists     = "already_exists"
)

// Rejection is why a mutation was refused for good. Field names the field
// at fault as kind.field (e.g. "visit.household_id"); Reason says what was
// wrong and what is allowed.
type Rejection struct {
	Code   string
	Field  string
	Reason string
}

func (r *Rejection) Error() string {
	if r.Field == "" {
		return r.Reason
	}
	return r.Field + ": " + r.Reason
}

func reject(code, field, format string, args ...any) *Rejection {
	return &Rejection{Code: code, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// CodeVoided refuses a change to a voided record.
const CodeVoided = "voided"
