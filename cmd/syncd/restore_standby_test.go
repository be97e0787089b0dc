package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/backup"
	"github.com/fieldsync/fieldsync/store"
)

// TestRestoreOnAStandbyWarnsOfMissingSecrets: a region's database restored
// into a standby's empty data directory says which region to start, and
// warns that tls/, admin.token and audit.key are missing (phones pin the
// CA); once they are copied, a restore no longer warns.
func TestRestoreOnAStandbyWarnsOfMissingSecrets(t *testing.T) {
	ctx := context.Background()
	lost := filepath.Join(t.TempDir(), "lost")
	if err := os.MkdirAll(lost, 0o700); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(lost, "fieldsync.db")
	loc := filepath.Join(t.TempDir(), "backup") // off the lost machine
	st, err := store.OpenServer(ctx, dbPath, store.ExternalCheckpoints(), store.WithRegion("xiaonan"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.Start(ctx, backup.Config{DBPath: dbPath, URL: loc, BetweenCommits: st.BetweenCommits})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	err = st.Write(ctx, func(tx *store.Tx) error { return putVisits(tx, 0, 20) })
	if err == nil {
		err = b.Sync(ctx)
	}
	if err := errors.Join(err, st.Close(), b.Close(ctx)); err != nil {
		t.Fatal(err)
	}

	standby := filepath.Join(t.TempDir(), "standby")
	var out bytes.Buffer
	if err := run(ctx, []string{"restore", "-backup", loc, "-data", standby}, &out, &out); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"the database is region xiaonan's: start syncd with -region xiaonan",
		"WARNING: " + standby + " lacks tls, admin.token, audit.key",
		filepath.Join(standby, "tls") + ": the CA phones pinned",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("restore output lacks %q:\n%s", want, out.String())
		}
	}
	// The secrets copied: no warning.
	if err := os.MkdirAll(filepath.Join(standby, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"admin.token", "audit.key"} {
		if err := os.WriteFile(filepath.Join(standby, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	if err := run(ctx, []string{"restore", "-backup", loc, "-data", standby, "-force"}, &out, &out); err != nil {
		t.Fatalf("restore again: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "WARNING") {
		t.Errorf("restore warned with the secrets in place:\n%s", out.String())
	}
	// The restored database keeps its region.
	st, err = store.OpenServer(ctx, filepath.Join(standby, "fieldsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Region() != "xiaonan" {
		t.Fatalf("restored region %q", st.Region())
	}
}
