package hqbrowser

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/fieldsync/fieldsync/hq/web"
	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

const chromiumPath = "/usr/bin/chromium"

// needChromium skips without Chromium, or fails when CI requires it.
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return
	}
	const msg = "chromium not found at " + chromiumPath + " (apt-get install chromium); set FIELDSYNC_REQUIRE_CHROMIUM=1 to make this a failure"
	if os.Getenv("FIELDSYNC_REQUIRE_CHROMIUM") != "" {
		t.Fatal(msg + " (it is set: FIELDSYNC_REQUIRE_CHROMIUM=" + os.Getenv("FIELDSYNC_REQUIRE_CHROMIUM") + ")")
	}
	t.Skip("SKIP: " + msg)
}

// artifacts is where screenshots and downloads are kept: a folder of
// FIELDSYNC_ARTIFACTS, else the test's temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if base := os.Getenv("FIELDSYNC_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, "hq-browser")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots and downloads in %s", dir)
	return dir
}

// The org: two towns, each with its own secretary; HQ; members in four
// grids. H06 is imported without a member (not linked: counted nowhere).
var (
	units = []*pb.Unit{
		{Id: "T01", Kind: pb.UnitKind_UNIT_KIND_TOWN, Name: "宋埠镇"},
		{Id: "T02", Kind: pb.UnitKind_UNIT_KIND_TOWN, Name: "歧亭镇"},
		{Id: "V01", Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: "T01", Name: "彭店村"},
		{Id: "V02", Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: "T01", Name: "龟山村"},
		{Id: "V03", Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: "T02", Name: "杏花村"},
		{Id: "G01", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V01", Name: "张家塆"},
		{Id: "G02", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V01", Name: "王家塆"},
		{Id: "G03", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V02", Name: "李家塆"},
		{Id: "G04", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V03", Name: "陈家塆"},
	}
	people = []*pb.User{
		{Id: "U-hq", Name: "组织部", Role: pb.Role_ROLE_HQ},
		{Id: "U-sec-T01", Name: "周书记", Role: pb.Role_ROLE_SECRETARY, UnitId: "T01"},
		{Id: "U-sec-T02", Name: "吴书记", Role: pb.Role_ROLE_SECRETARY, UnitId: "T02"},
		{Id: "U-m1", Name: "张国华", Role: pb.Role_ROLE_MEMBER, UnitId: "G01"},
		{Id: "U-m2", Name: "李秀英", Role: pb.Role_ROLE_MEMBER, UnitId: "G01"},
		{Id: "U-m3", Name: "王德明", Role: pb.Role_ROLE_MEMBER, UnitId: "G02"},
		{Id: "U-m4", Name: "陈明", Role: pb.Role_ROLE_MEMBER, UnitId: "G03"},
		{Id: "U-m5", Name: "刘芳", Role: pb.Role_ROLE_MEMBER, UnitId: "G04"},
	}
	households = []*pb.Household{
		{Id: "H01", GridId: "G01", Head: "张大山", Address: "张家塆1号"},
		{Id: "H02", GridId: "G01", Head: "张小河", Address: "张家塆2号"},
		{Id: "H03", GridId: "G01", Head: "赵春梅", Address: "张家塆3号"},
		{Id: "H04", GridId: "G01", Head: "钱秋菊", Address: "张家塆4号"},
		{Id: "H05", GridId: "G01", Head: "孙冬生", Address: "张家塆5号"},
		{Id: "H06", GridId: "G01", Head: "周无人", Address: "张家塆6号"},
		{Id: "H07", GridId: "G02", Head: "王大林", Address: "王家塆1号"},
		{Id: "H08", GridId: "G02", Head: "王二林", Address: "王家塆2号"},
		{Id: "H09", GridId: "G03", Head: "李外村", Address: "李家塆1号"},
		{Id: "H10", GridId: "G04", Head: "陈一", Address: "陈家塆1号"},
		{Id: "H11", GridId: "G04", Head: "陈二", Address: "陈家塆2号"},
		{Id: "H12", GridId: "G04", Head: "陈三", Address: "陈家塆3号"},
	}
	// The links as imported; H05 then moves from U-m2 to U-m1.
	assignments = map[string]string{"H01": "U-m1", "H02": "U-m1", "H03": "U-m1", "H04": "U-m2", "H05": "U-m2",
		"H07": "U-m3", "H08": "U-m3", "H09": "U-m4", "H10": "U-m5", "H11": "U-m5", "H12": "U-m5"}
)

func unitByID(id string) *pb.Unit {
	for _, u := range units {
		if u.Id == id {
			return u
		}
	}
	return nil
}

func personName(id string) string {
	for _, p := range people {
		if p.Id == id {
			return p.Name
		}
	}
	return id
}

// expected is coverage computed independently of the read model: the
// export's households and visits, and the links as the test made them.
type expected struct {
	month    string
	grid     map[string]string // household -> grid (not voided)
	head     map[string]string
	member   map[string]string // household -> member now ("" unlinked)
	visited  map[string]bool   // household -> a non-voided visit in month
	visitsIn map[string]int    // household -> non-voided visits in month
}

func (x *expected) ancestors(h string) []string {
	g := unitByID(x.grid[h])
	v := unitByID(g.ParentId)
	return []string{v.ParentId, v.Id, g.Id}
}

// count is (linked, visited) of the households under unit ("" the city),
// or of member when member is set.
func (x *expected) count(unit, member string) (linked, visited int) {
	for h, m := range x.member {
		if m == "" || x.grid[h] == "" {
			continue
		}
		if unit != "" && !slices.Contains(x.ancestors(h), unit) {
			continue
		}
		if member != "" && m != member {
			continue
		}
		linked++
		if x.visited[h] {
			visited++
		}
	}
	return
}

// row is the four figures of a coverage row, as the page writes them.
func (x *expected) row(unit, member string) []string {
	l, v := x.count(unit, member)
	share := "—"
	if l > 0 {
		share = fmt.Sprintf("%.1f%%", float64(v)*100/float64(l))
	}
	return []string{strconv.Itoa(l), strconv.Itoa(v), strconv.Itoa(l - v), share}
}

// notVisited lists the linked, not visited households under unit, by id.
func (x *expected) notVisited(unit string) []string {
	var out []string
	for h, m := range x.member {
		if m != "" && x.grid[h] != "" && !x.visited[h] && (unit == "" || slices.Contains(x.ancestors(h), unit)) {
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return out
}

// fromExport computes the expected coverage of month from the HQ export
// (ExportService, as fieldctl hq export) and the links.
func fromExport(t *testing.T, e *testenv.Env, month string, links map[string]string) *expected {
	t.Helper()
	_, ctx := e.Admin()
	recs := testenv.Export(t, ctx, e.Conn(), &pb.ExportRequest{})
	x := &expected{month: month, grid: map[string]string{}, head: map[string]string{}, member: map[string]string{},
		visited: map[string]bool{}, visitsIn: map[string]int{}}
	for _, r := range recs {
		if r.GetKind() != pb.Kind_KIND_HOUSEHOLD || r.GetVoid() != nil {
			continue
		}
		x.grid[r.GetId()] = r.GetFields()["grid_id"].GetValue()
		x.head[r.GetId()] = r.GetFields()["head"].GetValue()
		x.member[r.GetId()] = links[r.GetId()]
	}
	nVisits := 0
	for _, r := range recs {
		if r.GetKind() != pb.Kind_KIND_VISIT || r.GetVoid() != nil {
			continue
		}
		nVisits++
		on := r.GetFields()["visited_on"].GetValue()
		if strings.HasPrefix(on, month+"-") {
			h := r.GetFields()["household_id"].GetValue()
			x.visited[h] = true
			x.visitsIn[h]++
		}
	}
	if len(x.grid) != len(households) || nVisits == 0 {
		t.Fatalf("export: %d households (want %d), %d live visits", len(x.grid), len(households), nVisits)
	}
	return x
}

// visit records a visit to household on day by device d.
func visit(t *testing.T, d *syncer.Device, household, day string) string {
	t.Helper()
	f := syncer.NewFields()
	f.Set("household_id", household)
	f.Set("visited_on", day)
	f.Set("met", "户主")
	id, err := d.Create("visit", f)
	if err != nil {
		t.Fatalf("visit %s on %s: %v", household, day, err)
	}
	return id
}

// TestHQPageInABrowser is HQ's month in a real browser: sign in with a
// code, the city's coverage, down to a grid's members, every figure
// against the export, the not-visited households, the CSV download, and
// a town secretary kept to their town.
func TestHQPageInABrowser(t *testing.T) {
	needChromium(t)
	art := artifacts(t)

	e := testenv.Start(t, testenv.WithSyncdConfig(func(c *syncd.Config) { c.HQListen = "127.0.0.1:0" }))
	hq := e.Daemon.HQ
	if hq == nil {
		t.Fatal("syncd started without its HQ page")
	}
	base := hq.URL
	admin, actx := e.Admin()
	req := &pb.ImportOrgRequest{Units: units, Users: people, Households: households}
	for h, m := range assignments {
		req.Assignments = append(req.Assignments, &pb.Assignment{HouseholdId: h, MemberId: m})
	}
	if resp, err := admin.ImportOrg(actx, req); err != nil || len(resp.GetErrors()) > 0 {
		t.Fatalf("import: %v %v", err, resp.GetErrors())
	}
	links := map[string]string{}
	for h, m := range assignments {
		links[h] = m
	}
	if _, err := admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "H05", MemberId: "U-m1"}); err != nil {
		t.Fatalf("reassign H05: %v", err)
	}
	links["H05"] = "U-m1"

	// The phones: visits this month (China time), one last month, one
	// voided; U-m4 visits nobody.
	china := time.FixedZone("CST", 8*3600)
	now := time.Now().In(china)
	month := now.Format("2006-01")
	today := now.Format("2006-01-02")
	lastMonth := time.Date(now.Year(), now.Month(), 1, 12, 0, 0, 0, china).AddDate(0, 0, -1).Format("2006-01-02")
	m1, m2, m3, m5 := e.Device("U-m1"), e.Device("U-m2"), e.Device("U-m3"), e.Device("U-m5")
	for _, d := range []*syncer.Device{m1, m2, m3, m5} {
		testenv.Sync(t, d)
	}
	visit(t, m1, "H01", today)
	visit(t, m1, "H01", today)
	visit(t, m1, "H02", today)
	wrong := visit(t, m1, "H03", today)
	visit(t, m1, "H05", lastMonth)
	visit(t, m2, "H04", today)
	visit(t, m3, "H07", today)
	visit(t, m5, "H10", today)
	for _, d := range []*syncer.Device{m1, m2, m3, m5} {
		testenv.Sync(t, d)
	}
	if err := m1.Void(wrong, "走错户了"); err != nil {
		t.Fatal(err)
	}
	testenv.Sync(t, m1)

	// The read model has followed everything the server committed.
	last, err := e.Store.LastSeq(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("the read model at change %d", last), func() bool { return hq.Model.LastSeq() >= last })
	x := fromExport(t, e, month, links)

	hqDir := filepath.Join(e.Dir, "hq")
	code := func(person string) string {
		c, err := web.IssueCode(t.Context(), filepath.Join(hqDir, syncd.HQWebFile), hq.Model.DB(), person, time.Hour, "browser test")
		if err != nil {
			t.Fatalf("sign-in code for %s: %v", person, err)
		}
		return c
	}

	browser := newBrowser(t)

	// HQ signs in.
	signIn(t, browser, base, "U-hq", code("U-hq"))
	shot(t, browser, art, "01-city-coverage.png")
	city := readTable(t, browser, "coverage")
	checkCoverage(t, "city", city, x, []string{"T01", "T02"}, "", false)
	var cityNV []string
	for _, r := range readTable(t, browser, "not-visited").rows {
		cityNV = append(cityNV, r[0])
	}
	if want := x.notVisited(""); !slices.Equal(cityNV, want) {
		t.Errorf("not visited in the city: %v, want %v", cityNV, want)
	}

	// Drill down by the numbers' names: town, village, grid.
	for _, step := range []struct{ name, unit string }{{"宋埠镇", "T01"}, {"彭店村", "V01"}, {"张家塆", "G01"}} {
		clickLink(t, browser, "coverage", step.name)
		waitURL(t, browser, "unit="+step.unit)
		tbl := readTable(t, browser, "coverage")
		var children []string
		for _, u := range units {
			if u.ParentId == step.unit {
				children = append(children, u.Id)
			}
		}
		if step.unit == "G01" {
			checkCoverage(t, step.unit, tbl, x, []string{"U-m1", "U-m2"}, step.unit, true)
		} else {
			checkCoverage(t, step.unit, tbl, x, children, step.unit, false)
		}
	}
	shot(t, browser, art, "02-grid-members.png")

	// The grid's not-visited households, by id, head and member.
	nv := readTable(t, browser, "not-visited")
	var gotNV []string
	for _, r := range nv.rows {
		gotNV = append(gotNV, r[0])
		h := r[0]
		if r[1] != x.head[h] || r[4] != personName(x.member[h]) {
			t.Errorf("not-visited row %q: want head %s, member %s", r, x.head[h], personName(x.member[h]))
		}
	}
	if want := x.notVisited("G01"); !slices.Equal(gotNV, want) {
		t.Errorf("not visited in 张家塆: %v, want %v", gotNV, want)
	}
	if !slices.Contains(gotNV, "H03") || !slices.Contains(gotNV, "H05") {
		t.Errorf("not visited %v lacks H03 (its only visit voided) or H05 (visited last month only)", gotNV)
	}

	// The CSV of the grid's coverage, fetched with the browser's cookies:
	// the same figures as the page and as the export.
	href := attr(t, browser, `a.download[data-format="csv"][data-table="coverage"]`, "href")
	body, resp := fetch(t, browser, base, href)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download %s: %s\n%s", href, resp.Status, body)
	}
	if err := os.WriteFile(filepath.Join(art, "coverage-G01.csv"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(body, []byte("\uFEFF")) {
		t.Errorf("the CSV does not start with a byte-order mark: %q", body[:min(len(body), 16)])
	}
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(body, []byte("\uFEFF")))).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v\n%s", err, body)
	}
	grid := readTable(t, browser, "coverage")
	if len(recs) != len(grid.rows)+1 || !slices.Equal(recs[0], grid.head) {
		t.Fatalf("CSV has %d lines with header %q; the page %d rows with header %q", len(recs), recs[0], len(grid.rows), grid.head)
	}
	for i, r := range recs[1:] {
		if !slices.Equal(r, grid.rows[i]) {
			t.Errorf("CSV row %d %q, page %q", i+1, r, grid.rows[i])
		}
	}
	checkCoverage(t, "G01 CSV", table{head: recs[0], rows: recs[1:]}, x, []string{"U-m1", "U-m2"}, "G01", true)
	// The same table as a workbook.
	href = attr(t, browser, `a.download[data-format="xlsx"][data-table="coverage"]`, "href")
	body, resp = fetch(t, browser, base, href)
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(body, []byte("PK\x03\x04")) || !strings.Contains(resp.Header.Get("Content-Type"), "spreadsheetml") {
		t.Errorf("download %s: %s, %s, starts %q: want 200 and an XLSX (a zip)", href, resp.Status, resp.Header.Get("Content-Type"), body[:min(len(body), 4)])
	}
	// The not-visited list's CSV names the same households.
	href = attr(t, browser, `a.download[data-format="csv"][data-table="not-visited"]`, "href")
	body, resp = fetch(t, browser, base, href)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download %s: %s", href, resp.Status)
	}
	nvRecs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(body, []byte("\uFEFF")))).ReadAll()
	if err != nil || len(nvRecs) != len(gotNV)+1 {
		t.Fatalf("not-visited CSV: %v, %d lines, want %d:\n%s", err, len(nvRecs), len(gotNV)+1, body)
	}
	for i, r := range nvRecs[1:] {
		if r[0] != gotNV[i] || r[1] != x.head[r[0]] {
			t.Errorf("not-visited CSV row %q, want %s %s", r, gotNV[i], x.head[gotNV[i]])
		}
	}

	// A member's visited count opens the households behind it.
	clickLink(t, browser, "coverage", personName("U-m1"))
	waitURL(t, browser, "member=U-m1")
	hs := readTable(t, browser, "households")
	var gotHs []string
	for _, r := range hs.rows {
		gotHs = append(gotHs, r[0])
		if n, _ := strconv.Atoi(r[5]); n != x.visitsIn[r[0]] {
			t.Errorf("household %s: %s visits this month, want %d", r[0], r[5], x.visitsIn[r[0]])
		}
	}
	if want := []string{"H01", "H02", "H03", "H05"}; !slices.Equal(gotHs, want) {
		t.Errorf("U-m1's households %v, want %v", gotHs, want)
	}

	// English, the other choice: the same rows, English headers, and the
	// choice kept on the next page.
	if err := chromedp.Do(browser, chromedp.Click(chromedp.CSS(`#lang-en`))); err != nil {
		t.Fatalf("switch to English: %v", err)
	}
	waitURL(t, browser, "lang=en")
	if lang := attr(t, browser, "html", "lang"); lang != "en" {
		t.Fatalf("after choosing English the page is in %q", lang)
	}
	en := readTable(t, browser, "households")
	if !slices.EqualFunc(en.rows, hs.rows, func(a, b []string) bool { return a[0] == b[0] && a[5] == b[5] }) || slices.Equal(en.head, hs.head) {
		t.Errorf("in English the households read %q with header %q; in Chinese %q with %q", en.rows, en.head, hs.rows, hs.head)
	}
	shot(t, browser, art, "03-member-households-en.png")
	if err := chromedp.Do(browser, chromedp.Navigate(base+"/p/coverage")); err != nil {
		t.Fatal(err)
	}
	if lang := attr(t, browser, "html", "lang"); lang != "en" {
		t.Errorf("the next page is in %q, want en (remembered)", lang)
	}
	if err := chromedp.Do(browser, chromedp.Click(chromedp.CSS(`#lang-zh`))); err != nil {
		t.Fatalf("switch back to Chinese: %v", err)
	}
	waitURL(t, browser, "lang=zh")

	// A town secretary: their town only.
	signOut(t, browser)
	signIn(t, browser, base, "U-sec-T02", code("U-sec-T02"))
	// Their first page is the city confined to their town: its one row,
	// whose total is the town's.
	own := readTable(t, browser, "coverage")
	checkCoverage(t, "the city for T02's secretary", own, x, []string{"T02"}, "T02", false)
	clickLink(t, browser, "coverage", "歧亭镇")
	waitURL(t, browser, "unit=T02")
	checkCoverage(t, "T02 for its secretary", readTable(t, browser, "coverage"), x, []string{"V03"}, "T02", false)
	shot(t, browser, art, "04-town-secretary.png")
	for _, name := range []string{"宋埠镇", "彭店村", "张家塆"} {
		if strings.Contains(text(t, browser, "main"), name) {
			t.Errorf("the secretary of 歧亭镇 sees %s", name)
		}
	}
	for _, path := range []string{"/p/coverage?unit=T01", "/p/coverage?unit=G01&month=" + month, "/p/households?unit=V01&month=" + month} {
		if err := chromedp.Do(browser, chromedp.Navigate(base+path)); err != nil {
			t.Fatal(err)
		}
		if st := attr(t, browser, "#error", "data-status"); st != "403" {
			t.Errorf("the secretary of T02 at %s: status %s, want 403", path, st)
		}
	}
	shot(t, browser, art, "05-town-secretary-refused.png")
	for _, path := range []string{"/p/coverage.csv?unit=T01&table=0", "/p/coverage.xlsx?unit=G01&table=0", "/p/households.csv?unit=G01&visited=0&table=0"} {
		body, resp := fetch(t, browser, base, path)
		if resp.StatusCode != http.StatusForbidden || bytes.Contains(body, []byte("张大山")) {
			t.Errorf("the secretary of T02 downloads %s: %s, want 403 and no household of T01", path, resp.Status)
		}
	}
	// Refusals and downloads are audited.
	audit, err := web.Audit(t.Context(), filepath.Join(hqDir, syncd.HQWebFile), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var refused, downloads int
	for _, a := range audit {
		switch {
		case a.Action == "refused" && a.PersonID == "U-sec-T02":
			refused++
		case a.Action == "download" && a.PersonID == "U-hq":
			downloads++
		}
	}
	if refused != 6 || downloads != 3 {
		t.Errorf("audit: %d refusals of U-sec-T02 (want 6), %d downloads of U-hq (want 3)", refused, downloads)
	}
}

