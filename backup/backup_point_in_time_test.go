package backup_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/backup"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/store"
)

// waitForLaterTransaction waits until the backup holds a transaction after
// the last one it holds now. It makes one itself (a mark in the meta
// table, no record): waiting for the checkpoint that follows a write
// (Config.CheckpointEvery) raced with it, since a checkpoint already
// shipped before the first look is followed by none.
func waitForLaterTransaction(t *testing.T, st *store.Server, b *backup.Backup) {
	t.Helper()
	ctx := context.Background()
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := b.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('backup_test_mark', ?)", time.Now().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("a backup transaction after %d", s.RemoteTXID), func() bool {
		if err := b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		n, err := b.Status(ctx)
		return err == nil && n.RemoteTXID > s.RemoteTXID
	})
}

// stamps reads when the backup read each transaction from the WAL (its
// level-0 files' times), by transaction.
func stamps(t *testing.T, bkDir string) map[uint64]time.Time {
	t.Helper()
	c, err := backup.Client(bkDir)
	if err != nil {
		t.Fatal(err)
	}
	itr, err := c.LTXFiles(context.Background(), 0, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer itr.Close()
	m := map[uint64]time.Time{}
	for itr.Next() {
		m[uint64(itr.Item().MaxTXID)] = itr.Item().CreatedAt
	}
	return m
}

// A restore to a time holds only changes the backup shows were committed
// by then, even where its files are compacted.
//
// Litestream stamps each transaction with the time it read it from the
// WAL, which it does as soon as SQLite has written the frames: SQLite then
// syncs the WAL, and only after that is the commit complete (visible,
// answered to the writer). Under load that sync takes long enough for a
// file stamped before T to hold a commit completed after T (syncd restore
// -timestamp brought back changes the server committed after the moment).
// A commit is shown complete once the backup has read a later transaction,
// as SQLite writes one transaction at a time: a restore to a time between
// the reading of a transaction and of the next must stop before it.
func TestRestoreToATimeHoldsOnlyChangesCommittedByThen(t *testing.T) {
	st, b, _, bkDir := startBackedUp(t)
	ctx := context.Background()

	first, err := writeBatch(ctx, st, 20)
	if err != nil {
		t.Fatal(err)
	}
	waitForLaterTransaction(t, st, b)
	second, err := writeBatch(ctx, st, 20)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := b.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	secondTX := s.RemoteTXID
	waitForLaterTransaction(t, st, b)
	third, err := writeBatch(ctx, st, 20)
	if err != nil {
		t.Fatal(err)
	}
	waitForLaterTransaction(t, st, b)
	// The second batch's transaction inside a compacted file, as
	// Litestream does every 30 s.
	if err := backup.Compact(ctx, b, 1); err != nil {
		t.Fatal(err)
	}
	if l1, err := filepath.Glob(filepath.Join(bkDir, "ltx", "1", "*.ltx")); err != nil || len(l1) == 0 {
		t.Fatalf("no compacted file in the backup (%v)", err)
	}

	at := stamps(t, bkDir)
	readSecond, readNext := at[secondTX], at[secondTX+1]
	// The last moment nothing yet shows the second batch's commit complete:
	// the backup had read it, and the next transaction perhaps not (stamps
	// are whole milliseconds, rounded down).
	shown := readNext.Add(time.Millisecond)
	moment := shown.Add(-time.Nanosecond)

	restored := filepath.Join(t.TempDir(), "restored.db")
	p, err := backup.Restore(ctx, bkDir, restored, moment)
	if err != nil {
		t.Fatal(err)
	}
	if err := backup.IntegrityCheck(ctx, restored); err != nil {
		t.Fatal(err)
	}
	got := recordIDs(t, restored)
	for _, id := range first {
		if !got[id] {
			t.Fatalf("restore to %v lacks visit %s of the first batch, shown committed long before", moment, id)
		}
	}
	for name, ids := range map[string][]string{"second": second, "third": third} {
		for _, id := range ids {
			if got[id] {
				t.Fatalf("restore to %v (point %+v) holds visit %s of the %s batch, read at %v but not shown committed before %v", moment, p, id, name, readSecond, shown)
			}
		}
	}
	if p.TXID >= secondTX || p.Time.After(moment) || p.Committed.IsZero() || p.Committed.After(moment) {
		t.Errorf("restore to %v: point %+v, want before transaction %d, read and shown committed by then", moment, p, secondTX)
	}

	// Once the backup has read the next transaction, the second batch is in.
	restored2 := filepath.Join(t.TempDir(), "restored2.db")
	p2, err := backup.Restore(ctx, bkDir, restored2, shown)
	if err != nil {
		t.Fatal(err)
	}
	got = recordIDs(t, restored2)
	for _, id := range append(append([]string(nil), first...), second...) {
		if !got[id] {
			t.Fatalf("restore to %v (point %+v) lacks visit %s, shown committed then", shown, p2, id)
		}
	}
	for _, id := range third {
		if got[id] {
			t.Fatalf("restore to %v (point %+v) holds visit %s of the third batch, written after", shown, p2, id)
		}
	}
	if p2.TXID < secondTX || p2.Time.After(shown) || p2.Committed.IsZero() || p2.Committed.After(shown) {
		t.Errorf("restore to %v: point %+v, want transaction %d or after, read and shown committed by then", shown, p2, secondTX)
	}
}
