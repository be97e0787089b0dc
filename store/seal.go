package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
)

// Encryption at rest of a device's replica.
//
// Why sealing values and not pages: modernc's SQLite has no page-level
// encryption (no SQLCipher, no codec hooks), and a home-made VFS that
// encrypts pages is a large piece of unreviewed crypto under the WAL's
// and the pager's assumptions. Instead each value that may carry personal
// data or a secret is sealed at the store boundary with an AEAD, and the
// columns the local queries use (ids, kind, state, seq, status, buckets,
// cursors) stay in clear, so every query works as before. What an
// attacker with the file (and no key) learns is the shape: how many
// records of each kind, their ids, buckets and states, how many
// mutations wait; not one name, address, phone number, text or token.
//
// Sealed: records.base, records.local, records.reason; outbox.body,
// outbox.reason; every meta value (the credential, the user's name, the
// server's address, the CA, session tickets...). Not sealed: outbox.code
// and outbox.field (a code and a field name from the server's fixed set).
//
// A sealed value is 0x01 (the format), a random 12-byte nonce, then
// AES-256-GCM's ciphertext and tag. The AES key is derived from the app's
// 32-byte key with HKDF-SHA256 (info names the purpose), so the app's key
// is never used directly and another use of it elsewhere derives another
// key. The associated data names the value's place (table, column, row
// key): a sealed value copied into another row, column or table does not
// open, so values cannot be swapped by editing the file.

// KeySize is the size of a replica's key: 32 bytes (AES-256).
const KeySize = 32

// Errors of sealed replicas.
var (
	// ErrWrongKey is returned by OpenReplicaKey when the replica was
	// encrypted with another key, or is encrypted and no key was given.
	ErrWrongKey = errors.New("store: wrong key for this replica")
	// ErrSealBroken is returned when a sealed value does not authenticate
	// under the replica's (checked) key: the file was altered, or a value
	// was moved from another row.
	ErrSealBroken = errors.New("store: a sealed value does not authenticate")
)

const (
	sealFormat = 0x01
	// sealCheckKey is the meta row whose sealed value proves the key:
	// present = the replica is encrypted.
	sealCheckKey = "seal_check"
	sealCheckVal = "fieldsync replica key check v1"
	sealInfo     = "fieldsync replica values v1: AES-256-GCM"
)

// sealer seals and opens a replica's values; a nil *sealer is a plain
// replica and passes values through.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("replica key: %d bytes; want %d (AES-256), or none for a plain replica", len(key), KeySize)
	}
	sub, err := hkdf.Key(sha256.New, key, nil, sealInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("replica key: derive: %w", err)
	}
	block, err := aes.NewCipher(sub)
	if err != nil {
		return nil, fmt.Errorf("replica key: %w", err)
	}
	// A random nonce per value, prepended by the AEAD itself: a phone
	// seals far fewer than the 2^32 values a random 96-bit nonce allows.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("replica key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// place is the associated data binding a value to its table, column and
// row.
func place(table, column, row string) []byte {
	b := make([]byte, 0, len(table)+len(column)+len(row)+16)
	b = append(b, "fieldsync:"...)
	b = append(b, table...)
	b = append(b, '.')
	b = append(b, column...)
	b = append(b, 0)
	return append(b, row...)
}

