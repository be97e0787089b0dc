package report

import (
	"fmt"
	"strings"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

var needFilters = map[string]string{
	"open":     "1 (raised, taken or referred: not resolved)",
	"status":   strings.Join(domain.NeedStatuses, ", "),
	"category": strings.Join(domain.NeedCategories, ", "),
	"age":      "0-7, 8-30, 31-90 or 90+ (days since raised)",
	"raised":   "YYYY-MM (raised that month)",
	"met":      "YYYY-MM (met that month)",
}

var projectStatuses = domain.ProjectStatuses

func nv(lang, field, value string) string {
	return domain.ValueLabel(lang, pb.Kind_KIND_NEED, field, value)
}

type needRow struct {
	id, village, household, category, summary, status string
	raised, met                                       int64
}

func (e *env) needs(cond string, args ...any) ([]needRow, error) {
	sc, sargs := e.scope("", "")
	rows, err := e.db.QueryContext(e.ctx, `SELECT id, village_id, household_id, category, summary, status, raised_ms, met_ms
		FROM needs WHERE voided = 0 AND `+sc+` AND (`+cond+`) ORDER BY raised_ms, id`, append(sargs, args...)...)
	if err != nil {
		return nil, fmt.Errorf("report: needs: %w", err)
	}
	defer rows.Close()
	var out []needRow
	for rows.Next() {
		var n needRow
		if err := rows.Scan(&n.id, &n.village, &n.household, &n.category, &n.summary, &n.status, &n.raised, &n.met); err != nil {
			return nil, fmt.Errorf("report: needs: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func needsPage(e *env) (*Result, error) {
	if err := e.noGrid("needs"); err != nil {
		return nil, err
	}
	res := &Result{Title: e.title("needs", true)}
	u := e.unitParam()
	months := lastMonths(e.month, 12)
	from, _ := monthBounds(months[0])
	ns, err := e.needs(`(raised_ms >= ? AND raised_ms < ?) OR (met_ms >= ? AND met_ms < ?) OR status <> 'resolved'`, from, e.end, from, e.end)
	if err != nil {
		return nil, err
	}
	raised, met := map[string]int64{}, map[string]int64{}
	catRaised, catMet, catOpen := map[string]int64{}, map[string]int64{}, map[string]int64{}
	var open []aged
	for _, n := range ns {
		if n.raised >= from && n.raised < e.end {
			raised[monthOf(n.raised)]++
		}
		if n.met > 0 && n.met >= from && n.met < e.end {
			met[monthOf(n.met)]++
		}
		if n.raised >= e.start && n.raised < e.end {
			catRaised[n.category]++
		}
		if n.met >= e.start && n.met < e.end {
			catMet[n.category]++
		}
		if n.status != "resolved" {
			open = append(open, aged{n.category, n.raised})
			catOpen[n.category]++
		}
	}
	mt := Table{Name: "needs-per-month", Title: label(e.lang, "table.needs-month"),
		Columns: []Column{e.col("month", false), e.col("raised", true), e.col("met_needs", true)}}
	ch := Chart{Title: label(e.lang, "chart.needs"), Labels: months,
		Series: []Series{{Name: label(e.lang, "col.raised")}, {Name: label(e.lang, "col.met_needs")}}}
	for _, m := range months {
		mt.Rows = append(mt.Rows, []Cell{txt(m), num(raised[m], link("need-list", "raised", m, "unit", u)), num(met[m], link("need-list", "met", m, "unit", u))})
		ch.Series[0].Values = append(ch.Series[0].Values, float64(raised[m]))
		ch.Series[1].Values = append(ch.Series[1].Values, float64(met[m]))
	}
	res.Tables = append(res.Tables, mt)
	res.Charts = append(res.Charts, ch)
	res.Tables = append(res.Tables, e.ageTable("needs-open-by-age", label(e.lang, "table.needs-open-age"), "category", domain.NeedCategories,
		func(k string) string { return nv(e.lang, "category", k) }, open,
		func(k, a string) string { return link("need-list", "open", "1", "category", k, "age", a, "unit", u) }))
	ct := Table{Name: "needs-by-category", Title: label(e.lang, "table.needs-category") + " · " + e.month,
		Columns: []Column{e.col("category", false), e.col("raised", true), e.col("met_needs", true), e.col("open", true)}}
	var tr, tm, to int64
	for _, c := range domain.NeedCategories {
		tr, tm, to = tr+catRaised[c], tm+catMet[c], to+catOpen[c]
		ct.Rows = append(ct.Rows, []Cell{txt(nv(e.lang, "category", c)),
			num(catRaised[c], link("need-list", "raised", e.month, "category", c, "unit", u)),
			num(catMet[c], link("need-list", "met", e.month, "category", c, "unit", u)),
			num(catOpen[c], link("need-list", "open", "1", "category", c, "unit", u))})
	}
	ct.Rows = append(ct.Rows, []Cell{txt(label(e.lang, "col.total")), num(tr, link("need-list", "raised", e.month, "unit", u)),
		num(tm, link("need-list", "met", e.month, "unit", u)), num(to, link("need-list", "open", "1", "unit", u))})
	res.Tables = append(res.Tables, ct)
	return res, nil
}

func needListPage(e *env) (*Result, error) {
	if err := e.noGrid("needs"); err != nil {
		return nil, err
	}
	conds := []string{"1 = 1"}
	var args []any
	f := e.filter
	if v, ok := f["open"]; ok {
		if v != "1" {
			return nil, badFilter("open", v, "1")
		}
		conds = append(conds, `status <> 'resolved'`)
	}
	var err error
	if conds, args, err = enumFilter(f, "status", domain.NeedStatuses, needFilters, conds, args); err != nil {
		return nil, err
	}
	if conds, args, err = enumFilter(f, "category", domain.NeedCategories, needFilters, conds, args); err != nil {
		return nil, err
	}
	if v, ok := f["age"]; ok {
		c, a, err := e.ageCond("raised_ms", v)
		if err != nil {
			return nil, err
		}
		conds, args = append(conds, c), append(args, a...)
	}
	for _, k := range []string{"raised", "met"} {
		if v, ok := f[k]; ok {
			c, a, err := monthRange(k, k+"_ms", v)
			if err != nil {
				return nil, err
			}
			conds, args = append(conds, c), append(args, a...)
		}
	}
	ns, err := e.needs(strings.Join(conds, " AND "), args...)
	if err != nil {
		return nil, err
	}
	files, err := e.fileCounts()
	if err != nil {
		return nil, err
	}
	t := Table{Name: "needs", Title: label(e.lang, "page.need-list"),
		Columns: []Column{e.col("id", false), e.col("village", false), e.col("household", false), e.col("category", false),
			e.col("summary", false), e.col("status", false), e.col("raised_on", false), e.col("met_on", false), e.col("age_days", true),
			e.col("files", true)}}
	for _, n := range ns {
		end := e.now
		if n.met > 0 {
			end = n.met
		}
		t.Rows = append(t.Rows, []Cell{txt(n.id), txt(e.unitName(n.village)), txt(n.household), txt(nv(e.lang, "category", n.category)),
			txt(n.summary), txt(nv(e.lang, "status", n.status)), txt(dayOf(n.raised)), txt(dayOf(n.met)), days(float64(end-n.raised) / dayMs),
			filesCell(files, n.id)})
	}
	return &Result{Title: e.title("need-list", false), Tables: []Table{t}}, nil
}

func projectsPage(e *env) (*Result, error) {
	if err := e.noGrid("projects"); err != nil {
		return nil, err
	}
	sc, args := e.scope("", "")
	col := e.groupCol()
	rows, err := e.db.QueryContext(e.ctx, `SELECT `+col+`, status, count(*) FROM projects WHERE voided = 0 AND `+sc+` GROUP BY 1, 2`, args...)
	if err != nil {
		return nil, fmt.Errorf("report: projects: %w", err)
	}
	defer rows.Close()
	cnt := map[[2]string]int64{}
	for rows.Next() {
		var g, s string
		var n int64
		if err := rows.Scan(&g, &s, &n); err != nil {
			return nil, err
		}
		for _, k := range [][2]string{{g, s}, {g, ""}, {"", s}, {"", ""}} {
			cnt[k] += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	t := Table{Name: "projects-by-status", Title: label(e.lang, "table.projects-status"), Columns: []Column{e.col("unit", false)}}
	for _, s := range projectStatuses {
		t.Columns = append(t.Columns, Column{Key: s, Label: domain.ValueLabel(e.lang, pb.Kind_KIND_PROJECT, "status", s), Numeric: true})
	}
	t.Columns = append(t.Columns, e.col("total", true))
	row := func(name, id, nameLink string) []Cell {
		r := []Cell{txtLink(name, nameLink)}
		for _, s := range projectStatuses {
			r = append(r, num(cnt[[2]string{id, s}], link("project-list", "status", s, "unit", id)))
		}
		return append(r, num(cnt[[2]string{id, ""}], link("project-list", "unit", id)))
	}
	for _, g := range e.groups() {
		t.Rows = append(t.Rows, row(g.Name, g.ID, link("projects", "unit", g.ID)))
	}
	total := row(label(e.lang, "col.total"), "", "")
	u := e.unitParam()
	for i, s := range projectStatuses {
		total[i+1].Link = link("project-list", "status", s, "unit", u)
	}
	total[len(total)-1].Link = link("project-list", "unit", u)
	t.Rows = append(t.Rows, total)
	e.withRegion(&t, e.groups())
	return &Result{Title: e.title("projects", false), Tables: []Table{t}}, nil
}

func projectListPage(e *env) (*Result, error) {
	if err := e.noGrid("projects"); err != nil {
		return nil, err
	}
	sc, args := e.scope("pr", "")
	if v, ok := e.filter["status"]; ok {
		if !oneOf(v, projectStatuses) {
			return nil, badFilter("status", v, strings.Join(projectStatuses, ", "))
		}
		sc += " AND pr.status = ?"
		args = append(args, v)
	}
	rows, err := e.db.QueryContext(e.ctx, `SELECT pr.id, pr.village_id, pr.title, pr.leader_id, coalesce(p.name, ''), pr.status, pr.planned_on
		FROM projects pr LEFT JOIN people p ON p.id = pr.leader_id WHERE pr.voided = 0 AND `+sc+` ORDER BY pr.village_id, pr.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("report: projects: %w", err)
	}
	defer rows.Close()
	files, err := e.fileCounts()
	if err != nil {
		return nil, err
	}
	t := Table{Name: "projects", Title: label(e.lang, "page.project-list"),
		Columns: []Column{e.col("id", false), e.col("village", false), e.col("title", false), e.col("leader", false), e.col("status", false), e.col("planned_on", false),
			e.col("files", true)}}
	for rows.Next() {
		var id, v, title, lid, lname, st, planned string
		if err := rows.Scan(&id, &v, &title, &lid, &lname, &st, &planned); err != nil {
			return nil, err
		}
		t.Rows = append(t.Rows, []Cell{txt(id), txt(e.unitName(v)), txt(title), txt(nameOr(lname, lid)),
			txt(domain.ValueLabel(e.lang, pb.Kind_KIND_PROJECT, "status", st)), txt(planned), filesCell(files, id)})
	}
	return &Result{Title: e.title("project-list", false), Tables: []Table{t}}, rows.Err()
}

// eventCols are the columns of the events page: a type, or a service
// request's way of handling.
var eventCols = []struct{ key, typ, mode string }{
	{"meeting", "meeting", ""}, {"party_day", "party_day", ""}, {"service_request", "service_request", ""},
	{"direct", "service_request", "direct"}, {"proxy", "service_request", "proxy"}, {"appointment", "service_request", "appointment"},
}

// villages are the villages under the query's unit, in scope.
func (e *env) villages() []*unit {
	var out []*unit
	for _, u := range e.units {
		if u.Kind != "village" || e.q.Town != "" && u.Town != e.q.Town {
			continue
		}
		if e.unit == nil || e.unit.Kind == "town" && u.Town == e.unit.ID || e.unit.ID == u.ID {
			out = append(out, u)
		}
	}
	sortUnits(out)
	return out
}

func eventsPage(e *env) (*Result, error) {
	if err := e.noGrid("events"); err != nil {
		return nil, err
	}
	res := &Result{Title: e.title("events", true)}
	months := lastMonths(e.month, 12)
	sc, args := e.scope("", "")
	rows, err := e.db.QueryContext(e.ctx, `SELECT village_id, month, type, service_mode, count(*) FROM events
		WHERE voided = 0 AND month >= ? AND month <= ? AND `+sc+` GROUP BY 1, 2, 3, 4`, append([]any{months[0], e.month}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("report: events: %w", err)
	}
	defer rows.Close()
	cnt := map[[3]string]int64{} // village|"" , month, column key
	for rows.Next() {
		var v, m, typ, mode string
		var n int64
		if err := rows.Scan(&v, &m, &typ, &mode, &n); err != nil {
			return nil, err
		}
		for _, c := range eventCols {
			if c.typ == typ && (c.mode == "" || c.mode == mode) {
				cnt[[3]string{v, m, c.key}] += n
				cnt[[3]string{"", m, c.key}] += n
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	cols := []Column{e.col("village", false)}
	for _, c := range eventCols {
		cols = append(cols, e.col(c.key, true))
	}
	bt := Table{Name: "events-per-branch", Title: label(e.lang, "table.events-branch") + " · " + e.month, Columns: cols}
	row := func(first Cell, v, m string, unitID string) []Cell {
		r := []Cell{first}
		for _, c := range eventCols {
			r = append(r, num(cnt[[3]string{v, m, c.key}], link("event-list", "month", m, "unit", unitID, "type", c.typ, "service_mode", c.mode)))
		}
		return r
	}
	for _, v := range e.villages() {
		bt.Rows = append(bt.Rows, row(txt(v.Name), v.ID, e.month, v.ID))
	}
	bt.Rows = append(bt.Rows, row(txt(label(e.lang, "col.total")), "", e.month, e.unitParam()))
	res.Tables = append(res.Tables, bt)
	mcols := append([]Column{e.col("month", false)}, cols[1:]...)
	mt := Table{Name: "events-per-month", Title: label(e.lang, "table.events-month"), Columns: mcols}
	ch := Chart{Title: label(e.lang, "chart.events"), Labels: months}
	for _, c := range eventCols[:3] {
		s := Series{Name: label(e.lang, "col."+c.key)}
		for _, m := range months {
			s.Values = append(s.Values, float64(cnt[[3]string{"", m, c.key}]))
		}
		ch.Series = append(ch.Series, s)
	}
	for _, m := range months {
		mt.Rows = append(mt.Rows, row(txt(m), "", m, e.unitParam()))
	}
	res.Tables = append(res.Tables, mt)
	res.Charts = append(res.Charts, ch)
	return res, nil
}

func eventListPage(e *env) (*Result, error) {
	if err := e.noGrid("events"); err != nil {
		return nil, err
	}
	sc, args := e.scope("ev", "")
	f := e.filter
	if v, ok := f["all"]; ok {
		if v != "1" {
			return nil, badFilter("all", v, "1 (every month)")
		}
	} else {
		sc += " AND ev.month = ?"
		args = append(args, e.month)
	}
	if v, ok := f["type"]; ok {
		if !oneOf(v, domain.EventTypes) {
			return nil, badFilter("type", v, strings.Join(domain.EventTypes, ", "))
		}
		sc, args = sc+" AND ev.type = ?", append(args, v)
	}
	if v, ok := f["service_mode"]; ok {
		if !oneOf(v, domain.ServiceModes) {
			return nil, badFilter("service_mode", v, strings.Join(domain.ServiceModes, ", "))
		}
		sc, args = sc+" AND ev.service_mode = ?", append(args, v)
	}
	if v, ok := f["device"]; ok {
		sc, args = sc+" AND ev.device_id = ?", append(args, v)
	}
	rows, err := e.db.QueryContext(e.ctx, `SELECT ev.id, ev.village_id, ev.type, ev.occurred_on, ev.subject, ev.service_mode, ev.author_id, coalesce(p.name, '')
		FROM events ev LEFT JOIN people p ON p.id = ev.author_id WHERE ev.voided = 0 AND `+sc+` ORDER BY ev.occurred_on, ev.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("report: events: %w", err)
	}
	defer rows.Close()
	t := Table{Name: "events", Title: label(e.lang, "page.event-list"),
		Columns: []Column{e.col("id", false), e.col("village", false), e.col("type", false), e.col("occurred_on", false),
			e.col("subject", false), e.col("service_mode", false), e.col("author", false)}}
	for rows.Next() {
		var id, v, typ, on, subj, mode, aid, aname string
		if err := rows.Scan(&id, &v, &typ, &on, &subj, &mode, &aid, &aname); err != nil {
			return nil, err
		}
		t.Rows = append(t.Rows, []Cell{txt(id), txt(e.unitName(v)), txt(domain.ValueLabel(e.lang, pb.Kind_KIND_EVENT, "type", typ)), txt(on), txt(subj),
			txt(domain.ValueLabel(e.lang, pb.Kind_KIND_EVENT, "service_mode", mode)), txt(nameOr(aname, aid))})
	}
	return &Result{Title: e.title("event-list", !has(f, "all")), Tables: []Table{t}}, rows.Err()
}

func has(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}
