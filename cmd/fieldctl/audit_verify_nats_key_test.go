package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// admin audit -verify reads the published head with the NATS credential it
// is given (an external NATS has no <data>/nats-syncd.nk), and says which
// flags to give when it has none.
func TestAdminAuditVerifyWithAGivenNATSKey(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	last := checked(e.Store.VerifyAudit(t.Context()))
	testenv.WaitFor(t, 10*time.Second, "the audit heads published", func() bool { return e.Server.AuditPublished() == last.Seq })
	// syncd read its key at start; here it lies elsewhere, as syncd's
	// credential for an external NATS would.
	key := filepath.Join(t.TempDir(), "syncd.nk")
	if err := os.Rename(filepath.Join(e.Dir, "nats-syncd.nk"), key); err != nil {
		t.Fatal(err)
	}
	verify := []string{"admin", "audit", "-data", e.Dir, "-nats", e.NATS.ClientURL(), "-verify"}
	if r := fieldctl(t, verify...); r.code == 0 || !strings.Contains(r.stderr, "-nats-nkey") {
		t.Fatalf("verify with no NATS credential: %+v, want a failure naming -nats-nkey", r)
	}
	out := ok(t, append(verify, "-nats-nkey", key)...)
	if !strings.Contains(out, "matches the head published to NATS") {
		t.Fatalf("verify with -nats-nkey:\n%s", out)
	}
}
