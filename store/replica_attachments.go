package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// A device's files (attachments): the bytes of the photos and scans its
// records name, kept in the replica beside the records, in chunks of
// domain.ChunkBytes, each chunk sealed with the replica's key like the
// rest (seal.go: its place is the file's hash and the chunk's offset, so
// a chunk moved to another file or offset does not open).
//
// att_files holds one row per file the device knows the bytes of (all or
// some of them): its size and type, how many bytes it holds from the start
// (held), whether this device attached it (mine: it uploads it, and offers
// it again to a server restored from a backup), the upload's state and
// what the server holds of it (sent). A file a record names and this
// device holds no row for is "remote". In clear: the hash, sizes, type and
// states (the shape, as for records); sealed: the reason of a refusal and
// every chunk's data.
const attachmentsMigration = `PRAGMA secure_delete = ON;
CREATE TABLE att_files (
	sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, media_type TEXT NOT NULL,
	held INTEGER NOT NULL DEFAULT 0, mine INTEGER NOT NULL DEFAULT 0,
	state INTEGER NOT NULL DEFAULT 0, record_id TEXT NOT NULL DEFAULT '',
	sent INTEGER NOT NULL DEFAULT 0, reason BLOB, created_ms INTEGER NOT NULL);
-- A rowid table: a 32 KiB chunk spills into overflow pages either way,
-- but its row stays small in the b-tree.
CREATE TABLE att_chunks (sha256 TEXT NOT NULL, off INTEGER NOT NULL, data BLOB NOT NULL);
CREATE UNIQUE INDEX att_chunks_file ON att_chunks (sha256, off);`

// File upload states (att_files.state).
const (
	FileLocal     = 0 // not this device's to upload (fetched, or held in part)
	FilePending   = 1 // attached here, waiting for its upload
	FileUploading = 2 // the server holds some of it (sent)
	FileUploaded  = 3 // the server holds all of it
	FileRefused   = 4 // the server (or the device's own checks) refused it: reason
)

// FileRow is what the device holds of a file.
type FileRow struct {
	SHA256, MediaType string
	Size, Held, Sent  int64
	Mine              bool
	State             int
	RecordID          string // the record the device attached it to (mine)
	Reason            string
	CreatedMs         int64
}

// Complete says the device holds all of the file's bytes.
func (f *FileRow) Complete() bool { return f.Held >= f.Size }

func chunkRow(sha string, off int64) string { return sha + "@" + strconv.FormatInt(off, 10) }

const replicaFileCols = "sha256, size, media_type, held, mine, state, record_id, sent, reason, created_ms"

