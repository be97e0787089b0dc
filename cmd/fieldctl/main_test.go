package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// orgDir is the example org that the README's quickstart imports.
const orgDir = "../../examples/org"

// result is one fieldctl invocation: its output and exit status.
type result struct {
	stdout, stderr string
	code           int
}

// fieldctlIn runs fieldctl in-process, as main would, with stdin as its
// standard input.
func fieldctlIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, args, strings.NewReader(stdin), &out, &errb)
	code := exitCode(err, &errb)
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

func fieldctl(t *testing.T, args ...string) result {
	t.Helper()
	return fieldctlIn(t, "", args...)
}

// ok runs a command that must succeed and returns its standard output.
func ok(t *testing.T, args ...string) string {
	t.Helper()
	r := fieldctl(t, args...)
	if r.code != 0 {
		t.Fatalf("fieldctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// decode parses JSON output into v, failing the test if it is not JSON.
func decode(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
}

// tokenFile writes the env's admin credential where -token-file reads it.
func tokenFile(t *testing.T, e *testenv.Env) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(p, []byte(e.AdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// admin returns the arguments of fieldctl admin against e.
func admin(e *testenv.Env, token string, args ...string) []string {
	return append([]string{"admin", "-server", e.Addr, "-token-file", token, "-ca-file", caFile(e)}, args...)
}

func hq(e *testenv.Env, token string, args ...string) []string {
	return append([]string{"hq", "-server", e.Addr, "-token-file", token, "-ca-file", caFile(e)}, args...)
}

// caFile is where the test server keeps its CA (syncd: <data>/tls/ca.pem).
func caFile(e *testenv.Env) string { return filepath.Join(e.Dir, "tls", "ca.pem") }

func device(db string, args ...string) []string {
	return append([]string{"device", "-db", db}, args...)
}

type importJSON struct {
	Units, Users, Households, Assignments, Rejected int
	RecordsMoved                                    int `json:"records_moved"`
	Errors                                          []rowError
}

func TestHelpAndUsage(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		contains []string // in stderr
	}{
		{[]string{"-h"}, 0, []string{"admin", "device", "hq", "Commands:"}},
		{[]string{"help"}, 0, []string{"Usage: fieldctl [flags] <command>"}},
		{[]string{"admin", "-h"}, 0, []string{"import", "assign", "enroll-code", "devices", "revoke", "-token-file", "admin.token"}},
		{[]string{"device", "-h"}, 0, []string{"enroll", "visit", "household", "dispute", "event", "list", "show", "status", "rejections", "sync", "run", "-db"}},
		{[]string{"device", "dispute", "-h"}, 0, []string{"open", "status", "note", "session", "edit"}},
		{[]string{"hq", "-h"}, 0, []string{"export", "tail"}},
		{[]string{"device", "visit", "add", "-h"}, 0, []string{"Example:", "-household", "-follow-up", "屋頂漏水"}},
		{[]string{"hq", "export", "-h"}, 0, []string{"Example:", "-format", "ndjson", "-after"}},
		{[]string{"admin", "import", "-h"}, 0, []string{"units.csv", "id,kind,parent_id,name", "file:line"}},
		{nil, 2, []string{"Usage: fieldctl"}},
		{[]string{"bogus"}, 2, []string{`fieldctl: unknown command "bogus": want one of admin, device, hq`}},
		{[]string{"device", "dispute", "bogus"}, 2, []string{`fieldctl: device dispute: unknown command "bogus"`}},
		{[]string{"device", "visit", "add", "-nope"}, 2, []string{"flag provided but not defined: -nope"}},
		{[]string{"device", "visit", "add", "-household", "H0001"}, 2, []string{"fieldctl: device visit add: -date is required"}},
		{[]string{"device", "list", "cats"}, 2, []string{`unknown kind "cats": want one of household, visit, dispute, event`}},
		{[]string{"admin", "import"}, 2, []string{"fieldctl: admin import: -dir is required"}},
		{[]string{"hq", "export", "-format", "xml"}, 2, []string{`-format "xml": want ndjson or csv`}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := fieldctl(t, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\nstderr: %s", r.code, tt.code, r.stderr)
			}
			for _, s := range tt.contains {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
		})
	}
}

func TestNoCredentialOrDatabase(t *testing.T) {
	dir := t.TempDir()
	r := fieldctl(t, "admin", "-token-file", filepath.Join(dir, "admin.token"), "devices")
	if r.code != 1 || !strings.Contains(r.stderr, "not found: syncd writes it to <data>/admin.token") {
		t.Errorf("missing token file: exit %d, stderr %q", r.code, r.stderr)
	}
	// No syncd at -server: a clear error, and no empty export file.
	tok := filepath.Join(dir, "admin.token")
	writeFile(t, tok, "secret\n")
	out := filepath.Join(dir, "out.ndjson")
	// No CA beside the token: it says where syncd keeps it.
	r = fieldctl(t, "hq", "-server", "127.0.0.1:1", "-token-file", tok, "export", "-o", out)
	if r.code != 1 || !strings.Contains(r.stderr, "syncd's CA certificate") || !strings.Contains(r.stderr, "<data>/tls/ca.pem") {
		t.Errorf("export with no CA file: exit %d, stderr %q", r.code, r.stderr)
	}
	r = fieldctl(t, "hq", "-server", "127.0.0.1:1", "-token-file", tok, "-plaintext", "export", "-o", out)
	if r.code != 1 || !strings.HasPrefix(r.stderr, "fieldctl: export: syncd at 127.0.0.1:1 unavailable (") {
		t.Errorf("export with no syncd: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("failed export left %s: %v", out, err)
	}
	db := filepath.Join(dir, "phone.db")
	r = fieldctl(t, device(db, "status")...)
	if r.code != 1 || !strings.Contains(r.stderr, "no device database at "+db+": enroll first") {
		t.Errorf("missing database: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("status created %s: %v", db, err)
	}
}

func TestImport(t *testing.T) {
	e := testenv.Start(t)
	tok := tokenFile(t, e)

	t.Run("examples", func(t *testing.T) {
		var got importJSON
		decode(t, ok(t, admin(e, tok, "import", "-dir", orgDir, "--json")...), &got)
		want := importJSON{Units: 6, Users: 7, Households: 12, Assignments: 12, Errors: []rowError{}}
		if got.Units != want.Units || got.Users != want.Users || got.Households != want.Households ||
			got.Assignments != want.Assignments || got.Rejected != 0 || len(got.Errors) != 0 {
			t.Fatalf("got %+v, want %+v", got, want)
		}
		// Importing again changes nothing and says the same.
		out := ok(t, admin(e, tok, "import", "-dir", orgDir)...)
		for _, line := range []string{"units          6", "users          7", "households     12", "assignments    12", "records moved  0", "rejected       0"} {
			if !strings.Contains(out, line+"\n") {
				t.Errorf("output lacks %q:\n%s", line, out)
			}
		}
	})

	t.Run("broken rows", func(t *testing.T) {
		dir := copyOrg(t)
		appendFile(t, filepath.Join(dir, "units.csv"), "G04,county,V01,錯誤級別\n") // line 8
		appendFile(t, filepath.Join(dir, "households.csv"), ""+
			"H0013,G01,周新戶,堰頭垸村周家塆20號,,3,新遷入\n"+ // line 14: good
			"H0014,G09,吳無網,某處,,2,\n"+ // line 15: unknown grid (server)
			"H0015,G01,缺欄位\n") // line 16: too few columns
		appendFile(t, filepath.Join(dir, "assignments.csv"), "H0013,U-m2\nH0014,U-m2\n") // lines 14, 15
		appendFile(t, filepath.Join(dir, "users.csv"), "U-x,某人,leader,V01,\n")           // line 9

		r := fieldctl(t, admin(e, tok, "import", "-dir", dir)...)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\nstderr: %s", r.code, r.stderr)
		}
		wantErrs := []string{
			`units.csv:8: kind: "county" is not a unit kind: want town, village or grid`,
			`users.csv:9: role: "leader" is not a role: want member, mediator, secretary or hq`,
			`households.csv:15: grid_id: unknown grid "G09"`,
			`households.csv:16: 3 columns, but the header has 7 (id,grid_id,head,address,phone,members,tags)`,
			`assignments.csv:15: household_id: unknown household "H0014"`,
			`fieldctl: 5 rows rejected (listed above); the other rows were imported`,
		}
		if got := strings.Split(strings.TrimSpace(r.stderr), "\n"); strings.Join(got, "\n") != strings.Join(wantErrs, "\n") {
			t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, strings.Join(wantErrs, "\n"))
		}
		for _, line := range []string{"units          6", "users          7", "households     13", "assignments    13", "records moved  0", "rejected       5"} {
			if !strings.Contains(r.stdout, line+"\n") {
				t.Errorf("stdout lacks %q:\n%s", line, r.stdout)
			}
		}
		// The good new rows were stored: H0013 exists and is linked to U-m2.
		if out := ok(t, admin(e, tok, "assign", "-household", "H0013", "-member", "U-m1")...); out != "H0013 linked to U-m1 (previously U-m2)\n" {
			t.Errorf("assign: %q", out)
		}

		// The same with --json: the errors are data, the exit status the same.
		r = fieldctl(t, admin(e, tok, "import", "-dir", dir, "--json")...)
		var got importJSON
		decode(t, r.stdout, &got)
		if r.code != 1 || got.Households != 13 || got.Rejected != 5 || len(got.Errors) != 5 {
			t.Fatalf("exit %d, got %+v", r.code, got)
		}
		if e := got.Errors[2]; e != (rowError{File: "households.csv", Line: 15, Table: "households", Column: "grid_id", Message: `unknown grid "G09"`}) {
			t.Errorf("errors[2] = %+v", e)
		}
	})

	t.Run("bad header", func(t *testing.T) {
		tests := []struct{ header, want string }{
			{"id,kind,parent,name", `units.csv: header: unknown column "parent": want id,kind,parent_id,name`},
			{"id,kind,name", `units.csv: header: missing column "parent_id": want id,kind,parent_id,name`},
			{"id,kind,kind,parent_id,name", `units.csv: header: column "kind" appears twice`},
		}
		for _, tt := range tests {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "units.csv"), tt.header+"\nT09,town,,歧亭鎮\n")
			r := fieldctl(t, admin(e, tok, "import", "-dir", dir)...)
			if r.code != 1 || r.stderr != "fieldctl: "+tt.want+"\n" || r.stdout != "" {
				t.Errorf("header %q: exit %d, stdout %q, stderr %q; want %q", tt.header, r.code, r.stdout, r.stderr, tt.want)
			}
		}
		// A byte order mark (as Excel writes) and any column order are fine.
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "units.csv"), "\ufeffname,id,parent_id,kind\n歧亭鎮,T09,,town\n")
		var got importJSON
		decode(t, ok(t, admin(e, tok, "import", "-dir", dir, "-json")...), &got)
		if got.Units != 1 || got.Rejected != 0 {
			t.Errorf("BOM and reordered header: %+v", got)
		}
	})

	// A grid given another village in units.csv takes its households along:
	// G02 (H0006-H0008) moves from V01 to V02, and back.
	t.Run("moved grid", func(t *testing.T) {
		for _, to := range []string{"V02", "V01"} {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "units.csv"), "id,kind,parent_id,name\nG02,grid,"+to+",胡家塆\n")
			var got importJSON
			decode(t, ok(t, admin(e, tok, "import", "-dir", dir, "--json")...), &got)
			if got.Units != 1 || got.RecordsMoved != 3 || got.Rejected != 0 {
				t.Errorf("G02 to %s: %+v, want 1 unit and 3 records moved", to, got)
			}
		}
	})
}

