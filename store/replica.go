package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

var replicaMigrations = []string{`
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- base: the server's canonical record (NULL until the server sent it);
-- local: what the user sees, base with the pending mutations applied.
CREATE TABLE records (
	id TEXT PRIMARY KEY, kind INTEGER NOT NULL, base BLOB, local BLOB NOT NULL,
	state INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '', updated_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX records_kind ON records (kind, id);
-- The durable outbox: every local write, numbered 1, 2, 3, ... Applied
-- mutations leave it; rejected ones stay, with the server's reason.
CREATE TABLE outbox (
	seq INTEGER PRIMARY KEY, record_id TEXT NOT NULL, body BLOB NOT NULL,
	status INTEGER NOT NULL DEFAULT 0, code TEXT NOT NULL DEFAULT '', field TEXT NOT NULL DEFAULT '',
	reason TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL);
CREATE INDEX outbox_record ON outbox (record_id, seq);
CREATE TABLE cursors (bucket TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
-- Which buckets each record of base sits in, for purging what leaves scope.
CREATE TABLE record_buckets (bucket TEXT NOT NULL, record_id TEXT NOT NULL, PRIMARY KEY (bucket, record_id)) WITHOUT ROWID;
CREATE INDEX record_buckets_record ON record_buckets (record_id);
`, ackedMigration, refetchMigration, recordsRowidMigration, attachmentsMigration}

// recordsRowidMigration makes records a rowid table. In a WITHOUT ROWID
// table a row keeps only about 1,000 bytes in its page (with 4 KiB pages)
// and spills the rest into an overflow page of its own; a record's row
// holds it twice (base and local), so an ordinary visit, and any sealed
// one (seal.go adds 29 bytes per value), spilled: 1,000 visits took 5.1
// MB instead of 1.5, and a List read three times as many pages. A rowid
// table keeps rows up to about 4,000 bytes in line (BENCHMARKS.md,
// "Encryption at rest"). secure_delete first: the dropped table's pages
// are zeroed, so no copy of a record stays behind in free pages to
// outlive its purge.
const recordsRowidMigration = `PRAGMA secure_delete = ON;
CREATE TABLE records_rowid (
	id TEXT PRIMARY KEY, kind INTEGER NOT NULL, base BLOB, local BLOB NOT NULL,
	state INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '', updated_ms INTEGER NOT NULL);
INSERT INTO records_rowid (id, kind, base, local, state, reason, updated_ms)
	SELECT id, kind, base, local, state, reason, updated_ms FROM records;
DROP TABLE records;
ALTER TABLE records_rowid RENAME TO records;
CREATE INDEX records_kind ON records (kind, id);`

// Outbox statuses.
const (
	OutboxPending  = 0
	OutboxRejected = 2
	// OutboxAcked is a mutation the server applied, kept for a retention
	// period in case the server goes back in time and loses it
	// (replica_numbering.go). It is no part of the record's local view: the
	// server's record holds it.
	OutboxAcked = 3
)

// Replica is a device's local database.
//
// It holds personal information the user may lose the right to see, so
// deleting must really remove it: every write transaction runs with
// PRAGMA secure_delete=ON, which makes SQLite overwrite deleted content
// (purged records, a wipe) with zeros instead of leaving it in free space,
// and Checkpoint folds the write-ahead log into the database file and
// truncates it, so that the log's older copies of the pages go too.
//
// Opened with a key, it is encrypted at rest: personal data and secrets
// are sealed value by value (seal.go).
type Replica struct {
	db   *DB
	seal *sealer // nil: a plain replica
}

// OpenReplica opens (creating) a plain device database; an encrypted one
// is refused (ErrWrongKey).
func OpenReplica(ctx context.Context, path string) (*Replica, error) {
	return OpenReplicaKey(ctx, path, nil)
}

