package report_test

import (
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/hq/report"
)

// A small city made by hand (seeded): what the tests compare the pages
// with, computed here from the same rows, independently of the SQL.
type cityUnit struct{ id, kind, parent, name, village, town string }

type linkRow struct {
	seq    int64
	member string
	from   int64
}

type hhRow struct {
	id, grid, village, town, head string
	voided                        bool
	links                         []linkRow
}

type visitRow struct {
	id, household, month string
	voided               bool
}

type city struct {
	units      []cityUnit
	byID       map[string]cityUnit
	members    map[string]string // id -> grid
	households []hhRow
	visits     []visitRow
	now        int64
}

func monthStart(t testing.TB, m string) int64 {
	tm, err := time.ParseInLocation("2006-01", m, china)
	if err != nil {
		t.Fatal(err)
	}
	return tm.UnixMilli()
}

func makeCity(t testing.TB, db *sql.DB, seed uint64) *city {
	r := rand.New(rand.NewPCG(seed, 1))
	c := &city{byID: map[string]cityUnit{}, members: map[string]string{}, now: at(t, "2026-12-15 10:00")}
	add := func(u cityUnit) {
		c.units = append(c.units, u)
		c.byID[u.id] = u
		ins(t, db, "units", map[string]any{"id": u.id, "kind": u.kind, "parent_id": u.parent, "name": u.name, "village_id": u.village, "town_id": u.town, "seq": 1})
	}
	townNames := []string{"白果镇", "龟山镇"}
	var grids []cityUnit
	gridMembers := map[string][]string{}
	for ti, tn := range townNames {
		tid := fmt.Sprintf("T%d", ti+1)
		add(cityUnit{tid, "town", "", tn, "", tid})
		ins(t, db, "people", map[string]any{"id": "sec-" + tid, "name": tn + "书记", "role": "secretary", "unit_id": tid, "town_id": tid, "seq": 1})
		for vi := range 2 {
			vid := fmt.Sprintf("%sV%d", tid, vi+1)
			add(cityUnit{vid, "village", tid, fmt.Sprintf("%s%d村", tn[:3], vi+1), vid, tid})
			for gi := range 2 {
				gid := fmt.Sprintf("%sG%d", vid, gi+1)
				g := cityUnit{gid, "grid", vid, fmt.Sprintf("第%d组", gi+1), vid, tid}
				add(g)
				grids = append(grids, g)
				for mi := range 2 {
					pid := fmt.Sprintf("P-%s-%d", gid, mi)
					ins(t, db, "people", map[string]any{"id": pid, "name": fmt.Sprintf("党员%s%d", gid, mi), "role": "member", "unit_id": gid, "village_id": vid, "town_id": tid, "seq": 1})
					c.members[pid] = gid
					gridMembers[gid] = append(gridMembers[gid], pid)
				}
			}
		}
	}
	// a member who links nobody
	ins(t, db, "people", map[string]any{"id": "P-idle", "name": "闲置党员", "role": "member", "unit_id": grids[0].id, "village_id": grids[0].village, "town_id": grids[0].town, "seq": 1})
	c.members["P-idle"] = grids[0].id
	seq := int64(100)
	months := []string{"2025-12", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11", "2026-12"}
	n := 0
	for _, g := range grids {
		for range 12 {
			n++
			h := hhRow{id: fmt.Sprintf("H%03d", n), grid: g.id, village: g.village, town: g.town, head: fmt.Sprintf("户主%d", n), voided: r.IntN(20) == 0}
			pick := func() string {
				if r.IntN(8) == 0 { // a member of the other grid of the village
					for _, o := range grids {
						if o.village == g.village && o.id != g.id {
							return gridMembers[o.id][r.IntN(2)]
						}
					}
				}
				return gridMembers[g.id][r.IntN(2)]
			}
			if r.IntN(15) != 0 { // some never linked
				from := monthStart(t, "2025-11") + int64(r.IntN(20))*86400000
				seq++
				h.links = append(h.links, linkRow{seq, pick(), from})
				for range r.IntN(4) {
					from = monthStart(t, months[r.IntN(len(months))]) + int64(r.IntN(28*24))*3600000
					if from > c.now {
						continue
					}
					seq++
					m := pick()
					if r.IntN(6) == 0 {
						m = "" // unlinked
					}
					h.links = append(h.links, linkRow{seq, m, from})
					if r.IntN(5) == 0 { // a second change in the same ms: the later seq wins
						seq++
						h.links = append(h.links, linkRow{seq, pick(), from})
					}
				}
			}
			c.households = append(c.households, h)
			v := 0
			if h.voided {
				v = 1
			}
			ins(t, db, "households", map[string]any{"id": h.id, "grid_id": h.grid, "village_id": h.village, "town_id": h.town,
				"head": h.head, "address": "住址" + h.id, "voided": v, "version": 1})
			for _, l := range h.links {
				ins(t, db, "link_history", map[string]any{"household_id": h.id, "seq": l.seq, "member_id": l.member, "from_ms": l.from, "by": "admin:test"})
			}
			for _, m := range months {
				k := r.IntN(10)
				if k < 3 {
					continue
				}
				for i := range 1 + r.IntN(2) {
					vis := visitRow{id: fmt.Sprintf("V-%s-%s-%d", h.id, m, i), household: h.id, month: m, voided: r.IntN(8) == 0}
					c.visits = append(c.visits, vis)
					vv := 0
					if vis.voided {
						vv = 1
					}
					ins(t, db, "visits", map[string]any{"id": vis.id, "household_id": h.id, "visited_on": m + "-1" + fmt.Sprint(i), "month": m,
						"village_id": h.village, "town_id": h.town, "voided": vv, "author_id": "P-" + h.grid + "-0", "version": 1})
				}
			}
		}
	}
	return c
}

// memberAt is the member household h was linked to at time ms, by its
// history read here: the last row by (from, seq) with from <= ms.
func (h hhRow) memberAt(ms int64) string {
	ls := append([]linkRow(nil), h.links...)
	sort.Slice(ls, func(i, j int) bool {
		if ls[i].from != ls[j].from {
			return ls[i].from < ls[j].from
		}
		return ls[i].seq < ls[j].seq
	})
	m := ""
	for _, l := range ls {
		if l.from <= ms {
			m = l.member
		}
	}
	return m
}

// linkTime is when links are read for month m: its last ms, or now.
func (c *city) linkTime(t testing.TB, m string) int64 {
	tm, _ := time.ParseInLocation("2006-01", m, china)
	end := tm.AddDate(0, 1, 0).UnixMilli() - 1
	return min(end, c.now)
}

// expect computes, for month m, each linked household's member and
// whether it was visited: only households in (keep).
func (c *city) expect(t testing.TB, m string, keep func(hhRow) bool) (member map[string]string, visited map[string]bool) {
	member, visited = map[string]string{}, map[string]bool{}
	tm := c.linkTime(t, m)
	for _, h := range c.households {
		if h.voided || !keep(h) {
			continue
		}
		if mm := h.memberAt(tm); mm != "" {
			member[h.id] = mm
		}
	}
	for _, v := range c.visits {
		if v.month == m && !v.voided && member[v.household] != "" {
			visited[v.household] = true
		}
	}
	return member, visited
}

func (c *city) household(id string) hhRow {
	for _, h := range c.households {
		if h.id == id {
			return h
		}
	}
	return hhRow{}
}

// rowKey is the unit or member a coverage row stands for, from its link.
func rowKey(t *testing.T, cell report.Cell) string {
	u, err := url.Parse(cell.Link)
	if err != nil {
		t.Fatal(err)
	}
	if m := u.Query().Get("member"); m != "" {
		return m
	}
	return u.Query().Get("unit")
}

// Both ways the report counts: from the coverage tables the model keeps,
// and from the base tables alone (a database without them).
func TestCoverageEveryLevelMatchesIndependentCount(t *testing.T) {
	t.Run("kept tables", func(t *testing.T) { coverageEveryLevel(t, openModel(t)) })
	t.Run("base tables", func(t *testing.T) { coverageEveryLevel(t, openSchemaOnly(t)) })
}

func coverageEveryLevel(t *testing.T, db *sql.DB) {
	c := makeCity(t, db, 7)
	checked := 0
	for _, m := range []string{"2026-12", "2026-11", "2026-06"} {
		for _, unitID := range []string{"", "T1", "T2V1", "T2V1G2", "T1V1G1"} {
			q := report.Query{Month: m, Unit: unitID, NowMs: c.now}
			res := page(t, db, "coverage", q)
			in := func(h hhRow) bool {
				return unitID == "" || h.town == unitID || h.village == unitID || h.grid == unitID
			}
			member, visited := c.expect(t, m, in)
			// group the expected by the row's key
			key := func(hid string) string {
				h := c.household(hid)
				switch {
				case unitID == "":
					return h.town
				case c.byID[unitID].kind == "town":
					return h.village
				case c.byID[unitID].kind == "village":
					return h.grid
				default:
					return member[hid]
				}
			}
			wantL, wantV := map[string]int{}, map[string]int{}
			for hid := range member {
				wantL[key(hid)]++
				if visited[hid] {
					wantV[key(hid)]++
				}
			}
			cov := table(t, res, "coverage")
			seen := map[string]bool{}
			for i, row := range cov.Rows {
				k := rowKey(t, row[0])
				if i == len(cov.Rows)-1 {
					if row[0].Link != "" {
						t.Errorf("%s %q: last row should be the total, got %q", m, unitID, row[0].Text)
					}
					if int(row[1].Num) != len(member) || int(row[2].Num) != len(visited) {
						t.Errorf("%s %q total: linked %v visited %v, want %d %d", m, unitID, row[1].Num, row[2].Num, len(member), len(visited))
					}
					continue
				}
				seen[k] = true
				if int(row[1].Num) != wantL[k] || int(row[2].Num) != wantV[k] || int(row[3].Num) != wantL[k]-wantV[k] {
					t.Errorf("%s %q row %s (%s): linked %v visited %v not %v, want %d %d", m, unitID, k, row[0].Text, row[1].Num, row[2].Num, row[3].Num, wantL[k], wantV[k])
				}
				if wantL[k] > 0 {
					want := fmt.Sprintf("%.1f%%", float64(wantV[k])*100/float64(wantL[k]))
					if row[4].Text != want {
						t.Errorf("%s %q row %s: share %q, want %q", m, unitID, k, row[4].Text, want)
					}
				} else if row[4].Text != "—" {
					t.Errorf("%s %q row %s: share %q with nobody linked, want —", m, unitID, k, row[4].Text)
				}
				checked++
			}
			for k, n := range wantL {
				if !seen[k] {
					t.Errorf("%s %q: no row for %s (%d linked)", m, unitID, k, n)
				}
			}
			if unitID == "T1V1G1" && !seen["P-idle"] {
				t.Errorf("the idle member has no row")
			}
			// names shown, not only ids
			if unitID == "" && cov.Rows[0][0].Text != "白果镇" {
				t.Errorf("first town row %q, want 白果镇", cov.Rows[0][0].Text)
			}
			// the not-visited list names exactly the right households
			var want []string
			for hid := range member {
				if !visited[hid] {
					want = append(want, hid)
				}
			}
			var got []string
			for _, row := range table(t, res, "not-visited").Rows {
				got = append(got, row[0].Text)
				if h := c.household(row[0].Text); row[1].Text != h.head || row[3].Text != c.byID[h.grid].name || !strings.HasPrefix(row[4].Text, "党员") {
					t.Errorf("not-visited row %v: want head %s, grid %s and the member's name", row, h.head, c.byID[h.grid].name)
				}
			}
			sort.Strings(want)
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s %q: not visited %v, want %v", m, unitID, got, want)
			}
			// the trend: each month's share computed the same way
			tr := table(t, res, "trend")
			if len(tr.Rows) != 12 || len(res.Charts) != 1 || len(res.Charts[0].Series[0].Values) != 12 {
				t.Fatalf("trend: %d rows, want 12 and a chart of 12", len(tr.Rows))
			}
			for i, row := range tr.Rows {
				mm := row[0].Text
				mem, vis := c.expect(t, mm, in)
				if int(row[1].Num) != len(mem) || int(row[2].Num) != len(vis) {
					t.Errorf("trend %s %q %s: %v/%v, want %d/%d", m, unitID, mm, row[2].Num, row[1].Num, len(vis), len(mem))
				}
				if v := res.Charts[0].Series[0].Values[i]; v != row[3].Num && !(row[3].Text == "—" && math.IsNaN(v)) {
					t.Errorf("trend chart %s: %v, table %v", mm, res.Charts[0].Series[0].Values[i], row[3].Num)
				}
			}
			if unitID == "T2V1" && m == "2026-11" {
				if n := checkLinks(t, db, q, res); n < 10 {
					t.Errorf("only %d links followed", n)
				}
			}
		}
	}
	if checked < 30 {
		t.Fatalf("only %d rows checked", checked)
	}
}

