package web

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/hq"
)

// testModel is a read model database (hq/schema.sql) with two towns:
//
//	T1 镇一 > V1 村一 > G1 网格一: member M1; households H1 (visited this
//	month), H2 (head "=1+1", not visited)
//	T2 镇二 > V2 村二 > G2 网格二: member M2; household H3 (not visited)
//
// and people: HQ1 (hq), S1 (secretary of town T1), S3 (secretary of
// village V1), M1, M2 (members), HQ9 (hq, disabled).
func testModel(t testing.TB) *sql.DB {
	t.Helper()
	// The model's schema as hq makes it: schema.sql and the later
	// migrations (coverage, attachments).
	path := filepath.Join(t.TempDir(), "model.db")
	m, err := hq.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Now()
	today := now.In(china).Format("2006-01-02")
	month := today[:7]
	ms := now.UnixMilli() - 90*24*3600*1000
	stmts := []struct {
		q    string
		args []any
	}{
		{`INSERT INTO units (id, kind, parent_id, name, village_id, town_id, seq) VALUES ('T1','town','','镇一','','T1',1), ('V1','village','T1','村一','V1','T1',2), ('G1','grid','V1','网格一','V1','T1',3),
			('T2','town','','镇二','','T2',4), ('V2','village','T2','村二','V2','T2',5), ('G2','grid','V2','网格二','V2','T2',6)`, nil},
		{`INSERT INTO people (id, name, role, unit_id, village_id, town_id, disabled_ms, seq) VALUES ('HQ1','王主任','hq','','','',0,7), ('S1','李书记','secretary','T1','','T1',0,8),
			('S3','赵书记','secretary','V1','V1','T1',0,9), ('M1','陈党员','member','G1','V1','T1',0,10),
			('M2','刘党员','member','G2','V2','T2',0,11), ('HQ9','停用者','hq','','','',?,12)`, []any{ms}},
		{`INSERT INTO households (id, grid_id, village_id, town_id, head, address, members, tags, member_id, version, author_id, device_id, created_ms, updated_ms, voided, void_reason, voided_ms) VALUES
			('H1','G1','V1','T1','张三','一组1号',3,'','M1',20,'M1','D1',?1,?1,0,'',0),
			('H2','G1','V1','T1','=1+1','一组2号',2,'','M1',21,'M1','D1',?1,?1,0,'',0),
			('H3','G2','V2','T2','王五','二组1号',4,'','M2',22,'M2','D2',?1,?1,0,'',0)`, []any{ms}},
		{`INSERT INTO links (household_id, member_id, since_ms, by, seq) VALUES ('H1','M1',?1,'admin:a',30), ('H2','M1',?1,'admin:a',31), ('H3','M2',?1,'admin:a',32)`, []any{ms}},
		{`INSERT INTO link_history VALUES ('H1',30,'M1','',?1,'admin:a'), ('H2',31,'M1','',?1,'admin:a'), ('H3',32,'M2','',?1,'admin:a')`, []any{ms}},
		{`INSERT INTO visits (id, household_id, visited_on, month, met, needs, help, follow_up, village_id, town_id, version, author_id, device_id, created_ms, updated_ms, voided, void_reason, voided_ms) VALUES ('VS1','H1',?1,?2,'yes','','','','V1','T1',40,'M1','D1',?3,?3,0,'',0)`, []any{today, month, now.UnixMilli()}},
	}
	for _, s := range stmts {
		if _, err := db.Exec(s.q, s.args...); err != nil {
			t.Fatalf("%s: %v", s.q, err)
		}
	}
	return db
}

// env is a running page: its model, web DB path, test server and a clock.
type env struct {
	model *sql.DB
	webDB string
	srv   *Server
	ts    *httptest.Server

	mu  sync.Mutex
	now time.Time
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func newEnv(t testing.TB, secure bool) *env {
	t.Helper()
	e := &env{model: testModel(t), webDB: filepath.Join(t.TempDir(), "web.db"), now: time.Now()}
	s, err := New(Config{Model: e.model, WebDB: e.webDB, Secure: secure, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = s
	e.ts = httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		e.ts.Close()
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

// client is a browser: a cookie jar, redirects not followed (tests look
// at each answer).
func (e *env) client(t testing.TB) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *env) code(t testing.TB, person string) string {
	t.Helper()
	c, err := IssueCode(context.Background(), e.webDB, e.model, person, 0, "test")
	if err != nil {
		t.Fatalf("IssueCode(%s): %v", person, err)
	}
	return c
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches path and returns the answer and its body.
func get(t testing.TB, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// signIn opens the sign-in form and posts person and code with the
// form's token, as a browser does.
func (e *env) signIn(t testing.TB, c *http.Client, person, code string) (*http.Response, string) {
	t.Helper()
	_, body := get(t, c, e.ts.URL+"/signin")
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("sign-in form has no csrf token:\n%s", body)
	}
	resp, err := c.PostForm(e.ts.URL+"/signin", url.Values{"person": {person}, "code": {code}, "csrf": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// mustSignIn signs person in and fails the test unless it worked.
func (e *env) mustSignIn(t testing.TB, person string) *http.Client {
	t.Helper()
	c := e.client(t)
	resp, body := e.signIn(t, c, person, e.code(t, person))
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/p/coverage") {
		t.Fatalf("sign in %s: %d %s, want 303 to /p/coverage\n%s", person, resp.StatusCode, resp.Header.Get("Location"), body)
	}
	return c
}

func auditActions(t testing.TB, webDB string) []AuditEntry {
	t.Helper()
	es, err := Audit(context.Background(), webDB, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
