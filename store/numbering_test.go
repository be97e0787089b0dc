package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

func mutation(seq uint64, needs string) *pb.Mutation {
	return &pb.Mutation{Seq: seq, RecordId: fmt.Sprintf("rec-%d", seq), Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE, Hlc: "1700000000000-0-d1",
		Fields: map[string]string{"household_id": "H1", "visited_on": "2026-11-20", "needs": needs, "help": "送米", "met": "戶主"}}
}

func hash(t *testing.T, m *pb.Mutation) []byte {
	t.Helper()
	h, err := store.MutationHash(m)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A mutation's hash does not depend on how it was encoded on the way (the
// device stores it with a plain, non-deterministic Marshal), and changes
// with its content and its number.
func TestMutationHashIsOfTheContent(t *testing.T) {
	m := mutation(7, "屋頂漏水")
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	back := &pb.Mutation{}
	if err := proto.Unmarshal(b, back); err != nil {
		t.Fatal(err)
	}
	if string(hash(t, m)) != string(hash(t, back)) || len(hash(t, m)) != 16 {
		t.Fatal("the same mutation hashes differently after a round trip, or not to 16 bytes")
	}
	if string(hash(t, m)) == string(hash(t, mutation(7, "屋頂漏水!"))) {
		t.Fatal("other content hashes the same")
	}
	if string(hash(t, m)) == string(hash(t, mutation(8, "屋頂漏水"))) {
		t.Fatal("another number hashes the same")
	}
}

// A late retry of an answered mutation gets its old answer; other content
// under the same number is never answered APPLIED. Numbers answered before
// hashes were kept (no row, or a row with no hash) count as the same.
func TestAnsweredNumberKeepsItsContent(t *testing.T) {
	s, path := openServer(t)
	ctx := context.Background()
	applied, rejected := mutation(1, "a"), mutation(2, "b")
	err := s.Write(ctx, func(tx *store.Tx) error {
		if err := tx.PutDevice(&pb.Device{Id: "d1", UserId: "U1", Name: "phone"}, "tok"); err != nil {
			return err
		}
		if err := tx.PutResult("d1", &pb.MutationResult{Seq: 1, RecordId: "rec-1", Status: pb.MutationStatus_MUTATION_STATUS_APPLIED}, domain.ChainLink{}, hash(t, applied)); err != nil {
			return err
		}
		return tx.PutResult("d1", &pb.MutationResult{Seq: 2, RecordId: "rec-2", Status: pb.MutationStatus_MUTATION_STATUS_REJECTED, Code: "PERMISSION_DENIED", Reason: "no"},
			domain.ChainLink{}, hash(t, rejected))
	})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		m      *pb.Mutation
		same   bool
		status pb.MutationStatus
	}
	for _, w := range []want{
		{applied, true, pb.MutationStatus_MUTATION_STATUS_APPLIED},
		{rejected, true, pb.MutationStatus_MUTATION_STATUS_REJECTED},
		{mutation(1, "other content"), false, pb.MutationStatus_MUTATION_STATUS_APPLIED},
		{mutation(2, "other content"), false, pb.MutationStatus_MUTATION_STATUS_REJECTED},
		{mutation(3, "answered before hashes were kept"), true, pb.MutationStatus_MUTATION_STATUS_APPLIED},
	} {
		err := s.Write(ctx, func(tx *store.Tx) error {
			r, same, err := tx.Result("d1", w.m.GetSeq(), w.m.GetRecordId(), hash(t, w.m))
			if err != nil {
				return err
			}
			if same != w.same || r.GetStatus() != w.status {
				t.Errorf("seq %d (%s): same %v status %v, want %v %v", w.m.GetSeq(), w.m.GetFields()["needs"], same, r.GetStatus(), w.same, w.status)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A row from before the hash column (NULL) matches any content.
	s.Close()
	legacy, err := store.OpenDB(ctx, path, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := legacy.W.ExecContext(ctx, "UPDATE mutation_results SET hash = NULL WHERE seq = 1"); err != nil {
		t.Fatal(err)
	}
	legacy.Close()
	s2, err := store.OpenServer(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	err = s2.Write(ctx, func(tx *store.Tx) error {
		_, same, err := tx.Result("d1", 1, "rec-1", hash(t, mutation(1, "anything")))
		if err == nil && !same {
			t.Error("a result kept without a hash does not match")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func openReplica(t *testing.T) *store.Replica {
	t.Helper()
	r, err := store.OpenReplica(context.Background(), filepath.Join(t.TempDir(), "device.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// outbox reads the whole outbox: seq -> status, checking that each stored
// mutation carries its row's number.
func outbox(t *testing.T, r *store.Replica) map[uint64]int {
	t.Helper()
	got := map[uint64]int{}
	err := r.View(context.Background(), func(tx *store.RTx) error {
		for _, st := range []int{store.OutboxPending, store.OutboxRejected, store.OutboxAcked} {
			rows, err := tx.Outbox(st, 1000)
			if err != nil {
				return err
			}
			for _, row := range rows {
				got[row.Mutation.GetSeq()] = st
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Renumbering moves every pending mutation, and every answered one past the
// server's last number, to consecutive numbers after it, in order, with the
// number inside each mutation rewritten; what the server still has stays.
func TestRenumberOutbox(t *testing.T) {
	ctx := context.Background()
	fill := func(t *testing.T) *store.Replica {
		r := openReplica(t)
		err := r.Update(ctx, func(tx *store.RTx) error {
			for seq := uint64(1); seq <= 6; seq++ {
				if err := tx.AddOutbox(mutation(seq, fmt.Sprint("m", seq)), 1000); err != nil {
					return err
				}
			}
			for _, seq := range []uint64{1, 2, 4} {
				if err := tx.AckOutbox(seq, 2000); err != nil {
					return err
				}
			}
			return tx.RejectOutbox(3, "PERMISSION_DENIED", "visit", "no")
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	renumber := func(t *testing.T, r *store.Replica, last uint64) (res store.Renumbered, acked uint64) {
		err := r.Update(ctx, func(tx *store.RTx) error {
			var err error
			if res, err = tx.Renumber(last); err != nil {
				return err
			}
			acked, err = tx.LastAcked(res.Next)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return res, acked
	}
	needs := func(t *testing.T, r *store.Replica) map[uint64]string {
		out := map[uint64]string{}
		r.View(ctx, func(tx *store.RTx) error {
			rows, err := tx.Outbox(store.OutboxPending, 100)
			for _, row := range rows {
				out[row.Mutation.GetSeq()] = row.Mutation.GetFields()["needs"]
			}
			return err
		})
		return out
	}

	t.Run("server behind", func(t *testing.T) {
		r := fill(t)
		res, acked := renumber(t, r, 2) // the server lost 3 (rejected) and 4 (applied)
		if res.Pending != 2 || res.Resent != 2 || res.Next != 7 || acked != 2 {
			t.Fatalf("renumbered %+v, last acked %d", res, acked)
		}
		want := map[uint64]int{1: store.OutboxAcked, 2: store.OutboxAcked, 3: store.OutboxPending, 4: store.OutboxPending, 5: store.OutboxPending, 6: store.OutboxPending}
		if got := outbox(t, r); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("outbox %v, want %v", got, want)
		}
		if got := needs(t, r); fmt.Sprint(got) != fmt.Sprint(map[uint64]string{3: "m3", 4: "m4", 5: "m5", 6: "m6"}) {
			t.Fatalf("pending %v: order or content changed", got)
		}
	})
	t.Run("device behind", func(t *testing.T) {
		r := fill(t)
		res, acked := renumber(t, r, 10) // the server answered up to 10
		if res.Pending != 2 || res.Resent != 0 || res.Next != 13 || acked != 10 {
			t.Fatalf("renumbered %+v, last acked %d", res, acked)
		}
		want := map[uint64]int{1: store.OutboxAcked, 2: store.OutboxAcked, 3: store.OutboxRejected, 4: store.OutboxAcked, 11: store.OutboxPending, 12: store.OutboxPending}
		if got := outbox(t, r); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("outbox %v, want %v", got, want)
		}
		if got := needs(t, r); fmt.Sprint(got) != fmt.Sprint(map[uint64]string{11: "m5", 12: "m6"}) {
			t.Fatalf("pending %v", got)
		}
	})
}

// Acknowledged mutations are kept for the retention period and up to a
// count; older ones and the oldest past the count go, pending and rejected
// ones never.
func TestTrimAcked(t *testing.T) {
	ctx := context.Background()
	r := openReplica(t)
	err := r.Update(ctx, func(tx *store.RTx) error {
		for seq := uint64(1); seq <= 10; seq++ {
			if err := tx.AddOutbox(mutation(seq, "x"), 0); err != nil {
				return err
			}
			if seq <= 8 {
				if err := tx.AckOutbox(seq, int64(seq)*1000); err != nil {
					return err
				}
			}
		}
		if err := tx.RejectOutbox(9, "X", "f", "r"); err != nil {
			return err
		}
		n, err := tx.TrimAcked(3000, 4) // older than 3s: 1, 2; past the newest 4: 3, 4
		if err != nil {
			return err
		}
		if n != 4 {
			t.Errorf("trimmed %d, want 4", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]int{5: store.OutboxAcked, 6: store.OutboxAcked, 7: store.OutboxAcked, 8: store.OutboxAcked, 9: store.OutboxRejected, 10: store.OutboxPending}
	if got := outbox(t, r); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("outbox %v, want %v", got, want)
	}
}

// The database knows every replica id a device synced with or was offered,
// and no other: an unknown one comes from a lost later self of it.
func TestKnownReplicas(t *testing.T) {
	s, _ := openServer(t)
	ctx := context.Background()
	err := s.Write(ctx, func(tx *store.Tx) error {
		if err := tx.PutDevice(&pb.Device{Id: "d1", UserId: "U1", Name: "phone"}, "tok"); err != nil {
			return err
		}
		if err := tx.SetReplica("d1", "first"); err != nil {
			return err
		}
		if err := tx.OfferReplica("d1", "offered"); err != nil {
			return err
		}
		if err := tx.MarkRestored("d1", "offered"); err != nil {
			return err
		}
		for id, want := range map[string]bool{"first": true, "offered": true, "never": false} {
			known, err := tx.KnownReplica("d1", id)
			if err != nil {
				return err
			}
			if known != want {
				t.Errorf("replica %q known %v, want %v", id, known, want)
			}
		}
		if known, err := tx.KnownReplica("d2", "first"); err != nil || known {
			t.Errorf("another device's replica id known: %v %v", known, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
