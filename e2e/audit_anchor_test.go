package e2e

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
)

// syncd publishes every audit entry's number and MAC to the NATS audit
// stream; someone with the database file who deletes the last entries and
// rewrites the head kept in the file passes the file's own check, but not
// the check against the published head, which names the missing entries.
// The publisher then refuses to publish over the gap.
func TestAuditTruncationCaughtAgainstNATS(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	for range 3 {
		e.Secret(testenv.Member2)
	}
	all := must[[]store.AuditEntry](t)(e.Store.AuditLog(t.Context(), 0, 100))
	last := all[len(all)-1]
	testenv.WaitFor(t, 10*time.Second, "the audit heads published", func() bool { return e.Server.AuditPublished() == last.Seq })
	head := must[*store.AuditHead](t)(server.LatestAuditHead(t.Context(), e.JS, e.Store.AuditHeadSubject()))
	if head == nil || head.Seq != last.Seq || head.Link != last.Mac || last.Mac == "" {
		t.Fatalf("published head %+v, want entry %d with its MAC %s", head, last.Seq, last.Mac)
	}
	rep := must[store.AuditReport](t)(e.Server.CheckAudit(t.Context()))
	if rep.Last.Seq != last.Seq || !rep.MACsChecked || rep.Published == nil || rep.Unpublished != 0 || rep.Unkeyed != 0 {
		t.Fatalf("an untouched log: %+v", rep)
	}

	db := must[*sql.DB](t)(sql.Open("sqlite", "file:"+filepath.Join(e.Dir, "fieldsync.db")+"?_pragma=busy_timeout(10000)"))
	defer db.Close()
	keep := all[len(all)-3]
	for _, q := range []string{"DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete",
		fmt.Sprintf("DELETE FROM audit_log WHERE seq > %d", keep.Seq),
		fmt.Sprintf("UPDATE meta SET value = '%d %s' WHERE key = 'audit_head'", keep.Seq, keep.Hash)} {
		must[sql.Result](t)(db.Exec(q))
	}
	must[store.AuditEntry](t)(e.Store.VerifyAudit(t.Context())) // the file alone cannot tell
	_, err := e.Server.CheckAudit(t.Context())
	var ae *store.AuditError
	want := fmt.Sprintf("entries %d to %d are missing", keep.Seq+1, last.Seq)
	if !errors.As(err, &ae) || ae.Seq != keep.Seq+1 || !strings.Contains(ae.Problem, want) {
		t.Fatalf("check after truncation: %v, want %q", err, want)
	}
	t.Logf("truncated: %v", err)

	// New entries fill the numbers again; the published head still does not
	// match, and nothing is published over it.
	admin, actx := e.Admin()
	for range 3 {
		must[*pb.CreateEnrollmentCodeResponse](t)(admin.CreateEnrollmentCode(actx, &pb.CreateEnrollmentCodeRequest{UserId: testenv.Member2}))
	}
	_, err = e.Server.CheckAudit(t.Context())
	if !errors.As(err, &ae) || ae.Seq != last.Seq || !strings.Contains(ae.Problem, "replaced") {
		t.Fatalf("check after the log was written again: %v", err)
	}
	if h := must[*store.AuditHead](t)(server.LatestAuditHead(t.Context(), e.JS, e.Store.AuditHeadSubject())); *h != *head {
		t.Fatalf("the publisher published over a mismatch: head %+v, was %+v", h, head)
	}
}