// table is a report table as the page shows it.
type table struct {
	head []string
	rows [][]string
}

// checkCoverage compares a coverage table with the expected figures:
// one row per key (units by name, or members by name), in any order, and
// the total row last.
func checkCoverage(t *testing.T, where string, tbl table, x *expected, keys []string, parent string, members bool) {
	t.Helper()
	if len(tbl.rows) != len(keys)+1 {
		t.Errorf("%s: %d rows, want %d and a total:\n%q", where, len(tbl.rows), len(keys), tbl.rows)
		return
	}
	byName := map[string][]string{}
	for _, r := range tbl.rows[:len(keys)] {
		byName[r[0]] = r[1:]
	}
	for _, k := range keys {
		var name string
		var want []string
		if members {
			name, want = personName(k), x.row(parent, k)
		} else {
			name, want = unitByID(k).Name, x.row(k, "")
		}
		got, ok := byName[name]
		if !ok {
			t.Errorf("%s: no row %s (%s); rows %q", where, name, k, tbl.rows)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %s (%s) shows linked, visited, not visited, share %q; the export says %q", where, name, k, got, want)
		}
	}
	if got, want := tbl.rows[len(keys)][1:], x.row(parent, ""); !slices.Equal(got, want) {
		t.Errorf("%s: total %q, the export says %q", where, got, want)
	}
}

