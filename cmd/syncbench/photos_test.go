package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/domain"
)

// TestPhotoFile: each device's photo is a JPEG to the server's sniff, of
// the size asked, its own (distinct from another device's), the same bytes
// each time it is read, and read from an offset it is the file's tail.
func TestPhotoFile(t *testing.T) {
	const size = 3*domain.ChunkBytes + 1234 // a last chunk that is not whole
	p, q := newPhoto("dev-a", 1, size), newPhoto("dev-b", 2, size)
	p.hash()
	q.hash()
	all, _ := io.ReadAll(p.reader(0))
	if len(all) != size {
		t.Fatalf("photo of %d bytes, want %d", len(all), size)
	}
	if got := domain.SniffType(all[:512]); got != "image/jpeg" {
		t.Errorf("sniffed %q, want image/jpeg", got)
	}
	if !bytes.HasSuffix(all, []byte{0xFF, 0xD9}) {
		t.Errorf("no end of image: % x", all[len(all)-4:])
	}
	if sum := sha256.Sum256(all); hex.EncodeToString(sum[:]) != p.sha {
		t.Errorf("hash() %s, the bytes hash %x", p.sha, sum)
	}
	if p.sha == q.sha {
		t.Errorf("two devices' photos are the same file")
	}
	again, _ := io.ReadAll(p.reader(0))
	if !bytes.Equal(all, again) {
		t.Errorf("a photo read twice differs")
	}
	tail, _ := io.ReadAll(p.reader(domain.ChunkBytes * 2))
	if !bytes.Equal(tail, all[domain.ChunkBytes*2:]) {
		t.Errorf("reader(offset) is not the file's tail")
	}
}

// TestPhotos runs the photos scenario on a tiny city with the server in
// process: each device's sync and upload succeed, each chunk is sent
// once, a file offered again is complete at once, the files fetched back
// are the devices' bytes, and the check finds nothing lost.
func TestPhotos(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	args := []string{"-server", "inproc", "-dir", t.TempDir(), "-households", "40", "-members", "6", "-grids", "2", "-real", "0",
		"-scenario", "photos", "-photo-bytes", "200000", "-photo-inflight", "2", "-photo-fetch", "3", "-skip-limits", "-json"}
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("syncbench: %v\nstderr:\n%s\nstdout:\n%s", err, errOut.String(), out.String())
	}
	var photos map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("--json line %q: %v", line, err)
		}
		switch obj["scenario"] {
		case "photos":
			photos = obj
		case "check":
			c := obj["check"].(map[string]any)
			if c["lost"].(float64) != 0 || c["duplicated"].(float64) != 0 || c["acked"].(float64) == 0 {
				t.Errorf("check: %v", c)
			}
		}
	}
	if photos == nil {
		t.Fatalf("no photos object in:\n%s", out.String())
	}
	for _, k := range []string{"errors", "lost", "duplicated"} {
		if photos[k].(float64) != 0 {
			t.Errorf("photos: %s %v (first error %v)", k, photos[k], photos["first_error"])
		}
	}
	devices := photos["devices"].(float64)
	x, _ := photos["extra"].(map[string]any)
	if devices < 5 {
		t.Errorf("photos: %v devices, want the 6 members' devices", devices)
	}
	perFile := float64((200000 + domain.ChunkBytes - 1) / domain.ChunkBytes)
	for k, want := range map[string]float64{
		"files": devices, "chunks_sent": devices * perFile, "chunks_needed": devices * perFile,
		"offered_again_complete_at_once": devices, "fetched_equal": 3, "fetched_from_middle_equal": 3,
		"resumed_uploads": 0,
	} {
		if got, _ := x[k].(float64); got != want {
			t.Errorf("photos: %s %v, want %v (extra %v)", k, x[k], want, x)
		}
	}
	if m, _ := x["most_chunks_unanswered"].(float64); m > 2 {
		t.Errorf("photos: %v chunks unanswered with -photo-inflight 2", m)
	}
	if photos["mutations"].(float64) != 2*devices {
		t.Errorf("photos: %v mutations pushed, want a visit and its attach per device", photos["mutations"])
	}
}
