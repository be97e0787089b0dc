package report

import (
	"database/sql"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/fieldsync/fieldsync/hq"
)

// notVisitedShown is how many not-visited households the coverage page
// lists; the count links to the full list.
const notVisitedShown = 500

// memberAtSQL is the member a household h was linked to at time ?: the
// member_id of its last link_history row (by from_ms, then seq) with
// from_ms <= ?, NULL if none.
const memberAtSQL = `(SELECT l.member_id FROM link_history l WHERE l.household_id = h.id AND l.from_ms <= ?
	ORDER BY l.from_ms DESC, l.seq DESC LIMIT 1)`

// visitedSQL is whether household x.id has a non-voided visit in month ?:
// one probe of household_months where the model keeps it, else of visits.
func (e *env) visitedSQL() string {
	if e.coverageKept() {
		return `EXISTS (SELECT 1 FROM household_months hm WHERE hm.month = ? AND hm.household_id = x.id)`
	}
	return `EXISTS (SELECT 1 FROM visits v WHERE v.month = ? AND v.household_id = x.id AND v.voided = 0)`
}

// visitsSQL is the number of household x.id's non-voided visits in month ?.
func (e *env) visitsSQL() string {
	if e.coverageKept() {
		return `coalesce((SELECT hm.visits FROM household_months hm WHERE hm.month = ? AND hm.household_id = x.id), 0)`
	}
	return `(SELECT count(*) FROM visits v WHERE v.household_id = x.id AND v.month = ? AND v.voided = 0)`
}

// linkedSQL selects x (id, grid_id, mid) : the non-voided households in
// scope with a member at time ?.
func (e *env) linkedSQL() (string, []any) {
	cond, args := e.scope("h", "grid_id")
	return `(SELECT h.id, h.grid_id, h.town_id, h.village_id, ` + memberAtSQL + ` AS mid FROM households h
		WHERE h.voided = 0 AND ` + cond + `) x`, args
}

// linkAt is the moment links are read at for month m: its last ms, or now
// for the current month.
func (e *env) linkAt(m string) int64 {
	_, end := monthBounds(m)
	if e.now < end-1 {
		return e.now
	}
	return end - 1
}

type covRow struct {
	key             string
	linked, visited int64
}

