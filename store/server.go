package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

var serverMigrations = []string{`
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE units (
	id TEXT PRIMARY KEY, kind INTEGER NOT NULL, parent_id TEXT NOT NULL, name TEXT NOT NULL,
	village_id TEXT NOT NULL, town_id TEXT NOT NULL);
CREATE TABLE users (
	id TEXT PRIMARY KEY, name TEXT NOT NULL, role INTEGER NOT NULL, unit_id TEXT NOT NULL,
	phone TEXT NOT NULL, village_id TEXT NOT NULL, town_id TEXT NOT NULL);
-- A household is linked to one member at a time.
CREATE TABLE links (household_id TEXT PRIMARY KEY, member_id TEXT NOT NULL);
CREATE INDEX links_member ON links (member_id);
-- The current state of each record (body: fieldsync.v1.Record).
CREATE TABLE records (
	id TEXT PRIMARY KEY, kind INTEGER NOT NULL, version INTEGER NOT NULL,
	village_id TEXT NOT NULL, town_id TEXT NOT NULL, body BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX records_version ON records (version);
-- Which buckets each record sits in, with the change number of its last
-- change: a pull is a range scan of (bucket, seq).
CREATE TABLE record_buckets (
	bucket TEXT NOT NULL, record_id TEXT NOT NULL, seq INTEGER NOT NULL,
	PRIMARY KEY (bucket, record_id)) WITHOUT ROWID;
CREATE INDEX record_buckets_seq ON record_buckets (bucket, seq);
-- The changelog: one row per committed change, gap-free, in commit order
-- (body: fieldsync.v1.Change). The relay publishes it to JetStream.
CREATE TABLE changes (seq INTEGER PRIMARY KEY, subject TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE dispute_mediators (
	user_id TEXT NOT NULL, dispute_id TEXT NOT NULL, PRIMARY KEY (user_id, dispute_id)) WITHOUT ROWID;
CREATE TABLE devices (
	id TEXT PRIMARY KEY, user_id TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
	name TEXT NOT NULL, app_version TEXT NOT NULL, enrolled_ms INTEGER NOT NULL,
	last_seen_ms INTEGER NOT NULL DEFAULT 0, last_seq INTEGER NOT NULL DEFAULT 0,
	pending INTEGER NOT NULL DEFAULT 0, revoked_ms INTEGER NOT NULL DEFAULT 0);
CREATE INDEX devices_user ON devices (user_id);
-- Results of mutations that were not simply applied, so that a retry after
-- a lost response gets the same answer. A mutation at or below a device's
-- last_seq with no row here was applied.
CREATE TABLE mutation_results (
	device_id TEXT NOT NULL, seq INTEGER NOT NULL, record_id TEXT NOT NULL,
	status INTEGER NOT NULL, code TEXT NOT NULL, field TEXT NOT NULL, reason TEXT NOT NULL,
	PRIMARY KEY (device_id, seq)) WITHOUT ROWID;
CREATE TABLE enroll_codes (
	code_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, expires_ms INTEGER NOT NULL,
	used_ms INTEGER NOT NULL DEFAULT 0);
`, auditMigration, goneMigration, bucketIndexMigration, allBucketMigration, refusedLinkMigration, numberingMigration, replicaHistoryMigration,
	adminAccountMigration,
	accountabilityMigration,
	quotaMigration,
	hqCredentialMigration,
	retentionMigration,
	orgChangeMigration}

// goneMigration keeps a record's row in a bucket it left, marked gone with
// the change number of the move: a device that still syncs that bucket
// learns the record left and purges it.
const goneMigration = `ALTER TABLE record_buckets ADD COLUMN gone INTEGER NOT NULL DEFAULT 0;`

// bucketIndexMigration lets PutRecord find a record's bucket rows without
// scanning the table (syncbench's profile: 92% of server CPU at 11,000
// households went to that scan).
const bucketIndexMigration = `CREATE INDEX record_buckets_record ON record_buckets (record_id);`

// allBucketMigration stops filing every record in the "all" bucket (HQ's
// scope): that bucket is the records table in version order, so its rows
// were a second copy of the records_version index. PutRecord now knows a
// record's previous buckets from its stored state, so the index by record
// id goes too. Each change writes 6 fewer B-tree entries (syncbench).
const allBucketMigration = `DELETE FROM record_buckets WHERE bucket = 'all';
DROP INDEX record_buckets_record;`