func TestCoverageRelinkMidMonthCountsForMemberAtMonthEnd(t *testing.T) {
	db := openModel(t)
	ins(t, db, "units", map[string]any{"id": "T", "kind": "town", "name": "白果镇", "town_id": "T", "seq": 1})
	ins(t, db, "units", map[string]any{"id": "V", "kind": "village", "parent_id": "T", "name": "何家村", "village_id": "V", "town_id": "T", "seq": 1})
	ins(t, db, "units", map[string]any{"id": "G", "kind": "grid", "parent_id": "V", "name": "一组", "village_id": "V", "town_id": "T", "seq": 1})
	for _, p := range []string{"A", "B"} {
		ins(t, db, "people", map[string]any{"id": p, "name": "党员" + p, "role": "member", "unit_id": "G", "village_id": "V", "town_id": "T", "seq": 1})
	}
	hh := func(id string, voided int) {
		ins(t, db, "households", map[string]any{"id": id, "grid_id": "G", "village_id": "V", "town_id": "T", "head": "户主" + id, "voided": voided, "version": 1})
	}
	hh("H1", 0)
	hh("H2", 0)
	hh("H3", 1) // voided: counts nowhere
	link := func(h string, seq int64, m string, from string) {
		ins(t, db, "link_history", map[string]any{"household_id": h, "seq": seq, "member_id": m, "from_ms": at(t, from), "by": "admin:x"})
	}
	link("H1", 1, "A", "2026-10-01 08:00")
	link("H1", 5, "B", "2026-11-16 09:00") // relinked mid-month
	link("H2", 2, "A", "2026-10-01 08:00")
	link("H3", 3, "A", "2026-10-01 08:00")
	visit := func(id, h, on string, voided int) {
		ins(t, db, "visits", map[string]any{"id": id, "household_id": h, "visited_on": on, "month": on[:7], "village_id": "V", "town_id": "T", "voided": voided, "version": 1})
	}
	visit("v1", "H1", "2026-11-03", 0) // by A before the relink: H1 still counts as B's, visited
	visit("v2", "H2", "2026-11-20", 1) // voided visit: H2 not visited
	visit("v3", "H3", "2026-11-20", 0) // voided household
	rows := func(now string, month string) map[string][2]float64 {
		res := page(t, db, "coverage", report.Query{Unit: "G", Month: month, NowMs: at(t, now), Lang: "en"})
		out := map[string][2]float64{}
		for _, r := range table(t, res, "coverage").Rows {
			out[r[0].Text] = [2]float64{r[1].Num, r[2].Num}
		}
		return out
	}
	got := rows("2026-12-05 10:00", "2026-11")
	if got["党员A"] != [2]float64{1, 0} || got["党员B"] != [2]float64{1, 1} || got["Total"] != [2]float64{2, 1} {
		t.Errorf("November after the month: %v; want A 1 linked 0 visited (H2, its visit voided), B 1/1 (H1 relinked on the 16th), total 2/1", got)
	}
	// In the current month, before the relink: H1 is still A's.
	got = rows("2026-11-10 10:00", "2026-11")
	if got["党员A"] != [2]float64{2, 1} || got["党员B"] != [2]float64{0, 0} {
		t.Errorf("November on the 10th: %v; want A 2 linked 1 visited, B 0", got)
	}
	// A month before the relink: both A's.
	got = rows("2026-12-05 10:00", "2026-10")
	if got["党员A"] != [2]float64{2, 0} {
		t.Errorf("October: %v; want A 2 linked, 0 visited", got)
	}
}

