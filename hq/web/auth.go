package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sign-in rules.
const (
	// DefaultCodeTTL is how long a one-time code stays good when IssueCode
	// is given no TTL.
	DefaultCodeTTL = 24 * time.Hour
	// SessionTTL is how long a session lasts after sign-in.
	SessionTTL = 12 * time.Hour
	// MaxFailures failed sign-ins per person, and per remote address,
	// within FailureWindow lock sign-in for them until the oldest ages out.
	MaxFailures   = 5
	FailureWindow = 15 * time.Minute

	codeLen = 10
	// codeAlphabet is base32 without the letters read for one another
	// (I/1/L, O/0): a code is read aloud or copied from a phone.
	codeAlphabet  = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
	sessionCookie = "fieldsync_hq"
)

// Errors of sign-in.
var (
	// ErrNotAllowed: the person exists but may not use the HQ page (not
	// HQ, not a town's secretary, or disabled).
	ErrNotAllowed = errors.New("web: person may not sign in to the HQ page")
	// ErrUnknownPerson: no such person in the read model.
	ErrUnknownPerson = errors.New("web: unknown person")
)

// who is a person allowed on the HQ page, and their scope.
type who struct {
	ID, Name string
	Town     string // "" = the whole city (HQ)
	TownName string
}

// lookupPerson finds id in the read model's people and says whether and
// with which scope they may sign in: role hq (the city), or secretary
// whose unit is a town (that town); not when disabled.
func lookupPerson(ctx context.Context, model *sql.DB, id string) (*who, error) {
	var name, role, unit string
	var disabled int64
	err := model.QueryRowContext(ctx, `SELECT name, role, unit_id, disabled_ms FROM people WHERE id = ?`, id).
		Scan(&name, &role, &unit, &disabled)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w %q", ErrUnknownPerson, id)
	}
	if err != nil {
		return nil, fmt.Errorf("look up person %s: %w", id, err)
	}
	if disabled != 0 {
		return nil, fmt.Errorf("%w: %s is disabled", ErrNotAllowed, id)
	}
	w := &who{ID: id, Name: name}
	switch role {
	case "hq":
		return w, nil
	case "secretary":
		var kind, uname string
		err := model.QueryRowContext(ctx, `SELECT kind, name FROM units WHERE id = ?`, unit).Scan(&kind, &uname)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("look up unit %s of %s: %w", unit, id, err)
		}
		if kind != "town" {
			return nil, fmt.Errorf("%w: %s is a village's secretary (unit %s), not a town's", ErrNotAllowed, id, unit)
		}
		w.Town, w.TownName = unit, uname
		return w, nil
	}
	return nil, fmt.Errorf("%w: %s has role %q; allowed: hq, or secretary of a town", ErrNotAllowed, id, role)
}

// IssueCode makes a one-time sign-in code for personID (who must be HQ or
// a town's secretary in model), good for ttl (0: DefaultCodeTTL), and
// stores only its hash in the web database at webDB. by says who issued
// it (kept with the code). The code is returned once, to be handed over.
func IssueCode(ctx context.Context, webDB string, model *sql.DB, personID string, ttl time.Duration, by string) (string, error) {
	if ttl < 0 {
		return "", fmt.Errorf("web: ttl %s: must be positive (0 = %s)", ttl, DefaultCodeTTL)
	}
	if ttl == 0 {
		ttl = DefaultCodeTTL
	}
	if _, err := lookupPerson(ctx, model, personID); err != nil {
		return "", err
	}
	db, err := openWebDB(ctx, webDB)
	if err != nil {
		return "", err
	}
	defer db.Close()
	code, err := newCode()
	if err != nil {
		return "", err
	}
	now := time.Now()
	if _, err := db.ExecContext(ctx, `INSERT INTO codes (hash, person_id, issued_ms, expires_ms, used_ms, by) VALUES (?, ?, ?, ?, 0, ?)`,
		hashOf(code), personID, now.UnixMilli(), now.Add(ttl).UnixMilli(), by); err != nil {
		return "", fmt.Errorf("store sign-in code: %w", err)
	}
	if err := audit(ctx, db, now.UnixMilli(), personID, "code", "issued by "+by+", good for "+ttl.String(), ""); err != nil {
		return "", err
	}
	return code, nil
}

func newCode() (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	// Rejection sampling: bytes >= 248 (8*31) would bias the first letters.
	for b.Len() < codeLen {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("make sign-in code: %w", err)
		}
		if int(buf[0]) >= 256/len(codeAlphabet)*len(codeAlphabet) {
			continue
		}
		b.WriteByte(codeAlphabet[int(buf[0])%len(codeAlphabet)])
	}
	return b.String(), nil
}

// normalizeCode accepts a code as a person types it: any case, with
// spaces or dashes.
func normalizeCode(s string) string {
	s = strings.ToUpper(s)
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '\t' {
			return -1
		}
		return r
	}, s)
}

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// lockedUntil says until when sign-in is refused for person or remote
// (zero: not locked).
func lockedUntil(ctx context.Context, db *sql.DB, now time.Time, person, remote string) (time.Time, error) {
	since := now.Add(-FailureWindow).UnixMilli()
	var until time.Time
	for _, q := range []struct{ col, v string }{{"person_id", person}, {"remote", remote}} {
		if q.v == "" {
			continue
		}
		var n int
		var oldest sql.NullInt64
		// The MaxFailures-th most recent failure decides when a slot frees.
		err := db.QueryRowContext(ctx, `SELECT COUNT(*), (SELECT at_ms FROM failures WHERE `+q.col+` = ?1 AND at_ms > ?2
			ORDER BY at_ms DESC LIMIT 1 OFFSET ?3) FROM failures WHERE `+q.col+` = ?1 AND at_ms > ?2`,
			q.v, since, MaxFailures-1).Scan(&n, &oldest)
		if err != nil {
			return time.Time{}, fmt.Errorf("count failed sign-ins: %w", err)
		}
		if n >= MaxFailures && oldest.Valid {
			if t := time.UnixMilli(oldest.Int64).Add(FailureWindow); t.After(until) {
				until = t
			}
		}
	}
	return until, nil
}

// useCode checks code for person and marks it used, in one transaction:
// a code signs in once.
func useCode(ctx context.Context, db *sql.DB, now time.Time, person, code string) (string, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	var expires, used int64
	err = tx.QueryRowContext(ctx, `SELECT expires_ms, used_ms FROM codes WHERE hash = ? AND person_id = ?`,
		hashOf(code), person).Scan(&expires, &used)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "wrong code", nil
	case err != nil:
		return "", err
	case used != 0:
		return "code already used", nil
	case now.UnixMilli() >= expires:
		return "code expired", nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE codes SET used_ms = ? WHERE hash = ?`, now.UnixMilli(), hashOf(code)); err != nil {
		return "", err
	}
	return "", tx.Commit()
}
