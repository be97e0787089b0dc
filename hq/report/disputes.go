package report

import (
	"fmt"
	"sort"
	"strings"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// openDisputeStatuses are the statuses of a dispute not yet settled.
var openDisputeStatuses = []string{"open", "mediating"}

var disputeFilters = map[string]string{
	"open":     "1 (open or mediating)",
	"status":   strings.Join(domain.DisputeStatuses, ", "),
	"category": strings.Join(domain.DisputeCategories, ", "),
	"age":      "0-7, 8-30, 31-90 or 90+ (days open)",
	"settled":  "YYYY-MM (settled that month)",
	"level":    strings.Join(domain.DisputeLevels, ", "),
}

func dv(lang, field, value string) string {
	return domain.ValueLabel(lang, pb.Kind_KIND_DISPUTE, field, value)
}

type disputeRow struct {
	id, village, town, category, title, status, result, level string
	opened, settled                                           int64
}

// disputes reads the non-voided disputes in scope matching cond.
func (e *env) disputes(cond string, args ...any) ([]disputeRow, error) {
	sc, sargs := e.scope("", "")
	rows, err := e.db.QueryContext(e.ctx, `SELECT id, village_id, town_id, category, title, status, result, level, opened_ms, settled_ms
		FROM disputes WHERE voided = 0 AND `+sc+` AND (`+cond+`) ORDER BY opened_ms, id`, append(sargs, args...)...)
	if err != nil {
		return nil, fmt.Errorf("report: disputes: %w", err)
	}
	defer rows.Close()
	var out []disputeRow
	for rows.Next() {
		var d disputeRow
		if err := rows.Scan(&d.id, &d.village, &d.town, &d.category, &d.title, &d.status, &d.result, &d.level, &d.opened, &d.settled); err != nil {
			return nil, fmt.Errorf("report: disputes: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// aged is one open case: its row key and since when it is open.
type aged struct {
	key   string
	since int64
}

// ageTable counts open cases by a row key × age band, with totals.
func (e *env) ageTable(name, title, rowCol string, rowKeys []string, rowLabel func(string) string,
	items []aged, lnk func(row, age string) string) Table {
	t := Table{Name: name, Title: title, Columns: []Column{e.col(rowCol, false)}}
	for _, b := range ageBands {
		t.Columns = append(t.Columns, Column{Key: "age_" + b.Key, Label: label(e.lang, "col.age."+b.Key), Numeric: true})
	}
	t.Columns = append(t.Columns, e.col("total", true))
	count := map[[2]string]int64{}
	for _, it := range items {
		a := ageOf(e.now, it.since)
		count[[2]string{it.key, a}]++
		count[[2]string{it.key, ""}]++
		count[[2]string{"", a}]++
		count[[2]string{"", ""}]++
	}
	for _, k := range append(rowKeys, "") {
		name := label(e.lang, "col.total")
		if k != "" {
			name = rowLabel(k)
		}
		row := []Cell{txt(name)}
		for _, b := range ageBands {
			row = append(row, num(count[[2]string{k, b.Key}], lnk(k, b.Key)))
		}
		row = append(row, num(count[[2]string{k, ""}], lnk(k, "")))
		t.Rows = append(t.Rows, row)
	}
	return t
}

func disputesPage(e *env) (*Result, error) {
	if err := e.noGrid("disputes"); err != nil {
		return nil, err
	}
	res := &Result{Title: e.title("disputes", true)}
	u := e.unitParam()
	open, err := e.disputes(`status IN ('open', 'mediating')`)
	if err != nil {
		return nil, err
	}
	var byCat, byStatus []aged
	for _, d := range open {
		byCat = append(byCat, aged{d.category, d.opened})
		byStatus = append(byStatus, aged{d.status, d.opened})
	}
	res.Tables = append(res.Tables,
		e.ageTable("open-by-age-category", label(e.lang, "table.open-age"), "category", domain.DisputeCategories,
			func(k string) string { return dv(e.lang, "category", k) }, byCat,
			func(k, a string) string { return link("dispute-list", "open", "1", "category", k, "age", a, "unit", u) }),
		e.ageTable("open-by-age-status", label(e.lang, "table.open-status"), "status", openDisputeStatuses,
			func(k string) string { return dv(e.lang, "status", k) }, byStatus,
			func(k, a string) string { return link("dispute-list", "open", "1", "status", k, "age", a, "unit", u) }))

	// Settled this month, and the share settled in the village.
	settled, err := e.disputes(`settled_ms >= ? AND settled_ms < ?`, e.start, e.end)
	if err != nil {
		return nil, err
	}
	col := e.groupCol()
	st := Table{Name: "settled-in-village", Title: label(e.lang, "table.settled-village") + " · " + e.month,
		Columns: []Column{e.col("unit", false), e.col("settled", true), e.col("settled_village", true), e.col("share", true)}}
	cnt := map[string][2]int64{}
	for _, d := range settled {
		g := d.town
		if col == "village_id" {
			g = d.village
		}
		c := cnt[g]
		c[0]++
		if d.level == "village" {
			c[1]++
		}
		cnt[g] = c
		t := cnt[""]
		t[0]++
		if d.level == "village" {
			t[1]++
		}
		cnt[""] = t
	}
	for _, g := range e.groups() {
		c := cnt[g.ID]
		st.Rows = append(st.Rows, []Cell{txtLink(g.Name, link("disputes", "month", e.month, "unit", g.ID)),
			num(c[0], link("dispute-list", "settled", e.month, "unit", g.ID)),
			num(c[1], link("dispute-list", "settled", e.month, "unit", g.ID, "level", "village")), share(c[1], c[0])})
	}
	c := cnt[""]
	st.Rows = append(st.Rows, []Cell{txt(label(e.lang, "col.total")), num(c[0], link("dispute-list", "settled", e.month, "unit", u)),
		num(c[1], link("dispute-list", "settled", e.month, "unit", u, "level", "village")), share(c[1], c[0])})
	e.withRegion(&st, e.groups())
	res.Tables = append(res.Tables, st)

	// Time to settle, per month.
	months := lastMonths(e.month, 12)
	from, _ := monthBounds(months[0])
	year, err := e.disputes(`settled_ms >= ? AND settled_ms < ?`, from, e.end)
	if err != nil {
		return nil, err
	}
	per := map[string][]float64{}
	for _, d := range year {
		m := monthOf(d.settled)
		per[m] = append(per[m], float64(d.settled-d.opened)/dayMs)
	}
	tt := Table{Name: "time-to-settle", Title: label(e.lang, "table.settle-time"),
		Columns: []Column{e.col("month", false), e.col("settled", true), e.col("median_days", true), e.col("mean_days", true)}}
	ch := Chart{Title: label(e.lang, "chart.settle-time"), Labels: months,
		Series: []Series{{Name: label(e.lang, "col.median_days")}, {Name: label(e.lang, "col.mean_days")}}}
	for _, m := range months {
		ds := per[m]
		med, mean := medianMean(ds)
		row := []Cell{txt(m), num(int64(len(ds)), link("dispute-list", "settled", m, "unit", u))}
		if len(ds) == 0 {
			row = append(row, Cell{Text: "—"}, Cell{Text: "—"})
		} else {
			row = append(row, days(med), days(mean))
		}
		tt.Rows = append(tt.Rows, row)
		ch.Series[0].Values = append(ch.Series[0].Values, chartValue(row[2]))
		ch.Series[1].Values = append(ch.Series[1].Values, chartValue(row[3]))
	}
	res.Tables = append(res.Tables, tt)
	res.Charts = append(res.Charts, ch)
	return res, nil
}

// medianMean of xs (0, 0 when empty).
func medianMean(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, sum / float64(n)
}

// ageCond is the SQL condition for an age band of column col at now.
func (e *env) ageCond(col, band string) (string, []any, error) {
	lo, hi, ok := ageBand(band)
	if !ok {
		return "", nil, badFilter("age", band, ageKeys())
	}
	// age in days d = (now - t) / day: lo <= d <= hi  <=>  now - (hi+1)*day < t <= now - lo*day
	if hi < 0 {
		return col + " <= ?", []any{e.now - lo*dayMs}, nil
	}
	if lo == 0 {
		// a time after now counts as new
		return col + " > ?", []any{e.now - (hi+1)*dayMs}, nil
	}
	return col + " <= ? AND " + col + " > ?", []any{e.now - lo*dayMs, e.now - (hi+1)*dayMs}, nil
}

// monthRange is the SQL condition for a time column in month m.
func monthRange(k, col, m string) (string, []any, error) {
	if !monthRe.MatchString(m) {
		return "", nil, badFilter(k, m, "YYYY-MM")
	}
	s, en := monthBounds(m)
	return col + " >= ? AND " + col + " < ?", []any{s, en}, nil
}

func disputeListPage(e *env) (*Result, error) {
	if err := e.noGrid("disputes"); err != nil {
		return nil, err
	}
	conds := []string{"1 = 1"}
	var args []any
	f := e.filter
	if v, ok := f["open"]; ok {
		if v != "1" {
			return nil, badFilter("open", v, "1")
		}
		conds = append(conds, `status IN ('open', 'mediating')`)
	}
	var err error
	if conds, args, err = enumFilter(f, "status", domain.DisputeStatuses, disputeFilters, conds, args); err != nil {
		return nil, err
	}
	if conds, args, err = enumFilter(f, "category", domain.DisputeCategories, disputeFilters, conds, args); err != nil {
		return nil, err
	}
	if conds, args, err = enumFilter(f, "level", domain.DisputeLevels, disputeFilters, conds, args); err != nil {
		return nil, err
	}
	if v, ok := f["age"]; ok {
		c, a, err := e.ageCond("opened_ms", v)
		if err != nil {
			return nil, err
		}
		conds, args = append(conds, c), append(args, a...)
	}
	if v, ok := f["settled"]; ok {
		c, a, err := monthRange("settled", "settled_ms", v)
		if err != nil {
			return nil, err
		}
		conds, args = append(conds, c), append(args, a...)
	}
	ds, err := e.disputes(strings.Join(conds, " AND "), args...)
	if err != nil {
		return nil, err
	}
	files, err := e.fileCounts()
	if err != nil {
		return nil, err
	}
	t := Table{Name: "disputes", Title: label(e.lang, "page.dispute-list"),
		Columns: []Column{e.col("id", false), e.col("village", false), e.col("category", false), e.col("title", false),
			e.col("status", false), e.col("result", false), e.col("level", false), e.col("opened", false), e.col("settled_on", false), e.col("age_days", true),
			e.col("files", true)}}
	for _, d := range ds {
		end := e.now
		if d.settled > 0 {
			end = d.settled
		}
		t.Rows = append(t.Rows, []Cell{txt(d.id), txt(e.unitName(d.village)), txt(dv(e.lang, "category", d.category)), txt(d.title),
			txt(dv(e.lang, "status", d.status)), txt(dv(e.lang, "result", d.result)), txt(dv(e.lang, "level", d.level)),
			txt(dayOf(d.opened)), txt(dayOf(d.settled)), days(float64(end-d.opened) / dayMs), filesCell(files, d.id)})
	}
	return &Result{Title: e.title("dispute-list", false), Tables: []Table{t}}, nil
}