func TestScopeTownSecretary(t *testing.T) {
	db := openModel(t)
	c := makeCity(t, db, 3)
	q := report.Query{Town: "T1", NowMs: c.now}
	for _, unitID := range []string{"T2", "T2V1", "T2V2G1"} {
		q.Unit = unitID
		for _, name := range []string{"coverage", "households", "disputes"} {
			if _, err := report.Page(t.Context(), db, name, q); !errors.Is(err, report.ErrOutOfScope) {
				t.Errorf("town T1 asking %s of %s: %v, want ErrOutOfScope", name, unitID, err)
			}
		}
	}
	q.Unit = ""
	q.Filter = map[string]string{"household": "H080"} // a T2 household (grids 5-8 are T2's)
	if _, err := report.Page(t.Context(), db, "visits", q); !errors.Is(err, report.ErrOutOfScope) {
		t.Errorf("town T1 asking the visits of T2's household: %v, want ErrOutOfScope", err)
	}
	q.Filter = map[string]string{"member": "P-T2V1G1-0"}
	if _, err := report.Page(t.Context(), db, "households", q); !errors.Is(err, report.ErrOutOfScope) {
		t.Errorf("town T1 asking T2's member's households: %v, want ErrOutOfScope", err)
	}
	q.Filter = nil
	res := page(t, db, "coverage", q)
	cov := table(t, res, "coverage")
	if len(cov.Rows) != 2 || rowKey(t, cov.Rows[0][0]) != "T1" {
		t.Fatalf("town T1's city page: rows %v, want T1 and the total", cov.Rows)
	}
	member, visited := c.expect(t, "2026-12", func(h hhRow) bool { return h.town == "T1" })
	if int(cov.Rows[1][1].Num) != len(member) || int(cov.Rows[1][2].Num) != len(visited) {
		t.Errorf("T1 total %v/%v, want %d/%d", cov.Rows[1][2].Num, cov.Rows[1][1].Num, len(visited), len(member))
	}
	for _, row := range table(t, res, "not-visited").Rows {
		if c.household(row[0].Text).town != "T1" {
			t.Errorf("town T1's not-visited list holds %s of another town", row[0].Text)
		}
	}
	all := page(t, db, "households", report.Query{Town: "T1", NowMs: c.now})
	if len(all.Tables[0].Rows) != len(member) {
		t.Errorf("T1's households: %d rows, want %d", len(all.Tables[0].Rows), len(member))
	}
}

