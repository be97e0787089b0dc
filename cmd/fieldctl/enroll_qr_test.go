package main

import (
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	gozxingqr "github.com/makiuchi-d/gozxing/qrcode"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// TestEnrollCodeQR: the QR code of fieldctl admin enroll-code, as a PNG and
// as drawn in the terminal, decodes back to exactly the text code, and the
// decoded text enrolls a real device against a real syncd.
func TestEnrollCodeQR(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	tok := tokenFile(t, e)
	pngPath := filepath.Join(t.TempDir(), "member.png")

	out := ok(t, admin(e, tok, "enroll-code", "-user", testenv.Member, "-qr", "-qr-png", pngPath)...)
	code := tableValue(t, out, "enrollment")
	if !strings.HasPrefix(code, "fieldsync://") {
		t.Fatalf("enrollment row %q: want a fieldsync:// code\n%s", code, out)
	}
	if got := tableValue(t, out, "qr png"); got != pngPath {
		t.Fatalf("qr png row: got %q, want %q", got, pngPath)
	}

	// The PNG: 0600, and it decodes to the code.
	assertMode(t, pngPath, 0o600)
	fromPNG := decodeQR(t, readPNG(t, pngPath))
	if fromPNG != code {
		t.Fatalf("PNG decodes to %q, want the code %q", fromPNG, code)
	}

	// The terminal drawing, put back into modules: every line carries its
	// own colours, the quiet zone is there, and it decodes to the code on
	// a dark terminal and on a light one.
	modules := terminalModules(t, out)
	assertQuietZone(t, modules, 4)
	for _, ground := range []struct {
		name string
		c    color.Gray
	}{{"dark terminal", color.Gray{Y: 0x1e}}, {"light terminal", color.Gray{Y: 0xfa}}} {
		got := decodeQR(t, terminalImage(modules, ground.c))
		if got != code {
			t.Fatalf("%s: the drawing decodes to %q, want the code %q", ground.name, got, code)
		}
	}
	// The decoder is not lenient: the same drawing on a terminal that
	// ignored the colours (light modules in a dark ground's colour, the
	// blocks in a light foreground: the image inverted) does not decode,
	// which is why the drawing sets its own.
	if got, err := tryDecodeQR(invert(terminalImage(modules, color.Gray{Y: 0xfa}))); err == nil {
		t.Fatalf("an inverted drawing decoded to %q: the check above proves nothing", got)
	}

	// The decoded text enrolls a phone: as it is, and as a keyboard-wedge
	// scanner types it (a CR LF after it) for a second code.
	enrollDevice(t, fromPNG)

	out = ok(t, admin(e, tok, "enroll-code", "-user", testenv.Member, "-qr")...)
	code2 := tableValue(t, out, "enrollment")
	fromTerminal := decodeQR(t, terminalImage(terminalModules(t, out), color.Gray{Y: 0x1e}))
	if fromTerminal != code2 || code2 == code {
		t.Fatalf("second code: drawing decodes to %q, want %q (first code %q)", fromTerminal, code2, code)
	}
	enrollDevice(t, fromTerminal+"\r\n")
}

// TestEnrollCodeQRScripts: -qr-png with -q and --json, the file's mode when
// it replaces a readable file, and the flags that do not mix.
func TestEnrollCodeQRScripts(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	tok := tokenFile(t, e)
	dir := t.TempDir()

	t.Run("quiet", func(t *testing.T) {
		p := filepath.Join(dir, "quiet.png")
		if err := os.WriteFile(p, []byte("an older file anyone could read"), 0o644); err != nil {
			t.Fatal(err)
		}
		out := ok(t, admin(e, tok, "enroll-code", "-user", testenv.Member, "-q", "-qr-png", p)...)
		code := strings.TrimSuffix(out, "\n")
		if strings.Contains(code, "\n") || !strings.HasPrefix(code, "fieldsync://") {
			t.Fatalf("-q prints one line, the code: %q", out)
		}
		assertMode(t, p, 0o600)
		if got := decodeQR(t, readPNG(t, p)); got != code {
			t.Fatalf("PNG decodes to %q, want %q", got, code)
		}
	})

	t.Run("json", func(t *testing.T) {
		p := filepath.Join(dir, "json.png")
		out := ok(t, admin(e, tok, "enroll-code", "-user", testenv.Member, "--json", "-qr-png", p)...)
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("--json: %v\n%s", err, out)
		}
		// What --json printed before -qr-png, and the file's name: no
		// rendering of the code, nothing else.
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := []string{"code", "enrollment", "expires", "expires_ms", "qr_png", "user_id"}
		if !slices.Equal(keys, want) {
			t.Fatalf("--json keys: got %v, want %v", keys, want)
		}
		if m["qr_png"] != p {
			t.Fatalf("qr_png: got %v, want %q", m["qr_png"], p)
		}
		if got := decodeQR(t, readPNG(t, p)); got != m["enrollment"] {
			t.Fatalf("PNG decodes to %q, want %q", got, m["enrollment"])
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"-qr", "-q"}, "-qr draws on the terminal"},
			{[]string{"-qr", "--json"}, "use -qr-png FILE"},
			{[]string{"-qr-png", filepath.Join(dir, "no-such-dir", "x.png")}, "-qr-png " + filepath.Join(dir, "no-such-dir", "x.png")},
		} {
			r := fieldctl(t, admin(e, tok, append([]string{"enroll-code", "-user", testenv.Member}, tc.args...)...)...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
				t.Errorf("%v: exit %d, stdout %q, stderr %q: want a failure naming %q and no code", tc.args, r.code, r.stdout, r.stderr, tc.want)
			}
		}
		// None of them issued a code: the two above made two, no more.
		var codes []codeJSON
		decode(t, ok(t, admin(e, tok, "codes", "list", "--user", testenv.Member, "--json")...), &codes)
		if len(codes) != 2 {
			t.Fatalf("codes of %s: got %d, want the 2 of quiet and json: %+v", testenv.Member, len(codes), codes)
		}
		// No temporary file left behind.
		left, _ := filepath.Glob(filepath.Join(dir, ".*"))
		if len(left) > 0 {
			t.Fatalf("left behind: %v", left)
		}
	})

	t.Run("help", func(t *testing.T) {
		r := fieldctl(t, "admin", "enroll-code", "-h")
		for _, want := range []string{"-qr ", "-qr-png file", "black on white", "dark or a light terminal", "0600"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("-h lacks %q:\n%s", want, r.stderr)
			}
		}
	})
}

