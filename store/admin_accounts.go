package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// adminAccountMigration keeps the administrators, one account per person:
// its name (the audit's actor), its scope (town_id, ” for the whole
// city), the hash of its credential, who created it and when, and when it
// was disabled (0: active). Accounts are never deleted, so that every
// name in the audit log stays explained.
const adminAccountMigration = `CREATE TABLE admin_accounts (
	name TEXT PRIMARY KEY, town_id TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
	created_ms INTEGER NOT NULL, created_by TEXT NOT NULL, disabled_ms INTEGER NOT NULL DEFAULT 0);`

// Audit actions on administrator accounts.
const (
	AuditCreateAdminAccount  = "create_admin_account"
	AuditDisableAdminAccount = "disable_admin_account"
	AuditEnableAdminAccount  = "enable_admin_account"
)

// ErrExists is returned for a name already taken.
var ErrExists = errors.New("store: already exists")

// AdminAccount is one administrator.
type AdminAccount struct {
	Name       string
	TownID     string // "" for the whole city
	CreatedMs  int64
	CreatedBy  string // the account name of whoever created it
	DisabledMs int64  // 0: active
}

const adminAccountColumns = "name, town_id, created_ms, created_by, disabled_ms"

func scanAdminAccount(row interface{ Scan(...any) error }) (AdminAccount, error) {
	var a AdminAccount
	err := row.Scan(&a.Name, &a.TownID, &a.CreatedMs, &a.CreatedBy, &a.DisabledMs)
	if errors.Is(err, sql.ErrNoRows) {
		return a, ErrNotFound
	}
	return a, err
}

// AdminAccountByToken finds the account whose credential hashes to
// tokenHash, disabled or not; ErrNotFound if none.
func (s *Server) AdminAccountByToken(ctx context.Context, tokenHash string) (AdminAccount, error) {
	return scanAdminAccount(s.r.QueryRowContext(ctx, "SELECT "+adminAccountColumns+" FROM admin_accounts WHERE token_hash = ?", tokenHash))
}

// AdminAccounts lists every account, by name.
func (s *Server) AdminAccounts(ctx context.Context) ([]AdminAccount, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+adminAccountColumns+" FROM admin_accounts ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list admin accounts: %w", err)
	}
	defer rows.Close()
	var out []AdminAccount
	for rows.Next() {
		a, err := scanAdminAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// AdminAccount reads an account in the transaction; ErrNotFound if none.
func (t *Tx) AdminAccount(name string) (AdminAccount, error) {
	return scanAdminAccount(t.QueryRow("SELECT "+adminAccountColumns+" FROM admin_accounts WHERE name = ?", name))
}

// PutAdminAccount creates an account (CreatedMs is the commit's time);
// ErrExists if the name is taken.
func (t *Tx) PutAdminAccount(a AdminAccount, tokenHash string) (AdminAccount, error) {
	a.CreatedMs, a.DisabledMs = t.now.UnixMilli(), 0
	_, err := t.Exec("INSERT INTO admin_accounts (name, town_id, token_hash, created_ms, created_by) VALUES (?, ?, ?, ?, ?)",
		a.Name, a.TownID, tokenHash, a.CreatedMs, a.CreatedBy)
	if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed: admin_accounts.name") {
		return a, ErrExists
	}
	return a, err
}

// DisableAdminAccount marks an account disabled (keeping the first time it
// was); ErrNotFound if there is none.
func (t *Tx) DisableAdminAccount(name string) (AdminAccount, error) {
	if _, err := t.Exec("UPDATE admin_accounts SET disabled_ms = ? WHERE name = ? AND disabled_ms = 0", t.now.UnixMilli(), name); err != nil {
		return AdminAccount{}, err
	}
	return t.AdminAccount(name)
}

// EnableAdminAccount makes an account active again with a new credential:
// the old one stays refused; ErrNotFound if there is none.
func (t *Tx) EnableAdminAccount(name, tokenHash string) (AdminAccount, error) {
	res, err := t.Exec("UPDATE admin_accounts SET disabled_ms = 0, token_hash = ? WHERE name = ?", tokenHash, name)
	if err != nil {
		return AdminAccount{}, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return AdminAccount{}, ErrNotFound
	}
	return t.AdminAccount(name)
}