func TestBadQueries(t *testing.T) {
	db := openModel(t)
	makeCity(t, db, 1)
	now := at(t, "2026-12-15 10:00")
	cases := []struct {
		name string
		q    report.Query
		want error
		says string
	}{
		{"coverage", report.Query{Month: "2026-13"}, report.ErrBadQuery, "month"},
		{"coverage", report.Query{Month: "2026-1"}, report.ErrBadQuery, "YYYY-MM"},
		{"coverage", report.Query{Month: "2027-01"}, report.ErrBadQuery, "after the current month"},
		{"coverage", report.Query{Unit: "nowhere"}, report.ErrNotFound, "unit"},
		{"coverage", report.Query{Lang: "fr"}, report.ErrBadQuery, "zh or en"},
		{"nosuchpage", report.Query{}, report.ErrNotFound, "coverage"},
		{"households", report.Query{Filter: map[string]string{"visited": "yes"}}, report.ErrBadQuery, "visited"},
		{"households", report.Query{Filter: map[string]string{"colour": "red"}}, report.ErrBadQuery, "colour"},
		{"households", report.Query{Filter: map[string]string{"member": "nobody"}}, report.ErrNotFound, "member"},
		{"devices", report.Query{Filter: map[string]string{"days": "0"}}, report.ErrBadQuery, "1 to 3650"},
		{"devices", report.Query{Filter: map[string]string{"days": "x"}}, report.ErrBadQuery, "days"},
		{"dispute-list", report.Query{Filter: map[string]string{"age": "1-2"}}, report.ErrBadQuery, "0-7"},
		{"dispute-list", report.Query{Filter: map[string]string{"status": "lost"}}, report.ErrBadQuery, "mediating"},
		{"dispute-list", report.Query{Filter: map[string]string{"settled": "26-1"}}, report.ErrBadQuery, "settled"},
		{"disputes", report.Query{Unit: "T1V1G1"}, report.ErrBadQuery, "grid"},
		{"need-list", report.Query{Filter: map[string]string{"category": "food"}}, report.ErrBadQuery, "livelihood"},
		{"event-list", report.Query{Filter: map[string]string{"type": "party"}}, report.ErrBadQuery, "party_day"},
		{"project-list", report.Query{Filter: map[string]string{"status": "done"}}, report.ErrBadQuery, "completed"},
		{"chains", report.Query{Filter: map[string]string{"status": "bad"}}, report.ErrBadQuery, "broken"},
		{"coverage", report.Query{Town: "T1V1"}, report.ErrNotFound, "town"},
	}
	for _, c := range cases {
		c.q.NowMs = now
		_, err := report.Page(t.Context(), db, c.name, c.q)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Page(%s, %+v) = %v; want %v saying %q", c.name, c.q, err, c.want, c.says)
		}
	}
	// the current month is the default
	res := page(t, db, "coverage", report.Query{NowMs: now})
	if !strings.Contains(res.Title, "2026-12") {
		t.Errorf("default month: title %q, want 2026-12", res.Title)
	}
}

