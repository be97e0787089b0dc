package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// retentionMigration makes history older than the retention window
// removable (Compact):
//   - a partial index finds the gone marks by change number without
//     scanning every bucket row (only gone rows are in it);
//   - bucket_floors keeps, per bucket, the highest change number of a gone
//     mark deleted from it: a device whose cursor there is lower may hold
//     a record that left without its mark reaching it, and reads the
//     bucket again (SyncResponse.refetch_buckets);
//   - mutation_results.answered_ms dates each kept result; rows from before
//     this migration count as answered when it ran (meta
//     retention_since_ms);
//   - devices.results_floor is the highest mutation number of the device
//     whose result may have been deleted: a retry at or below it cannot be
//     told from other content (Tx.Result).
const retentionMigration = `CREATE INDEX record_buckets_gone ON record_buckets (seq) WHERE gone = 1;
CREATE TABLE bucket_floors (bucket TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
ALTER TABLE mutation_results ADD COLUMN answered_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN results_floor INTEGER NOT NULL DEFAULT 0;
INSERT OR IGNORE INTO meta (key, value) VALUES ('retention_since_ms', CAST(CAST(strftime('%s', 'now') AS INTEGER) * 1000 AS TEXT));`

// Meta keys of the retention pass.
const (
	// metaHorizon is the highest change number committed before the
	// window of the last pass: gone marks up to it may be deleted.
	metaHorizon    = "retention_horizon"
	metaSinceMs    = "retention_since_ms"
	compactBatch   = 500  // rows deleted per writer job
	horizonBatch   = 1000 // changes read per step of the horizon
	devicesPerScan = 64   // devices looked at per writer job
)

// floors holds bucket_floors in memory: a pull compares each cursor with
// its bucket's floor without a query.
type floors struct {
	mu sync.RWMutex
	m  map[string]uint64
}

func (f *floors) load(ctx context.Context, db *sql.DB) error {
	m := map[string]uint64{}
	rows, err := db.QueryContext(ctx, "SELECT bucket, seq FROM bucket_floors")
	if err != nil {
		return fmt.Errorf("read bucket floors: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b string
		var seq uint64
		if err := rows.Scan(&b, &seq); err != nil {
			return fmt.Errorf("read bucket floors: %w", err)
		}
		m[b] = seq
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read bucket floors: %w", err)
	}
	f.mu.Lock()
	f.m = m
	f.mu.Unlock()
	return nil
}

func (f *floors) raise(m map[string]uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for b, seq := range m {
		if seq > f.m[b] {
			f.m[b] = seq
		}
	}
}

// BucketFloor is the highest change number of a gone mark the retention
// pass deleted from bucket (0: none). A device whose cursor in the bucket
// is below it may hold records that left the bucket without learning it:
// it must read the bucket again from the start.
func (s *Server) BucketFloor(bucket string) uint64 {
	s.floors.mu.RLock()
	defer s.floors.mu.RUnlock()
	return s.floors.m[bucket]
}

// CompactStats says what one retention pass removed.
type CompactStats struct {
	Horizon     uint64 // changes up to it were committed before the window
	GoneRows    int    // gone marks deleted
	Results     int    // kept mutation results deleted
	Changes     int    // changelog rows deleted (published ones only)
	ChangeFloor uint64 // the lowest change the changes table still holds
}

// Compact removes what is older than the retention window (now - window):
// the gone marks of records that left a bucket, the changelog rows the
// relay has published (up to published; the last change always stays, it
// numbers the next), and the kept mutation results, except every refused
// result (a late retry gets its refusal; refused events keep their chain
// links), and each device's newest result and newest event (the numbering
// checks and ChainHead read them). It works in small writer jobs, so a
// sync waits at most one of them. published 0 keeps every changelog row.
func (s *Server) Compact(ctx context.Context, now time.Time, window time.Duration, published uint64) (CompactStats, error) {
	var st CompactStats
	cutoff := now.Add(-window).UnixMilli()
	h, err := s.advanceHorizon(ctx, cutoff)
	if err != nil {
		return st, err
	}
	st.Horizon = h
	if st.GoneRows, err = s.compactGone(ctx, h); err != nil {
		return st, err
	}
	if st.Changes, st.ChangeFloor, err = s.compactChanges(ctx, min(h, published)); err != nil {
		return st, err
	}
	if st.Results, err = s.compactResults(ctx, cutoff); err != nil {
		return st, err
	}
	return st, nil
}

// Horizon is the highest change number committed before the window of the
// last retention pass (0 before any).
func (s *Server) Horizon(ctx context.Context) (uint64, error) {
	return metaUint(ctx, s.r, metaHorizon)
}

func metaUint(ctx context.Context, q queryer, key string) (uint64, error) {
	var v string
	err := q.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read meta %s: %w", key, err)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("meta %s: %q is not a number", key, v)
	}
	return n, nil
}

