package backup

import (
	"context"
	"errors"
	"time"

	"github.com/benbjohnson/litestream"
)

// Compact compacts the backup's files of the level below into level now,
// as Litestream does on its own every 30 s (level 1), 5 min (2) and 1 h (3).
func Compact(ctx context.Context, b *Backup, level int) error {
	_, err := b.store.CompactDB(ctx, b.db, &litestream.CompactionLevel{Level: level, Interval: time.Nanosecond})
	if errors.Is(err, litestream.ErrNoCompaction) || errors.Is(err, litestream.ErrCompactionTooEarly) {
		return nil
	}
	return err
}