func TestPagesMenuAndLabels(t *testing.T) {
	zh, en := report.Pages("zh"), report.Pages("en")
	want := []string{"coverage", "disputes", "needs", "projects", "events", "devices", "chains"}
	if len(zh) != len(want) {
		t.Fatalf("Pages: %v", zh)
	}
	for i, p := range zh {
		if p.Name != want[i] || en[i].Name != want[i] || p.Title == en[i].Title {
			t.Errorf("page %d: %+v / %+v, want %s titled in each language", i, p, en[i], want[i])
		}
	}
	if zh[0].Title != "走访覆盖" || report.Pages("")[0].Title != "走访覆盖" {
		t.Errorf("coverage in Chinese: %q, want 走访覆盖 (the default)", zh[0].Title)
	}
	db := openModel(t)
	c := makeCity(t, db, 2)
	res := page(t, db, "coverage", report.Query{NowMs: c.now})
	if h := table(t, res, "coverage").Columns[1].Label; h != "联系户数" {
		t.Errorf("heading %q, want 联系户数", h)
	}
	res = page(t, db, "coverage", report.Query{NowMs: c.now, Lang: "en"})
	if h := table(t, res, "coverage").Columns[1].Label; h != "Linked households" {
		t.Errorf("heading %q, want Linked households", h)
	}
}

