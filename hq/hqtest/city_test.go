package hqtest

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func TestCityScaled(t *testing.T) {
	ctx := context.Background()
	spec := Scaled(0.01)
	path := filepath.Join(t.TempDir(), "city.db")
	c, err := Build(ctx, path, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("city: %+v", c.Rows)
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRow(q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM households`); n != spec.Households {
		t.Errorf("households: %d rows, want %d", n, spec.Households)
	}
	if n := count(`SELECT count(*) FROM units WHERE kind = 'grid'`); n != spec.Grids {
		t.Errorf("grids: %d, want %d", n, spec.Grids)
	}
	if n := count(`SELECT count(*) FROM people WHERE role = 'member'`); n != spec.Members {
		t.Errorf("members: %d, want %d", n, spec.Members)
	}
	// Every household has a link row and a history agreeing with it.
	if n := count(`SELECT count(*) FROM links l JOIN (SELECT household_id, member_id FROM link_history h
		WHERE seq = (SELECT max(seq) FROM link_history WHERE household_id = h.household_id)) last
		ON last.household_id = l.household_id AND last.member_id = l.member_id`); n != spec.Households {
		t.Errorf("links agreeing with their history's last row: %d, want %d", n, spec.Households)
	}
	// About one visit per linked household a month.
	visits := count(`SELECT count(*) FROM visits`)
	if visits != c.Visits || visits < spec.Households*spec.Months*7/10 || visits > spec.Households*spec.Months*11/10 {
		t.Errorf("visits: %d rows (generator says %d), want about %d", visits, c.Visits, spec.Households*spec.Months)
	}
	// Coverage of the last month, computed in SQL from the tables, as the
	// report defines it, agrees with what the generator counted.
	endMs := monthEnd(t, spec.Last)
	linked := count(`SELECT count(*) FROM households h WHERE voided = 0 AND
		(SELECT member_id FROM link_history WHERE household_id = h.id AND from_ms <= ? ORDER BY seq DESC LIMIT 1) <> ''`, endMs)
	visited := count(`SELECT count(*) FROM households h WHERE voided = 0 AND
		(SELECT member_id FROM link_history WHERE household_id = h.id AND from_ms <= ? ORDER BY seq DESC LIMIT 1) <> ''
		AND EXISTS (SELECT 1 FROM visits v WHERE v.household_id = h.id AND v.month = ? AND v.voided = 0)`, endMs, spec.Last)
	if linked != c.LinkedEndOfLast || visited != c.VisitedLast {
		t.Errorf("coverage of %s: SQL %d/%d, generator %d/%d", spec.Last, visited, linked, c.VisitedLast, c.LinkedEndOfLast)
	}
	if share := float64(visited) / float64(linked); share < 0.7 || share > 0.99 {
		t.Errorf("coverage share %.3f: want 0.7-0.99", share)
	}
	for _, tb := range []string{"disputes", "needs", "projects", "events", "devices", "status_history"} {
		if count(`SELECT count(*) FROM `+tb) == 0 {
			t.Errorf("%s: no rows", tb)
		}
	}

	// The same seed, the same city.
	c2, err := Build(ctx, filepath.Join(t.TempDir(), "again.db"), spec)
	if err != nil {
		t.Fatal(err)
	}
	for tb, n := range c.Rows {
		if c2.Rows[tb] != n {
			t.Errorf("%s: %d rows, then %d with the same seed", tb, n, c2.Rows[tb])
		}
	}
	if c2.VisitedLast != c.VisitedLast {
		t.Errorf("visited in %s: %d, then %d with the same seed", spec.Last, c.VisitedLast, c2.VisitedLast)
	}
}

func monthEnd(t *testing.T, month string) int64 {
	t.Helper()
	m, err := time.ParseInLocation("2006-01", month, china)
	if err != nil {
		t.Fatal(err)
	}
	return m.AddDate(0, 1, 0).UnixMilli() - 1
}

func TestSpecChecked(t *testing.T) {
	s := Scaled(0.01)
	s.Last = "2026-13"
	if _, err := Fill(context.Background(), nil, s); err == nil {
		t.Error("month 2026-13 accepted")
	}
	s = Scaled(0.01)
	s.Members = s.Grids - 1
	if _, err := Fill(context.Background(), nil, s); err == nil {
		t.Error("fewer members than grids accepted")
	}
}

// BenchmarkBuildMacheng builds the whole city once per iteration:
// go test ./hq/hqtest -run '^$' -bench BuildMacheng -benchtime 1x
func BenchmarkBuildMacheng(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		c, err := Build(context.Background(), filepath.Join(b.TempDir(), fmt.Sprintf("city%d.db", i)), Macheng())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(c.Rows["visits"]), "visits")
		b.ReportMetric(float64(c.VisitedLast)/float64(c.LinkedEndOfLast)*100, "coverage%")
		b.Logf("%+v linked %d, %s visited %d of %d", c.Rows, c.Linked, c.Last, c.VisitedLast, c.LinkedEndOfLast)
	}
}
