package syncer_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// sizes adds up the Sync requests' and answers' sizes: protobuf bytes,
// and gzip'd at the default level as both ends send messages this small
// (server/compress.go: answers up to 2 KiB), which with gRPC's 5-byte
// prefix is the message's payload on the wire (TLS and HTTP/2 framing
// aside: about 60 bytes a message, the same with and without echoes).
type sizes struct {
	mu                      sync.Mutex
	noEcho                  bool
	calls                   int
	reqProto, reqGzip       int
	answerProto, answerGzip int
}

func gzipLen(b []byte) int {
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	z.Write(b)
	z.Close()
	return buf.Len()
}

func (s *sizes) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	r, ok := req.(*pb.SyncRequest)
	if !ok {
		return h(ctx, req)
	}
	if s.noEcho {
		asOlderDevice(r)
	}
	rb, _ := proto.Marshal(r)
	resp, err := h(ctx, req)
	if err != nil {
		return resp, err
	}
	ab, merr := proto.Marshal(resp.(*pb.SyncResponse))
	if merr != nil {
		return nil, merr
	}
	s.mu.Lock()
	s.calls++
	s.reqProto += len(rb)
	s.reqGzip += gzipLen(rb) + 5
	s.answerProto += len(ab)
	s.answerGzip += gzipLen(ab) + 5
	s.mu.Unlock()
	return resp, err
}

// BenchmarkEchoOneVisitSync is a member's sync of one new visit, with
// the visit echoed (echo) and sent back in full as before echoes
// (full: the request's hashes taken out, as an older device sends it).
// It reports the bytes of the request and of the answer per sync.
//
//	go test ./syncer -run '^$' -bench EchoOneVisitSync -benchtime 50x
func BenchmarkEchoOneVisitSync(b *testing.B) {
	for _, mode := range []string{"full", "echo"} {
		b.Run(mode, func(b *testing.B) {
			s := &sizes{noEcho: mode == "full"}
			e := testenv.Start(b, testenv.WithUnaryInterceptor(s.intercept))
			e.ImportSample()
			member := e.Device(testenv.Member)
			testenv.Sync(b, member)
			s.mu.Lock()
			s.calls, s.reqProto, s.reqGzip, s.answerProto, s.answerGzip = 0, 0, 0, 0, 0
			s.mu.Unlock()
			echoed := 0
			b.ResetTimer()
			for i := range b.N {
				if _, err := member.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-12-06").
					Set("met", "張大山和老伴").Set("needs", fmt.Sprintf("屋頂漏水，要修 %d", i)).Set("help", "聯繫了村裡的施工隊")); err != nil {
					b.Fatal(err)
				}
				rep := testenv.Sync(b, member)
				echoed += rep.Echoed
			}
			b.StopTimer()
			if mode == "echo" && echoed != b.N {
				b.Fatalf("%d of %d visits echoed", echoed, b.N)
			}
			if mode == "full" && echoed != 0 {
				b.Fatalf("%d visits echoed without hashes", echoed)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.calls != b.N {
				b.Fatalf("%d calls for %d syncs", s.calls, b.N)
			}
			n := float64(b.N)
			b.ReportMetric(float64(s.answerProto)/n, "answer-proto-B/op")
			b.ReportMetric(float64(s.answerGzip)/n, "answer-gzip-B/op")
			b.ReportMetric(float64(s.reqProto)/n, "request-proto-B/op")
			b.ReportMetric(float64(s.reqGzip)/n, "request-gzip-B/op")
		})
	}
}
