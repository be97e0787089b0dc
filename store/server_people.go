package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrCodeCancelled is returned by UseEnrollCode for a code an
// administrator cancelled, or that was cancelled with its user's devices.
var ErrCodeCancelled = errors.New("enrollment code cancelled")

// ErrAmbiguousCodeRef: two codes share a reference (one chance in 2^48
// per pair).
var ErrAmbiguousCodeRef = errors.New("code reference names two codes")

// UserDisabled returns when a user was disabled (0: not disabled);
// ErrNotFound if there is no such user.
func (t *Tx) UserDisabled(userID string) (int64, error) {
	var ms int64
	err := t.QueryRow("SELECT disabled_ms FROM users WHERE id = ?", userID).Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return ms, err
}

// SetUserDisabled disables a user (now) or enables them again, and
// returns when they were disabled before (0: they were not). A change
// goes on the changelog (Change.person).
func (t *Tx) SetUserDisabled(userID string, disabled bool) (int64, error) {
	was, err := t.UserDisabled(userID)
	if err != nil {
		return 0, err
	}
	ms := int64(0)
	if disabled {
		if was != 0 {
			return was, nil // keep when it first happened
		}
		ms = t.now.UnixMilli()
	} else if was == 0 {
		return 0, nil // enabled already
	}
	if _, err = t.Exec("UPDATE users SET disabled_ms = ? WHERE id = ?", ms, userID); err != nil {
		return was, err
	}
	return was, t.personChanged(userID)
}

// UserDevices returns the ids of a user's devices not yet revoked.
func (t *Tx) UserDevices(userID string) ([]string, error) {
	rows, err := t.tx.QueryContext(t.ctx, "SELECT id FROM devices WHERE user_id = ? AND revoked_ms = 0 ORDER BY id", userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// EnrollCode is an enrollment code as the server keeps it: never the code,
// only its hash; Ref names it (its hash's first 12 hex digits, the audit
// log's code_ref).
type EnrollCode struct {
	Ref         string
	UserID      string
	CreatedMs   int64 // 0: made before codes kept it
	ExpiresMs   int64
	UsedMs      int64
	CancelledMs int64
}

// CodeRefLen is the length of an enrollment code's reference.
const CodeRefLen = 12

// Outstanding reports whether the code can still enroll a device at nowMs.
func (c EnrollCode) Outstanding(nowMs int64) bool {
	return c.UsedMs == 0 && c.CancelledMs == 0 && nowMs <= c.ExpiresMs
}

// EnrollCodes returns up to limit codes, optionally of one user, in the
// order they were made, after the code (createdMs, ref) given (zero: from
// the first).
func (s *Server) EnrollCodes(ctx context.Context, userID string, afterCreatedMs int64, afterRef string, limit int) ([]EnrollCode, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT substr(code_hash, 1, 12), user_id, created_ms, expires_ms, used_ms, cancelled_ms FROM enroll_codes
		WHERE (? = '' OR user_id = ?) AND (created_ms > ? OR (created_ms = ? AND substr(code_hash, 1, 12) > ?))
		ORDER BY created_ms, code_hash LIMIT ?`, userID, userID, afterCreatedMs, afterCreatedMs, afterRef, limit)
	if err != nil {
		return nil, fmt.Errorf("list enrollment codes: %w", err)
	}
	defer rows.Close()
	var out []EnrollCode
	for rows.Next() {
		var c EnrollCode
		if err := rows.Scan(&c.Ref, &c.UserID, &c.CreatedMs, &c.ExpiresMs, &c.UsedMs, &c.CancelledMs); err != nil {
			return nil, fmt.Errorf("list enrollment codes: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// EnrollCodeByRef finds the code a reference names: ErrNotFound if none,
// an error if the reference is too short to name one.
func (t *Tx) EnrollCodeByRef(ref string) (EnrollCode, error) {
	var c EnrollCode
	if len(ref) != CodeRefLen {
		return c, ErrNotFound
	}
	rows, err := t.tx.QueryContext(t.ctx, `SELECT substr(code_hash, 1, 12), user_id, created_ms, expires_ms, used_ms, cancelled_ms FROM enroll_codes
		WHERE code_hash >= ? AND code_hash < ? LIMIT 2`, ref, ref+"g")
	if err != nil {
		return c, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		if err := rows.Scan(&c.Ref, &c.UserID, &c.CreatedMs, &c.ExpiresMs, &c.UsedMs, &c.CancelledMs); err != nil {
			return c, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return c, err
	}
	switch n {
	case 0:
		return c, ErrNotFound
	case 1:
		return c, nil
	}
	return c, ErrAmbiguousCodeRef
}

// CancelEnrollCodes cancels the outstanding codes (unused, not cancelled,
// not expired) of a user, or the one named by ref if ref is not "", and
// returns the references of those it cancelled.
func (t *Tx) CancelEnrollCodes(userID, ref string) ([]string, error) {
	now := t.now.UnixMilli()
	q := `UPDATE enroll_codes SET cancelled_ms = ? WHERE used_ms = 0 AND cancelled_ms = 0 AND expires_ms >= ?`
	args := []any{now, now}
	if userID != "" {
		q += " AND user_id = ?"
		args = append(args, userID)
	}
	if ref != "" {
		q += " AND code_hash >= ? AND code_hash < ?"
		args = append(args, ref, ref+"g")
	}
	rows, err := t.tx.QueryContext(t.ctx, q+" RETURNING substr(code_hash, 1, 12)", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var refs []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	return refs, rows.Err()
}

// Audit actions of disabling people and cancelling codes.
const (
	AuditDisableUser           = "disable_user"
	AuditEnableUser            = "enable_user"
	AuditCancelEnrollmentCodes = "cancel_enrollment_codes"
)
