package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/store"
)

func openFiles(t testing.TB, path string) *store.Files {
	t.Helper()
	f, err := store.OpenFiles(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func randomFile(n int) ([]byte, string) {
	b := make([]byte, n)
	rand.Read(b)
	copy(b, "\xFF\xD8\xFF\xE0")
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

var noCharge = store.FileCharge{Limit: -1}

// Chunks go in at the end of the stored bytes only, once each; a chunk
// the store holds is answered without being stored or counted again; the
// file reads back whole, from any offset, and survives a reopen.
func TestFilesChunks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "attachments.db")
	f := openFiles(t, path)
	data, sha := randomFile(3*domain.ChunkBytes + 10)
	if _, err := f.Stat(ctx, sha); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("stat of an unknown file: %v", err)
	}
	fi, err := f.Begin(ctx, sha, int64(len(data)), "image/jpeg")
	if err != nil || fi.Stored != 0 || fi.Complete {
		t.Fatalf("begin: %+v %v", fi, err)
	}
	charge := store.FileCharge{DeviceID: "D1", UserID: "U1", Day: 20261207, Limit: 1 << 30}
	put := func(off int64) (store.ChunkResult, error) {
		end := min(off+domain.ChunkBytes, int64(len(data)))
		return f.PutChunk(ctx, sha, off, data[off:end], charge)
	}
	if r, err := put(0); err != nil || !r.Stored || r.File.Stored != domain.ChunkBytes {
		t.Fatalf("first chunk: %+v %v", r, err)
	}
	if r, err := put(0); err != nil || r.Stored || r.File.Stored != domain.ChunkBytes {
		t.Fatalf("the same chunk again: %+v %v, want answered, not stored", r, err)
	}
	var order *store.ChunkOrderError
	if _, err := put(2 * domain.ChunkBytes); !errors.As(err, &order) || order.Stored != domain.ChunkBytes || !errors.Is(err, store.ErrChunkOrder) {
		t.Fatalf("a chunk past the stored bytes: %v", err)
	}
	for off := int64(domain.ChunkBytes); off < int64(len(data)); off += domain.ChunkBytes {
		if _, err := put(off); err != nil {
			t.Fatal(err)
		}
	}
	used, _, err := f.FileBytesToday(ctx, "D1", 20261207)
	if err != nil || used != int64(len(data)) {
		t.Errorf("bytes counted %d (%v), want %d: the repeated chunk is not counted", used, err, len(data))
	}
	sum, n, head, err := f.Verify(ctx, sha)
	if err != nil || sum != sha || n != int64(len(data)) || !bytes.Equal(head, data[:512]) {
		t.Fatalf("verify: %s %d %v", sum, n, err)
	}
	if _, err := f.CopyFile(ctx, sha, 0, &bytes.Buffer{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("copy of a file not complete: %v, want ErrNotFound", err)
	}
	if ok, err := f.Proven(ctx, sha, "rec-1"); err != nil || ok {
		t.Fatalf("proven before complete: %v %v", ok, err)
	}
	if err := f.Complete(ctx, sha, "rec-1"); err != nil {
		t.Fatal(err)
	}
	// Open to the record it was uploaded through, not to another naming
	// the same hash, until that one is proven.
	for rec, want := range map[string]bool{"rec-1": true, "rec-2": false} {
		if ok, err := f.Proven(ctx, sha, rec); err != nil || ok != want {
			t.Fatalf("proven for %s: %v %v, want %v", rec, ok, err, want)
		}
	}
	if err := f.Prove(ctx, sha, "rec-2"); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.Proven(ctx, sha, "rec-2"); err != nil || !ok {
		t.Fatalf("proven for rec-2 after Prove: %v %v", ok, err)
	}
	if r, err := put(0); err != nil || r.Stored || !r.File.Complete {
		t.Fatalf("a chunk of a complete file: %+v %v", r, err)
	}
	if err := f.Drop(ctx, sha); err != nil {
		t.Fatal(err)
	}
	f.Close()

	f = openFiles(t, path)
	for _, off := range []int64{0, 1, domain.ChunkBytes - 1, domain.ChunkBytes, 2*domain.ChunkBytes + 5, int64(len(data)) - 1, int64(len(data))} {
		var got bytes.Buffer
		fi, err := f.CopyFile(ctx, sha, off, &got)
		if err != nil || !fi.Complete || !bytes.Equal(got.Bytes(), data[off:]) {
			t.Fatalf("copy from %d after a reopen (Drop does not touch a complete file): %d bytes, %+v %v", off, got.Len(), fi, err)
		}
	}
}

// An unfinished file claimed with another size starts over; a complete
// one never does; Drop empties an unfinished one.
func TestFilesClaims(t *testing.T) {
	ctx := context.Background()
	f := openFiles(t, filepath.Join(t.TempDir(), "attachments.db"))
	data, sha := randomFile(2 * domain.ChunkBytes)
	f.Begin(ctx, sha, 999, "image/jpeg")
	if _, err := f.PutChunk(ctx, sha, 0, data[:500], noCharge); err != nil {
		t.Fatal(err)
	}
	fi, err := f.Begin(ctx, sha, int64(len(data)), "image/jpeg")
	if err != nil || fi.Stored != 0 || fi.Size != int64(len(data)) {
		t.Fatalf("another claim: %+v %v, want started over", fi, err)
	}
	if _, err := f.PutChunk(ctx, sha, 0, data[:domain.ChunkBytes], noCharge); err != nil {
		t.Fatal(err)
	}
	if err := f.Drop(ctx, sha); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Stat(ctx, sha); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after Drop: %v", err)
	}
	if _, err := f.PutChunk(ctx, sha, 0, data[:domain.ChunkBytes], noCharge); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("chunk of a dropped file: %v", err)
	}
	f.Begin(ctx, sha, int64(len(data)), "image/jpeg")
	f.PutChunk(ctx, sha, 0, data[:domain.ChunkBytes], noCharge)
	f.PutChunk(ctx, sha, domain.ChunkBytes, data[domain.ChunkBytes:], noCharge)
	f.Complete(ctx, sha, "rec-1")
	fi, err = f.Begin(ctx, sha, 5, "application/pdf")
	if err != nil || !fi.Complete || fi.Size != int64(len(data)) || fi.MediaType != "image/jpeg" {
		t.Fatalf("a complete file claimed otherwise: %+v %v, want it as it is", fi, err)
	}
}

