package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/hq/hqtest"
	hqreport "github.com/fieldsync/fieldsync/hq/report"
)

// hqReport is what HQ's side measured: the read model following the
// changelog through the storm, and the coverage page's server time.
type hqReport struct {
	// The follower (hq.Follow, a durable consumer, in syncbench's own
	// process: its CPU is in "gen CPU s").
	InitialLoadSec     float64 `json:"initial_load_s"`         // from Follow's start to every change before the storm applied
	InitialChanges     uint64  `json:"initial_changes"`        // changes applied by then
	LagMax             uint64  `json:"storm_lag_max"`          // stream last seq − applied seq, sampled every 50 ms from the storm's start to caught up
	LagP50             uint64  `json:"storm_lag_p50"`          //
	LagP99             uint64  `json:"storm_lag_p99"`          //
	LagSamples         int     `json:"storm_lag_samples"`      //
	CatchUpAfterStormS float64 `json:"catch_up_after_storm_s"` // from the storm's last device done to the model holding every change of the storm
	StormChanges       uint64  `json:"storm_changes"`          // changes the model applied from the storm's start to caught up
	AppliedPerSec      float64 `json:"storm_applied_per_s"`    // those over the time from the storm's start to caught up
	// The coverage page (report.Page "coverage", the city's current
	// month) on the model just followed: the org, households and the
	// storm's visits.
	PageFollowedMs []float64 `json:"coverage_page_followed_ms,omitempty"`
	// The same page on a city with a year of visits (hqtest, the same
	// size as -scale), each call after a change to the model's meta (the
	// report's memo of month results does not hold), then once unchanged.
	YearCity       string    `json:"year_city,omitempty"`
	PageYearMs     []float64 `json:"coverage_page_year_ms,omitempty"`
	PageYearCached float64   `json:"coverage_page_year_cached_ms,omitempty"`
	Notes          []string  `json:"notes,omitempty"`
}

// hqFollower is a read model following the stream during a run.
type hqFollower struct {
	m       *hq.Model
	js      jetstream.JetStream
	stream  string // followed (domain.StreamName, or domain.HQStreamName)
	applied atomic.Uint64
	poke    chan struct{}
	cancel  context.CancelFunc
	done    chan error

	mu    sync.Mutex
	lags  []uint64
	times []time.Time // when each commit was applied
	seqs  []uint64    // and up to which change
}

// appliedAt is when the model first held change seq (zero if not yet).
func (h *hqFollower) appliedAt(seq uint64) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	i, _ := slices.BinarySearch(h.seqs, seq)
	if i < len(h.seqs) {
		return h.times[i]
	}
	return time.Time{}
}

