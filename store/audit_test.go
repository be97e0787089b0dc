package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fieldsync/fieldsync/store"
)

func openServer(t *testing.T) (*store.Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fieldsync.db")
	s, err := store.OpenServer(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func audit(t *testing.T, s *store.Server, actor, action, target, detail string) {
	t.Helper()
	if err := s.Write(context.Background(), func(tx *store.Tx) error { return tx.Audit(actor, action, target, detail) }); err != nil {
		t.Fatal(err)
	}
}

func entries(t *testing.T, s *store.Server) []store.AuditEntry {
	t.Helper()
	es, err := s.AuditLog(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// tamper opens a second connection to the database file, as someone with
// the file would, and runs statements on it.
func tamper(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func wantBroken(t *testing.T, s *store.Server, seq uint64, problem string) {
	t.Helper()
	_, err := s.VerifyAudit(context.Background())
	var ae *store.AuditError
	if !errors.As(err, &ae) {
		t.Fatalf("VerifyAudit: %v, want an *AuditError at entry %d", err, seq)
	}
	if ae.Seq != seq || !strings.Contains(ae.Problem, problem) {
		t.Fatalf("VerifyAudit: entry %d %q, want entry %d %q", ae.Seq, ae.Problem, seq, problem)
	}
}

func wantIntact(t *testing.T, s *store.Server, n uint64) store.AuditEntry {
	t.Helper()
	last, err := s.VerifyAudit(context.Background())
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	if last.Seq != n {
		t.Fatalf("VerifyAudit checked up to entry %d, want %d", last.Seq, n)
	}
	return last
}

func TestAuditChain(t *testing.T) {
	s, _ := openServer(t)
	wantIntact(t, s, 0) // an empty log is intact

	audit(t, s, store.AuditAdmin, store.AuditImportOrg, "org", `{"units":5}`)
	audit(t, s, store.AuditAdmin, store.AuditCreateEnrollmentCode, "U-member1", `{"code_ref":"0123456789ab"}`)
	audit(t, s, "dabcdefgh", store.AuditEnrollDevice, "U-member1", `{"name":"張國華的手機"}`)
	audit(t, s, store.AuditAdmin, store.AuditRevokeDevice, "dabcdefgh", `{}`)

	es := entries(t, s)
	want := []struct{ actor, action, target, detail string }{
		{"admin", "import_org", "org", `{"units":5}`},
		{"admin", "create_enrollment_code", "U-member1", `{"code_ref":"0123456789ab"}`},
		{"dabcdefgh", "enroll_device", "U-member1", `{"name":"張國華的手機"}`},
		{"admin", "revoke_device", "dabcdefgh", `{}`},
	}
	if len(es) != len(want) {
		t.Fatalf("%d entries, want %d", len(es), len(want))
	}
	prev := ""
	for i, e := range es {
		w := want[i]
		if e.Seq != uint64(i+1) || e.Actor != w.actor || e.Action != w.action || e.Target != w.target || e.Detail != w.detail {
			t.Fatalf("entry %d: %+v, want %+v", i+1, e, w)
		}
		if e.PrevHash != prev || e.Hash != store.AuditHash(e) || len(e.Hash) != 64 || e.TimeMs == 0 {
			t.Fatalf("entry %d is not chained: prev %q hash %q (previous %q)", e.Seq, e.PrevHash, e.Hash, prev)
		}
		prev = e.Hash
	}
	last := wantIntact(t, s, 4)
	if last.Hash != es[3].Hash {
		t.Fatalf("VerifyAudit's last entry %+v", last)
	}

	// Paging.
	page, err := s.AuditLog(context.Background(), 1, 2)
	if err != nil || len(page) != 2 || page[0].Seq != 2 || page[1].Seq != 3 {
		t.Fatalf("AuditLog(1, 2): %+v %v", page, err)
	}

	// The hash covers every field: changing any one changes it.
	base := es[1]
	for name, change := range map[string]func(*store.AuditEntry){
		"seq":       func(e *store.AuditEntry) { e.Seq++ },
		"time":      func(e *store.AuditEntry) { e.TimeMs++ },
		"actor":     func(e *store.AuditEntry) { e.Actor = "dx" },
		"action":    func(e *store.AuditEntry) { e.Action = "revoke_device" },
		"target":    func(e *store.AuditEntry) { e.Target = "U-member2" },
		"detail":    func(e *store.AuditEntry) { e.Detail = "{}" },
		"prev_hash": func(e *store.AuditEntry) { e.PrevHash = strings.Repeat("0", 64) },
		"boundary":  func(e *store.AuditEntry) { e.Actor, e.Action = e.Actor+e.Action[:1], e.Action[1:] },
	} {
		e := base
		change(&e)
		if store.AuditHash(e) == base.Hash {
			t.Errorf("changing %s leaves the hash as it was", name)
		}
	}
}

// An entry is written in its action's transaction: if the action fails,
// the entry is not there, and the numbering has no gap.
func TestAuditInTheActionsTransaction(t *testing.T) {
	s, _ := openServer(t)
	audit(t, s, store.AuditAdmin, store.AuditImportOrg, "org", "{}")
	boom := errors.New("boom")
	err := s.Write(context.Background(), func(tx *store.Tx) error {
		if err := tx.Audit(store.AuditAdmin, store.AuditAssignHousehold, "H001", "{}"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	audit(t, s, store.AuditAdmin, store.AuditRevokeDevice, "d1", "{}")
	es := entries(t, s)
	if len(es) != 2 || es[1].Seq != 2 || es[1].Action != store.AuditRevokeDevice {
		t.Fatalf("entries after a failed action: %+v", es)
	}
	wantIntact(t, s, 2)

	if err := s.Write(context.Background(), func(tx *store.Tx) error { return tx.Audit("", "x", "", "") }); err == nil {
		t.Fatal("an entry with no actor was written")
	}
}

// Writes committed together (group commit) chain in commit order.
func TestAuditConcurrentWrites(t *testing.T) {
	s, _ := openServer(t)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Write(context.Background(), func(tx *store.Tx) error {
				return tx.Audit(fmt.Sprintf("d%03d", i), store.AuditEnrollDevice, "U1", "{}")
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	es := entries(t, s)
	if len(es) != 200 {
		t.Fatalf("%d entries, want 200", len(es))
	}
	actors := map[string]bool{}
	for _, e := range es {
		actors[e.Actor] = true
	}
	if len(actors) != 200 {
		t.Fatalf("%d distinct actors, want 200", len(actors))
	}
	wantIntact(t, s, 200)
}

func TestAuditDetectsTampering(t *testing.T) {
	s, path := openServer(t)
	for i := range 5 {
		audit(t, s, store.AuditAdmin, store.AuditAssignHousehold, fmt.Sprintf("H00%d", i+1), fmt.Sprintf(`{"member_id":"U-m%d"}`, i+1))
	}
	wantIntact(t, s, 5)
	es := entries(t, s)

	// SQL refuses edits and deletions outright...
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"UPDATE audit_log SET detail = '{}' WHERE seq = 3", "DELETE FROM audit_log WHERE seq = 3"} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("%s: %v, want refused as append-only", q, err)
		}
	}
	db.Close()
	// ...so one who has the file drops the triggers first.
	tamper(t, path, "DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete")

	// An edited detail.
	tamper(t, path, `UPDATE audit_log SET detail = '{"member_id":"U-evil"}' WHERE seq = 3`)
	wantBroken(t, s, 3, "altered")
	tamper(t, path, fmt.Sprintf("UPDATE audit_log SET detail = '%s' WHERE seq = 3", es[2].Detail))
	wantIntact(t, s, 5)

	// An edit whose hash was recomputed breaks the link to the next entry.
	e := es[2]
	e.Detail = `{"member_id":"U-evil"}`
	tamper(t, path, fmt.Sprintf(`UPDATE audit_log SET detail = '%s', hash = '%s' WHERE seq = 3`, e.Detail, store.AuditHash(e)))
	wantBroken(t, s, 4, "prev_hash is not the hash of entry 3")
	tamper(t, path, fmt.Sprintf("UPDATE audit_log SET detail = '%s', hash = '%s' WHERE seq = 3", es[2].Detail, es[2].Hash))
	wantIntact(t, s, 5)

	// A removed entry in the middle, or the first.
	tamper(t, path, "DELETE FROM audit_log WHERE seq = 3")
	wantBroken(t, s, 3, "removed: entry 4 follows entry 2")
	restore(t, path, es[2])
	tamper(t, path, "DELETE FROM audit_log WHERE seq = 1")
	wantBroken(t, s, 1, "removed: the log starts at entry 2")
	restore(t, path, es[0])
	wantIntact(t, s, 5)

	// Entries removed and the rest renumbered.
	tamper(t, path, "DELETE FROM audit_log WHERE seq = 2", "UPDATE audit_log SET seq = seq - 1 WHERE seq > 2")
	wantBroken(t, s, 2, "altered")
	tamper(t, path, "DELETE FROM audit_log")
	for _, e := range es {
		restore(t, path, e)
	}
	wantIntact(t, s, 5)

	// The last entry removed: the head written with it tells.
	tamper(t, path, "DELETE FROM audit_log WHERE seq = 5")
	wantBroken(t, s, 5, "removed: the log ends at entry 4, but entry 5 was written")
	tamper(t, path, "DELETE FROM audit_log")
	wantBroken(t, s, 1, "removed: the log ends at entry 0, but entry 5 was written")

	// The log goes on from whatever is there, and the reader agrees.
	for _, e := range es {
		restore(t, path, e)
	}
	audit(t, s, store.AuditAdmin, store.AuditImportOrg, "org", "{}")
	wantIntact(t, s, 6)
	r, err := store.OpenAuditReader(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	last, err := r.Verify(context.Background())
	if err != nil || last.Seq != 6 {
		t.Fatalf("reader: %+v %v", last, err)
	}
	got, err := r.Entries(context.Background(), 4, 10)
	if err != nil || len(got) != 2 || got[0] != es[4] || got[1].Seq != 6 {
		t.Fatalf("reader entries: %+v %v", got, err)
	}
	tamper(t, path, "UPDATE audit_log SET time_ms = time_ms + 1 WHERE seq = 6")
	if _, err := r.Verify(context.Background()); err == nil || !strings.Contains(err.Error(), "audit log broken at entry 6: altered") {
		t.Fatalf("reader verify: %v", err)
	}
}

func restore(t *testing.T, path string, e store.AuditEntry) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO audit_log (seq, time_ms, actor, action, target, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, e.TimeMs, e.Actor, e.Action, e.Target, e.Detail, e.PrevHash, e.Hash); err != nil {
		t.Fatal(err)
	}
}

func TestOpenAuditReader(t *testing.T) {
	dir := t.TempDir()
	if _, err := store.OpenAuditReader(context.Background(), filepath.Join(dir, "none.db")); err == nil {
		t.Fatal("opened a database that does not exist")
	}
	tamper(t, filepath.Join(dir, "other.db"), "CREATE TABLE t (x)")
	if _, err := store.OpenAuditReader(context.Background(), filepath.Join(dir, "other.db")); err == nil || !strings.Contains(err.Error(), "has no audit log") {
		t.Fatalf("a database without an audit log: %v", err)
	}
}
