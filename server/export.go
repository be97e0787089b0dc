package server

import (
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
// enough that gRPC's per-message costs do not count. Variables so that
// tests can force small batches.
var (
	exportBatchBytes   = 1 << 20
	exportBatchRecords = 10000
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
func (x *exportService) Export(req *pb.ExportRequest, stream pb.ExportService_ExportServer) error {
	for i, k := range req.GetKinds() {
		if domain.SpecOf(k) == nil {
			return status.Errorf(codes.InvalidArgument, "kinds[%d]: %v is not a kind", i, k)
		}
	}
	ctx := stream.Context()
	after := req.GetAfterVersion()
	for {
		var raw []byte
		n, last := 0, after
		err := x.s.store.Export(ctx, after, req.GetKinds(), exportBatchRecords, func(version uint64, body []byte) bool {
			size := protowire.SizeTag(exportRecordsField) + protowire.SizeBytes(len(body))
			if n > 0 && len(raw)+size > exportBatchBytes {
				return false // the next batch starts with it
			}
			if raw == nil {
				raw = make([]byte, 0, max(exportBatchBytes, size))
			}
			raw = protowire.AppendTag(raw, exportRecordsField, protowire.BytesType)
			raw = protowire.AppendBytes(raw, body)
			n, last = n+1, version
			return true
		})
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return status.Errorf(codes.Unavailable, "export: %v; resume from version %d", err, after)
		}
		if n == 0 {
			return nil
		}
		resp := &pb.ExportResponse{LastVersion: last}
		resp.ProtoReflect().SetUnknown(raw)
		if err := stream.Send(resp); err != nil {
			return err
		}
		after = last
	}
}
