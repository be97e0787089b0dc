package backup_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/backup"
	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// visit is a record as devices write them.
func visit(i int) *pb.Record {
	hlc := domain.HLC{Wall: time.Now().UnixMilli(), Counter: uint16(i), Node: "dbackup"}.String()
	fv := func(v string) *pb.FieldValue { return &pb.FieldValue{Value: v, Hlc: hlc} }
	r := &pb.Record{Id: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, AuthorId: "U000001", OriginDeviceId: "dbackup",
		Fields: map[string]*pb.FieldValue{"household_id": fv(fmt.Sprintf("H%06d", i%5000)), "visited_on": fv("2026-11-20"),
			"needs": fv("屋頂漏水，需要修繕；孫子上學交通不便"), "help": fv("聯繫村委會安排維修")}}
	r.Buckets = domain.RecordBuckets(r, "V0001", "T01")
	return r
}

// writeBatch commits n new visits in one transaction and returns their ids.
func writeBatch(ctx context.Context, st *store.Server, n int) ([]string, error) {
	var ids []string
	err := st.Write(ctx, func(tx *store.Tx) error {
		ids = ids[:0]
		for i := range n {
			r := visit(i)
			if _, err := tx.PutRecord(nil, r, store.RecordMeta{VillageID: "V0001", TownID: "T01"},
				store.ChangeInfo{DeviceID: "dbackup", UserID: "U000001"}); err != nil {
				return err
			}
			ids = append(ids, r.Id)
		}
		return nil
	})
	return ids, err
}

// recordIDs reads the ids of every record in the database at path.
func recordIDs(t *testing.T, path string) map[string]bool {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT id FROM records")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func startBackedUp(t *testing.T) (st *store.Server, b *backup.Backup, dbPath, bkDir string) {
	t.Helper()
	dir := t.TempDir()
	dbPath, bkDir = filepath.Join(dir, "fieldsync.db"), filepath.Join(dir, "backup")
	st, b, stop := startBackup(t, dbPath, bkDir)
	t.Cleanup(stop)
	return st, b, dbPath, bkDir
}

// startBackup opens the database at dbPath as syncd does with a backup to
// bkDir; stop closes both (the backup after a last sync), once.
func startBackup(t *testing.T, dbPath, bkDir string) (*store.Server, *backup.Backup, func()) {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenServer(ctx, dbPath, store.ExternalCheckpoints())
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.Start(ctx, backup.Config{DBPath: dbPath, URL: bkDir, SyncInterval: 100 * time.Millisecond, BetweenCommits: st.BetweenCommits})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	var once sync.Once
	return st, b, func() {
		once.Do(func() {
			if err := errors.Join(st.Close(), b.Close(context.Background())); err != nil {
				t.Error(err)
			}
		})
	}
}

