package hq

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// deliveryGap tells a message the consumer delivered past (the stream
// holds it, the model has not applied it, the batch lacks it) from a
// message the stream itself no longer holds.
func TestDeliveryGapFindsAMessageTheConsumerDeliveredPast(t *testing.T) {
	js := startBareJS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "GAP", Subjects: []string{"gap.>"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		if _, err := js.Publish(ctx, "gap."+strconv.Itoa(i%3), []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	fetch := func(from uint64, n int) []jetstream.Msg {
		t.Helper()
		c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var out []jetstream.Msg
		for m := range b.Messages() {
			out = append(out, m)
		}
		if len(out) != n {
			t.Fatalf("fetched %d messages from %d, want %d", len(out), from, n)
		}
		return out
	}
	check := func(applied uint64, msgs []jetstream.Msg, wantAt int, wantSkipped uint64) {
		t.Helper()
		at, skipped, err := deliveryGap(ctx, st, applied, msgs)
		if err != nil {
			t.Fatal(err)
		}
		if at != wantAt || skipped != wantSkipped {
			t.Fatalf("applied %d: gap at %d (message %d skipped), want at %d (%d)", applied, at, skipped, wantAt, wantSkipped)
		}
	}
	six := fetch(6, 3)           // messages 6, 7, 8
	check(5, six, -1, 0)         // right after the last applied
	check(3, six, 0, 4)          // 4 and 5 delivered past
	check(0, six, 0, 1)          // loading from the start: 1..5 delivered past
	check(7, six, -1, 0)         // 6 and 7 redelivered, 8 follows
	check(3, fetch(4, 3), -1, 0) // 4, 5, 6 in order
	mixed := append(fetch(4, 1), six...)
	check(3, mixed, 1, 5) // 4 delivered, 5 delivered past
	for _, seq := range []uint64{4, 5} {
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	check(3, six, -1, 0) // the stream lacks 4 and 5 itself
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(6)); err != nil {
		t.Fatal(err)
	}
	check(0, six, -1, 0) // loading a stream that starts at 6
}
