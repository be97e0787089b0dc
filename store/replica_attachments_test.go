package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/fieldsync/fieldsync/store"
)

// A file's chunks are sealed: the replica's files hold none of the
// photo's bytes in clear; a chunk moved to another offset does not open;
// a deleted file's bytes are gone from the file after a checkpoint
// (secure_delete), as a wipe's are.
func TestFileChunksSealedAndDeleted(t *testing.T) {
	ctx := context.Background()
	for _, sealed := range []bool{true, false} {
		path := filepath.Join(t.TempDir(), "device.db")
		var key []byte
		if sealed {
			key = newKey(t)
		}
		r, err := store.OpenReplicaKey(ctx, path, key)
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, 100_000)
		rand.Read(data)
		const sha = "aa00000000000000000000000000000000000000000000000000000000000000"
		const sha2 = "bb00000000000000000000000000000000000000000000000000000000000000"
		err = r.Update(ctx, func(tx *store.RTx) error {
			for _, s := range []string{sha, sha2} {
				for off := 0; off < len(data); off += 32 << 10 {
					if err := tx.PutChunk(s, int64(off), data[off:min(off+32<<10, len(data))]); err != nil {
						return err
					}
				}
				if err := tx.PutFile(&store.FileRow{SHA256: s, Size: int64(len(data)), MediaType: "image/jpeg", Held: int64(len(data)),
					Mine: true, State: store.FileRefused, Reason: "太大了", RecordID: "r1", CreatedMs: 1}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = r.View(ctx, func(tx *store.RTx) error {
			f, err := tx.File(sha)
			if err != nil {
				return err
			}
			if f.Reason != "太大了" || !f.Mine || f.State != store.FileRefused || !f.Complete() {
				t.Errorf("file row %+v", f)
			}
			off, got, err := tx.ChunkAt(sha, 40_000)
			if err != nil || off != 32<<10 || !bytes.Equal(got, data[32<<10:64<<10]) {
				t.Errorf("ChunkAt(40000): %d, %d bytes, %v", off, len(got), err)
			}
			if _, _, err := tx.ChunkAt(sha, int64(len(data))); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ChunkAt past the end: %v, want ErrNotFound", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		probe := data[50_000:50_064]
		if got := contains(t, path, probe); got == sealed {
			t.Errorf("sealed=%v: the file's bytes in clear in the replica: %v", sealed, got)
		}
		if err := r.Update(ctx, func(tx *store.RTx) error { return tx.DeleteFile(sha) }); err != nil {
			t.Fatal(err)
		}
		if err := r.Update(ctx, func(tx *store.RTx) error { return tx.WipeFiles() }); err != nil {
			t.Fatal(err)
		}
		if err := r.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if contains(t, path, probe) {
			t.Errorf("sealed=%v: a deleted file's bytes stay in the replica", sealed)
		}
		r.Close()
	}
}

func contains(t *testing.T, path string, probe []byte) bool {
	t.Helper()
	found := false
	for _, p := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		found = found || bytes.Contains(b, probe)
	}
	return found
}

// A chunk moved to another file or offset does not open.
func TestFileChunkMovedDoesNotOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "device.db")
	key := newKey(t)
	r := openKey(t, path, key)
	err := r.Update(ctx, func(tx *store.RTx) error {
		if err := tx.PutChunk("aa", 0, []byte("first")); err != nil {
			return err
		}
		return tx.PutChunk("aa", 5, []byte("second"))
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	raw, err := store.OpenDB(ctx, path, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.W.ExecContext(ctx, "UPDATE att_chunks SET data = (SELECT data FROM att_chunks WHERE off = 5) WHERE off = 0"); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	r = openKey(t, path, key)
	defer r.Close()
	r.View(ctx, func(tx *store.RTx) error {
		if _, err := tx.Chunk("aa", 0); !errors.Is(err, store.ErrSealBroken) {
			t.Errorf("chunk at 0 holding the one at 5: %v, want ErrSealBroken", err)
		}
		if b, err := tx.Chunk("aa", 5); err != nil || string(b) != "second" {
			t.Errorf("chunk at 5: %q, %v", b, err)
		}
		return nil
	})
}

// A plain replica holding files, opened with a key, is encrypted in place
// with its files: their chunks and refusal reasons are sealed (no clear
// copy left in the file or its WAL) and read back whole with the key.
func TestPlainReplicaWithFilesIsEncryptedInPlace(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "device.db")
	r, err := store.OpenReplicaKey(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3*(32<<10)+123)
	rand.Read(data)
	const sha = "cc00000000000000000000000000000000000000000000000000000000000000"
	const reason = "调解协议书的扫描件太大了"
	err = r.Update(ctx, func(tx *store.RTx) error {
		for off := 0; off < len(data); off += 32 << 10 {
			if err := tx.PutChunk(sha, int64(off), data[off:min(off+32<<10, len(data))]); err != nil {
				return err
			}
		}
		return tx.PutFile(&store.FileRow{SHA256: sha, Size: int64(len(data)), MediaType: "image/jpeg", Held: int64(len(data)),
			Mine: true, State: store.FileRefused, Reason: reason, RecordID: "r1", CreatedMs: 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	probes := [][]byte{data[1000:1064], data[len(data)-64:], []byte(reason)}
	plain := fileBytes(t, path)
	for i, p := range probes {
		if !bytes.Contains(plain, p) {
			t.Fatalf("plain replica: probe %d not found: the search does not work", i)
		}
	}
	key := newKey(t)
	r, err = store.OpenReplicaKey(ctx, path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sealed := fileBytes(t, path)
	for i, p := range probes {
		if bytes.Contains(sealed, p) {
			t.Errorf("encrypted in place: probe %d of the file is still in clear", i)
		}
	}
	err = r.View(ctx, func(tx *store.RTx) error {
		f, err := tx.File(sha)
		if err != nil {
			return err
		}
		if f.Reason != reason {
			t.Errorf("reason %q, want %q", f.Reason, reason)
		}
		var got []byte
		for off := int64(0); off < int64(len(data)); {
			n, chunk, err := tx.ChunkAt(sha, off)
			if err != nil {
				return err
			}
			if n != off {
				t.Fatalf("chunk at %d starts at %d", off, n)
			}
			got = append(got, chunk...)
			off += int64(len(chunk))
		}
		if !bytes.Equal(got, data) {
			t.Error("the file's bytes differ after encrypting in place")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
