package report_test

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/hq/report"
)

// The coverage page read from the coverage tables the model keeps equals
// the page counted from the base tables (a database with schema.sql
// alone), at every level and in the trend, after each of a run of random
// writes: visits added, moved to another month or household, voided and
// deleted; households moved, voided, restored and added; links changed
// (dated in past months, now, and after now within the current month).
func TestCoverageFromKeptTablesEqualsCountingFromBaseTables(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.db")
	m, err := hq.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	kept, base := m.DB(), openSchemaOnly(t)
	c := makeCity(t, kept, 11)
	makeCity(t, base, 11)
	ro, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()

	both := func(q string, args ...any) {
		t.Helper()
		for _, db := range []*sql.DB{kept, base} {
			if _, err := db.Exec(q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	rng := rand.New(rand.NewPCG(11, 3))
	months := []string{"2025-12", "2026-03", "2026-06", "2026-09", "2026-10", "2026-11", "2026-12"}
	var grids []cityUnit
	for _, u := range c.units {
		if u.kind == "grid" {
			grids = append(grids, u)
		}
	}
	members := []string{"P-idle", ""}
	for id := range c.members {
		members = append(members, id)
	}
	household := func() string { return fmt.Sprintf("H%03d", 1+rng.IntN(len(c.households)+5)) }
	seq, nv, nh := int64(10_000), 0, 0
	change := func() string {
		switch x := rng.IntN(100); {
		case x < 30:
			nv++
			mo := months[rng.IntN(len(months))]
			both(`INSERT INTO visits (id, household_id, visited_on, month, met, needs, help, follow_up, village_id, town_id, version, author_id, device_id, created_ms, updated_ms, voided, void_reason, voided_ms)
				VALUES (?, ?, ?, ?, '', '', '', '', '', '', 1, '', '', 0, 0, ?, '', 0)`, fmt.Sprintf("new-%d", nv), household(), mo+"-09", mo, rng.IntN(5)/4)
			return "visit added"
		case x < 40:
			mo := months[rng.IntN(len(months))]
			both(`UPDATE visits SET month = ?, visited_on = ? || '-02' WHERE id = (SELECT id FROM visits ORDER BY id LIMIT 1 OFFSET ?)`, mo, mo, rng.IntN(500))
			return "visit moved to " + mo
		case x < 45:
			both(`UPDATE visits SET household_id = ? WHERE id = (SELECT id FROM visits ORDER BY id LIMIT 1 OFFSET ?)`, household(), rng.IntN(500))
			return "visit moved to another household"
		case x < 52:
			both(`UPDATE visits SET voided = 1 - voided WHERE id = (SELECT id FROM visits ORDER BY id LIMIT 1 OFFSET ?)`, rng.IntN(500))
			return "visit voided or restored"
		case x < 55:
			both(`DELETE FROM visits WHERE id = (SELECT id FROM visits ORDER BY id LIMIT 1 OFFSET ?)`, rng.IntN(500))
			return "visit deleted"
		case x < 75:
			seq++
			from := c.now - rng.Int64N(400)*86400000
			switch rng.IntN(4) {
			case 0:
				from = c.now - rng.Int64N(3600000) // just now
			case 1:
				from = c.now + 1 + rng.Int64N(5*86400000) // after now, this month
			}
			both(`INSERT INTO link_history (household_id, seq, member_id, previous_member_id, from_ms, by) VALUES (?, ?, ?, '', ?, 'admin:t')`,
				household(), seq, members[rng.IntN(len(members))], from)
			return "link changed"
		case x < 85:
			g := grids[rng.IntN(len(grids))]
			both(`UPDATE households SET grid_id = ?, village_id = ?, town_id = ? WHERE id = ?`, g.id, g.village, g.town, household())
			return "household moved to " + g.id
		case x < 93:
			both(`UPDATE households SET voided = 1 - voided WHERE id = ?`, household())
			return "household voided or restored"
		default:
			nh++
			g := grids[rng.IntN(len(grids))]
			both(`INSERT INTO households (id, grid_id, village_id, town_id, head, address, members, tags, member_id, version, author_id, device_id, created_ms, updated_ms, voided, void_reason, voided_ms)
				VALUES (?, ?, ?, ?, '新户', '', 1, '', '', 1, '', '', 0, 0, 0, '', 0)`, fmt.Sprintf("H%03d", len(c.households)+nh), g.id, g.village, g.town)
			return "household added"
		}
	}
	compare := func(step string) {
		t.Helper()
		for _, q := range []report.Query{{}, {Unit: "T1"}, {Unit: "T2V1"}, {Unit: "T1V1G1"}, {Unit: "T2V2G2", Month: "2026-11"},
			{Month: "2026-06"}, {Town: "T2", Unit: "T2V1G2", Month: "2026-10"}, {Town: "T1", Month: "2025-12"}} {
			q.NowMs = c.now
			want := page(t, base, "coverage", q)
			if got := page(t, kept, "coverage", q); !sameResult(got, want) {
				t.Fatalf("after %s: coverage %+v from the kept tables differs from the count from the base tables:\n%+v\nwant\n%+v", step, q, got.Tables[0].Rows, want.Tables[0].Rows)
			}
			if got := page(t, ro, "coverage", q); !sameResult(got, want) {
				t.Fatalf("after %s: coverage %+v on a read-only connection differs", step, q)
			}
		}
	}
	compare("nothing")
	for i := range 120 {
		what := change()
		if i%4 == 3 {
			compare(fmt.Sprintf("change %d (%s)", i, what))
		}
	}
	// The months were read from the coverage tables (built, not counted
	// live), but for the current one once a link is dated after now.
	var built int
	if err := kept.QueryRow(`SELECT count(*) FROM coverage_state WHERE built = 1`).Scan(&built); err != nil || built < 12 {
		t.Errorf("%d months built (%v), want the 13 the pages showed", built, err)
	}
}

// sameResult compares two pages field by field, a NaN (a chart's gap)
// equal to a NaN, which reflect.DeepEqual would not say.
func sameResult(a, b *report.Result) bool {
	return fmt.Sprintf("%#v", *a) == fmt.Sprintf("%#v", *b)
}
