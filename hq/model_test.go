package hq

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

func openModel(t testing.TB, path string) *Model {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "model.db")
	}
	m, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func applyAll(t testing.TB, m *Model, lineage string, changes []*pb.Change) {
	t.Helper()
	for _, c := range changes {
		if err := m.Apply(context.Background(), c, lineage); err != nil {
			t.Fatalf("apply change %d: %v", c.GetSeq(), err)
		}
	}
}

func TestApplyInOrderGivesTheTablesOfTheFinalStates(t *testing.T) {
	w := sampleWorld(1, 24)
	m := openModel(t, "")
	applyAll(t, m, "L", w.changes)
	checkWorld(t, m, w)
	// The sample has what the test is for.
	for table, least := range map[string]int{"households": 20, "visits": 10, "disputes": 3, "needs": 3, "projects": 3, "events": 3,
		"status_history": 10, "entries": 10, "units": 6, "people": 6, "link_history": 20, "devices": 2, "refused_events": 2} {
		if n := len(dump(t, m, table)); n < least {
			t.Errorf("%s: %d rows, the sample should make at least %d", table, n, least)
		}
	}
	var voided int
	if err := m.DB().QueryRow("SELECT (SELECT count(*) FROM visits WHERE voided = 1) + (SELECT count(*) FROM households WHERE voided = 1)").Scan(&voided); err != nil || voided == 0 {
		t.Errorf("voided rows: %d (%v), the sample voids visits and households", voided, err)
	}
	if m.Lineage() != "L" {
		t.Errorf("lineage %q, want L", m.Lineage())
	}
}

// Applying a recorded stream again, in any order, any number of times,
// gives the same tables as applying it once in order.
func TestApplyShuffledAndDuplicatedGivesTheSameTables(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		w := sampleWorld(seed, 16)
		ref := openModel(t, "")
		applyAll(t, ref, "L", w.changes)
		rng := rand.New(rand.NewPCG(seed, 99))
		mixed := append([]*pb.Change{}, w.changes...)
		for range len(w.changes) / 2 {
			mixed = append(mixed, w.changes[rng.IntN(len(w.changes))])
		}
		rng.Shuffle(len(mixed), func(i, j int) { mixed[i], mixed[j] = mixed[j], mixed[i] })
		m := openModel(t, "")
		applyAll(t, m, "L", mixed)
		applyAll(t, m, "L", w.changes[:len(w.changes)/3]) // a replay of the start
		sameTables(t, m, ref)
		checkWorld(t, m, w)
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
	}
}

func TestApplyRefusesAnotherLineageUntilReset(t *testing.T) {
	w := sampleWorld(2, 6)
	m := openModel(t, "")
	applyAll(t, m, "L1", w.changes)
	err := m.Apply(context.Background(), w.changes[0], "L2")
	if !errors.Is(err, ErrOtherLineage) || !strings.Contains(err.Error(), "Reset") {
		t.Fatalf("another lineage: %v, want ErrOtherLineage saying to Reset", err)
	}
	if err := m.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m.LastSeq() != 0 || m.Lineage() != "" {
		t.Fatalf("after Reset: last_seq %d, lineage %q", m.LastSeq(), m.Lineage())
	}
	for _, table := range dataTables {
		if n := len(dump(t, m, table)); n != 0 {
			t.Errorf("after Reset %s has %d rows", table, n)
		}
	}
	w2 := sampleWorld(3, 5)
	applyAll(t, m, "L2", w2.changes)
	checkWorld(t, m, w2)
}

