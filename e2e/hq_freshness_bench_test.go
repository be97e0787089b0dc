package e2e

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/hq/web"
	"github.com/fieldsync/fieldsync/internal/syncd"
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
// acknowledgement to the row in the model). The issue's target is within
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
		// a goroutine of nats.go for up to 3s after Follow returns: wait it
		// out, so that goleak finds nothing.
		time.Sleep(3200 * time.Millisecond)
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

// BenchmarkHQFreshnessPage is the same path on to the HQ page as syncd
// serves it (testenv with HQListen: syncd's own follower and page): the
// clock runs from the start of the phone's sync until a GET of the
// household's visits page (/p/visits?household=H001&month=2026-11, signed
// in as HQ) lists the visit; the page is asked again at once until it
// does.
//
//	go test ./e2e -run '^$' -bench HQFreshnessPage -benchtime 100x
//
// Metrics: ms/visit (mean), p50_ms, p99_ms, max_ms; model_p50_ms (to
// syncd's model applying the change, from its HQApplied), gets/visit
// (page requests until the visit showed).
func BenchmarkHQFreshnessPage(b *testing.B) {
	var applied atomic.Uint64
	e := testenv.Start(b, testenv.WithSyncdConfig(func(c *syncd.Config) {
		c.HQListen = "127.0.0.1:0"
		c.HQApplied = func(seq uint64) { applied.Store(seq) }
	}))
	e.ImportSample()
	d := e.Device(testenv.Member)
	testenv.Sync(b, d)
	h := e.Daemon.HQ
	if h == nil {
		b.Fatal("testenv with HQListen: no HQ page")
	}
	defer func() {
		// syncd's follower's last pull request keeps a goroutine of
		// nats.go for up to 3s after it stops (see BenchmarkHQFreshness):
		// stop the server now and wait it out, so that goleak finds
		// nothing.
		e.Stop()
		time.Sleep(3200 * time.Millisecond)
	}()
	ctx := context.Background()
	last, err := e.Store.LastSeq(ctx)
	if err != nil {
		b.Fatal(err)
	}
	testenv.WaitFor(b, 30*time.Second, "syncd's HQ model to apply the org", func() bool { return applied.Load() >= last })
	code, err := web.IssueCode(ctx, filepath.Join(e.Dir, "hq", syncd.HQWebFile), h.Model.DB(), testenv.HQ, time.Hour, "benchmark")
	if err != nil {
		b.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	defer client.CloseIdleConnections()
	get := func(path string) string {
		resp, err := client.Get(h.URL + path)
		if err != nil {
			b.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %s\n%s", path, resp.Status, body)
		}
		return string(body)
	}
	form := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(get("/signin"))
	if form == nil {
		b.Fatal("the sign-in form has no csrf field")
	}
	resp, err := client.PostForm(h.URL+"/signin", url.Values{"csrf": {form[1]}, "person": {testenv.HQ}, "code": {code}})
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/p/coverage" {
		b.Fatalf("sign-in ended at %s with %s, want /p/coverage", resp.Request.URL, resp.Status)
	}

	var total, model []time.Duration
	gets := 0
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
		it, err := d.Get(id)
		if err != nil || it.Version == 0 {
			b.Fatalf("visit %s after sync: %+v, %v", id, it, err)
		}
		var tm time.Time
		deadline := t0.Add(30 * time.Second)
		for {
			if tm.IsZero() && applied.Load() >= it.Version {
				tm = time.Now()
			}
			gets++
			if strings.Contains(get("/p/visits?household=H001&month=2026-11"), id) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("visit %s not on the page 30s after its sync (syncd's model at change %d, the visit's %d)", id, applied.Load(), it.Version)
			}
		}
		t2 := time.Now()
		if tm.IsZero() {
			tm = t2
		}
		total, model = append(total, t2.Sub(t0)), append(model, tm.Sub(t0))
	}
	b.StopTimer()
	var sum time.Duration
	for _, t := range total {
		sum += t
	}
	b.ReportMetric(benchMs(sum)/float64(len(total)), "ms/visit")
	b.ReportMetric(benchPct(total, .5), "p50_ms")
	b.ReportMetric(benchPct(total, .99), "p99_ms")
	b.ReportMetric(benchPct(total, 1), "max_ms")
	b.ReportMetric(benchPct(model, .5), "model_p50_ms")
	b.ReportMetric(float64(gets)/float64(len(total)), "gets/visit")
}

func benchMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// benchPct is the p-th percentile of xs in ms.
func benchPct(xs []time.Duration, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return benchMs(s[min(len(s)-1, int(p*float64(len(s))))])
}
