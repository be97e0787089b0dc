package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// rawTerminal is what must never reach a terminal from stored text: ESC,
// a C1 control (NEL) and the right-to-left override.
const rawTerminal = "\x1b\u0085\u202e"

// TestCSVExportIsInert: cells a spreadsheet would run as formulas come out
// with a leading apostrophe, whether a device wrote them in a visit or an
// administrator imported them as a name, and the file starts with a UTF-8
// byte order mark so that Excel on Chinese Windows reads the Chinese.
func TestCSVExportIsInert(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	tok := tokenFile(t, e)
	admin, actx := e.Admin()
	resp, err := admin.ImportOrg(actx, &pb.ImportOrgRequest{Households: []*pb.Household{
		{Id: "H007", GridId: testenv.Grid, Head: `=HYPERLINK("http://x","y")`, Address: "@SUM(A1)", Members: "2"},
	}})
	if err != nil || len(resp.GetErrors()) > 0 {
		t.Fatalf("import: %v %v", err, resp.GetErrors())
	}

	db := filepath.Join(t.TempDir(), "member.db")
	ok(t, device(db, "enroll", "-name", "周建國的手機", e.Code(testenv.Member))...)
	ok(t, device(db, "visit", "add", "-household", "H001", "-date", "2026-11-20",
		"-met", "+1", "-needs", `=HYPERLINK("http://x","y")`, "-help", "-2+3", "-follow-up", "@SUM(A1)")...)
	ok(t, device(db, "visit", "add", "-household", "H002", "-date", "2026-11-21",
		"-needs", "\t=1+1", "-help", " =1+1", "-follow-up", "屋頂漏水，需要修繕")...)
	ok(t, device(db, "sync")...)

	out := filepath.Join(t.TempDir(), "export.csv")
	ok(t, hq(e, tok, "export", "-format", "csv", "-kind", "visit,household", "-o", out)...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\xef\xbb\xbf")) {
		t.Fatalf("export does not start with the UTF-8 byte order mark: %q", b[:min(len(b), 16)])
	}
	rows, err := csv.NewReader(bytes.NewReader(b[3:])).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	cells := map[string]bool{}
	for _, row := range rows {
		for _, c := range row {
			cells[c] = true
			if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
				t.Errorf("live formula cell %q", c)
			}
		}
	}
	for _, want := range []string{`'=HYPERLINK("http://x","y")`, "'+1", "'-2+3", "'@SUM(A1)", "'\t=1+1", "' =1+1", "屋頂漏水，需要修繕", "張大山"} {
		if !cells[want] {
			t.Errorf("no cell %q in the export:\n%s", want, b)
		}
	}
}

