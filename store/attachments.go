package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Files is the server's store of attached files' bytes (photos, scans):
// a SQLite database of its own, attachments.db beside fieldsync.db, so
// that the records' writer never waits on photo bytes and a file's upload
// never holds the records' write lock. Files are content-addressed by
// their SHA-256 (64 lowercase hex digits): one row in files per file,
// whichever records name it, and its bytes in chunks as they were
// uploaded (at most domain.ChunkBytes each), appended in order only.
//
// Every write goes through one writer goroutine that commits what is
// queued at the same moment in one transaction (group commit), with
// synchronous=FULL: a chunk is durable (fsync'd in the WAL) before its
// upload is acknowledged, so an acknowledged chunk is never asked for
// again after a crash or a power cut, and many devices' chunks share one
// fsync under load. Reads (Stat, the chunk readers) use a pool of reader
// connections and never wait for the writer.
type Files struct {
	db   *DB
	path string

	jobs    chan fileJob
	between chan func()
	quit    chan struct{}
	done    chan struct{}
	closeMu sync.Once

	commits, committed atomic.Uint64 // CommitStats
}

// filesMigrations are attachments.db's schema.
var filesMigrations = []string{`
-- One row per file: its claimed size and type (from the reference of the
-- record it was first uploaded for), the bytes held so far from the start
-- (stored), and whether all of them are in and checked (complete: the
-- whole file's SHA-256, size and sniffed type matched).
CREATE TABLE files (
	sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, media_type TEXT NOT NULL,
	stored INTEGER NOT NULL DEFAULT 0, complete INTEGER NOT NULL DEFAULT 0,
	created_ms INTEGER NOT NULL, completed_ms INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
-- The bytes, in the chunks they were uploaded in: a rowid table, since its
-- rows are large (a WITHOUT ROWID table keeps whole rows in its B-tree).
CREATE TABLE chunks (sha256 TEXT NOT NULL, offset INTEGER NOT NULL, data BLOB NOT NULL);
CREATE UNIQUE INDEX chunks_file ON chunks (sha256, offset);
-- The file bytes each device uploaded on a quota day (server.FileQuota).
CREATE TABLE file_quota (
	device_id TEXT NOT NULL, day INTEGER NOT NULL, user_id TEXT NOT NULL,
	bytes INTEGER NOT NULL DEFAULT 0, refusals INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (device_id, day)) WITHOUT ROWID;
`, `
-- The records through which a file's bytes were proven: its upload
-- through the record finished, or the device that uploads for the record
-- proved it holds the bytes (server: a challenge). A fetch through a
-- record needs its row: a SHA-256 alone, learnt somewhere, must not open a
-- file to whoever attaches it to a record of their own.
CREATE TABLE file_records (
	sha256 TEXT NOT NULL, record_id TEXT NOT NULL, proven_ms INTEGER NOT NULL,
	PRIMARY KEY (sha256, record_id)) WITHOUT ROWID;
-- Files completed before proofs were kept: every record naming them may
-- fetch them (who uploaded them through which record was not kept).
ALTER TABLE files ADD COLUMN before_proofs INTEGER NOT NULL DEFAULT 0;
UPDATE files SET before_proofs = 1 WHERE complete = 1;
-- When a chunk was last stored (0: none since this column came): an
-- upload left unfinished longer than UnfinishedUploadTTL is swept.
ALTER TABLE files ADD COLUMN touched_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX files_unfinished ON files (created_ms) WHERE complete = 0;
`}

// filesAppID marks attachments.db ("FSAT" in PRAGMA application_id).
const filesAppID = 0x46534154

// FilesOption changes how OpenFiles opens the database.
type FilesOption func(*serverOptions)

// FilesExternalCheckpoints is ExternalCheckpoints for attachments.db:
// checkpoints are left to a backup that copies the WAL (Litestream).
func FilesExternalCheckpoints() FilesOption {
	return func(o *serverOptions) { o.writerPragmas = append(o.writerPragmas, "wal_autocheckpoint(0)") }
}

