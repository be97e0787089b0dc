package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"

	"github.com/fieldsync/fieldsync/domain"
)

// heads holds each bucket's highest change number, in memory, so that a
// pull skips the buckets with nothing after the device's cursor without a
// query: most syncs of a quiet city (a phone's periodic sync, a single
// visit) find most of their 6-11 buckets unchanged. syncbench's burst
// profile put those queries at 16% of syncd's CPU.
//
// The figures are exact: loaded when the database opens, then raised by the
// writer after each commit, before the writes' callers hear of it (so a
// device's pull after its push sees its own changes) and before Watch
// streams are poked. A reader that comes between a commit and the raise
// skips a bucket it could have read, and reads it at its next sync (the
// poke). This holds as long as syncd's writer is the only one writing the
// database, which the design requires anyway.
type heads struct {
	mu      sync.RWMutex
	m       map[string]uint64
	unknown bool // a reload failed: every bucket may have changed
}

// filedAt is a bucket written by a change.
type filedAt struct {
	bucket string
	seq    uint64
}

// load reads every bucket's head ("all" is the records table's highest
// version).
func (h *heads) load(ctx context.Context, db *sql.DB) error {
	h.m = map[string]uint64{}
	rows, err := db.QueryContext(ctx, "SELECT bucket, MAX(seq) FROM record_buckets GROUP BY bucket")
	if err != nil {
		return fmt.Errorf("read bucket heads: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b string
		var seq uint64
		if err := rows.Scan(&b, &seq); err != nil {
			return fmt.Errorf("read bucket heads: %w", err)
		}
		h.m[b] = seq
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read bucket heads: %w", err)
	}
	var all sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT MAX(version) FROM records").Scan(&all); err != nil {
		return fmt.Errorf("read records head: %w", err)
	}
	h.m[domain.AllBucket] = uint64(all.Int64)
	return nil
}

// reload reads the heads again after a commit whose outcome is unknown; if
// that fails too, every bucket counts as changed (after says true) until
// syncd restarts: slower pulls, never a missed change.
func (h *heads) reload(ctx context.Context, db *sql.DB) {
	fresh := &heads{}
	err := fresh.load(ctx, db)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.unknown = true
		return
	}
	h.m = fresh.m
}

// raise records committed changes.
func (h *heads) raise(filed []filedAt) {
	if len(filed) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range filed {
		if f.seq > h.m[f.bucket] {
			h.m[f.bucket] = f.seq
		}
	}
}

// after reports whether bucket may hold changes after seq.
func (h *heads) after(bucket string, seq uint64) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.unknown || h.m[bucket] > seq
}

type fromDiskKey struct{}

// FromDisk returns a context under which the store's reads skip what it
// keeps in memory (bucket heads, members' links) and read the database:
// for checks that compare replicas with the database itself (the
// simulation), so that a stale memory cannot hide behind itself.
func FromDisk(ctx context.Context) context.Context {
	return context.WithValue(ctx, fromDiskKey{}, true)
}

func fromDisk(ctx context.Context) bool {
	v, _ := ctx.Value(fromDiskKey{}).(bool)
	return v
}

// VerifyMemory compares what the store keeps in memory with the database:
// every bucket's head and every member's remembered links. It is for
// checks on an idle store (the simulation, after it settles): writes
// committing meanwhile can make it report a difference that is not one.
func (s *Server) VerifyMemory(ctx context.Context) error {
	fresh := &heads{}
	if err := fresh.load(ctx, s.db.R); err != nil {
		return err
	}
	s.heads.mu.RLock()
	mem := make(map[string]uint64, len(s.heads.m))
	for b, seq := range s.heads.m {
		mem[b] = seq
	}
	s.heads.mu.RUnlock()
	for b, seq := range fresh.m {
		if mem[b] != seq {
			return fmt.Errorf("bucket %s: head %d in memory, %d in the database", b, mem[b], seq)
		}
	}
	for b, seq := range mem {
		if _, ok := fresh.m[b]; !ok && seq != 0 {
			return fmt.Errorf("bucket %s: head %d in memory, empty in the database", b, seq)
		}
	}
	s.links.mu.Lock()
	links := make(map[string][]string, len(s.links.m))
	for m, hs := range s.links.m {
		links[m] = hs
	}
	s.links.mu.Unlock()
	for m, hs := range links {
		disk, err := strings1(ctx, s.r, linkedQuery, m)
		if err != nil {
			return err
		}
		if !slices.Equal(hs, disk) {
			return fmt.Errorf("member %s: households %v in memory, %v in the database", m, hs, disk)
		}
	}
	return nil
}

// LastChange is the highest change number the database holds, as far as
// the heads know it (ok false when they do not: a reload failed). A
// device's cursor beyond it was given by an earlier self of the database
// that went back in time (restored from a backup without a new lineage).
func (s *Server) LastChange() (last uint64, ok bool) {
	s.heads.mu.RLock()
	defer s.heads.mu.RUnlock()
	return s.heads.m[domain.AllBucket], !s.heads.unknown
}