// OpenReplicaKey opens (creating, with mode 0600) a device database.
// With a key (KeySize bytes) the replica is encrypted at rest (seal.go):
// a new one is created encrypted, a plain one is encrypted in place, and
// one encrypted with another key is refused (ErrWrongKey). Without a key
// an encrypted replica is refused (ErrWrongKey) and a plain one opens as
// it is.
func OpenReplicaKey(ctx context.Context, path string, key []byte) (*Replica, error) {
	var seal *sealer
	if key != nil {
		var err error
		if seal, err = newSealer(key); err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	if err := prepareFile(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db, err := openDB(ctx, path, deviceDB, replicaMigrations, 2)
	if err != nil {
		return nil, err
	}
	if _, err := db.W.ExecContext(ctx, secureDelete); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r := &Replica{db: db, seal: seal}
	if err := r.checkKey(ctx, path); err != nil {
		db.Close()
		return nil, err
	}
	return r, nil
}

// Encrypted reports whether the replica is sealed with a key.
func (r *Replica) Encrypted() bool { return r.seal != nil }

// secureDelete is set on the writer connection at the start of every write
// transaction: a pragma holds per connection, and database/sql may replace
// the connection, so setting it once at open is not enough.
const secureDelete = "PRAGMA secure_delete = ON"

// Checkpoint copies every page in the write-ahead log into the database
// file and truncates the log to zero bytes. After a purge or a wipe it
// leaves the removed records nowhere in the device's files (with
// secure_delete their pages in the database file are zeroed; the log held
// older copies of them). It fails if a reader kept the log from being
// fully checkpointed; nothing is lost then, and it may be retried.
func (r *Replica) Checkpoint(ctx context.Context) error {
	var busy, logFrames, done int
	if err := r.db.W.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if busy != 0 {
		return fmt.Errorf("checkpoint: a reader is using the log (%d of %d pages copied): retry", done, logFrames)
	}
	return nil
}

// Close closes the database.
func (r *Replica) Close() error { return r.db.Close() }

// RTx is a transaction on a replica.
type RTx struct {
	tx   *sql.Tx
	ctx  context.Context
	seal *sealer
}

// Update runs fn in a write transaction, committed if fn returns nil.
func (r *Replica) Update(ctx context.Context, fn func(*RTx) error) error {
	tx, err := r.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if _, err := tx.ExecContext(ctx, secureDelete); err != nil {
		tx.Rollback()
		return fmt.Errorf("secure delete: %w", err)
	}
	if err := fn(&RTx{tx: tx, ctx: ctx, seal: r.seal}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// View runs fn in a read transaction (a consistent snapshot).
func (r *Replica) View(ctx context.Context, fn func(*RTx) error) error {
	tx, err := r.db.R.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback()
	return fn(&RTx{tx: tx, ctx: ctx, seal: r.seal})
}

// Meta reads a meta value ("" if unset).
func (t *RTx) Meta(key string) (string, error) {
	var v []byte
	err := t.tx.QueryRowContext(t.ctx, "SELECT value FROM meta WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return t.seal.openText(v, "meta", "value", key)
}

// MetaInt reads a numeric meta value (0 if unset).
func (t *RTx) MetaInt(key string) (int64, error) {
	v, err := t.Meta(key)
	if err != nil || v == "" {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// SetMeta writes a meta value (sealed in an encrypted replica: every
// meta value is).
func (t *RTx) SetMeta(key, value string) error {
	if key == sealCheckKey {
		return fmt.Errorf("meta key %q is the replica's own (its key check)", key)
	}
	_, err := t.tx.ExecContext(t.ctx, "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
		key, t.seal.sealText(value, "meta", "value", key))
	return err
}

// OutboxRow is one queued mutation with its state.
type OutboxRow struct {
	Mutation            *pb.Mutation
	Status              int
	Code, Field, Reason string
	CreatedMs           int64
}

// AddOutbox queues a mutation.
func (t *RTx) AddOutbox(m *pb.Mutation, nowMs int64) error {
	body, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	row := seqRow(m.GetSeq())
	_, err = t.tx.ExecContext(t.ctx, "INSERT INTO outbox (seq, record_id, body, reason, created_ms) VALUES (?, ?, ?, ?, ?)", m.GetSeq(), m.GetRecordId(),
		t.seal.seal(body, "outbox", "body", row), t.seal.sealText("", "outbox", "reason", row), nowMs)
	return err
}

// RejectOutbox marks a mutation rejected for good, keeping it.
func (t *RTx) RejectOutbox(seq uint64, code, field, reason string) error {
	_, err := t.tx.ExecContext(t.ctx, "UPDATE outbox SET status = ?, code = ?, field = ?, reason = ? WHERE seq = ?", OutboxRejected, code, field,
		t.seal.sealText(reason, "outbox", "reason", seqRow(seq)), seq)
	return err
}

const outboxCols = "seq, body, status, code, field, reason, created_ms"

func (t *RTx) scanOutbox(rows *sql.Rows) ([]OutboxRow, error) {
	defer rows.Close()
	var out []OutboxRow
	for rows.Next() {
		var o OutboxRow
		var seq uint64
		var body, reason []byte
		if err := rows.Scan(&seq, &body, &o.Status, &o.Code, &o.Field, &reason, &o.CreatedMs); err != nil {
			return nil, err
		}
		row := seqRow(seq)
		var err error
		if body, err = t.seal.open(body, "outbox", "body", row); err != nil {
			return nil, err
		}
		if o.Reason, err = t.seal.openText(reason, "outbox", "reason", row); err != nil {
			return nil, err
		}
		o.Mutation = &pb.Mutation{}
		if err := proto.Unmarshal(body, o.Mutation); err != nil {
			return nil, fmt.Errorf("decode outbox: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Outbox lists up to limit queued mutations with the given status, in order.
func (t *RTx) Outbox(status, limit int) ([]OutboxRow, error) {
	rows, err := t.tx.QueryContext(t.ctx, "SELECT "+outboxCols+" FROM outbox WHERE status = ? ORDER BY seq LIMIT ?", status, limit)
	if err != nil {
		return nil, err
	}
	return t.scanOutbox(rows)
}

// OutboxFor lists a record's queued mutations, pending and rejected (not
// acknowledged ones), in order.
func (t *RTx) OutboxFor(recordID string) ([]OutboxRow, error) {
	rows, err := t.tx.QueryContext(t.ctx, "SELECT "+outboxCols+" FROM outbox WHERE record_id = ? AND status != ? ORDER BY seq", recordID, OutboxAcked)
	if err != nil {
		return nil, err
	}
	return t.scanOutbox(rows)
}

// CountOutbox counts queued mutations with a status.
func (t *RTx) CountOutbox(status int) (int, error) {
	var n int
	err := t.tx.QueryRowContext(t.ctx, "SELECT COUNT(*) FROM outbox WHERE status = ?", status).Scan(&n)
	return n, err
}

// LocalRecord is a record as the device holds it.
type LocalRecord struct {
	Base      *pb.Record // nil until the server sent it
	Local     *pb.Record
	State     int
	Reason    string
	UpdatedMs int64
}

func decodeRecord(b []byte) (*pb.Record, error) {
	if b == nil {
		return nil, nil
	}
	r := &pb.Record{}
	return r, proto.Unmarshal(b, r)
}

const recordCols = "id, base, local, state, reason, updated_ms"

// scanRecord reads a row of recordCols, opening its sealed values.
func (t *RTx) scanRecord(row interface{ Scan(...any) error }) (*LocalRecord, error) {
	var id string
	var base, local, reason []byte
	lr := &LocalRecord{}
	if err := row.Scan(&id, &base, &local, &lr.State, &reason, &lr.UpdatedMs); err != nil {
		return nil, err
	}
	var err error
	if base, err = t.seal.open(base, "records", "base", id); err != nil {
		return nil, err
	}
	if local, err = t.seal.open(local, "records", "local", id); err != nil {
		return nil, err
	}
	if lr.Reason, err = t.seal.openText(reason, "records", "reason", id); err != nil {
		return nil, err
	}
	if lr.Base, err = decodeRecord(base); err != nil {
		return nil, fmt.Errorf("decode record %s: %w", id, err)
	}
	if lr.Local, err = decodeRecord(local); err != nil {
		return nil, fmt.Errorf("decode record %s: %w", id, err)
	}
	return lr, nil
}

// Record reads a local record; ErrNotFound if there is none.
func (t *RTx) Record(id string) (*LocalRecord, error) {
	lr, err := t.scanRecord(t.tx.QueryRowContext(t.ctx, "SELECT "+recordCols+" FROM records WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return lr, err
}

// PutRecord writes a local record.
func (t *RTx) PutRecord(lr *LocalRecord) error {
	var base []byte
	var err error
	if lr.Base != nil {
		if base, err = proto.Marshal(lr.Base); err != nil {
			return err
		}
	}
	local, err := proto.Marshal(lr.Local)
	if err != nil {
		return err
	}
	id := lr.Local.GetId()
	_, err = t.tx.ExecContext(t.ctx, `INSERT INTO records (id, kind, base, local, state, reason, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, base = excluded.base, local = excluded.local,
		state = excluded.state, reason = excluded.reason, updated_ms = excluded.updated_ms`,
		id, int(lr.Local.GetKind()), t.seal.seal(base, "records", "base", id), t.seal.seal(local, "records", "local", id),
		lr.State, t.seal.sealText(lr.Reason, "records", "reason", id), lr.UpdatedMs)
	if err != nil {
		return err
	}
	if lr.Base == nil {
		return nil
	}
	if _, err := t.tx.ExecContext(t.ctx, "DELETE FROM record_buckets WHERE record_id = ?", lr.Base.GetId()); err != nil {
		return err
	}
	for _, b := range lr.Base.GetBuckets() {
		if _, err := t.tx.ExecContext(t.ctx, "INSERT OR IGNORE INTO record_buckets (bucket, record_id) VALUES (?, ?)", b, lr.Base.GetId()); err != nil {
			return err
		}
	}
	return nil
}

// DeleteRecord removes a local record.
func (t *RTx) DeleteRecord(id string) error {
	if _, err := t.tx.ExecContext(t.ctx, "DELETE FROM record_buckets WHERE record_id = ?", id); err != nil {
		return err
	}
	_, err := t.tx.ExecContext(t.ctx, "DELETE FROM records WHERE id = ?", id)
	return err
}

// Records lists local records of a kind (all kinds for KIND_UNSPECIFIED),
// by id.
func (t *RTx) Records(kind pb.Kind) ([]*LocalRecord, error) {
	rows, err := t.tx.QueryContext(t.ctx, "SELECT "+recordCols+" FROM records WHERE ? = 0 OR kind = ? ORDER BY id", int(kind), int(kind))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*LocalRecord
	for rows.Next() {
		lr, err := t.scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, lr)
	}
	return out, rows.Err()
}

// CountRecords counts local records by state.
func (t *RTx) CountRecords() (map[int]int, error) {
	return t.countByState("SELECT state, COUNT(*) FROM records GROUP BY state")
}

// countByState runs q, which yields (state, count) rows, into a map.
func (t *RTx) countByState(q string) (map[int]int, error) {
	rows, err := t.tx.QueryContext(t.ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var s, n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

// Cursors lists the device's cursors.
func (t *RTx) Cursors() ([]*pb.Cursor, error) {
	rows, err := t.tx.QueryContext(t.ctx, "SELECT bucket, seq FROM cursors ORDER BY bucket")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*pb.Cursor
	for rows.Next() {
		c := &pb.Cursor{}
		if err := rows.Scan(&c.Bucket, &c.Seq); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// SetCursors replaces the cursors with the scope the server sent and
// returns the ids of records that sit in no bucket of it any more.
func (t *RTx) SetCursors(cursors []*pb.Cursor) ([]string, error) {
	if _, err := t.tx.ExecContext(t.ctx, "DELETE FROM cursors"); err != nil {
		return nil, err
	}
	for _, c := range cursors {
		if _, err := t.tx.ExecContext(t.ctx, "INSERT INTO cursors (bucket, seq) VALUES (?, ?)", c.GetBucket(), c.GetSeq()); err != nil {
			return nil, err
		}
	}
	return strings1(t.ctx, t.tx, `SELECT id FROM records WHERE base IS NOT NULL AND NOT EXISTS (
		SELECT 1 FROM record_buckets rb JOIN cursors c ON c.bucket = rb.bucket WHERE rb.record_id = records.id)`)
}

// Wipe deletes every record, mutation, cursor, credential and file. An
// encrypted replica keeps its key check: it stays encrypted, and opens
// only with its key.
func (t *RTx) Wipe() error {
	for _, q := range []string{"DELETE FROM records", "DELETE FROM outbox", "DELETE FROM cursors", "DELETE FROM record_buckets",
		"DELETE FROM meta WHERE key != '" + sealCheckKey + "'", "DELETE FROM stale", "DELETE FROM refetching",
		"DELETE FROM att_chunks", "DELETE FROM att_files"} {
		if _, err := t.tx.ExecContext(t.ctx, q); err != nil {
			return err
		}
	}
	return nil
}
