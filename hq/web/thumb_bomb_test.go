package web

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/jpeg"
	"testing"
)

// pngHeader is the start of a PNG file claiming w×h pixels of the given
// bit depth and colour type (6: RGBA): a few dozen bytes that describe a
// huge picture, as a decompression bomb would.
func pngHeader(w, h uint32, depth, colorType byte) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = depth, colorType
	chunk := append([]byte("IHDR"), ihdr...)
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

// A picture whose header promises more memory than MaxThumbnailBytes to
// decode gets no thumbnail (the icon) before any pixel is decoded, though
// it is under MaxThumbnailSource pixels: a 16-bit RGBA PNG of 30 MP
// (240 MB) and a 20 MP JPEG (a progressive one holds ~12 bytes a pixel).
// A phone's 12 MP photo still gets its thumbnail.
func TestThumbnailRefusesPicturesTooCostlyToDecode(t *testing.T) {
	bomb := pngHeader(6000, 5000, 16, 6)
	if cfg, format, err := image.DecodeConfig(bytes.NewReader(bomb)); err != nil || cfg.Width != 6000 || format != "png" {
		t.Fatalf("the crafted header does not read as a PNG: %v %v %v", cfg, format, err)
	}
	if int64(6000*5000) > MaxThumbnailSource {
		t.Fatal("the test's picture is over the pixel bound: it would not test the byte bound")
	}
	_, err := decodeBounded(bytes.NewReader(bomb))
	if !errors.Is(err, errNoThumbnail) {
		t.Fatalf("a 16-bit 30 MP PNG: %v, want errNoThumbnail", err)
	}
	t.Log(err)
	// The same size at 8 bits (120 MB) is decoded (and fails only for want
	// of pixel data): the bound is on the bytes, not the format.
	if _, err := decodeBounded(bytes.NewReader(pngHeader(6000, 5000, 8, 6))); err == nil || bytes.Contains([]byte(err.Error()), []byte("MB to decode")) {
		t.Errorf("an 8-bit 30 MP PNG header: %v, want a decode error for missing data, not the byte bound", err)
	}
	if n := thumbnailBytes(image.Config{Width: 5000, Height: 4000}, "jpeg"); n <= MaxThumbnailBytes {
		t.Errorf("a 20 MP JPEG counts %d bytes, want more than %d", n, MaxThumbnailBytes)
	}
	var photo bytes.Buffer
	img := image.NewYCbCr(image.Rect(0, 0, 4000, 3000), image.YCbCrSubsampleRatio420)
	if err := jpeg.Encode(&photo, img, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeBounded(bytes.NewReader(photo.Bytes())); err != nil {
		t.Errorf("a 12 MP JPEG: %v, want decoded", err)
	}
}
