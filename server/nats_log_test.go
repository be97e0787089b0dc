package server_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/server"
)

// A connection the embedded NATS refuses for its credential leaves a warn
// line naming the client's address, once a minute per address (a probe
// that retries does not flood the log); so does a publish it denies.
func TestNATSRefusedConnectionsAreLogged(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	hqPub, hqSeed, err := server.NewHQKey()
	if err != nil {
		t.Fatal(err)
	}
	hq, err := nkeys.FromSeed(hqSeed)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := server.EmbeddedNATS(t.TempDir(), "127.0.0.1", -1,
		server.WithAuth(server.NewNATSAuth(kp, []server.HQUser{{Name: "hq", PublicKey: hqPub}})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	logs := &logBuffer{}
	server.LogNATSRefusals(ns, slog.New(slog.NewTextHandler(logs, nil)))

	for range 3 {
		if nc, err := nats.Connect(ns.ClientURL(), nats.Timeout(5*time.Second), nats.NoReconnect()); err == nil {
			nc.Close()
			t.Fatal("a connection without credentials was accepted")
		}
	}
	// syncd's own key still connects, and says nothing.
	nc, err := nats.Connect(ns.ClientURL(), server.NKeyOption(kp))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	// An HQ credential publishing onto the changelog is denied, and logged.
	hc, err := nats.Connect(ns.ClientURL(), server.NKeyOption(hq))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if err := hc.Publish("fieldsync.changes.T01.visit", []byte("forged")); err != nil {
		t.Fatal(err)
	}
	hc.Flush()
	testenv.WaitFor(t, 5*time.Second, "the denied publish logged", func() bool {
		return strings.Contains(logs.String(), "kind=permission")
	})

	log := logs.String()
	if n := strings.Count(log, "authentication error"); n != 1 {
		t.Fatalf("log has %d lines of refused connections, want 1 (once a minute per address):\n%s", n, log)
	}
	for _, want := range []string{"level=WARN", "component=nats", "kind=auth", "127.0.0.1:"} {
		if !strings.Contains(log, want) {
			t.Errorf("log has no %q:\n%s", want, log)
		}
	}
}
