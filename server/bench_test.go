package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
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

// BenchmarkExport is HQ's export of 20,000 visits from version 0 over
// loopback TLS, decoded by the client, with gzip (as syncer and fieldctl
// dial) and without. Client and server share the process: cpu-us/record is
// the process's CPU (both sides) per record.
func BenchmarkExport(b *testing.B) {
	const n = 20000
	e := testenv.Start(b)
	hlc := domain.HLC{Wall: time.Now().UnixMilli(), Node: "dbench"}.String()
	fv := func(v string) *pb.FieldValue { return &pb.FieldValue{Value: v, Hlc: hlc} }
	for i := 0; i < n; i += 500 {
		err := e.Store.Write(context.Background(), func(tx *store.Tx) error {
			for j := i; j < i+500; j++ {
				h := fmt.Sprintf("H%06d", j%5000)
				r := &pb.Record{Id: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, AuthorId: fmt.Sprintf("U%06d", j%700), OriginDeviceId: fmt.Sprintf("D%06d", j%700),
					Fields: map[string]*pb.FieldValue{"household_id": fv(h), "visited_on": fv(fmt.Sprintf("2026-11-%02d", 1+j%28)), "met": fv("戶主"),
						"needs": fv(fmt.Sprintf("屋頂漏水，需要修繕；第%d號", j)), "help": fv("聯繫村委會安排維修"), "follow_up": fv("下週回訪")}}
				r.Buckets = domain.RecordBuckets(r, fmt.Sprintf("V%04d", j%44), fmt.Sprintf("T%02d", j%2))
				if _, err := tx.PutRecord(nil, r, store.RecordMeta{VillageID: fmt.Sprintf("V%04d", j%44), TownID: fmt.Sprintf("T%02d", j%2)},
					store.ChangeInfo{DeviceID: "dbench", UserID: "U000001"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	_, ctx := e.Admin()
	client := pb.NewExportServiceClient(e.Conn())
	for _, comp := range []string{grpcgzip.Name, "identity"} {
		b.Run("compression="+comp, func(b *testing.B) {
			var opts []grpc.CallOption
			if comp != "identity" {
				opts = append(opts, grpc.UseCompressor(comp))
			}
			cpu0 := cpuTime()
			for b.Loop() {
				stream, err := client.Export(ctx, &pb.ExportRequest{}, opts...)
				if err != nil {
					b.Fatal(err)
				}
				got := 0
				for {
					resp, err := stream.Recv()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					got += len(resp.GetRecords())
				}
				if got != n {
					b.Fatalf("exported %d records, want %d", got, n)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*n), "cpu-us/record")
		})
	}
}

// cpuTime is the process's user and system CPU so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