func (t *RTx) scanFile(row interface{ Scan(...any) error }) (*FileRow, error) {
	f := &FileRow{}
	var mine int
	var reason []byte
	if err := row.Scan(&f.SHA256, &f.Size, &f.MediaType, &f.Held, &mine, &f.State, &f.RecordID, &f.Sent, &reason, &f.CreatedMs); err != nil {
		return nil, err
	}
	f.Mine = mine != 0
	var err error
	if reason != nil {
		if f.Reason, err = t.seal.openText(reason, "att_files", "reason", f.SHA256); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// File reads what the device holds of a file; ErrNotFound if nothing.
func (t *RTx) File(sha string) (*FileRow, error) {
	f, err := t.scanFile(t.tx.QueryRowContext(t.ctx, "SELECT "+replicaFileCols+" FROM att_files WHERE sha256 = ?", sha))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return f, err
}

// Files lists the files the device holds (all or part of), by hash.
func (t *RTx) Files() ([]*FileRow, error) {
	rows, err := t.tx.QueryContext(t.ctx, "SELECT "+replicaFileCols+" FROM att_files ORDER BY sha256")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*FileRow
	for rows.Next() {
		f, err := t.scanFile(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// PutFile writes a file's row (not its chunks).
func (t *RTx) PutFile(f *FileRow) error {
	mine := 0
	if f.Mine {
		mine = 1
	}
	var reason any
	if f.Reason != "" {
		reason = t.seal.sealText(f.Reason, "att_files", "reason", f.SHA256)
	}
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO att_files (`+replicaFileCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (sha256) DO UPDATE SET size = excluded.size, media_type = excluded.media_type, held = excluded.held,
		mine = excluded.mine, state = excluded.state, record_id = excluded.record_id, sent = excluded.sent,
		reason = excluded.reason, created_ms = excluded.created_ms`,
		f.SHA256, f.Size, f.MediaType, f.Held, mine, f.State, f.RecordID, f.Sent, reason, f.CreatedMs)
	return err
}

// PutChunk stores the chunk of file sha at offset off (sealed).
func (t *RTx) PutChunk(sha string, off int64, data []byte) error {
	_, err := t.tx.ExecContext(t.ctx, "INSERT INTO att_chunks (sha256, off, data) VALUES (?, ?, ?) ON CONFLICT (sha256, off) DO UPDATE SET data = excluded.data",
		sha, off, t.seal.seal(data, "att_chunks", "data", chunkRow(sha, off)))
	return err
}

// Chunk reads the chunk of file sha that starts at off; ErrNotFound if the
// device does not hold it.
func (t *RTx) Chunk(sha string, off int64) ([]byte, error) {
	var data []byte
	err := t.tx.QueryRowContext(t.ctx, "SELECT data FROM att_chunks WHERE sha256 = ? AND off = ?", sha, off).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if data, err = t.seal.open(data, "att_chunks", "data", chunkRow(sha, off)); err != nil {
		return nil, fmt.Errorf("file %s at %d: %w", sha, off, err)
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// ChunkOffsets lists the offsets of the chunks held of file sha, in order.
func (t *RTx) ChunkOffsets(sha string) ([]int64, error) {
	rows, err := t.tx.QueryContext(t.ctx, "SELECT off FROM att_chunks WHERE sha256 = ? ORDER BY off", sha)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var off int64
		if err := rows.Scan(&off); err != nil {
			return nil, err
		}
		out = append(out, off)
	}
	return out, rows.Err()
}

// DeleteFile removes a file's row and chunks (zeroed: secure_delete).
func (t *RTx) DeleteFile(sha string) error {
	if _, err := t.tx.ExecContext(t.ctx, "DELETE FROM att_chunks WHERE sha256 = ?", sha); err != nil {
		return err
	}
	_, err := t.tx.ExecContext(t.ctx, "DELETE FROM att_files WHERE sha256 = ?", sha)
	return err
}

// DeleteChunksFrom drops the chunks of file sha at or past off (a fetch
// that must start again).
func (t *RTx) DeleteChunksFrom(sha string, off int64) error {
	_, err := t.tx.ExecContext(t.ctx, "DELETE FROM att_chunks WHERE sha256 = ? AND off >= ?", sha, off)
	return err
}

// WipeFiles removes every file and chunk.
func (t *RTx) WipeFiles() error {
	for _, q := range []string{"DELETE FROM att_chunks", "DELETE FROM att_files"} {
		if _, err := t.tx.ExecContext(t.ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// ReofferFiles puts every file this device attached and uploaded (or
// began to) back to pending, as the server holds nothing of it that the
// device knows of: after the server was restored from a backup (a new
// lineage). The upload's start asks the server what it lacks. It returns
// how many files it put back.
func (t *RTx) ReofferFiles() (int, error) {
	res, err := t.tx.ExecContext(t.ctx, "UPDATE att_files SET state = ?, sent = 0 WHERE mine = 1 AND held >= size AND state IN (?, ?)",
		FilePending, FileUploading, FileUploaded)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// ChunkAt reads the chunk of file sha that holds byte pos (the one with
// the greatest offset at or before it): its offset and data. ErrNotFound
// if the device holds none there.
func (t *RTx) ChunkAt(sha string, pos int64) (int64, []byte, error) {
	var off int64
	var data []byte
	err := t.tx.QueryRowContext(t.ctx, "SELECT off, data FROM att_chunks WHERE sha256 = ? AND off <= ? ORDER BY off DESC LIMIT 1", sha, pos).Scan(&off, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, ErrNotFound
	}
	if err != nil {
		return 0, nil, err
	}
	if data, err = t.seal.open(data, "att_chunks", "data", chunkRow(sha, off)); err != nil {
		return 0, nil, fmt.Errorf("file %s at %d: %w", sha, off, err)
	}
	if pos >= off+int64(len(data)) {
		return 0, nil, ErrNotFound
	}
	return off, data, nil
}

// CountFiles counts this device's own files by upload state.
func (t *RTx) CountFiles() (map[int]int, error) {
	return t.countByState("SELECT state, COUNT(*) FROM att_files WHERE mine = 1 GROUP BY state")
}
