package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// The cost of sealing a replica's values (BENCHMARKS.md, "Encryption at
// rest"): a local write (its mutation into the outbox and the record's
// local view, in one transaction committed with synchronous=FULL, as
// syncer's write does) and a List of 1,000 records (read, opened and
// decoded), each plain and sealed.

// sizedRecord is benchRecord with a needs text of needs bytes.
func sizedRecord(i, needs int) *pb.Record {
	rec := benchRecord(i, fmt.Sprintf("H%05d", i))
	if needs >= 0 {
		rec.Fields["needs"].Value = strings.Repeat("漏", needs/3)
	}
	return rec
}

func benchReplica(b *testing.B, sealed bool, records, needs int) *store.Replica {
	b.Helper()
	var key []byte
	if sealed {
		key = newKey(b)
	}
	r, err := store.OpenReplicaKey(context.Background(), filepath.Join(b.TempDir(), "device.db"), key)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	err = r.Update(context.Background(), func(tx *store.RTx) error {
		for i := range records {
			rec := sizedRecord(i, needs)
			if err := tx.PutRecord(&store.LocalRecord{Base: rec, Local: rec, UpdatedMs: 1}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func BenchmarkReplicaWrite(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "sealed"}[sealed], func(b *testing.B) {
			r := benchReplica(b, sealed, 1000, -1)
			ctx := context.Background()
			seq := uint64(0)
			for b.Loop() {
				seq++
				rec := benchRecord(int(seq), "H00001")
				m := &pb.Mutation{Seq: seq, RecordId: rec.GetId(), Kind: rec.GetKind(), Op: pb.Op_OP_CREATE, Hlc: "1700000000000-0-d1",
					Fields: map[string]string{"household_id": "H00001", "visited_on": "2026-11-20", "needs": "屋頂漏水，需要修繕"}}
				err := r.Update(ctx, func(tx *store.RTx) error {
					if err := tx.AddOutbox(m, 1); err != nil {
						return err
					}
					if err := tx.SetMeta("next_seq", fmt.Sprint(seq+1)); err != nil {
						return err
					}
					return tx.PutRecord(&store.LocalRecord{Local: rec, State: 1, UpdatedMs: 1})
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Three sizes of record, since a row (base and local, each a record) that
// outgrows what a page of the WITHOUT ROWID table holds in line (about
// 1,000 bytes with 4 KiB pages) spills into overflow pages, read one by
// one: small (a 30-byte needs: every row fits, sealed or not), visit
// (benchRecord as is, 444 bytes: the plain row fits, the sealed one, 87
// bytes longer, spills) and large (a 600-byte needs: every row spills).
func BenchmarkReplicaList1000(b *testing.B) {
	for _, size := range []struct {
		name  string
		needs int
	}{{"small", 30}, {"visit", -1}, {"large", 600}} {
		for _, sealed := range []bool{false, true} {
			b.Run(size.name+"/"+map[bool]string{false: "plain", true: "sealed"}[sealed], func(b *testing.B) {
				benchList(b, benchReplica(b, sealed, 1000, size.needs))
			})
		}
	}
}

func benchList(b *testing.B, r *store.Replica) {
	ctx := context.Background()
	for b.Loop() {
		err := r.View(ctx, func(tx *store.RTx) error {
			all, err := tx.Records(pb.Kind_KIND_VISIT)
			if err == nil && len(all) != 1000 {
				err = fmt.Errorf("%d records, want 1000", len(all))
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
