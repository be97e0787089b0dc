package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// An HQ credential made with fieldctl reads the changelog with hq tail,
// and is cut off once revoked.
func TestHQCredentialAddListRevoke(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	tok := tokenFile(t, e)
	seed := filepath.Join(t.TempDir(), "hq-city.nk")
	out := ok(t, admin(e, tok, "hq-credential", "add", "hq-city", "-o", seed)...)
	if !strings.Contains(out, "HQ credential hq-city created") {
		t.Fatalf("add: %q", out)
	}
	if fi, err := os.Stat(seed); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v, %v; want mode 0600", fi, err)
	}
	// Never overwrites a seed file.
	if r := fieldctl(t, admin(e, tok, "hq-credential", "add", "hq-town", "-o", seed)...); r.code == 0 || !strings.Contains(r.stderr, "never overwritten") {
		t.Fatalf("add over an existing file: exit %d, %s", r.code, r.stderr)
	}
	var list []hqCredentialJSON
	decode(t, ok(t, admin(e, tok, "hq-credential", "list", "--json")...), &list)
	if len(list) != 1 || list[0].Name != "hq-city" || list[0].Revoked || !strings.HasPrefix(list[0].PublicKey, "U") {
		t.Fatalf("list: %+v", list)
	}
	last, _ := e.Store.LastSeq(t.Context())
	if err := e.Server.Relay().WaitPublished(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	out = ok(t, "hq", "tail", "-nats", e.NATS.ClientURL(), "-nats-nkey", seed, "-from-start", "-n", "1")
	if !strings.Contains(out, "fieldsync.changes.") {
		t.Fatalf("tail with the HQ credential: %q", out)
	}
	// Without a credential (and no ./data/nats-syncd.nk here): refused.
	if r := fieldctl(t, "hq", "tail", "-nats", e.NATS.ClientURL(), "-from-start", "-n", "1"); r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "authorization") {
		t.Fatalf("tail without a credential: exit %d, %s", r.code, r.stderr)
	}
	if out := ok(t, admin(e, tok, "hq-credential", "revoke", "hq-city")...); !strings.Contains(out, "revoked hq-city") {
		t.Fatalf("revoke: %q", out)
	}
	nk, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nats.Connect(e.NATS.ClientURL(), nk); err == nil {
		t.Fatal("a revoked credential connected")
	}
	decode(t, ok(t, admin(e, tok, "hq-credential", "list", "--json")...), &list)
	if len(list) != 1 || !list[0].Revoked {
		t.Fatalf("list after revoke: %+v", list)
	}
	if r := fieldctl(t, admin(e, tok, "hq-credential", "revoke", "nobody")...); r.code == 0 || !strings.Contains(r.stderr, "no HQ credential") {
		t.Fatalf("revoke unknown: exit %d, %s", r.code, r.stderr)
	}
}