// newBrowser starts headless Chromium with the flags this machine needs;
// it is stopped when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("lang", "zh-CN"), // as HQ's browsers (their Accept-Language)
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// Every step below is bounded: a page that never comes fails the test.
	tctx, tcancel := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(tcancel)
	return tctx
}

func signIn(t *testing.T, b context.Context, base, person, code string) {
	t.Helper()
	err := chromedp.Do(b,
		chromedp.Navigate(base+"/signin"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="person"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="person"]`), person),
		chromedp.SendKeys(chromedp.CSS(`input[name="code"]`), code),
		chromedp.Click(chromedp.CSS(`#signin`)),
		chromedp.WaitVisible(chromedp.CSS(`table.report[data-name="coverage"]`)),
	)
	if err != nil {
		t.Fatalf("sign in as %s: %v", person, err)
	}
	if who := text(t, b, "#who"); !strings.Contains(who, person) {
		t.Errorf("signed in as %s, the page says %q", person, who)
	}
}

func signOut(t *testing.T, b context.Context) {
	t.Helper()
	if err := chromedp.Do(b, chromedp.Click(chromedp.CSS(`#signout`)), chromedp.WaitVisible(chromedp.CSS(`input[name="code"]`))); err != nil {
		t.Fatalf("sign out: %v", err)
	}
}

