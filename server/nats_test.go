package server_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/server"
)

func TestByteSizeFlagReadsSizesWithUnits(t *testing.T) {
	for in, want := range map[string]int64{"64GiB": 64 << 30, "500MiB": 500 << 20, "2T": 2 << 40, "1048576": 1 << 20, " 8 KiB ": 8 << 10, "3B": 3} {
		var b server.ByteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1GiB", "0", "ten", "1.5GiB", "99999999999TiB"} {
		var b server.ByteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, b)
		}
	}
	if got := server.ByteSize(64 << 30).String(); got != "64GiB" {
		t.Errorf("String() = %q, want 64GiB", got)
	}
}
