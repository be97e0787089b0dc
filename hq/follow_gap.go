package hq

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// deliveryGap finds a message the durable consumer delivered past: one it
// counts as delivered whose delivery never reached the model (its
// leader's node died with it on the wire, as a NATS node's kill under a
// storm showed in e2e/regions_cluster_test.go). The consumer then goes on
// with the messages after it and redelivers it only after AckWait, out of
// order, when the model skips it as applied already. It returns the index
// in msgs of the first message that comes after a message the stream
// holds but the model has not applied and msgs lack, with the number of
// that missing message; -1 when there is none. A gap the stream has itself
// (a message deleted, the oldest dropped by the stream's limits) is no
// skip. applied is the last stream message the model applied (0: none,
// loading from the stream's first message, whose delivery can be lost
// too, a whole first batch of it).
func deliveryGap(ctx context.Context, st jetstream.Stream, applied uint64, msgs []jetstream.Msg) (int, uint64, error) {
	prev := applied
	for i, msg := range msgs {
		md, err := msg.Metadata()
		if err != nil {
			return -1, 0, fmt.Errorf("message metadata: %w", err)
		}
		n := md.Sequence.Stream
		if n <= prev {
			continue // a redelivery, skipped when applied
		}
		if n > prev+1 {
			// The stream's first message at or after prev+1.
			m, err := st.GetMsg(ctx, prev+1, jetstream.WithGetMsgSubject(">"))
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound):
			case err != nil:
				return -1, 0, fmt.Errorf("read message %d: %w", prev+1, err)
			case m.Sequence < n:
				return i, m.Sequence, nil
			}
		}
		prev = n
	}
	return -1, 0, nil
}
