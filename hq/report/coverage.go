package report

import (
	"database/sql"
	"fmt"
	"sort"
	"strconv"
)

// notVisitedShown is how many not-visited households the coverage page
// lists; the count links to the full list.
const notVisitedShown = 500

// memberAtSQL is the member a household h was linked to at time ?: the
// member_id of its last link_history row (by from_ms, then seq) with
// from_ms <= ?, NULL if none.
const memberAtSQL = `(SELECT l.member_id FROM link_history l WHERE l.household_id = h.id AND l.from_ms <= ?
	ORDER BY l.from_ms DESC, l.seq DESC LIMIT 1)`

// visitedSQL is whether household x.id has a non-voided visit in month ?.
const visitedSQL = `EXISTS (SELECT 1 FROM visits v WHERE v.month = ? AND v.household_id = x.id AND v.voided = 0)`

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

// monthCoverage counts, for month m, the households linked and visited
// per (grid, member) in the query's scope: one pass over the households,
// each one's link and visits found by index. A result is kept while the
// model's meta (lineage, last change applied) says nothing changed.
func (e *env) monthCoverage(m string) (map[[2]string]*covRow, error) {
	at := e.linkAt(m)
	from, args := e.linkedSQL()
	key := ""
	if e.fingerprint != "" {
		key = fmt.Sprint(e.fingerprint, "|", m, "|", at, "|", args)
		if m == e.currentMonth {
			// Links are read at now: with no change applied no link is
			// new, but one dated by a clock ahead of ours comes due
			// later; a minute's result is kept.
			key = fmt.Sprint(e.fingerprint, "|", m, "|", at/60000, "|", args)
		}
		if r, ok := memo.get(e.db, key); ok {
			return r, nil
		}
	}
	q := `SELECT x.grid_id, x.mid, count(*), sum(` + visitedSQL + `) FROM ` + from + `
		WHERE x.mid IS NOT NULL AND x.mid <> '' GROUP BY 1, 2`
	rows, err := e.db.QueryContext(e.ctx, q, append([]any{m, at}, args...)...) // in text order: the visits, then the links
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
	if key != "" {
		memo.put(e.db, key, out)
	}
	return out, nil
}

// coverageBy sums monthCoverage of month m by key(grid, member).
func (e *env) coverageBy(m string, key func(grid, member string) string) (map[string]*covRow, error) {
	mc, err := e.monthCoverage(m)
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
	res.Tables = append(res.Tables, t)

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
	for _, mm := range months {
		c, err := e.coverageBy(mm, func(string, string) string { return "" })
		if err != nil {
			return nil, err
		}
		r := c[""]
		if r == nil {
			r = &covRow{}
		}
		sh := share(r.visited, r.linked)
		tr.Rows = append(tr.Rows, []Cell{txtLink(mm, link("coverage", "month", mm, "unit", u)),
			num(r.linked, link("households", "month", mm, "unit", u)), num(r.visited, link("households", "month", mm, "unit", u, "visited", "1")), sh})
		ch.Series[0].Values = append(ch.Series[0].Values, sh.Num)
	}
	res.Tables = append(res.Tables, tr)
	res.Charts = append(res.Charts, ch)
	return res, nil
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
		cond += " AND " + visitedSQL
		args = append(args, m)
	case "0":
		cond += " AND NOT " + visitedSQL
		args = append(args, m)
	}
	if member != "" {
		cond += " AND x.mid = ?"
		args = append(args, member)
	}
	q := `SELECT x.id, h.head, h.address, x.grid_id, x.mid, coalesce(p.name, ''),
		(SELECT count(*) FROM visits v WHERE v.household_id = x.id AND v.month = ? AND v.voided = 0)
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