// refusedLinkMigration keeps, beside the result of an event the server
// refused, the event's place in its device's hash chain (prev_hash and
// hash): the device chains its next events on it, so without it the
// stored chain shows a gap no one can tell from a deleted event.
const refusedLinkMigration = `ALTER TABLE mutation_results ADD COLUMN chain_prev TEXT NOT NULL DEFAULT '';
ALTER TABLE mutation_results ADD COLUMN chain_hash TEXT NOT NULL DEFAULT '';`

// numberingMigration keeps a content hash of every mutation the server
// answered, applied ones included (one row per device and number), so that
// a number reused with other content (a phone restored from an older copy)
// is told from a late retry of the same mutation: the retry gets its old
// answer, the other content never gets APPLIED. Rows and numbers from
// before this migration have no hash and count as matching. Beside the
// device: the id of the copy of its database that syncs (another copy
// syncing with the same credential is refused), the id offered to a copy
// found restored (it becomes the device's when that copy uses it), and
// when and how often its numbering went back.
const numberingMigration = `ALTER TABLE mutation_results ADD COLUMN hash BLOB;
ALTER TABLE devices ADD COLUMN replica_id TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN offered_replica_id TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN restored_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN restores INTEGER NOT NULL DEFAULT 0;`

// replicaHistoryMigration keeps every replica id a device synced with or
// was offered in this database (KnownReplica): an id it never knew can only
// have been offered by a later self of the database that was lost (it was
// restored from a backup), while a known one no longer current is a clone.
const replicaHistoryMigration = `CREATE TABLE replica_ids (
	device_id TEXT NOT NULL, replica_id TEXT NOT NULL, PRIMARY KEY (device_id, replica_id)) WITHOUT ROWID;
INSERT OR IGNORE INTO replica_ids SELECT id, replica_id FROM devices WHERE replica_id != '';
INSERT OR IGNORE INTO replica_ids SELECT id, offered_replica_id FROM devices WHERE offered_replica_id != '';`

// Server is syncd's authoritative database.
type Server struct {
	db       *DB
	path     string                 // the database file, for a full disk's free space (diskfull.go)
	r        *readStmts             // readers, with prepared statements
	w        *writeStmts            // the writer's prepared statements
	instance atomic.Pointer[string] // the lineage: change ids are <lineage>-<seq> (lineage.go)
	region   string                 // the region the database is pinned to (region.go)
	auditKey []byte                 // MAC key of new audit entries (WithAuditKey); nil: none

	heads  heads     // each bucket's highest change number (heads.go)
	links  linkCache // members' linked households (links.go)
	floors floors    // each bucket's compacted gone marks (retention.go)

	jobs    chan job
	between chan func() // BetweenCommits
	quit    chan struct{}
	done    chan struct{}
	closeMu sync.Once

	commits, committed, busyNs atomic.Uint64 // CommitStats

	// OnCommit, if set before the first write, is called by the writer after
	// each commit with the highest change number and the buckets changed.
	OnCommit func(lastSeq uint64, buckets []string)
	// OnAudit, if set before the first write, is called by the writer after
	// each commit that appended to the audit log (the audit publisher's
	// poke; OnCommit runs only for commits that changed buckets).
	OnAudit func()
}

type job struct {
	fn   func(*Tx) error
	done chan error
}

// CommitStats says what the single writer has done: how many transactions
// it committed (each one fsync of the WAL with synchronous=FULL), how many
// jobs they carried (jobs per commit is what group commit gains over one
// fsync per write), and how long it was busy (from taking a batch to
// answering it; busy over wall time is how close the writer is to being
// the bottleneck).
func (s *Server) CommitStats() (commits, jobs uint64, busy time.Duration) {
	return s.commits.Load(), s.committed.Load(), time.Duration(s.busyNs.Load())
}

// maxBatch bounds how many queued writes one commit takes.
const maxBatch = 512

// ServerOption changes how OpenServer opens the database.
type ServerOption func(*serverOptions)

