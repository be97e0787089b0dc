package report_test

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/hq/report"
)

type disputeFix struct {
	id, village, town, category, status, level string
	opened, settled                            int64
	voided                                     bool
}

type needFix struct {
	id, village, town, category, status string
	raised, met                         int64
	voided                              bool
}

type eventFix struct {
	id, village, town, typ, mode, month string
	voided                              bool
}

type recordsFix struct {
	c        *city
	disputes []disputeFix
	needs    []needFix
	events   []eventFix
	projects map[[2]string]int // village, status
}

func makeRecords(t testing.TB, db *sql.DB, c *city, seed uint64) *recordsFix {
	r := rand.New(rand.NewPCG(seed, 2))
	f := &recordsFix{c: c, projects: map[[2]string]int{}}
	var villages []cityUnit
	for _, u := range c.units {
		if u.kind == "village" {
			villages = append(villages, u)
		}
	}
	past := func() int64 { return c.now - int64(r.IntN(400*24))*3600000 }
	for i := range 150 {
		v := villages[r.IntN(len(villages))]
		d := disputeFix{id: fmt.Sprintf("D%03d", i), village: v.id, town: v.town, category: domain.DisputeCategories[r.IntN(5)],
			opened: past(), voided: r.IntN(15) == 0}
		switch r.IntN(3) {
		case 0:
			d.status = []string{"open", "mediating"}[r.IntN(2)]
		default:
			d.status = domain.DisputeResults[r.IntN(4)]
			d.level = domain.DisputeLevels[r.IntN(3)]
			d.settled = d.opened + int64(r.IntN(60*24))*3600000
			if d.settled > c.now {
				d.settled = c.now - 1000
			}
			if r.IntN(3) == 0 {
				d.status = "closed"
			}
		}
		f.disputes = append(f.disputes, d)
		ins(t, db, "disputes", map[string]any{"id": d.id, "village_id": d.village, "town_id": d.town, "category": d.category, "title": "纠纷" + d.id,
			"status": d.status, "level": d.level, "opened_ms": d.opened, "settled_ms": d.settled, "voided": b2i(d.voided), "version": 1})
	}
	for i := range 150 {
		v := villages[r.IntN(len(villages))]
		n := needFix{id: fmt.Sprintf("N%03d", i), village: v.id, town: v.town, category: domain.NeedCategories[r.IntN(8)],
			status: domain.NeedStatuses[r.IntN(4)], raised: past(), voided: r.IntN(15) == 0}
		if n.status == "resolved" {
			n.met = min(n.raised+int64(r.IntN(40*24))*3600000, c.now-1000)
		}
		f.needs = append(f.needs, n)
		ins(t, db, "needs", map[string]any{"id": n.id, "village_id": n.village, "town_id": n.town, "category": n.category, "summary": "诉求" + n.id,
			"status": n.status, "raised_ms": n.raised, "met_ms": n.met, "voided": b2i(n.voided), "version": 1})
	}
	for i := range 300 {
		v := villages[r.IntN(len(villages))]
		e := eventFix{id: fmt.Sprintf("E%03d", i), village: v.id, town: v.town, typ: domain.EventTypes[r.IntN(5)], voided: r.IntN(15) == 0}
		if e.typ == "service_request" {
			e.mode = domain.ServiceModes[r.IntN(3)]
		}
		day := time.UnixMilli(past()).In(china).Format("2006-01-02")
		e.month = day[:7]
		f.events = append(f.events, e)
		ins(t, db, "events", map[string]any{"id": e.id, "village_id": e.village, "town_id": e.town, "type": e.typ, "service_mode": e.mode,
			"occurred_on": day, "month": e.month, "subject": "事项", "voided": b2i(e.voided), "version": 1, "device_id": "dev-x"})
	}
	for i := range 80 {
		v := villages[r.IntN(len(villages))]
		st := domain.ProjectStatuses[r.IntN(4)]
		voided := r.IntN(10) == 0
		if !voided {
			f.projects[[2]string{v.id, st}]++
		}
		ins(t, db, "projects", map[string]any{"id": fmt.Sprintf("J%03d", i), "village_id": v.id, "town_id": v.town, "title": "项目", "status": st,
			"leader_id": "P-" + v.id + "G1-0", "voided": b2i(voided), "version": 1})
	}
	return f
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func ageBand(now, since int64) string {
	d := (now - since) / 86400000
	switch {
	case d <= 7:
		return "0-7"
	case d <= 30:
		return "8-30"
	case d <= 90:
		return "31-90"
	}
	return "90+"
}

func monthOfMs(ms int64) string { return time.UnixMilli(ms).In(china).Format("2006-01") }

// cellsByLabel maps a table's rows by their first cell's text.
func cellsByLabel(tb report.Table) map[string][]report.Cell {
	out := map[string][]report.Cell{}
	for _, r := range tb.Rows {
		out[r[0].Text] = r
	}
	return out
}

func TestDisputesNeedsProjectsEvents(t *testing.T) {
	db := openModel(t)
	c := makeCity(t, db, 11)
	f := makeRecords(t, db, c, 11)
	for _, scope := range []struct{ town, unit string }{{"", ""}, {"", "T1"}, {"T2", ""}, {"", "T2V2"}} {
		in := func(village, town string) bool {
			return (scope.town == "" || town == scope.town) && (scope.unit == "" || town == scope.unit || village == scope.unit)
		}
		q := report.Query{Town: scope.town, Unit: scope.unit, Month: "2026-11", NowMs: c.now, Lang: "en"}
		start, end := monthStart(t, "2026-11"), monthStart(t, "2026-12")

		// disputes
		res := page(t, db, "disputes", q)
		openCat := map[[2]string]int{}
		settled, village := 0, 0
		perMonth := map[string][]float64{}
		for _, d := range f.disputes {
			if d.voided || !in(d.village, d.town) {
				continue
			}
			if d.status == "open" || d.status == "mediating" {
				openCat[[2]string{d.category, ageBand(c.now, d.opened)}]++
				openCat[[2]string{d.category, ""}]++
			}
			if d.settled >= start && d.settled < end {
				settled++
				if d.level == "village" {
					village++
				}
			}
			if d.settled > 0 {
				perMonth[monthOfMs(d.settled)] = append(perMonth[monthOfMs(d.settled)], float64(d.settled-d.opened)/86400000)
			}
		}
		rows := cellsByLabel(table(t, res, "open-by-age-category"))
		for _, cat := range domain.DisputeCategories {
			row := rows[cat] // English labels read as the value
			for i, b := range []string{"0-7", "8-30", "31-90", "90+", ""} {
				if int(row[i+1].Num) != openCat[[2]string{cat, b}] {
					t.Errorf("%+v open %s %q: %v, want %d", scope, cat, b, row[i+1].Num, openCat[[2]string{cat, b}])
				}
			}
		}
		sv := table(t, res, "settled-in-village")
		total := sv.Rows[len(sv.Rows)-1]
		if int(total[1].Num) != settled || int(total[2].Num) != village {
			t.Errorf("%+v settled %v in the village %v, want %d %d", scope, total[1].Num, total[2].Num, settled, village)
		}
		for _, row := range table(t, res, "time-to-settle").Rows {
			ds := perMonth[row[0].Text]
			if int(row[1].Num) != len(ds) {
				t.Errorf("%+v %s: settled %v, want %d", scope, row[0].Text, row[1].Num, len(ds))
				continue
			}
			if len(ds) == 0 {
				continue
			}
			sort.Float64s(ds)
			med := ds[len(ds)/2]
			if len(ds)%2 == 0 {
				med = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
			}
			var sum float64
			for _, x := range ds {
				sum += x
			}
			if row[2].Text != fmt.Sprintf("%.1f", med) || row[3].Text != fmt.Sprintf("%.1f", sum/float64(len(ds))) {
				t.Errorf("%+v %s: median %s mean %s, want %.1f %.1f", scope, row[0].Text, row[2].Text, row[3].Text, med, sum/float64(len(ds)))
			}
		}
		checkLinks(t, db, q, res)

		// needs
		res = page(t, db, "needs", q)
		raised, met := map[string]int{}, map[string]int{}
		openN := map[[2]string]int{}
		for _, n := range f.needs {
			if n.voided || !in(n.village, n.town) {
				continue
			}
			raised[monthOfMs(n.raised)]++
			if n.met > 0 {
				met[monthOfMs(n.met)]++
			}
			if n.status != "resolved" {
				openN[[2]string{n.category, ageBand(c.now, n.raised)}]++
			}
		}
		for _, row := range table(t, res, "needs-per-month").Rows {
			if int(row[1].Num) != raised[row[0].Text] || int(row[2].Num) != met[row[0].Text] {
				t.Errorf("%+v needs %s: %v raised %v met, want %d %d", scope, row[0].Text, row[1].Num, row[2].Num, raised[row[0].Text], met[row[0].Text])
			}
		}
		rows = cellsByLabel(table(t, res, "needs-open-by-age"))
		for _, cat := range domain.NeedCategories {
			row := rows[strings.ReplaceAll(cat, "_", " ")]
			for i, b := range []string{"0-7", "8-30", "31-90", "90+"} {
				if int(row[i+1].Num) != openN[[2]string{cat, b}] {
					t.Errorf("%+v open need %s %s: %v, want %d", scope, cat, b, row[i+1].Num, openN[[2]string{cat, b}])
				}
			}
		}
		checkLinks(t, db, q, res)

		// projects
		res = page(t, db, "projects", q)
		pt := table(t, res, "projects-by-status")
		tot := pt.Rows[len(pt.Rows)-1]
		for i, st := range domain.ProjectStatuses {
			want := 0
			for k, n := range f.projects {
				if k[1] == st && in(k[0], c.byID[k[0]].town) {
					want += n
				}
			}
			if int(tot[i+1].Num) != want {
				t.Errorf("%+v projects %s: %v, want %d", scope, st, tot[i+1].Num, want)
			}
		}
		checkLinks(t, db, q, res)

		// events per branch
		res = page(t, db, "events", q)
		want := map[[2]string]int{}
		for _, e := range f.events {
			if e.voided || !in(e.village, e.town) || e.month != "2026-11" {
				continue
			}
			want[[2]string{e.village, e.typ}]++
			if e.mode != "" {
				want[[2]string{e.village, e.mode}]++
			}
		}
		et := table(t, res, "events-per-branch")
		for _, row := range et.Rows[:len(et.Rows)-1] {
			var vid string
			for _, u := range c.units {
				if u.name == row[0].Text && u.kind == "village" {
					vid = u.id
				}
			}
			if !in(vid, c.byID[vid].town) {
				t.Errorf("%+v events: village %s out of scope listed", scope, row[0].Text)
			}
			for i, k := range []string{"meeting", "party_day", "service_request", "direct", "proxy", "appointment"} {
				if int(row[i+1].Num) != want[[2]string{vid, k}] {
					t.Errorf("%+v events %s %s: %v, want %d", scope, vid, k, row[i+1].Num, want[[2]string{vid, k}])
				}
			}
		}
		checkLinks(t, db, q, res)
	}
}
