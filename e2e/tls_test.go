package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// A device that pinned its server's CA at enrollment refuses a server with
// another certificate at the same address, and keeps its work.
func TestPinnedDeviceRefusesAnotherServer(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	testenv.Sync(t, member)
	id := must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-11-20")))

	// The same address and data, but a new CA: an impostor, or a server
	// reinstalled without its CA.
	e.Stop()
	ok(t, os.RemoveAll(filepath.Join(e.Dir, "tls")))
	e2 := testenv.Start(t, testenv.WithDir(e.Dir), testenv.WithAddr(e.Addr), testenv.WithAdminToken(e.AdminToken))
	if e2.CAFingerprint == e.CAFingerprint {
		t.Fatal("the restarted server kept its CA: the test proves nothing")
	}
	_, err := member.Sync(t.Context())
	if err == nil || !strings.Contains(err.Error(), "not from the CA this device pinned") {
		t.Fatalf("sync with another server's certificate: %v", err)
	}
	if it := must[*syncer.Item](t)(member.Get(id)); it.State != "pending" {
		t.Errorf("the visit is %s, want still pending", it.State)
	}
	// An enrollment code with the wrong fingerprint is refused before any
	// secret is sent.
	path := filepath.Join(t.TempDir(), "d.db")
	d := must[*syncer.Device](t)(syncer.OpenWith(path, &syncer.Options{Key: phoneKey(path)}))
	defer d.Close()
	err = d.Enroll(t.Context(), syncer.FormatEnrollment(e2.Addr, e2.Secret(testenv.Member), e.CAFingerprint), "phone")
	if err == nil || !strings.Contains(err.Error(), "not from the CA this device pinned") {
		t.Fatalf("enroll with the wrong fingerprint: %v", err)
	}
}

func TestEnrollmentCodes(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	good := syncer.FormatEnrollment("10.1.2.3:7443", "abcdefghijklmnop", fp)
	en, err := syncer.ParseEnrollment(good)
	if err != nil || en.Addr != "10.1.2.3:7443" || en.Code != "abcdefghijklmnop" || en.CA != fp || en.Plaintext {
		t.Fatalf("parse %s: %+v, %v", good, en, err)
	}
	for _, bad := range []struct{ code, says string }{
		{"abcdefghijklmnop", "want fieldsync://"},
		{"fieldsync://10.1.2.3/abc?ca=" + fp, "want HOST:PORT"},
		{"fieldsync://10.1.2.3:7443/?ca=" + fp, "code part"},
		{"fieldsync://10.1.2.3:7443/abc?ca=1234", "64 hex digits"},
		{"fieldsync+plaintext://10.1.2.3:7443/abc", "only to a loopback server"},
	} {
		if _, err := syncer.ParseEnrollment(bad.code); err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("parse %q: %v, want it to say %q", bad.code, err, bad.says)
		}
	}
}

// A plain-text server (development, loopback only) still works end to end.
func TestPlaintextOnLoopback(t *testing.T) {
	e := testenv.Start(t, testenv.WithPlaintext())
	e.ImportSample()
	if e.CAFingerprint != "" {
		t.Fatal("plain-text server has a CA")
	}
	member := e.Device(testenv.Member)
	if rep := testenv.Sync(t, member); rep.Pulled != 3 {
		t.Fatalf("pulled %d households, want 3", rep.Pulled)
	}
}
