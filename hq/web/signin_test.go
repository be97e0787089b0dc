package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCodeSignsInOnce(t *testing.T) {
	e := newEnv(t, false)
	code := e.code(t, "HQ1")
	if len(code) != codeLen || strings.ContainsAny(code, "IL01O") {
		t.Errorf("code %q: want %d letters without I, L, O, 0, 1", code, codeLen)
	}
	c := e.client(t)
	// Typed in lower case with a dash, as people do.
	resp, body := e.signIn(t, c, "HQ1", strings.ToLower(code[:5])+"-"+code[5:])
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first use: %d, want 303\n%s", resp.StatusCode, body)
	}
	resp, body = get(t, c, e.ts.URL+"/p/coverage")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("page after sign-in: %d\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{"王主任", `id="scope"`, "全市", `id="signout"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The same code again, from another browser: refused.
	resp, body = e.signIn(t, e.client(t), "HQ1", code)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, msg("zh", "err_signin")) {
		t.Errorf("reused code: %d, want 401 with the message\n%s", resp.StatusCode, body)
	}
	var ok, reused bool
	for _, a := range auditActions(t, e.webDB) {
		ok = ok || a.Action == "signin" && a.PersonID == "HQ1" && strings.HasPrefix(a.Detail, "ok")
		reused = reused || a.Action == "signin" && a.Detail == "failed: code already used"
	}
	if !ok || !reused {
		t.Errorf("audit: ok %v, reused %v; want both", ok, reused)
	}
}

func TestCodeOnlyStoredHashed(t *testing.T) {
	e := newEnv(t, false)
	code := e.code(t, "HQ1")
	var n int
	if err := e.srv.db.QueryRow(`SELECT COUNT(*) FROM codes WHERE hash = ? AND hash != ?`, hashOf(code), code).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("codes with the code's hash: %d, want 1", n)
	}
}

func TestSignInRefused(t *testing.T) {
	e := newEnv(t, false)
	expired, err := IssueCode(context.Background(), e.webDB, e.model, "HQ1", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	other := e.code(t, "S1") // a good code, of someone else
	for _, tc := range []struct {
		name, person, code string
		advance            time.Duration
		status             int
		text, why          string
	}{
		{"wrong code", "HQ1", "ABCDEFGHJK", 0, 401, msg("zh", "err_signin"), "failed: wrong code"},
		{"another's code", "HQ1", other, 0, 401, msg("zh", "err_signin"), "failed: wrong code"},
		{"unknown person", "NOBODY", other, 0, 401, msg("zh", "err_signin"), "failed: unknown person"},
		{"expired", "HQ1", expired, 2 * time.Hour, 401, msg("zh", "err_signin"), "failed: code expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.advance(tc.advance)
			resp, body := e.signIn(t, e.client(t), tc.person, tc.code)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.text) {
				t.Errorf("%d, want %d with %q\n%s", resp.StatusCode, tc.status, tc.text, body)
			}
			if c := resp.Header.Get("Set-Cookie"); strings.Contains(c, sessionCookie+"=") {
				t.Errorf("refused sign-in set a session cookie: %s", c)
			}
			es := auditActions(t, e.webDB)
			if last := es[len(es)-1]; last.Action != "signin" || last.Detail != tc.why || last.PersonID != tc.person || last.Remote != "127.0.0.1" {
				t.Errorf("audit %+v, want signin %q of %s from 127.0.0.1", last, tc.why, tc.person)
			}
		})
	}
}

