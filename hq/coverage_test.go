package hq

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// coverageMonths are the months the coverage tests build: a year and a
// month around the world's changes.
var coverageMonths = []string{"2025-11", "2025-12", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05",
	"2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11", "2026-12"}

func chinaMs(t testing.TB, s string) int64 {
	t.Helper()
	tm, err := time.ParseInLocation("2006-01-02 15:04", s, china)
	if err != nil {
		t.Fatal(err)
	}
	return tm.UnixMilli()
}

// coverageWorld records a town's year as the changelog carries it, with
// everything that moves coverage: households created, moved to another
// grid (and village, town), voided and restored; links made, changed and
// removed on dates spread over the months (several in one ms now and
// then); visits made, moved to another month or household, voided and
// restored, and dated on odd days (a bad date has no month).
func coverageWorld(t testing.TB, seed uint64, households, steps int) *world {
	w := newWorld()
	w.now = chinaMs(t, "2025-11-03 09:00")
	end := chinaMs(t, "2026-12-20 12:00")
	rng := rand.New(rand.NewPCG(seed, 13))
	w.unit("T01", pb.UnitKind_UNIT_KIND_TOWN, "", "城关镇")
	w.unit("T02", pb.UnitKind_UNIT_KIND_TOWN, "", "河口镇")
	w.unit("V01", pb.UnitKind_UNIT_KIND_VILLAGE, "T01", "东湖村")
	w.unit("V02", pb.UnitKind_UNIT_KIND_VILLAGE, "T01", "西湖村")
	w.unit("V03", pb.UnitKind_UNIT_KIND_VILLAGE, "T02", "柳林村")
	grids := []string{"G01", "G02", "G03", "G04", "G05"}
	for i, g := range grids {
		w.unit(g, pb.UnitKind_UNIT_KIND_GRID, []string{"V01", "V01", "V02", "V03", "V03"}[i], "网格"+g)
	}
	members := []string{"M01", "M02", "M03", "M04", "M05", "M06", "M07"}
	member := func() string {
		if rng.IntN(7) == 0 {
			return "" // unlinked
		}
		return members[rng.IntN(len(members))]
	}
	var hh, visits []string
	newHousehold := func() {
		id := fmt.Sprintf("H%03d", len(hh))
		hh = append(hh, id)
		g := grids[rng.IntN(len(grids))]
		w.create(pb.Kind_KIND_HOUSEHOLD, id, w.villageOf[g], map[string]string{"grid_id": g, "head": "户主" + id, "address": id + "号"})
		if rng.IntN(5) != 0 {
			w.link(id, member(), "admin:import")
		}
	}
	for range households {
		newHousehold()
	}
	day := func() string {
		if rng.IntN(40) == 0 {
			return "不详" // no month
		}
		return fmt.Sprintf("%s-%02d", coverageMonths[rng.IntN(len(coverageMonths))], 1+rng.IntN(28))
	}
	for range steps {
		if w.now < end {
			w.now += rng.Int64N(3 * 24 * 3600 * 1000)
		}
		h := hh[rng.IntN(len(hh))]
		switch x := rng.IntN(100); {
		case x < 35 || len(visits) == 0:
			id := fmt.Sprintf("vis-%d", len(visits))
			visits = append(visits, id)
			w.create(pb.Kind_KIND_VISIT, id, w.where[h][0], map[string]string{"household_id": h, "visited_on": day(), "met": "户主"})
		case x < 45:
			w.set(visits[rng.IntN(len(visits))], map[string]string{"visited_on": day()})
		case x < 50:
			v := visits[rng.IntN(len(visits))]
			w.where[v] = w.where[h]
			w.set(v, map[string]string{"household_id": h})
		case x < 57:
			w.void(visits[rng.IntN(len(visits))], "重复录入")
		case x < 60:
			restore(w, visits[rng.IntN(len(visits))])
		case x < 75:
			w.link(h, member(), "secretary:S01")
			if rng.IntN(5) == 0 { // another change in the same ms: the later seq wins
				w.now--
				w.link(h, member(), "secretary:S01")
			}
		case x < 82:
			g := grids[rng.IntN(len(grids))]
			w.where[h] = [2]string{w.villageOf[g], w.townOf[w.villageOf[g]]}
			w.set(h, map[string]string{"grid_id": g})
		case x < 86:
			w.void(h, "户已迁出")
		case x < 89:
			restore(w, h)
		case x < 92:
			newHousehold()
		default:
			w.set(h, map[string]string{"head": "新户主" + h})
		}
	}
	return w
}

