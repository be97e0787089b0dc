package testenv

import (
	"context"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Export reads a whole ExportService.Export stream over conn (ctx carries
// the credential), failing the test on any error.
func Export(t testing.TB, ctx context.Context, conn *grpc.ClientConn, req *pb.ExportRequest, opts ...grpc.CallOption) []*pb.Record {
	t.Helper()
	stream, err := pb.NewExportServiceClient(conn).Export(ctx, req, opts...)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	var out []*pb.Record
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		out = append(out, resp.GetRecords()...)
	}
}
