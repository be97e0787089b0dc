package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/backup"
	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/syncd"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// backedUpData makes a data directory as syncd leaves it: a database with n
// visits, backed up to <data>/backup. It returns the lineage and the last
// change number.
func backedUpData(t testing.TB, data string, n int) (string, uint64) {
	t.Helper()
	ctx := context.Background()
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(data, "fieldsync.db")
	st, err := store.OpenServer(ctx, dbPath, store.ExternalCheckpoints())
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.Start(ctx, backup.Config{DBPath: dbPath, URL: filepath.Join(data, "backup"), BetweenCommits: st.BetweenCommits})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	// A sync point after each 1000: the backup holds many small
	// transactions, as a running syncd's does, not one.
	for from := 0; from < n && err == nil; from += 1000 {
		err = st.Write(ctx, func(tx *store.Tx) error {
			return putVisits(tx, from, min(from+1000, n))
		})
		if err == nil {
			err = b.Sync(ctx)
		}
	}
	last, lerr := st.LastSeq(ctx)
	instance := st.Instance()
	if err := errors.Join(err, lerr, st.Close(), b.Close(ctx)); err != nil {
		t.Fatal(err)
	}
	return instance, last
}

// putVisits writes visits number from to to-1.
func putVisits(tx *store.Tx, from, to int) error {
	for i := from; i < to; i++ {
		hlc := domain.HLC{Wall: time.Now().UnixMilli(), Counter: uint16(i), Node: "drestore"}.String()
		r := &pb.Record{Id: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, AuthorId: "U000001", OriginDeviceId: "drestore",
			Fields: map[string]*pb.FieldValue{"household_id": {Value: fmt.Sprintf("H%06d", i), Hlc: hlc}}}
		r.Buckets = domain.RecordBuckets(r, "V0001", "T01")
		if _, err := tx.PutRecord(nil, r, store.RecordMeta{VillageID: "V0001", TownID: "T01"}, store.ChangeInfo{DeviceID: "drestore", UserID: "U000001"}); err != nil {
			return err
		}
	}
	return nil
}

// syncd restore puts the backup in place of the database (moving the old
// one aside with -force), and the restored database starts a new lineage
// after its last change.
func TestRestoreCommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	oldLineage, last := backedUpData(t, data, 300)
	if last == 0 {
		t.Fatal("no changes written")
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"restore", "-data", data, "-force"}, &out, &out); err != nil {
		t.Fatalf("syncd restore: %v\n%s", err, out.String())
	}
	t.Logf("syncd restore said:\n%s", out.String())
	for _, want := range []string{"integrity", "change " + strconv.FormatUint(last, 10), "new lineage", "(was " + oldLineage + ")", "moved the database that was there to"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("syncd restore's output lacks %q", want)
		}
	}
	aside, _ := filepath.Glob(filepath.Join(data, "fieldsync.db.before-restore-*"))
	if len(aside) == 0 {
		t.Error("the database that was there was not kept")
	}
	if _, err := os.Stat(filepath.Join(data, ".fieldsync.db-litestream")); err == nil {
		t.Error("the backup's state for the old database is still there")
	}

	ctx := context.Background()
	st, err := store.OpenServer(ctx, filepath.Join(data, "fieldsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got != last {
		t.Errorf("restored database's last change is %d, want %d", got, last)
	}
	l, err := st.Lineage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.ID == oldLineage || l.Prev != oldLineage || l.After != last {
		t.Errorf("restored database's lineage is %+v, want a new one after change %d of %s", l, last, oldLineage)
	}
}