// restore publishes record id again without its void.
func restore(w *world, id string) {
	r := proto.Clone(w.recs[id]).(*pb.Record)
	r.Void = nil
	w.publish(w.next(w.where[id][1]), r)
}

// expectedCoverage computes, from the model's base tables read into Go
// (not through the coverage SQL), household_months and, for each built
// month, coverage_months and coverage_grids, as dump formats them.
func expectedCoverage(t testing.TB, m *Model) (hm, cm, cg []string) {
	t.Helper()
	db := m.DB()
	type hh struct {
		grid, village, town string
		voided              bool
	}
	type lk struct {
		seq, from int64
		member    string
	}
	households := map[string]hh{}
	links := map[string][]lk{}
	counts := map[[2]string]int{}
	rows, err := db.Query(`SELECT id, grid_id, village_id, town_id, voided FROM households`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var h hh
		if err := rows.Scan(&id, &h.grid, &h.village, &h.town, &h.voided); err != nil {
			t.Fatal(err)
		}
		households[id] = h
	}
	rows.Close()
	rows, err = db.Query(`SELECT household_id, seq, from_ms, member_id FROM link_history`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var l lk
		if err := rows.Scan(&id, &l.seq, &l.from, &l.member); err != nil {
			t.Fatal(err)
		}
		links[id] = append(links[id], l)
	}
	rows.Close()
	rows, err = db.Query(`SELECT household_id, visited_on, voided FROM visits`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, on string
		var voided bool
		if err := rows.Scan(&id, &on, &voided); err != nil {
			t.Fatal(err)
		}
		if !voided && len(on) == 10 && on[4] == '-' {
			counts[[2]string{on[:7], id}]++
		}
	}
	rows.Close()
	for k, n := range counts {
		hm = append(hm, line([]string{"month", "household_id", "visits"}, k[0], k[1], n))
	}
	memberAt := func(id string, at int64) string {
		var best *lk
		for i, l := range links[id] {
			if l.from <= at && (best == nil || l.from > best.from || l.from == best.from && l.seq > best.seq) {
				best = &links[id][i]
			}
		}
		if best == nil {
			return ""
		}
		return best.member
	}
	rows, err = db.Query(`SELECT month, end_ms FROM coverage_state WHERE built = 1`)
	if err != nil {
		t.Fatal(err)
	}
	type cmKey struct{ month, grid, member, town, village string }
	type cgKey struct{ month, town, village, grid string }
	cmv, cgv := map[cmKey][2]int{}, map[cgKey][2]int{}
	for rows.Next() {
		var month string
		var end int64
		if err := rows.Scan(&month, &end); err != nil {
			t.Fatal(err)
		}
		for id, h := range households {
			mem := memberAt(id, end)
			if h.voided || mem == "" {
				continue
			}
			v := 0
			if counts[[2]string{month, id}] > 0 {
				v = 1
			}
			k := cmKey{month, h.grid, mem, h.town, h.village}
			cmv[k] = [2]int{cmv[k][0] + 1, cmv[k][1] + v}
			g := cgKey{month, h.town, h.village, h.grid}
			cgv[g] = [2]int{cgv[g][0] + 1, cgv[g][1] + v}
		}
	}
	rows.Close()
	for k, v := range cmv {
		cm = append(cm, line([]string{"month", "grid_id", "member_id", "town_id", "village_id", "linked", "visited"}, k.month, k.grid, k.member, k.town, k.village, v[0], v[1]))
	}
	for k, v := range cgv {
		cg = append(cg, line([]string{"month", "town_id", "village_id", "grid_id", "linked", "visited"}, k.month, k.town, k.village, k.grid, v[0], v[1]))
	}
	return sortedLines(hm), sortedLines(cm), sortedLines(cg)
}

