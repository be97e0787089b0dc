package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// ReadStream reads every message of the changelog stream with an ordered
// consumer: how many times each change id (Nats-Msg-Id) occurs, and the
// decoded changes in stream order.
func ReadStream(t testing.TB, js jetstream.JetStream) (map[string]int, []*pb.Change) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, domain.StreamName)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	var changes []*pb.Change
	if info.State.Msgs == 0 {
		return counts, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for uint64(len(changes)) < info.State.Msgs {
		// Ask for exactly what is left: Fetch returns as soon as it has that
		// many, instead of waiting out its MaxWait for a full batch.
		batch, err := cons.Fetch(min(1000, int(info.State.Msgs)-len(changes)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			c := &pb.Change{}
			if err := proto.Unmarshal(m.Data(), c); err != nil {
				t.Fatalf("decode change: %v", err)
			}
			counts[m.Headers().Get(jetstream.MsgIDHeader)]++
			changes = append(changes, c)
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("stream says %d messages, read %d", info.State.Msgs, len(changes))
		}
	}
	return counts, changes
}
