package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"strconv"
	"strings"
	"time"
)

// auditMigration adds the audit log: append-only, each entry chained to the
// one before by hash. The triggers refuse edits made through SQL by
// mistake; the chain shows edits made on purpose (see VerifyAudit).
const auditMigration = `
CREATE TABLE audit_log (
	seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL,
	actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL,
	prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
	BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
	BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
`

// Audit actions.
const (
	AuditImportOrg            = "import_org"
	AuditAssignHousehold      = "assign_household"
	AuditCreateEnrollmentCode = "create_enrollment_code"
	AuditRevokeDevice         = "revoke_device"
	AuditEnrollDevice         = "enroll_device"
)

// AuditAdmin is the actor older releases wrote for every administrator's
// action, before accounts; the server now writes domain.AdminActor
// ("admin:<account>"), and a device's actions have its device id as actor.
const AuditAdmin = "admin"

// metaAuditHead keeps "seq hash" of the last entry, written with it, so
// that a removed last entry shows too.
const metaAuditHead = "audit_head"

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	Seq      uint64 // 1, 2, 3, … without gaps
	TimeMs   int64  // commit time of the action
	Actor    string // "admin" or a device id
	Action   string // one of the Audit* actions
	Target   string // what it was done to: a user, household or device id
	Detail   string // JSON
	PrevHash string // Hash of entry Seq-1; "" for entry 1
	Hash     string // AuditHash of this entry
	// Mac is AuditMAC of this entry under the audit key outside the
	// database; "" for an entry written before keys (or without one).
	Mac string
}

// Link is what the changelog publishes of an entry (AuditHead): its MAC,
// or its hash for an entry without one.
func (e AuditEntry) Link() string {
	if e.Mac != "" {
		return e.Mac
	}
	return e.Hash
}