func TestApplyRefusesMalformedChangesSayingWhichField(t *testing.T) {
	m := openModel(t, "")
	for _, tc := range []struct {
		c    *pb.Change
		want string
	}{
		{&pb.Change{Seq: 0, Record: &pb.Record{Id: "x", Kind: pb.Kind_KIND_VISIT, Version: 1}}, "change.seq"},
		{&pb.Change{Seq: 1, Record: &pb.Record{Id: "x", Version: 1}}, "record.kind"},
		{&pb.Change{Seq: 1, Record: &pb.Record{Kind: pb.Kind_KIND_VISIT, Version: 1}}, "record.id"},
		{&pb.Change{Seq: 1, Record: &pb.Record{Id: "x", Kind: pb.Kind_KIND_VISIT}}, "record.version"},
		{&pb.Change{Seq: 1, Unit: &pb.UnitState{Unit: &pb.Unit{Id: "T"}}}, "unit.kind"},
		{&pb.Change{Seq: 1, Person: &pb.PersonState{Id: "p"}}, "person.role"},
		{&pb.Change{Seq: 1, Link: &pb.LinkState{}}, "link.household_id"},
		{&pb.Change{Seq: 1, Device: &pb.DeviceHealth{}}, "device.device_id"},
		{&pb.Change{Seq: 1, Refused: &pb.RefusedEvent{}}, "refused.device_id"},
	} {
		err := m.Apply(context.Background(), tc.c, "L")
		var bad *badChangeError
		if !errors.As(err, &bad) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.c, err, tc.want)
		}
	}
	if m.LastSeq() != 0 {
		t.Errorf("refused changes moved last_seq to %d", m.LastSeq())
	}
}

func TestOpenKeepsStateAndRefusesAnotherDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.db")
	w := sampleWorld(4, 6)
	m, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	applyAll(t, m, "L", w.changes)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = openModel(t, path)
	if m.LastSeq() != w.seq || m.Lineage() != "L" {
		t.Fatalf("reopened: last_seq %d lineage %q, want %d L", m.LastSeq(), m.Lineage(), w.seq)
	}
	checkWorld(t, m, w)

	other := filepath.Join(t.TempDir(), "other.db")
	db, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE records (id TEXT); PRAGMA user_version = 7; PRAGMA application_id = 1179861846"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(other); err == nil || !strings.Contains(err.Error(), "not an HQ read model") {
		t.Fatalf("open syncd's database: %v, want a refusal", err)
	}
	if _, err := Open(""); err == nil || !strings.Contains(err.Error(), "path") {
		t.Fatalf("open empty path: %v", err)
	}
}

// The README's example query runs on the model.
func TestREADMECoverageQueryRuns(t *testing.T) {
	w := sampleWorld(5, 40)
	m := openModel(t, "")
	applyAll(t, m, "L", w.changes)
	rows, err := m.DB().Query(`SELECT h.village_id, count(*) AS linked,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM visits v WHERE v.household_id = h.id
                                      AND v.month = '2026-11' AND v.voided = 0)) AS visited
FROM households h JOIN links l ON l.household_id = h.id AND l.member_id <> ''
WHERE h.voided = 0 GROUP BY h.village_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n, visited := 0, 0
	for rows.Next() {
		var v string
		var l, vis int
		if err := rows.Scan(&v, &l, &vis); err != nil {
			t.Fatal(err)
		}
		if vis > l || l == 0 {
			t.Errorf("village %s: %d visited of %d linked", v, vis, l)
		}
		n++
		visited += vis
	}
	if n != 2 || visited == 0 {
		t.Errorf("%d villages, %d visited: want 2 villages and some visits", n, visited)
	}
}

// BenchmarkApplyBatch applies a recorded stream in transactions of 500
// changes, as Follow does (changes/s is reported).
func BenchmarkApplyBatch(b *testing.B) {
	w := sampleWorld(6, 400)
	for b.Loop() {
		b.StopTimer()
		m := openModel(b, "")
		b.StartTimer()
		for i := 0; i < len(w.changes); i += 500 {
			m.mu.Lock()
			tx, err := m.w.Begin()
			if err != nil {
				b.Fatal(err)
			}
			st := m.state()
			tc := newTxc(tx)
			for _, c := range w.changes[i:min(i+500, len(w.changes))] {
				if err := st.apply(context.Background(), tc, c, "", "L"); err != nil {
					b.Fatal(err)
				}
			}
			if err := st.save(context.Background(), tc); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			m.adopt(st)
			m.mu.Unlock()
		}
	}
	b.ReportMetric(float64(len(w.changes)*b.N)/b.Elapsed().Seconds(), "changes/s")
}
