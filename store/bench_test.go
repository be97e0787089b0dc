package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// The server's write path: one group-commit transaction applying a batch
// of new records with Tx.PutRecord (record row, bucket rows, change row),
// synchronous=FULL. Sub-benchmarks vary how many records the database
// already holds, which must not matter for an indexed write path.

func benchRecord(i int, household string) *pb.Record {
	hlc := domain.HLC{Wall: time.Now().UnixMilli(), Counter: uint16(i), Node: "dbench"}.String()
	fv := func(v string) *pb.FieldValue { return &pb.FieldValue{Value: v, Hlc: hlc} }
	r := &pb.Record{Id: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, AuthorId: "U000001", OriginDeviceId: "dbench",
		Fields: map[string]*pb.FieldValue{"household_id": fv(household), "visited_on": fv("2026-11-20"), "met": fv("戶主"),
			"needs": fv("屋頂漏水，需要修繕；孫子上學交通不便"), "help": fv("聯繫村委會安排維修"), "follow_up": fv("下週回訪")}}
	r.Buckets = domain.RecordBuckets(r, "V0001", "T01")
	return r
}

func benchStore(b *testing.B, existing int) *store.Server {
	b.Helper()
	s, err := store.OpenServer(context.Background(), filepath.Join(b.TempDir(), "fieldsync.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	for i := 0; i < existing; i += 500 {
		err := s.Write(context.Background(), func(tx *store.Tx) error {
			for j := i; j < min(i+500, existing); j++ {
				if _, err := tx.PutRecord(nil, benchRecord(j, fmt.Sprintf("H%06d", j%5000)), store.RecordMeta{VillageID: "V0001", TownID: "T01"},
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
	return s
}

// BenchmarkPutRecordBatch500 commits 500 new visits per op; ns/op is per
// batch, records/s is reported.
func BenchmarkPutRecordBatch500(b *testing.B) {
	for _, existing := range []int{0, 2000, 10000} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			s := benchStore(b, existing)
			meta, who := store.RecordMeta{VillageID: "V0001", TownID: "T01"}, store.ChangeInfo{DeviceID: "dbench", UserID: "U000001"}
			recs := make([]*pb.Record, 500)
			n := 0
			b.ResetTimer()
			for b.Loop() {
				for i := range recs {
					recs[i] = benchRecord(n, fmt.Sprintf("H%06d", n%5000))
					n++
				}
				err := s.Write(context.Background(), func(tx *store.Tx) error {
					for _, r := range recs {
						if _, err := tx.PutRecord(nil, r, meta, who); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkPutRecordUpdate rewrites an existing household (the storm's
// household edit) in a database of 5,000 records, one per op, 500 per
// commit.
func BenchmarkPutRecordUpdate(b *testing.B) {
	s := benchStore(b, 5000)
	meta, who := store.RecordMeta{VillageID: "V0001", TownID: "T01"}, store.ChangeInfo{DeviceID: "dbench", UserID: "U000001"}
	h := &pb.Record{Id: "H000001", Kind: pb.Kind_KIND_HOUSEHOLD, Fields: map[string]*pb.FieldValue{"head": {Value: "張大山", Hlc: "x"}}}
	h.Buckets = domain.RecordBuckets(h, "V0001", "T01")
	if err := s.Write(context.Background(), func(tx *store.Tx) error {
		_, err := tx.PutRecord(nil, proto.Clone(h).(*pb.Record), meta, who)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		err := s.Write(context.Background(), func(tx *store.Tx) error {
			for range 500 {
				if _, err := tx.PutRecord(h, proto.Clone(h).(*pb.Record), meta, who); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkPull reads one bucket page of 500 records (the pull of a sync).
func BenchmarkPull(b *testing.B) {
	s := benchStore(b, 5000)
	b.ResetTimer()
	for b.Loop() {
		rows, err := s.Pull(context.Background(), "v:V0001", 0, 500)
		if err != nil || len(rows) != 500 {
			b.Fatalf("pull: %d rows, %v", len(rows), err)
		}
	}
}

// BenchmarkExport reads one export batch of 1000 records from a database
// of 5,000: raw copies each stored body into one buffer (what the export
// service does), decoded also unmarshals each (what it did before).
func BenchmarkExport(b *testing.B) {
	s := benchStore(b, 5000)
	for _, decode := range []bool{false, true} {
		name := "raw"
		if decode {
			name = "decoded"
		}
		b.Run(name, func(b *testing.B) {
			var buf []byte
			for b.Loop() {
				n := 0
				buf = buf[:0]
				var decodeErr error
				err := s.Export(context.Background(), 0, nil, 1000, func(_ uint64, body []byte) bool {
					if decode {
						if decodeErr = proto.Unmarshal(body, &pb.Record{}); decodeErr != nil {
							return false
						}
					} else {
						buf = append(buf, body...)
					}
					n++
					return true
				})
				if err != nil || decodeErr != nil || n != 1000 {
					b.Fatalf("export: %d records, %v, %v", n, err, decodeErr)
				}
			}
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
