package e2e

import (
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

func TestSmoke(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	d := e.Device(testenv.Member)
	rep := testenv.Sync(t, d)
	t.Logf("first sync: %+v", rep)
	id, err := d.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-11-20").Set("needs", "屋頂漏水"))
	if err != nil {
		t.Fatal(err)
	}
	rep = testenv.Sync(t, d)
	t.Logf("second sync: %+v", rep)
	it, err := d.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if it.State != "synced" || it.Field("needs") != "屋頂漏水" || it.Version == 0 {
		t.Fatalf("got %+v", it)
	}
	last, _ := e.Store.LastSeq(t.Context())
	if err := e.Server.Relay().WaitPublished(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	counts, changes := e.StreamChanges()
	if len(changes) != int(last) {
		t.Fatalf("stream has %d changes, want %d", len(changes), last)
	}
	for id, n := range counts {
		if n != 1 {
			t.Fatalf("%s appears %d times", id, n)
		}
	}
}