// checkCoverage fails unless the coverage tables equal a recomputation
// from the base tables; it returns the number of coverage_months rows.
func checkCoverage(t testing.TB, m *Model, what string) int {
	t.Helper()
	hm, cm, cg := expectedCoverage(t, m)
	for _, c := range []struct {
		table string
		want  []string
	}{{"household_months", hm}, {"coverage_months", cm}, {"coverage_grids", cg}} {
		got := dump(t, m, c.table)
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s: %s: %d rows, recomputed %d\n%s", what, c.table, len(got), len(c.want), firstDiff(got, c.want))
		}
	}
	return len(cm)
}

func build(t testing.TB, m *Model, months ...string) {
	t.Helper()
	for _, mo := range months {
		if _, err := BuildCoverage(context.Background(), m.DB(), mo); err != nil {
			t.Fatal(err)
		}
	}
}

// The coverage tables the triggers keep equal a recomputation from the
// base tables after any sequence of changes applied by Apply: in order,
// shuffled with duplicates and a replay, with months built before, in the
// middle of and after the changes.
func TestCoverageTablesKeptExactByApply(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		w := coverageWorld(t, seed, 40, 600)
		ref := openModel(t, "")
		build(t, ref, coverageMonths[:5]...) // built while empty
		applyAll(t, ref, "L", w.changes[:len(w.changes)/2])
		build(t, ref, coverageMonths[5:10]...)
		checkCoverage(t, ref, fmt.Sprintf("seed %d, in order, half applied", seed))
		applyAll(t, ref, "L", w.changes[len(w.changes)/2:])
		build(t, ref, coverageMonths[10:]...)
		if n := checkCoverage(t, ref, fmt.Sprintf("seed %d, in order", seed)); n < 100 {
			t.Errorf("seed %d: only %d coverage rows: the world should link more", seed, n)
		}

		rng := rand.New(rand.NewPCG(seed, 5))
		mixed := append([]*pb.Change{}, w.changes...)
		for range len(w.changes) / 2 {
			mixed = append(mixed, w.changes[rng.IntN(len(w.changes))])
		}
		rng.Shuffle(len(mixed), func(i, j int) { mixed[i], mixed[j] = mixed[j], mixed[i] })
		m := openModel(t, "")
		build(t, m, coverageMonths[3:]...)
		applyAll(t, m, "L", mixed[:len(mixed)/3])
		build(t, m, coverageMonths[:3]...)
		applyAll(t, m, "L", mixed[len(mixed)/3:])
		checkCoverage(t, m, fmt.Sprintf("seed %d, shuffled", seed))
		applyAll(t, m, "L", w.changes) // the same changes again
		checkCoverage(t, m, fmt.Sprintf("seed %d, applied twice", seed))
		sameTables(t, m, ref)
		for _, table := range []string{"household_months", "coverage_months", "coverage_grids"} {
			if a, b := dump(t, m, table), dump(t, ref, table); strings.Join(a, "\n") != strings.Join(b, "\n") {
				t.Errorf("seed %d: %s differs between the shuffled and the in-order model\n%s", seed, table, firstDiff(a, b))
			}
		}
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
	}
}

