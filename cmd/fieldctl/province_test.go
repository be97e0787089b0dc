package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// provinceDir is the example province: two regions' org in one set of
// files, and a regions file.
const provinceDir = "../../examples/province"

// xiaonanAdvertise is the address the test's regions file gives phones
// for region xiaonan; yunmeng has none, so its codes carry its server.
const xiaonanAdvertise = "xiaonan.fieldsync.example.cn:7443"

// startRegion starts a syncd that is region r, with its own database and
// embedded NATS, and opts (a restart passes the old dir, address, token).
func startRegion(t *testing.T, r string, opts ...testenv.Option) *testenv.Env {
	t.Helper()
	return testenv.Start(t, append([]testenv.Option{testenv.WithSyncdConfig(func(c *syncd.Config) { c.Region = r })}, opts...)...)
}

// writeRegionsFile writes a regions file for the two regions' servers as
// an operator would set it up: each region's admin.token and ca.pem copied
// into a folder beside the file (xiaonan's CA named in the ca column,
// yunmeng's left to the default tls/ca.pem beside its token), paths
// relative to the file.
func writeRegionsFile(t *testing.T, x, y *testenv.Env) string {
	t.Helper()
	dir := t.TempDir()
	copyTo := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []string{"xiaonan", "yunmeng"} {
		if err := os.MkdirAll(filepath.Join(dir, "secrets", r), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "secrets", "xiaonan", "admin.token"), x.AdminToken+"\n")
	copyTo(caFile(x), filepath.Join(dir, "secrets", "xiaonan", "ca.pem"))
	writeFile(t, filepath.Join(dir, "secrets", "yunmeng", "admin.token"), y.AdminToken+"\n")
	copyTo(caFile(y), filepath.Join(dir, "secrets", "yunmeng", "tls", "ca.pem"))
	path := filepath.Join(dir, "regions.csv")
	writeFile(t, path, "region,server,ca,token_file,advertise\n"+
		"xiaonan,"+x.Addr+",secrets/xiaonan/ca.pem,secrets/xiaonan/admin.token,"+xiaonanAdvertise+"\n"+
		"yunmeng,"+y.Addr+",,secrets/yunmeng/admin.token,\n")
	return path
}

// orgOf is what a server's database holds of the org: unit, person and
// household ids with names, and the links, each sorted.
type orgOf struct{ units, users, households, links []string }

func readOrgOf(t *testing.T, e *testenv.Env) orgOf {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.Dir, "fieldsync.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	list := func(q string) []string {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	return orgOf{
		units:      list("SELECT id || ' ' || name FROM units ORDER BY id"),
		users:      list("SELECT id || ' ' || name FROM users ORDER BY id"),
		households: list("SELECT id FROM records WHERE kind = 1 ORDER BY id"),
		links:      list("SELECT household_id || '>' || member_id FROM links ORDER BY household_id"),
	}
}

// provinceJSON is fieldctl admin import -regions --json.
type provinceJSON struct {
	Regions []struct {
		Region, Server, Status, Error               string
		Rows, Units, Users, Households, Assignments int
		RecordsMoved                                int `json:"records_moved"`
		Rejected                                    int
		Errors                                      []rowError
	}
	Units, Users, Households, Assignments, Rejected int
	Failed                                          []string
	Sent                                            bool
	Errors                                          []rowError
}

