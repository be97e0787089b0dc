package report_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/hq/hqtest"
	"github.com/fieldsync/fieldsync/hq/report"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// The coverage page after real changes: each timed page follows one
// change applied through the model's Apply (a visit of the month added,
// a visit voided, a household relinked now, a late visit of last month),
// which its triggers count into the built months in the same
// transaction. On a copy of hqtest's city (the cached file stays as
// built), opened with hq.Open as the page's server opens it.
//
//	go test ./hq/report -run '^$' -bench AfterChange -benchtime 20x
//	go test ./hq/report -run '^$' -bench FirstBuild -benchtime 1x
//
// FIELDSYNC_BENCH_SCALE=0.1 runs them on a tenth of the city.

var perfCity struct {
	once sync.Once
	dir  string
	m    *hq.Model
	c    *hqtest.City
	hh   []string // households, with their member now
	mem  map[string][]string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if perfCity.m != nil {
		perfCity.m.Close()
	}
	if perfCity.dir != "" {
		os.RemoveAll(perfCity.dir)
	}
	os.Exit(code)
}

func perfModel(b *testing.B) (*hq.Model, *hqtest.City) {
	b.Helper()
	perfCity.once.Do(func() {
		perfCity.err = func() error {
			spec := hqtest.Macheng()
			if s := os.Getenv("FIELDSYNC_BENCH_SCALE"); s != "" {
				f, err := strconv.ParseFloat(s, 64)
				if err != nil || f <= 0 || f > 1 {
					return fmt.Errorf("FIELDSYNC_BENCH_SCALE %q: want a fraction in (0, 1]", s)
				}
				spec = hqtest.Scaled(f)
			}
			start := time.Now()
			path, c, err := hqtest.Cached(context.Background(), spec)
			if err != nil {
				return err
			}
			b.Logf("city %s (%d households, %d visits) ready in %v", path, c.Households, c.Visits, time.Since(start).Round(time.Millisecond))
			if perfCity.dir, err = os.MkdirTemp("", "fieldsync-perf-"); err != nil {
				return err
			}
			cp := filepath.Join(perfCity.dir, "model.db")
			if err := copyFile(path, cp); err != nil {
				return err
			}
			if perfCity.m, err = hq.Open(cp); err != nil {
				return err
			}
			perfCity.c = c
			rows, err := perfCity.m.DB().Query(`SELECT h.id, h.grid_id, l.member_id FROM households h JOIN links l ON l.household_id = h.id
				WHERE h.voided = 0 AND l.member_id <> ''`)
			if err != nil {
				return err
			}
			defer rows.Close()
			perfCity.mem = map[string][]string{}
			for rows.Next() {
				var id, g, mid string
				if err := rows.Scan(&id, &g, &mid); err != nil {
					return err
				}
				perfCity.hh = append(perfCity.hh, id)
				perfCity.mem[g] = append(perfCity.mem[g], mid)
			}
			return rows.Err()
		}()
	})
	if perfCity.err != nil {
		b.Fatalf("the city's read model: %v", perfCity.err)
	}
	return perfCity.m, perfCity.c
}

