package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
)

// syncd's embedded NATS listening beyond loopback: it requires TLS with a
// certificate from syncd's CA and a credential; HQ's credential from the
// admin RPC works; the changelog's limits come from the flags and are
// printed.
func TestSyncdNATSBeyondLoopbackRequiresTLSAndACredential(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-data", data, "-listen", "127.0.0.1:0", "-nats-listen", "0.0.0.0:-1",
			"-log-level", "warn", "-changelog-max-age", "8760h"}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(20 * time.Second): // waitFor took its end
		}
	}()
	waitFor(t, &stdout, listeningRE, done)
	out := stdout.String()
	for _, want := range []string{
		"syncd: nats requires TLS on 0.0.0.0",
		"syncd: NATS key created in " + filepath.Join(data, "nats-syncd.nk"),
		"syncd: changelog stream FIELDSYNC_CHANGES: subjects fieldsync.changes.>, file storage, limits retention, max age 8760h0m0s, max 48GiB, discard old, duplicate window 30s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	port := regexp.MustCompile(`syncd: nats on (?:nats|tls)://[^:]+:(\d+) `).FindStringSubmatch(out)
	if port == nil {
		t.Fatalf("no nats line:\n%s", out)
	}
	url := "nats://127.0.0.1:" + port[1]
	ca := nats.RootCAs(filepath.Join(data, "tls", server.CAFile))
	syncdKey, err := nats.NkeyOptionFromSeed(filepath.Join(data, "nats-syncd.nk"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nats.Connect(url, ca, nats.Timeout(5*time.Second)); err == nil {
		t.Error("a connection over TLS without a credential was accepted")
	}
	// The refusal leaves a trace in syncd's log.
	if log := stderr.String(); !strings.Contains(log, "authentication error") || !strings.Contains(log, "component=nats") {
		t.Errorf("syncd's log has no refused NATS connection:\n%s", log)
	}
	if nc, err := nats.Connect(url, syncdKey, nats.Timeout(5*time.Second)); err == nil {
		if nc.TLSRequired() || nc.ConnectedUrl() == "" {
			nc.Close()
		}
		// nats.go upgrades to TLS when the server requires it, but cannot
		// check the certificate without the CA.
		nc.Close()
		t.Error("a connection that does not trust syncd's CA was accepted")
	}

	b, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	addr := listeningRE.FindStringSubmatch(stdout.String())[1]
	admin := dialAdmin(t, addr, data)
	resp, err := admin.AddHQCredential(withToken(strings.TrimSpace(string(b))), &pb.AddHQCredentialRequest{Name: "hq-city"})
	if err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(t.TempDir(), "hq.nk")
	if err := os.WriteFile(seed, []byte(resp.GetSeed()), 0o600); err != nil {
		t.Fatal(err)
	}
	hq, err := server.HQConnectOptions(seed) // its key and its own inbox prefix
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, append(hq, ca)...)
	if err != nil {
		t.Fatalf("HQ over TLS: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Error("the connection is not TLS")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(t.Context(), domain.StreamName); err != nil {
		t.Fatalf("HQ stream info over TLS: %v", err)
	}
}

// An external NATS that wants a credential and TLS: syncd connects with
// -nats-nkey and -nats-ca, and is refused without them.
func TestSyncdExternalNATSWithNKeyAndTLS(t *testing.T) {
	dir := t.TempDir()
	tlsCfg, err := server.LoadOrCreateNATSTLS(filepath.Join(dir, "tls"), []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	kp, _, err := server.LoadOrCreateNKey(filepath.Join(dir, "syncd.nk"))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := server.EmbeddedNATS(filepath.Join(dir, "js"), "127.0.0.1", -1, server.WithAuth(server.NewNATSAuth(kp, nil)), server.WithTLS(tlsCfg))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	url := strings.Replace(ns.ClientURL(), "0.0.0.0", "127.0.0.1", 1)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = run(ctx, []string{"-data", t.TempDir(), "-listen", "127.0.0.1:0", "-nats", url, "-nats-ca", filepath.Join(dir, "tls", server.CAFile)}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("without -nats-nkey: %v, want an authorization error", err)
	}

	var stdout syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-data", t.TempDir(), "-listen", "127.0.0.1:0", "-nats", url, "-log-level", "warn",
			"-nats-nkey", filepath.Join(dir, "syncd.nk"), "-nats-ca", filepath.Join(dir, "tls", server.CAFile)}, &stdout, io.Discard)
	}()
	waitFor(t, &stdout, listeningRE, done)
	if want := "(external)\n"; !strings.Contains(stdout.String(), want) {
		t.Errorf("stdout lacks %q; got:\n%s", want, stdout.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