// waitQuiet waits until the stream's last sequence has not moved for
// quiet, and returns it.
func (h *hqFollower) waitQuiet(ctx context.Context, quiet, timeout time.Duration) (uint64, error) {
	deadline := time.Now().Add(timeout)
	last, err := h.streamLast(ctx)
	if err != nil {
		return 0, err
	}
	since := time.Now()
	for time.Since(since) < quiet {
		if time.Now().After(deadline) {
			return last, fmt.Errorf("the stream still grows after %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
		l, err := h.streamLast(ctx)
		if err != nil {
			return 0, err
		}
		if l != last {
			last, since = l, time.Now()
		}
	}
	return last, nil
}

// startHQ opens a model in dir and follows the stream (empty:
// domain.StreamName).
func startHQ(ctx context.Context, js jetstream.JetStream, dir, stream string, log io.Writer) (*hqFollower, error) {
	if stream == "" {
		stream = domain.StreamName
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	m, err := hq.Open(filepath.Join(dir, "model.db"))
	if err != nil {
		return nil, err
	}
	h := &hqFollower{m: m, js: js, stream: stream, poke: make(chan struct{}, 1), done: make(chan error, 1)}
	fc := hq.FollowConfig{Durable: "syncbench-hq",
		Log: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Applied: func(seq uint64) {
			h.applied.Store(seq)
			h.mu.Lock()
			h.times, h.seqs = append(h.times, time.Now()), append(h.seqs, seq)
			h.mu.Unlock()
			select {
			case h.poke <- struct{}{}:
			default:
			}
		}}
	if err := followStream(&fc, stream); err != nil {
		m.Close()
		return nil, err
	}
	fctx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	go func() { h.done <- m.Follow(fctx, js, fc) }()
	return h, nil
}

// streamLast is the stream's last sequence number.
func (h *hqFollower) streamLast(ctx context.Context) (uint64, error) {
	st, err := h.js.Stream(ctx, h.stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// waitApplied waits until the model has applied change seq.
func (h *hqFollower) waitApplied(ctx context.Context, seq uint64, timeout time.Duration) error {
	deadline := time.After(timeout)
	for h.applied.Load() < seq {
		select {
		case <-h.poke:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			return fmt.Errorf("the HQ model applied up to change %d in %v, want %d", h.applied.Load(), timeout, seq)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// sample records stream last seq − applied every 50 ms until stop.
func (h *hqFollower) sample(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		last, err := h.streamLast(ctx)
		if err != nil {
			continue
		}
		a := h.applied.Load()
		lag := uint64(0)
		if last > a {
			lag = last - a
		}
		h.mu.Lock()
		h.lags = append(h.lags, lag)
		h.mu.Unlock()
	}
}

func (h *hqFollower) close() error {
	h.cancel()
	err := <-h.done
	if cerr := h.m.Close(); err == nil {
		err = cerr
	}
	return err
}

// lagStats fills the lag figures of r from the samples.
func (h *hqFollower) lagStats(r *hqReport) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := slices.Clone(h.lags)
	slices.Sort(s)
	r.LagSamples = len(s)
	if len(s) == 0 {
		return
	}
	at := func(p float64) uint64 { return s[max(0, min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1))] }
	r.LagP50, r.LagP99, r.LagMax = at(.5), at(.99), s[len(s)-1]
}

// pageTimes times the coverage page n times on db; before each call,
// tick (when not nil) changes the model's meta.
func pageTimes(ctx context.Context, db *sql.DB, q hqreport.Query, n int, tick func() error) ([]float64, error) {
	var out []float64
	for range n {
		if tick != nil {
			if err := tick(); err != nil {
				return out, err
			}
		}
		t0 := time.Now()
		res, err := hqreport.Page(ctx, db, "coverage", q)
		if err != nil {
			return out, fmt.Errorf("coverage page: %w", err)
		}
		out = append(out, ms(time.Since(t0)))
		if len(res.Tables) == 0 || len(res.Tables[0].Rows) == 0 {
			return out, fmt.Errorf("coverage page: no coverage table")
		}
	}
	return out, nil
}

// yearCityPage times the coverage page on a city with a year of visits
// (hqtest, cached between runs) of the size of spec.
func yearCityPage(ctx context.Context, spec citySpec, seed uint64, r *hqReport, log io.Writer) error {
	s := hqtest.Macheng()
	s.Households, s.Members, s.Grids, s.Villages, s.Towns = spec.Households, spec.Members, spec.Grids, spec.Villages, spec.Towns
	s.Seed = seed
	t0 := time.Now()
	path, c, err := hqtest.Cached(ctx, s)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "syncbench: HQ year city %s ready in %.1fs (%d households, %d visits)\n", path, time.Since(t0).Seconds(), c.Households, c.Visits)
	m, err := hq.Open(path)
	if err != nil {
		return err
	}
	defer m.Close()
	w, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer w.Close()
	tick := 0
	bump := func() error {
		tick++
		_, err := w.ExecContext(ctx, `INSERT OR REPLACE INTO meta (key, value) VALUES ('syncbench_tick', ?)`, fmt.Sprint(time.Now().UnixNano(), tick))
		return err
	}
	q := hqreport.Query{Lang: "zh", NowMs: c.NowMs}
	if _, err := pageTimes(ctx, m.DB(), q, 1, bump); err != nil { // warm SQLite's page cache
		return err
	}
	r.YearCity = fmt.Sprintf("%d households, %d members, %d grids, %d visits over %d months to %s (hqtest, seed %d)", c.Households, c.Members, c.Grids, c.Visits, c.Months, c.Last, seed)
	if r.PageYearMs, err = pageTimes(ctx, m.DB(), q, 3, bump); err != nil {
		return err
	}
	cached, err := pageTimes(ctx, m.DB(), q, 1, nil)
	if err != nil {
		return err
	}
	r.PageYearCached = cached[0]
	return nil
}

func printHQ(w io.Writer, r *hqReport) {
	if r == nil {
		return
	}
	fmt.Fprintf(w, "\nHQ read model (hq.Follow, durable consumer, in syncbench's process):\n")
	fmt.Fprintf(w, "  initial load: %d changes in %.2fs\n", r.InitialChanges, r.InitialLoadSec)
	fmt.Fprintf(w, "  storm: lag behind the stream (changes) p50 %d, p99 %d, max %d (%d samples, every 50 ms); caught up %.2fs after the storm's last device; %d changes at %.0f/s\n",
		r.LagP50, r.LagP99, r.LagMax, r.LagSamples, r.CatchUpAfterStormS, r.StormChanges, r.AppliedPerSec)
	if len(r.PageFollowedMs) > 0 {
		fmt.Fprintf(w, "  coverage page on the followed model (city, current month): %v ms\n", r.PageFollowedMs)
	}
	if r.YearCity != "" {
		fmt.Fprintf(w, "  coverage page on a year's city (%s): %v ms after a change, %.1f ms unchanged\n", r.YearCity, r.PageYearMs, r.PageYearCached)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "  note:", n)
	}
}

// hqAfterStorm waits for the model to hold every change of the storm and
// fills the storm's figures.
func hqAfterStorm(ctx context.Context, hf *hqFollower, r *hqReport, applied0 uint64, stormStart, poolEnd time.Time) error {
	last, err := hf.waitQuiet(ctx, time.Second, 5*time.Minute)
	if err != nil {
		return err
	}
	if err := hf.waitApplied(ctx, last, 10*time.Minute); err != nil {
		return err
	}
	done := hf.appliedAt(last)
	if poolEnd.IsZero() {
		poolEnd = stormStart
	}
	r.CatchUpAfterStormS = round2(max(0, done.Sub(poolEnd).Seconds()))
	r.StormChanges = last - applied0
	if d := done.Sub(stormStart).Seconds(); d > 0 {
		r.AppliedPerSec = math.Round(float64(r.StormChanges) / d)
	}
	return nil
}
