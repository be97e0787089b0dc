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

// BenchmarkCompact measures one retention pass over a database where 20,000
// households each moved village once (20,000 gone marks, 40,000 changes)
// and 200 devices have 100 kept results each, everything older than the
// window and published (but the last change, which stays):
// what the first pass over a large database removes. Run it with
// -benchtime=1x (each run builds its database again, outside the timer).
func BenchmarkCompact(b *testing.B) {
	ctx := context.Background()
	const households, devices, results = 20000, 200, 100
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, err := store.OpenServer(ctx, filepath.Join(b.TempDir(), fmt.Sprintf("fieldsync-%d.db", i)))
		if err != nil {
			b.Fatal(err)
		}
		for start := 0; start < households; start += 500 {
			if err := s.Write(ctx, func(tx *store.Tx) error {
				for h := start; h < start+500; h++ {
					id := fmt.Sprintf("H%06d", h)
					r := &pb.Record{Id: id, Kind: pb.Kind_KIND_HOUSEHOLD, Buckets: []string{domain.HouseholdBucket(id), domain.VillageBucket(fmt.Sprintf("V%03d", h%300)), domain.TownBucket("T1")}}
					if _, err := tx.PutRecord(nil, r, store.RecordMeta{VillageID: "V", TownID: "T1"}, store.ChangeInfo{}); err != nil {
						return err
					}
					moved := proto.Clone(r).(*pb.Record)
					moved.Buckets[1] = domain.VillageBucket(fmt.Sprintf("W%03d", h%300))
					if _, err := tx.PutRecord(r, moved, store.RecordMeta{VillageID: "W", TownID: "T1"}, store.ChangeInfo{}); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Write(ctx, func(tx *store.Tx) error {
			for d := range devices {
				dev := fmt.Sprintf("d%04d", d)
				if err := tx.PutDevice(&pb.Device{Id: dev, UserId: "U"}, "tok-"+dev); err != nil {
					return err
				}
				for seq := 1; seq <= results; seq++ {
					if err := tx.PutResult(dev, &pb.MutationResult{Seq: uint64(seq), RecordId: "r", Status: pb.MutationStatus_MUTATION_STATUS_APPLIED}, domain.ChainLink{}, []byte{1}); err != nil {
						return err
					}
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		last, _ := s.LastSeq(ctx)
		commits0, _, busy0 := s.CommitStats()
		b.StartTimer()
		start := time.Now()
		st, err := s.Compact(ctx, time.Now().Add(window+time.Hour), window, last)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		b.StopTimer()
		if st.GoneRows != households || st.Results != devices*(results-1) || st.Changes != int(last)-1 {
			b.Fatalf("pass removed %+v", st)
		}
		b.ReportMetric(float64(st.GoneRows+st.Results+st.Changes)/took.Seconds(), "rows/s")
		// How long a sync may wait behind the pass: its writer jobs'
		// average time (commit included).
		commits, _, busy := s.CommitStats()
		b.ReportMetric(float64((busy-busy0).Milliseconds())/float64(commits-commits0), "ms/job")
		s.Close()
	}
}