// The allowance: the chunk that reaches it is stored, the next refused.
func TestFilesQuota(t *testing.T) {
	ctx := context.Background()
	f := openFiles(t, filepath.Join(t.TempDir(), "attachments.db"))
	data, sha := randomFile(3 * 1000)
	f.Begin(ctx, sha, int64(len(data)), "image/jpeg")
	c := store.FileCharge{DeviceID: "D1", UserID: "U1", Day: 1, Limit: 1500}
	for i, want := range []bool{false, false, true} {
		r, err := f.PutChunk(ctx, sha, int64(i*1000), data[i*1000:(i+1)*1000], c)
		if err != nil || r.OverQuota != want {
			t.Fatalf("chunk %d: %+v %v, want over quota %v", i, r, err, want)
		}
	}
	c.Day = 2 // a new day: the count starts again, the old day's row goes
	if r, err := f.PutChunk(ctx, sha, 2000, data[2000:], c); err != nil || r.OverQuota || r.Used != 1000 {
		t.Fatalf("next day: %+v %v", r, err)
	}
	if used, _, _ := f.FileBytesToday(ctx, "D1", 1); used != 0 {
		t.Errorf("yesterday's row kept: %d", used)
	}
}

// Syncd's record database is not a file store.
func TestFilesRefusesOtherDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fieldsync.db")
	s, err := store.OpenServer(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if f, err := store.OpenFiles(context.Background(), path); err == nil {
		f.Close()
		t.Fatal("opened fieldsync.db as a file store")
	} else {
		t.Log(err)
	}
}

// Many uploads at once share commits (group commit): each chunk is
// durable when PutChunk returns, with far fewer fsyncs than chunks.
func TestFilesGroupCommit(t *testing.T) {
	ctx := context.Background()
	f := openFiles(t, filepath.Join(t.TempDir(), "attachments.db"))
	const uploads, chunks = 64, 8
	var wg sync.WaitGroup
	errs := make(chan error, uploads)
	start := time.Now()
	for i := range uploads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data, sha := randomFile(chunks * domain.ChunkBytes)
			if _, err := f.Begin(ctx, sha, int64(len(data)), "image/jpeg"); err != nil {
				errs <- err
				return
			}
			c := store.FileCharge{DeviceID: fmt.Sprint("D", i), UserID: "U", Day: 1, Limit: 1 << 30}
			for off := 0; off < len(data); off += domain.ChunkBytes {
				if _, err := f.PutChunk(ctx, sha, int64(off), data[off:off+domain.ChunkBytes], c); err != nil {
					errs <- err
					return
				}
			}
			if sum, _, _, err := f.Verify(ctx, sha); err != nil || sum != sha {
				errs <- fmt.Errorf("verify: %s %v", sum, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	commits, jobs := f.CommitStats()
	el := time.Since(start)
	t.Logf("%d uploads x %d chunks of %d KiB: %d writes in %d commits (%.1f a commit), %v, %.1f MB/s",
		uploads, chunks, domain.ChunkBytes>>10, jobs, commits, float64(jobs)/float64(commits), el.Round(time.Millisecond),
		float64(uploads*chunks*domain.ChunkBytes)/el.Seconds()/1e6)
	if jobs != uploads*(chunks+1) {
		t.Errorf("%d writes, want %d", jobs, uploads*(chunks+1))
	}
}