// seal seals plain for its place; nil stays nil (SQL NULL).
func (s *sealer) seal(plain []byte, table, column, row string) []byte {
	if s == nil || plain == nil {
		return plain
	}
	out := make([]byte, 1, 1+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = sealFormat
	return s.aead.Seal(out, nil, plain, place(table, column, row))
}

// sealText is seal for a TEXT column: the clear string itself for a plain
// replica (so plain files keep their format), else the sealed bytes.
func (s *sealer) sealText(plain, table, column, row string) any {
	if s == nil {
		return plain
	}
	return s.seal([]byte(plain), table, column, row)
}

// open opens a value sealed for its place; nil stays nil.
func (s *sealer) open(v []byte, table, column, row string) ([]byte, error) {
	if s == nil || v == nil {
		return v, nil
	}
	if len(v) < 1+s.aead.NonceSize()+s.aead.Overhead() || v[0] != sealFormat {
		return nil, fmt.Errorf("%s.%s of %q: not a sealed value (%d bytes): %w", table, column, row, len(v), ErrSealBroken)
	}
	p, err := s.aead.Open(nil, nil, v[1:], place(table, column, row))
	if err != nil {
		return nil, fmt.Errorf("%s.%s of %q: %w (altered, or moved from another row)", table, column, row, ErrSealBroken)
	}
	if p == nil {
		p = []byte{}
	}
	return p, nil
}

func (s *sealer) openText(v []byte, table, column, row string) (string, error) {
	p, err := s.open(v, table, column, row)
	return string(p), err
}

func seqRow(seq uint64) string { return strconv.FormatUint(seq, 10) }

// prepareFile creates the database file with mode 0600 before SQLite
// opens it: SQLite creates the -wal and -shm files with the database's
// mode, so they are 0600 too. An existing file readable by others is
// narrowed to 0600, with its -wal and -shm.
func prepareFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", path, err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, 0o600); err != nil {
				return fmt.Errorf("restrict %s to its owner (0600): %w", p, err)
			}
		}
	}
	return nil
}

