package server

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/encoding"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
)

// The "gzip" compressor syncd registers compresses a small message at the
// default level and a large one at the fastest level, written in pieces
// as grpc writes them, and what it writes decompresses to the message.
func TestSizedGzip(t *testing.T) {
	c := encoding.GetCompressor(grpcgzip.Name)
	if _, ok := c.(*sizedGzip); !ok {
		t.Fatalf("the registered gzip compressor is %T, want *sizedGzip", c)
	}
	reference := func(msg []byte, level int) []byte {
		var b bytes.Buffer
		w, _ := gzip.NewWriterLevel(&b, level)
		w.Write(msg)
		w.Close()
		return b.Bytes()
	}
	text := strings.Repeat("屋頂漏水，需要修繕；孫子上學交通不便。H012345 2026-11-27 ", 200)
	for _, tt := range []struct {
		name  string
		msg   []byte
		level int
	}{
		{"empty", nil, gzip.DefaultCompression},
		{"small", []byte(text[:600]), gzip.DefaultCompression},
		{"at the bound", []byte(text[:smallAnswer]), gzip.DefaultCompression},
		{"large", []byte(text[:smallAnswer+1]), gzip.BestSpeed},
		{"page", []byte(text), gzip.BestSpeed},
	} {
		for _, piece := range []int{1 << 20, 500} { // whole, or in pieces
			var out bytes.Buffer
			w, err := c.Compress(&out)
			if err != nil {
				t.Fatal(err)
			}
			for rest := tt.msg; len(rest) > 0; {
				n := min(piece, len(rest))
				if _, err := w.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if want := reference(tt.msg, tt.level); !bytes.Equal(out.Bytes(), want) {
				t.Errorf("%s in pieces of %d: %d bytes, want the %d of gzip level %d", tt.name, piece, out.Len(), len(want), tt.level)
			}
			r, err := c.Decompress(&out)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, tt.msg) {
				t.Errorf("%s in pieces of %d: decompressed %d bytes (%v), want the %d written", tt.name, piece, len(got), err, len(tt.msg))
			}
		}
	}
}
