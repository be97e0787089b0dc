package testenv

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// ReadStream reads every message of the changelog stream with an ordered
// consumer: how many times each change id (Nats-Msg-Id) occurs, and the
// decoded changes in stream order.
func ReadStream(t testing.TB, js jetstream.JetStream) (map[string]int, []*pb.Change) {
	t.Helper()
	return ReadRegionStream(t, js, "")
}

// ReadRegionStream is ReadStream of region's stream
// (domain.RegionStream).
func ReadRegionStream(t testing.TB, js jetstream.JetStream, region string) (map[string]int, []*pb.Change) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, domain.RegionStream(region))
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

// StreamMatchesDB says how the changelog stream differs from the
// database's changes table, or nil when message n is change n for every
// change: same subject, body byte for byte, Nats-Msg-Id the change id,
// Fieldsync-Seq n, Fieldsync-Lineage the database's lineage, and nothing
// else in the stream. Poll it with WaitFor while the relay catches up.
// A database pinned to a region is checked against the region's stream
// (domain.RegionStream): subjects mapped into the region
// (domain.RegionSubject) and Fieldsync-Region on every message.
func StreamMatchesDB(ctx context.Context, js jetstream.JetStream, db *store.Server) error {
	region := db.Region()
	st, err := js.Stream(ctx, domain.RegionStream(region))
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	last, err := db.LastSeq(ctx)
	if err != nil {
		return err
	}
	s := info.State
	if s.Msgs != last || s.LastSeq != last || s.NumDeleted != 0 || (last > 0 && s.FirstSeq != 1) {
		return fmt.Errorf("stream holds %d messages in %d..%d (%d deleted); the database has changes 1..%d", s.Msgs, s.FirstSeq, s.LastSeq, s.NumDeleted, last)
	}
	if last == 0 {
		return nil
	}
	// A consumer of its own, deleted after, so that polling leaves none.
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy,
		MemoryStorage: true, InactiveThreshold: time.Minute})
	if err != nil {
		return err
	}
	defer st.DeleteConsumer(context.WithoutCancel(ctx), cons.CachedInfo().Name)
	lineage := db.Instance()
	var seq uint64
	for seq < last {
		batch, err := cons.Fetch(int(min(1000, last-seq)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		rows, err := db.ChangesAfter(ctx, seq, 1000)
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			seq++
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			if n >= len(rows) {
				return fmt.Errorf("message %d: the database has no change %d", meta.Sequence.Stream, seq)
			}
			row := rows[n]
			n++
			c := &pb.Change{}
			if err := proto.Unmarshal(row.Body, c); err != nil {
				return fmt.Errorf("change %d: %w", row.Seq, err)
			}
			h := m.Headers()
			switch {
			case meta.Sequence.Stream != seq || row.Seq != seq:
				return fmt.Errorf("message %d read where %d expected, change %d", meta.Sequence.Stream, seq, row.Seq)
			case m.Subject() != domain.RegionSubject(region, row.Subject) || !bytes.Equal(m.Data(), row.Body):
				return fmt.Errorf("message %d differs from change %d in subject or body", seq, row.Seq)
			case h.Get(jetstream.MsgIDHeader) != c.GetChangeId():
				return fmt.Errorf("message %d has id %q, change %d is %q", seq, h.Get(jetstream.MsgIDHeader), row.Seq, c.GetChangeId())
			case h.Get(domain.HeaderSeq) != strconv.FormatUint(seq, 10):
				return fmt.Errorf("message %d has %s %q", seq, domain.HeaderSeq, h.Get(domain.HeaderSeq))
			case h.Get(domain.HeaderLineage) != lineage:
				return fmt.Errorf("message %d has %s %q, the database is in %q", seq, domain.HeaderLineage, h.Get(domain.HeaderLineage), lineage)
			case h.Get(domain.HeaderRegion) != region:
				return fmt.Errorf("message %d has %s %q, the database is region %q's", seq, domain.HeaderRegion, h.Get(domain.HeaderRegion), region)
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("stream says %d messages, read %d", last, seq)
		}
	}
	return nil
}