// Writes go on while the backup runs (enough of them for Litestream to
// checkpoint the WAL several times); a restore taken while they still go on
// holds every write committed before the sync point, and passes SQLite's
// integrity check.
func TestRestoreHoldsEveryWriteBeforeTheSyncPoint(t *testing.T) {
	st, b, _, bkDir := startBackedUp(t)
	ctx := context.Background()

	var mu sync.Mutex
	var committed []string
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			ids, err := writeBatch(ctx, st, 50)
			if err != nil {
				writerDone <- err
				return
			}
			mu.Lock()
			committed = append(committed, ids...)
			mu.Unlock()
		}
	}()
	n := func() int { mu.Lock(); defer mu.Unlock(); return len(committed) }
	// 5,000 visits: with each commit's pages, the WAL passes Litestream's
	// 1000-page checkpoint threshold several times, and the checkpoints
	// between commits run meanwhile.
	testenv.WaitFor(t, 5*time.Minute, "5,000 visits committed", func() bool { return n() >= 5000 })
	mu.Lock()
	acked := append([]string(nil), committed...)
	mu.Unlock()
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// More writes after the sync point, while the restore runs.
	testenv.WaitFor(t, 5*time.Minute, "more visits committed", func() bool { return n() >= len(acked)+500 })

	restored := filepath.Join(t.TempDir(), "restored.db")
	p, err := backup.Restore(ctx, bkDir, restored, time.Time{})
	close(stop)
	if werr := <-writerDone; werr != nil {
		t.Fatal(werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if p.TXID == 0 || p.Time.IsZero() {
		t.Errorf("restore point %+v: want a transaction and a time", p)
	}
	if err := backup.IntegrityCheck(ctx, restored); err != nil {
		t.Fatal(err)
	}
	got := recordIDs(t, restored)
	missing := 0
	for _, id := range acked {
		if !got[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of the %d visits committed before the sync point are missing from the restore (it holds %d)", missing, len(acked), len(got))
	}
	t.Logf("restored %d visits (%d committed before the sync point) at %+v", len(got), len(acked), p)

	// The restored database opens as a server database.
	rs, err := store.OpenServer(ctx, restored)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Close(); err != nil {
		t.Fatal(err)
	}
}

// A restore to a moment between two batches gives the first batch only.
func TestRestoreToAPointInTime(t *testing.T) {
	st, b, _, bkDir := startBackedUp(t)
	ctx := context.Background()

	first, err := writeBatch(ctx, st, 200)
	if err != nil {
		t.Fatal(err)
	}
	// Shown committed once the backup has read a later transaction.
	waitForLaterTransaction(t, st, b)
	between := time.Now()
	// The backup stamps its files in milliseconds: the second batch must be
	// shipped in a later millisecond than the point asked for.
	testenv.WaitFor(t, time.Second, "the clock to move past the point", func() bool { return time.Since(between) > 5*time.Millisecond })
	second, err := writeBatch(ctx, st, 200)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	atPoint := filepath.Join(t.TempDir(), "at-point.db")
	p, err := backup.Restore(ctx, bkDir, atPoint, between)
	if err != nil {
		t.Fatal(err)
	}
	if p.Time.After(between) {
		t.Errorf("restored point %v is after the time asked for, %v", p.Time, between)
	}
	if err := backup.IntegrityCheck(ctx, atPoint); err != nil {
		t.Fatal(err)
	}
	got := recordIDs(t, atPoint)
	for _, id := range first {
		if !got[id] {
			t.Fatalf("restore to %v lacks %s of the first batch", between, id)
		}
	}
	for _, id := range second {
		if got[id] {
			t.Fatalf("restore to %v holds %s of the second batch, written after it", between, id)
		}
	}

	latest := filepath.Join(t.TempDir(), "latest.db")
	lp, err := backup.Restore(ctx, bkDir, latest, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if lp.TXID <= p.TXID {
		t.Errorf("latest point %+v is not after the point in time %+v", lp, p)
	}
	if got := recordIDs(t, latest); len(got) != len(first)+len(second) {
		t.Errorf("latest restore holds %d visits, want %d", len(got), len(first)+len(second))
	}
}

// A location without a backup, or a point older than the backup, is an
// error that says so.
func TestRestoreWithoutBackup(t *testing.T) {
	ctx := context.Background()
	_, err := backup.Restore(ctx, t.TempDir(), filepath.Join(t.TempDir(), "x.db"), time.Time{})
	if !errors.Is(err, backup.ErrNoBackup) {
		t.Fatalf("restore from an empty directory: %v, want ErrNoBackup", err)
	}

	st, b, _, bkDir := startBackedUp(t)
	if _, err := writeBatch(ctx, st, 10); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = backup.Restore(ctx, bkDir, filepath.Join(t.TempDir(), "x.db"), time.Now().Add(-time.Hour))
	if !errors.Is(err, backup.ErrNoBackup) {
		t.Fatalf("restore to an hour before the backup began: %v, want ErrNoBackup", err)
	}
}

// After a restore to an earlier point, the restored database is backed up
// to the same place and its new writes join the backup: the latest restore
// then holds what the restored point held and what came after, and not
// what the lost stretch held.
func TestBackupGoesOnAfterARestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bkDir := filepath.Join(dir, "backup")
	if err := os.MkdirAll(filepath.Join(dir, "old"), 0o700); err != nil {
		t.Fatal(err)
	}
	st, b, stop := startBackup(t, filepath.Join(dir, "old", "fieldsync.db"), bkDir)
	defer stop()
	kept, err := writeBatch(ctx, st, 100)
	if err != nil {
		t.Fatal(err)
	}
	waitForLaterTransaction(t, st, b)
	between := time.Now()
	testenv.WaitFor(t, time.Second, "the clock to move past the point", func() bool { return time.Since(between) > 5*time.Millisecond })
	lost, err := writeBatch(ctx, st, 100)
	if err != nil {
		t.Fatal(err)
	}
	stop() // the server is lost; its last writes were shipped

	// The operator restores to the point between the batches (into a fresh
	// directory, as syncd restore leaves no Litestream state behind).
	newPath := filepath.Join(dir, "new", "fieldsync.db")
	if _, err := backup.Restore(ctx, bkDir, newPath, between); err != nil {
		t.Fatal(err)
	}
	st2, b2, stop2 := startBackup(t, newPath, bkDir)
	defer stop2()
	if _, err := st2.Rebase(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := writeBatch(ctx, st2, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	stop2()

	latest := filepath.Join(dir, "latest.db")
	if _, err := backup.Restore(ctx, bkDir, latest, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := backup.IntegrityCheck(ctx, latest); err != nil {
		t.Fatal(err)
	}
	got := recordIDs(t, latest)
	for name, ids := range map[string][]string{"kept": kept, "written after the restore": after} {
		for _, id := range ids {
			if !got[id] {
				t.Fatalf("the latest restore lacks visit %s (%s)", id, name)
			}
		}
	}
	for _, id := range lost {
		if got[id] {
			t.Fatalf("the latest restore holds visit %s, written after the point the server was restored to", id)
		}
	}
}
