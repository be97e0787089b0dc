package web

import (
	"encoding/csv"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/hq/report"
)

func TestPage(t *testing.T) {
	e := newEnv(t, false)
	c := e.mustSignIn(t, "HQ1")
	resp, body := get(t, c, e.ts.URL+"/p/coverage")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("coverage: %d\n%s", resp.StatusCode, body)
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": "default-src 'self'", "X-Frame-Options": "DENY",
		"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
	} {
		if got := resp.Header.Get(h); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	for _, p := range report.Pages("zh") {
		if !strings.Contains(body, `href="/p/`+p.Name+`?lang=zh"`) || !strings.Contains(body, ">"+p.Title+"<") {
			t.Errorf("menu lacks %s (%s)", p.Name, p.Title)
		}
	}
	res, err := report.Page(t.Context(), e.model, "coverage", report.Query{Lang: "zh", NowMs: e.clock().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	for i, tb := range res.Tables {
		for _, want := range []string{
			`<table class="report" data-name="` + tb.Name + `">`,
			`<a class="download" data-format="csv" data-table="` + tb.Name + `" href="/p/coverage.csv?table=` + itoa(i) + `"`,
			`<a class="download" data-format="xlsx" data-table="` + tb.Name + `" href="/p/coverage.xlsx?table=` + itoa(i) + `"`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %s", want)
			}
		}
		for _, row := range tb.Rows {
			for _, cell := range row {
				if cell.Link != "" {
					want := `href="` + strings.ReplaceAll(cell.Link, "&", "&amp;") + map[bool]string{true: "&amp;", false: "?"}[strings.Contains(cell.Link, "?")] + `lang=zh"`
					if !strings.Contains(body, want) {
						t.Errorf("page lacks the link %s", want)
					}
				}
			}
		}
	}
	if len(res.Charts) > 0 && strings.Count(body, `<svg class="chart"`) != len(res.Charts) {
		t.Errorf("charts drawn: %d, want %d", strings.Count(body, `<svg class="chart"`), len(res.Charts))
	}
	if strings.Contains(body, "<script") {
		t.Error("the page has a script; none is needed")
	}
	// The stylesheet is served from inside the binary.
	resp, css := get(t, c, e.ts.URL+"/static/style.css")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(css, "table.report") {
		t.Errorf("style.css: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestPageLanguage(t *testing.T) {
	e := newEnv(t, false)
	c := e.mustSignIn(t, "HQ1")
	_, body := get(t, c, e.ts.URL+"/p/coverage")
	if !strings.Contains(body, `<html lang="zh-CN">`) || !strings.Contains(body, "退出登录") {
		t.Error("the default is not Simplified Chinese")
	}
	_, body = get(t, c, e.ts.URL+"/p/coverage?lang=en")
	if !strings.Contains(body, `<html lang="en">`) || !strings.Contains(body, "Sign out") || !strings.Contains(body, report.Pages("en")[0].Title) {
		t.Error("lang=en: not in English")
	}
	// Remembered.
	_, body = get(t, c, e.ts.URL+"/p/coverage")
	if !strings.Contains(body, "Sign out") {
		t.Error("English not remembered by the cookie")
	}
	_, body = get(t, c, e.ts.URL+"/p/nonesuch")
	if !strings.Contains(body, msg("en", "err_404")) {
		t.Errorf("404 not in English:\n%s", body)
	}
}

func TestPageErrorsAndRedirects(t *testing.T) {
	e := newEnv(t, false)
	anon := e.client(t)
	for _, p := range []string{"/p/coverage", "/p/coverage.csv?table=0", "/p/coverage.xlsx"} {
		resp, _ := get(t, anon, e.ts.URL+p)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
			t.Errorf("%s signed out: %d to %q, want 303 to /signin", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	c := e.mustSignIn(t, "HQ1")
	resp, _ := get(t, c, e.ts.URL+"/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/p/coverage?lang=zh" {
		t.Errorf("/: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, tc := range []struct {
		path   string
		status int
		text   string
	}{
		{"/p/nonesuch", 404, msg("zh", "err_404")},
		{"/elsewhere", 404, msg("zh", "err_404")},
		{"/static/", 404, msg("zh", "err_404")},
		{"/p/coverage?month=2026-13", 400, msg("zh", "err_400")},
		{"/p/coverage?month=2026-13", 400, "month"},
		{"/p/coverage.csv?table=9", 400, "table="},
		{"/p/coverage.xlsx?table=x", 400, "table="},
	} {
		resp, body := get(t, c, e.ts.URL+tc.path)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.text) {
			t.Errorf("%s: %d, want %d with %q\n%s", tc.path, resp.StatusCode, tc.status, tc.text, body)
		}
	}
}

func TestTownScope(t *testing.T) {
	e := newEnv(t, false)
	c := e.mustSignIn(t, "S1")
	resp, body := get(t, c, e.ts.URL+"/p/coverage")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "镇一 本镇") {
		t.Errorf("own town: %d; want 200 naming 镇一 as the scope", resp.StatusCode)
	}
	if resp, body := get(t, c, e.ts.URL+"/p/coverage?unit=G1"); resp.StatusCode != http.StatusOK {
		t.Errorf("a grid of the own town: %d\n%s", resp.StatusCode, body)
	}
	for _, p := range []string{"/p/coverage?unit=T2", "/p/coverage?unit=G2", "/p/coverage.csv?unit=T2&table=0", "/p/coverage.xlsx?unit=V2&table=0",
		"/p/households?unit=G2&visited=0", "/p/visits?household=H3"} {
		resp, body := get(t, c, e.ts.URL+p)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, msg("zh", "err_403")) {
			t.Errorf("%s: %d, want 403 with the message\n%s", p, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Disposition"); ct != "" {
			t.Errorf("%s: refused yet a download (%s)", p, ct)
		}
	}
	var refused []string
	for _, a := range auditActions(t, e.webDB) {
		if a.Action == "refused" && a.PersonID == "S1" {
			refused = append(refused, a.Detail)
		}
		if a.Action == "download" {
			t.Errorf("a refused download was audited as a download: %+v", a)
		}
	}
	if len(refused) != 6 || !strings.HasPrefix(refused[2], "download coverage.csv ?unit=T2") {
		t.Errorf("refusals audited: %q, want 6, the third the CSV", refused)
	}
	// HQ sees the other town.
	hq := e.mustSignIn(t, "HQ1")
	if resp, _ := get(t, hq, e.ts.URL+"/p/coverage?unit=T2"); resp.StatusCode != http.StatusOK {
		t.Errorf("HQ, town T2: %d", resp.StatusCode)
	}
}

func TestDownloads(t *testing.T) {
	e := newEnv(t, false)
	c := e.mustSignIn(t, "HQ1")
	month := time.Now().In(china).Format("2006-01")
	res, err := report.Page(t.Context(), e.model, "coverage", report.Query{Lang: "zh", NowMs: e.clock().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	tb := res.Tables[0]
	want := [][]string{{}}
	for _, col := range tb.Columns {
		want[0] = append(want[0], col.Label)
	}
	for _, row := range tb.Rows {
		var r []string
		for j, cell := range row {
			r = append(r, inert(cell.Text, tb.Columns[j].Numeric))
		}
		want = append(want, r)
	}

	resp, body := get(t, c, e.ts.URL+"/p/coverage.csv?table=0")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("csv: %d\n%s", resp.StatusCode, body)
	}
	if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="`+tb.Name+`-`+month+`.csv"` {
		t.Errorf("Content-Disposition %q", cd)
	}
	if !strings.HasPrefix(body, "\xEF\xBB\xBF") || !strings.Contains(body, "\r\n") {
		t.Errorf("csv lacks the BOM or CRLF: %q", body[:min(len(body), 40)])
	}
	got, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(body, "\xEF\xBB\xBF"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !equalCells(got, want) {
		t.Errorf("csv cells\n got %q\nwant %q", got, want)
	}

	resp, body = get(t, c, e.ts.URL+"/p/coverage.xlsx?table=0&lang=en")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "spreadsheetml") {
		t.Fatalf("xlsx: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	cells, _ := readXLSX(t, []byte(body))
	resEN, err := report.Page(t.Context(), e.model, "coverage", report.Query{Lang: "en", NowMs: e.clock().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != len(resEN.Tables[0].Rows)+1 || cells[0][0] != resEN.Tables[0].Columns[0].Label {
		t.Errorf("xlsx: %d rows, header %q; want %d rows, header %q", len(cells), cells[0], len(resEN.Tables[0].Rows)+1, resEN.Tables[0].Columns[0].Label)
	}
	for i, row := range resEN.Tables[0].Rows {
		for j, cell := range row {
			w := cell.Text
			if resEN.Tables[0].Columns[j].Numeric && plainNumber.MatchString(cell.Text) {
				w = fmtXLSXNum(cell.Num)
				if p, ok := percent(cell.Text); ok {
					w = fmtXLSXNum(p)
				}
			}
			if cells[i+1][j] != w {
				t.Errorf("xlsx row %d col %d: %q, want %q", i+2, j+1, cells[i+1][j], w)
			}
		}
	}

	var downloads []string
	for _, a := range auditActions(t, e.webDB) {
		if a.Action == "download" && a.PersonID == "HQ1" && a.Remote == "127.0.0.1" {
			downloads = append(downloads, a.Detail)
		}
	}
	if len(downloads) != 2 || downloads[0] != "page=coverage table="+tb.Name+" format=csv query=table=0" ||
		!strings.HasPrefix(downloads[1], "page=coverage table="+tb.Name+" format=xlsx") {
		t.Errorf("downloads audited: %q", downloads)
	}
}

// TestNotVisitedNamesInDownload: a household's name reaches the CSV byte
// for byte, and one that looks like a formula is made inert.
func TestNotVisitedNamesInDownload(t *testing.T) {
	e := newEnv(t, false)
	c := e.mustSignIn(t, "HQ1")
	res, err := report.Page(t.Context(), e.model, "coverage", report.Query{Lang: "zh", Unit: "G1", NowMs: e.clock().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	idx := -1
	for i, tb := range res.Tables {
		for _, row := range tb.Rows {
			for _, cell := range row {
				if cell.Text == "=1+1" {
					idx = i
				}
			}
		}
	}
	if idx < 0 {
		t.Fatal("hq/report's coverage of grid G1 lists no household whose head is =1+1 (the not-visited list)")
	}
	resp, body := get(t, c, e.ts.URL+"/p/coverage.csv?unit=G1&table="+itoa(idx))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d\n%s", resp.StatusCode, body)
	}
	if !strings.Contains(body, ",'=1+1,") && !strings.Contains(body, "\n'=1+1,") {
		t.Errorf("the formula head is not inert:\n%s", body)
	}
	if strings.Contains(body, "张三") {
		t.Errorf("H1 was visited; it is in the not-visited download:\n%s", body)
	}
}

func equalCells(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], "\x00") != strings.Join(b[i], "\x00") {
			return false
		}
	}
	return true
}
