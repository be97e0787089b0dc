package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
)

// HQCredential creates an HQ credential through the admin RPC, as
// fieldctl admin hq-credential add does, and returns the file holding its
// NKey seed (mode 0600).
func (e *Env) HQCredential(t testing.TB, name string) string {
	t.Helper()
	admin, ctx := e.Admin()
	resp, err := admin.AddHQCredential(ctx, &pb.AddHQCredentialRequest{Name: name})
	if err != nil {
		t.Fatalf("add HQ credential %s: %v", name, err)
	}
	path := filepath.Join(t.TempDir(), "hq-"+name+".nk")
	if err := os.WriteFile(path, []byte(resp.GetSeed()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// HQNATS connects to the embedded NATS over TCP with a new HQ credential
// (the changelog only, read-only; its own inbox prefix); the connection closes when the test
// ends.
func (e *Env) HQNATS(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, t.Name())
	name = "hq-" + name[:min(len(name), 50)] + "-" + domain.RandomToken(4)
	hq, err := server.HQConnectOptions(e.HQCredential(t, name))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(e.NATS.ClientURL(), append(hq, opts...)...)
	if err != nil {
		t.Fatalf("connect as HQ: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// SyncdNATS authenticates a connection to the embedded NATS of a syncd
// process whose data directory is dataDir, as syncd's own user (the key
// syncd keeps in <data>/nats-syncd.nk).
func SyncdNATS(t testing.TB, dataDir string) nats.Option {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(filepath.Join(dataDir, "nats-syncd.nk"))
	if err != nil {
		t.Fatalf("syncd's NATS key: %v", err)
	}
	return opt
}
