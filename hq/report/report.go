package report

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Query is what a page is asked for: the web page fills it from the URL
// and the signed-in person.
type Query struct {
	Lang   string            // "zh" (default) | "en"
	Town   string            // scope: a town secretary's town id; "" = the whole city (HQ)
	Month  string            // YYYY-MM; "" = the current month in China time
	Unit   string            // the unit drilled into; "" = the city
	Filter map[string]string // the page's other URL parameters (status, category, age, kind, days...)
	NowMs  int64             // "now" (0: the clock)
}

// PageInfo names a menu page: Name in URLs, Title in the language asked.
type PageInfo struct{ Name, Title string }

// Chart is a trend the web page draws as inline SVG: one value per label
// in each series.
type Chart struct {
	Title  string
	Labels []string
	Series []Series
}

// Series is one line of a chart.
type Series struct {
	Name   string
	Values []float64
}

// Result is one page: its tables and charts.
type Result struct {
	Title  string
	Tables []Table
	Charts []Chart
}

// Errors of Page, each wrapped with a message saying which parameter and
// what is allowed.
var (
	// ErrOutOfScope: the query names a unit, household or other row outside
	// the asker's town.
	ErrOutOfScope = errors.New("out of scope")
	// ErrNotFound: no such page, unit or row.
	ErrNotFound = errors.New("not found")
	// ErrBadQuery: a parameter is malformed or not allowed on the page.
	ErrBadQuery = errors.New("bad query")
)

// China is the time zone months and days are counted in.
var China = time.FixedZone("UTC+8", 8*3600)

const dayMs = 24 * 3600 * 1000

// menu is the menu, in order.
var menu = []string{"coverage", "disputes", "needs", "projects", "events", "devices", "chains"}

// Pages returns the menu, in order, titled in lang.
func Pages(lang string) []PageInfo {
	out := make([]PageInfo, len(menu))
	for i, n := range menu {
		out[i] = PageInfo{Name: n, Title: label(lang, "page."+n)}
	}
	return out
}

// pageFunc builds one page.
type pageFunc func(e *env) (*Result, error)

// page is one page: how it is built and the filters (URL parameters
// besides lang, month and unit) it takes.
type page struct {
	build   pageFunc
	filters map[string]string // parameter -> what is allowed (for errors); values checked by check
}

var pages map[string]page

func init() {
	pages = map[string]page{
		"coverage":     {build: coveragePage},
		"disputes":     {build: disputesPage},
		"needs":        {build: needsPage},
		"projects":     {build: projectsPage},
		"events":       {build: eventsPage},
		"devices":      {build: devicesPage, filters: map[string]string{"days": "a whole number of days from 1 to 3650"}},
		"chains":       {build: chainsPage, filters: map[string]string{"status": "ok or broken"}},
		"households":   {build: householdsPage, filters: map[string]string{"visited": "0 or 1", "member": "a member's id"}},
		"visits":       {build: visitsPage, filters: map[string]string{"household": "a household's id", "member": "a member's id (the visit's author)"}},
		"dispute-list": {build: disputeListPage, filters: disputeFilters},
		"need-list":    {build: needListPage, filters: needFilters},
		"project-list": {build: projectListPage, filters: map[string]string{"status": strings.Join(projectStatuses, ", ")}},
		"event-list":   {build: eventListPage, filters: map[string]string{"type": "meeting, party_day, service_request, status_change, other", "service_mode": "direct, proxy, appointment", "all": "1 (every month)", "device": "a device id"}},
		"files":        {build: filesPage, filters: map[string]string{"record": "a record's id"}},
		"device-list":  {build: deviceListPage, filters: map[string]string{"days": "a whole number of days from 1 to 3650", "pending": "1", "app_version": "a version as listed"}},
	}
}

// ignored are URL parameters the web page may pass along that are not
// filters of any page.
var ignored = map[string]bool{"lang": true, "table": true, "month": true, "unit": true, "town": true, "format": true, "region": true}