type serverOptions struct {
	writerPragmas []string
	auditKey      []byte // WithAuditKey
	region        string // WithRegion
	regionGiven   bool
}

// ExternalCheckpoints leaves the WAL's checkpoints to a backup that runs
// beside the store and copies the WAL (Litestream, package backup): it
// checkpoints once what the WAL holds is copied, and the writer's own
// automatic checkpoint after a commit would only compete with it
// (Litestream's advice). Without such a backup running, the WAL grows
// without bound: use it only together with one.
func ExternalCheckpoints() ServerOption {
	return func(o *serverOptions) { o.writerPragmas = append(o.writerPragmas, "wal_autocheckpoint(0)") }
}

// OpenServer opens (creating) the server database at path and starts its
// writer.
func OpenServer(ctx context.Context, path string, opts ...ServerOption) (*Server, error) {
	var o serverOptions
	for _, opt := range opts {
		opt(&o)
	}
	db, err := openDB(ctx, path, serverDB, serverMigrations, 8, o.writerPragmas...)
	if err != nil {
		return nil, err
	}
	if o.auditKey != nil {
		if err := checkAuditKey(ctx, db.W, o.auditKey); err != nil {
			db.Close()
			return nil, err
		}
	}
	s := &Server{db: db, path: path, auditKey: o.auditKey, jobs: make(chan job, maxBatch), between: make(chan func()), quit: make(chan struct{}), done: make(chan struct{}),
		r: &readStmts{db: db.R}, w: &writeStmts{db: db.W, stmts: map[string]*sql.Stmt{}, pending: map[string]bool{}}}
	var instance string
	if err := db.W.QueryRowContext(ctx, "SELECT value FROM meta WHERE key='instance'").Scan(&instance); errors.Is(err, sql.ErrNoRows) {
		instance = domain.RandomToken(8)
		if _, err := db.W.ExecContext(ctx, "INSERT INTO meta(key, value) VALUES('instance', ?)", instance); err != nil {
			db.Close()
			return nil, fmt.Errorf("init meta: %w", err)
		}
	} else if err != nil {
		db.Close()
		return nil, fmt.Errorf("read meta: %w", err)
	}
	s.instance.Store(&instance)
	if o.regionGiven {
		s.region, err = pinRegion(ctx, db.W, o.region)
	} else {
		err = db.W.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", metaRegion).Scan(&s.region)
		if errors.Is(err, sql.ErrNoRows) {
			err = nil
		}
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := s.heads.load(ctx, db.W); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.floors.load(ctx, db.W); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.backfillOrg(ctx); err != nil {
		db.Close()
		return nil, err
	}
	go s.writer()
	return s, nil
}

// Instance is the database's lineage, the prefix of its change ids (see
// Lineage).
func (s *Server) Instance() string { return *s.instance.Load() }

// Close stops the writer after the writes already queued, then closes the
// database.
func (s *Server) Close() error {
	s.closeMu.Do(func() { close(s.quit) })
	<-s.done
	return s.db.Close()
}

// BetweenCommits runs fn on the writer between two transactions: fn can
// take the database's write lock at once, where another connection's
// wait for it may never find a gap in a stream of group commits (the
// writer is busy 98% of a sync storm). Writes queue meanwhile: keep fn
// short. The backup checkpoints the WAL this way.
func (s *Server) BetweenCommits(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case s.between <- func() { defer close(done); fn() }:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return ErrClosed
	}
	<-done
	return nil
}