func copyFile(from, to string) error {
	for _, suffix := range []string{"", "-wal"} {
		in, err := os.Open(from + suffix)
		if os.IsNotExist(err) && suffix != "" {
			continue
		}
		if err != nil {
			return err
		}
		out, err := os.Create(to + suffix)
		if err == nil {
			_, err = io.Copy(out, in)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		in.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

var perfN int

// perfChange applies one change through Apply, as the follower would: a
// visit of the current month, a visit voided, a relink dated now, or a
// late visit of last month; it returns how long Apply took.
func perfChange(b *testing.B, m *hq.Model, c *hqtest.City, rng *rand.Rand) time.Duration {
	b.Helper()
	perfN++
	seq := m.LastSeq() + 1
	h := perfCity.hh[rng.IntN(len(perfCity.hh))]
	var g, town string
	if err := m.DB().QueryRow(`SELECT grid_id, town_id FROM households WHERE id = ?`, h).Scan(&g, &town); err != nil {
		b.Fatal(err)
	}
	now := c.NowMs - 60_000 + int64(perfN) // before the page's now: the month stays read from the tables
	ch := &pb.Change{Seq: seq, ChangeId: fmt.Sprintf("perf-%d", seq), CommittedMs: now, Region: town}
	visit := func(id, on string, void bool) {
		r := &pb.Record{Id: id, Kind: pb.Kind_KIND_VISIT, Version: seq, AuthorId: "perf", OriginDeviceId: "perf",
			Fields:  map[string]*pb.FieldValue{"household_id": {Value: h}, "visited_on": {Value: on}, "met": {Value: "户主"}},
			Buckets: []string{"t:" + town}}
		if void {
			r.Void = &pb.Void{Reason: "重复录入", AtMs: now}
		}
		ch.Record = r
	}
	last := time.UnixMilli(c.NowMs).In(china)
	switch perfN % 4 {
	case 0:
		visit(fmt.Sprintf("perf-v-%d", perfN), last.Format("2006-01-02"), false)
	case 1:
		visit(fmt.Sprintf("perf-v-%d", perfN-1), last.Format("2006-01-02"), true) // the visit just added, voided
	case 2:
		ms := perfCity.mem[g]
		ch.Link = &pb.LinkState{HouseholdId: h, MemberId: ms[rng.IntN(len(ms))], By: "secretary:perf"}
	case 3:
		visit(fmt.Sprintf("perf-v-%d", perfN), last.AddDate(0, -1, 0).Format("2006-01-02"), false)
	}
	t0 := time.Now()
	if err := m.Apply(context.Background(), ch, ""); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

func perfPage(b *testing.B, q func(c *hqtest.City) report.Query) {
	m, c := perfModel(b)
	qq := q(c)
	qq.NowMs = c.NowMs
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Now()
	if _, err := report.Page(context.Background(), m.DB(), "coverage", qq); err != nil {
		b.Fatal(err)
	}
	b.Logf("first page (builds the months not built yet): %v", time.Since(t0).Round(time.Millisecond))
	var worst, applied time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		applied += perfChange(b, m, c, rng)
		n++
		b.StartTimer()
		t := time.Now()
		if _, err := report.Page(context.Background(), m.DB(), "coverage", qq); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, time.Since(t))
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
	b.ReportMetric(float64(worst.Microseconds())/1000, "max_ms")
	b.ReportMetric(float64(applied.Microseconds())/1000/float64(n), "apply_ms")
}

// Each page right after a change applied ("cold": the first after a
// change).
func BenchmarkCoverageAfterChangeCity(b *testing.B) {
	perfPage(b, func(c *hqtest.City) report.Query { return report.Query{} })
}

func BenchmarkCoverageAfterChangeCityPastMonth(b *testing.B) {
	perfPage(b, func(c *hqtest.City) report.Query { return report.Query{Month: c.MonthsList[len(c.MonthsList)-2]} })
}

func BenchmarkCoverageAfterChangeTown(b *testing.B) {
	perfPage(b, func(c *hqtest.City) report.Query { return report.Query{Unit: c.Town} })
}

func BenchmarkCoverageAfterChangeTownSecretary(b *testing.B) {
	perfPage(b, func(c *hqtest.City) report.Query { return report.Query{Town: c.Town, Unit: c.Town} })
}

func BenchmarkCoverageAfterChangeVillage(b *testing.B) {
	perfPage(b, func(c *hqtest.City) report.Query { return report.Query{Unit: c.Village} })
}

func BenchmarkCoverageAfterChangeGrid(b *testing.B) {
	perfPage(b, func(c *hqtest.City) report.Query { return report.Query{Unit: c.Grid} })
}

// BenchmarkCoverageWarmCity: the city's page again with nothing changed.
func BenchmarkCoverageWarmCity(b *testing.B) {
	m, c := perfModel(b)
	q := report.Query{NowMs: c.NowMs}
	if _, err := report.Page(context.Background(), m.DB(), "coverage", q); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := report.Page(context.Background(), m.DB(), "coverage", q); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
}

// BenchmarkCoverageFirstBuild: the city's page on a model with no month
// built (a new model, or one just migrated): it builds its 12 months (the month is the last of its trend), each
// once for the model's life.
func BenchmarkCoverageFirstBuild(b *testing.B) {
	m, c := perfModel(b)
	q := report.Query{NowMs: c.NowMs}
	for b.Loop() {
		b.StopTimer()
		for _, s := range []string{`DELETE FROM coverage_grids`, `DELETE FROM coverage_months`, `DELETE FROM coverage_state`} {
			if _, err := m.DB().Exec(s); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if _, err := report.Page(context.Background(), m.DB(), "coverage", q); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
	var n int
	if err := m.DB().QueryRow(`SELECT count(*) FROM coverage_state WHERE built = 1`).Scan(&n); err != nil || n != 12 {
		b.Fatalf("%d months built (%v), want 12", n, err)
	}
}