// TestImportBatches imports more rows than one request carries (batch and
// progress sizes are lowered so that a few hundred rows do): progress is
// reported, and a rejected row in a later batch still names its line.
func TestImportBatches(t *testing.T) {
	defer func(b, p int) { importBatch, progressEvery = b, p }(importBatch, progressEvery)
	importBatch, progressEvery = 100, 200

	e := testenv.Start(t)
	tok := tokenFile(t, e)
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(orgDir, "units.csv"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "units.csv"), string(b))
	var h strings.Builder
	h.WriteString("id,grid_id,head,address,members\n")
	const n = 450
	for i := 1; i <= n; i++ {
		grid := "G01"
		if i == 250 {
			grid = "G09" // on line 251, in the third request
		}
		fmt.Fprintf(&h, "X%05d,%s,戶主%d,周家塆%d號,%d\n", i, grid, i, i, i%9+1)
	}
	writeFile(t, filepath.Join(dir, "households.csv"), h.String())

	r := fieldctl(t, admin(e, tok, "import", "-dir", dir, "--json")...)
	var got importJSON
	decode(t, r.stdout, &got)
	if r.code != 1 || got.Units != 6 || got.Households != n-1 || len(got.Errors) != 1 {
		t.Fatalf("exit %d, got %+v", r.code, got)
	}
	if e := got.Errors[0]; e != (rowError{File: "households.csv", Line: 251, Table: "households", Column: "grid_id", Message: `unknown grid "G09"`}) {
		t.Errorf("error: %+v", e)
	}
	wantErr := "fieldctl: households.csv: 200 rows read\nfieldctl: households.csv: 400 rows read\n" +
		"fieldctl: 100 of 456 rows sent\nfieldctl: 200 of 456 rows sent\nfieldctl: 300 of 456 rows sent\nfieldctl: 400 of 456 rows sent\nfieldctl: 456 of 456 rows sent\n" +
		"fieldctl: 1 row rejected (listed above); the other rows were imported\n"
	if r.stderr != wantErr {
		t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, wantErr)
	}
	// Every stored household is exported once, with progress.
	r = fieldctl(t, hq(e, tok, "export", "-kind", "household")...)
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var rec recordJSON
		decode(t, line, &rec)
		seen[rec.ID] = true
	}
	if r.code != 0 || len(seen) != n-1 || seen["X00250"] || !seen["X00251"] || !seen["X00450"] {
		t.Fatalf("export: exit %d, %d households", r.code, len(seen))
	}
	// The 6 units' changes come first: record versions skip their numbers.
	if want := "fieldctl: 200 records exported\nfieldctl: 400 records exported\nfieldctl: exported 449 records up to version 455 (next time: -after 455)\n"; r.stderr != want {
		t.Errorf("export stderr %q, want %q", r.stderr, want)
	}
}