// TestStoredControlCharactersPrintEscaped: a device name and app version
// stored before the server refused control characters (written here
// straight into the store), and notes, which may hold them, reach the
// terminal escaped in tables, in a record's page and in --json.
func TestStoredControlCharactersPrintEscaped(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	tok := tokenFile(t, e)
	name, version := "phone\x1b[2J\u202eevil\u0085", "1.0\x1b]0;owned\x07"
	err := e.Store.Write(context.Background(), func(tx *store.Tx) error {
		if err := tx.PutDevice(&pb.Device{Id: "dOLD1", UserId: testenv.Member, Name: name, AppVersion: version,
			EnrolledMs: time.Now().UnixMilli()}, store.HashSecret("old-token")); err != nil {
			return err
		}
		return tx.Audit("dOLD1", store.AuditEnrollDevice, testenv.Member, `{"name":"`+name+`"}`)
	})
	if err != nil {
		t.Fatal(err)
	}

	out := ok(t, admin(e, tok, "devices")...)
	if strings.ContainsAny(out, rawTerminal+"\x07") {
		t.Errorf("admin devices printed control characters raw:\n%q", out)
	}
	for _, want := range []string{`phone\x1b[2J\u202eevil\x85`, `1.0\x1b]0;owned\x07`} {
		if !strings.Contains(out, want) {
			t.Errorf("admin devices lacks %s:\n%s", want, out)
		}
	}

	// --json keeps the exact text for programs, escaped as JSON escapes.
	js := ok(t, admin(e, tok, "devices", "--json")...)
	if strings.ContainsAny(js, rawTerminal+"\x07") {
		t.Errorf("admin devices --json printed control characters raw:\n%q", js)
	}
	var devs []deviceJSON
	decode(t, js, &devs)
	found := false
	for _, d := range devs {
		if d.ID == "dOLD1" {
			found = d.Name == name && d.AppVersion == version
		}
	}
	if !found {
		t.Errorf("--json does not give back the stored name and version: %+v", devs)
	}

	audit := ok(t, "admin", "audit", "-data", e.Dir)
	if strings.ContainsAny(audit, rawTerminal) || !strings.Contains(audit, `phone\x1b[2J\u202eevil\x85`) {
		t.Errorf("admin audit:\n%q", audit)
	}

	// A new name with an escape sequence is refused, and the refusal
	// shows it escaped.
	db := filepath.Join(t.TempDir(), "member.db")
	r := fieldctl(t, device(db, "enroll", "-name", "phone\x1b[2J", e.Code(testenv.Member))...)
	if r.code != 1 || !strings.Contains(r.stderr, `device_name: character 6 is ESC, which starts terminal escape sequences (\x1b)`) ||
		strings.ContainsAny(r.stderr, rawTerminal) {
		t.Errorf("enroll with an escape sequence in the name: exit %d, stderr %q", r.code, r.stderr)
	}

	// A note may hold a line break and a direction override; both show
	// as text, the line break as a line.
	ok(t, device(db, "enroll", e.Code(testenv.Member))...)
	id := strings.TrimSpace(ok(t, device(db, "visit", "add", "-household", "H001", "-date", "2026-11-20",
		"-needs", "屋頂漏水\n\u202etxt.exe\u0085")...))
	for _, args := range [][]string{{"show", id}, {"list", "visit"}} {
		out := ok(t, device(db, args...)...)
		if strings.ContainsAny(out, rawTerminal) || !strings.Contains(out, `\u202etxt.exe\x85`) {
			t.Errorf("device %s:\n%q", args[0], out)
		}
	}
}

// TestImportRefusesControlCharactersInNames: the org files are checked by
// the server like a device's name, and each refusal names the file, the
// line and the column.
func TestImportRefusesControlCharactersInNames(t *testing.T) {
	e := testenv.Start(t)
	tok := tokenFile(t, e)
	dir := copyOrg(t)
	appendFile(t, filepath.Join(dir, "units.csv"), "G09,grid,V01,新灣\u202e組\n")              // line 8
	appendFile(t, filepath.Join(dir, "users.csv"), "U-x,某\x1b[2J人,member,G01,\n")           // line 9
	appendFile(t, filepath.Join(dir, "households.csv"), "H0013,G01,周\u0085新戶,周家塆20號,,3,\n") // line 14
	r := fieldctl(t, admin(e, tok, "import", "-dir", dir)...)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		`units.csv:8: name: character 3 is a text direction control (\u202e)`,
		`users.csv:9: name: character 2 is ESC, which starts terminal escape sequences (\x1b)`,
		`households.csv:14: head: character 2 is a C1 control character (\x85)`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.ContainsAny(r.stderr+r.stdout, rawTerminal) {
		t.Errorf("raw control characters in the output: %q", r.stderr)
	}
}

// TestImportReadsAByteOrderMarkBeforeAQuotedHeader: Excel's "CSV UTF-8"
// starts with a byte order mark, and may quote the first column's name.
func TestImportReadsAByteOrderMarkBeforeAQuotedHeader(t *testing.T) {
	e := testenv.Start(t)
	tok := tokenFile(t, e)
	dir := copyOrg(t)
	b, err := os.ReadFile(filepath.Join(dir, "units.csv"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "units.csv"), "\ufeff\"id\""+strings.TrimPrefix(string(b), "id"))
	var got importJSON
	decode(t, ok(t, admin(e, tok, "import", "-dir", dir, "--json")...), &got)
	if got.Units != 6 || got.Rejected != 0 {
		t.Errorf("import: %+v", got)
	}
}