// advanceHorizon moves the horizon over the changes committed at or before
// cutoff, in change order, stopping at the first later one (a clock set
// back cannot make a newer change count as old). The changes' own
// committed_ms says when; the rows after the horizon are never deleted.
func (s *Server) advanceHorizon(ctx context.Context, cutoff int64) (uint64, error) {
	h, err := metaUint(ctx, s.r, metaHorizon)
	if err != nil {
		return 0, err
	}
	start := h
scan:
	for {
		rows, err := s.ChangesAfter(ctx, h, horizonBatch)
		if err != nil {
			return 0, err
		}
		for _, r := range rows {
			if committedMs(r.Body) > cutoff {
				break scan
			}
			h = r.Seq
		}
		if len(rows) < horizonBatch {
			break
		}
	}
	if h == start {
		return h, nil
	}
	return h, s.Write(ctx, func(tx *Tx) error {
		_, err := tx.Exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
			metaHorizon, strconv.FormatUint(h, 10))
		return err
	})
}

// committedMs reads Change.committed_ms from a change's encoding without
// decoding the record it carries; -1 if it is missing or unreadable, which
// counts as newer than any cutoff.
func committedMs(b []byte) int64 {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 1<<63 - 1
		}
		b = b[n:]
		if num == changeCommittedField && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 1<<63 - 1
			}
			return int64(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 1<<63 - 1
		}
		b = b[n:]
	}
	return 1<<63 - 1
}

var changeCommittedField = (&pb.Change{}).ProtoReflect().Descriptor().Fields().ByName("committed_ms").Number()

