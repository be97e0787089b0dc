package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/store"
)

func openKeyed(t *testing.T, path string, key []byte) *store.Server {
	t.Helper()
	s, err := store.OpenServer(context.Background(), path, store.WithAuditKey(key))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func auditKey(t *testing.T, dir string) []byte {
	t.Helper()
	key, _, err := store.LoadOrCreateAuditKey(filepath.Join(dir, "audit.key"))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func wantCheckBroken(t *testing.T, s *store.Server, head *store.AuditHead, seq uint64, problem string) {
	t.Helper()
	_, err := s.CheckAudit(context.Background(), head)
	var ae *store.AuditError
	if !errors.As(err, &ae) {
		t.Fatalf("CheckAudit: %v, want an *AuditError at entry %d", err, seq)
	}
	if ae.Seq != seq || !strings.Contains(ae.Problem, problem) {
		t.Fatalf("CheckAudit: entry %d %q, want entry %d %q", ae.Seq, ae.Problem, seq, problem)
	}
}

// rehashFrom rewrites entry seq's detail and recomputes, with the public
// unkeyed hash, that entry and every later one, and the head kept in the
// database: all one can do with the database file but not the key.
func rehashFrom(t *testing.T, path string, es []store.AuditEntry, seq uint64, detail string) {
	t.Helper()
	prev := ""
	stmts := []string{}
	for _, e := range es {
		if e.Seq < seq {
			prev = e.Hash
			continue
		}
		if e.Seq == seq {
			e.Detail = detail
		}
		e.PrevHash = prev
		e.Hash = store.AuditHash(e)
		prev = e.Hash
		stmts = append(stmts, fmt.Sprintf("UPDATE audit_log SET detail = '%s', prev_hash = '%s', hash = '%s' WHERE seq = %d", e.Detail, e.PrevHash, e.Hash, e.Seq))
	}
	stmts = append(stmts, fmt.Sprintf("UPDATE meta SET value = '%d %s' WHERE key = 'audit_head'", es[len(es)-1].Seq, prev))
	tamper(t, path, stmts...)
}

// Each entry carries a MAC under a key kept outside the database: an entry
// edited and the chain hashed again, as the unkeyed hash allows anyone to,
// no longer verifies.
func TestAuditRehashWithoutTheKeyIsCaught(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fieldsync.db")
	key := auditKey(t, dir)
	s := openKeyed(t, path, key)
	for i := range 5 {
		audit(t, s, store.AuditAdmin, store.AuditAssignHousehold, fmt.Sprintf("H00%d", i+1), fmt.Sprintf(`{"member_id":"U-m%d"}`, i+1))
	}
	es := entries(t, s)
	rep, err := s.CheckAudit(context.Background(), &store.AuditHead{Seq: 5, Link: es[4].Link()})
	if err != nil || rep.Last.Seq != 5 || !rep.MACsChecked || rep.Unkeyed != 0 || rep.Unpublished != 0 {
		t.Fatalf("an untouched keyed log: %+v %v", rep, err)
	}
	for _, e := range es {
		if e.Mac != store.AuditMAC(key, e) || len(e.Mac) != 64 {
			t.Fatalf("entry %d has MAC %q", e.Seq, e.Mac)
		}
	}

	tamper(t, path, "DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete")
	rehashFrom(t, path, es, 3, `{"member_id":"U-evil"}`)
	wantBroken(t, s, 3, "altered: its MAC does not match under the audit key")

	// Without the key (an auditor's copy of the database alone) the
	// rewrite passes: the MAC is what catches it.
	r, err := store.OpenAuditReader(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if rep, err := r.Check(context.Background(), nil, nil); err != nil || rep.MACsChecked {
		t.Fatalf("without the key: %+v %v, want passed with MACs unchecked", rep, err)
	}
	if _, err := r.Check(context.Background(), key, nil); err == nil || !strings.Contains(err.Error(), "entry 3: altered") {
		t.Fatalf("the reader with the key: %v", err)
	}

	// A MAC stripped so that the entry passes as one from before keys.
	rehashFrom(t, path, es, 3, es[2].Detail)
	wantIntact(t, s, 5)
	tamper(t, path, "UPDATE audit_log SET mac = '' WHERE seq >= 4")
	wantBroken(t, s, 4, "no MAC although an entry before it has one")
}

// Deleting the last entries and rewriting the head kept in the database
// passes the database's own check; the head published outside it (the
// NATS audit stream) names the missing entries.
func TestAuditTruncationCaughtByThePublishedHead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fieldsync.db")
	s := openKeyed(t, path, auditKey(t, dir))
	for i := range 6 {
		audit(t, s, store.AuditAdmin, store.AuditRevokeDevice, fmt.Sprintf("d%d", i), "{}")
	}
	es := entries(t, s)
	published := &store.AuditHead{Seq: 6, Link: es[5].Link(), TimeMs: es[5].TimeMs}
	if rep, err := s.CheckAudit(context.Background(), &store.AuditHead{Seq: 4, Link: es[3].Link()}); err != nil || rep.Unpublished != 2 {
		t.Fatalf("a log ahead of its published head: %+v %v, want intact with 2 unpublished", rep, err)
	}

	tamper(t, path, "DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete",
		"DELETE FROM audit_log WHERE seq > 3", fmt.Sprintf("UPDATE meta SET value = '3 %s' WHERE key = 'audit_head'", es[2].Hash))
	wantIntact(t, s, 3) // the database alone cannot tell
	wantCheckBroken(t, s, published, 4, "removed: the log ends at entry 3, but entry 6 was published")
	wantCheckBroken(t, s, published, 4, "entries 4 to 6 are missing")

	// Cut back and written again up to the published number: the entry
	// there is not the one published.
	for i := range 3 {
		audit(t, s, store.AuditAdmin, store.AuditImportOrg, fmt.Sprintf("org%d", i), "{}")
	}
	wantIntact(t, s, 6)
	wantCheckBroken(t, s, published, 6, "replaced")
}

// Entries from before the key verify with their hash and are counted as
// unkeyed; the keyed entries after them chain over them, so rewriting an
// old entry still shows.
func TestAuditEntriesFromBeforeTheKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fieldsync.db")
	old, err := store.OpenServer(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	audit(t, old, store.AuditAdmin, store.AuditImportOrg, "org", "{}")
	audit(t, old, store.AuditAdmin, store.AuditAssignHousehold, "H001", `{"member_id":"U-m1"}`)
	old.Close()

	key := auditKey(t, dir)
	s := openKeyed(t, path, key)
	audit(t, s, store.AuditAdmin, store.AuditRevokeDevice, "d1", "{}")
	audit(t, s, store.AuditAdmin, store.AuditRevokeDevice, "d2", "{}")
	rep, err := s.CheckAudit(context.Background(), nil)
	if err != nil || rep.Unkeyed != 2 || rep.Last.Seq != 4 || !rep.MACsChecked {
		t.Fatalf("old entries then keyed ones: %+v %v, want entries 1-2 unkeyed, all intact", rep, err)
	}
	es := entries(t, s)
	tamper(t, path, "DROP TRIGGER audit_log_no_update")
	rehashFrom(t, path, es, 2, `{"member_id":"U-evil"}`)
	wantBroken(t, s, 3, "altered: its MAC does not match")
	s.Close()

	// Another key (audit.key lost and made anew) is refused at open.
	if _, err := store.OpenServer(context.Background(), path, store.WithAuditKey(make([]byte, store.AuditKeySize))); err == nil || !strings.Contains(err.Error(), "restore audit.key from its backup") {
		t.Fatalf("open with another key: %v", err)
	}
}

func TestLoadOrCreateAuditKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.key")
	key, created, err := store.LoadOrCreateAuditKey(path)
	if err != nil || !created || len(key) != store.AuditKeySize {
		t.Fatalf("first load: %x %v %v", key, created, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v, want 0600", fi.Mode(), err)
	}
	again, created, err := store.LoadOrCreateAuditKey(path)
	if err != nil || created || string(again) != string(key) {
		t.Fatalf("second load: %x %v %v, want the same key", again, created, err)
	}
	if err := os.WriteFile(path, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.LoadOrCreateAuditKey(path); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Fatalf("a damaged key file: %v", err)
	}
}