// checkKey matches the key (or none) with the replica: an encrypted one
// opens only with its key (ErrWrongKey); a new one given a key becomes
// encrypted; a plain one with data given a key is encrypted in place.
func (r *Replica) checkKey(ctx context.Context, path string) error {
	var check []byte
	err := r.db.W.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", sealCheckKey).Scan(&check)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("open %s: read the key check: %w", path, err)
	}
	encrypted := err == nil
	switch {
	case encrypted && r.seal == nil:
		return fmt.Errorf("open %s: the replica is encrypted and no key was given: %w", path, ErrWrongKey)
	case encrypted:
		p, err := r.seal.open(check, "meta", "value", sealCheckKey)
		if err != nil || string(p) != sealCheckVal {
			return fmt.Errorf("open %s: the replica was encrypted with another key: %w", path, ErrWrongKey)
		}
		return nil
	case r.seal == nil:
		return nil
	}
	var held bool
	if err := r.db.W.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM meta) OR EXISTS (SELECT 1 FROM records)
		OR EXISTS (SELECT 1 FROM outbox) OR EXISTS (SELECT 1 FROM att_files) OR EXISTS (SELECT 1 FROM att_chunks)`).Scan(&held); err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if held {
		return r.encryptInPlace(ctx, path)
	}
	return r.Update(ctx, func(tx *RTx) error { return tx.setSealCheck() })
}

func (t *RTx) setSealCheck() error {
	_, err := t.tx.ExecContext(t.ctx, "INSERT INTO meta (key, value) VALUES (?, ?)", sealCheckKey,
		t.seal.seal([]byte(sealCheckVal), "meta", "value", sealCheckKey))
	return err
}

// encryptInPlace seals every value of a plain replica in one transaction,
// then VACUUMs (every page of the file written again, free pages gone)
// and checkpoints with TRUNCATE, so that no clear copy is left in the
// file or its WAL.
func (r *Replica) encryptInPlace(ctx context.Context, path string) error {
	err := r.Update(ctx, func(tx *RTx) error {
		type rec struct {
			id                  string
			base, local, reason []byte
		}
		var recs []rec
		if err := eachRow(tx, "SELECT id, base, local, reason FROM records", func(rows *sql.Rows) error {
			var x rec
			var reason string
			if err := rows.Scan(&x.id, &x.base, &x.local, &reason); err != nil {
				return err
			}
			x.reason = []byte(reason)
			recs = append(recs, x)
			return nil
		}); err != nil {
			return fmt.Errorf("records: %w", err)
		}
		for _, x := range recs {
			if _, err := tx.tx.ExecContext(ctx, "UPDATE records SET base = ?, local = ?, reason = ? WHERE id = ?",
				tx.seal.seal(x.base, "records", "base", x.id), tx.seal.seal(x.local, "records", "local", x.id),
				tx.seal.seal(x.reason, "records", "reason", x.id), x.id); err != nil {
				return fmt.Errorf("record %s: %w", x.id, err)
			}
		}
		type out struct {
			seq          uint64
			body, reason []byte
		}
		var outs []out
		if err := eachRow(tx, "SELECT seq, body, reason FROM outbox", func(rows *sql.Rows) error {
			var x out
			var reason string
			if err := rows.Scan(&x.seq, &x.body, &reason); err != nil {
				return err
			}
			x.reason = []byte(reason)
			outs = append(outs, x)
			return nil
		}); err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		for _, x := range outs {
			row := seqRow(x.seq)
			if _, err := tx.tx.ExecContext(ctx, "UPDATE outbox SET body = ?, reason = ? WHERE seq = ?",
				tx.seal.seal(x.body, "outbox", "body", row), tx.seal.seal(x.reason, "outbox", "reason", row), x.seq); err != nil {
				return fmt.Errorf("mutation %d: %w", x.seq, err)
			}
		}
		// Attached files: each chunk read and written again alone (a
		// phone may hold hundreds of MB of them), and refusals' reasons.
		type chunk struct {
			rowid int64
			sha   string
			off   int64
		}
		var chunks []chunk
		if err := eachRow(tx, "SELECT rowid, sha256, off FROM att_chunks", func(rows *sql.Rows) error {
			var c chunk
			if err := rows.Scan(&c.rowid, &c.sha, &c.off); err != nil {
				return err
			}
			chunks = append(chunks, c)
			return nil
		}); err != nil {
			return fmt.Errorf("file chunks: %w", err)
		}
		for _, c := range chunks {
			var data []byte
			if err := tx.tx.QueryRowContext(ctx, "SELECT data FROM att_chunks WHERE rowid = ?", c.rowid).Scan(&data); err != nil {
				return fmt.Errorf("file %s chunk at %d: %w", c.sha, c.off, err)
			}
			if _, err := tx.tx.ExecContext(ctx, "UPDATE att_chunks SET data = ? WHERE rowid = ?",
				tx.seal.seal(data, "att_chunks", "data", chunkRow(c.sha, c.off)), c.rowid); err != nil {
				return fmt.Errorf("file %s chunk at %d: %w", c.sha, c.off, err)
			}
		}
		reasons := map[string]string{}
		if err := eachRow(tx, "SELECT sha256, reason FROM att_files WHERE reason IS NOT NULL", func(rows *sql.Rows) error {
			var sha string
			var reason []byte
			if err := rows.Scan(&sha, &reason); err != nil {
				return err
			}
			reasons[sha] = string(reason)
			return nil
		}); err != nil {
			return fmt.Errorf("files: %w", err)
		}
		for sha, reason := range reasons {
			if _, err := tx.tx.ExecContext(ctx, "UPDATE att_files SET reason = ? WHERE sha256 = ?",
				tx.seal.sealText(reason, "att_files", "reason", sha), sha); err != nil {
				return fmt.Errorf("file %s: %w", sha, err)
			}
		}
		metas := map[string]string{}
		if err := eachRow(tx, "SELECT key, value FROM meta", func(rows *sql.Rows) error {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				return err
			}
			metas[k] = v
			return nil
		}); err != nil {
			return fmt.Errorf("meta: %w", err)
		}
		for k, v := range metas {
			if err := tx.SetMeta(k, v); err != nil {
				return fmt.Errorf("meta %s: %w", k, err)
			}
		}
		return tx.setSealCheck()
	})
	if err != nil {
		return fmt.Errorf("encrypt %s in place: %w", path, err)
	}
	if _, err := r.db.W.ExecContext(ctx, "VACUUM"); err != nil {
		return fmt.Errorf("encrypt %s in place: vacuum: %w", path, err)
	}
	if err := r.Checkpoint(ctx); err != nil {
		return fmt.Errorf("encrypt %s in place: %w", path, err)
	}
	return nil
}

// eachRow runs q in tx and calls fn on each row; the rows are closed
// before it returns, so fn's caller may write afterwards.
func eachRow(tx *RTx, q string, fn func(*sql.Rows) error) error {
	rows, err := tx.tx.QueryContext(tx.ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
