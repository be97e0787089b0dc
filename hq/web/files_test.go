package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// memFiles holds files by hash: the server's store as web.Files sees it
// (internal/syncd's test runs the page on syncd's real store).
type memFiles struct {
	mu    sync.Mutex
	files map[string][]byte
	reads int
	// unproven: record/sha pairs whose bytes were not proven through the
	// record (every other pair is).
	unproven map[string]bool
}

func (m *memFiles) Proven(_ context.Context, recordID, sha string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.unproven[recordID+"/"+sha], nil
}

func (m *memFiles) CopyFile(_ context.Context, sha string, w io.Writer) (int64, error) {
	m.mu.Lock()
	b, ok := m.files[sha]
	m.reads++
	m.mu.Unlock()
	if !ok {
		return 0, ErrNoFile
	}
	n, err := w.Write(b)
	return int64(n), err
}

func hashOfBytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func testJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetRGBA(x, y, color.RGBA{uint8(x), uint8(y), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{255, uint8(y), 0, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A record's files page shows a thumbnail of each image (a JPEG of at
// most 160 px, made from the bytes syncd holds) linked to the file itself
// (the bytes as stored), and an icon for a PDF, linked to it; a town
// secretary outside the record's town is refused the page, the file and
// the thumbnail (and the refusal audited); a file not uploaded yet is a
// clear 404.
func TestFilesPage(t *testing.T) {
	e := newEnv(t, false)
	photo, tall, pdf := testJPEG(t, 800, 600), testPNG(t, 300, 1000), []byte("%PDF-1.7\n人民調解協議書\n%%EOF\n")
	missing := bytes.Repeat([]byte{0xff, 0xd8, 0xff}, 10)
	files := &memFiles{files: map[string][]byte{hashOfBytes(photo): photo, hashOfBytes(tall): tall, hashOfBytes(pdf): pdf}}
	e.srv.cfg.Files = files
	for _, a := range []struct {
		rec, sha string
		n        int
		size     int
		typ, cap string
		village  string
		town     string
	}{
		{"DS1", hashOfBytes(photo), 0, len(photo), "image/jpeg", "调解现场", "V1", "T1"},
		{"DS1", hashOfBytes(tall), 1, len(tall), "image/png", "", "V1", "T1"},
		{"DS1", hashOfBytes(pdf), 2, len(pdf), "application/pdf", "人民調解協議書", "V1", "T1"},
		{"DS1", hashOfBytes(missing), 3, len(missing), "image/jpeg", "not uploaded", "V1", "T1"},
		{"DS2", hashOfBytes(photo), 0, len(photo), "image/jpeg", "other town", "V2", "T2"},
	} {
		if _, err := e.model.Exec(`INSERT INTO attachments (record_id, sha256, n, kind, size, media_type, caption, author_id, hlc, village_id, town_id)
			VALUES (?, ?, ?, 'dispute', ?, ?, ?, 'MED1', 'h', ?, ?)`, a.rec, a.sha, a.n, a.size, a.typ, a.cap, a.village, a.town); err != nil {
			t.Fatal(err)
		}
	}

	hq := e.mustSignIn(t, "HQ1")
	resp, body := get(t, hq, e.ts.URL+"/p/files?record=DS1&lang=en")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("files page: %d\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`src="/f/DS1/` + hashOfBytes(photo) + `/thumb"`,
		`src="/f/DS1/` + hashOfBytes(tall) + `/thumb"`,
		`href="/f/DS1/` + hashOfBytes(pdf) + `"><img class="thumb" src="/static/file.svg"`,
		"调解现场", "人民調解協議書", "application/pdf",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("files page lacks %q", want)
		}
	}

	thumb := func(c *http.Client, sha string, w, h int) {
		t.Helper()
		resp, body := get(t, c, e.ts.URL+"/f/DS1/"+sha+"/thumb")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/jpeg" {
			t.Fatalf("thumbnail: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		img, err := jpeg.Decode(strings.NewReader(body))
		if err != nil {
			t.Fatalf("thumbnail is no JPEG: %v", err)
		}
		if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
			t.Errorf("thumbnail %d×%d, want %d×%d", b.Dx(), b.Dy(), w, h)
		}
	}
	thumb(hq, hashOfBytes(photo), 160, 120)
	thumb(hq, hashOfBytes(tall), 48, 160)
	reads := files.reads
	thumb(hq, hashOfBytes(photo), 160, 120)
	if files.reads != reads {
		t.Errorf("a thumbnail made again: %d reads, want %d (kept)", files.reads, reads)
	}

	for _, f := range []struct {
		data []byte
		typ  string
	}{{photo, "image/jpeg"}, {tall, "image/png"}, {pdf, "application/pdf"}} {
		resp, body := get(t, hq, e.ts.URL+"/f/DS1/"+hashOfBytes(f.data))
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != f.typ || body != string(f.data) {
			t.Errorf("file %s: %d %s, %d bytes; want 200 %s, the %d bytes stored", f.typ, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), f.typ, len(f.data))
		}
	}
	// A record naming the photo by its hash alone, not proven through it:
	// neither the file nor its thumbnail (cached by hash from DS1's).
	if _, err := e.model.Exec(`INSERT INTO attachments (record_id, sha256, n, kind, size, media_type, caption, author_id, hlc, village_id, town_id)
		VALUES ('DS3', ?, 0, 'dispute', ?, 'image/jpeg', 'hash only', 'MED1', 'h', 'V1', 'T1')`, hashOfBytes(photo), len(photo)); err != nil {
		t.Fatal(err)
	}
	files.unproven = map[string]bool{"DS3/" + hashOfBytes(photo): true}
	for _, u := range []string{"/f/DS3/" + hashOfBytes(photo), "/f/DS3/" + hashOfBytes(photo) + "/thumb"} {
		if resp, body := get(t, hq, e.ts.URL+u+"?lang=en"); resp.StatusCode != http.StatusNotFound || strings.Contains(body, string(photo[:32])) {
			t.Errorf("%s, not proven through the record: %d, want 404 without the bytes (%d bytes answered)", u, resp.StatusCode, len(body))
		}
	}
	// The PDF's "thumbnail" is the icon.
	if resp, _ := get(t, hq, e.ts.URL+"/f/DS1/"+hashOfBytes(pdf)+"/thumb"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/static/file.svg" {
		t.Errorf("PDF thumbnail: %d → %s, want 303 to the icon", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Not uploaded yet; not a file of the record; not a hash.
	if resp, body := get(t, hq, e.ts.URL+"/f/DS1/"+hashOfBytes(missing)+"?lang=en"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "not on the server yet") {
		t.Errorf("file not uploaded: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := get(t, hq, e.ts.URL+"/f/DS1/"+hashOfBytes([]byte("x"))); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a file the record does not name: %d, want 404", resp.StatusCode)
	}
	if resp, body := get(t, hq, e.ts.URL+"/f/DS1/XYZ?lang=en"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "64 lowercase hex") {
		t.Errorf("a malformed hash: %d\n%s", resp.StatusCode, body)
	}

	// Town T1's secretary: DS1 yes, DS2 (town T2) no, though it is the
	// same photo.
	sec := e.mustSignIn(t, "S1")
	if resp, body := get(t, sec, e.ts.URL+"/f/DS1/"+hashOfBytes(photo)); resp.StatusCode != http.StatusOK || body != string(photo) {
		t.Errorf("secretary, own town's file: %d", resp.StatusCode)
	}
	for _, u := range []string{"/p/files?record=DS2", "/f/DS2/" + hashOfBytes(photo), "/f/DS2/" + hashOfBytes(photo) + "/thumb"} {
		resp, body := get(t, sec, e.ts.URL+u)
		if resp.StatusCode != http.StatusForbidden || strings.Contains(body, string(photo[:32])) {
			t.Errorf("secretary of T1, %s: %d, want 403", u, resp.StatusCode)
		}
	}
	refused := 0
	for _, a := range auditActions(t, e.webDB) {
		if a.Action == "refused" && strings.Contains(a.Detail, "DS2") {
			refused++
		}
	}
	if refused != 3 {
		t.Errorf("%d refusals audited, want 3", refused)
	}
	// Signed out: to the sign-in form.
	if resp, _ := get(t, e.client(t), e.ts.URL+"/f/DS1/"+hashOfBytes(photo)); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("signed out: %d, want 303 to sign in", resp.StatusCode)
	}
}

// A thumbnail of a phone's photo (4000×3000 JPEG, 12 MP) as the page makes
// it on first view: decoded as it streams, scaled by the box filter,
// encoded.
func BenchmarkThumbnail12MP(b *testing.B) {
	photo := testJPEG(b, 4000, 3000)
	files := &memFiles{files: map[string][]byte{hashOfBytes(photo): photo}}
	sha := hashOfBytes(photo)
	b.SetBytes(int64(len(photo)))
	b.ResetTimer()
	for b.Loop() {
		t, err := makeThumbnail(context.Background(), files, sha)
		if err != nil || len(t) == 0 {
			b.Fatal(err)
		}
	}
}

// The JPEG fast path (means of the YCbCr planes) gives the colours the
// generic box filter (means of the RGB pixels) gives, within rounding, on
// a smooth picture (where colours clip at the gamut's edge the two
// differ more: the mean is taken before the clip, not after).
func TestScaleYCbCrMatchesGeneric(t *testing.T) {
	for _, sub := range []int{444, 420} {
		src := image.NewRGBA(image.Rect(0, 0, 643, 481))
		for y := range 481 {
			for x := range 643 {
				src.SetRGBA(x, y, color.RGBA{uint8(x * 255 / 643), uint8(y / 2), uint8(128 + (x-y)/8), 255})
			}
		}
		var buf bytes.Buffer
		jpeg.Encode(&buf, src, &jpeg.Options{Quality: 100})
		img, err := jpeg.Decode(&buf)
		if err != nil {
			t.Fatal(err)
		}
		yc, ok := img.(*image.YCbCr)
		if !ok {
			t.Fatalf("decoded %T", img)
		}
		if sub == 444 {
			// Re-plane as 4:4:4.
			full := image.NewYCbCr(yc.Rect, image.YCbCrSubsampleRatio444)
			for y := yc.Rect.Min.Y; y < yc.Rect.Max.Y; y++ {
				for x := yc.Rect.Min.X; x < yc.Rect.Max.X; x++ {
					c := yc.YCbCrAt(x, y)
					full.Y[full.YOffset(x, y)], full.Cb[full.COffset(x, y)], full.Cr[full.COffset(x, y)] = c.Y, c.Cb, c.Cr
				}
			}
			yc = full
		}
		fast := Scale(yc, ThumbPixels)
		slow := Scale(struct{ image.Image }{yc}, ThumbPixels)
		if fast.Bounds() != slow.Bounds() || fast.Bounds().Dx() != 160 || fast.Bounds().Dy() != 120 {
			t.Fatalf("%d: bounds %v and %v, want 160×120", sub, fast.Bounds(), slow.Bounds())
		}
		worst := 0
		for i := range fast.Pix {
			d := int(fast.Pix[i]) - int(slow.Pix[i])
			worst = max(worst, d, -d)
		}
		if worst > 4 {
			t.Errorf("%d: the fast path differs from the generic box filter by up to %d of 255", sub, worst)
		}
	}
}
