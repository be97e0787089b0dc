package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/syncer"
)

// An enrollment that cannot reach the server says what failed and what to
// do; it speaks of no work "kept on the device", since there is none yet.
func TestEnrollUnreachableSaysNothingWasEnrolled(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	code := syncer.FormatEnrollment(addr, "abcdefghijklmnop", strings.Repeat("5f", 32))
	db := filepath.Join(t.TempDir(), "phone.db")

	r := fieldctl(t, device(db, "enroll", code)...)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"enroll at " + addr, "server unreachable", "nothing was enrolled", "syncd runs at " + addr, "enroll again with the same code"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "kept on the device") {
		t.Errorf("enroll speaks of work kept on the device:\n%s", r.stderr)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("a failed enroll left %s behind (%v)", db, err)
	}
}