func TestOnlyHQAndTownSecretaries(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	for _, p := range []string{"S3", "M1", "HQ9"} {
		if _, err := IssueCode(ctx, e.webDB, e.model, p, 0, "test"); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("IssueCode(%s): %v, want ErrNotAllowed", p, err)
		}
	}
	if _, err := IssueCode(ctx, e.webDB, e.model, "NOBODY", 0, "test"); !errors.Is(err, ErrUnknownPerson) {
		t.Errorf("IssueCode(NOBODY): %v, want ErrUnknownPerson", err)
	}
	// A code issued before the person was disabled no longer signs in.
	code := e.code(t, "S1")
	if _, err := e.model.Exec(`UPDATE people SET disabled_ms = 1 WHERE id = 'S1'`); err != nil {
		t.Fatal(err)
	}
	resp, body := e.signIn(t, e.client(t), "S1", code)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, msg("zh", "err_notallowed")) {
		t.Errorf("disabled person: %d, want 403 with the message\n%s", resp.StatusCode, body)
	}
	// In English when asked.
	c := e.client(t)
	get(t, c, e.ts.URL+"/signin?lang=en")
	resp, body = e.signIn(t, c, "M1", "ABCDEFGHJK")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, msg("en", "err_notallowed")) {
		t.Errorf("member, in English: %d, want 403 with the message\n%s", resp.StatusCode, body)
	}
}

func TestDisabledPersonsSessionStops(t *testing.T) {
	e := newEnv(t, false)
	c := e.mustSignIn(t, "S1")
	if resp, _ := get(t, c, e.ts.URL+"/p/coverage"); resp.StatusCode != http.StatusOK {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	if _, err := e.model.Exec(`UPDATE people SET disabled_ms = 5 WHERE id = 'S1'`); err != nil {
		t.Fatal(err)
	}
	resp, _ := get(t, c, e.ts.URL+"/p/coverage")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
		t.Errorf("after disabling: %d to %q, want 303 to /signin", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, false)
	good := e.code(t, "HQ1")
	for i := 0; i < MaxFailures; i++ {
		if resp, _ := e.signIn(t, e.client(t), "HQ1", "WRONGWRONG"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	// Locked: even the right code is refused, with when to retry.
	retry := e.clock().Add(FailureWindow).In(china).Format("15:04")
	resp, body := e.signIn(t, e.client(t), "HQ1", good)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "请在 "+retry) {
		t.Errorf("locked: %d, want 429 naming %s\n%s", resp.StatusCode, retry, body)
	}
	// Also another person from the same address.
	if resp, _ := e.signIn(t, e.client(t), "S1", e.code(t, "S1")); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("same address, another person: %d, want 429", resp.StatusCode)
	}
	// After the window the right code works, once.
	e.advance(FailureWindow + time.Second)
	if resp, body := e.signIn(t, e.client(t), "HQ1", good); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after the window: %d, want 303\n%s", resp.StatusCode, body)
	}
	var locked int
	for _, a := range auditActions(t, e.webDB) {
		if strings.HasPrefix(a.Detail, "failed: locked until") {
			locked++
		}
	}
	if locked != 2 {
		t.Errorf("audited lock refusals: %d, want 2", locked)
	}
}

func TestSessionCookie(t *testing.T) {
	for _, secure := range []bool{false, true} {
		e := newEnv(t, secure)
		c := e.client(t)
		resp, _ := e.signIn(t, c, "HQ1", e.code(t, "HQ1"))
		var found bool
		for _, ck := range resp.Cookies() {
			if ck.Name != sessionCookie {
				continue
			}
			found = true
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure != secure || ck.Path != "/" {
				t.Errorf("secure=%v: cookie HttpOnly %v SameSite %v Secure %v Path %q; want true Strict %v /",
					secure, ck.HttpOnly, ck.SameSite, ck.Secure, ck.Path, secure)
			}
			if len(ck.Value) < 43 { // 32 bytes, base64
				t.Errorf("session token %d characters, want 32 random bytes", len(ck.Value))
			}
			var n int
			e.srv.db.QueryRow(`SELECT COUNT(*) FROM sessions WHERE hash = ?`, hashOf(ck.Value)).Scan(&n)
			if n != 1 {
				t.Errorf("sessions stored under the token's hash: %d, want 1", n)
			}
		}
		if !found {
			t.Errorf("secure=%v: no %s cookie in %v", secure, sessionCookie, resp.Header["Set-Cookie"])
		}
	}
}