// env is one request: the query checked, the month's bounds and the unit.
type env struct {
	ctx   context.Context
	db    *sql.DB
	q     Query
	lang  string
	month string // YYYY-MM
	start int64  // the month's first ms (China time)
	end   int64  // the next month's first ms
	at    int64  // the moment links are read at: the month's end, or now for the current month
	now   int64
	unit  *unit // nil: the city
	units map[string]*unit
	// region: the region asked for (?region=, any page): only its towns;
	// regions: the regions the model's units are in, sorted ("" aside).
	region  string
	regions []string
	filter  map[string]string
	// currentMonth is the month of now.
	currentMonth string
	// kept: whether the model keeps the coverage tables (0: not looked
	// yet, 1 yes, -1 no); usable: months read from them (coverage.go).
	kept   int
	usable map[string]bool
}

// unit is one row of units.
type unit struct {
	ID, Kind, Parent, Name, Village, Town string
	Region                                string // the region whose syncd holds it ("" for none)
}

var monthRe = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])$`)

// Page builds the named page (a menu page or a row page that numbers link
// to) for q.
func Page(ctx context.Context, db *sql.DB, name string, q Query) (*Result, error) {
	p, ok := pages[name]
	if !ok {
		return nil, fmt.Errorf("%w: page %q: want one of %s", ErrNotFound, name, strings.Join(pageNames(), ", "))
	}
	e := &env{ctx: ctx, db: db, q: q, lang: "zh", now: q.NowMs, filter: map[string]string{}}
	switch q.Lang {
	case "", "zh":
	case "en":
		e.lang = "en"
	default:
		return nil, fmt.Errorf("%w: lang %q: want zh or en", ErrBadQuery, q.Lang)
	}
	if e.now == 0 {
		e.now = time.Now().UnixMilli()
	}
	cur := time.UnixMilli(e.now).In(China).Format("2006-01")
	e.month = q.Month
	if e.month == "" {
		e.month = cur
	}
	if !monthRe.MatchString(e.month) {
		return nil, fmt.Errorf("%w: month %q: want YYYY-MM, e.g. %s", ErrBadQuery, q.Month, cur)
	}
	if e.month > cur {
		return nil, fmt.Errorf("%w: month %s: after the current month %s", ErrBadQuery, e.month, cur)
	}
	e.start, e.end = monthBounds(e.month)
	e.at = e.end - 1
	if e.now < e.at {
		e.at = e.now
	}
	for k, v := range q.Filter {
		if ignored[k] {
			continue
		}
		if _, ok := p.filters[k]; !ok {
			return nil, fmt.Errorf("%w: parameter %q is not taken by page %s; it takes: %s", ErrBadQuery, k, name, allowedList(p.filters))
		}
		e.filter[k] = v
	}
	e.currentMonth = cur
	if err := e.loadUnits(); err != nil {
		return nil, err
	}
	if q.Town != "" {
		t := e.units[q.Town]
		if t == nil || t.Kind != "town" {
			return nil, fmt.Errorf("%w: town %q: no such town", ErrNotFound, q.Town)
		}
	}
	if r, ok := q.Filter["region"]; ok {
		if !oneOf(r, e.regions) {
			held := strings.Join(e.regions, ", ")
			if held == "" {
				held = "none (one syncd without regions)"
			}
			return nil, fmt.Errorf("%w: region %q: no such region; the model holds: %s", ErrNotFound, r, held)
		}
		e.region = r
	}
	if q.Unit != "" {
		u := e.units[q.Unit]
		if u == nil {
			return nil, fmt.Errorf("%w: unit %q: no such town, village or grid", ErrNotFound, q.Unit)
		}
		if q.Town != "" && u.Town != q.Town {
			return nil, fmt.Errorf("%w: unit %s (%s) is not in your town %s", ErrOutOfScope, u.ID, u.Name, e.units[q.Town].Name)
		}
		if e.region != "" && u.Region != e.region {
			return nil, fmt.Errorf("%w: unit %s (%s) is in region %q, not %q", ErrNotFound, u.ID, u.Name, u.Region, e.region)
		}
		e.unit = u
	}
	res, err := p.build(e)
	if err == nil && e.region != "" {
		keepRegion(res, e.region)
	}
	return res, err
}

// keepRegion adds region=r to every link of res that lacks one, so that
// a page asked for one region leads to that region's rows only.
func keepRegion(res *Result, r string) {
	for _, t := range res.Tables {
		for _, row := range t.Rows {
			for i := range row {
				u, err := url.Parse(row[i].Link)
				if err != nil || !strings.HasPrefix(u.Path, "/p/") {
					continue
				}
				v := u.Query()
				if v.Get("region") != "" {
					continue
				}
				v.Set("region", r)
				row[i].Link = u.Path + "?" + v.Encode()
			}
		}
	}
}

func pageNames() []string {
	out := make([]string, 0, len(pages))
	for n := range pages {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func allowedList(f map[string]string) string {
	if len(f) == 0 {
		return "no other parameters (only month and unit)"
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " (" + f[k] + ")"
	}
	return strings.Join(parts, "; ")
}

// monthBounds returns the first ms of month m (YYYY-MM, China time) and of
// the next.
func monthBounds(m string) (int64, int64) {
	t, _ := time.ParseInLocation("2006-01", m, China)
	return t.UnixMilli(), t.AddDate(0, 1, 0).UnixMilli()
}

// lastMonths returns the n months ending with m, oldest first.
func lastMonths(m string, n int) []string {
	t, _ := time.ParseInLocation("2006-01", m, China)
	out := make([]string, n)
	for i := range n {
		out[i] = t.AddDate(0, i-n+1, 0).Format("2006-01")
	}
	return out
}

// monthOf is the month (China time) of ms.
func monthOf(ms int64) string { return time.UnixMilli(ms).In(China).Format("2006-01") }

// dayOf is the day (China time) of ms.
func dayOf(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).In(China).Format("2006-01-02")
}

func (e *env) loadUnits() error {
	// A database made before regions (package hq's migration 4) has no
	// region column: every unit is of no region.
	region := "region"
	var has int
	if err := e.db.QueryRowContext(e.ctx, `SELECT count(*) FROM pragma_table_info('units') WHERE name = 'region'`).Scan(&has); err != nil {
		return fmt.Errorf("report: units: %w", err)
	}
	if has == 0 {
		region = "''"
	}
	rows, err := e.db.QueryContext(e.ctx, `SELECT id, kind, parent_id, name, village_id, town_id, `+region+` FROM units`)
	if err != nil {
		return fmt.Errorf("report: units: %w", err)
	}
	defer rows.Close()
	e.units = map[string]*unit{}
	regions := map[string]bool{}
	defer func() {
		e.regions = e.regions[:0]
		for r := range regions {
			e.regions = append(e.regions, r)
		}
		sort.Strings(e.regions)
	}()
	for rows.Next() {
		u := &unit{}
		if err := rows.Scan(&u.ID, &u.Kind, &u.Parent, &u.Name, &u.Village, &u.Town, &u.Region); err != nil {
			return fmt.Errorf("report: units: %w", err)
		}
		if u.Kind == "town" && u.Town == "" {
			u.Town = u.ID
		}
		if u.Kind == "village" && u.Village == "" {
			u.Village = u.ID
		}
		if u.Region != "" {
			regions[u.Region] = true
		}
		e.units[u.ID] = u
	}
	return rows.Err()
}

// unitName names a unit id ("" if unknown, then the id).
func (e *env) unitName(id string) string {
	if u := e.units[id]; u != nil {
		return u.Name
	}
	return id
}

// children lists the units one level below e.unit (towns of the city;
// villages of a town; grids of a village), in scope, sorted by name then id.
func (e *env) children() []*unit {
	var out []*unit
	for _, u := range e.units {
		if e.q.Town != "" && u.Town != e.q.Town || e.region != "" && u.Region != e.region {
			continue
		}
		switch {
		case e.unit == nil && u.Kind == "town",
			e.unit != nil && e.unit.Kind == "town" && u.Kind == "village" && u.Town == e.unit.ID,
			e.unit != nil && e.unit.Kind == "village" && u.Kind == "grid" && u.Parent == e.unit.ID:
			out = append(out, u)
		}
	}
	sortUnits(out)
	return out
}

func sortUnits(us []*unit) {
	sort.Slice(us, func(i, j int) bool {
		if us[i].Name != us[j].Name {
			return us[i].Name < us[j].Name
		}
		return us[i].ID < us[j].ID
	})
}

// scope returns the SQL condition confining rows of a table with columns
// village_id and town_id (prefixed by alias) to the query's unit and
// town, and its arguments. A grid confines by the grid's village unless
// gridCol names the column holding a grid.
func (e *env) scope(alias, gridCol string) (string, []any) {
	p := ""
	if alias != "" {
		p = alias + "."
	}
	var conds []string
	var args []any
	if e.q.Town != "" {
		conds, args = append(conds, p+"town_id = ?"), append(args, e.q.Town)
	}
	if e.region != "" {
		conds, args = append(conds, p+"town_id IN (SELECT id FROM units WHERE kind = 'town' AND region = ?)"), append(args, e.region)
	}
	if u := e.unit; u != nil {
		switch u.Kind {
		case "town":
			conds, args = append(conds, p+"town_id = ?"), append(args, u.ID)
		case "village":
			conds, args = append(conds, p+"village_id = ?"), append(args, u.ID)
		case "grid":
			if gridCol != "" {
				conds, args = append(conds, p+gridCol+" = ?"), append(args, u.ID)
			} else {
				conds, args = append(conds, p+"village_id = ?"), append(args, u.Village)
			}
		}
	}
	if len(conds) == 0 {
		return "1 = 1", nil
	}
	return strings.Join(conds, " AND "), args
}

// noGrid refuses a grid as the unit of a page whose records are kept by
// village.
func (e *env) noGrid(what string) error {
	if e.unit != nil && e.unit.Kind == "grid" {
		return fmt.Errorf("%w: unit %s is a grid; %s are kept by village: choose its village %s or a town", ErrBadQuery, e.unit.ID, what, e.unit.Village)
	}
	return nil
}

// groupCol is the column records are grouped by for rows one level below
// e.unit: town_id at the city, village_id below.
func (e *env) groupCol() string {
	if e.unit == nil {
		return "town_id"
	}
	return "village_id"
}

// groups are the rows one level below e.unit for records kept by village:
// towns of the city, villages of a town, the village itself.
func (e *env) groups() []*unit {
	if e.unit != nil && e.unit.Kind == "village" {
		return []*unit{e.unit}
	}
	return e.children()
}

// link makes a Cell.Link: "/p/<name>?<params>", params sorted and
// URL-encoded; empty values dropped.
func link(name string, kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			v.Set(kv[i], kv[i+1])
		}
	}
	if len(v) == 0 {
		return "/p/" + name
	}
	return "/p/" + name + "?" + v.Encode()
}

// unitParam is the unit parameter for links: the unit drilled into.
func (e *env) unitParam() string {
	if e.unit == nil {
		return ""
	}
	return e.unit.ID
}

// title of a page: its name, the unit's name and the month.
func (e *env) title(page string, withMonth bool) string {
	t := label(e.lang, "page."+page)
	where := label(e.lang, "city")
	if e.unit != nil {
		where = e.unit.Name
	} else if e.q.Town != "" {
		where = e.unitName(e.q.Town)
	}
	t += " · " + where
	if e.region != "" && e.unit == nil {
		t += " · " + label(e.lang, "col.region") + " " + e.region
	}
	if withMonth {
		t += " · " + e.month
	}
	return t
}

func num(n int64, lnk string) Cell {
	return Cell{Text: strconv.FormatInt(n, 10), Num: float64(n), Link: lnk}
}

func txt(s string) Cell { return Cell{Text: s} }

func txtLink(s, lnk string) Cell { return Cell{Text: s, Link: lnk} }

// share is a/b as a percentage with one decimal ("87.5%"; Num 87.5), "—"
// when b is 0.
func share(a, b int64) Cell {
	if b == 0 {
		return Cell{Text: "—"}
	}
	t := strconv.FormatFloat(float64(a)*100/float64(b), 'f', 1, 64)
	p, _ := strconv.ParseFloat(t, 64)
	return Cell{Text: t + "%", Num: p}
}

// days formats a number of days with one decimal.
func days(d float64) Cell {
	t := strconv.FormatFloat(d, 'f', 1, 64)
	n, _ := strconv.ParseFloat(t, 64)
	return Cell{Text: t, Num: n}
}

func (e *env) col(key string, numeric bool) Column {
	return Column{Key: key, Label: label(e.lang, "col."+key), Numeric: numeric}
}

// ageBands are the bands of an open case's age in days.
var ageBands = []struct {
	Key      string
	Min, Max int64 // days, inclusive; Max -1: no upper bound
}{{"0-7", 0, 7}, {"8-30", 8, 30}, {"31-90", 31, 90}, {"90+", 91, -1}}

func ageBand(key string) (min, max int64, ok bool) {
	for _, b := range ageBands {
		if b.Key == key {
			return b.Min, b.Max, true
		}
	}
	return 0, 0, false
}

func ageKeys() string {
	k := make([]string, len(ageBands))
	for i, b := range ageBands {
		k[i] = b.Key
	}
	return strings.Join(k, ", ")
}

// ageOf is the band of an age of ms at now.
func ageOf(now, since int64) string {
	d := (now - since) / dayMs
	for _, b := range ageBands {
		if d >= b.Min && (b.Max < 0 || d <= b.Max) {
			return b.Key
		}
	}
	return ageBands[0].Key // a time in the future: new
}

// badFilter is an ErrBadQuery for parameter k.
// enumFilter adds "key = ?" to conds when the filter names key, refusing
// a value outside allowed (help: the allowed values as a person reads
// them, from the page's filter table).
func enumFilter(f map[string]string, key string, allowed []string, help map[string]string, conds []string, args []any) ([]string, []any, error) {
	v, ok := f[key]
	if !ok {
		return conds, args, nil
	}
	if !oneOf(v, allowed) {
		return conds, args, badFilter(key, v, help[key])
	}
	return append(conds, key+" = ?"), append(args, v), nil
}

func badFilter(k, v, allowed string) error {
	return fmt.Errorf("%w: %s %q: want %s", ErrBadQuery, k, v, allowed)
}

func oneOf(v string, allowed []string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

// inScope checks that a record's town is in the asker's town; ErrNotFound
// when no such record.
func (e *env) checkTown(what, id, town string, found bool) error {
	if !found {
		return fmt.Errorf("%w: %s %q: no such %s", ErrNotFound, what, id, what)
	}
	if e.q.Town != "" && town != e.q.Town {
		return fmt.Errorf("%w: %s %s is not in your town %s", ErrOutOfScope, what, id, e.unitName(e.q.Town))
	}
	return nil
}

// in returns "?, ?, ?" for n values.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// withRegion adds the region column after the first column of a table
// whose first rows are the towns of the city (the rest: totals), when the
// page is the city's and the model holds regions: each town's figures
// say which region's syncd they come from.
func (e *env) withRegion(t *Table, towns []*unit) {
	if e.unit != nil || len(e.regions) == 0 || e.region != "" {
		return
	}
	t.Columns = append(t.Columns[:1], append([]Column{e.col("region", false)}, t.Columns[1:]...)...)
	for i, row := range t.Rows {
		c := Cell{}
		if i < len(towns) && towns[i].Region != "" {
			c = txtLink(towns[i].Region, link("coverage", "month", e.month, "region", towns[i].Region))
		}
		t.Rows[i] = append(row[:1], append([]Cell{c}, row[1:]...)...)
	}
}
