package syncer_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// Voiding an event leaves the device's event chain where it was: the next
// event follows the last event made, not a new chain (a void carries no
// hash; found by the simulation, seed 15: two chains from one device).
func TestVoidOfAnEventKeepsTheDevicesChain(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	sec := e.Device(testenv.Secretary)
	testenv.Sync(t, sec)
	event := func(subject string) string {
		t.Helper()
		id, err := sec.Create("event", syncer.NewFields().Set("type", "meeting").Set("occurred_on", "2026-03-01").Set("subject", subject))
		must(t, err)
		return id
	}
	first := event("支部會議")
	must(t, sec.Void(first, "重複錄入"))
	second := event("黨日活動")
	if got, want := field(t, sec, second, "prev_hash"), field(t, sec, first, "hash"); got != want {
		t.Fatalf("the event after a void follows %q, want the last event's hash %q", got, want)
	}
	testenv.Sync(t, sec)
	if got := field(t, sec, second, "prev_hash"); got == "" {
		t.Fatal("the event after a void starts a new chain on the server")
	}
}
