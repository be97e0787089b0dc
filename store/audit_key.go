package store

import (
	"github.com/fieldsync/fieldsync/domain"

	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// accountabilityMigration: a user can be disabled; enrollment codes keep
// when they were made and whether they were cancelled; audit entries carry
// a MAC under a key kept outside the database (AuditMAC). Entries written
// before it have no MAC and verify with their plain hash only.
const accountabilityMigration = `ALTER TABLE users ADD COLUMN disabled_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE enroll_codes ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE enroll_codes ADD COLUMN cancelled_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX enroll_codes_user ON enroll_codes (user_id);
ALTER TABLE audit_log ADD COLUMN mac TEXT NOT NULL DEFAULT '';`

// AuditKeySize is the length of the audit log's MAC key in bytes.
const AuditKeySize = 32

// LoadOrCreateAuditKey reads the audit log's MAC key from path (64 hex
// digits), creating a random one there (mode 0600) if the file does not
// exist. The key must live outside the database: one who has the database
// but not the key can neither rewrite an entry nor forge a new one without
// verification failing. created says the file was made now.
func LoadOrCreateAuditKey(path string) (key []byte, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, AuditKeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, false, fmt.Errorf("audit key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("create audit key %s: %w", path, err)
		}
		_, werr := f.WriteString(hex.EncodeToString(key) + "\n")
		if werr == nil {
			werr = f.Sync()
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(path)
			return nil, false, fmt.Errorf("write audit key %s: %w", path, werr)
		}
		return key, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read audit key: %w", err)
	}
	return ParseAuditKey(path, b)
}

// ReadAuditKey reads an existing audit key file (fieldctl admin audit).
func ReadAuditKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read audit key: %w", err)
	}
	key, _, err := ParseAuditKey(path, b)
	return key, err
}

// ParseAuditKey parses the content of an audit key file.
func ParseAuditKey(path string, b []byte) ([]byte, bool, error) {
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != AuditKeySize {
		return nil, false, fmt.Errorf("audit key %s: want %d hex digits on one line; restore the file from its backup (a new key cannot verify the entries made under the old one)", path, 2*AuditKeySize)
	}
	return key, false, nil
}

// WithAuditKey makes every new audit entry carry a MAC under key
// (AuditMAC). OpenServer refuses a key that does not verify the last
// entry made with a key.
func WithAuditKey(key []byte) ServerOption {
	return func(o *serverOptions) { o.auditKey = append([]byte(nil), key...) }
}

// AuditMAC is an entry's MAC: HMAC-SHA256 (hex) under the audit key of the
// tag "fieldsync-audit-mac-v1" and the entry's Hash (AuditHash, which
// covers its content and the hash of the entry before it), so the MACs
// chain as the hashes do.
func AuditMAC(key []byte, e AuditEntry) string {
	m := hmac.New(sha256.New, key)
	writeField(m, "fieldsync-audit-mac-v1")
	writeField(m, e.Hash)
	return hex.EncodeToString(m.Sum(nil))
}

// checkAuditKey refuses a key under which the last keyed entry does not
// verify: a new key made because audit.key was lost would otherwise start
// a log that cannot be verified across the change.
func checkAuditKey(ctx context.Context, db *sql.DB, key []byte) error {
	var e AuditEntry
	err := db.QueryRowContext(ctx, "SELECT seq, hash, mac FROM audit_log WHERE mac != '' ORDER BY seq DESC LIMIT 1").Scan(&e.Seq, &e.Hash, &e.Mac)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the audit log: %w", err)
	}
	if !hmac.Equal([]byte(AuditMAC(key, e)), []byte(e.Mac)) {
		return fmt.Errorf("the audit key does not match the audit log (entry %d was made under another key): restore audit.key from its backup", e.Seq)
	}
	return nil
}

// AuditHeadSubject is the NATS subject this database's audit heads are
// published on: secret with its audit key (domain.AuditHeadSubject).
func (s *Server) AuditHeadSubject() string { return domain.AuditHeadSubject(s.auditKey) }
