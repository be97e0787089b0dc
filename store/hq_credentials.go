package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// hqCredentialMigration adds HQ's credentials for the embedded NATS: an
// NKey public key per name (the seed is given out once and never stored).
// A revoked credential keeps its row (revoked_ms set) so that its name is
// not given to another key by mistake and the list shows when it ended.
const hqCredentialMigration = `
CREATE TABLE hq_credentials (
	name TEXT PRIMARY KEY, public_key TEXT NOT NULL UNIQUE,
	created_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL DEFAULT 0);
`

// HQCredential is one HQ consumer's NATS credential.
type HQCredential struct {
	Name      string
	PublicKey string
	CreatedMs int64
	RevokedMs int64 // 0: in use
}

// AddHQCredential stores a new HQ credential; ErrExists if the name is
// taken (revoked ones included).
func (t *Tx) AddHQCredential(name, publicKey string) error {
	_, err := t.Exec("INSERT INTO hq_credentials (name, public_key, created_ms) VALUES (?, ?, ?)", name, publicKey, t.Now().UnixMilli())
	if err != nil && strings.Contains(err.Error(), "UNIQUE") {
		return fmt.Errorf("hq credential %q: %w", name, ErrExists)
	}
	return err
}

// RevokeHQCredential marks a credential revoked; ErrNotFound if there is
// none of that name. It reports whether it was revoked already.
func (t *Tx) RevokeHQCredential(name string) (already bool, err error) {
	var revoked int64
	err = t.QueryRow("SELECT revoked_ms FROM hq_credentials WHERE name = ?", name).Scan(&revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return false, ErrNotFound
	}
	if err != nil || revoked != 0 {
		return revoked != 0, err
	}
	_, err = t.Exec("UPDATE hq_credentials SET revoked_ms = ? WHERE name = ?", t.Now().UnixMilli(), name)
	return false, err
}

// HQCredentials lists the HQ credentials by name, revoked ones too.
func (s *Server) HQCredentials(ctx context.Context) ([]HQCredential, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT name, public_key, created_ms, revoked_ms FROM hq_credentials ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list hq credentials: %w", err)
	}
	defer rows.Close()
	var out []HQCredential
	for rows.Next() {
		var c HQCredential
		if err := rows.Scan(&c.Name, &c.PublicKey, &c.CreatedMs, &c.RevokedMs); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