// OpenFiles opens (creating) the file store at path, normally
// <data>/attachments.db, and starts its writer.
func OpenFiles(ctx context.Context, path string, opts ...FilesOption) (*Files, error) {
	var o serverOptions
	for _, opt := range opts {
		opt(&o)
	}
	// Another kind of database (fieldsync.db given by mistake) is refused
	// before anything is written to it.
	if _, err := os.Stat(path); err == nil {
		if err := checkFilesAppID(ctx, path); err != nil {
			return nil, err
		}
	}
	db, err := openDB(ctx, path, nil, filesMigrations, 4, o.writerPragmas...)
	if err != nil {
		return nil, err
	}
	var appID int32
	if err := db.W.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	switch appID {
	case filesAppID:
	case 0:
		if _, err := db.W.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id = %d", filesAppID)); err != nil {
			db.Close()
			return nil, fmt.Errorf("mark %s as syncd's file store: %w", path, err)
		}
	default:
		db.Close()
		return nil, fmt.Errorf("%s is not syncd's file store (application_id %#x): give it its own path, attachments.db in the data directory", path, appID)
	}
	f := &Files{db: db, path: path, jobs: make(chan fileJob, maxBatch), between: make(chan func()),
		quit: make(chan struct{}), done: make(chan struct{})}
	go f.writer()
	return f, nil
}

func checkFilesAppID(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var appID int32
	if err := db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if appID != 0 && appID != filesAppID {
		return fmt.Errorf("%s is not syncd's file store but another database (application_id %#x): the file store is attachments.db in the data directory", path, appID)
	}
	return nil
}

// Path is the database file.
func (f *Files) Path() string { return f.path }

// Close stops the writer after the writes already queued, then closes the
// database.
func (f *Files) Close() error {
	f.closeMu.Do(func() { close(f.quit) })
	<-f.done
	return f.db.Close()
}

// CommitStats says how many transactions the writer committed and how
// many writes (chunks, starts, completions) they carried.
func (f *Files) CommitStats() (commits, jobs uint64) {
	return f.commits.Load(), f.committed.Load()
}

// BetweenCommits runs fn on the writer between two transactions (the
// backup's checkpoint; see Server.BetweenCommits).
func (f *Files) BetweenCommits(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case f.between <- func() { defer close(done); fn() }:
	case <-ctx.Done():
		return ctx.Err()
	case <-f.quit:
		return ErrClosed
	}
	<-done
	return nil
}

// FileInfo is what the store holds of a file.
type FileInfo struct {
	SHA256      string
	Size        int64
	MediaType   string
	Stored      int64 // bytes held from the start
	Complete    bool  // all of them, checked
	CreatedMs   int64
	CompletedMs int64
}

const serverFileCols = "sha256, size, media_type, stored, complete, created_ms, completed_ms"

func scanFile(row interface{ Scan(...any) error }) (FileInfo, error) {
	var fi FileInfo
	err := row.Scan(&fi.SHA256, &fi.Size, &fi.MediaType, &fi.Stored, &fi.Complete, &fi.CreatedMs, &fi.CompletedMs)
	if errors.Is(err, sql.ErrNoRows) {
		return fi, ErrNotFound
	}
	return fi, err
}

// Stat reads what the store holds of file sha; ErrNotFound if nothing.
func (f *Files) Stat(ctx context.Context, sha string) (FileInfo, error) {
	return scanFile(f.db.R.QueryRowContext(ctx, "SELECT "+serverFileCols+" FROM files WHERE sha256 = ?", sha))
}

// Begin makes ready to receive file sha of the given size and type and
// returns what the store holds of it: a new file gets a row with nothing
// stored. A file not yet complete whose row claims another size or type
// (another record's reference to the same hash claims otherwise: one of
// them is wrong, and only the bytes can tell which) starts over under the
// new claim. A complete file is returned as it is: the caller compares.
func (f *Files) Begin(ctx context.Context, sha string, size int64, mediaType string) (FileInfo, error) {
	var out FileInfo
	err := f.write(ctx, func(tx *sql.Tx) error {
		fi, err := scanFile(tx.QueryRow("SELECT "+serverFileCols+" FROM files WHERE sha256 = ?", sha))
		switch {
		case err == nil && (fi.Complete || (fi.Size == size && fi.MediaType == mediaType)):
			out = fi
			return nil
		case err == nil:
			if _, err := tx.Exec("DELETE FROM chunks WHERE sha256 = ?", sha); err != nil {
				return err
			}
			if _, err := tx.Exec("DELETE FROM files WHERE sha256 = ?", sha); err != nil {
				return err
			}
		case !errors.Is(err, ErrNotFound):
			return err
		}
		now := time.Now().UnixMilli()
		if _, err := tx.Exec("INSERT INTO files (sha256, size, media_type, created_ms) VALUES (?, ?, ?, ?)", sha, size, mediaType, now); err != nil {
			return err
		}
		out = FileInfo{SHA256: sha, Size: size, MediaType: mediaType, CreatedMs: now}
		return nil
	})
	return out, err
}

// FileCharge is a device's daily allowance of file bytes, counted in the
// transaction that stores a chunk: it is exact under concurrent uploads
// and survives a restart. Limit < 0: no allowance (nothing counted).
type FileCharge struct {
	DeviceID, UserID string
	Day              int   // the quota day (server.QuotaZone's calendar)
	Limit            int64 // bytes a day
}

