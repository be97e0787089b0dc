package store

import (
	"bytes"
	"testing"
)

// Opening what the file holds never panics, and nothing but a value
// sealed with the key for that very place opens.
func FuzzSealOpen(f *testing.F) {
	s, err := newSealer(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.seal([]byte("張大山"), "records", "local", "H001"), "H001")
	f.Add([]byte{sealFormat}, "H001")
	f.Add([]byte("plain text"), "")
	f.Fuzz(func(t *testing.T, v []byte, row string) {
		p, err := s.open(v, "records", "local", row)
		if err != nil {
			return
		}
		// It opened: it must be the seed sealed for H001, or v was nil.
		if v != nil && (row != "H001" || string(p) != "張大山") {
			t.Fatalf("%x opened for row %q as %q", v, row, p)
		}
		if again, err := s.open(s.seal(p, "records", "local", row), "records", "local", row); err != nil || !bytes.Equal(again, p) {
			t.Fatalf("sealed again: %q, %v", again, err)
		}
	})
}
