package syncer_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// linkPhone is a device on a replica file the test reopens, as a phone
// app's new process opens it again.
type linkPhone struct {
	t    *testing.T
	path string
	d    *syncer.Device
}

func newLinkPhone(t *testing.T, e *testenv.Env, user string) *linkPhone {
	t.Helper()
	p := &linkPhone{t: t, path: filepath.Join(t.TempDir(), "phone.db")}
	p.open()
	t.Cleanup(func() { p.d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.d.Enroll(ctx, e.Code(user), "phone of "+user); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	return p
}

func (p *linkPhone) open() {
	p.t.Helper()
	d, err := syncer.OpenWith(p.path, &syncer.Options{ConnectTimeout: 5 * time.Second})
	if err != nil {
		p.t.Fatal(err)
	}
	p.d = d
}

// reopen closes the device and opens its replica again: nothing of the
// connection stays in memory.
func (p *linkPhone) reopen() {
	p.t.Helper()
	if err := p.d.Close(); err != nil {
		p.t.Fatal(err)
	}
	p.open()
}

func (p *linkPhone) state() tls.ConnectionState {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := p.d.TLSState(ctx)
	if err != nil {
		p.t.Fatalf("call on the device's connection: %v", err)
	}
	if cs.NegotiatedProtocol != "h2" {
		p.t.Fatalf("negotiated protocol %q, want h2", cs.NegotiatedProtocol)
	}
	return cs
}

// The phone keeps syncd's CA from its enrollment and says so: syncd sends
// its certificate alone. The hint is server.ALPNHoldsCA.
func TestDeviceHoldingTheCAGetsTheServerCertificateAlone(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	p := newLinkPhone(t, e, testenv.Member)
	if held, err := p.d.HoldsCA(); err != nil || !held {
		t.Fatalf("after enrollment the replica holds the CA: %v (%v), want true", held, err)
	}
	// A full handshake: no session to resume.
	if err := p.d.ForgetTLS(false, true); err != nil {
		t.Fatal(err)
	}
	p.reopen()
	cs := p.state()
	if cs.DidResume {
		t.Fatal("resumed with no session kept")
	}
	if got := len(cs.PeerCertificates); got != 1 {
		t.Fatalf("syncd sent %d certificates to a device holding its CA, want 1 (the leaf)", got)
	}
	if got := server.Fingerprint(cs.PeerCertificates[0].Raw); got == e.CAFingerprint {
		t.Fatal("the one certificate sent is the CA, want the server's")
	}
	testenv.Sync(t, p.d)
}

// A replica from before devices kept the CA and sessions (an older
// phone) offers only "h2": syncd sends the chain, the pin is checked on
// it, and the device keeps the CA from then on.
func TestDeviceEnrolledBeforeKeepingTheCAStillConnects(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	p := newLinkPhone(t, e, testenv.Member)
	if err := p.d.ForgetTLS(true, true); err != nil {
		t.Fatal(err)
	}
	p.reopen()
	if held, _ := p.d.HoldsCA(); held {
		t.Fatal("ForgetTLS left the CA")
	}
	testenv.Sync(t, p.d)
	cs := p.state()
	if got := len(cs.PeerCertificates); got != 2 {
		t.Fatalf("syncd sent %d certificates to a device without the CA, want 2 (leaf and CA)", got)
	}
	if got := server.Fingerprint(cs.PeerCertificates[1].Raw); got != e.CAFingerprint {
		t.Fatalf("second certificate %s, want the CA %s", got, e.CAFingerprint)
	}
	if held, err := p.d.HoldsCA(); err != nil || !held {
		t.Fatalf("after a connection with the chain the replica holds the CA: %v (%v), want true", held, err)
	}
	if err := p.d.ForgetTLS(false, true); err != nil {
		t.Fatal(err)
	}
	p.reopen()
	if got := len(p.state().PeerCertificates); got != 1 {
		t.Fatalf("next connection: %d certificates, want 1", got)
	}
}

// A new process on the same replica resumes the TLS session the last one
// kept, and so does one after syncd restarted (it keeps its ticket keys).
func TestNewProcessResumesTheTLSSession(t *testing.T) {
	dir := t.TempDir()
	e := testenv.Start(t, testenv.WithDir(dir))
	e.ImportSample()
	p := newLinkPhone(t, e, testenv.Member)
	testenv.Sync(t, p.d)
	p.reopen()
	if cs := p.state(); !cs.DidResume {
		t.Fatal("a new Device on the replica made a full handshake, want a resumed session")
	}
	testenv.Sync(t, p.d)

	t.Run("after syncd restarts", func(t *testing.T) {
		p.d.Close()
		addr := e.Addr
		e.Stop()
		e2 := testenv.Start(t, testenv.WithDir(dir), testenv.WithAddr(addr))
		if e2.CAFingerprint != e.CAFingerprint {
			t.Fatal("the restarted syncd has another CA")
		}
		p.open()
		if cs := p.state(); !cs.DidResume {
			t.Fatal("after syncd restarted the device made a full handshake, want a resumed session")
		}
		testenv.Sync(t, p.d)
	})

	t.Run("a session syncd cannot open", func(t *testing.T) {
		// syncd lost its ticket keys (the file deleted): the kept session
		// costs a full handshake, not an error.
		p.d.Close()
		addr := e.Addr
		e.Stop()
		if err := os.Remove(filepath.Join(dir, "tls", "ticket-keys")); err != nil {
			t.Fatal(err)
		}
		testenv.Start(t, testenv.WithDir(dir), testenv.WithAddr(addr))
		p.open()
		if cs := p.state(); cs.DidResume {
			t.Fatal("resumed a session sealed with a key syncd no longer has")
		}
		testenv.Sync(t, p.d)
	})
}

// A session kept from a handshake that sent the certificate alone, on a
// replica that lost the CA it was checked against: the resumed handshake
// cannot check the pin, so the device forgets the session and the next
// attempt gets the chain (and keeps the CA again).
func TestResumedSessionWithoutTheCAIsForgotten(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	p := newLinkPhone(t, e, testenv.Member)
	// A full handshake, which sends the certificate alone, and its session.
	if err := p.d.ForgetTLS(false, true); err != nil {
		t.Fatal(err)
	}
	p.reopen()
	if got := len(p.state().PeerCertificates); got != 1 {
		t.Fatalf("%d certificates, want 1", got)
	}
	if err := p.d.ForgetTLS(true, false); err != nil {
		t.Fatal(err)
	}
	p.reopen()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.d.Sync(ctx); err != nil {
		t.Logf("the first attempt: %v", err)
	}
	p.reopen()
	testenv.Sync(t, p.d)
	if held, err := p.d.HoldsCA(); err != nil || !held {
		t.Fatalf("after a full handshake the replica holds the CA again: %v (%v)", held, err)
	}
}

// A device that kept the CA meets another server at its address (syncd
// reinstalled without its CA): the certificate alone, not made by the
// kept CA, is refused as the wrong server, as the chain was before.
func TestDeviceHoldingTheCARefusesAnotherServer(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	p := newLinkPhone(t, e, testenv.Member)
	if err := p.d.ForgetTLS(false, true); err != nil {
		t.Fatal(err)
	}
	p.d.Close()
	addr := e.Addr
	e.Stop()
	testenv.Start(t, testenv.WithAddr(addr)) // a new data directory: a new CA
	p.open()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.d.Sync(ctx)
	if err == nil || !strings.Contains(err.Error(), syncer.ErrWrongServer.Error()) {
		t.Fatalf("sync with another server: %v, want %q", err, syncer.ErrWrongServer)
	}
}
