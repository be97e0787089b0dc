package main

import (
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

func TestParseRegions(t *testing.T) {
	base := filepath.Join("srv", "province")
	path := filepath.Join(base, "regions.csv")
	t.Run("good", func(t *testing.T) {
		in := "\ufeff" + `region,server,ca,token_file,advertise
# the county seat
xiaonan,10.0.1.5:7443,xiaonan/ca.pem,xiaonan/admin.token,xiaonan.example.cn:7443
yunmeng, 10.0.2.5:7443 ,,/etc/fieldsync/yunmeng.token,
`
		f, err := parseRegions(path, strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(f.names(), ","); got != "xiaonan,yunmeng" {
			t.Fatalf("regions %s", got)
		}
		x, y := f.byName["xiaonan"], f.byName["yunmeng"]
		want := region{Name: "xiaonan", Server: "10.0.1.5:7443", CA: filepath.Join(base, "xiaonan", "ca.pem"),
			TokenFile: filepath.Join(base, "xiaonan", "admin.token"), Advertise: "xiaonan.example.cn:7443", Line: 3}
		if *x != want {
			t.Errorf("xiaonan = %+v, want %+v", *x, want)
		}
		if x.phoneAddr() != "xiaonan.example.cn:7443" {
			t.Errorf("xiaonan's phone address %s, want its advertise", x.phoneAddr())
		}
		want = region{Name: "yunmeng", Server: "10.0.2.5:7443", TokenFile: "/etc/fieldsync/yunmeng.token", Line: 4}
		if *y != want {
			t.Errorf("yunmeng = %+v, want %+v", *y, want)
		}
		if y.phoneAddr() != "10.0.2.5:7443" {
			t.Errorf("yunmeng's phone address %s, want its server (no advertise)", y.phoneAddr())
		}
		// The columns in another order, advertise left out.
		f, err = parseRegions(path, strings.NewReader("token_file,ca,server,region\nt,c,h:1,a1\n"))
		if err != nil || f.byName["a1"].Server != "h:1" || f.byName["a1"].TokenFile != filepath.Join(base, "t") {
			t.Errorf("reordered header: %+v, %v", f, err)
		}
	})

	t.Run("bad cells", func(t *testing.T) {
		in := `region,server,ca,token_file,advertise
Xiaonan,10.0.1.5:7443,ca.pem,t,
xiaonan,10.0.1.5,ca.pem,t,
yunmeng,10.0.2.5:99999,ca.pem,,phones
,10.0.3.5:7443,ca.pem,t,:7443
hanchuan,10.0.4.5:7443,ca.pem,t,
xiaogan,10.0.4.5:7443,ca.pem,t,
hanchuan,10.0.5.5:7443,ca.pem,t,
dawu,10.0.6.5:7443
`
		_, err := parseRegions(path, strings.NewReader(in))
		if err == nil {
			t.Fatal("no error")
		}
		want := []string{
			path + `:2: region: region "Xiaonan": want lower-case letters a-z and digits 0-9, starting with a letter (e.g. xiaonan, yunmeng2)`,
			path + `:3: server: "10.0.1.5": want host:port, e.g. 10.0.1.5:7443 or xiaonan.example.cn:7443 (syncd's gRPC address, as fieldctl -server takes it)`,
			path + `:4: server: "10.0.2.5:99999": port "99999": want a number from 1 to 65535 (syncd's gRPC address, as fieldctl -server takes it)`,
			path + `:4: advertise: "phones": want host:port, e.g. 10.0.1.5:7443 or xiaonan.example.cn:7443 (the address phones reach the region's syncd at; leave it empty to use server)`,
			path + `:4: token_file: empty: want the file holding the region's admin credential (syncd's <data>/admin.token), relative to the regions file's directory`,
			path + `:5: region: empty: want the region's name (a-z and 0-9, starting with a letter, at most 32), e.g. xiaonan`,
			path + `:5: advertise: ":7443": want host:port, e.g. 10.0.1.5:7443 or xiaonan.example.cn:7443 (the address phones reach the region's syncd at; leave it empty to use server)`,
			path + `:7: server: 10.0.4.5:7443 is already region "hanchuan"'s (line 6): each region has its own syncd`,
			path + `:8: region: "hanchuan" is already on line 6: one row per region`,
			path + `:9: 2 columns, but the header has 5 (region,server,ca,token_file,advertise)`,
		}
		if got := err.Error(); got != strings.Join(want, "\n") {
			t.Errorf("error:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
		}
	})

	t.Run("bad file", func(t *testing.T) {
		tests := []struct{ in, want string }{
			{"", path + ": empty file: want a header row region,server,ca,token_file,advertise and one row per region"},
			{"region,server,ca,token_file,advertise\n# none yet\n", path + ": no regions: want one row per region after the header region,server,ca,token_file,advertise"},
			{"region,server,token_file\nx,h:1,t\n", path + `: header: missing column "ca": want region,server,ca,token_file,advertise`},
			{"region,server,ca,token,advertise\n", path + `: header: unknown column "token": want region,server,ca,token_file,advertise`},
		}
		for _, tt := range tests {
			_, err := parseRegions(path, strings.NewReader(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Errorf("%q: error %v, want %s", tt.in, err, tt.want)
			}
		}
	})
}

// testRegions is a regions file of two regions.
func testRegions(t *testing.T) *regionsFile {
	t.Helper()
	f, err := parseRegions("regions.csv", strings.NewReader("region,server,ca,token_file,advertise\nxiaonan,a:1,,x.token,\nyunmeng,b:1,,y.token,\n"))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// testOrg builds rows as readOrg would, each on the line given.
type testOrg struct{ o *orgRows }

func newTestOrg() *testOrg { return &testOrg{&orgRows{lines: map[string][]int{}}} }

func (b *testOrg) unit(line int, id, parent string) *testOrg {
	b.o.units = append(b.o.units, &pb.Unit{Id: id, ParentId: parent, Kind: pb.UnitKind_UNIT_KIND_GRID})
	b.o.lines["units"] = append(b.o.lines["units"], line)
	return b
}

func (b *testOrg) user(line int, id, unit string) *testOrg {
	b.o.users = append(b.o.users, &pb.User{Id: id, UnitId: unit})
	b.o.lines["users"] = append(b.o.lines["users"], line)
	return b
}

func (b *testOrg) household(line int, id, grid string) *testOrg {
	b.o.households = append(b.o.households, &pb.Household{Id: id, GridId: grid})
	b.o.lines["households"] = append(b.o.lines["households"], line)
	return b
}

func (b *testOrg) assignment(line int, household, member string) *testOrg {
	b.o.assignments = append(b.o.assignments, &pb.Assignment{HouseholdId: household, MemberId: member})
	b.o.lines["assignments"] = append(b.o.lines["assignments"], line)
	return b
}

func TestSplitOrg(t *testing.T) {
	f := testRegions(t)
	t.Run("each row to its region", func(t *testing.T) {
		org := newTestOrg().
			unit(2, "xiaonan-T01", "").unit(3, "yunmeng-T01", "").unit(4, "xiaonan-V01", "xiaonan-T01").
			user(2, "yunmeng-U-m1", "yunmeng-G01").user(3, "xiaonan-U-hq", "").
			household(2, "xiaonan-H01", "xiaonan-G01").household(5, "yunmeng-H01", "yunmeng-G01").
			assignment(2, "yunmeng-H01", "yunmeng-U-m1").o
		parts, refused := splitOrg(org, f)
		if len(refused) != 0 {
			t.Fatalf("refused %v", refused)
		}
		x, y := parts["xiaonan"], parts["yunmeng"]
		if len(parts) != 2 || x == nil || y == nil {
			t.Fatalf("parts %v", parts)
		}
		ids := func(o *orgRows) string {
			var s []string
			for _, u := range o.units {
				s = append(s, u.GetId())
			}
			for _, u := range o.users {
				s = append(s, u.GetId())
			}
			for _, h := range o.households {
				s = append(s, h.GetId())
			}
			for _, a := range o.assignments {
				s = append(s, "a:"+a.GetHouseholdId())
			}
			return strings.Join(s, " ")
		}
		if got := ids(x); got != "xiaonan-T01 xiaonan-V01 xiaonan-U-hq xiaonan-H01" {
			t.Errorf("xiaonan's rows: %s", got)
		}
		if got := ids(y); got != "yunmeng-T01 yunmeng-U-m1 yunmeng-H01 a:yunmeng-H01" {
			t.Errorf("yunmeng's rows: %s", got)
		}
		// Lines follow their rows, so that syncd's errors name the right one.
		if got := x.lines["units"]; len(got) != 2 || got[0] != 2 || got[1] != 4 {
			t.Errorf("xiaonan's unit lines %v, want [2 4]", got)
		}
		if got := y.lines["households"]; len(got) != 1 || got[0] != 5 {
			t.Errorf("yunmeng's household lines %v, want [5]", got)
		}
		if x.rowCount() != 4 || y.rowCount() != 4 {
			t.Errorf("row counts %d, %d", x.rowCount(), y.rowCount())
		}
	})

	t.Run("refusals", func(t *testing.T) {
		org := newTestOrg().
			unit(2, "xiaonan-T01", "").
			unit(3, "T02", "").                         // no region
			unit(4, "hanchuan-T01", "").                // region not in the file
			unit(5, "xiaonan-V01", "yunmeng-T01").      // parent in another region
			unit(6, "xiaonan-V02", "T01").              // parent in no region
			user(7, "yunmeng-U-m1", "xiaonan-G01").     // unit in another region
			household(8, "yunmeng-H01", "yunmeng-G01"). // fine
			household(9, "yunmeng-H02", "xiaonan-G01").
			assignment(2, "xiaonan-H01", "yunmeng-U-m1"). // member in another region
			assignment(3, "H01", "xiaonan-U-m1").o        // household in no region
		parts, refused := splitOrg(org, f)
		var got []string
		for _, e := range refused {
			got = append(got, e.String())
		}
		want := []string{
			`units.csv:3: id: id "T02" names no region: with -regions every id starts with its region and "-" (xiaonan-..., yunmeng-...)`,
			`units.csv:4: id: id "hanchuan-T01" is region "hanchuan"'s, which regions.csv does not list: want xiaonan-..., yunmeng-... (add the region to the file, or fix the id)`,
			`units.csv:5: parent_id: "yunmeng-T01" lies in region yunmeng, the row in region xiaonan (id "xiaonan-V01"): a unit and its parent are in one region`,
			`units.csv:6: parent_id: "T01" lies in no region, the row in region xiaonan (id "xiaonan-V02"): a unit and its parent are in one region`,
			`users.csv:7: unit_id: "xiaonan-G01" lies in region xiaonan, the row in region yunmeng (id "yunmeng-U-m1"): a person works in a unit of their own region`,
			`households.csv:9: grid_id: "xiaonan-G01" lies in region xiaonan, the row in region yunmeng (id "yunmeng-H02"): a household's grid is in its own region`,
			`assignments.csv:2: member_id: "yunmeng-U-m1" lies in region yunmeng, the row in region xiaonan (household_id "xiaonan-H01"): a household is linked to a member of its own region`,
			`assignments.csv:3: household_id: household_id "H01" names no region: with -regions every id starts with its region and "-" (xiaonan-..., yunmeng-...)`,
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("refused:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// What was not refused is still split (the import sends nothing
		// when anything is refused, but the split itself is exact).
		if p := parts["xiaonan"]; p == nil || len(p.units) != 1 || p.rowCount() != 1 {
			t.Errorf("xiaonan's part %+v", p)
		}
		if p := parts["yunmeng"]; p == nil || len(p.households) != 1 || p.households[0].GetId() != "yunmeng-H01" {
			t.Errorf("yunmeng's part %+v", p)
		}
	})
}

// The flags' mistakes are named before any server is asked.
func TestRegionsFlags(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	writeFile(t, bad, "region,server,ca,token_file,advertise\nxiaonan,10.0.1.5:7443,,,\n")
	good := filepath.Join(dir, "regions.csv")
	writeFile(t, good, "region,server,ca,token_file,advertise\nxiaonan,127.0.0.1:1,,x/admin.token,\n")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"admin", "-region", "xiaonan", "devices"}, 2, "admin devices: -region xiaonan picks a region of the regions file: give -regions FILE too"},
		{[]string{"admin", "-regions", filepath.Join(dir, "none.csv"), "devices"}, 1, "regions file (-regions): open " + filepath.Join(dir, "none.csv")},
		{[]string{"admin", "-regions", bad, "devices"}, 1, bad + ":2: token_file: empty"},
		{[]string{"admin", "-regions", good, "-region", "yunmeng", "devices"}, 2, `-region "yunmeng" is not in ` + good + ": want one of xiaonan"},
		{[]string{"admin", "-regions", good, "-token-file", "t", "devices"}, 2, "-regions and -token-file: the regions file names each region's server, CA and credential"},
		{[]string{"admin", "-regions", good, "assign", "-household", "H1", "-member", "U1"}, 2, `-household "H1" names no region`},
		{[]string{"admin", "-regions", good, "users", "disable", "yunmeng-U-m1"}, 2, `user "yunmeng-U-m1" is region "yunmeng"'s, which ` + good + " does not list"},
		{[]string{"admin", "-regions", good, "enroll-code", "-user", "xiaonan-U-m1"}, 1, "region xiaonan (" + good + ":2): token_file: stat " + filepath.Join(dir, "x", "admin.token")},
		{[]string{"admin", "-regions", good, "import", "-dir", "a", "b"}, 2, `unexpected argument "b"`},
	}
	for _, tt := range tests {
		r := fieldctl(t, tt.args...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.code, tt.want)
		}
	}
	r := fieldctl(t, "admin", "-h")
	for _, s := range []string{"-regions file", "-region region", "region,server,ca,token_file,advertise"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("admin -h lacks %q", s)
		}
	}
	r = fieldctl(t, "admin", "import", "-h")
	if !strings.Contains(r.stderr, "-region NAME") || !strings.Contains(r.stderr, "nothing is sent to any region") {
		t.Errorf("admin import -h does not explain -regions:\n%s", r.stderr)
	}
}
