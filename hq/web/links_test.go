package web

import (
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/hq/report"
)

var hrefRe = regexp.MustCompile(`<td[^>]*><a href="([^"]+)">`)

// TestEveryNumberOpens follows, from every menu page, the links in the
// tables (two levels down): each opens a page, in the same language, and
// a town secretary is never offered a link they may not open.
func TestEveryNumberOpens(t *testing.T) {
	e := newEnv(t, false)
	for _, person := range []string{"HQ1", "S1"} {
		t.Run(person, func(t *testing.T) {
			c := e.mustSignIn(t, person)
			seen := map[string]bool{}
			var level []string
			for _, p := range report.Pages("en") {
				level = append(level, "/p/"+p.Name+"?lang=en")
			}
			for depth := 0; depth < 3 && len(level) > 0; depth++ {
				var next []string
				for _, u := range level {
					if seen[u] || len(seen) > 300 {
						continue
					}
					seen[u] = true
					resp, body := get(t, c, e.ts.URL+u)
					if resp.StatusCode != http.StatusOK {
						t.Errorf("%s: %d\n%s", u, resp.StatusCode, body)
						continue
					}
					if !strings.Contains(body, `<html lang="en">`) {
						t.Errorf("%s: not in English", u)
					}
					for _, m := range hrefRe.FindAllStringSubmatch(body, -1) {
						link := html.UnescapeString(m[1])
						if !strings.HasSuffix(link, "lang=en") {
							t.Errorf("%s: link %s lacks lang=en", u, link)
						}
						next = append(next, link)
					}
				}
				level = next
			}
			t.Logf("%d pages opened", len(seen))
			if len(seen) < 10 {
				t.Errorf("only %d pages opened", len(seen))
			}
		})
	}
	for _, a := range auditActions(t, e.webDB) {
		if a.Action == "refused" {
			t.Errorf("a link led to a refusal: %+v", a)
		}
	}
}
