package e2e

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// BenchmarkHQFreshness measures how long a visit takes from a phone's
// sync to HQ's read model: a real server (testenv: SQLite, embedded NATS
// with JetStream, gRPC with TLS), a real phone (syncer, its own SQLite
// file) and the read model (hq.Open, hq.Follow as a durable consumer over
// an HQ credential). Each iteration the phone records a visit and syncs;
// the clock runs from the start of the sync until the model's Applied
// callback reports the visit's change number and the visit's row is in
// the model's visits table.
//
//	go test ./e2e -run '^$' -bench HQFreshness -benchtime 200x
//
// Metrics: ms/visit (mean), p50_ms, p99_ms, max_ms of the whole path;
// sync_ms (the phone's Sync call) and after_ack_ms (from the phone's
// acknowledgement to the row in the model). The target is within
// 1 second; the benchmark reports, it does not fail on time.
func BenchmarkHQFreshness(b *testing.B) {
	e := testenv.Start(b)
	e.ImportSample()
	d := e.Device(testenv.Member)
	testenv.Sync(b, d)

	js, err := jetstream.New(e.HQNATS(b))
	if err != nil {
		b.Fatal(err)
	}
	m, err := hq.Open(filepath.Join(b.TempDir(), "model.db"))
	if err != nil {
		b.Fatal(err)
	}
	var applied atomic.Uint64
	poke := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Follow(ctx, js, hq.FollowConfig{Durable: "bench-freshness", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Applied: func(seq uint64) {
				applied.Store(seq)
				select {
				case poke <- struct{}{}:
				default:
				}
			}})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("follow: %v", err)
		}
		// Follow's last pull request (FetchMaxWait 2s, no context) keeps
		// a goroutine of nats.go until the server expires it: wait it out
		// while the connection is still open, so that goleak finds
		// nothing.
		time.Sleep(2500 * time.Millisecond)
		m.Close()
	}()
	waitApplied := func(seq uint64) {
		deadline := time.After(30 * time.Second)
		for applied.Load() < seq {
			select {
			case <-poke:
			case <-deadline:
				b.Fatalf("the model applied up to change %d in 30s, want %d", applied.Load(), seq)
			}
		}
	}
	last, err := e.Store.LastSeq(ctx)
	if err != nil {
		b.Fatal(err)
	}
	waitApplied(last) // the org and the first sync, before the clock

	var total, syncs, after []time.Duration
	day := 0
	for b.Loop() {
		day++
		id, err := d.Create("visit", syncer.NewFields().Set("household_id", "H001").
			Set("visited_on", time.Date(2026, 11, 1+day%28, 0, 0, 0, 0, time.UTC).Format("2006-01-02")).Set("met", "户主"))
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		testenv.Sync(b, d)
		t1 := time.Now()
		it, err := d.Get(id)
		if err != nil {
			b.Fatal(err)
		}
		if it.State != "synced" || it.Version == 0 {
			b.Fatalf("visit %s after sync: state %q, version %d", id, it.State, it.Version)
		}
		waitApplied(it.Version)
		var n int
		if err := m.DB().QueryRowContext(ctx, `SELECT count(*) FROM visits WHERE id = ? AND version = ?`, id, it.Version).Scan(&n); err != nil || n != 1 {
			b.Fatalf("visit %s (version %d) not in the model's visits table after its change was applied: %d rows, %v", id, it.Version, n, err)
		}
		t2 := time.Now()
		total, syncs, after = append(total, t2.Sub(t0)), append(syncs, t1.Sub(t0)), append(after, t2.Sub(t1))
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	pct := func(xs []time.Duration, p float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return ms(s[min(len(s)-1, int(p*float64(len(s))))])
	}
	var sum time.Duration
	for _, t := range total {
		sum += t
	}
	b.ReportMetric(ms(sum)/float64(len(total)), "ms/visit")
	b.ReportMetric(pct(total, .5), "p50_ms")
	b.ReportMetric(pct(total, .99), "p99_ms")
	b.ReportMetric(pct(total, 1), "max_ms")
	b.ReportMetric(pct(syncs, .5), "sync_p50_ms")
	b.ReportMetric(pct(after, .5), "after_ack_p50_ms")
	b.ReportMetric(pct(after, .99), "after_ack_p99_ms")
}
