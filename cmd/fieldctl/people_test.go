package main

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/server"
)

// fieldctl admin users disable/enable and admin codes list/cancel, as an
// administrator types them.
func TestAdminUsersAndCodesCommands(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	tok := tokenFile(t, e)
	phone := e.Device(testenv.Member)
	testenv.Sync(t, phone)
	spare := e.Secret(testenv.Member)
	other := e.Secret(testenv.Member2)

	var codes []codeJSON
	decode(t, ok(t, admin(e, tok, "codes", "list", "--json")...), &codes)
	states := map[string]string{}
	for _, c := range codes {
		states[c.Ref] = c.State
	}
	if len(codes) != 3 || states[server.CodeRef(spare)] != "outstanding" || states[server.CodeRef(other)] != "outstanding" {
		t.Fatalf("codes list: %+v", codes)
	}
	table := ok(t, admin(e, tok, "codes", "list", "--user", testenv.Member)...)
	if !strings.Contains(table, server.CodeRef(spare)) || strings.Contains(table, spare) || strings.Contains(table, server.CodeRef(other)) {
		t.Fatalf("codes list --user:\n%s", table)
	}

	out := ok(t, admin(e, tok, "codes", "cancel", server.CodeRef(other))...)
	if !strings.Contains(out, server.CodeRef(other)) {
		t.Fatalf("codes cancel: %s", out)
	}
	if r := fieldctl(t, admin(e, tok, "codes", "cancel")...); r.code != 2 || !strings.Contains(r.stderr, "code reference") {
		t.Fatalf("codes cancel without a reference: %+v", r)
	}

	out = ok(t, admin(e, tok, "users", "disable", testenv.Member)...)
	id := checked(phone.Identity())
	if !strings.Contains(out, "disabled "+testenv.Member) || !strings.Contains(out, id.DeviceID) || !strings.Contains(out, server.CodeRef(spare)) {
		t.Fatalf("users disable:\n%s", out)
	}
	r := fieldctl(t, admin(e, tok, "enroll-code", "-user", testenv.Member)...)
	if r.code != 1 || !strings.Contains(r.stderr, "is disabled") || !strings.Contains(r.stderr, "fieldctl admin users enable "+testenv.Member) {
		t.Fatalf("enroll-code for a disabled user: %+v", r)
	}
	decode(t, ok(t, admin(e, tok, "codes", "list", "--json")...), &codes)
	for _, c := range codes {
		if c.Ref == server.CodeRef(spare) && (c.State != "cancelled" || c.CancelledMs == 0) {
			t.Fatalf("the disabled user's code after disable: %+v", c)
		}
	}
	out = ok(t, admin(e, tok, "users", "enable", testenv.Member)...)
	if !strings.Contains(out, "enabled "+testenv.Member) {
		t.Fatalf("users enable: %s", out)
	}
	ok(t, admin(e, tok, "enroll-code", "-user", testenv.Member, "-q")...)
	if r := fieldctl(t, admin(e, tok, "users", "disable")...); r.code != 2 {
		t.Fatalf("users disable without a user: %+v", r)
	}
}

func checked[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// fieldctl admin audit -verify checks the MACs with <data>/audit.key and
// compares the log with the head published to NATS: the last entries cut
// off, and the head in the database rewritten to match, are named.
func TestAdminAuditVerifyAgainstThePublishedHead(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	for range 3 {
		e.Secret(testenv.Member)
	}
	last := checked(e.Store.VerifyAudit(t.Context()))
	testenv.WaitFor(t, 10*time.Second, "the audit heads published", func() bool { return e.Server.AuditPublished() == last.Seq })
	verify := []string{"admin", "audit", "-data", e.Dir, "-nats", e.NATS.ClientURL(), "-verify"}
	out := ok(t, verify...)
	if !strings.Contains(out, "audit log intact") || !strings.Contains(out, fmt.Sprintf("matches the head published to NATS (entry %d)", last.Seq)) {
		t.Fatalf("verify of an untouched log:\n%s", out)
	}
	var rep map[string]any
	decode(t, ok(t, append(verify, "--json")...), &rep)
	if rep["ok"] != true || rep["published_seq"] != float64(last.Seq) || rep["unkeyed"] != 0.0 {
		t.Fatalf("verify --json: %v", rep)
	}

	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.Dir, "fieldsync.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keep := checked(e.Store.AuditLog(t.Context(), last.Seq-3, 1))[0]
	for _, q := range []string{"DROP TRIGGER audit_log_no_delete", fmt.Sprintf("DELETE FROM audit_log WHERE seq > %d", keep.Seq),
		fmt.Sprintf("UPDATE meta SET value = '%d %s' WHERE key = 'audit_head'", keep.Seq, keep.Hash)} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	ok(t, "admin", "audit", "-data", e.Dir, "-verify", "-no-nats") // the file alone cannot tell
	r := fieldctl(t, verify...)
	want := fmt.Sprintf("entries %d to %d are missing", keep.Seq+1, last.Seq)
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Fatalf("verify after truncation: %+v, want exit 1 naming %q", r, want)
	}
	if r := fieldctl(t, "admin", "audit", "-data", e.Dir, "-verify", "-key-file", filepath.Join(t.TempDir(), "none")); r.code != 1 || !strings.Contains(r.stderr, "audit key") {
		t.Fatalf("verify without the key file: %+v", r)
	}
}
