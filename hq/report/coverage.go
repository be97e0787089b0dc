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

// linkedCTE is the WITH clauses of the households linked at time at:
// lk (hid, mid: each household's member per link_history at at) and hh
// (id, grid_id, village_id, town_id, mid: the non-voided households with
// a member, in the query's scope). The last row with from_ms <= at wins;
// rows of the same ms are told apart by seq (its low 20 bits).
func (e *env) linkedCTE(at int64) (string, []any) {
	cond, args := e.scope("h", "grid_id")
	s := `lk AS (SELECT household_id AS hid, member_id AS mid, max(from_ms * 1048576 + (seq & 1048575)) AS k
		FROM link_history WHERE from_ms <= ? GROUP BY household_id),
	hh AS (SELECT h.id, h.grid_id, h.village_id, h.town_id, lk.mid FROM lk JOIN households h ON h.id = lk.hid
		WHERE h.voided = 0 AND lk.mid <> '' AND ` + cond + `)`
	return s, append([]any{at}, args...)
}

// visitedCTE is the WITH clause vs (hid): the households with at least one
// non-voided visit in month.
const visitedCTE = `vs AS (SELECT DISTINCT household_id AS hid FROM visits WHERE month = ? AND voided = 0)`

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

// coverageBy counts linked and visited households of month m grouped by
// column col of hh ("" for one total row).
func (e *env) coverageBy(m, col string) (map[string]*covRow, error) {
	cte, args := e.linkedCTE(e.linkAt(m))
	g := "''"
	if col != "" {
		g = "hh." + col
	}
	q := `WITH ` + cte + `, ` + visitedCTE + `
	SELECT ` + g + `, count(*), count(vs.hid) FROM hh LEFT JOIN vs ON vs.hid = hh.id GROUP BY 1`
	rows, err := e.db.QueryContext(e.ctx, q, append(args, m)...)
	if err != nil {
		return nil, fmt.Errorf("report: coverage: %w", err)
	}
	defer rows.Close()
	out := map[string]*covRow{}
	for rows.Next() {
		r := &covRow{}
		if err := rows.Scan(&r.key, &r.linked, &r.visited); err != nil {
			return nil, fmt.Errorf("report: coverage: %w", err)
		}
		out[r.key] = r
	}
	return out, rows.Err()
}

func coveragePage(e *env) (*Result, error) {
	res := &Result{Title: e.title("coverage", true)}
	m := e.month
	var (
		col   string
		keys  []string
		names = map[string]string{}
		first = "unit"
	)
	if e.unit != nil && e.unit.Kind == "grid" {
		col, first = "mid", "member"
	} else {
		switch {
		case e.unit == nil:
			col = "town_id"
		case e.unit.Kind == "town":
			col = "village_id"
		default:
			col = "grid_id"
		}
		for _, c := range e.children() {
			keys = append(keys, c.ID)
			names[c.ID] = c.Name
		}
	}
	by, err := e.coverageBy(m, col)
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

	nv, total, err := e.householdRows(m, "0", "", notVisitedShown)
	if err != nil {
		return nil, err
	}
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
		c, err := e.coverageBy(mm, "")
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
// most limit rows (0: all), and how many there are.
func (e *env) householdRows(m, visited, member string, limit int) (Table, int64, error) {
	t := Table{Name: "households", Columns: []Column{e.col("household", false), e.col("head", false), e.col("address", false),
		e.col("grid", false), e.col("member", false), e.col("visits", true)}}
	cte, args := e.linkedCTE(e.linkAt(m))
	cond := "1 = 1"
	switch visited {
	case "1":
		cond = "vs.hid IS NOT NULL"
	case "0":
		cond = "vs.hid IS NULL"
	}
	args = append(args, m, m) // vs; the visits count
	if member != "" {
		cond += " AND hh.mid = ?"
		args = append(args, member)
	}
	q := `WITH ` + cte + `, ` + visitedCTE + `
	SELECT hh.id, h.head, h.address, hh.grid_id, hh.mid, coalesce(p.name, ''),
		(SELECT count(*) FROM visits v WHERE v.household_id = hh.id AND v.month = ? AND v.voided = 0), count(*) OVER ()
	FROM hh JOIN households h ON h.id = hh.id LEFT JOIN vs ON vs.hid = hh.id LEFT JOIN people p ON p.id = hh.mid
	WHERE ` + cond + ` ORDER BY hh.town_id, hh.village_id, hh.grid_id, hh.id`
	if limit > 0 {
		q += ` LIMIT ` + strconv.Itoa(limit)
	}
	rows, err := e.db.QueryContext(e.ctx, q, args...)
	if err != nil {
		return t, 0, fmt.Errorf("report: households: %w", err)
	}
	defer rows.Close()
	var total int64
	for rows.Next() {
		var id, head, addr, grid, mid, mname string
		var n int64
		if err := rows.Scan(&id, &head, &addr, &grid, &mid, &mname, &n, &total); err != nil {
			return t, 0, fmt.Errorf("report: households: %w", err)
		}
		t.Rows = append(t.Rows, []Cell{txt(id), txt(head), txt(addr),
			txtLink(e.unitName(grid), link("coverage", "month", m, "unit", grid)), txt(nameOr(mname, mid)),
			num(n, link("visits", "household", id, "month", m))})
	}
	return t, total, rows.Err()
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
	t, _, err := e.householdRows(e.month, v, member, 0)
	if err != nil {
		return nil, err
	}
	t.Title = label(e.lang, "page.households") + " · " + e.month
	return &Result{Title: e.title("households", true), Tables: []Table{t}}, nil
}
