package syncd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/server"
)

// The assembly holds the data directory for as long as it runs, whoever
// calls it: a second Start on the same directory (a test, a benchmark, a
// syncd) is refused before it opens anything, and the directory is free
// again after Stop.
func TestStartHoldsTheDataDirectoryUntilStop(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	d, err := syncd.Start(context.Background(), syncd.Config{Dir: dir, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	for _, want := range []string{"admin credential created", "TLS with CA", "nats on", "listening on " + d.Addr} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("start output lacks %q:\n%s", want, out.String())
		}
	}
	token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil || strings.TrimSpace(string(token)) != d.AdminToken {
		t.Errorf("admin.token = %q, %v; the daemon uses %q", token, err, d.AdminToken)
	}
	if url, err := os.ReadFile(filepath.Join(dir, "nats.url")); err != nil || string(url) != d.NATSURL {
		t.Errorf("nats.url = %q, %v; want %q", url, err, d.NATSURL)
	}

	_, err = syncd.Start(context.Background(), syncd.Config{Dir: dir})
	if !errors.Is(err, syncd.ErrLocked) {
		t.Fatalf("second Start on %s: %v, want ErrLocked", dir, err)
	}
	if err := d.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	d2, err := syncd.Start(context.Background(), syncd.Config{Dir: dir})
	if err != nil {
		t.Fatalf("start after stop: %v", err)
	}
	if d2.AdminToken != d.AdminToken {
		t.Errorf("restart made a new admin credential %q, want the kept %q", d2.AdminToken, d.AdminToken)
	}
	if err := d2.Stop(); err != nil {
		t.Fatal(err)
	}
}

// The caller's server configuration reaches the server: the hook runs on
// the configuration Start builds, with the store and JetStream filled in.
func TestStartPassesTheServerConfiguration(t *testing.T) {
	var seen server.Config
	d, err := syncd.Start(context.Background(), syncd.Config{Dir: t.TempDir(), Plaintext: true, Server: func(c *server.Config) {
		c.MaxStreamsPerDevice = 7
		seen = *c
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	if seen.Store != d.Store || seen.JetStream == nil || seen.AdminTokenHash == "" {
		t.Errorf("hook saw store %p (daemon %p), jetstream %v, admin hash %q: want them filled in", seen.Store, d.Store, seen.JetStream, seen.AdminTokenHash)
	}
	if d.CAFingerprint != "" {
		t.Errorf("plain text daemon has a CA fingerprint %q", d.CAFingerprint)
	}
}
