package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// fieldctl device -key-file encrypts the device database: the key as 32
// raw bytes or 64 hex digits, from the flag or FIELDCTL_KEY_FILE; without
// it an encrypted database is refused saying to give the key, a wrong key
// is refused, a file that is no key is refused saying what a key is.
func TestDeviceKeyFile(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	dir := t.TempDir()
	db := filepath.Join(dir, "phone.db")
	key := make([]byte, 32)
	rand.Read(key)
	hexFile, rawFile, otherFile, badFile := filepath.Join(dir, "hex.key"), filepath.Join(dir, "raw.key"), filepath.Join(dir, "other.key"), filepath.Join(dir, "bad.key")
	other := make([]byte, 32)
	rand.Read(other)
	for p, b := range map[string][]byte{hexFile: []byte(hex.EncodeToString(key) + "\n"), rawFile: key, otherFile: other, badFile: []byte("0123456789")} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	out := ok(t, "device", "-db", db, "-key-file", hexFile, "enroll", e.Code(testenv.Member))
	if !strings.Contains(out, "張國華") {
		t.Fatalf("enroll printed %q, want the user's name", out)
	}
	ok(t, "device", "-db", db, "sync", "-key-file", rawFile) // the same key, raw, after the command
	ok(t, "device", "-db", db, "-key-file", hexFile, "household", "edit", "-id", "H002", "-phone", "13912345678")

	var files []byte
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(db + suffix)
		if err == nil {
			files = append(files, b...)
		}
	}
	for _, s := range []string{"張國華", "張大山", "13800000001", "13912345678"} {
		if bytes.Contains(files, []byte(s)) {
			t.Errorf("the encrypted database's files hold %q in clear", s)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no key", []string{"device", "-db", db, "status"}, "give -key-file (or FIELDCTL_KEY_FILE) with its key"},
		{"another key", []string{"device", "-db", db, "-key-file", otherFile, "status"}, "was encrypted with another key than " + otherFile},
		{"not a key", []string{"device", "-db", db, "-key-file", badFile, "status"}, "10 bytes, not a key: want 32 raw bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := fieldctl(t, tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want a failure saying %q", r.code, r.stderr, tc.want)
			}
		})
	}

	t.Setenv("FIELDCTL_KEY_FILE", rawFile)
	if out := ok(t, "device", "-db", db, "show", "H002"); !strings.Contains(out, "13912345678") {
		t.Errorf("with FIELDCTL_KEY_FILE, show H002 printed %q, want its phone", out)
	}
	if r := fieldctl(t, "device", "-h"); !strings.Contains(r.stderr, "-key-file") || !strings.Contains(r.stderr, "the database is PLAIN") {
		t.Errorf("device -h does not explain -key-file:\n%s", r.stderr)
	}
}