// TestOfflineFieldWork is the life of a day in the field: devices enroll
// while syncd runs, work with syncd stopped, and sync when it is back on
// the same files and address; the secretary and HQ then see the work,
// Chinese text unchanged.
func TestOfflineFieldWork(t *testing.T) {
	e1 := testenv.Start(t)
	tok := tokenFile(t, e1)
	ok(t, admin(e1, tok, "import", "-dir", orgDir)...)

	dir := t.TempDir()
	member, mediator, secretary := filepath.Join(dir, "member.db"), filepath.Join(dir, "mediator.db"), filepath.Join(dir, "secretary.db")
	enroll := func(user, db, name string) {
		t.Helper()
		var code struct {
			Enrollment string `json:"enrollment"`
			Code       string `json:"code"`
			UserID     string `json:"user_id"`
			ExpiresMs  int64  `json:"expires_ms"`
		}
		decode(t, ok(t, admin(e1, tok, "enroll-code", "-user", user, "-ttl", "1d", "--json")...), &code)
		if code.UserID != user || len(code.Code) != 16 || time.Until(time.UnixMilli(code.ExpiresMs)) < 23*time.Hour ||
			code.Enrollment != syncer.FormatEnrollment(e1.Addr, code.Code, e1.CAFingerprint) {
			t.Fatalf("enroll-code: %+v", code)
		}
		out := ok(t, device(db, "enroll", "-name", name, code.Enrollment)...)
		if !strings.HasPrefix(out, "enrolled "+db+" as device d") || !strings.Contains(out, " of "+user+" ") {
			t.Fatalf("enroll: %q", out)
		}
	}
	enroll("U-m1", member, "周建國的手機")
	enroll("U-med1", mediator, "陳德厚的手機")
	enroll("U-sec1", secretary, "村委會電腦")

	// A used code is refused, and leaves no database behind.
	var code struct{ Enrollment string }
	decode(t, ok(t, admin(e1, tok, "enroll-code", "-user", "U-m2", "--json")...), &code)
	ok(t, device(filepath.Join(dir, "m2.db"), "enroll", code.Enrollment)...)
	spare := filepath.Join(dir, "spare.db")
	r := fieldctl(t, device(spare, "enroll", code.Enrollment)...)
	if r.code != 1 || !strings.Contains(r.stderr, "already used") {
		t.Errorf("reused code: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(spare); !os.IsNotExist(err) {
		t.Errorf("failed enroll left %s: %v", spare, err)
	}

	// The member's first sync brings the five linked households.
	if out := ok(t, device(member, "sync")...); out != "synced: sent 0 (applied 0, conflicts 0, rejected 0), received 5, removed 0, 1 round trip\n" {
		t.Errorf("first sync: %q", out)
	}
	var households []recordJSON
	decode(t, ok(t, device(member, "list", "household", "--json")...), &households)
	if got := ids(households); got != "H0001 H0002 H0003 H0004 H0005" {
		t.Fatalf("member's households: %s", got)
	}
	if h := households[1]; h.State != "synced" || h.Fields["head"] != "周金枝" || h.Fields["tags"] != "低保戶,獨居老人" {
		t.Errorf("H0002: %+v", h)
	}

	var devs []deviceJSON
	decode(t, ok(t, admin(e1, tok, "devices", "--json")...), &devs)
	names := map[string]string{}
	for _, d := range devs {
		names[d.UserID] = d.Name
	}
	if len(devs) != 4 || names["U-m1"] != "周建國的手機" || names["U-sec1"] != "村委會電腦" {
		t.Errorf("devices: %+v", devs)
	}

	// H0005 goes to another member; the member's device, not synced
	// since, still believes it linked.
	ok(t, admin(e1, tok, "assign", "-household", "H0005", "-member", "U-m2")...)

	// syncd stops: the field work goes on.
	e1.Stop()
	const needs = "屋頂漏水，需要修繕；孫子上學要助學金 <急> & \"盡快\""
	visit := strings.TrimSpace(ok(t, device(member, "visit", "add", "-household", "H0001", "-date", "2026-11-20",
		"-met", "周大海及其妻", "-needs", needs, "-follow-up", "下月回訪")...))
	if !domain.IsUUIDv7(visit) {
		t.Fatalf("visit add printed %q, want a UUIDv7", visit)
	}
	r = fieldctl(t, device(member, "visit", "add", "-household", "H0001", "-date", "2026-13-01")...)
	if r.code != 1 || r.stderr != "fieldctl: visit.visited_on: \"2026-13-01\" is not a date: want YYYY-MM-DD\n" {
		t.Errorf("bad date: exit %d, stderr %q", r.code, r.stderr)
	}
	r = fieldctl(t, device(member, "household", "edit", "-id", "H0002", "-head", "某人")...)
	if r.code != 1 || r.stderr != "fieldctl: household.head: a member may not change it: may change phone, members, tags, needs\n" {
		t.Errorf("member edits head: exit %d, stderr %q", r.code, r.stderr)
	}
	if out := ok(t, device(member, "household", "edit", "-id", "H0002", "-needs", "冬季取暖困難")...); out != "H0002 changed: pending until the next sync\n" {
		t.Errorf("household edit: %q", out)
	}
	// H0006 is not linked to this member, as the device knows since its
	// sync: refused here. H0005 was linked at that sync: accepted here,
	// refused by syncd.
	r = fieldctl(t, device(member, "visit", "add", "-household", "H0006", "-date", "2026-11-21")...)
	if r.code != 1 || !strings.HasPrefix(r.stderr, "fieldctl: visit.household_id: household H0006 is not linked to you") {
		t.Errorf("visit to an unlinked household: exit %d, stderr %q", r.code, r.stderr)
	}
	stray := strings.TrimSpace(ok(t, device(member, "visit", "add", "-household", "H0005", "-date", "2026-11-21")...))

	dispute := strings.TrimSpace(ok(t, device(mediator, "dispute", "open", "-category", "quarrel",
		"-title", "宅基地邊界爭吵", "-parties", "周大海；胡小林")...))
	ok(t, device(mediator, "dispute", "status", "-id", dispute, "-to", "mediating")...)
	ok(t, device(mediator, "dispute", "note", "-id", dispute, "雙方", "同意下週再談")...)
	if r := fieldctlIn(t, "第一次調解：\n雙方到場，各執一詞\n", device(mediator, "dispute", "session", "-id", dispute, "-")...); r.code != 0 {
		t.Fatalf("session from stdin: %+v", r)
	}
	r = fieldctl(t, device(mediator, "dispute", "status", "-id", dispute, "-to", "closed")...)
	if r.code != 1 || r.stderr != "fieldctl: dispute.status: mediating -> closed not allowed: from mediating a dispute may move to agreed, failed, withdrawn\n" {
		t.Errorf("forbidden transition: exit %d, stderr %q", r.code, r.stderr)
	}

	meeting := strings.TrimSpace(ok(t, device(secretary, "event", "add", "-type", "meeting",
		"-subject", "三會一課：支部黨員大會", "-date", "2026-11-20", "-detail", "學黨史、辦實事")...))
	today := strings.TrimSpace(ok(t, device(member, "event", "add", "-type", "service_request",
		"-subject", "代辦醫保續費", "-service-mode", "proxy")...))

	// Everything is on the devices, pending.
	var items []recordJSON
	decode(t, ok(t, device(member, "list", "--json")...), &items)
	states := map[string]string{}
	for _, it := range items {
		states[it.ID] = it.State
	}
	for id, want := range map[string]string{visit: "pending", stray: "pending", today: "pending", "H0002": "pending", "H0001": "synced"} {
		if states[id] != want {
			t.Errorf("member's %s is %q, want %q", id, states[id], want)
		}
	}
	var ev recordJSON
	decode(t, ok(t, device(member, "show", today, "--json")...), &ev)
	if ev.Fields["occurred_on"] != time.Now().Format("2006-01-02") || ev.Fields["village_id"] != "V01" || ev.Fields["service_mode"] != "proxy" {
		t.Errorf("event without -date: %+v", ev.Fields)
	}
	var disputes []recordJSON
	decode(t, ok(t, device(mediator, "list", "dispute", "--json")...), &disputes)
	if len(disputes) != 1 || disputes[0].ID != dispute || disputes[0].State != "pending" || disputes[0].Fields["status"] != "mediating" || len(disputes[0].Entries) != 2 {
		t.Fatalf("mediator's disputes: %+v", disputes)
	}
	var events []recordJSON
	decode(t, ok(t, device(secretary, "list", "event", "--json")...), &events)
	if len(events) != 1 || events[0].ID != meeting || events[0].State != "pending" {
		t.Fatalf("secretary's events: %+v", events)
	}

	var st statusJSON
	decode(t, ok(t, device(member, "status", "--json")...), &st)
	if st.UserID != "U-m1" || st.UserName != "周建國" || st.Role != "member" || st.VillageID != "V01" || st.Server != e1.Addr || st.Pending != 4 || st.Rejected != 0 {
		t.Errorf("member status offline: %+v", st)
	}
	r = fieldctl(t, device(member, "sync")...)
	if r.code != 1 || !strings.Contains(r.stderr, "the work is kept on the device") {
		t.Errorf("sync with syncd down: exit %d, stderr %q", r.code, r.stderr)
	}
	decode(t, ok(t, device(member, "status", "--json")...), &st)
	if st.Pending != 4 || st.LastError == "" {
		t.Errorf("after a failed sync: %+v", st)
	}

	// syncd is back on the same files and address, with the same
	// credential; the devices keep the address they enrolled with.
	e2 := testenv.Start(t, testenv.WithDir(e1.Dir), testenv.WithAddr(e1.Addr), testenv.WithAdminToken(e1.AdminToken))
	if r := fieldctl(t, device(member, "sync")...); r.code != exitRejected || !strings.HasPrefix(r.stdout, "synced: sent 4 (applied 3, conflicts 0, rejected 1)") ||
		!strings.Contains(r.stderr, stray) {
		t.Errorf("member sync: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	decode(t, ok(t, device(member, "list", "--json")...), &items)
	byID := map[string]recordJSON{}
	for _, it := range items {
		byID[it.ID] = it
	}
	for _, id := range []string{visit, today, "H0002"} {
		if it := byID[id]; it.State != "synced" || it.Version == 0 {
			t.Errorf("after sync %s: state %q version %d", id, it.State, it.Version)
		}
	}
	if it := byID[stray]; it.State != "rejected" || it.Reason != "visit.household_id: household H0005 is not linked to you" {
		t.Errorf("stray visit: %+v", it)
	}
	var rejs []rejectionJSON
	decode(t, ok(t, device(member, "rejections", "--json")...), &rejs)
	if len(rejs) != 1 || rejs[0] != (rejectionJSON{Seq: 3, RecordID: stray, Kind: "visit", Op: "create", Code: "permission_denied",
		Field: "visit.household_id", Reason: "household H0005 is not linked to you"}) {
		t.Errorf("rejections: %+v", rejs)
	}
	decode(t, ok(t, device(member, "status", "--json")...), &st)
	if st.Pending != 0 || st.Rejected != 1 || st.LastError != "" || st.LastSyncMs == 0 {
		t.Errorf("member status after sync: %+v", st)
	}

	ok(t, device(mediator, "sync")...)
	var d recordJSON
	decode(t, ok(t, device(mediator, "show", dispute, "--json")...), &d)
	if d.State != "synced" || d.Fields["status"] != "mediating" || d.Fields["title"] != "宅基地邊界爭吵" || d.Fields["mediators"] != "U-med1" || len(d.Entries) != 2 ||
		d.Entries[0].Field != "notes" || d.Entries[0].Text != "雙方 同意下週再談" ||
		d.Entries[1].Field != "sessions" || d.Entries[1].Text != "第一次調解：\n雙方到場，各執一詞" {
		t.Errorf("dispute after sync: %+v", d)
	}

	// The secretary of the same village sees the member's visit.
	ok(t, device(secretary, "sync")...)
	var seen []recordJSON
	decode(t, ok(t, device(secretary, "list", "visit", "--json")...), &seen)
	if len(seen) != 1 || seen[0].ID != visit || seen[0].State != "synced" || seen[0].Fields["needs"] != needs || seen[0].AuthorID != "U-m1" {
		t.Fatalf("secretary's visits: %+v", seen)
	}
	if out := ok(t, device(secretary, "-lang", "en", "show", visit)...); !strings.Contains(out, "\n  needs         "+needs+"\n") {
		t.Errorf("show prints the text as stored:\n%s", out)
	}
	if out := ok(t, device(secretary, "-lang", "en", "list", "visit")...); !strings.Contains(out, visit+"  visit  synced  H0001 2026-11-20 屋頂漏水") {
		t.Errorf("list table:\n%s", out)
	}

	t.Run("export ndjson", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "all.ndjson")
		r := fieldctl(t, hq(e2, tok, "export", "-format", "ndjson", "-o", file)...)
		if r.code != 0 {
			t.Fatalf("export: %+v", r)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		recs := map[string]recordJSON{}
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var rec recordJSON
			decode(t, line, &rec)
			count[rec.ID]++
			recs[rec.ID] = rec
		}
		for id, n := range count {
			if n != 1 {
				t.Errorf("%s exported %d times", id, n)
			}
		}
		// 12 households, the visit, the dispute, two events; not the refused visit.
		if len(count) != 16 || count[stray] != 0 {
			t.Errorf("exported %d records (%v), want 16", len(count), count)
		}
		if !strings.Contains(r.stderr, "exported 16 records up to version ") {
			t.Errorf("stderr: %q", r.stderr)
		}
		if v := recs[visit]; v.Kind != "visit" || v.Fields["needs"] != needs || v.Fields["met"] != "周大海及其妻" || v.AuthorID != "U-m1" || v.Version == 0 {
			t.Errorf("exported visit: %+v", v)
		}
		// The bytes themselves: no \u escapes, no HTML escapes.
		if !bytes.Contains(b, []byte(`"needs":"屋頂漏水，需要修繕；孫子上學要助學金 <急> & \"盡快\""`)) {
			t.Errorf("export does not carry the text byte for byte")
		}
		if h := recs["H0002"]; h.Fields["head"] != "周金枝" || h.Fields["tags"] != "低保戶,獨居老人" || h.Fields["needs"] != "冬季取暖困難" {
			t.Errorf("exported H0002: %+v", h.Fields)
		}
		if m := recs[meeting]; m.Fields["subject"] != "三會一課：支部黨員大會" || m.Fields["detail"] != "學黨史、辦實事" || len(m.Fields["hash"]) != 64 {
			t.Errorf("exported meeting: %+v", m.Fields)
		}
		if ds := recs[dispute]; len(ds.Entries) != 2 || ds.Entries[1].Text != "第一次調解：\n雙方到場，各執一詞" {
			t.Errorf("exported dispute entries: %+v", ds.Entries)
		}

		// -after and -kind narrow it.
		var after []recordJSON
		out := ok(t, hq(e2, tok, "export", "-kind", "visit,dispute")...)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var rec recordJSON
			decode(t, line, &rec)
			after = append(after, rec)
		}
		if got := ids(after); got != visit+" "+dispute && got != dispute+" "+visit {
			t.Errorf("-kind visit,dispute exported %s, want %s and %s", got, visit, dispute)
		}
		last := recs[visit].Version
		for _, rec := range recs {
			last = max(last, rec.Version)
		}
		if out := ok(t, hq(e2, tok, "export", "-after", strconvU(last))...); out != "" {
			t.Errorf("-after the last version: %q", out)
		}
	})

	t.Run("export csv", func(t *testing.T) {
		out := ok(t, hq(e2, tok, "export", "-format", "csv", "-kind", "household")...)
		rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "\ufeff"))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		// member_id: the link, written into the record by the import's assignments.
		want := "id,kind,version,author_id,voided,void_reason,void_by,voided_at,opened_at,closed_at,attachments,address,grid_id,head,member_id,members,needs,phone,tags"
		if got := strings.Join(rows[0], ","); got != want {
			t.Fatalf("header %s, want %s", got, want)
		}
		if len(rows) != 13 {
			t.Fatalf("%d rows, want 13", len(rows))
		}
		for _, row := range rows[1:] {
			if row[0] == "H0002" {
				if got := strings.Join(row[4:], "|"); got != "0|||||||堰頭垸村周家塆3號|G01|周金枝|U-m1|1|冬季取暖困難||低保戶,獨居老人" {
					t.Errorf("H0002 row: %s", got)
				}
				return
			}
		}
		t.Errorf("no H0002 row:\n%s", out)
	})

	t.Run("tail", func(t *testing.T) {
		last, err := e2.Store.LastSeq(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := e2.Server.Relay().WaitPublished(t.Context(), last); err != nil {
			t.Fatal(err)
		}
		// With an HQ credential, as HQ on another machine would.
		nk := e2.HQCredential(t, "hq-tail")
		out := ok(t, "hq", "tail", "-nats", e2.NATS.ClientURL(), "-nats-nkey", nk, "-from-start", "-n", strconvU(last), "--json")
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if uint64(len(lines)) != last {
			t.Fatalf("%d lines, want %d", len(lines), last)
		}
		seen := map[string]bool{}
		var visitChange *changeJSON
		for i, line := range lines {
			var ch changeJSON
			decode(t, line, &ch)
			bodies := 0
			for _, set := range []bool{ch.Record != nil, ch.Unit != nil, ch.Person != nil, ch.Link != nil, ch.Device != nil, ch.Refused != nil} {
				if set {
					bodies++
				}
			}
			if ch.Seq != uint64(i+1) || seen[ch.ChangeID] || bodies != 1 || ch.Kind == "" || ch.Kind == "unknown" {
				t.Fatalf("line %d: %s", i, line)
			}
			seen[ch.ChangeID] = true
			if ch.Record != nil && ch.Record.ID == visit {
				visitChange = &ch
			}
		}
		if visitChange == nil || visitChange.Subject != "fieldsync.changes.T01.visit" || visitChange.Region != "T01" ||
			visitChange.UserID != "U-m1" || visitChange.Record.Fields["needs"] != needs {
			t.Errorf("the visit's change: %+v", visitChange)
		}
		// A subject filter and the line format.
		out = ok(t, "hq", "tail", "-nats", e2.NATS.ClientURL(), "-nats-nkey", nk, "-from-start", "-n", "1", "-subject", "fieldsync.changes.*.dispute")
		f := strings.Fields(out)
		if len(f) != 6 || f[2] != "fieldsync.changes.T01.dispute" || f[3] != dispute || f[4] != "dispute" || !strings.HasPrefix(f[5], "v") {
			t.Errorf("tail line: %q", out)
		}
	})

	t.Run("devices", func(t *testing.T) {
		var devs []deviceJSON
		decode(t, ok(t, admin(e2, tok, "devices", "-user", "U-m1", "--json")...), &devs)
		if len(devs) != 1 || devs[0].Name != "周建國的手機" || devs[0].LastSeq != 4 || devs[0].PendingCount != 0 || devs[0].AppVersion != appVersion || devs[0].Revoked {
			t.Errorf("member's device: %+v", devs)
		}
		out := ok(t, admin(e2, tok, "devices")...)
		if !strings.HasPrefix(out, "ID ") || strings.Count(out, "\n") != 5 || !strings.Contains(out, "周建國的手機") {
			t.Errorf("devices table:\n%s", out)
		}
	})

	t.Run("run", func(t *testing.T) {
		id := strings.TrimSpace(ok(t, device(member, "event", "add", "-type", "party_day", "-subject", "主題黨日：學黨史", "-date", "2026-11-22")...))
		ctx, cancel := context.WithCancel(t.Context())
		var out lockedBuffer
		done := make(chan error, 1)
		go func() { done <- run(ctx, device(member, "run", "-interval", "1h"), strings.NewReader(""), &out, &out) }()
		testenv.WaitFor(t, 20*time.Second, "run to report a sync", func() bool {
			return strings.Contains(out.String(), " synced: 0 pending, 1 rejected, ")
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run: %v", err)
		}
		if s := out.String(); !strings.HasPrefix(s, "fieldctl: syncing "+member+" with "+e2.Addr+" every 1h0m0s; Ctrl-C stops\n") || !strings.HasSuffix(s, "fieldctl: stopped\n") {
			t.Errorf("run output:\n%s", s)
		}
		var it recordJSON
		decode(t, ok(t, device(member, "show", id, "--json")...), &it)
		if it.State != "synced" || it.Fields["subject"] != "主題黨日：學黨史" {
			t.Errorf("event after run: %+v", it)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		var devs []deviceJSON
		decode(t, ok(t, admin(e2, tok, "devices", "-user", "U-sec1", "--json")...), &devs)
		if len(devs) != 1 {
			t.Fatalf("secretary's devices: %+v", devs)
		}
		ok(t, admin(e2, tok, "revoke", "-device", devs[0].ID)...)
		r := fieldctl(t, device(secretary, "sync")...)
		if r.code != 1 || !strings.Contains(r.stderr, "device revoked by an administrator: local data wiped") {
			t.Errorf("revoked sync: %+v", r)
		}
		r = fieldctl(t, admin(e2, tok, "revoke", "-device", "dnosuch")...)
		if r.code != 1 || !strings.Contains(r.stderr, `unknown device "dnosuch"`) {
			t.Errorf("revoke unknown: %+v", r)
		}
	})
}

func ids(recs []recordJSON) string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return strings.Join(out, " ")
}

func strconvU(n uint64) string { return strconv.FormatUint(n, 10) }

// copyOrg copies the example org to a temporary directory.
func copyOrg(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range orgFiles {
		b, err := os.ReadFile(filepath.Join(orgDir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, f.name), string(b))
	}
	return dir
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer is a bytes.Buffer safe for a goroutine to write while the
// test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