func shot(t *testing.T, b context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(b, chromedp.FullScreenshot(100)) // 100: PNG (below: JPEG)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

func text(t *testing.T, b context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(b, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func attr(t *testing.T, b context.Context, sel, name string) string {
	t.Helper()
	v, err := chromedp.Run(b, chromedp.AttributeValue(chromedp.CSS(sel), name))
	if err != nil {
		t.Fatalf("%s of %s: %v", name, sel, err)
	}
	if !v.Exists {
		t.Fatalf("%s has no %s", sel, name)
	}
	return v.Value
}

// readTable reads the report table named name: its header and its rows'
// cells' text.
func readTable(t *testing.T, b context.Context, name string) table {
	t.Helper()
	sel := `table.report[data-name="` + name + `"]`
	type result struct {
		Head []string   `json:"head"`
		Rows [][]string `json:"rows"`
	}
	js := `(() => { const t = document.querySelector('` + sel + `');
		const cells = tr => Array.from(tr.cells).map(c => c.textContent.trim());
		return {head: cells(t.tHead.rows[0]), rows: Array.from(t.tBodies[0] ? t.tBodies[0].rows : []).map(cells)}; })()`
	if err := chromedp.Do(b, chromedp.WaitReady(chromedp.CSS(sel))); err != nil {
		t.Fatalf("read table %s: %v", name, err)
	}
	out, err := chromedp.Run(b, chromedp.Evaluate[result](js))
	if err != nil {
		t.Fatalf("read table %s: %v", name, err)
	}
	return table{head: out.Head, rows: out.Rows}
}

// clickLink clicks the link whose text is linkText in table name.
func clickLink(t *testing.T, b context.Context, name, linkText string) {
	t.Helper()
	sel := `//table[@data-name="` + name + `"]//a[normalize-space(text())="` + linkText + `"]`
	if err := chromedp.Do(b, chromedp.Click(sel)); err != nil {
		t.Fatalf("click %s in %s: %v", linkText, name, err)
	}
}

func waitURL(t *testing.T, b context.Context, part string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		loc, err := chromedp.Run(b, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(loc, part) {
			if err := chromedp.Do(b, chromedp.WaitReady(chromedp.CSS(`table.report`))); err != nil {
				t.Fatal(err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the browser is at %s, not at a page with %s", loc, part)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fetch GETs path on the page with the browser's cookies (the session's
// is HttpOnly: only the browser's protocol reads it), as a download.
func fetch(t *testing.T, b context.Context, base, path string) ([]byte, *http.Response) {
	t.Helper()
	res, err := chromedp.Call(b, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		t.Fatalf("cookies: %v", err)
	}
	cookies := res.Cookies
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body, resp
}
