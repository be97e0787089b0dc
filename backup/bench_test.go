package backup_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/fieldsync/fieldsync/backup"
	"github.com/fieldsync/fieldsync/store"
)

// BenchmarkWriteWhileBackedUp is what the backup costs the writer: batches
// of 500 new visits (one group commit each, synchronous=FULL), without a
// backup and with one to a directory syncing every second (the default).
// go test ./backup -run '^$' -bench WriteWhileBackedUp -benchtime 200x
func BenchmarkWriteWhileBackedUp(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "backup=off"
		if on {
			name = "backup=dir"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			dbPath := filepath.Join(dir, "fieldsync.db")
			var opts []store.ServerOption
			if on {
				opts = append(opts, store.ExternalCheckpoints())
			}
			st, err := store.OpenServer(ctx, dbPath, opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if on {
				bk, err := backup.Start(ctx, backup.Config{DBPath: dbPath, URL: filepath.Join(dir, "backup"), BetweenCommits: st.BetweenCommits})
				if err != nil {
					b.Fatal(err)
				}
				defer bk.Close(ctx)
			}
			for b.Loop() {
				if _, err := writeBatch(ctx, st, 500); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "records/s")
			// Whether checkpoints keep up under writes without pause.
			if fi, err := os.Stat(dbPath + "-wal"); err == nil {
				b.ReportMetric(float64(fi.Size())/(1<<20), "wal-MB")
			}
		})
	}
}
