package report_test

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/hq/report"
	_ "modernc.org/sqlite"
)

var china = time.FixedZone("UTC+8", 8*3600)

// at is a time in China: "2026-11-15 10:00".
func at(t testing.TB, s string) int64 {
	t.Helper()
	tm, err := time.ParseInLocation("2006-01-02 15:04", s, china)
	if err != nil {
		t.Fatal(err)
	}
	return tm.UnixMilli()
}

// openModel creates a read model as package hq does (hq.Open: schema.sql,
// then the migrations, the coverage tables and their triggers among
// them) and returns its query pool; the tests write rows straight into
// its tables.
func openModel(t testing.TB) *sql.DB {
	t.Helper()
	m, err := hq.Open(filepath.Join(t.TempDir(), "model.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m.DB()
}

// openSchemaOnly creates a database with hq/schema.sql alone (no coverage
// tables): the report counts from the base tables.
func openSchemaOnly(t testing.TB) *sql.DB {
	t.Helper()
	schema, err := os.ReadFile("../schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "model.db")+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(string(schema)); err != nil {
		t.Fatalf("schema: %v", err)
	}
	return db
}

// ins inserts a row into table: the columns given, every other column
// empty or 0 as its type says.
func ins(t testing.TB, db *sql.DB, table string, kv map[string]any) {
	t.Helper()
	rows, err := db.Query(`SELECT name, type FROM pragma_table_info(?)`, table)
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	var args []any
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, name)
		if v, ok := kv[name]; ok {
			args = append(args, v)
			delete(kv, name)
		} else if typ == "INTEGER" {
			args = append(args, 0)
		} else {
			args = append(args, "")
		}
	}
	rows.Close()
	if len(kv) > 0 {
		t.Fatalf("table %s has no columns %v", table, kv)
	}
	q := `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES (` + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + `)`
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("insert %s: %v", table, err)
	}
}

// page calls report.Page and fails the test on an error.
func page(t testing.TB, db *sql.DB, name string, q report.Query) *report.Result {
	t.Helper()
	r, err := report.Page(context.Background(), db, name, q)
	if err != nil {
		t.Fatalf("Page(%s, %+v): %v", name, q, err)
	}
	return r
}

// follow opens a Cell.Link as the web page would: /p/<name>?<params> with
// month and unit taken out of the filter; the scope and clock of q.
func follow(t testing.TB, db *sql.DB, q report.Query, link string) (*report.Result, string) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(u.Path, "/p/") {
		t.Fatalf("link %q: not /p/<name>?<params>", link)
	}
	if enc := u.Query().Encode(); enc != u.RawQuery {
		t.Fatalf("link %q: parameters not sorted and encoded (want %q)", link, enc)
	}
	name := strings.TrimPrefix(u.Path, "/p/")
	nq := report.Query{Lang: q.Lang, Town: q.Town, NowMs: q.NowMs, Filter: map[string]string{}}
	for k, v := range u.Query() {
		switch k {
		case "month":
			nq.Month = v[0]
		case "unit":
			nq.Unit = v[0]
		default:
			nq.Filter[k] = v[0]
		}
	}
	return page(t, db, name, nq), name
}

// table returns the named table of r.
func table(t testing.TB, r *report.Result, name string) report.Table {
	t.Helper()
	for _, tb := range r.Tables {
		if tb.Name == name {
			return tb
		}
	}
	t.Fatalf("no table %q in %q", name, r.Title)
	return report.Table{}
}

// checkLinks follows every numeric cell's link in r's tables and checks
// that the page behind it lists as many rows as the number says.
func checkLinks(t *testing.T, db *sql.DB, q report.Query, r *report.Result) int {
	t.Helper()
	n := 0
	for _, tb := range r.Tables {
		for i, row := range tb.Rows {
			for j, c := range row {
				if !tb.Columns[j].Numeric || c.Link == "" || c.Text == "—" {
					continue
				}
				lr, name := follow(t, db, q, c.Link)
				if !strings.HasSuffix(name, "-list") && name != "households" && name != "visits" && name != "event-list" {
					continue
				}
				if got := len(lr.Tables[0].Rows); float64(got) != c.Num {
					t.Errorf("table %s row %d column %s: %v, but its link %s lists %d rows", tb.Name, i, tb.Columns[j].Key, c.Num, c.Link, got)
				}
				n++
			}
		}
	}
	return n
}
