package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/backup"
	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/store"
)

// putFile stores data as file sha in syncd's file store, chunk by chunk as
// an upload does, up to upTo bytes (complete if all).
func putFile(t testing.TB, files *store.Files, data []byte, mediaType string, upTo int) string {
	t.Helper()
	ctx := context.Background()
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	if _, err := files.Begin(ctx, sha, int64(len(data)), mediaType); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < upTo; off += domain.ChunkBytes {
		end := min(off+domain.ChunkBytes, upTo)
		if _, err := files.PutChunk(ctx, sha, int64(off), data[off:end], store.FileCharge{DeviceID: "d1", UserID: "u1", Limit: -1}); err != nil {
			t.Fatal(err)
		}
	}
	if upTo == len(data) {
		if err := files.Complete(ctx, sha, "rec-1"); err != nil {
			t.Fatal(err)
		}
	}
	return sha
}

// A syncd with -backup backs up its attached files (attachments.db) to the
// same location's attachments/, continuously; after the data directory is
// lost, syncd restore brings the files back with the database: a complete
// file whole (bytes equal), an upload cut halfway with the bytes it had
// (it resumes from there). A restore over a directory holding an
// attachments.db keeps that one aside.
func TestRestoreBringsFilesBack(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	bk := filepath.Join(t.TempDir(), "elsewhere")
	start := func() *syncd.Daemon {
		t.Helper()
		d, err := syncd.Start(ctx, syncd.Config{Dir: data, Plaintext: true, Backup: bk})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := start()
	photo := make([]byte, 3<<20+123)
	rand.Read(photo)
	copy(photo, []byte{0xff, 0xd8, 0xff, 0xe0})
	scan := bytes.Repeat([]byte("%PDF-1.7 人民調解協議書 "), 5000)
	half := make([]byte, 1<<20)
	rand.Read(half)
	photoSHA := putFile(t, d.Files, photo, "image/jpeg", len(photo))
	scanSHA := putFile(t, d.Files, scan, "application/pdf", len(scan))
	halfSHA := putFile(t, d.Files, half, "image/jpeg", 16*domain.ChunkBytes)
	if d.FilesBackup == nil {
		t.Fatal("syncd with -backup has no backup of attachments.db")
	}
	if err := d.FilesBackup.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bk, backup.AttachmentsSub)); err != nil {
		t.Fatalf("nothing in the backup's %s/: %v", backup.AttachmentsSub, err)
	}

	// The data directory's databases are lost.
	for _, g := range []string{"fieldsync.db*", "attachments.db*", ".fieldsync.db-litestream", ".attachments.db-litestream"} {
		m, _ := filepath.Glob(filepath.Join(data, g))
		for _, f := range m {
			if err := os.RemoveAll(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"restore", "-data", data, "-backup", bk}, &out, &out); err != nil {
		t.Fatalf("syncd restore: %v\n%s", err, out.String())
	}
	t.Logf("syncd restore said:\n%s", out.String())
	if !strings.Contains(out.String(), "restored "+filepath.Join(data, "attachments.db")) {
		t.Errorf("syncd restore does not say it restored attachments.db:\n%s", out.String())
	}

	d = start()
	var got bytes.Buffer
	for _, f := range []struct {
		sha  string
		data []byte
	}{{photoSHA, photo}, {scanSHA, scan}} {
		got.Reset()
		fi, err := d.Files.CopyFile(ctx, f.sha, 0, &got)
		if err != nil || !fi.Complete || !bytes.Equal(got.Bytes(), f.data) {
			t.Errorf("restored file %s: %v, complete %v, %d bytes equal %v; want the %d bytes", f.sha[:12], err, fi.Complete, got.Len(), bytes.Equal(got.Bytes(), f.data), len(f.data))
		}
	}
	fi, err := d.Files.Stat(ctx, halfSHA)
	if err != nil || fi.Complete || fi.Stored != 16*domain.ChunkBytes {
		t.Errorf("restored half upload: %+v %v, want %d bytes stored, not complete", fi, err, 16*domain.ChunkBytes)
	}
	// Through the HQ page's interface too.
	got.Reset()
	if n, err := syncd.FilesOf(d.Files).CopyFile(ctx, photoSHA, &got); err != nil || n != int64(len(photo)) || !bytes.Equal(got.Bytes(), photo) {
		t.Errorf("FilesOf.CopyFile: %d bytes, %v", n, err)
	}
	if err := d.FilesBackup.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}

	// Again over the data in place (-force): the attachments.db there is
	// kept aside.
	out.Reset()
	if err := run(ctx, []string{"restore", "-data", data, "-backup", bk, "-force"}, &out, &out); err != nil {
		t.Fatalf("syncd restore -force: %v\n%s", err, out.String())
	}
	if aside, _ := filepath.Glob(filepath.Join(data, "attachments.db.before-restore-*")); len(aside) == 0 || !strings.Contains(out.String(), "moved the attachments.db that was there") {
		t.Errorf("the attachments.db in place was not kept aside (%v):\n%s", aside, out.String())
	}
}

// Backing up and restoring 100 MB of files (50 photos of 2 MB): the time
// the backup takes to hold them once stored, and syncd restore's time for
// the files' database (the records' one is nearly empty here).
func BenchmarkRestoreFiles100MB(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		data := filepath.Join(b.TempDir(), "data")
		bk := filepath.Join(b.TempDir(), "backup")
		d, err := syncd.Start(ctx, syncd.Config{Dir: data, Plaintext: true, Backup: bk})
		if err != nil {
			b.Fatal(err)
		}
		photo := make([]byte, 2<<20)
		for range 50 {
			rand.Read(photo)
			putFile(b, d.Files, photo, "image/jpeg", len(photo))
		}
		t0 := time.Now()
		if err := d.FilesBackup.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "s-backup-sync")
		if err := d.Stop(); err != nil {
			b.Fatal(err)
		}
		for _, g := range []string{"fieldsync.db*", "attachments.db*"} {
			m, _ := filepath.Glob(filepath.Join(data, g))
			for _, f := range m {
				os.Remove(f)
			}
		}
		b.StartTimer()
		var out bytes.Buffer
		t1 := time.Now()
		if err := run(ctx, []string{"restore", "-data", data, "-backup", bk}, &out, &out); err != nil {
			b.Fatalf("%v\n%s", err, out.String())
		}
		b.ReportMetric(time.Since(t1).Seconds(), "s-restore")
		b.Log(out.String())
	}
}
