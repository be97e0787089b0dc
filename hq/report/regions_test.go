package report_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/hq/report"
)

// A model over two regions: each town's row says its region (区域 /
// Region), a table sums the coverage per region, and ?region= shows one
// region's towns only, every number still opening its rows.
func TestCoverageByRegion(t *testing.T) {
	db := openModel(t)
	c := makeCity(t, db, 7)
	for _, tb := range []string{"units", "people", "households", "visits", "links"} {
		if _, err := db.Exec(`UPDATE ` + tb + ` SET region = 'xiaonan'`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`UPDATE units SET region = 'yunmeng' WHERE town_id = 'T2'`); err != nil {
		t.Fatal(err)
	}
	q := report.Query{NowMs: c.now, Lang: "en"}
	r := page(t, db, "coverage", q)
	cov := table(t, r, "coverage")
	if cov.Columns[1].Key != "region" || cov.Columns[1].Label != "Region" {
		t.Fatalf("coverage columns %+v: want the region second", cov.Columns)
	}
	got := map[string]string{}
	for _, row := range cov.Rows[:len(cov.Rows)-1] {
		got[row[0].Text] = row[1].Text
	}
	if got["白果镇"] != "xiaonan" || got["龟山镇"] != "yunmeng" {
		t.Errorf("towns' regions %v, want 白果镇 xiaonan, 龟山镇 yunmeng", got)
	}
	regs := table(t, r, "coverage-regions")
	if len(regs.Rows) != 2 || regs.Rows[0][0].Text != "xiaonan" || regs.Rows[1][0].Text != "yunmeng" {
		t.Fatalf("coverage-regions rows %+v", regs.Rows)
	}
	// Each region's total is its town's row.
	for i, town := range []string{"白果镇", "龟山镇"} {
		for _, row := range cov.Rows {
			if row[0].Text == town && (row[2].Text != regs.Rows[i][1].Text || row[3].Text != regs.Rows[i][2].Text) {
				t.Errorf("region %s: linked/visited %s/%s, its town %s: %s/%s", regs.Rows[i][0].Text, regs.Rows[i][1].Text, regs.Rows[i][2].Text, town, row[2].Text, row[3].Text)
			}
		}
	}
	if n := checkLinks(t, db, q, r); n < 10 {
		t.Errorf("%d links checked", n)
	}
	zh := table(t, page(t, db, "coverage", report.Query{NowMs: c.now}), "coverage")
	if zh.Columns[1].Label != "区域" {
		t.Errorf("zh region label %q, want 区域", zh.Columns[1].Label)
	}

	// One region: its towns only, and links that keep to it.
	q.Filter = map[string]string{"region": "yunmeng"}
	one := page(t, db, "coverage", q)
	oc := table(t, one, "coverage")
	if len(oc.Rows) != 2 || oc.Rows[0][0].Text != "龟山镇" || oc.Columns[1].Key == "region" {
		t.Errorf("coverage of region yunmeng: rows %+v", oc.Rows)
	}
	if tot := oc.Rows[1]; tot[1].Text != regs.Rows[1][1].Text || !strings.Contains(tot[1].Link, "region=yunmeng") {
		t.Errorf("region yunmeng's total %+v, want %s linked households of the region", tot[1], regs.Rows[1][1].Text)
	}
	checkLinks(t, db, q, one)
	if !strings.Contains(one.Title, "yunmeng") {
		t.Errorf("title %q does not name the region", one.Title)
	}
	_, err := report.Page(context.Background(), db, "coverage", report.Query{NowMs: c.now, Filter: map[string]string{"region": "wuhan"}})
	if !errors.Is(err, report.ErrNotFound) || !strings.Contains(err.Error(), "xiaonan, yunmeng") {
		t.Errorf("an unknown region: %v, want ErrNotFound listing the regions held", err)
	}
	_, err = report.Page(context.Background(), db, "coverage", report.Query{NowMs: c.now, Unit: "T1", Filter: map[string]string{"region": "yunmeng"}})
	if !errors.Is(err, report.ErrNotFound) {
		t.Errorf("a town of another region: %v, want ErrNotFound", err)
	}
}