func TestProvinceImportAndEnroll(t *testing.T) {
	x, y := startRegion(t, "xiaonan"), startRegion(t, "yunmeng")
	regions := writeRegionsFile(t, x, y)
	padmin := func(args ...string) []string { return append([]string{"admin", "-regions", regions}, args...) }

	wantX := orgOf{
		units:      []string{"xiaonan-G01 王家灣", "xiaonan-G02 李家灣", "xiaonan-T01 毛陳鎮", "xiaonan-V01 雙峰村"},
		users:      []string{"xiaonan-U-m1 王志華", "xiaonan-U-m2 李春蘭", "xiaonan-U-med1 王德順", "xiaonan-U-sec1 李國強"},
		households: []string{"xiaonan-H0001", "xiaonan-H0002", "xiaonan-H0003", "xiaonan-H0004"},
		links: []string{"xiaonan-H0001>xiaonan-U-m1", "xiaonan-H0002>xiaonan-U-m1", "xiaonan-H0003>xiaonan-U-m2",
			"xiaonan-H0004>xiaonan-U-m2"},
	}
	wantY := orgOf{
		units:      []string{"yunmeng-G01 陳家塆", "yunmeng-T01 義堂鎮", "yunmeng-V01 倒店村"},
		users:      []string{"yunmeng-U-m1 陳建軍", "yunmeng-U-med1 陳秀英"},
		households: []string{"yunmeng-H0001", "yunmeng-H0002", "yunmeng-H0003"},
		links:      []string{"yunmeng-H0001>yunmeng-U-m1", "yunmeng-H0002>yunmeng-U-m1", "yunmeng-H0003>yunmeng-U-m1"},
	}
	checkOrg := func(t *testing.T, e *testenv.Env, want orgOf) {
		t.Helper()
		got := readOrgOf(t, e)
		for _, c := range []struct {
			what      string
			got, want []string
		}{{"units", got.units, want.units}, {"users", got.users, want.users},
			{"households", got.households, want.households}, {"links", got.links, want.links}} {
			if strings.Join(c.got, "|") != strings.Join(c.want, "|") {
				t.Errorf("%s holds %s:\n%q\nwant exactly:\n%q", e.Addr, c.what, c.got, c.want)
			}
		}
	}

	t.Run("import", func(t *testing.T) {
		r := fieldctl(t, padmin("import", provinceDir, "--json")...)
		if r.code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		var got provinceJSON
		decode(t, r.stdout, &got)
		if len(got.Regions) != 2 || !got.Sent || len(got.Failed) != 0 || got.Rejected != 0 {
			t.Fatalf("summary %+v", got)
		}
		for i, w := range []struct {
			region, server                              string
			rows, units, users, households, assignments int
		}{{"xiaonan", x.Addr, 16, 4, 4, 4, 4}, {"yunmeng", y.Addr, 11, 3, 2, 3, 3}} {
			g := got.Regions[i]
			if g.Region != w.region || g.Server != w.server || g.Status != "imported" || g.Rows != w.rows || g.Units != w.units ||
				g.Users != w.users || g.Households != w.households || g.Assignments != w.assignments || g.Rejected != 0 || g.Error != "" {
				t.Errorf("region %d: %+v, want %+v", i, g, w)
			}
		}
		if got.Units != 7 || got.Users != 6 || got.Households != 7 || got.Assignments != 7 {
			t.Errorf("totals %+v", got)
		}
		// Progress per region, on stderr.
		for _, s := range []string{"fieldctl: xiaonan: importing 16 rows into syncd at " + x.Addr, "fieldctl: xiaonan: done",
			"fieldctl: yunmeng: importing 11 rows into syncd at " + y.Addr, "fieldctl: yunmeng: done"} {
			if !strings.Contains(r.stderr, s+"\n") {
				t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
			}
		}
		checkOrg(t, x, wantX)
		checkOrg(t, y, wantY)

		// Again, as a table: nothing changes, nothing moves.
		out := ok(t, padmin("import", "-dir", provinceDir)...)
		for _, s := range []string{"REGION ", "xiaonan  " + x.Addr, "yunmeng  " + y.Addr, "imported", "total"} {
			if !strings.Contains(out, s) {
				t.Errorf("summary lacks %q:\n%s", s, out)
			}
		}
		checkOrg(t, x, wantX)
		checkOrg(t, y, wantY)
	})

	// Batches smaller than a region's rows: progress names the region.
	t.Run("batches", func(t *testing.T) {
		defer func(b int) { importBatch = b }(importBatch)
		importBatch = 5
		r := fieldctl(t, padmin("import", provinceDir)...)
		if r.code != 0 {
			t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
		}
		for _, s := range []string{"fieldctl: xiaonan: 5 of 16 rows sent", "fieldctl: xiaonan: 16 of 16 rows sent",
			"fieldctl: yunmeng: 10 of 11 rows sent", "fieldctl: yunmeng: 11 of 11 rows sent"} {
			if !strings.Contains(r.stderr, s+"\n") {
				t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
			}
		}
		checkOrg(t, x, wantX)
		checkOrg(t, y, wantY)
	})

	t.Run("refused rows send nothing", func(t *testing.T) {
		dir := t.TempDir()
		for _, f := range []string{"units.csv", "users.csv", "households.csv", "assignments.csv"} {
			b, err := os.ReadFile(filepath.Join(provinceDir, f))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, f), string(b))
		}
		appendFile(t, filepath.Join(dir, "households.csv"), ""+
			"xiaonan-H0005,xiaonan-G01,王新戶,雙峰村王家灣20號,,2,\n"+ // line 9: fine alone
			"yunmeng-H0004,xiaonan-G01,錯區戶,某處,,1,\n"+ // line 10: grid in another region
			"H0099,xiaonan-G01,無區戶,某處,,1,\n") // line 11: no region
		appendFile(t, filepath.Join(dir, "assignments.csv"), "hanchuan-H0001,hanchuan-U-m1\n")  // line 9: region not in the file
		appendFile(t, filepath.Join(dir, "units.csv"), "xiaonan-G09,county,xiaonan-V01,錯誤級別\n") // line 9: cannot be read
		r := fieldctl(t, padmin("import", dir)...)
		want := []string{
			`units.csv:9: kind: "county" is not a unit kind: want town, village or grid`,
			`households.csv:10: grid_id: "xiaonan-G01" lies in region xiaonan, the row in region yunmeng (id "yunmeng-H0004"): a household's grid is in its own region`,
			`households.csv:11: id: id "H0099" names no region: with -regions every id starts with its region and "-" (xiaonan-..., yunmeng-...)`,
			`assignments.csv:9: household_id: household_id "hanchuan-H0001" is region "hanchuan"'s, which ` + regions + ` does not list: want xiaonan-..., yunmeng-... (add the region to the file, or fix the id)`,
			`fieldctl: 4 rows refused (listed above): nothing was sent to any region; fix the files and run the import again`,
		}
		if r.code != 1 || strings.TrimSpace(r.stderr) != strings.Join(want, "\n") || r.stdout != "" {
			t.Errorf("exit %d, stdout %q\nstderr:\n%s\nwant:\n%s", r.code, r.stdout, r.stderr, strings.Join(want, "\n"))
		}
		// xiaonan-H0005 was fine, but nothing went anywhere: a row that
		// cannot be read stops a province's import too.
		checkOrg(t, x, wantX)
		checkOrg(t, y, wantY)

		// More than 20 refusals: the first 20 and a count.
		var many strings.Builder
		for i := range 25 {
			many.WriteString("H9" + string(rune('A'+i)) + ",G01,某人,,,1,\n")
		}
		appendFile(t, filepath.Join(dir, "households.csv"), many.String())
		r = fieldctl(t, padmin("import", dir)...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 1 || len(lines) != 22 || lines[20] != "... and 9 more" || !strings.HasPrefix(lines[21], "fieldctl: 29 rows refused") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		// --json lists them all.
		r = fieldctl(t, padmin("import", dir, "--json")...)
		var got provinceJSON
		decode(t, r.stdout, &got)
		if r.code != 1 || got.Sent || got.Rejected != 29 || len(got.Errors) != 29 || len(got.Regions) != 0 {
			t.Errorf("exit %d, %+v", r.code, got)
		}
	})

	t.Run("enroll-code", func(t *testing.T) {
		// xiaonan's code carries its advertise address, and is xiaonan's.
		var code map[string]any
		decode(t, ok(t, padmin("enroll-code", "-user", "xiaonan-U-m1", "--json")...), &code)
		en, err := syncer.ParseEnrollment(code["enrollment"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if en.Addr != xiaonanAdvertise || en.CA != x.CAFingerprint || code["region"] != "xiaonan" {
			t.Errorf("xiaonan's code: address %s, CA %s, region %v; want %s, %s, xiaonan", en.Addr, en.CA, code["region"], xiaonanAdvertise, x.CAFingerprint)
		}
		if n := outstandingCodes(t, x, "xiaonan-U-m1"); n != 1 {
			t.Errorf("xiaonan holds %d outstanding codes for xiaonan-U-m1, want 1", n)
		}
		if n := outstandingCodes(t, y, ""); n != 0 {
			t.Errorf("yunmeng holds %d codes, want none", n)
		}
		// yunmeng has no advertise: its code carries its server, and a
		// phone enrolls with it and gets yunmeng's households.
		q := strings.TrimSpace(ok(t, padmin("enroll-code", "-user", "yunmeng-U-m1", "-q")...))
		if en, err := syncer.ParseEnrollment(q); err != nil || en.Addr != y.Addr || en.CA != y.CAFingerprint {
			t.Fatalf("yunmeng's code %q: %+v, %v; want address %s", q, en, err, y.Addr)
		}
		db := filepath.Join(t.TempDir(), "phone.db")
		ok(t, device(db, "enroll", q)...)
		ok(t, device(db, "sync")...)
		var hh []map[string]any
		decode(t, ok(t, device(db, "list", "household", "--json")...), &hh)
		var ids []string
		for _, h := range hh {
			ids = append(ids, h["id"].(string))
		}
		if strings.Join(ids, " ") != strings.Join(wantY.households, " ") {
			t.Errorf("the yunmeng phone holds households %v, want %v", ids, wantY.households)
		}
		// A user id of no region, or of a region not in the file: refused
		// before any server is asked.
		for _, tt := range []struct{ user, want string }{
			{"U-m1", `-user "U-m1" names no region`},
			{"hanchuan-U-m1", `-user "hanchuan-U-m1" is region "hanchuan"'s, which ` + regions + ` does not list`},
		} {
			r := fieldctl(t, padmin("enroll-code", "-user", tt.user)...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("-user %s: exit %d, stderr %q; want %q", tt.user, r.code, r.stderr, tt.want)
			}
		}
		if n := outstandingCodes(t, x, ""); n != 1 {
			t.Errorf("xiaonan holds %d outstanding codes, want still 1", n)
		}
	})

	t.Run("FIELDCTL_REGIONS", func(t *testing.T) {
		t.Setenv("FIELDCTL_REGIONS", regions)
		q := strings.TrimSpace(ok(t, "admin", "enroll-code", "-user", "yunmeng-U-med1", "-q"))
		if en, err := syncer.ParseEnrollment(q); err != nil || en.Addr != y.Addr {
			t.Errorf("code %q with FIELDCTL_REGIONS: %+v, %v; want yunmeng's address %s", q, en, err, y.Addr)
		}
		if n := outstandingCodes(t, y, "yunmeng-U-med1"); n != 1 {
			t.Errorf("yunmeng holds %d outstanding codes for yunmeng-U-med1, want 1", n)
		}
	})

	t.Run("assign and one-server commands", func(t *testing.T) {
		if out := ok(t, padmin("assign", "-household", "xiaonan-H0001", "-member", "xiaonan-U-m2")...); out != "xiaonan-H0001 linked to xiaonan-U-m2 (previously xiaonan-U-m1)\n" {
			t.Errorf("assign: %q", out)
		}
		ok(t, padmin("assign", "-household", "xiaonan-H0001", "-member", "xiaonan-U-m1")...)
		r := fieldctl(t, padmin("assign", "-household", "xiaonan-H0001", "-member", "yunmeng-U-m1")...)
		if r.code != 2 || !strings.Contains(r.stderr, `-member "yunmeng-U-m1" lies in region yunmeng, -household "xiaonan-H0001" in region xiaonan`) {
			t.Errorf("cross-region assign: exit %d, stderr %q", r.code, r.stderr)
		}
		checkOrg(t, x, wantX)
		// devices -user goes to the user's region.
		var devs []deviceJSON
		decode(t, ok(t, padmin("devices", "-user", "yunmeng-U-m1", "--json")...), &devs)
		if len(devs) != 1 || devs[0].UserID != "yunmeng-U-m1" {
			t.Errorf("yunmeng-U-m1's devices: %+v", devs)
		}
		// users and codes go to the id's region too.
		if out := ok(t, padmin("users", "disable", "xiaonan-U-sec1")...); !strings.HasPrefix(out, "disabled xiaonan-U-sec1:") {
			t.Errorf("users disable: %q", out)
		}
		if out := ok(t, padmin("users", "enable", "xiaonan-U-sec1")...); !strings.HasPrefix(out, "enabled xiaonan-U-sec1 ") {
			t.Errorf("users enable: %q", out)
		}
		var codes []codeJSON
		decode(t, ok(t, padmin("codes", "list", "--user", "yunmeng-U-m1", "--json")...), &codes)
		if len(codes) != 1 || codes[0].UserID != "yunmeng-U-m1" || codes[0].State != "used" {
			t.Errorf("yunmeng-U-m1's codes: %+v", codes)
		}
		ok(t, padmin("enroll-code", "-user", "xiaonan-U-m2", "-q")...)
		if out := ok(t, padmin("codes", "cancel", "--user", "xiaonan-U-m2")...); !strings.HasPrefix(out, "codes cancelled: ") || strings.HasSuffix(out, "none\n") {
			t.Errorf("codes cancel: %q", out)
		}
		if n := outstandingCodes(t, x, "xiaonan-U-m2"); n != 0 {
			t.Errorf("xiaonan-U-m2 still has %d outstanding codes", n)
		}
		// devices with neither -user nor -region: every region's.
		decode(t, ok(t, padmin("devices", "--json")...), &devs)
		if len(devs) != 1 || devs[0].UserID != "yunmeng-U-m1" || devs[0].Region != "yunmeng" {
			t.Errorf("every region's devices: %+v", devs)
		}
		if out := ok(t, padmin("devices")...); !strings.HasPrefix(out, "REGION ") || !strings.Contains(out, "\nyunmeng  ") {
			t.Errorf("devices table:\n%s", out)
		}
		// A command that names nobody needs -region.
		r = fieldctl(t, padmin("codes", "list")...)
		if r.code != 2 || !strings.Contains(r.stderr, "give -region NAME, one of xiaonan, yunmeng") {
			t.Errorf("codes list without -region: exit %d, stderr %q", r.code, r.stderr)
		}
		decode(t, ok(t, padmin("-region", "xiaonan", "devices", "--json")...), &devs)
		if len(devs) != 0 {
			t.Errorf("xiaonan's devices: %+v, want none", devs)
		}
		r = fieldctl(t, padmin("-region", "xiaonan", "enroll-code", "-user", "yunmeng-U-m1")...)
		if r.code != 2 || !strings.Contains(r.stderr, `-region xiaonan, but -user "yunmeng-U-m1" is region yunmeng's`) {
			t.Errorf("-region against the id: exit %d, stderr %q", r.code, r.stderr)
		}
		r = fieldctl(t, padmin("-server", x.Addr, "devices")...)
		if r.code != 2 || !strings.Contains(r.stderr, "-regions and -server") {
			t.Errorf("-regions with -server: exit %d, stderr %q", r.code, r.stderr)
		}
	})

	// A regions file whose xiaonan row names yunmeng's syncd (server, CA
	// and credential all yunmeng's): yunmeng's syncd, a region, refuses
	// every row of xiaonan and stores none of them.
	t.Run("a region's row naming another region's syncd", func(t *testing.T) {
		wrong := filepath.Join(filepath.Dir(regions), "wrong.csv")
		writeFile(t, wrong, "region,server,ca,token_file,advertise\n"+
			"xiaonan,"+y.Addr+",,secrets/yunmeng/admin.token,\n")
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "households.csv"), "id,grid_id,head\nxiaonan-H0007,xiaonan-G01,王錯送\n")
		r := fieldctl(t, "admin", "-regions", wrong, "import", dir, "--json")
		var got provinceJSON
		decode(t, r.stdout, &got)
		if r.code != 1 || len(got.Regions) != 1 || got.Regions[0].Status != "rejected rows" || got.Rejected != 1 ||
			!strings.Contains(got.Errors[0].Message, `this server is region "yunmeng"`) || got.Errors[0].Line != 2 || got.Errors[0].Region != "xiaonan" {
			t.Errorf("exit %d, %+v\nstderr: %s", r.code, got, r.stderr)
		}
		checkOrg(t, x, wantX)
		checkOrg(t, y, wantY)
	})

	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		var out, errb strings.Builder
		err := run(ctx, padmin("import", provinceDir, "--json"), strings.NewReader(""), &out, &errb)
		var got provinceJSON
		decode(t, out.String(), &got)
		if err == nil || !strings.Contains(err.Error(), "run the same command again with -region xiaonan, then with -region yunmeng") {
			t.Errorf("error %v", err)
		}
		if len(got.Regions) != 2 || got.Regions[0].Status != "not sent" || got.Regions[1].Status != "not sent" ||
			strings.Join(got.Failed, ",") != "xiaonan,yunmeng" {
			t.Errorf("interrupted import: %+v", got)
		}
	})

	t.Run("a region down", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "households.csv"), "id,grid_id,head\n"+
			"xiaonan-H0009,xiaonan-G02,李後來\n"+
			"yunmeng-H0009,yunmeng-G01,陳後來\n")
		yDir, yAddr, yToken := y.Dir, y.Addr, y.AdminToken
		y.Stop()
		r := fieldctl(t, padmin("import", dir)...)
		if r.code != 1 {
			t.Fatalf("exit %d with yunmeng down\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		for _, s := range []string{"fieldctl: yunmeng: FAILED: import: syncd at " + yAddr + " unavailable",
			"the import into region yunmeng failed (above); the other regions' rows were imported",
			"is it running? the server column of " + regions + ":3 sets the address",
			"run the same command again with -region yunmeng"} {
			if !strings.Contains(r.stderr, s) {
				t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
			}
		}
		if !strings.Contains(r.stdout, "failed") {
			t.Errorf("summary does not say failed:\n%s", r.stdout)
		}
		if got := readOrgOf(t, x).households; strings.Join(got, " ") != strings.Join(append(wantX.households, "xiaonan-H0009"), " ") {
			t.Errorf("xiaonan holds %v: its row went in even though yunmeng was down?", got)
		}
		// Every region's devices: xiaonan's listed, yunmeng named.
		r = fieldctl(t, padmin("devices", "--json")...)
		var devs []deviceJSON
		decode(t, r.stdout, &devs)
		if r.code != 1 || len(devs) != 0 || !strings.Contains(r.stderr, "fieldctl: yunmeng: list devices: syncd at "+yAddr+" unavailable") ||
			!strings.Contains(r.stderr, "the devices of yunmeng are not listed (above): the other regions' are") {
			t.Errorf("devices with yunmeng down: exit %d, %+v, stderr %q", r.code, devs, r.stderr)
		}
		// yunmeng comes back; the operator runs the same command with
		// -region yunmeng: only its rows go, xiaonan is not asked.
		y2 := startRegion(t, "yunmeng", testenv.WithDir(yDir), testenv.WithAddr(yAddr), testenv.WithAdminToken(yToken))
		x.Stop() // were xiaonan asked, the command would fail
		var got provinceJSON
		decode(t, ok(t, padmin("-region", "yunmeng", "import", dir, "--json")...), &got)
		if len(got.Regions) != 1 || got.Regions[0].Region != "yunmeng" || got.Regions[0].Households != 1 || got.Regions[0].Status != "imported" {
			t.Errorf("-region yunmeng: %+v", got)
		}
		if got := readOrgOf(t, y2).households; strings.Join(got, " ") != strings.Join(append(wantY.households, "yunmeng-H0009"), " ") {
			t.Errorf("yunmeng holds %v", got)
		}
	})
}

// outstandingCodes counts e's outstanding enrollment codes (of one user,
// or all with "").
func outstandingCodes(t *testing.T, e *testenv.Env, user string) int {
	t.Helper()
	admin, ctx := e.Admin()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := admin.ListEnrollmentCodes(ctx, &pb.ListEnrollmentCodesRequest{UserId: user, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range resp.GetCodes() {
		if c.GetUsedMs() == 0 && c.GetCancelledMs() == 0 {
			n++
		}
	}
	return n
}