func TestSignOut(t *testing.T) {
	e := newEnv(t, false)
	c := e.mustSignIn(t, "HQ1")
	_, body := get(t, c, e.ts.URL+"/p/coverage")
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("page has no sign-out token")
	}
	old := c.Jar.Cookies(mustURL(t, e.ts.URL))
	// Without the token: refused, still signed in.
	resp, err := c.PostForm(e.ts.URL+"/signout", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without token: %d, want 403", resp.StatusCode)
	}
	resp, err = c.PostForm(e.ts.URL+"/signout", map[string][]string{"csrf": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	// The old cookie, replayed by another client, no longer works.
	c2 := e.client(t)
	c2.Jar.SetCookies(mustURL(t, e.ts.URL), old)
	resp, _ = get(t, c2, e.ts.URL+"/p/coverage")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
		t.Errorf("signed-out session: %d to %q, want 303 to /signin", resp.StatusCode, resp.Header.Get("Location"))
	}
	es := auditActions(t, e.webDB)
	if last := es[len(es)-1]; last.Action != "signout" || last.PersonID != "HQ1" {
		t.Errorf("last audit %+v, want signout of HQ1", last)
	}
}

func TestSessionExpires(t *testing.T) {
	e := newEnv(t, false)
	c := e.mustSignIn(t, "HQ1")
	e.advance(SessionTTL + time.Minute)
	if resp, _ := get(t, c, e.ts.URL+"/p/coverage"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after %s: %d, want 303 to sign in", SessionTTL, resp.StatusCode)
	}
}

func TestSignInFormToken(t *testing.T) {
	e := newEnv(t, false)
	code := e.code(t, "HQ1")
	resp, err := e.client(t).PostForm(e.ts.URL+"/signin", map[string][]string{"person": {"HQ1"}, "code": {code}, "csrf": {"forged"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged form: %d, want 403", resp.StatusCode)
	}
	// The code was not spent by the forged post.
	if resp, body := e.signIn(t, e.client(t), "HQ1", code); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("code after forged post: %d\n%s", resp.StatusCode, body)
	}
}

// TestCodeRace: browsers posting the same code at once: one signs in.
func TestCodeRace(t *testing.T) {
	e := newEnv(t, false)
	code := e.code(t, "HQ1")
	const n = 6
	type form struct {
		c    *http.Client
		csrf string
	}
	var forms []form
	for i := 0; i < n; i++ {
		c := e.client(t)
		_, body := get(t, c, e.ts.URL+"/signin")
		forms = append(forms, form{c, csrfRe.FindStringSubmatch(body)[1]})
	}
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for _, f := range forms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := f.c.PostForm(e.ts.URL+"/signin", url.Values{"person": {"HQ1"}, "code": {code}, "csrf": {f.csrf}})
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	ok := 0
	for s := range statuses {
		if s == http.StatusSeeOther {
			ok++
		} else if s != http.StatusUnauthorized {
			t.Errorf("status %d, want 303 or 401", s)
		}
	}
	if ok != 1 {
		t.Errorf("%d sign-ins with one code, want 1", ok)
	}
}

func TestAuditPaging(t *testing.T) {
	e := newEnv(t, false)
	for _, p := range []string{"HQ1", "S1", "HQ1"} {
		e.code(t, p)
	}
	all, err := Audit(context.Background(), e.webDB, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].Action != "code" || all[1].PersonID != "S1" || !strings.HasPrefix(all[0].Detail, "issued by test") {
		t.Fatalf("audit %+v", all)
	}
	page, err := Audit(context.Background(), e.webDB, all[0].ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 || page[0].ID != all[1].ID {
		t.Errorf("after %d, limit 1: %+v, want entry %d", all[0].ID, page, all[1].ID)
	}
	if _, err := Audit(context.Background(), filepath.Join(t.TempDir(), "none.db"), 0, 0); err == nil {
		t.Error("audit of a missing database: no error")
	}
}