// coverageKept says whether the model keeps the coverage tables (package
// hq's migration 2: household_months, coverage_state, coverage_months,
// coverage_grids); a database without them is counted from the base
// tables.
func (e *env) coverageKept() bool {
	if e.kept == 0 {
		e.kept = -1
		var n int
		err := e.db.QueryRowContext(e.ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table'
			AND name IN ('household_months', 'coverage_state', 'coverage_months', 'coverage_grids')`).Scan(&n)
		if err == nil && n == 4 {
			e.kept = 1
		}
	}
	return e.kept == 1
}

// fromTables says whether month m's coverage can be read from the
// coverage tables: they are kept, the month is built (BuildCoverage
// builds it now if not: once, then the model's triggers keep it), and its
// links are read at its end — always, but for the current month when a
// link is dated after now within it (a clock ahead of the page's).
func (e *env) fromTables(m string) (bool, error) {
	if !e.coverageKept() {
		return false, nil
	}
	if ok, seen := e.usable[m]; seen {
		return ok, nil
	}
	if e.usable == nil {
		e.usable = map[string]bool{}
	}
	if at := e.linkAt(m); at < lastMs(m) {
		var ahead bool
		if err := e.db.QueryRowContext(e.ctx, `SELECT EXISTS (SELECT 1 FROM link_history WHERE from_ms > ? AND from_ms <= ?)`,
			at, lastMs(m)).Scan(&ahead); err != nil {
			return false, fmt.Errorf("report: coverage: %w", err)
		}
		if ahead {
			e.usable[m] = false
			return false, nil
		}
	}
	if _, err := hq.BuildCoverage(e.ctx, e.db, m); err != nil {
		if !strings.Contains(err.Error(), "readonly") {
			return false, fmt.Errorf("report: coverage: %w", err)
		}
		// A database opened read-only: counted from the base tables.
		e.usable[m] = false
		return false, nil
	}
	e.usable[m] = true
	return true, nil
}

// lastMs is the last ms of month m.
func lastMs(m string) int64 {
	_, end := monthBounds(m)
	return end - 1
}

// monthCoverage counts, for month m, the households linked and visited
// per (grid, member) in the query's scope — per grid alone (member "")
// unless byMember. From the coverage tables where the model keeps them;
// else in one pass over the households, each one's link and visits found
// by index.
func (e *env) monthCoverage(m string, byMember bool) (map[[2]string]*covRow, error) {
	ok, err := e.fromTables(m)
	if err != nil {
		return nil, err
	}
	var (
		q    string
		args []any
	)
	if ok {
		cond, sargs := e.scope("", "grid_id")
		if byMember {
			q = `SELECT grid_id, member_id, sum(linked), sum(visited) FROM coverage_months WHERE month = ? AND ` + cond + ` GROUP BY 1, 2`
		} else {
			q = `SELECT grid_id, '', sum(linked), sum(visited) FROM coverage_grids WHERE month = ? AND ` + cond + ` GROUP BY 1`
		}
		args = append([]any{m}, sargs...)
	} else {
		from, sargs := e.linkedSQL()
		mid := "x.mid"
		if !byMember {
			mid = "''"
		}
		q = `SELECT x.grid_id, ` + mid + `, count(*), sum(` + e.visitedSQL() + `) FROM ` + from + `
		WHERE x.mid IS NOT NULL AND x.mid <> '' GROUP BY 1, 2`
		args = append([]any{m, e.linkAt(m)}, sargs...) // in text order: the visits, then the links
	}
	rows, err := e.db.QueryContext(e.ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("report: coverage: %w", err)
	}
	defer rows.Close()
	out := map[[2]string]*covRow{}
	for rows.Next() {
		var g, mid string
		r := &covRow{}
		if err := rows.Scan(&g, &mid, &r.linked, &r.visited); err != nil {
			return nil, fmt.Errorf("report: coverage: %w", err)
		}
		out[[2]string{g, mid}] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: coverage: %w", err)
	}
	return out, nil
}

// trend is the scope's coverage (linked, visited) in each of months: one
// query over coverage_grids for the months read from the tables.
func (e *env) trend(months []string) (map[string]*covRow, error) {
	out := map[string]*covRow{}
	var kept []any
	for _, m := range months {
		out[m] = &covRow{key: m}
		ok, err := e.fromTables(m)
		if err != nil {
			return nil, err
		}
		if ok {
			kept = append(kept, m)
			continue
		}
		c, err := e.coverageBy(m, func(string, string) string { return "" })
		if err != nil {
			return nil, err
		}
		if r := c[""]; r != nil {
			out[m] = r
		}
	}
	if len(kept) == 0 {
		return out, nil
	}
	cond, sargs := e.scope("", "grid_id")
	rows, err := e.db.QueryContext(e.ctx, `SELECT month, sum(linked), sum(visited) FROM coverage_grids
		WHERE month IN (`+placeholders(len(kept))+`) AND `+cond+` GROUP BY month`, append(kept, sargs...)...)
	if err != nil {
		return nil, fmt.Errorf("report: coverage trend: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m string
		var l, v int64
		if err := rows.Scan(&m, &l, &v); err != nil {
			return nil, fmt.Errorf("report: coverage trend: %w", err)
		}
		if r := out[m]; r != nil {
			r.linked, r.visited = l, v
		}
	}
	return out, rows.Err()
}

// coverageBy sums monthCoverage of month m by key(grid, member).
// by member only at a grid (its rows are its members).
func (e *env) coverageBy(m string, key func(grid, member string) string) (map[string]*covRow, error) {
	mc, err := e.monthCoverage(m, e.unit != nil && e.unit.Kind == "grid")
	if err != nil {
		return nil, err
	}
	out := map[string]*covRow{}
	for k, r := range mc {
		g := key(k[0], k[1])
		o := out[g]
		if o == nil {
			o = &covRow{key: g}
			out[g] = o
		}
		o.linked += r.linked
		o.visited += r.visited
	}
	return out, nil
}

func coveragePage(e *env) (*Result, error) {
	res := &Result{Title: e.title("coverage", true)}
	m := e.month
	var (
		col   string
		keys  []string
		names = map[string]string{}
		first = "unit"
		keyOf func(grid, member string) string
	)
	gridUnit := func(g string) *unit {
		if u := e.units[g]; u != nil {
			return u
		}
		return &unit{}
	}
	if e.unit != nil && e.unit.Kind == "grid" {
		col, first = "mid", "member"
		keyOf = func(_, member string) string { return member }
	} else {
		switch {
		case e.unit == nil:
			keyOf = func(g, _ string) string { return gridUnit(g).Town }
		case e.unit.Kind == "town":
			keyOf = func(g, _ string) string { return gridUnit(g).Village }
		default:
			keyOf = func(g, _ string) string { return g }
		}
		for _, c := range e.children() {
			keys = append(keys, c.ID)
			names[c.ID] = c.Name
		}
	}
	by, err := e.coverageBy(m, keyOf)
	if err != nil {
		return nil, err
	}
	if col == "mid" {
		// A grid's rows: its members, and any member linking its households.
		ids := map[string]bool{}
		for k := range by {
			ids[k] = true
		}
		rows, err := e.db.QueryContext(e.ctx, `SELECT id FROM people WHERE role = 'member' AND unit_id = ?`, e.unit.ID)
		if err != nil {
			return nil, fmt.Errorf("report: members: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			ids[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		for id := range ids {
			keys = append(keys, id)
		}
		if names, err = e.personNames(keys); err != nil {
			return nil, err
		}
		sort.Slice(keys, func(i, j int) bool {
			if names[keys[i]] != names[keys[j]] {
				return names[keys[i]] < names[keys[j]]
			}
			return keys[i] < keys[j]
		})
	}
	t := Table{Name: "coverage", Title: label(e.lang, "table.coverage") + " · " + m,
		Columns: []Column{e.col(first, false), e.col("linked", true), e.col("visited", true), e.col("not_visited", true), e.col("share", true)}}
	var tl, tv int64
	for _, k := range keys {
		r := by[k]
		if r == nil {
			r = &covRow{key: k}
		}
		tl, tv = tl+r.linked, tv+r.visited
		var first Cell
		var hl func(v string) string
		if col == "mid" {
			first = txtLink(nameOr(names[k], k), link("households", "member", k, "month", m, "unit", e.unit.ID))
			hl = func(v string) string {
				return link("households", "member", k, "month", m, "unit", e.unit.ID, "visited", v)
			}
		} else {
			first = txtLink(names[k], link("coverage", "month", m, "unit", k))
			hl = func(v string) string { return link("households", "month", m, "unit", k, "visited", v) }
		}
		t.Rows = append(t.Rows, []Cell{first, num(r.linked, hl("")), num(r.visited, hl("1")), num(r.linked-r.visited, hl("0")), share(r.visited, r.linked)})
	}
	u := e.unitParam()
	t.Rows = append(t.Rows, []Cell{txt(label(e.lang, "col.total")),
		num(tl, link("households", "month", m, "unit", u)), num(tv, link("households", "month", m, "unit", u, "visited", "1")),
		num(tl-tv, link("households", "month", m, "unit", u, "visited", "0")), share(tv, tl)})
	if col != "mid" {
		var towns []*unit
		for _, k := range keys {
			towns = append(towns, e.units[k])
		}
		e.withRegion(&t, towns)
	}
	res.Tables = append(res.Tables, t)
	if e.unit == nil && e.region == "" && len(e.regions) > 0 {
		res.Tables = append(res.Tables, e.regionTotals(m, keys, by))
	}

	nv, err := e.householdRows(m, "0", "", notVisitedShown)
	if err != nil {
		return nil, err
	}
	total := tl - tv
	nvt := nv
	nvt.Name = "not-visited"
	nvt.Title = label(e.lang, "table.not-visited") + " · " + m
	if total > int64(len(nv.Rows)) {
		nvt.Title = fmt.Sprintf(label(e.lang, "table.not-visited-first"), len(nv.Rows), total)
	}
	res.Tables = append(res.Tables, nvt)

	months := lastMonths(m, 12)
	tr := Table{Name: "trend", Title: label(e.lang, "table.trend"),
		Columns: []Column{e.col("month", false), e.col("linked", true), e.col("visited", true), e.col("share", true)}}
	ch := Chart{Title: label(e.lang, "chart.trend"), Labels: months, Series: []Series{{Name: label(e.lang, "col.share")}}}
	byMonth, err := e.trend(months)
	if err != nil {
		return nil, err
	}
	for _, mm := range months {
		r := byMonth[mm]
		sh := share(r.visited, r.linked)
		tr.Rows = append(tr.Rows, []Cell{txtLink(mm, link("coverage", "month", mm, "unit", u)),
			num(r.linked, link("households", "month", mm, "unit", u)), num(r.visited, link("households", "month", mm, "unit", u, "visited", "1")), sh})
		ch.Series[0].Values = append(ch.Series[0].Values, chartValue(sh))
	}
	res.Tables = append(res.Tables, tr)
	res.Charts = append(res.Charts, ch)
	return res, nil
}

// chartValue is a cell's value on a chart: NaN (a gap in the line, no
// point) where the table shows "—" (nothing to count), not a false 0.
func chartValue(c Cell) float64 {
	if c.Text == "—" {
		return math.NaN()
	}
	return c.Num
}

func nameOr(name, id string) string {
	if name == "" {
		return id
	}
	return name
}

// personNames names people by id.
func (e *env) personNames(ids []string) (map[string]string, error) {
	out := map[string]string{}
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := make([]any, n)
		for i := range n {
			args[i] = ids[i]
		}
		rows, err := e.db.QueryContext(e.ctx, `SELECT id, name FROM people WHERE id IN (`+placeholders(n)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("report: people: %w", err)
		}
		for rows.Next() {
			var id, name string
			if err := rows.Scan(&id, &name); err != nil {
				rows.Close()
				return nil, err
			}
			out[id] = name
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		ids = ids[n:]
	}
	return out, nil
}

// householdRows lists the households linked in month m in scope: all, or
// only the visited ("1") or not visited ("0"), of one member or all; at
// most limit rows (0: all), in the order of their ids (so that a limit
// stops the scan early).
func (e *env) householdRows(m, visited, member string, limit int) (Table, error) {
	t := Table{Name: "households", Columns: []Column{e.col("household", false), e.col("head", false), e.col("address", false),
		e.col("grid", false), e.col("member", false), e.col("visits", true)}}
	from, sargs := e.linkedSQL()
	args := append([]any{m, e.linkAt(m)}, sargs...)
	cond := "x.mid IS NOT NULL AND x.mid <> ''"
	switch visited {
	case "1":
		cond += " AND " + e.visitedSQL()
		args = append(args, m)
	case "0":
		cond += " AND NOT " + e.visitedSQL()
		args = append(args, m)
	}
	if member != "" {
		cond += " AND x.mid = ?"
		args = append(args, member)
	}
	q := `SELECT x.id, h.head, h.address, x.grid_id, x.mid, coalesce(p.name, ''), ` + e.visitsSQL() + `
	FROM ` + from + ` JOIN households h ON h.id = x.id LEFT JOIN people p ON p.id = x.mid
	WHERE ` + cond + ` ORDER BY x.id`
	if limit > 0 {
		q += ` LIMIT ` + strconv.Itoa(limit)
	}
	rows, err := e.db.QueryContext(e.ctx, q, args...)
	if err != nil {
		return t, fmt.Errorf("report: households: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, head, addr, grid, mid, mname string
		var n int64
		if err := rows.Scan(&id, &head, &addr, &grid, &mid, &mname, &n); err != nil {
			return t, fmt.Errorf("report: households: %w", err)
		}
		t.Rows = append(t.Rows, []Cell{txt(id), txt(head), txt(addr),
			txtLink(e.unitName(grid), link("coverage", "month", m, "unit", grid)), txt(nameOr(mname, mid)),
			num(n, link("visits", "household", id, "month", m))})
	}
	return t, rows.Err()
}

func householdsPage(e *env) (*Result, error) {
	v := e.filter["visited"]
	if v != "" && v != "0" && v != "1" {
		return nil, badFilter("visited", v, "0 (not visited) or 1 (visited)")
	}
	member := e.filter["member"]
	if member != "" {
		var town string
		err := e.db.QueryRowContext(e.ctx, `SELECT town_id FROM people WHERE id = ?`, member).Scan(&town)
		if err != nil && err != sql.ErrNoRows {
			return nil, err
		}
		if err := e.checkTown("member", member, town, err == nil); err != nil {
			return nil, err
		}
	}
	t, err := e.householdRows(e.month, v, member, 0)
	if err != nil {
		return nil, err
	}
	t.Title = label(e.lang, "page.households") + " · " + e.month
	return &Result{Title: e.title("households", true), Tables: []Table{t}}, nil
}

// regionTotals is the city's coverage summed per region (its towns' rows
// of the coverage table): each region's name opens the coverage page of
// its towns only, each number its households.
func (e *env) regionTotals(m string, towns []string, by map[string]*covRow) Table {
	t := Table{Name: "coverage-regions", Title: label(e.lang, "table.coverage-regions") + " · " + m,
		Columns: []Column{e.col("region", false), e.col("linked", true), e.col("visited", true), e.col("not_visited", true), e.col("share", true)}}
	sum := map[string]*covRow{}
	for _, k := range towns {
		u := e.units[k]
		if u == nil || by[k] == nil {
			continue
		}
		s := sum[u.Region]
		if s == nil {
			s = &covRow{}
			sum[u.Region] = s
		}
		s.linked += by[k].linked
		s.visited += by[k].visited
	}
	for _, r := range append(append([]string{}, e.regions...), "") {
		s := sum[r]
		if s == nil {
			if r == "" {
				continue // no town without a region
			}
			s = &covRow{}
		}
		name := r
		if r == "" {
			name = label(e.lang, "val.none")
		}
		hl := func(v string) string { return link("households", "month", m, "region", r, "visited", v) }
		t.Rows = append(t.Rows, []Cell{txtLink(name, link("coverage", "month", m, "region", r)),
			num(s.linked, hl("")), num(s.visited, hl("1")), num(s.linked-s.visited, hl("0")), share(s.visited, s.linked)})
	}
	return t
}
