package syncd

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync/store"
)

// DefaultRetention is how long syncd keeps what only late devices need:
// the marks of records that left a bucket, the changelog rows the relay
// published, and kept mutation results (cmd/syncd -retention).
const DefaultRetention = 180 * 24 * time.Hour

// DefaultRetentionEvery is how often the retention pass runs (besides
// once at start).
const DefaultRetentionEvery = time.Hour

// ParseRetention reads a retention window: a number of days ("180d"), a
// Go duration ("4320h"), or "off" (0: nothing is compacted). A window under
// a day is refused: a device offline over a weekend must not have to read
// its whole scope again.
func ParseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "off" {
		return 0, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil {
			return 0, errors.New("want a number of days like 180d, a duration like 4320h, or off")
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errors.New("want a number of days like 180d, a duration like 4320h, or off")
		}
	}
	if d < 24*time.Hour {
		return 0, errors.New("at least 1d (or off); the default is 180d")
	}
	return d, nil
}

// retention runs the store's retention pass on its writer, in small jobs.
type retention struct {
	d      *Daemon
	window time.Duration
	now    func() time.Time
	mu     sync.Mutex // one pass at a time
	cancel context.CancelFunc
	done   chan struct{}
}

// startRetention runs a pass at once and then every cfg.RetentionEvery,
// until Stop. Without a window it does nothing.
func (d *Daemon) startRetention() {
	cfg := d.cfg
	if cfg.Retention <= 0 {
		return
	}
	every := cfg.RetentionEvery
	if every <= 0 {
		every = DefaultRetentionEvery
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &retention{d: d, window: cfg.Retention, now: now, cancel: cancel, done: make(chan struct{})}
	d.retention = r
	go func() {
		defer close(r.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if _, err := r.pass(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("retention pass failed; it runs again later", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (r *retention) stop() {
	r.cancel()
	<-r.done
}

func (r *retention) pass(ctx context.Context) (store.CompactStats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	st, err := r.d.Store.Compact(ctx, r.now(), r.window, r.d.Server.Relay().Published())
	if err != nil {
		return st, err
	}
	if st.GoneRows+st.Results+st.Changes > 0 {
		r.d.log.Info("retention pass compacted history older than the window",
			"window", r.window, "horizon_change", st.Horizon, "gone_marks", st.GoneRows, "mutation_results", st.Results,
			"changes", st.Changes, "changelog_starts_at", st.ChangeFloor, "took", time.Since(start).Round(time.Millisecond))
	} else {
		r.d.log.Debug("retention pass: nothing older than the window", "window", r.window, "horizon_change", st.Horizon)
	}
	if r.d.Files != nil {
		if err := r.sweepUploads(ctx); err != nil {
			return st, err
		}
	}
	return st, nil
}

// sweepUploads deletes the bytes of uploads left unfinished for
// store.UnfinishedUploadTTL (a phone that never came back, an upload
// refused half way), 100 files a job so that uploads are not held up.
func (r *retention) sweepUploads(ctx context.Context) error {
	cutoff := r.now().Add(-store.UnfinishedUploadTTL)
	var files int
	var bytes int64
	for {
		n, b, err := r.d.Files.SweepUnfinished(ctx, cutoff, 100)
		if err != nil {
			return err
		}
		files, bytes = files+n, bytes+b
		if n < 100 {
			break
		}
	}
	if files > 0 {
		r.d.log.Info("retention pass removed unfinished uploads", "files", files, "bytes", bytes, "untouched_for", store.UnfinishedUploadTTL)
	}
	return nil
}

// Compact runs a retention pass now (the one syncd runs every
// Config.RetentionEvery) and says what it removed. Without a retention
// window it refuses.
func (d *Daemon) Compact(ctx context.Context) (store.CompactStats, error) {
	if d.retention == nil {
		return store.CompactStats{}, errors.New("syncd: no retention window (Config.Retention is 0)")
	}
	return d.retention.pass(ctx)
}
