package server

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

type exportService struct {
	pb.UnimplementedExportServiceServer
	s *Server
}

// Each export message carries the stored bodies of at most
// exportBatchRecords records and, unless one record alone is larger, at
// most exportBatchBytes of them: well under MaxMessageBytes, and large
// enough that gRPC's per-message costs do not count. The first message
// holds at most exportFirstBatchBytes and each next one up to four times
// the one before, so that the client gets its first records without
// waiting for a whole megabyte to be read and compressed. Variables so that
// tests can force small batches.
var (
	exportFirstBatchBytes = 64 << 10
	exportBatchBytes      = 1 << 20
	exportBatchRecords    = 10000
)

// exportRecordsField is ExportResponse.records' field number.
var exportRecordsField = (&pb.ExportResponse{}).ProtoReflect().Descriptor().Fields().ByName("records").Number()

// Export streams every record with a version after the request's, in
// version order, as it is now, until it has sent all there is.
//
// The records are the store's bodies as they are (the protobuf encoding of
// fieldsync.v1.Record), each framed as one entry of ExportResponse.records
// and set as the message's unknown fields: the message marshals them
// verbatim and clients parse them as ordinary records entries, so nothing
// is decoded and re-encoded on the way.
//
// One goroutine reads the next batch from SQLite while this one sends the
// current one (gRPC compresses it here when the client asked for gzip,
// which costs about as much as the read).
func (x *exportService) Export(req *pb.ExportRequest, stream pb.ExportService_ExportServer) error {
	// The export is the whole city (HQ's read model): a town administrator
	// is refused rather than given a filtered stream (see adminExportScope).
	if err := adminExportScope(stream.Context()); err != nil {
		return err
	}
	for i, k := range req.GetKinds() {
		if domain.SpecOf(k) == nil {
			return status.Errorf(codes.InvalidArgument, "kinds[%d]: %v is not a kind", i, k)
		}
	}
	ctx, cancel := context.WithCancel(stream.Context())
	batches := make(chan exportBatch, 1)
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() {
		defer close(done)
		defer close(batches)
		after, limit := req.GetAfterVersion(), min(exportFirstBatchBytes, exportBatchBytes)
		for {
			b := x.read(ctx, after, req.GetKinds(), limit)
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
			if b.err != nil || b.n == 0 {
				return
			}
			after, limit = b.last, min(4*limit, exportBatchBytes)
		}
	}()
	after := req.GetAfterVersion()
	for b := range batches {
		if b.err != nil {
			if err := stream.Context().Err(); err != nil {
				return status.FromContextError(err).Err()
			}
			return status.Errorf(codes.Unavailable, "export: %v; resume from version %d", b.err, after)
		}
		if b.n == 0 {
			return nil
		}
		resp := &pb.ExportResponse{LastVersion: b.last}
		resp.ProtoReflect().SetUnknown(b.raw)
		if err := stream.Send(resp); err != nil {
			return err
		}
		after = b.last
	}
	// The reader stopped without a last batch: the call was cancelled.
	if err := stream.Context().Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Canceled, "export: stopped")
}

// exportBatch is one message's records: n records entries in raw, the
// last of version last.
type exportBatch struct {
	raw  []byte
	n    int
	last uint64
	err  error
}

// read reads the batch after version after, of at most maxBytes (unless
// its one record is larger).
func (x *exportService) read(ctx context.Context, after uint64, kinds []pb.Kind, maxBytes int) exportBatch {
	b := exportBatch{last: after}
	b.err = x.s.store.Export(ctx, after, kinds, exportBatchRecords, func(version uint64, body []byte) bool {
		size := protowire.SizeTag(exportRecordsField) + protowire.SizeBytes(len(body))
		if b.n > 0 && len(b.raw)+size > maxBytes {
			return false // the next batch starts with it
		}
		if b.raw == nil {
			b.raw = make([]byte, 0, max(maxBytes, size))
		}
		b.raw = protowire.AppendTag(b.raw, exportRecordsField, protowire.BytesType)
		b.raw = protowire.AppendBytes(b.raw, body)
		b.n, b.last = b.n+1, version
		return true
	})
	return b
}
