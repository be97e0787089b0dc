package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/fieldsync/fieldsync/domain"
)

// metaRegion is the region the database belongs to (issue 16), pinned in
// meta at the first start with a region: a database is one region's for
// good, since every id its administrators gave starts with the region's
// prefix (domain.RegionIDPrefix) and its changes are numbered in that
// region's stream.
const metaRegion = "region"

// WithRegion opens the database as region r's (domain.CheckRegion; "" for
// none). A database with no region pinned and nothing in it is pinned to
// r; one pinned to another region, or one that already holds changes,
// units, people or records made without a region, is refused (OpenServer
// fails, saying why).
func WithRegion(r string) ServerOption {
	return func(o *serverOptions) { o.region, o.regionGiven = r, true }
}

// Region is the region the database is pinned to ("" for none).
func (s *Server) Region() string { return s.region }

// pinRegion checks the region asked for against the one the database has
// pinned, and pins it on a database that holds nothing yet.
func pinRegion(ctx context.Context, db *sql.DB, want string) (string, error) {
	if err := domain.CheckRegion(want); err != nil {
		return "", err
	}
	var pinned string
	err := db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", metaRegion).Scan(&pinned)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("read the database's region: %w", err)
	}
	switch {
	case pinned == want:
		return pinned, nil
	case pinned != "" && want == "":
		return "", fmt.Errorf("this database is region %q's (pinned at its first start): start syncd with -region %s (without a region it would publish region %s's changes as no region's)", pinned, pinned, pinned)
	case pinned != "":
		return "", fmt.Errorf("this database is region %q's (pinned at its first start), not region %q's: start syncd with -region %s, or give region %s a data directory of its own (a region's ids, stream and change numbers are its own)", pinned, want, pinned, want)
	}
	// No region pinned yet, one asked for: only a database that holds
	// nothing becomes the region's.
	var used bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM changes) OR EXISTS (SELECT 1 FROM units)
		OR EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM records)
		OR EXISTS (SELECT 1 FROM meta WHERE key = 'retention_horizon' AND value NOT IN ('', '0'))`).Scan(&used); err != nil {
		return "", fmt.Errorf("read whether the database holds changes: %w", err)
	}
	if used {
		return "", fmt.Errorf("-region %s: this database already holds changes made without a region, and its ids (units, people, households) lack the region's prefix %q that every region's ids carry: run it without -region, or start region %s on a new data directory and import its units and people there with ids starting with %q",
			want, domain.RegionIDPrefix(want), want, domain.RegionIDPrefix(want))
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES (?, ?)", metaRegion, want); err != nil {
		return "", fmt.Errorf("pin the database's region: %w", err)
	}
	return want, nil
}