// Write runs fn in a transaction, committed together with other writes
// queued at the same time (group commit). It returns after the commit is
// durable, with fn's error if fn failed (its effects undone, the others'
// kept) or the commit's.
func (s *Server) Write(ctx context.Context, fn func(*Tx) error) error {
	j := job{fn: fn, done: make(chan error, 1)}
	select {
	case <-s.quit:
		return ErrClosed
	default:
	}
	select {
	case s.jobs <- j:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return ErrClosed
	}
	// Once queued, wait for the outcome even if ctx ends: the caller must
	// not take an unknown outcome for a failure it may report as such. A
	// job that slipped in as the writer stopped gets ErrClosed: the writer
	// answers every job it took before it closes done.
	select {
	case err := <-j.done:
		return err
	case <-s.done:
		select {
		case err := <-j.done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (s *Server) writer() {
	defer close(s.done)
	var nextSeq uint64
	for {
		var first job
		select {
		case first = <-s.jobs:
		case fn := <-s.between:
			fn()
			continue
		case <-s.quit:
			// Finish what is queued, then stop.
			for {
				select {
				case j := <-s.jobs:
					s.commit([]job{j}, &nextSeq)
				default:
					return
				}
			}
		}
		batch := []job{first}
	drain:
		for len(batch) < maxBatch {
			select {
			case j := <-s.jobs:
				batch = append(batch, j)
			default:
				break drain
			}
		}
		s.commit(batch, &nextSeq)
	}
}

// commit runs a batch of jobs in one transaction, each after the first in
// a savepoint. The first job runs bare: if it fails, the whole transaction
// (which holds nothing else) is rolled back and the rest of the batch
// commits in a new one. A savepoint is not free: SQLite copies every page
// a job touches into the savepoint's sub-journal, and each statement
// inside it trims that journal by walking it from the start, so a large
// job (an import of 5,000 households) cost time quadratic in its size
// (BenchmarkPutRecordBatch500 with 10,000 records stored: 29.7 -> 14.8 ms),
// and a lone small job (a single sync on an idle
// server) paid for three statements and the copies for nothing.
func (s *Server) commit(batch []job, nextSeq *uint64) {
	start := time.Now()
	for len(batch) > 0 {
		batch = s.commitBatch(batch, nextSeq)
	}
	s.busyNs.Add(uint64(time.Since(start)))
}

// commitBatch commits batch, or, when its first job fails, answers that job
// and returns the rest for a new transaction.
func (s *Server) commitBatch(batch []job, nextSeq *uint64) (rest []job) {
	ctx := context.Background()
	fail := func(err error) {
		*nextSeq = 0 // reload from the database next time
		err = s.classify(err)
		for _, j := range batch {
			j.done <- err
		}
	}
	sqlTx, err := s.db.W.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	if *nextSeq == 0 {
		var max sql.NullInt64
		if err := sqlTx.QueryRowContext(ctx, "SELECT MAX(seq) FROM changes").Scan(&max); err != nil {
			sqlTx.Rollback()
			fail(fmt.Errorf("read last change: %w", err))
			return
		}
		*nextSeq = uint64(max.Int64) + 1
	}
	defer s.w.prepare(ctx) // after the transaction ends: the connection is free
	firstSeq := *nextSeq
	tx := &Tx{tx: sqlTx, ctx: ctx, instance: s.Instance(), nextSeq: *nextSeq, now: time.Now(), buckets: map[string]bool{}, stmts: s.w, auditKey: s.auditKey, onAudit: s.OnAudit}
	errs := make([]error, len(batch))
	if err := batch[0].fn(tx); err != nil {
		sqlTx.Rollback()
		batch[0].done <- s.classify(err)
		return batch[1:]
	}
	for i, j := range batch {
		if i == 0 {
			continue
		}
		if _, err := tx.Exec("SAVEPOINT job"); err != nil {
			sqlTx.Rollback()
			fail(fmt.Errorf("savepoint: %w", err))
			return nil
		}
		seq, nb, nf, na, rl := tx.nextSeq, len(tx.changed), len(tx.filed), len(tx.after), tx.relinked
		if errs[i] = j.fn(tx); errs[i] != nil {
			tx.nextSeq, tx.changed, tx.filed, tx.after, tx.relinked = seq, tx.changed[:nb], tx.filed[:nf], tx.after[:na], rl
			if _, err := tx.Exec("ROLLBACK TO job"); err != nil {
				// SQLite already rolled back the whole transaction (it may
				// on SQLITE_FULL or SQLITE_IOERR: the savepoint is gone), so
				// nothing of this batch is applied. This job gets its own
				// error; the others, none of them answered yet, run again
				// in a new transaction.
				sqlTx.Rollback()
				j.done <- s.classify(errs[i])
				return append(slices.Clip(batch[:i]), batch[i+1:]...)
			}
		}
		if _, err := tx.Exec("RELEASE job"); err != nil {
			sqlTx.Rollback()
			fail(fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	if err := sqlTx.Commit(); err != nil {
		// SQLite may leave the transaction open after a failed COMMIT (a
		// full disk, an I/O error); end it so that the next batch can begin.
		s.db.W.ExecContext(ctx, "ROLLBACK")
		// A failed COMMIT may still have committed: what is kept in
		// memory is read again rather than trusted.
		s.links.clear()
		s.heads.reload(ctx, s.db.W)
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	*nextSeq = tx.nextSeq
	s.commits.Add(1)
	s.committed.Add(uint64(len(batch)))
	s.heads.raise(tx.filed) // before anyone hears of the commit
	if tx.relinked {
		s.links.clear()
	}
	for _, fn := range tx.after {
		fn()
	}
	for i, j := range batch {
		j.done <- s.classify(errs[i])
	}
	// A commit that appended changes wakes the relay even when no
	// bucket changed (a unit, a person, a device's health).
	if s.OnCommit != nil && (len(tx.changed) > 0 || tx.nextSeq != firstSeq) {
		seen := map[string]bool{}
		var buckets []string
		for _, b := range tx.changed {
			if !seen[b] {
				seen[b] = true
				buckets = append(buckets, b)
			}
		}
		s.OnCommit(tx.nextSeq-1, buckets)
	}
	return nil
}

// Tx is one job's view of the writer's transaction.
type Tx struct {
	tx       *sql.Tx
	ctx      context.Context
	instance string
	nextSeq  uint64
	now      time.Time
	buckets  map[string]bool
	changed  []string
	filed    []filedAt            // bucket rows written, for the heads
	relinked bool                 // a link changed: the link cache is cleared
	after    []func()             // AfterCommit
	bound    map[string]*sql.Stmt // prepared statements bound to tx
	stmts    *writeStmts
	auditKey []byte // Server.auditKey
	onAudit  func() // Server.OnAudit
}

// AfterCommit runs fn once the transaction has committed, in the writer,
// before the job's caller hears of the commit and before OnCommit: the
// place to drop what callers keep in memory about what the job changed
// (so that a device poked by the commit cannot be served the old state).
// fn does not run if the job fails or the commit does; it must be quick.
func (t *Tx) AfterCommit(fn func()) { t.after = append(t.after, fn) }

// stmt binds a prepared statement to the transaction, once per commit:
// database/sql's Tx.StmtContext allocates and registers a statement on
// every call (syncbench's heap profile: 8% of syncd's allocations went to
// it and its bookkeeping). Bound statements close with the transaction.
func (t *Tx) stmt(query string, st *sql.Stmt) *sql.Stmt {
	if ts := t.bound[query]; ts != nil {
		return ts
	}
	ts := t.tx.StmtContext(t.ctx, st)
	if t.bound == nil {
		t.bound = map[string]*sql.Stmt{}
	}
	t.bound[query] = ts
	return ts
}

// Now is the commit's wall time.
func (t *Tx) Now() time.Time { return t.now }

// Exec runs a statement in the transaction.
func (t *Tx) Exec(query string, args ...any) (sql.Result, error) {
	if st := t.stmts.stmts[query]; st != nil {
		return t.stmt(query, st).ExecContext(t.ctx, args...)
	}
	t.stmts.pending[query] = true
	return t.tx.ExecContext(t.ctx, query, args...)
}

// QueryRow runs a query in the transaction.
func (t *Tx) QueryRow(query string, args ...any) *sql.Row {
	if st := t.stmts.stmts[query]; st != nil {
		return t.stmt(query, st).QueryRowContext(t.ctx, args...)
	}
	t.stmts.pending[query] = true
	return t.tx.QueryRowContext(t.ctx, query, args...)
}

// RecordMeta is what the server keeps beside a record's body.
type RecordMeta struct {
	VillageID string
	TownID    string
}

// Record reads a record and its meta; ErrNotFound if there is none.
func (t *Tx) Record(id string) (*pb.Record, RecordMeta, error) {
	var body []byte
	var m RecordMeta
	err := t.QueryRow("SELECT body, village_id, town_id FROM records WHERE id = ?", id).Scan(&body, &m.VillageID, &m.TownID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, m, ErrNotFound
	}
	if err != nil {
		return nil, m, fmt.Errorf("read record %s: %w", id, err)
	}
	r := &pb.Record{}
	if err := proto.Unmarshal(body, r); err != nil {
		return nil, m, fmt.Errorf("decode record %s: %w", id, err)
	}
	return r, m, nil
}

// ChangeInfo says who made a change.
type ChangeInfo struct {
	DeviceID string
	UserID   string
}

// PutRecord stores r as the record's new state: it takes the next change
// number as r's version, files the record in r.Buckets (marking it gone in
// the buckets prev had and r has not), and appends the change to the
// changelog. prev is the record as stored before (nil for a new record): its
// Buckets say where the record's rows are, so no lookup by record id is
// needed. The "all" bucket has no rows: it is the records table in version
// order (see PullBuckets). It returns the change number.
func (t *Tx) PutRecord(prev, r *pb.Record, m RecordMeta, who ChangeInfo) (uint64, error) {
	seq := t.nextSeq
	r.Version = seq
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("encode record %s: %w", r.GetId(), err)
	}
	if prev == nil {
		_, err = t.Exec("INSERT INTO records (id, kind, version, village_id, town_id, body) VALUES (?, ?, ?, ?, ?, ?)",
			r.GetId(), int(r.GetKind()), seq, m.VillageID, m.TownID, body)
	} else {
		var res sql.Result
		res, err = t.Exec("UPDATE records SET version = ?, village_id = ?, town_id = ?, body = ? WHERE id = ?",
			seq, m.VillageID, m.TownID, body, r.GetId())
		if err == nil {
			if n, _ := res.RowsAffected(); n != 1 {
				err = fmt.Errorf("%d stored rows, want 1 (its previous state was given)", n)
			}
		}
	}
	if err != nil {
		return 0, fmt.Errorf("write record %s: %w", r.GetId(), err)
	}
	// Buckets the record left: mark it gone there at this change, so that
	// a pull of such a bucket tells the device to purge it.
	for _, b := range prev.GetBuckets() {
		if b == domain.AllBucket || slices.Contains(r.GetBuckets(), b) {
			continue
		}
		if _, err := t.Exec("UPDATE record_buckets SET seq = ?, gone = 1 WHERE bucket = ? AND record_id = ?", seq, b, r.GetId()); err != nil {
			return 0, fmt.Errorf("move record %s out of %s: %w", r.GetId(), b, err)
		}
		t.changed = append(t.changed, b)
		t.filed = append(t.filed, filedAt{b, seq})
	}
	// Its buckets, in one statement (one per bucket count, prepared once).
	args := make([]any, 0, 3*len(r.GetBuckets()))
	t.filed = append(t.filed, filedAt{domain.AllBucket, seq}) // the records table
	for _, b := range r.GetBuckets() {
		t.changed = append(t.changed, b)
		if b != domain.AllBucket {
			t.filed = append(t.filed, filedAt{b, seq})
			args = append(args, b, r.GetId(), seq)
		}
	}
	if n := len(args) / 3; n > 0 {
		if _, err := t.Exec(fileStatement(n), args...); err != nil {
			return 0, fmt.Errorf("file record %s in %v: %w", r.GetId(), r.GetBuckets(), err)
		}
	}
	// The change carries the record: its encoding is appended as the
	// record field rather than encoded a second time.
	change := &pb.Change{DeviceId: who.DeviceID, UserId: who.UserID, Region: m.TownID}
	return t.appendChange(change, domain.ChangeSubject(m.TownID, r.GetKind()), body)
}

// changeRecordField is Change.record's field number.
var changeRecordField = (&pb.Change{}).ProtoReflect().Descriptor().Fields().ByName("record").Number()

// fileStatements[n] files a record in n buckets at one change number.
var fileStatements sync.Map // int -> string

func fileStatement(n int) string {
	if q, ok := fileStatements.Load(n); ok {
		return q.(string)
	}
	q := "INSERT INTO record_buckets (bucket, record_id, seq) VALUES (?, ?, ?)" +
		strings.Repeat(", (?, ?, ?)", n-1) +
		" ON CONFLICT (bucket, record_id) DO UPDATE SET seq = excluded.seq, gone = 0"
	fileStatements.Store(n, q)
	return q
}
