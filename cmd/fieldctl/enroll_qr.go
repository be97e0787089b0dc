package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// The enrollment code as a QR code, for a phone's camera: fieldctl admin
// enroll-code -qr draws it in the terminal, -qr-png writes it as an image.
//
// Medium error correction (15% of the symbol may be lost) is the usual
// trade: a code of ~110 characters stays version 7 (45 modules), small
// enough for an 80-column terminal, and survives a glare or a crease on
// paper. go-qrcode never alters the text: lower-case letters, "?" and "="
// are byte mode; it may put a run of digits (the address) in a numeric or
// alphanumeric segment, which carries exactly those characters, so the
// decoded text is the code byte for byte (the tests decode it back).
const qrLevel = qrcode.Medium

// qrPNGModule is the size of one module in the PNG, in pixels: 8 makes a
// version-7 code with its quiet zone 424 px square, sharp on a screen and
// on paper.
const qrPNGModule = 8

// The terminal drawing sets its own colours, black on white, so the code
// reads the same on a dark and on a light terminal: a scanner needs dark
// modules on a light ground, and a terminal's own ground may be either.
// 30;47 (black on white) are the basic ANSI colours every terminal has.
// Each line starts the colours and resets them before the newline, so a
// terminal never paints the rest of a line or a scrolled line white.
const (
	qrColours = "\x1b[30;47m"
	qrReset   = "\x1b[0m"
)

// Half blocks: one character is two modules stacked (a terminal cell is
// about twice as tall as wide, so the modules come out square), drawn in
// the foreground (dark) colour over the white ground.
const (
	qrBoth   = '█' // both modules dark
	qrTop    = '▀' // upper dark, lower light
	qrBottom = '▄' // upper light, lower dark
	qrNone   = ' ' // both light
)

// newEnrollQR encodes an enrollment code.
func newEnrollQR(enrollment string) (*qrcode.QRCode, error) {
	q, err := qrcode.New(enrollment, qrLevel)
	if err != nil {
		return nil, fmt.Errorf("QR code of the enrollment code (%d characters): %w", len(enrollment), err)
	}
	return q, nil
}

// writeQRTerminal draws q with half blocks, its 4-module quiet zone
// included (go-qrcode's bitmap has it), black on white.
func writeQRTerminal(w io.Writer, q *qrcode.QRCode) error {
	bits := q.Bitmap() // [y][x], true = dark
	var b strings.Builder
	for y := 0; y < len(bits); y += 2 {
		b.WriteString(qrColours)
		for x := range bits[y] {
			top := bits[y][x]
			bottom := y+1 < len(bits) && bits[y+1][x] // past the last row: the ground
			switch {
			case top && bottom:
				b.WriteRune(qrBoth)
			case top:
				b.WriteRune(qrTop)
			case bottom:
				b.WriteRune(qrBottom)
			default:
				b.WriteRune(qrNone)
			}
		}
		b.WriteString(qrReset)
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// qrPNGFile is the PNG's file, opened before the code is issued so that a
// path that cannot be written fails before a code exists.
type qrPNGFile struct {
	path string
	tmp  *os.File
}

// createQRPNG opens a temporary file beside path. os.CreateTemp makes it
// 0600, which the rename keeps: the image is the enrollment code, a secret,
// and an existing file at path is replaced, never reopened with its mode.
func createQRPNG(path string) (*qrPNGFile, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, fmt.Errorf("-qr-png %s: %w", path, err)
	}
	return &qrPNGFile{path: path, tmp: tmp}, nil
}

// write writes q as a PNG, syncs it and puts it in place.
func (f *qrPNGFile) write(q *qrcode.QRCode) error {
	err := q.Write(-qrPNGModule, f.tmp)
	if err == nil {
		err = f.tmp.Sync()
	}
	if cerr := f.tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.tmp.Name(), f.path)
	}
	if err != nil {
		os.Remove(f.tmp.Name())
		return fmt.Errorf("-qr-png %s: %w", f.path, err)
	}
	return nil
}

// discard removes the temporary file when no code was issued.
func (f *qrPNGFile) discard() {
	f.tmp.Close()
	os.Remove(f.tmp.Name())
}