// AuditHash is the SHA-256 (hex) of an entry's content and its PrevHash:
// the tag "fieldsync-audit-v1", then seq and time_ms as 8-byte big-endian
// integers, then actor, action, target, detail and prev_hash, each as an
// 8-byte big-endian length followed by its bytes. Anyone can recompute it.
func AuditHash(e AuditEntry) string {
	h := sha256.New()
	writeField(h, "fieldsync-audit-v1")
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], e.Seq)
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.TimeMs))
	h.Write(n[:])
	for _, f := range []string{e.Actor, e.Action, e.Target, e.Detail, e.PrevHash} {
		writeField(h, f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeField(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}

// Audit appends an entry to the audit log in this transaction: it is kept
// if and only if the action it records is.
func (t *Tx) Audit(actor, action, target, detail string) error {
	if actor == "" || action == "" {
		return errors.New("audit: actor and action are required")
	}
	e := AuditEntry{TimeMs: t.now.UnixMilli(), Actor: actor, Action: action, Target: target, Detail: detail}
	var last sql.NullInt64
	var prev sql.NullString
	err := t.QueryRow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").Scan(&last, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("audit: read the last entry: %w", err)
	}
	e.Seq, e.PrevHash = uint64(last.Int64)+1, prev.String
	e.Hash = AuditHash(e)
	if t.auditKey != nil {
		e.Mac = AuditMAC(t.auditKey, e)
	}
	if _, err := t.Exec(`INSERT INTO audit_log (seq, time_ms, actor, action, target, detail, prev_hash, hash, mac)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.Seq, e.TimeMs, e.Actor, e.Action, e.Target, e.Detail, e.PrevHash, e.Hash, e.Mac); err != nil {
		return fmt.Errorf("audit: append entry %d: %w", e.Seq, err)
	}
	if _, err := t.Exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
		metaAuditHead, fmt.Sprintf("%d %s", e.Seq, e.Hash)); err != nil {
		return fmt.Errorf("audit: record the head: %w", err)
	}
	if t.onAudit != nil {
		t.AfterCommit(t.onAudit)
	}
	return nil
}

// AuditLog returns up to limit entries after afterSeq, in order.
func (s *Server) AuditLog(ctx context.Context, afterSeq uint64, limit int) ([]AuditEntry, error) {
	return auditEntries(ctx, s.db.R, afterSeq, limit)
}

// VerifyAudit checks the whole audit log: entries numbered 1, 2, 3, …
// without gaps, each hash matching its entry's content, each entry naming
// the hash of the one before, each MAC matching under the server's audit
// key (WithAuditKey), and the last one matching the head kept beside the
// log. It returns the last entry (zero for an empty log), or an
// *AuditError naming the first entry that fails. CheckAudit also compares
// the log with the head published outside the database.
func (s *Server) VerifyAudit(ctx context.Context) (AuditEntry, error) {
	r, err := verifyAudit(ctx, s.db.R, s.auditKey, nil)
	return r.Last, err
}

// CheckAudit is VerifyAudit, and also compares the log with head, the
// last head published to the changelog (nil: none was).
func (s *Server) CheckAudit(ctx context.Context, head *AuditHead) (AuditReport, error) {
	return verifyAudit(ctx, s.db.R, s.auditKey, head)
}

// AuditHead is an audit entry as published outside the database (to the
// changelog's JetStream, by syncd): its number and its Link.
type AuditHead struct {
	Seq    uint64 `json:"seq"`
	Link   string `json:"link"`
	TimeMs int64  `json:"time_ms"`
}

// AuditReport is what a verification found.
type AuditReport struct {
	Last AuditEntry // the last entry that checks out (zero: none)
	// Unkeyed counts the entries 1..Unkeyed written without a MAC (before
	// the audit key): only their hash chain protects them, and entries
	// made later with a MAC.
	Unkeyed uint64
	// MACsChecked is false when entries carry MACs but no key was given.
	MACsChecked bool
	// Published is the head the log was compared with (nil: none).
	Published *AuditHead
	// Unpublished counts the entries after the published head: written,
	// not yet published (syncd publishes each soon after its commit).
	Unpublished uint64
}

// AuditError says which audit entry fails verification, and how.
type AuditError struct {
	Seq     uint64
	Problem string
}

func (e *AuditError) Error() string {
	return fmt.Sprintf("audit log broken at entry %d: %s", e.Seq, e.Problem)
}

func auditEntries(ctx context.Context, db *sql.DB, afterSeq uint64, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := db.QueryContext(ctx, `SELECT seq, time_ms, actor, action, target, detail, prev_hash, hash, mac
		FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		if err := rows.Scan(&e.Seq, &e.TimeMs, &e.Actor, &e.Action, &e.Target, &e.Detail, &e.PrevHash, &e.Hash, &e.Mac); err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func verifyAudit(ctx context.Context, db *sql.DB, key []byte, published *AuditHead) (AuditReport, error) {
	rep := AuditReport{Published: published, MACsChecked: true}
	// One read transaction, so that a concurrent append cannot slip
	// between the entries and the head.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return rep, fmt.Errorf("verify audit log: %w", err)
	}
	defer tx.Rollback()
	var head string
	if err := tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", metaAuditHead).Scan(&head); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return rep, fmt.Errorf("verify audit log: read the head: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT seq, time_ms, actor, action, target, detail, prev_hash, hash, mac FROM audit_log ORDER BY seq`)
	if err != nil {
		return rep, fmt.Errorf("verify audit log: %w", err)
	}
	defer rows.Close()
	var prev AuditEntry
	var atPublished *AuditEntry // the entry numbered as the published head
	keyed := false              // an entry with a MAC was seen
	for rows.Next() {
		var e AuditEntry
		if err := rows.Scan(&e.Seq, &e.TimeMs, &e.Actor, &e.Action, &e.Target, &e.Detail, &e.PrevHash, &e.Hash, &e.Mac); err != nil {
			return rep, fmt.Errorf("verify audit log: %w", err)
		}
		rep.Last = prev
		switch {
		case e.Seq != prev.Seq+1:
			where := fmt.Sprintf("entry %d follows entry %d", e.Seq, prev.Seq)
			if prev.Seq == 0 {
				where = fmt.Sprintf("the log starts at entry %d", e.Seq)
			}
			if e.Seq > prev.Seq+2 {
				where += fmt.Sprintf(" (entries %d to %d are missing)", prev.Seq+1, e.Seq-1)
			}
			return rep, &AuditError{Seq: prev.Seq + 1, Problem: "removed: " + where}
		case e.Hash != AuditHash(e):
			return rep, &AuditError{Seq: e.Seq, Problem: fmt.Sprintf("altered: its content (%s %s %s at %s) does not match its hash",
				e.Actor, e.Action, e.Target, time.UnixMilli(e.TimeMs).UTC().Format(time.RFC3339))}
		case e.PrevHash != prev.Hash:
			return rep, &AuditError{Seq: e.Seq, Problem: fmt.Sprintf("the chain breaks here: its prev_hash is not the hash of entry %d (one of the two was rewritten, or entries were removed and renumbered)", prev.Seq)}
		case e.Mac == "" && keyed:
			return rep, &AuditError{Seq: e.Seq, Problem: "altered: it has no MAC although an entry before it has one (an entry made by syncd since the audit key always has one)"}
		case e.Mac != "" && key != nil && !hmac.Equal([]byte(e.Mac), []byte(AuditMAC(key, e))):
			return rep, &AuditError{Seq: e.Seq, Problem: fmt.Sprintf("altered: its MAC does not match under the audit key (its content, %s %s %s at %s, or the chain before it was rewritten and hashed again without the key)",
				e.Actor, e.Action, e.Target, time.UnixMilli(e.TimeMs).UTC().Format(time.RFC3339))}
		}
		if e.Mac != "" {
			keyed = true
			if key == nil {
				rep.MACsChecked = false
			}
		} else {
			rep.Unkeyed = e.Seq
		}
		if published != nil && e.Seq == published.Seq {
			atPublished = &e
		}
		prev = e
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("verify audit log: %w", err)
	}
	rep.Last = prev
	if !keyed {
		rep.MACsChecked = key != nil
	}
	// The published head: kept outside the database, so a log cut short
	// and its meta head rewritten to match still shows.
	if published != nil && published.Seq > 0 {
		switch {
		case published.Seq > prev.Seq:
			missing := fmt.Sprintf("entry %d is missing", published.Seq)
			if published.Seq > prev.Seq+1 {
				missing = fmt.Sprintf("entries %d to %d are missing", prev.Seq+1, published.Seq)
			}
			return rep, &AuditError{Seq: prev.Seq + 1, Problem: fmt.Sprintf("removed: the log ends at entry %d, but entry %d was published outside the database (NATS stream FIELDSYNC_AUDIT) at %s: %s",
				prev.Seq, published.Seq, time.UnixMilli(published.TimeMs).UTC().Format(time.RFC3339), missing)}
		case atPublished == nil || atPublished.Link() != published.Link:
			return rep, &AuditError{Seq: published.Seq, Problem: "replaced: it does not match the entry published outside the database (NATS stream FIELDSYNC_AUDIT; the log was cut back and written again, or rewritten)"}
		}
		rep.Unpublished = prev.Seq - published.Seq
	} else if published != nil {
		rep.Unpublished = prev.Seq
	}
	if head == "" && prev.Seq == 0 {
		return rep, nil
	}
	seqText, hashText, _ := strings.Cut(head, " ")
	headSeq, _ := strconv.ParseUint(seqText, 10, 64)
	switch {
	case head == "":
		return rep, &AuditError{Seq: 1, Problem: "the log has entries but no head was recorded: the head was removed"}
	case headSeq > prev.Seq:
		return rep, &AuditError{Seq: prev.Seq + 1, Problem: fmt.Sprintf("removed: the log ends at entry %d, but entry %d was written", prev.Seq, headSeq)}
	case headSeq != prev.Seq || hashText != prev.Hash:
		return rep, &AuditError{Seq: prev.Seq, Problem: fmt.Sprintf("the last entry does not match the recorded head (entry %d)", headSeq)}
	}
	return rep, nil
}

// AuditReader reads the audit log of a server database file without
// syncd: fieldctl admin audit uses it. It never writes.
type AuditReader struct{ db *sql.DB }

// OpenAuditReader opens the server database at path for reading its audit
// log; syncd may be running.
func OpenAuditReader(ctx context.Context, path string) (*AuditReader, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("server database: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'").Scan(&n); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if n == 0 {
		db.Close()
		return nil, fmt.Errorf("%s has no audit log: it is not a server database, or syncd has not started on it since the audit log was added", path)
	}
	return &AuditReader{db: db}, nil
}

// Entries returns up to limit entries after afterSeq, in order.
func (a *AuditReader) Entries(ctx context.Context, afterSeq uint64, limit int) ([]AuditEntry, error) {
	return auditEntries(ctx, a.db, afterSeq, limit)
}

// Verify checks the log as Server.VerifyAudit does, without a key: MACs
// are not checked.
func (a *AuditReader) Verify(ctx context.Context) (AuditEntry, error) {
	r, err := verifyAudit(ctx, a.db, nil, nil)
	return r.Last, err
}

// Check checks the log as Server.CheckAudit does, with key (nil: MACs not
// checked) and the published head (nil: none).
func (a *AuditReader) Check(ctx context.Context, key []byte, published *AuditHead) (AuditReport, error) {
	return verifyAudit(ctx, a.db, key, published)
}

// Close closes the file.
func (a *AuditReader) Close() error { return a.db.Close() }