func TestCoverageFollowsTheModelsChanges(t *testing.T) {
	db := openModel(t)
	c := makeCity(t, db, 4)
	ins(t, db, "meta", map[string]any{"key": "last_seq", "value": "500"})
	q := report.Query{Unit: "T1V1", Month: "2026-11", NowMs: c.now}
	before := table(t, page(t, db, "coverage", q), "coverage")
	total := before.Rows[len(before.Rows)-1]
	nv := table(t, page(t, db, "coverage", q), "not-visited")
	if len(nv.Rows) == 0 {
		t.Fatal("no household left unvisited to visit")
	}
	// The model applies a change: a visit to a household not visited.
	ins(t, db, "visits", map[string]any{"id": "late", "household_id": nv.Rows[0][0].Text, "visited_on": "2026-11-30", "month": "2026-11",
		"village_id": "T1V1", "town_id": "T1", "version": 501})
	if _, err := db.Exec(`UPDATE meta SET value = '501' WHERE key = 'last_seq'`); err != nil {
		t.Fatal(err)
	}
	after := table(t, page(t, db, "coverage", q), "coverage")
	got := after.Rows[len(after.Rows)-1]
	if got[1].Num != total[1].Num || got[2].Num != total[2].Num+1 {
		t.Errorf("after a visit applied: %v/%v, want %v/%v", got[2].Num, got[1].Num, total[2].Num+1, total[1].Num)
	}
	for _, r := range table(t, page(t, db, "coverage", q), "trend").Rows {
		if r[0].Text == "2026-11" && r[2].Num != got[2].Num {
			t.Errorf("trend for 2026-11: %v visited, want %v", r[2].Num, got[2].Num)
		}
	}
}
