package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// A device running its background loop is poked when a record in its scope
// changes elsewhere, and syncs it without waiting for its interval.
func TestWatchPokesARunningDevice(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	sec := e.Device(testenv.Secretary)
	testenv.Sync(t, sec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- member.Run(ctx, time.Hour) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	testenv.WaitFor(t, 10*time.Second, "the first background sync", func() bool {
		_, err := member.Get("H002")
		return err == nil
	})
	ok(t, sec.Update("H002", syncer.NewFields().Set("needs", "孩子上學需要助學金")))
	testenv.Sync(t, sec)
	testenv.WaitFor(t, 10*time.Second, "the poke to bring the secretary's edit", func() bool {
		it, err := member.Get("H002")
		return err == nil && it.Field("needs") == "孩子上學需要助學金"
	})
	// A local write wakes the loop too.
	id := must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", "H002").Set("visited_on", "2026-11-25")))
	testenv.WaitFor(t, 10*time.Second, "the loop to send a local write", func() bool {
		it, err := member.Get(id)
		return err == nil && it.State == "synced"
	})
}

// The changelog stream is lost entirely (a NATS store wiped): on restart the
// relay rebuilds it from SQLite, every change once and in order.
func TestRelayRebuildsALostStream(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	testenv.Sync(t, member)
	for _, hh := range []string{"H001", "H002", "H003"} {
		must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", hh).Set("visited_on", "2026-11-20")))
	}
	testenv.Sync(t, member)
	before := waitStream(t, e)
	ok(t, e.JS.DeleteStream(t.Context(), domain.StreamName))
	e = restart(t, e)
	after := waitStream(t, e)
	if len(after) != len(before) {
		t.Fatalf("rebuilt stream has %d changes, had %d", len(after), len(before))
	}
	for i := range after {
		if after[i].GetChangeId() != before[i].GetChangeId() {
			t.Fatalf("message %d: change %s, was %s", i+1, after[i].GetChangeId(), before[i].GetChangeId())
		}
	}
}
