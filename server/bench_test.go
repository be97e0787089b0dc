package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
)

// The Sync handler end to end (gRPC over loopback TLS, auth, group
// commit, pull) and the encoding of a pull page. cmd/syncbench measures
// the same under load; these isolate one call.

type benchDevice struct {
	client pb.SyncServiceClient
	ctx    context.Context
	seq    uint64
	clock  *domain.Clock
	curs   []*pb.Cursor
}

func benchEnroll(b *testing.B, e *testenv.Env, user string) *benchDevice {
	b.Helper()
	resp, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(context.Background(), &pb.EnrollRequest{Code: e.Secret(user), DeviceName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return &benchDevice{client: pb.NewSyncServiceClient(e.Conn()), seq: 1,
		ctx:   metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+resp.GetToken()),
		clock: domain.NewClock(resp.GetDeviceId(), domain.HLC{}, 0, nil)}
}

func (d *benchDevice) visits(n int) []*pb.Mutation {
	out := make([]*pb.Mutation, n)
	for i := range out {
		out[i] = &pb.Mutation{Seq: d.seq, RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE, Hlc: d.clock.Tick().String(),
			Fields: map[string]string{"household_id": "H001", "visited_on": "2026-11-20", "met": "戶主",
				"needs": "屋頂漏水，需要修繕", "help": "聯繫村委會", "follow_up": "下週回訪"}}
		d.seq++
	}
	return out
}

func (d *benchDevice) sync(b *testing.B, muts []*pb.Mutation) {
	resp, err := d.client.Sync(d.ctx, &pb.SyncRequest{Mutations: muts, Cursors: d.curs})
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range resp.GetResults() {
		if r.GetStatus() == pb.MutationStatus_MUTATION_STATUS_REJECTED {
			b.Fatalf("rejected: %v", r)
		}
	}
	d.curs = resp.GetCursors()
}

// BenchmarkSync is one device's sync with one new visit: the latency floor
// of syncbench's single scenario, without the network.
func BenchmarkSync(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(map[int]string{1: "mutations=1", 10: "mutations=10"}[n], func(b *testing.B) {
			e := testenv.Start(b)
			e.ImportSample()
			d := benchEnroll(b, e, testenv.Member)
			d.sync(b, nil)
			b.ResetTimer()
			for b.Loop() {
				d.sync(b, d.visits(n))
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "mutations/s")
		})
	}
}

// BenchmarkSyncPull is a device's call that pushes nothing and finds
// nothing new (a poll, the last page of a pull): no write, so the two
// store reads of authentication weigh most here. auth-cache=off reads
// them at every call, as before the cache.
func BenchmarkSyncPull(b *testing.B) {
	for _, cache := range []bool{true, false} {
		b.Run(map[bool]string{true: "auth-cache=on", false: "auth-cache=off"}[cache], func(b *testing.B) {
			e := testenv.Start(b)
			e.ImportSample()
			if !cache {
				server.DisableAuthCache(e.Server)
			}
			d := benchEnroll(b, e, testenv.Member)
			d.sync(b, nil) // writes the device's contact; the calls below write nothing
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				d.sync(b, nil)
			}
		})
	}
}

// BenchmarkEncodePullPage encodes a full pull page (500 visit records) as
// the server sends it: protobuf, then gzip.
func BenchmarkEncodePullPage(b *testing.B) {
	resp := &pb.SyncResponse{}
	hlc := domain.HLC{Wall: time.Now().UnixMilli(), Node: "dbench"}.String()
	for i := range 500 {
		fv := func(v string) *pb.FieldValue { return &pb.FieldValue{Value: v, Hlc: hlc} }
		r := &pb.Record{Id: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, Version: uint64(i + 1), AuthorId: "U000001", OriginDeviceId: "dbench",
			Fields: map[string]*pb.FieldValue{"household_id": fv("H000123"), "visited_on": fv("2026-11-20"), "met": fv("戶主"),
				"needs": fv("屋頂漏水，需要修繕；孫子上學交通不便"), "help": fv("聯繫村委會安排維修"), "follow_up": fv("下週回訪")}}
		r.Buckets = domain.RecordBuckets(r, "V0001", "T01")
		resp.Records = append(resp.Records, r)
	}
	resp.Cursors = []*pb.Cursor{{Bucket: "h:H000123", Seq: 500}, {Bucket: "u:U000001", Seq: 480}}
	var buf bytes.Buffer
	var raw, zipped int
	b.ReportAllocs()
	for b.Loop() {
		body, err := proto.Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		buf.Reset()
		zw := gzip.NewWriter(&buf)
		zw.Write(body)
		zw.Close()
		raw, zipped = len(body), buf.Len()
	}
	b.ReportMetric(float64(raw)/500, "proto-B/record")
	b.ReportMetric(float64(zipped)/500, "gzip-B/record")
}

// BenchmarkDecodeStoredRecord is what the pull does per row: unmarshal
// the stored body (server/sync.go pull) before re-encoding it.
func BenchmarkDecodeStoredRecord(b *testing.B) {
	hlc := domain.HLC{Wall: time.Now().UnixMilli(), Node: "dbench"}.String()
	fv := func(v string) *pb.FieldValue { return &pb.FieldValue{Value: v, Hlc: hlc} }
	r := &pb.Record{Id: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, Version: 9, AuthorId: "U000001",
		Fields: map[string]*pb.FieldValue{"household_id": fv("H000123"), "visited_on": fv("2026-11-20"), "needs": fv("屋頂漏水")}}
	body, _ := proto.Marshal(r)
	b.ReportAllocs()
	for b.Loop() {
		out := &pb.Record{}
		if err := proto.Unmarshal(body, out); err != nil {
			b.Fatal(err)
		}
	}
}