// What the model never does to link_history (a row deleted or changed)
// unbuilds the months from the row's date on; built again, they are
// exact. Reset empties the coverage tables and keeps the triggers.
func TestCoverageUnbuiltByLinkRewriteAndReset(t *testing.T) {
	w := coverageWorld(t, 9, 30, 300)
	m := openModel(t, "")
	build(t, m, coverageMonths...)
	applyAll(t, m, "L", w.changes)
	checkCoverage(t, m, "applied")
	var hid string
	var seq, from int64
	if err := m.DB().QueryRow(`SELECT household_id, seq, from_ms FROM link_history ORDER BY from_ms DESC LIMIT 1 OFFSET 5`).Scan(&hid, &seq, &from); err != nil {
		t.Fatal(err)
	}
	if _, err := m.DB().Exec(`DELETE FROM link_history WHERE household_id = ? AND seq = ?`, hid, seq); err != nil {
		t.Fatal(err)
	}
	var unbuilt []string
	rows, err := m.DB().Query(`SELECT month FROM coverage_state WHERE built = 0 ORDER BY month`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var mo string
		rows.Scan(&mo)
		unbuilt = append(unbuilt, mo)
	}
	rows.Close()
	fromMonth := time.UnixMilli(from).In(china).Format("2006-01")
	if len(unbuilt) == 0 || unbuilt[0] != fromMonth || unbuilt[len(unbuilt)-1] != "2026-12" {
		t.Errorf("deleting a link row of %s unbuilt %v, want the months from %s on", fromMonth, unbuilt, fromMonth)
	}
	checkCoverage(t, m, "a link row deleted")
	build(t, m, unbuilt...)
	if _, err := m.DB().Exec(`UPDATE link_history SET from_ms = from_ms - 40 * 86400000 WHERE rowid IN (SELECT rowid FROM link_history ORDER BY from_ms DESC LIMIT 3)`); err != nil {
		t.Fatal(err)
	}
	checkCoverage(t, m, "link rows redated")
	build(t, m, coverageMonths...)
	checkCoverage(t, m, "rebuilt")

	if err := m.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"household_months", "coverage_state", "coverage_months", "coverage_grids"} {
		if n := len(dump(t, m, table)); n != 0 {
			t.Errorf("after Reset %s has %d rows", table, n)
		}
	}
	build(t, m, coverageMonths[6:]...)
	applyAll(t, m, "L", w.changes)
	if n := checkCoverage(t, m, "after Reset"); n == 0 {
		t.Error("after Reset and the changes again: no coverage rows (triggers gone?)")
	}
}

// A model made before the coverage tables (schema version 1) gets them at
// Open, household_months filled from the visits it holds.
func TestCoverageMigrationFillsHouseholdMonths(t *testing.T) {
	w := coverageWorld(t, 4, 20, 200)
	path := t.TempDir() + "/old.db"
	m := openModel(t, path)
	applyAll(t, m, "L", w.changes)
	hm1 := dump(t, m, "household_months")
	m.Close()
	// Back to version 1: drop what migrations 2 and 3 made.
	downgradeRegions(t, path, "L", w.seq)
	db := openRaw(t, path)
	for _, tr := range coverageTriggerNames {
		mustExec(t, db, "DROP TRIGGER "+tr)
	}
	for _, s := range []string{"DROP TABLE household_months", "DROP TABLE coverage_state", "DROP TABLE coverage_months",
		"DROP TABLE coverage_grids", "DROP INDEX link_history_at", "DROP INDEX link_history_from", "DROP TABLE attachments", "PRAGMA user_version = 1"} {
		mustExec(t, db, s)
	}
	db.Close()
	m = openModel(t, path)
	if hm := dump(t, m, "household_months"); len(hm) < 20 || strings.Join(hm, "\n") != strings.Join(hm1, "\n") {
		t.Errorf("household_months after migration: %d rows, want the %d kept by the triggers", len(hm), len(hm1))
	}
	build(t, m, coverageMonths...)
	checkCoverage(t, m, "migrated")
}

