package server

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// codec is grpc's proto codec with a buffer pool that has a 64 KiB tier.
// grpc's default pool has tiers of 32 KiB and then 1 MiB, and clears the
// whole buffer it hands out: a file chunk's message (32 KiB of data and a
// few dozen bytes more) took a 1 MiB buffer, cleared, to be decoded (an
// upload) or encoded (a fetch). A profile of 100 devices uploading at once
// spent 21% of the CPU clearing those (BenchmarkConcurrentUploads). The
// wire format is the same, so clients need nothing.
type codec struct{}

// Codec is the codec syncd's gRPC server runs with. A client may use it
// too (grpc.ForceCodecV2), to the same end: a phone's or syncbench's
// upload encodes each chunk into a 64 KiB buffer, not a cleared 1 MiB one.
func Codec() encoding.CodecV2 { return codec{} }

// codecPool's tiers: grpc's (256 B, 4, 16, 32 KiB, 1 MiB) and 64 KiB.
var codecPool = func() mem.BufferPool {
	p, err := mem.NewBinaryTieredBufferPool(8, 12, 14, 15, 16, 20)
	if err != nil {
		panic(err)
	}
	return p
}()

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("marshal: %T is not a proto.Message", v)
	}
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true} // sized just above
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := codecPool.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		codecPool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, codecPool)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("unmarshal: %T is not a proto.Message", v)
	}
	buf := data.MaterializeToBuffer(codecPool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
