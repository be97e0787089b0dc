package server

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

type exportService struct {
	pb.UnimplementedExportServiceServer
	s *Server
}

const exportBatch = 1000

// Export streams every record with a version after the request's, in
// version order, as it is now, until it has sent all there is.
func (x *exportService) Export(req *pb.ExportRequest, stream pb.ExportService_ExportServer) error {
	for i, k := range req.GetKinds() {
		if domain.SpecOf(k) == nil {
			return status.Errorf(codes.InvalidArgument, "kinds[%d]: %v is not a kind", i, k)
		}
	}
	after := req.GetAfterVersion()
	for {
		recs, err := x.s.store.Export(stream.Context(), after, req.GetKinds(), exportBatch)
		if err != nil {
			if stream.Context().Err() != nil {
				return status.FromContextError(stream.Context().Err()).Err()
			}
			return status.Errorf(codes.Unavailable, "export: %v; resume from version %d", err, after)
		}
		if len(recs) == 0 {
			return nil
		}
		after = recs[len(recs)-1].GetVersion()
		if err := stream.Send(&pb.ExportResponse{Records: recs, LastVersion: after}); err != nil {
			return err
		}
	}
}
