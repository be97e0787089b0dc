package server

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshake runs one TLS handshake of a client offering protos against
// cfg on loopback and returns the client's view of it.
func handshake(t *testing.T, cfg *tls.Config, protos []string, cache tls.ClientSessionCache) tls.ConnectionState {
	t.Helper()
	srv := cfg.Clone()
	srv.NextProtos = []string{"h2"} // as gRPC sets it
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.(*tls.Conn).Handshake()
		c.Write([]byte{1}) // the client reads it, and the session ticket before it
		buf := make([]byte, 1)
		c.Read(buf)
	}()
	c, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: protos, ClientSessionCache: cache, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	c.Write(buf)
	cs := c.ConnectionState()
	if cs.NegotiatedProtocol != "h2" {
		t.Fatalf("negotiated %q, want h2", cs.NegotiatedProtocol)
	}
	return cs
}

func TestServerSendsItsCertificateAloneToWhoHoldsTheCA(t *testing.T) {
	cfg, fp, err := LoadOrCreateTLS(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		protos []string
		want   int
	}{
		{"hint", []string{"h2", ALPNHoldsCA}, 1},
		{"hint first", []string{ALPNHoldsCA, "h2"}, 1},
		{"older phone: h2 only", []string{"h2"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := handshake(t, cfg, tc.protos, nil)
			if got := len(cs.PeerCertificates); got != tc.want {
				t.Fatalf("%d certificates, want %d", got, tc.want)
			}
			if tc.want == 2 && Fingerprint(cs.PeerCertificates[1].Raw) != fp {
				t.Fatal("the second certificate is not the CA")
			}
		})
	}
}

func TestSessionTicketKeysSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	cfg, _, err := LoadOrCreateTLS(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, ticketKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("%s mode %v, want 0600", ticketKeysFile, st.Mode().Perm())
	}
	cache := tls.NewLRUClientSessionCache(4)
	if handshake(t, cfg, []string{"h2"}, cache).DidResume {
		t.Fatal("first handshake resumed")
	}
	again, _, err := LoadOrCreateTLS(dir, []string{"127.0.0.1"}) // syncd restarted
	if err != nil {
		t.Fatal(err)
	}
	if !handshake(t, again, []string{"h2"}, cache).DidResume {
		t.Fatal("a ticket from before the restart did not resume")
	}
	// Two days later: syncd starts with a new key sealing, and a ticket
	// sealed with the day's before still resumes.
	b, err := os.ReadFile(filepath.Join(dir, ticketKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	var sec int64
	var key string
	if _, err := fmt.Sscanf(string(b), "%d %s", &sec, &key); err != nil {
		t.Fatal(err)
	}
	aged := fmt.Sprintf("%d %s\n", sec-2*24*3600, key)
	if err := os.WriteFile(filepath.Join(dir, ticketKeysFile), []byte(aged), 0o600); err != nil {
		t.Fatal(err)
	}
	cache2 := tls.NewLRUClientSessionCache(4)
	handshake(t, again, []string{"h2"}, cache2) // a ticket sealed with the old key
	rotated, _, err := LoadOrCreateTLS(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, ticketKeysFile)); strings.Count(string(b), "\n") != 2 {
		t.Fatalf("after two days the ring holds:\n%s\nwant a new key and the old one", b)
	}
	if !handshake(t, rotated, []string{"h2"}, cache2).DidResume {
		t.Fatal("a ticket sealed with the previous key did not resume after the rotation")
	}
	other, _, err := LoadOrCreateTLS(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if handshake(t, other, []string{"h2"}, cache).DidResume {
		t.Fatal("another server's ticket resumed")
	}
}

func TestSessionTicketKeysRotateDaily(t *testing.T) {
	path := filepath.Join(t.TempDir(), ticketKeysFile)
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ring, err := loadTicketKeys(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	first := ring.sealing()
	now = now.Add(25 * time.Hour)
	second := ring.sealing()
	if second == first {
		t.Fatal("no new key after a day")
	}
	reloaded, err := loadTicketKeys(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	if len(reloaded.keys) != 2 || reloaded.keys[0].id != second.id || reloaded.keys[1].id != first.id {
		t.Fatalf("reloaded ring: %d keys, want the two, newest first", len(reloaded.keys))
	}
	now = now.Add(8 * 24 * time.Hour)
	third := reloaded.sealing()
	if len(reloaded.keys) != 1 || reloaded.keys[0] != third || reloaded.byID(first.id[:]) != nil {
		t.Fatalf("after 9 days: %d keys, want only the new one (the old ones' tickets expired)", len(reloaded.keys))
	}
	if err := os.WriteFile(path, []byte("12 zz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadTicketKeys(path, clock); err == nil {
		t.Fatal("a damaged key file was accepted")
	}
	if ss, err := reloaded.unwrap(append(first.id[:], make([]byte, 40)...), tls.ConnectionState{}); ss != nil || err != nil {
		t.Fatalf("a ticket of a dropped key: %v, %v; want no session and no error (a full handshake)", ss, err)
	}
}

// A ticket is whatever a client sends: anything that is not one syncd
// sealed opens to no session (a full handshake), never an error or a panic.
func FuzzUnwrapTicket(f *testing.F) {
	ring, err := loadTicketKeys(filepath.Join(f.TempDir(), ticketKeysFile), time.Now)
	if err != nil {
		f.Fatal(err)
	}
	id := ring.keys[0].id[:]
	f.Add([]byte{})
	f.Add(append([]byte(nil), id...))
	f.Add(append(append([]byte(nil), id...), make([]byte, 64)...))
	f.Fuzz(func(t *testing.T, ticket []byte) {
		ss, err := ring.unwrap(ticket, tls.ConnectionState{})
		if ss != nil || err != nil {
			t.Fatalf("a ticket syncd did not seal opened: %v, %v", ss, err)
		}
	})
}
