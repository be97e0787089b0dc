package server

import (
	"compress/gzip"
	"io"
	"sync"

	"google.golang.org/grpc/encoding"
	grpcgzip "google.golang.org/grpc/encoding/gzip" // devices send and accept gzip
)

// Answers are gzip'd at a level chosen by their size. Most of syncd's
// deflate CPU goes to large answers (pages of records, export batches):
// those take gzip's fastest level (syncbench's storm profile put the
// default level at 8% of syncd's CPU). A small answer (a one-visit sync)
// takes the default level: the fastest level always writes a dynamic
// Huffman table, which costs a small message more bytes than it saves
// (syncbench burst: 20 fewer bytes per record on the wire, ~10 µs more
// CPU per answer). grpc's own gzip compressor, registered under the same
// name, still decompresses.
const smallAnswer = 2 << 10

func init() {
	encoding.RegisterCompressor(&sizedGzip{Compressor: encoding.GetCompressor(grpcgzip.Name)})
}

// sizedGzip compresses a message small enough to hold in memory at gzip's
// default level, and a larger one at its fastest level as it streams.
type sizedGzip struct {
	encoding.Compressor // grpc's gzip: Name and Decompress
}

var (
	sizedWriters = sync.Pool{New: func() any { return &sizedWriter{} }}
	smallGzip    = sync.Pool{New: func() any { return gzip.NewWriter(io.Discard) }}
	fastGzip     = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
		return w
	}}
)

func (sizedGzip) Compress(w io.Writer) (io.WriteCloser, error) {
	z := sizedWriters.Get().(*sizedWriter)
	z.w, z.buf, z.fast = w, z.buf[:0], nil
	return z, nil
}

// sizedWriter holds a message while it is small and streams it through
// the fastest level once it is not.
type sizedWriter struct {
	w    io.Writer
	buf  []byte
	fast *gzip.Writer
}

func (z *sizedWriter) Write(p []byte) (int, error) {
	if z.fast == nil {
		if len(z.buf)+len(p) <= smallAnswer {
			z.buf = append(z.buf, p...)
			return len(p), nil
		}
		z.fast = fastGzip.Get().(*gzip.Writer)
		z.fast.Reset(z.w)
		if _, err := z.fast.Write(z.buf); err != nil {
			return 0, err
		}
		z.buf = z.buf[:0]
	}
	return z.fast.Write(p)
}

func (z *sizedWriter) Close() error {
	var err error
	if z.fast != nil {
		err = z.fast.Close()
		z.fast.Reset(io.Discard) // pooled without a hold on grpc's buffer
		fastGzip.Put(z.fast)
	} else {
		small := smallGzip.Get().(*gzip.Writer)
		small.Reset(z.w)
		if _, err = small.Write(z.buf); err == nil {
			err = small.Close()
		}
		small.Reset(io.Discard)
		smallGzip.Put(small)
	}
	z.w, z.fast = nil, nil
	sizedWriters.Put(z)
	return err
}