func TestWarmCoverageBuildsTheLast12Months(t *testing.T) {
	w := coverageWorld(t, 5, 20, 200)
	m := openModel(t, "")
	applyAll(t, m, "L", w.changes)
	n, err := m.WarmCoverage(context.Background(), time.UnixMilli(chinaMs(t, "2026-12-01 00:30")))
	if err != nil || n != 12 {
		t.Fatalf("WarmCoverage: %d months built, %v; want 12", n, err)
	}
	var first, last string
	if err := m.DB().QueryRow(`SELECT min(month), max(month) FROM coverage_state WHERE built = 1`).Scan(&first, &last); err != nil || first != "2026-01" || last != "2026-12" {
		t.Errorf("built %s to %s (%v), want 2026-01 to 2026-12", first, last, err)
	}
	checkCoverage(t, m, "warmed")
	if n, err := m.WarmCoverage(context.Background(), time.UnixMilli(chinaMs(t, "2026-12-31 23:00"))); err != nil || n != 0 {
		t.Errorf("WarmCoverage again: %d months built, %v; want none", n, err)
	}
}

// The README's query over coverage_grids gives what its query over the
// base tables gives (the world's links all predate November's end).
func TestREADMECoverageTablesQueryRuns(t *testing.T) {
	w := sampleWorld(5, 40)
	m := openModel(t, "")
	applyAll(t, m, "L", w.changes)
	build(t, m, "2026-11")
	read := func(q string) string {
		t.Helper()
		rows, err := m.DB().Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var v string
			var l, vis int
			if err := rows.Scan(&v, &l, &vis); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(v, l, vis))
		}
		sort.Strings(out)
		return strings.Join(out, ";")
	}
	base := read(`SELECT h.village_id, count(*) AS linked,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM visits v WHERE v.household_id = h.id
                                      AND v.month = '2026-11' AND v.voided = 0)) AS visited
FROM households h JOIN links l ON l.household_id = h.id AND l.member_id <> ''
WHERE h.voided = 0 GROUP BY h.village_id`)
	kept := read(`SELECT village_id, sum(linked), sum(visited) FROM coverage_grids WHERE month = '2026-11' GROUP BY village_id`)
	if kept != base || strings.Count(base, ";") != 1 {
		t.Errorf("coverage_grids: %s; the base tables: %s (want 2 villages, the same)", kept, base)
	}
}

func TestMonthEnd(t *testing.T) {
	for m, want := range map[string]string{"2026-11": "2026-11-30 23:59:59.999", "2026-12": "2026-12-31 23:59:59.999", "2024-02": "2024-02-29 23:59:59.999"} {
		end, err := MonthEnd(m)
		if err != nil || time.UnixMilli(end).In(china).Format("2006-01-02 15:04:05.000") != want {
			t.Errorf("MonthEnd(%s) = %v, %v; want %s China time", m, time.UnixMilli(end).In(china), err, want)
		}
	}
	for _, bad := range []string{"", "2026-13", "2026-1", "26-01", "2026-01-01"} {
		if _, err := MonthEnd(bad); err == nil || !strings.Contains(err.Error(), "YYYY-MM") {
			t.Errorf("MonthEnd(%q): %v, want an error saying YYYY-MM", bad, err)
		}
	}
}

// openRaw opens a model's file with no model around it.
func openRaw(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// BenchmarkApplyBatchMonthsBuilt is BenchmarkApplyBatch with the 14
// months of coverageMonths built: every visit, household and link change
// also moves their counts.
func BenchmarkApplyBatchMonthsBuilt(b *testing.B) {
	w := sampleWorld(6, 400)
	for b.Loop() {
		b.StopTimer()
		m := openModel(b, "")
		build(b, m, coverageMonths...)
		b.StartTimer()
		for i := 0; i < len(w.changes); i += 500 {
			m.mu.Lock()
			tx, err := m.w.Begin()
			if err != nil {
				b.Fatal(err)
			}
			st := m.state()
			tc := newTxc(tx)
			for _, c := range w.changes[i:min(i+500, len(w.changes))] {
				if err := st.apply(context.Background(), tc, c, "", "L"); err != nil {
					b.Fatal(err)
				}
			}
			if err := st.save(context.Background(), tc); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			m.adopt(st)
			m.mu.Unlock()
		}
	}
	b.ReportMetric(float64(len(w.changes)*b.N)/b.Elapsed().Seconds(), "changes/s")
}