// ChunkResult is what PutChunk did.
type ChunkResult struct {
	File FileInfo // the file after the chunk (Stored moved on if it was stored)
	// Stored says the chunk's bytes were written; false for a chunk the
	// store already held (another upload of the same file got there
	// first, or the file is complete).
	Stored bool
	// OverQuota: nothing stored, the device's allowance for the day is
	// used up (Used bytes of it).
	OverQuota bool
	Used      int64
}

// ErrChunkOrder is a chunk that does not start where the stored bytes
// end (ChunkOrderError carries where).
var ErrChunkOrder = errors.New("chunk out of order")

// ChunkOrderError is a chunk that does not continue the stored bytes.
type ChunkOrderError struct{ Offset, Stored int64 }

func (e *ChunkOrderError) Error() string {
	return fmt.Sprintf("chunk at %d, the file's stored bytes end at %d", e.Offset, e.Stored)
}
func (e *ChunkOrderError) Is(target error) bool { return target == ErrChunkOrder }

// PutChunk appends data at offset to file sha (Begin made its row) and
// counts its bytes against the charge, in one transaction, and returns
// once that is durable. A chunk at the end of the stored bytes is stored;
// one wholly inside them is not stored again (Stored false: the bytes are
// there); any other offset is a *ChunkOrderError. A chunk past the file's
// size is the caller's to refuse before. A device over its allowance gets
// OverQuota and nothing is stored; the chunk that crosses the line is
// stored, so a file is never held back for ever by its own size.
func (f *Files) PutChunk(ctx context.Context, sha string, offset int64, data []byte, charge FileCharge) (ChunkResult, error) {
	var out ChunkResult
	var refused error // a refusal, not a failure: the batch commits
	err := f.write(ctx, func(tx *sql.Tx) error {
		refused = nil
		fi, err := scanFile(tx.QueryRow("SELECT "+serverFileCols+" FROM files WHERE sha256 = ?", sha))
		if errors.Is(err, ErrNotFound) {
			refused = err
			return nil
		}
		if err != nil {
			return err
		}
		out = ChunkResult{File: fi}
		end := offset + int64(len(data))
		switch {
		case fi.Complete || (offset < fi.Stored && end <= fi.Stored):
			return nil
		case offset != fi.Stored:
			refused = &ChunkOrderError{Offset: offset, Stored: fi.Stored}
			return nil
		}
		if charge.Limit >= 0 && charge.DeviceID != "" {
			var used int64
			err := tx.QueryRow("SELECT bytes FROM file_quota WHERE device_id = ? AND day = ?", charge.DeviceID, charge.Day).Scan(&used)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if errors.Is(err, sql.ErrNoRows) {
				if _, err := tx.Exec("DELETE FROM file_quota WHERE device_id = ? AND day < ?", charge.DeviceID, charge.Day); err != nil {
					return err
				}
			}
			if used >= charge.Limit {
				out.OverQuota, out.Used = true, used
				_, err := tx.Exec(`INSERT INTO file_quota (device_id, day, user_id, refusals) VALUES (?, ?, ?, 1)
					ON CONFLICT (device_id, day) DO UPDATE SET refusals = refusals + 1`, charge.DeviceID, charge.Day, charge.UserID)
				return err
			}
			if _, err := tx.Exec(`INSERT INTO file_quota (device_id, day, user_id, bytes) VALUES (?, ?, ?, ?)
				ON CONFLICT (device_id, day) DO UPDATE SET bytes = bytes + excluded.bytes`, charge.DeviceID, charge.Day, charge.UserID, len(data)); err != nil {
				return err
			}
			out.Used = used + int64(len(data))
		}
		if _, err := tx.Exec("INSERT INTO chunks (sha256, offset, data) VALUES (?, ?, ?)", sha, offset, data); err != nil {
			return err
		}
		if _, err := tx.Exec("UPDATE files SET stored = ?, touched_ms = ? WHERE sha256 = ?", end, time.Now().UnixMilli(), sha); err != nil {
			return err
		}
		out.File.Stored, out.Stored = end, true
		return nil
	})
	if err == nil {
		err = refused
	}
	return out, err
}

// FileBytesToday reads the file bytes a device uploaded on day, and the
// uploads refused for its allowance.
func (f *Files) FileBytesToday(ctx context.Context, deviceID string, day int) (bytes, refusals int64, err error) {
	err = f.db.R.QueryRowContext(ctx, "SELECT bytes, refusals FROM file_quota WHERE device_id = ? AND day = ?", deviceID, day).Scan(&bytes, &refusals)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	return bytes, refusals, err
}