// syncd restore refuses, with a message saying what to do, when there is
// nothing to restore, when a database is there and -force was not given,
// when a syncd holds the directory, and on bad flags; it leaves the data
// directory as it was.
func TestRestoreRefuses(t *testing.T) {
	withBackup := filepath.Join(t.TempDir(), "data")
	backedUpData(t, withBackup, 10)
	empty := t.TempDir()

	tests := []struct {
		name string
		data string
		args []string
		lock bool
		want string // in the error
		is   error  // errors.Is, if set
	}{
		{name: "no backup", data: empty, want: "holds no backup of the database", is: backup.ErrNoBackup},
		{name: "no backup at the location given", data: empty, args: []string{"-backup", filepath.Join(empty, "nowhere")}, want: "nowhere holds no backup", is: backup.ErrNoBackup},
		{name: "too old", data: withBackup, args: []string{"-force", "-timestamp", "2020-01-01T00:00:00Z"}, want: "nothing as old as 2020-01-01T00:00:00Z", is: backup.ErrNoBackup},
		{name: "database exists", data: withBackup, want: "exists: syncd restore replaces it only with -force"},
		{name: "syncd running", data: withBackup, args: []string{"-force"}, lock: true, want: "is in use by another syncd (pid " + strconv.Itoa(os.Getpid()), is: syncd.ErrLocked},
		{name: "timestamp", data: withBackup, args: []string{"-timestamp", "yesterday"}, want: "want RFC 3339"},
		{name: "future", data: withBackup, args: []string{"-timestamp", time.Now().Add(time.Hour).Format(time.RFC3339)}, want: "in the future"},
		{name: "backup off", data: withBackup, args: []string{"-backup", "off"}, want: "give the location"},
		{name: "argument", data: withBackup, args: []string{"now"}, want: `unexpected argument "now"`},
		{name: "unknown flag", data: withBackup, args: []string{"-txid", "3"}, is: errFlags},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := listDir(t, tt.data)
			if tt.lock {
				l, err := syncd.LockDataDir(tt.data)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Unlock()
			}
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"restore", "-data", tt.data}, tt.args...), &out, &out)
			switch {
			case err == nil:
				t.Fatalf("syncd restore %q: no error", tt.args)
			case tt.is != nil && !errors.Is(err, tt.is):
				t.Errorf("syncd restore %q: %v, want %v", tt.args, err, tt.is)
			case !strings.Contains(err.Error(), tt.want):
				t.Errorf("syncd restore %q: %v, want it to say %q", tt.args, err, tt.want)
			}
			if after := listDir(t, tt.data); after != before {
				t.Errorf("syncd restore %q changed the data directory:\nbefore %s\nafter  %s", tt.args, before, after)
			}
		})
	}
}

// listDir lists the files in dir with their sizes (syncd.lock aside).
func listDir(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() == syncd.LockFile {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%d ", e.Name(), fi.Size())
	}
	return b.String()
}

// syncd restore -h explains the command and every flag.
func TestRestoreHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"restore", "-h"}, io.Discard, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("syncd restore -h: %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"Usage: syncd restore", "Stop syncd first", "-data", "-backup", "-timestamp", "-force", "new lineage"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("syncd restore -h lacks %q; got:\n%s", want, out.String())
		}
	}
}

// BenchmarkRestoreCommand measures syncd restore -force of a database of
// 100,000 visits (about the records of a city's first months): restore,
// integrity check, rebase. Run it with
// go test ./cmd/syncd -run '^$' -bench RestoreCommand -benchtime 3x
func BenchmarkRestoreCommand(b *testing.B) {
	const visits = 100_000
	data := filepath.Join(b.TempDir(), "data")
	start := time.Now()
	backedUpData(b, data, visits)
	b.Logf("wrote and backed up %d visits in %.1f s", visits, time.Since(start).Seconds())
	dbSize := fileSize(b, filepath.Join(data, "fieldsync.db")) + fileSize(b, filepath.Join(data, "fieldsync.db-wal"))
	backupSize := dirSize(b, filepath.Join(data, "backup"))
	var out bytes.Buffer
	for b.Loop() {
		out.Reset()
		if err := run(context.Background(), []string{"restore", "-data", data, "-force"}, &out, &out); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		aside, _ := filepath.Glob(filepath.Join(data, "fieldsync.db.before-restore-*"))
		for _, f := range aside {
			os.Remove(f)
		}
		b.StartTimer()
	}
	b.Logf("the last syncd restore said:\n%s", out.String())
	b.ReportMetric(float64(dbSize), "db-bytes")
	b.ReportMetric(float64(backupSize), "backup-bytes")
	b.ReportMetric(float64(fileSize(b, filepath.Join(data, "fieldsync.db"))), "restored-bytes")
}

func fileSize(t testing.TB, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func dirSize(t testing.TB, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		n += fi.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
