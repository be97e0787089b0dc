package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strconv"
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
// once (with a cut: only the chunks the server had not stored yet are
// sent again, and the upload resumes where the server says), a file
// offered again is complete at once, the files fetched back are the
// devices' bytes, and the check finds nothing lost.
func TestPhotos(t *testing.T) {
	const size = 200000 // 7 chunks, the last one short
	perFile := float64((size + domain.ChunkBytes - 1) / domain.ChunkBytes)
	for _, tc := range []struct {
		name          string
		args          []string
		inflight, cut float64
	}{
		{"protocol", nil, 4, 0},
		{"greedy", []string{"-photo-inflight", "0"}, 0, 0},
		{"cut", []string{"-photo-inflight", "2", "-photo-cut", "3"}, 2, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var out, errOut bytes.Buffer
			args := append([]string{"-server", "inproc", "-dir", t.TempDir(), "-households", "40", "-members", "6", "-grids", "2", "-real", "0",
				"-scenario", "photos", "-photo-bytes", strconv.Itoa(size), "-photo-fetch", "3", "-skip-limits", "-json"}, tc.args...)
			if err := run(ctx, args, &out, &errOut); err != nil {
				t.Fatalf("syncbench: %v\nstderr:\n%s\nstdout:\n%s", err, errOut.String(), out.String())
			}
			photos := photosObject(t, out.String())
			devices := photos["devices"].(float64)
			x, _ := photos["extra"].(map[string]any)
			if devices < 5 {
				t.Errorf("photos: %v devices, want the 6 members' devices", devices)
			}
			want := map[string]float64{
				"files": devices, "chunks_needed": devices * perFile,
				"offered_again_complete_at_once": devices, "fetched_equal": 3, "fetched_from_middle_equal": 3,
			}
			if tc.cut == 0 {
				want["chunks_sent"], want["resumed_uploads"] = devices*perFile, 0
			} else {
				// With 2 chunks unanswered at most, the server stored the
				// first before the third went out: every upload resumes
				// past 0, and at most the 2 unanswered are sent again.
				want["resumed_uploads"] = devices
				if sent, _ := x["chunks_sent"].(float64); sent < devices*perFile || sent > devices*(perFile+tc.inflight) {
					t.Errorf("photos: %v chunks sent, want %v to %v", sent, devices*perFile, devices*(perFile+tc.inflight))
				}
			}
			for k, w := range want {
				if got, _ := x[k].(float64); got != w {
					t.Errorf("photos: %s %v, want %v (extra %v)", k, x[k], w, x)
				}
			}
			if m, _ := x["most_chunks_unanswered"].(float64); tc.inflight > 0 && m > tc.inflight {
				t.Errorf("photos: %v chunks unanswered with -photo-inflight %v", m, tc.inflight)
			}
			if photos["mutations"].(float64) != 2*devices {
				t.Errorf("photos: %v mutations pushed, want a visit and its attach per device", photos["mutations"])
			}
		})
	}
}

// photosObject returns the photos scenario's --json object, after
// checking it had no errors and the run's check found nothing lost.
func photosObject(t *testing.T, out string) map[string]any {
	t.Helper()
	var photos map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
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
		t.Fatalf("no photos object in:\n%s", out)
	}
	for _, k := range []string{"errors", "lost", "duplicated"} {
		if photos[k].(float64) != 0 {
			t.Errorf("photos: %s %v (first error %v)", k, photos[k], photos["first_error"])
		}
	}
	return photos
}
