package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// The owner adds a town administrator whose token goes to a new file; the
// person works with it inside their scope, is refused accounts, and is cut
// off by disable; enable writes a new token.
func TestAccountsAddListDisableEnable(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	owner := tokenFile(t, e)
	dir := t.TempDir()
	wangFile := filepath.Join(dir, "wangfang.token")

	out := ok(t, admin(e, owner, "accounts", "add", "王芳", "-town", testenv.Town, "-o", wangFile)...)
	if !strings.Contains(out, "town "+testenv.Town) || !strings.Contains(out, wangFile) {
		t.Fatalf("add printed %q", out)
	}
	if st, err := os.Stat(wangFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", st, err)
	}
	// Never over an existing file: that could be admin.token.
	r := fieldctl(t, admin(e, owner, "accounts", "add", "Li Qiang", "-o", owner)...)
	if r.code != 1 || !strings.Contains(r.stderr, "the file exists") {
		t.Fatalf("add -o over a file: exit %d, %s", r.code, r.stderr)
	}
	// Without -o the token is printed once, in JSON too.
	var li accountJSON
	decode(t, ok(t, admin(e, owner, "accounts", "add", "Li Qiang", "--json")...), &li)
	if li.Name != "Li Qiang" || li.Scope != "city" || li.Token == "" || li.CreatedBy != "owner" {
		t.Fatalf("add --json: %+v", li)
	}

	var list []accountJSON
	decode(t, ok(t, admin(e, owner, "accounts", "list", "--json")...), &list)
	if len(list) != 2 || list[0].Name != "Li Qiang" || list[1].Name != "王芳" || list[1].TownID != testenv.Town || list[1].Token != "" {
		t.Fatalf("list: %+v", list)
	}
	if out := ok(t, admin(e, owner, "accounts", "list")...); !strings.Contains(out, "王芳") || !strings.Contains(out, "town T01") {
		t.Fatalf("list: %s", out)
	}

	// The person at work, in their town.
	ok(t, admin(e, wangFile, "enroll-code", "-user", testenv.Member, "-q")...)
	r = fieldctl(t, admin(e, wangFile, "accounts", "add", "趙敏")...)
	if r.code != 1 || !strings.Contains(r.stderr, "city administrator") || !strings.Contains(r.stderr, "王芳") {
		t.Fatalf("town administrator adds an account: exit %d, %s", r.code, r.stderr)
	}

	ok(t, admin(e, owner, "accounts", "disable", "王芳")...)
	r = fieldctl(t, admin(e, wangFile, "devices")...)
	if r.code != 1 || !strings.Contains(r.stderr, "disabled") {
		t.Fatalf("disabled account: exit %d, %s", r.code, r.stderr)
	}
	newFile := filepath.Join(dir, "wangfang2.token")
	ok(t, admin(e, owner, "accounts", "enable", "王芳", "-o", newFile)...)
	ok(t, admin(e, newFile, "devices")...)
	if r := fieldctl(t, admin(e, wangFile, "devices")...); r.code != 1 {
		t.Fatalf("old token after enable: exit %d", r.code)
	}

	// Mistakes on the command line.
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"accounts", "add"}, "NAME is required"},
		{[]string{"accounts", "add", "Wang", "Fang"}, "one NAME only"},
		{[]string{"accounts", "disable"}, "NAME is required"},
	} {
		r := fieldctl(t, admin(e, owner, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.says) {
			t.Errorf("%v: exit %d, %s; want 2 saying %q", c.args, r.code, r.stderr, c.says)
		}
	}
	if r := fieldctl(t, "admin", "accounts", "-h"); r.code != 0 || !strings.Contains(r.stderr, "admin:<name>") {
		t.Errorf("accounts -h: exit %d, %s", r.code, r.stderr)
	}
}