// Complete marks file sha complete (the caller checked its bytes: Verify)
// and proven for recordID, the record it was uploaded through ("" for
// none), durably.
func (f *Files) Complete(ctx context.Context, sha, recordID string) error {
	return f.write(ctx, func(tx *sql.Tx) error {
		now := time.Now().UnixMilli()
		if _, err := tx.Exec("UPDATE files SET complete = 1, completed_ms = ? WHERE sha256 = ? AND complete = 0 AND stored = size", now, sha); err != nil {
			return err
		}
		if recordID == "" {
			return nil
		}
		return proveTx(tx, sha, recordID, now)
	})
}

func proveTx(tx *sql.Tx, sha, recordID string, now int64) error {
	_, err := tx.Exec("INSERT INTO file_records (sha256, record_id, proven_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", sha, recordID, now)
	return err
}

// Prove notes, durably, that the device uploading file sha for recordID
// showed it holds the bytes (it answered a challenge over them, or sent
// them all again): the record may fetch the file from now on.
func (f *Files) Prove(ctx context.Context, sha, recordID string) error {
	return f.write(ctx, func(tx *sql.Tx) error { return proveTx(tx, sha, recordID, time.Now().UnixMilli()) })
}

// Proven reports whether file sha is complete and open to recordID: its
// bytes were proven through that record (Complete, Prove), or the file was
// completed before proofs were kept.
func (f *Files) Proven(ctx context.Context, sha, recordID string) (bool, error) {
	var ok bool
	err := f.db.R.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM files WHERE sha256 = ?1 AND complete = 1 AND
		(before_proofs = 1 OR EXISTS (SELECT 1 FROM file_records WHERE sha256 = ?1 AND record_id = ?2)))`, sha, recordID).Scan(&ok)
	return ok, err
}

// UnfinishedUploadTTL is how long the bytes of an upload nobody finished
// are kept after its last chunk (or its start): a phone that comes back
// later sends the file from its start again.
const UnfinishedUploadTTL = 30 * 24 * time.Hour

// SweepUnfinished deletes, up to limit files at a time, the files not
// complete whose start and last chunk are both before cutoff, with their
// chunks, and says how many files and bytes it removed. syncd's retention
// pass calls it hourly with now - UnfinishedUploadTTL.
func (f *Files) SweepUnfinished(ctx context.Context, cutoff time.Time, limit int) (files int, bytes int64, err error) {
	err = f.write(ctx, func(tx *sql.Tx) error {
		files, bytes = 0, 0
		rows, err := tx.Query(`SELECT sha256, stored FROM files WHERE complete = 0 AND created_ms < ?1 AND touched_ms < ?1 LIMIT ?2`, cutoff.UnixMilli(), limit)
		if err != nil {
			return err
		}
		var shas []string
		for rows.Next() {
			var sha string
			var stored int64
			if err := rows.Scan(&sha, &stored); err != nil {
				rows.Close()
				return err
			}
			shas, bytes = append(shas, sha), bytes+stored
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, sha := range shas {
			if _, err := tx.Exec("DELETE FROM chunks WHERE sha256 = ?", sha); err != nil {
				return err
			}
			if _, err := tx.Exec("DELETE FROM files WHERE sha256 = ? AND complete = 0", sha); err != nil {
				return err
			}
		}
		files = len(shas)
		return nil
	})
	return files, bytes, err
}

// Drop deletes a file that is not complete and its chunks: its bytes did
// not check out, and the next upload starts from nothing. A complete file
// is never dropped by it.
func (f *Files) Drop(ctx context.Context, sha string) error {
	return f.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec("DELETE FROM files WHERE sha256 = ? AND complete = 0", sha)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			_, err = tx.Exec("DELETE FROM chunks WHERE sha256 = ?", sha)
		}
		return err
	})
}

// Verify reads file sha's stored bytes back in order, chunk by chunk
// (never the whole file in memory), and returns their SHA-256 (hex), their
// count and the first up to 512 bytes (for domain.SniffType).
func (f *Files) Verify(ctx context.Context, sha string) (sum string, n int64, head []byte, err error) {
	h := sha256.New()
	err = f.eachChunk(ctx, sha, 0, func(off int64, data []byte) error {
		if off != n {
			return fmt.Errorf("file %s: chunk at %d after %d bytes", sha, off, n)
		}
		if len(head) < 512 {
			head = append(head, data[:min(len(data), 512-len(head))]...)
		}
		h.Write(data)
		n += int64(len(data))
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), n, head, err
}

// EachChunk calls fn with the stored bytes of file sha from offset, in
// order, a chunk at a time (the first one cut to start at offset). Each
// chunk is read by a query of its own: no read transaction is held open
// across fn (a slow client does not hold back the WAL's checkpoints).
// fn's data is valid only during the call.
func (f *Files) EachChunk(ctx context.Context, sha string, offset int64, fn func(off int64, data []byte) error) error {
	return f.eachChunk(ctx, sha, offset, fn)
}

func (f *Files) eachChunk(ctx context.Context, sha string, offset int64, fn func(off int64, data []byte) error) error {
	// The chunk holding offset, then each next one.
	var off int64
	var data []byte
	err := f.db.R.QueryRowContext(ctx, "SELECT offset, data FROM chunks WHERE sha256 = ? AND offset <= ? ORDER BY offset DESC LIMIT 1", sha, offset).Scan(&off, &data)
	for {
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if offset > off {
			if offset-off >= int64(len(data)) {
				return nil // offset is at or past the end
			}
			data, off = data[offset-off:], offset
		}
		if err := fn(off, data); err != nil {
			return err
		}
		next := off + int64(len(data))
		err = f.db.R.QueryRowContext(ctx, "SELECT offset, data FROM chunks WHERE sha256 = ? AND offset = ?", sha, next).Scan(&off, &data)
		offset = next
	}
}

// CopyFile writes the bytes of complete file sha from offset to w, chunk
// by chunk, and returns its info (the HQ page's file and thumbnail).
// ErrNotFound if the store does not hold the whole file.
func (f *Files) CopyFile(ctx context.Context, sha string, offset int64, w io.Writer) (FileInfo, error) {
	fi, err := f.Stat(ctx, sha)
	if err != nil {
		return fi, err
	}
	if !fi.Complete {
		return fi, ErrNotFound
	}
	return fi, f.eachChunk(ctx, sha, offset, func(_ int64, data []byte) error {
		_, err := w.Write(data)
		return err
	})
}

// fileJob is one write: fn runs in the batch's transaction.
type fileJob struct {
	fn   func(*sql.Tx) error
	done chan error
}

// write queues fn and returns once its transaction is committed (durable)
// with fn's error or the commit's. fn must check before it writes: an
// error from fn rolls back the whole batch it was committed with (every
// write of the batch gets the error, and is retried by its caller), so
// refusals a caller expects are results, not errors.
func (f *Files) write(ctx context.Context, fn func(*sql.Tx) error) error {
	j := fileJob{fn: fn, done: make(chan error, 1)}
	select {
	case <-f.quit:
		return ErrClosed
	default:
	}
	select {
	case f.jobs <- j:
	case <-ctx.Done():
		return ctx.Err()
	case <-f.quit:
		return ErrClosed
	}
	select {
	case err := <-j.done:
		return err
	case <-f.done:
		select {
		case err := <-j.done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (f *Files) writer() {
	defer close(f.done)
	for {
		var first fileJob
		select {
		case first = <-f.jobs:
		case fn := <-f.between:
			fn()
			continue
		case <-f.quit:
			for {
				select {
				case j := <-f.jobs:
					f.commit([]fileJob{j})
				default:
					return
				}
			}
		}
		batch := []fileJob{first}
	drain:
		for len(batch) < maxBatch {
			select {
			case j := <-f.jobs:
				batch = append(batch, j)
			default:
				break drain
			}
		}
		f.commit(batch)
	}
}

// commit runs a batch in one transaction. A job that fails rolls back the
// batch; the jobs before it are run again in a new transaction without it
// (they had not failed), the failed one gets its error.
func (f *Files) commit(batch []fileJob) {
	for len(batch) > 0 {
		batch = f.commitBatch(batch)
	}
}

func (f *Files) commitBatch(batch []fileJob) (rest []fileJob) {
	ctx := context.Background()
	tx, err := f.db.W.BeginTx(ctx, nil)
	if err != nil {
		for _, j := range batch {
			j.done <- fmt.Errorf("file store: begin: %w", err)
		}
		return nil
	}
	for i, j := range batch {
		if err := j.fn(tx); err != nil {
			tx.Rollback()
			j.done <- err
			return append(batch[:i:i], batch[i+1:]...)
		}
	}
	if err := tx.Commit(); err != nil {
		f.db.W.ExecContext(ctx, "ROLLBACK")
		for _, j := range batch {
			j.done <- fmt.Errorf("file store: commit: %w", err)
		}
		return nil
	}
	f.commits.Add(1)
	f.committed.Add(uint64(len(batch)))
	for _, j := range batch {
		j.done <- nil
	}
	return nil
}
