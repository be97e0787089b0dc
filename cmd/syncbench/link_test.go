package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// The emulated link delays each direction by linkOneWay and throttles it
// to linkBytesPerSec, and counts one round trip per exchange however many
// pieces the answer arrives in.
func TestLinkDelaysThrottlesAndCountsRoundTrips(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() { // an echo server
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	st := &linkStats{}
	start := time.Now()
	c, err := st.dial(context.Background(), lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := time.Since(start); got < 2*linkOneWay {
		t.Fatalf("dial took %v, want at least the TCP handshake's round trip %v", got, 2*linkOneWay)
	}
	msg := bytes.Repeat([]byte("田"), linkBytesPerSec/3) // 12,500 bytes: a second each way
	start = time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	// The bytes cross the uplink in a second, then the echo trickles
	// down while the rest goes up: a second plus both latencies at least.
	if want := time.Second + 2*linkOneWay; took < want {
		t.Errorf("12,500 bytes there and back took %v, want at least %v", took, want)
	}
	up, down, trips, conns := st.snapshot()
	if up != int64(len(msg)) || down != int64(len(msg)) {
		t.Errorf("counted %d up, %d down; want %d each", up, down, len(msg))
	}
	if trips != 2 || conns != 1 {
		t.Errorf("counted %d round trips on %d connections; want 2 (TCP, then the echo) on 1", trips, conns)
	}
}

// -scenario link runs every case of the issue on the real syncer and
// reports them; the sizes are checked by runLink itself.
func TestLinkScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the link scenario waits out about 15 s of emulated 2G latency; run without -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"-scenario", "link", "-dir", t.TempDir(), "-json"}, &out, &errOut); err != nil {
		t.Fatalf("syncbench -scenario link: %v\nstderr:\n%s", err, errOut.String())
	}
	cases := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var obj struct {
			Link linkResult `json:"link"`
		}
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		r := obj.Link
		cases[r.Case+"/"+r.Connection] = true
		if r.Up == 0 || r.Down == 0 || r.Trips == 0 {
			t.Errorf("%s (%s): %d up, %d down, %d round trips: want some of each", r.Case, r.Connection, r.Up, r.Down, r.Trips)
		}
		if r.Connection == "warm" && r.Conns != 0 || r.Connection == "cold" && r.Conns != 1 {
			t.Errorf("%s (%s): %d new connections", r.Case, r.Connection, r.Conns)
		}
	}
	for _, c := range []string{"first sync, 50 records", "a day: 10 visits up, 10 down", "no-op"} {
		for _, conn := range []string{"cold", "warm"} {
			if !cases[c+"/"+conn] {
				t.Errorf("no result for %s (%s) in:\n%s", c, conn, out.String())
			}
		}
	}
}