// compactGone deletes the gone marks up to horizon and raises the floors
// of their buckets in the same transaction.
func (s *Server) compactGone(ctx context.Context, horizon uint64) (int, error) {
	total := 0
	for {
		n := 0
		raised := map[string]uint64{}
		err := s.Write(ctx, func(tx *Tx) error {
			rows, err := txq{tx}.QueryContext(tx.ctx, "SELECT bucket, record_id, seq FROM record_buckets WHERE gone = 1 AND seq <= ? ORDER BY seq LIMIT ?", horizon, compactBatch)
			if err != nil {
				return err
			}
			type mark struct {
				bucket, id string
				seq        uint64
			}
			var marks []mark
			for rows.Next() {
				var m mark
				if err := rows.Scan(&m.bucket, &m.id, &m.seq); err != nil {
					rows.Close()
					return err
				}
				marks = append(marks, m)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, m := range marks {
				if _, err := tx.Exec("DELETE FROM record_buckets WHERE bucket = ? AND record_id = ? AND gone = 1", m.bucket, m.id); err != nil {
					return err
				}
				raised[m.bucket] = max(raised[m.bucket], m.seq)
			}
			for b, seq := range raised {
				if _, err := tx.Exec(`INSERT INTO bucket_floors (bucket, seq) VALUES (?, ?)
					ON CONFLICT (bucket) DO UPDATE SET seq = max(seq, excluded.seq)`, b, seq); err != nil {
					return err
				}
			}
			// Raised before anyone can pull without the marks.
			tx.AfterCommit(func() { s.floors.raise(raised) })
			n = len(marks)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("compact gone marks: %w", err)
		}
		total += n
		if n < compactBatch {
			return total, nil
		}
	}
}

// compactChanges deletes the changelog rows up to upTo, never the last
// one (its number is where the next change's comes from). It returns how
// many it deleted and the lowest change left.
func (s *Server) compactChanges(ctx context.Context, upTo uint64) (int, uint64, error) {
	last, err := s.LastSeq(ctx)
	if err != nil {
		return 0, 0, err
	}
	upTo = min(upTo, last-min(last, 1))
	total := 0
	for {
		first, err := s.FirstChange(ctx)
		if err != nil || first == 0 || first > upTo {
			return total, first, err
		}
		to := min(upTo, first+compactBatch-1)
		var n int64
		err = s.Write(ctx, func(tx *Tx) error {
			res, err := tx.Exec("DELETE FROM changes WHERE seq >= ? AND seq <= ?", first, to)
			if err == nil {
				n, _ = res.RowsAffected()
			}
			return err
		})
		if err != nil {
			return total, first, fmt.Errorf("compact changes: %w", err)
		}
		total += int(n)
	}
}

// FirstChange is the lowest change number the changes table holds (0 when
// it is empty): above 1 once the retention pass removed older published
// ones. A rebuilt stream starts there.
func (s *Server) FirstChange(ctx context.Context) (uint64, error) {
	var seq sql.NullInt64
	err := s.r.QueryRowContext(ctx, "SELECT MIN(seq) FROM changes").Scan(&seq)
	return uint64(seq.Int64), err
}

// compactResults deletes, device by device, the kept results answered at
// or before cutoff, in number order, from the device's results floor up:
// every refused result stays, and so do the device's newest result and its
// newest event; the floor rises past what was looked at.
func (s *Server) compactResults(ctx context.Context, cutoff int64) (int, error) {
	since, err := metaUint(ctx, s.r, metaSinceMs)
	if err != nil {
		return 0, err
	}
	total, after := 0, ""
	for {
		var ids []string
		var floors []uint64
		rows, err := s.r.QueryContext(ctx, "SELECT id, results_floor FROM devices WHERE id > ? ORDER BY id LIMIT ?", after, devicesPerScan)
		if err != nil {
			return total, fmt.Errorf("compact results: %w", err)
		}
		for rows.Next() {
			var id string
			var f uint64
			if err := rows.Scan(&id, &f); err != nil {
				rows.Close()
				return total, err
			}
			ids, floors = append(ids, id), append(floors, f)
		}
		rows.Close()
		if len(ids) == 0 {
			return total, nil
		}
		after = ids[len(ids)-1]
		// One job takes devices until it has deleted a batch's worth; a
		// device with more left is looked at again in the next job.
		for i := 0; i < len(ids); {
			n, next := 0, i
			err = s.Write(ctx, func(tx *Tx) error {
				n, next = 0, i
				for next < len(ids) && n < compactBatch {
					d, to, full, err := tx.compactDeviceResults(ids[next], floors[next], cutoff, int64(since))
					if err != nil {
						return err
					}
					n, floors[next] = n+d, to
					if !full {
						next++
					}
				}
				return nil
			})
			if err != nil {
				return total, fmt.Errorf("compact results: %w", err)
			}
			total, i = total+n, next
		}
	}
}

// compactDeviceResults looks at up to compactBatch of a device's results
// above its floor; full says it stopped at that limit (there may be more).
func (t *Tx) compactDeviceResults(deviceID string, floor uint64, cutoff, since int64) (deleted int, to uint64, full bool, err error) {
	var newest, newestEvent sql.NullInt64
	if err := t.QueryRow("SELECT MAX(seq) FROM mutation_results WHERE device_id = ?", deviceID).Scan(&newest); err != nil {
		return 0, floor, false, err
	}
	if err := t.QueryRow("SELECT MAX(seq) FROM mutation_results WHERE device_id = ? AND chain_hash != ''", deviceID).Scan(&newestEvent); err != nil {
		return 0, floor, false, err
	}
	rows, err := txq{t}.QueryContext(t.ctx, "SELECT seq, status, answered_ms FROM mutation_results WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
		deviceID, floor, compactBatch)
	if err != nil {
		return 0, floor, false, err
	}
	var drop []uint64
	to, looked := floor, 0
	for rows.Next() {
		looked++
		var seq uint64
		var status int
		var ms int64
		if err := rows.Scan(&seq, &status, &ms); err != nil {
			rows.Close()
			return 0, floor, false, err
		}
		if ms == 0 {
			ms = since
		}
		if ms > cutoff || int64(seq) >= newest.Int64 {
			break
		}
		to = seq
		if pb.MutationStatus(status) != pb.MutationStatus_MUTATION_STATUS_REJECTED && int64(seq) != newestEvent.Int64 {
			drop = append(drop, seq)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, floor, false, err
	}
	if to == floor {
		return 0, floor, false, nil
	}
	if len(drop) > 0 {
		if _, err := t.Exec("DELETE FROM mutation_results WHERE device_id = ? AND seq > ? AND seq <= ? AND status != ? AND seq != ?",
			deviceID, floor, to, int(pb.MutationStatus_MUTATION_STATUS_REJECTED), newestEvent.Int64); err != nil {
			return 0, floor, false, err
		}
	}
	if _, err := t.Exec("UPDATE devices SET results_floor = ? WHERE id = ?", to, deviceID); err != nil {
		return 0, floor, false, err
	}
	return len(drop), to, looked == compactBatch && to > floor, nil
}

// resultCompacted reports whether the retention pass may have deleted the
// result of a device's mutation number.
func (t *Tx) resultCompacted(deviceID string, seq uint64) (bool, error) {
	var floor uint64
	err := t.QueryRow("SELECT results_floor FROM devices WHERE id = ?", deviceID).Scan(&floor)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return seq <= floor, err
}
