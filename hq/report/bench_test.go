package report_test

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/hq/report"
)

// benchCity writes a full city (DOMAIN.md: 113,522 households, 22,042
// members, 4,997 grids, a year of visits) into a model database, or
// reuses the one at $REPORT_BENCH_DB.
func benchCity(b *testing.B) (*sql.DB, int64) {
	now := at(b, "2026-12-20 10:00")
	path := os.Getenv("REPORT_BENCH_DB")
	if path == "" {
		path = filepath.Join(b.TempDir(), "city.db")
	}
	if _, err := os.Stat(path); err == nil {
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		return db, now
	}
	schema, err := os.ReadFile("../schema.sql")
	if err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if _, err := db.Exec(string(schema)); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	prep := func(q string) *sql.Stmt {
		s, err := tx.Prepare(q)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	unitS := prep(`INSERT INTO units VALUES (?, ?, ?, ?, ?, ?, 1)`)
	personS := prep(`INSERT INTO people VALUES (?, ?, 'member', ?, ?, ?, 0, 1)`)
	hhS := prep(`INSERT INTO households VALUES (?, ?, ?, ?, ?, ?, 3, '', ?, 1, '', '', 0, 0, 0, '', 0)`)
	linkS := prep(`INSERT INTO link_history VALUES (?, ?, ?, '', ?, 'admin:bench')`)
	visitS := prep(`INSERT INTO visits VALUES (?, ?, ?, ?, '户主', '', '', '', ?, ?, 1, ?, '', 0, ?, 0, '', 0)`)
	r := rand.New(rand.NewPCG(1, 2))
	must := func(_ sql.Result, err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	const towns, villagesPer, gridsPer = 20, 19, 13 // 4,940 grids
	months := make([]string, 12)
	for i := range months {
		months[i] = time.UnixMilli(now).In(china).AddDate(0, i-11, 0).Format("2006-01")
	}
	hh, members, seq, visits := 0, 0, int64(0), 0
	for ti := range towns {
		tid := fmt.Sprintf("T%02d", ti)
		must(unitS.Exec(tid, "town", "", fmt.Sprintf("镇%02d", ti), "", tid))
		for vi := range villagesPer {
			vid := fmt.Sprintf("%sV%02d", tid, vi)
			must(unitS.Exec(vid, "village", tid, fmt.Sprintf("村%02d-%02d", ti, vi), vid, tid))
			for gi := range gridsPer {
				gid := fmt.Sprintf("%sG%02d", vid, gi)
				must(unitS.Exec(gid, "grid", vid, fmt.Sprintf("组%02d", gi), vid, tid))
				var ms []string
				for mi := range 4 + r.IntN(2) {
					pid := fmt.Sprintf("%s-P%d", gid, mi)
					must(personS.Exec(pid, "党员"+pid, gid, vid, tid))
					ms = append(ms, pid)
					members++
				}
				for range 23 {
					hh++
					hid := fmt.Sprintf("H%06d", hh)
					m := ms[r.IntN(len(ms))]
					must(hhS.Exec(hid, gid, vid, tid, "户主"+hid, "住址"+hid, m))
					seq++
					must(linkS.Exec(hid, seq, m, now-400*86400000))
					if r.IntN(10) == 0 {
						seq++
						must(linkS.Exec(hid, seq, ms[r.IntN(len(ms))], now-int64(r.IntN(300))*86400000))
					}
					for _, mo := range months {
						if r.IntN(100) < 95 {
							visits++
							must(visitS.Exec(fmt.Sprintf("v%07d", visits), hid, mo+"-10", mo, vid, tid, m, now))
						}
					}
				}
			}
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec(`ANALYZE`); err != nil {
		b.Fatal(err)
	}
	b.Logf("city: %d households, %d members, %d visits, written in %v", hh, members, visits, time.Since(t0))
	return db, now
}

func BenchmarkCoverageCity(b *testing.B) {
	db, now := benchCity(b)
	for _, unit := range []string{"", "T03", "T03V04", "T03V04G05"} {
		b.Run("unit="+unit, func(b *testing.B) {
			// The first call computes every month; later ones, with the
			// model unchanged (meta the same), reuse the months computed.
			t0 := time.Now()
			if _, err := report.Page(b.Context(), db, "coverage", report.Query{Unit: unit, NowMs: now}); err != nil {
				b.Fatal(err)
			}
			b.Logf("first call (every month computed): %v", time.Since(t0))
			for b.Loop() {
				if _, err := report.Page(b.Context(), db, "coverage", report.Query{Unit: unit, NowMs: now}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
