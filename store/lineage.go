package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/fieldsync/fieldsync/domain"
)

// A database's lineage is the prefix of its change ids (<lineage>-<seq>),
// kept in meta as "instance". A database that went back in time (restored
// from a backup, or a copy put back by hand) numbers its next changes with
// numbers its earlier self already used for other content; Rebase gives it
// a new lineage first, so that a change id never names two contents, and
// records the change number the new lineage starts after, so that the
// relay, devices and HQ consumers can tell an old changelog from this one.

// Lineage says which lineage the database is in and where it began.
type Lineage struct {
	ID    string // the prefix of change ids from After+1 on
	After uint64 // the last change number of the lineage before it (0: none)
	Prev  string // the lineage before it ("" if there was none)
}

// Lineage reads the database's lineage.
func (s *Server) Lineage(ctx context.Context) (Lineage, error) {
	l := Lineage{ID: s.Instance()}
	rows, err := s.db.R.QueryContext(ctx, "SELECT key, value FROM meta WHERE key IN ('lineage_after', 'lineage_prev')")
	if err != nil {
		return l, fmt.Errorf("read lineage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return l, fmt.Errorf("read lineage: %w", err)
		}
		switch k {
		case "lineage_after":
			if l.After, err = strconv.ParseUint(v, 10, 64); err != nil {
				return l, fmt.Errorf("read lineage: lineage_after %q: %w", v, err)
			}
		case "lineage_prev":
			l.Prev = v
		}
	}
	return l, rows.Err()
}

// Rebase starts a new lineage after the database's last change and returns
// it. Call it before any write of the new life (at start, before serving):
// a write committed in the same batch before it keeps the old prefix.
func (s *Server) Rebase(ctx context.Context) (Lineage, error) {
	var l Lineage
	err := s.Write(ctx, func(tx *Tx) error {
		var last sql.NullInt64
		if err := tx.QueryRow("SELECT MAX(seq) FROM changes").Scan(&last); err != nil {
			return fmt.Errorf("read last change: %w", err)
		}
		l = Lineage{ID: domain.RandomToken(8), After: uint64(last.Int64), Prev: tx.instance}
		for k, v := range map[string]string{"instance": l.ID, "lineage_after": strconv.FormatUint(l.After, 10), "lineage_prev": l.Prev} {
			if _, err := tx.Exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", k, v); err != nil {
				return fmt.Errorf("write lineage: %w", err)
			}
		}
		// Later jobs of this batch write under the new prefix.
		tx.instance = l.ID
		tx.AfterCommit(func() { s.instance.Store(&l.ID) })
		return nil
	})
	if err != nil {
		return Lineage{}, err
	}
	if l.ID == "" {
		return Lineage{}, errors.New("rebase: no lineage written")
	}
	return l, nil
}
