package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

const window = 180 * 24 * time.Hour

// household is a household record filed in its village and town.
func household(id, village, town string) *pb.Record {
	return &pb.Record{Id: id, Kind: pb.Kind_KIND_HOUSEHOLD,
		Buckets: []string{domain.HouseholdBucket(id), domain.VillageBucket(village), domain.TownBucket(town)}}
}

func openRaw(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func countRows(t *testing.T, path, query string, args ...any) int {
	t.Helper()
	db := openRaw(t, path)
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRetentionPassKeepsWhatIsNeeded runs the pass over a household that
// moved village, a device's results (applied, refused, events) and the
// changelog: nothing inside the window goes; past it the gone mark goes
// (its bucket's floor says so), published changes go but never the last or
// an unpublished one, and of the results only plain applied ones that are
// not the device's newest or newest event go: refused events keep their
// chain links, the chain head stays, a refused result is still answered,
// and a compacted number is no longer taken for a retry.
func TestRetentionPassKeepsWhatIsNeeded(t *testing.T) {
	ctx := context.Background()
	s, path := openServer(t)
	h1 := household("H1", "V1", "T1")
	put(t, s, []*pb.Record{nil}, []*pb.Record{h1}, store.RecordMeta{VillageID: "V1", TownID: "T1"})
	moved := household("H1", "V2", "T1")
	moveSeq := put(t, s, []*pb.Record{proto.Clone(h1).(*pb.Record)}, []*pb.Record{moved}, store.RecordMeta{VillageID: "V2", TownID: "T1"})[0]
	for i := range 3 {
		r := household(fmt.Sprintf("H%d", 10+i), "V2", "T1")
		put(t, s, []*pb.Record{nil}, []*pb.Record{r}, store.RecordMeta{VillageID: "V2", TownID: "T1"})
	}
	applied, rejected := pb.MutationStatus_MUTATION_STATUS_APPLIED, pb.MutationStatus_MUTATION_STATUS_REJECTED
	results := []struct {
		status pb.MutationStatus
		link   domain.ChainLink
	}{
		{applied, domain.ChainLink{}},                       // 1: goes
		{rejected, domain.ChainLink{Prev: "", Hash: "e2"}},  // 2: a refused event: stays
		{applied, domain.ChainLink{Prev: "e2", Hash: "e3"}}, // 3: goes (not the newest event)
		{rejected, domain.ChainLink{}},                      // 4: refused: stays
		{applied, domain.ChainLink{Prev: "e3", Hash: "e5"}}, // 5: the newest event: stays
		{applied, domain.ChainLink{}},                       // 6: goes
		{applied, domain.ChainLink{}},                       // 7: the newest: stays
	}
	if err := s.Write(ctx, func(tx *store.Tx) error {
		if err := tx.PutDevice(&pb.Device{Id: "d1", UserId: "U1"}, "tok"); err != nil {
			return err
		}
		for i, r := range results {
			if err := tx.PutResult("d1", &pb.MutationResult{Seq: uint64(i + 1), RecordId: "rec", Status: r.status}, r.link, []byte{byte(i + 1)}); err != nil {
				return err
			}
		}
		return tx.TouchDevice("d1", uint64(len(results)), 0, "")
	}); err != nil {
		t.Fatal(err)
	}
	// The device's health and its refused event are changes too.
	last, _ := s.LastSeq(ctx)

	// Inside the window: nothing goes, whatever the relay published.
	st, err := s.Compact(ctx, time.Now(), window, last)
	if err != nil {
		t.Fatal(err)
	}
	if st.GoneRows+st.Results+st.Changes != 0 || st.Horizon != 0 {
		t.Fatalf("inside the window the pass removed %+v", st)
	}

	// Past the window, nothing published: the gone mark and the results go,
	// every change stays.
	later := time.Now().Add(window + time.Hour)
	if st, err = s.Compact(ctx, later, window, 0); err != nil {
		t.Fatal(err)
	}
	if st.GoneRows != 1 || st.Results != 3 || st.Changes != 0 || st.Horizon != last {
		t.Fatalf("past the window with nothing published: %+v, want 1 gone mark, 3 results, 0 changes, horizon %d", st, last)
	}
	if n := countRows(t, path, "SELECT COUNT(*) FROM changes"); n != int(last) {
		t.Fatalf("%d changes left, want all %d (none published)", n, last)
	}
	if got := s.BucketFloor(domain.VillageBucket("V1")); got != moveSeq {
		t.Fatalf("floor of v:V1 = %d, want the move's change %d", got, moveSeq)
	}
	if got := s.BucketFloor(domain.VillageBucket("V2")); got != 0 {
		t.Fatalf("floor of v:V2 = %d, want 0 (no mark left it)", got)
	}
	if n := countRows(t, path, "SELECT COUNT(*) FROM record_buckets WHERE gone = 1"); n != 0 {
		t.Fatalf("%d gone marks left", n)
	}
	if n := countRows(t, path, "SELECT COUNT(*) FROM record_buckets WHERE record_id = 'H1'"); n != 3 {
		t.Fatalf("H1 has %d bucket rows, want its 3 live ones", n)
	}
	var kept []uint64
	rows, err := openRaw(t, path).Query("SELECT seq FROM mutation_results WHERE device_id = 'd1' ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var seq uint64
		rows.Scan(&seq)
		kept = append(kept, seq)
	}
	rows.Close()
	if fmt.Sprint(kept) != "[2 4 5 7]" {
		t.Fatalf("results kept: %v, want [2 4 5 7]", kept)
	}
	links, err := s.RefusedLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(links["d1"]) != fmt.Sprint([]domain.ChainLink{{Prev: "", Hash: "e2"}}) {
		t.Fatalf("refused links of d1: %v", links["d1"])
	}
	if err := s.Write(ctx, func(tx *store.Tx) error {
		if head, err := tx.ChainHead("d1"); err != nil || head != "e5" {
			return fmt.Errorf("chain head %q, %v; want e5", head, err)
		}
		if r, same, err := tx.Result("d1", 4, "rec", []byte{4}); err != nil || !same || r.GetStatus() != rejected {
			return fmt.Errorf("result 4: %v same=%v %v; want its refusal", r, same, err)
		}
		if _, same, err := tx.Result("d1", 1, "rec", []byte{1}); err != nil || same {
			return fmt.Errorf("result 1 compacted: same=%v %v; want it not taken for a retry", same, err)
		}
		if r, same, err := tx.Result("d1", 7, "rec", []byte{7}); err != nil || !same || r.GetStatus() != applied {
			return fmt.Errorf("result 7: %v same=%v %v", r, same, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The relay published up to change 2: only those go.
	if st, err = s.Compact(ctx, later, window, 2); err != nil {
		t.Fatal(err)
	}
	if st.Changes != 2 || st.ChangeFloor != 3 {
		t.Fatalf("published up to 2: %+v, want 2 changes gone, the changelog starting at 3", st)
	}
	// Everything published: all but the last change go.
	if st, err = s.Compact(ctx, later, window, last); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.FirstChange(ctx); first != last || st.ChangeFloor != last {
		t.Fatalf("everything published: the changelog starts at %d (%+v), want the last change %d kept", first, st, last)
	}
	// The next change is numbered after the last.
	seq := put(t, s, []*pb.Record{nil}, []*pb.Record{household("H99", "V2", "T1")}, store.RecordMeta{VillageID: "V2", TownID: "T1"})[0]
	if seq != last+1 {
		t.Fatalf("next change numbered %d, want %d", seq, last+1)
	}
}

// TestRetentionFloorsSurviveARestart reopens the database after a pass:
// the floors of buckets come back from it.
func TestRetentionFloorsSurviveARestart(t *testing.T) {
	ctx := context.Background()
	s, path := openServer(t)
	h1 := household("H1", "V1", "T1")
	put(t, s, []*pb.Record{nil}, []*pb.Record{h1}, store.RecordMeta{VillageID: "V1", TownID: "T1"})
	seq := put(t, s, []*pb.Record{proto.Clone(h1).(*pb.Record)}, []*pb.Record{household("H1", "V2", "T1")}, store.RecordMeta{VillageID: "V2", TownID: "T1"})[0]
	if _, err := s.Compact(ctx, time.Now().Add(window+time.Hour), window, 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := store.OpenServer(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := s2.BucketFloor(domain.VillageBucket("V1")); got != seq {
		t.Fatalf("after reopening, floor of v:V1 = %d, want %d", got, seq)
	}
	if h, err := s2.Horizon(ctx); err != nil || h != seq {
		t.Fatalf("horizon %d, %v; want %d (the last change)", h, err, seq)
	}
}