// tableValue returns the value of a row of fieldctl's two-column table.
func tableValue(t *testing.T, out, key string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, key+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("no %q row in:\n%s", key, out)
	return ""
}

// terminalModules reads the QR code drawn by -qr back into modules
// ([y][x], true = dark), checking that each line sets the colours and
// resets them.
func terminalModules(t *testing.T, out string) [][]bool {
	t.Helper()
	var modules [][]bool
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "\x1b") {
			continue
		}
		body, ok := strings.CutPrefix(line, qrColours)
		if ok {
			body, ok = strings.CutSuffix(body, qrReset)
		}
		if !ok {
			t.Fatalf("QR line %q: want %q, the blocks, then %q", line, qrColours, qrReset)
		}
		var top, bottom []bool
		for _, r := range body {
			switch r {
			case qrBoth:
				top, bottom = append(top, true), append(bottom, true)
			case qrTop:
				top, bottom = append(top, true), append(bottom, false)
			case qrBottom:
				top, bottom = append(top, false), append(bottom, true)
			case qrNone:
				top, bottom = append(top, false), append(bottom, false)
			default:
				t.Fatalf("QR line %q: unexpected %q", line, r)
			}
		}
		if len(modules) > 0 && len(top) != len(modules[0]) {
			t.Fatalf("QR lines of different widths: %d and %d", len(modules[0]), len(top))
		}
		modules = append(modules, top, bottom)
	}
	if len(modules) == 0 {
		t.Fatalf("no QR code in the output:\n%s", out)
	}
	// A version-V code is 17+4V modules plus a 4-module quiet zone each
	// side: an odd count, so the last line's lower half is the white
	// ground beyond the code.
	if w := len(modules[0]); len(modules) != w+1 || (w-8-17)%4 != 0 {
		t.Fatalf("drawing of %d lines, %d columns: want a square of 17+4V+8 modules", len(modules)/2, w)
	}
	if slices.Contains(modules[len(modules)-1], true) {
		t.Fatal("the last line's lower half is not blank")
	}
	return modules[:len(modules)-1]
}

func assertQuietZone(t *testing.T, modules [][]bool, n int) {
	t.Helper()
	size := len(modules)
	for y := range size {
		for x := range size {
			inside := x >= n && y >= n && x < size-n && y < size-n
			if !inside && modules[y][x] {
				t.Fatalf("module (%d,%d) is dark: want a light quiet zone of %d modules", x, y, n)
			}
		}
	}
	if !modules[n][n] {
		t.Fatalf("module (%d,%d) is light: the finder pattern should start there", n, n)
	}
}

// terminalImage paints modules as a terminal shows them: each character
// cell 4 px wide and 8 tall (two modules of 4x4), white ground and black
// blocks where the drawing set its colours, in the middle of a terminal
// whose own ground is ground.
func terminalImage(modules [][]bool, ground color.Gray) image.Image {
	const px, margin = 4, 40
	size := len(modules)*px + 2*margin
	img := image.NewGray(image.Rect(0, 0, size, size))
	draw.Draw(img, img.Bounds(), &image.Uniform{ground}, image.Point{}, draw.Src)
	for y, row := range modules {
		for x, dark := range row {
			c := color.Gray{Y: 0xe5} // a terminal's "white" (47) is often light grey
			if dark {
				c = color.Gray{Y: 0}
			}
			r := image.Rect(margin+x*px, margin+y*px, margin+(x+1)*px, margin+(y+1)*px)
			draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
		}
	}
	return img
}

func invert(img image.Image) image.Image {
	b := img.Bounds()
	out := image.NewGray(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			out.SetGray(x, y, color.Gray{Y: 0xff - color.GrayModel.Convert(img.At(x, y)).(color.Gray).Y})
		}
	}
	return out
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

func decodeQR(t *testing.T, img image.Image) string {
	t.Helper()
	s, err := tryDecodeQR(img)
	if err != nil {
		t.Fatalf("decode QR code: %v", err)
	}
	return s
}

// tryDecodeQR reads a QR code as a scanner would: found in the image (not
// told it is a bare code), without trying the inverted image.
func tryDecodeQR(img image.Image) (string, error) {
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", err
	}
	res, err := gozxingqr.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		return "", err
	}
	return res.GetText(), nil
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != want {
		t.Fatalf("%s: mode %v, want %v", path, got, want)
	}
}

// enrollDevice enrolls a new device (syncer, a real replica) with the
// scanned text and checks who it became.
func enrollDevice(t *testing.T, scanned string) {
	t.Helper()
	d, err := syncer.Open(filepath.Join(t.TempDir(), "phone.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := d.Enroll(ctx, scanned, "掃碼的手機"); err != nil {
		t.Fatalf("enroll with the scanned text %q: %v", scanned, err)
	}
	id, err := d.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if id.UserID != testenv.Member || id.DeviceID == "" {
		t.Fatalf("enrolled as %+v, want user %s", id, testenv.Member)
	}
}
