package hq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// DefaultDurable is the durable consumer's name when FollowConfig.Durable
// is empty.
const DefaultDurable = "fieldsync-hq-model"

// FollowConfig configures Follow.
type FollowConfig struct {
	// Durable is the durable consumer's name (DefaultDurable when empty):
	// one per model; two models must not share one.
	Durable string
	// Stream is the stream followed (domain.StreamName when empty): a
	// syncd's own changelog, a region's (domain.RegionStream), or HQ's
	// stream sourcing every region (domain.HQStreamName). Lineage and
	// change numbers are kept per region (header domain.HeaderRegion).
	Stream string
	// Log gets what the follower does (nil: slog.Default()).
	Log *slog.Logger
	// Applied, when set, is called after each commit with LastSeq.
	Applied func(seq uint64)
}

// How Follow reads; tests shorten them.
var (
	followBatch    = 500                                    // messages asked for per fetch, and at most per transaction
	followWait     = 2 * time.Second                        // how long a fetch waits for messages
	followAckWait  = 60 * time.Second                       // the consumer's AckWait: redelivery of an unacknowledged message
	followRecheck  = 5 * time.Second                        // how often an idle follower checks the stream and its consumer
	followMaxRetry = 5 * time.Second                        // the longest wait between failed rounds
	dropAck        atomic.Pointer[func(stream uint64) bool] // tests: lose this message's acknowledgement
)

// errRestart ends a round so that the next one starts over (after a
// Reset).
var errRestart = errors.New("hq: start over")

// errModelClosed ends Follow: the model was closed under it.
var errModelClosed = errors.New("hq: follow: the model is closed")

// Follow keeps the model up to date with the changelog stream
// (FIELDSYNC_CHANGES) through a durable pull consumer with explicit acks,
// until ctx ends (then it returns nil). It fetches up to 500 messages at a
// time, applies what has arrived in one SQLite transaction, and
// acknowledges the messages after the commit; a message redelivered after
// that (a lost ack) is skipped by its stream sequence (meta stream_seq),
// and applying it again would change nothing anyway.
//
// At start and every few seconds while idle it checks the stream: when
// the stream ends before the last message applied, when a message carries
// another lineage (Fieldsync-Lineage) than the one applied, or when the
// durable consumer is gone while the model holds changes (deleted with a
// rebuilt stream), it logs at warn, Resets the model and reloads it from
// the stream's first message. A consumer that is ahead of the model, or
// holds unacknowledged deliveries (the process stopped between a fetch and
// its commit), is made again from the message after the last one applied,
// so changes are always applied in stream order. Loading an empty model
// from a stream whose first change is not change 1, or meeting a gap in
// the change numbers, is logged at error with the numbers missing
// (loading them from `fieldctl hq export` is not built). Errors from NATS
// or SQLite are logged and retried with backoff.
func (m *Model) Follow(ctx context.Context, js jetstream.JetStream, cfg FollowConfig) error {
	if js == nil {
		return errors.New("hq: follow: no JetStream given")
	}
	durable := cfg.Durable
	if durable == "" {
		durable = DefaultDurable
	}
	if err := checkDurable(durable); err != nil {
		return err
	}
	stream := cfg.Stream
	if stream == "" {
		stream = domain.StreamName
	}
	if err := checkStreamName(stream); err != nil {
		return err
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("consumer", durable, "stream", stream)
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	fails := 0
	for {
		err := m.round(ctx, js, stream, durable, log, cfg.Applied)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errModelClosed):
			return err
		case errors.Is(err, errRestart):
			backoff, fails = minBackoff, 0
			continue
		}
		fails++
		if fails == 1 || fails%10 == 0 {
			log.Warn("hq model: following the changelog failed; will retry", "err", err, "failures_in_a_row", fails, "in", backoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, followMaxRetry)
	}
}

// checkStreamName says what is wrong with a stream's name.
func checkStreamName(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("hq: follow: FollowConfig.Stream %q is %d bytes: at most 255", name, len(name))
	}
	if i := strings.IndexAny(name, ". *>/\\\t\r\n"); i >= 0 {
		return fmt.Errorf("hq: follow: FollowConfig.Stream %q has %q: want letters, digits, - and _ (e.g. %s, %s)", name, name[i], domain.StreamName, domain.HQStreamName)
	}
	return nil
}

// checkDurable says what is wrong with a consumer name.
func checkDurable(name string) error {
	if len(name) > 64 {
		return fmt.Errorf("hq: follow: FollowConfig.Durable %q is %d bytes: at most 64", name, len(name))
	}
	if i := strings.IndexAny(name, ". *>/\\\t\r\n"); i >= 0 {
		return fmt.Errorf("hq: follow: FollowConfig.Durable %q has %q: want letters, digits, - and _", name, name[i])
	}
	return nil
}

// round follows the stream until an error, which it returns.
func (m *Model) round(ctx context.Context, js jetstream.JetStream, stream, durable string, log *slog.Logger, applied func(uint64)) error {
	st, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if stream == domain.HQStreamName {
			return fmt.Errorf("stream %s not found (fieldctl hq stream -regions ... creates it): waiting for it", stream)
		}
		return fmt.Errorf("stream %s not found (syncd creates it when it starts): waiting for it", stream)
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errModelClosed
	}
	gen, lastSeq, streamSeq := m.gen, regionSum(m.regions), m.streamSeq
	m.mu.Unlock()
	state := info.State
	if streamSeq > 0 && state.LastSeq < streamSeq {
		return m.reload(ctx, st, durable, log, fmt.Sprintf("the stream ends at message %d, before message %d the model applied (the stream was rebuilt)", state.LastSeq, streamSeq))
	}
	cons, err := st.Consumer(ctx, durable)
	start := streamSeq + 1
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		if lastSeq > 0 || streamSeq > 0 {
			return m.reload(ctx, st, durable, log, "the durable consumer is gone (deleted with a rebuilt stream, or by hand)")
		}
		cons = nil
	case err != nil:
		return fmt.Errorf("consumer %s: %w", durable, err)
	default:
		ci := cons.CachedInfo()
		why := ""
		switch {
		case ci.Config.AckPolicy != jetstream.AckExplicitPolicy || ci.Config.FilterSubject != "" || len(ci.Config.FilterSubjects) > 0:
			why = "its settings are not the model's (explicit acks, every subject)"
		case ci.AckFloor.Stream > streamSeq:
			why = fmt.Sprintf("it has acknowledged up to message %d, the model holds up to %d (the model file was replaced or reset)", ci.AckFloor.Stream, streamSeq)
		case ci.Delivered.Stream > ci.AckFloor.Stream || ci.NumAckPending > 0:
			why = fmt.Sprintf("it holds unacknowledged deliveries (messages %d to %d), which it would redeliver out of order", ci.AckFloor.Stream+1, ci.Delivered.Stream)
		}
		if why != "" {
			log.Info("hq model: making the durable consumer again from the message after the last one applied", "why", why, "from", start)
			if err := st.DeleteConsumer(ctx, durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("delete consumer %s: %w", durable, err)
			}
			cons = nil
		}
	}
	if cons == nil {
		cc := jetstream.ConsumerConfig{
			Durable:       durable,
			Description:   "fieldsync HQ read model (package hq)",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       followAckWait,
			MaxAckPending: 2 * followBatch,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		}
		if streamSeq > 0 {
			cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
		}
		if cons, err = st.CreateConsumer(ctx, cc); err != nil {
			return fmt.Errorf("create consumer %s: %w", durable, err)
		}
	}
	if err := m.setMeta(ctx, "consumer", durable); err != nil {
		return err
	}
	if streamSeq == 0 {
		log.Info("hq model: loading the changelog from its first message", "stream_first_seq", state.FirstSeq, "stream_last_seq", state.LastSeq)
	}
	checked := time.Now()
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m.mu.Lock()
		reset, closed := m.gen != gen, m.closed
		m.mu.Unlock()
		if closed {
			return errModelClosed
		}
		if reset {
			return errRestart // Reset under a running Follow: load from the start
		}
		batch, err := cons.Fetch(followBatch, jetstream.FetchMaxWait(followWait))
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		msgs := batch.Messages()
		got := 0
		for open := true; open; {
			var pending []jetstream.Msg
			select {
			case msg, ok := <-msgs:
				if !ok {
					open = false
					break
				}
				pending = append(pending, msg)
			case <-ctx.Done():
				return ctx.Err()
			}
			// Take what has arrived with it: one transaction for a
			// backlog, none waiting for the fetch to fill while idle.
		drain:
			for open && len(pending) < followBatch {
				select {
				case msg, ok := <-msgs:
					if !ok {
						open = false
						break drain
					}
					pending = append(pending, msg)
				default:
					break drain
				}
			}
			if len(pending) == 0 {
				continue
			}
			got += len(pending)
			m.mu.Lock()
			appliedTo := m.streamSeq
			m.mu.Unlock()
			gap, skipped, err := deliveryGap(ctx, st, appliedTo, pending)
			if err != nil {
				return err
			}
			if gap >= 0 {
				pending = pending[:gap] // the rest after the consumer is made again
			}
			if len(pending) > 0 {
				seq, err := m.applyMsgs(ctx, gen, pending, log)
				if err != nil {
					return err
				}
				if applied != nil {
					applied(seq)
				}
			}
			if gap >= 0 {
				// The next round makes the consumer again from the
				// message after the last one applied.
				return fmt.Errorf("consumer %s delivered past message %d, which the stream holds (its delivery was lost, e.g. with a NATS node; it would come again only after AckWait, out of order)", durable, skipped)
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		if got > 0 || time.Since(checked) < followRecheck {
			continue
		}
		checked = time.Now()
		info, err := st.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s: %w", stream, err)
		}
		m.mu.Lock()
		streamSeq = m.streamSeq
		m.mu.Unlock()
		if info.State.LastSeq < streamSeq {
			return m.reload(ctx, st, durable, log, fmt.Sprintf("the stream ends at message %d, before message %d the model applied (the stream was rebuilt)", info.State.LastSeq, streamSeq))
		}
		if _, err := cons.Info(ctx); err != nil {
			return fmt.Errorf("consumer %s: %w", durable, err) // gone: the next round sees it
		}
	}
}

// reload deletes the durable consumer, Resets the model and starts over:
// the next round loads the stream from its first message.
func (m *Model) reload(ctx context.Context, st jetstream.Stream, durable string, log *slog.Logger, why string) error {
	log.Warn("hq model: reloading from the stream's first message: "+why, "last_seq", m.LastSeq())
	if err := st.DeleteConsumer(ctx, durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete consumer %s: %w", durable, err)
	}
	if err := m.Reset(ctx); err != nil {
		return err
	}
	return errRestart
}

// applyMsgs applies messages in one transaction, then acknowledges them;
// it returns LastSeq after the commit.
func (m *Model) applyMsgs(ctx context.Context, gen uint64, msgs []jetstream.Msg, log *slog.Logger) (uint64, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return 0, errModelClosed
	}
	if m.gen != gen {
		// Reset under a running Follow: start over from the first
		// message (the messages are left unacknowledged).
		m.mu.Unlock()
		return 0, errRestart
	}
	seq, err := m.applyLocked(ctx, msgs, log)
	m.mu.Unlock()
	if err != nil {
		return 0, err
	}
	for _, msg := range msgs {
		if drop := dropAck.Load(); drop != nil {
			if md, err := msg.Metadata(); err == nil && (*drop)(md.Sequence.Stream) {
				continue
			}
		}
		if err := msg.Ack(); err != nil {
			// Redelivered later, and skipped then.
			log.Debug("hq model: ack failed", "err", err)
		}
	}
	return seq, nil
}

func (m *Model) applyLocked(ctx context.Context, msgs []jetstream.Msg, log *slog.Logger) (uint64, error) {
	tx, err := m.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	tc := newTxc(tx)
	st := m.state()
	for _, msg := range msgs {
		md, err := msg.Metadata()
		if err != nil {
			return 0, fmt.Errorf("message metadata: %w", err)
		}
		n := md.Sequence.Stream
		if n <= st.streamSeq {
			continue // applied already: a redelivery
		}
		h := msg.Headers()
		region, lineage := h.Get(domain.HeaderRegion), h.Get(domain.HeaderLineage)
		if err := checkRegionSubject(region, msg.Subject()); err != nil {
			// The header is not to be believed over the subject, which
			// the region's stream enforces: a forged region could empty
			// another region's rows (a lineage change) or claim its ids.
			log.Error("hq model: skipped a message whose region and subject disagree", "stream_seq", n, "subject", msg.Subject(), "region", region, "err", err)
			st.streamSeq, st.dirty = n, true
			continue
		}
		if held := st.regions[region].Lineage; lineage != "" && held != "" && lineage != held {
			// The region's stream was rebuilt under another lineage (a
			// standby restored and took over, or the relay rebuilt it):
			// on a stream that sources it (FIELDSYNC_HQ) its changes
			// arrive again from here on. Only its rows are reloaded.
			log.Warn(fmt.Sprintf("hq model: reloading region %q from message %d on: message %d carries lineage %q, the model was built from %q "+
				"(the region's stream was rebuilt from another database); its rows are emptied and loaded again from the changes that follow, "+
				"the other regions' rows stay", region, n, n, lineage, held), "region", region, "last_seq", st.regions[region].LastSeq)
			if err := st.resetRegion(ctx, tc, region); err != nil {
				return 0, err
			}
		}
		c := &pb.Change{}
		if err := proto.Unmarshal(msg.Data(), c); err != nil {
			log.Error("hq model: skipped a message that is not a fieldsync.v1.Change", "stream_seq", n, "subject", msg.Subject(), "err", err)
			st.streamSeq, st.dirty = n, true
			continue
		}
		last := st.regions[region].LastSeq
		switch {
		case last == 0 && c.GetSeq() > 1:
			log.Error(missingHistory(c.GetSeq()), "region", region, "first_change", c.GetSeq(), "stream_seq", n)
		case last > 0 && c.GetSeq() > last+1:
			// Change numbers have no gaps: these were dropped from the
			// stream (its limits) before the model read them.
			log.Error("hq model: changes are missing from the stream: records whose last change is among them are out of date in the model "+
				"(the stream's limits dropped them while the model was behind; raise -changelog-max-age/-changelog-max-bytes, "+
				"or rebuild the stream from syncd's database and delete the durable consumer to reload)",
				"region", region, "missing_from", last+1, "missing_to", c.GetSeq()-1, "stream_seq", n)
		}
		if err := st.apply(ctx, tc, c, region, lineage); err != nil {
			var bad *badChangeError
			if !errors.As(err, &bad) {
				return 0, err
			}
			// Retrying cannot mend it: skip it, loudly, or the model
			// would stop here for ever. Its number counts as applied.
			log.Error("hq model: skipped a change it cannot apply", "region", region, "stream_seq", n, "subject", msg.Subject(), "err", err)
			st.counted(region, c.GetSeq())
		}
		st.streamSeq, st.dirty = n, true
		st.markStream(region, n)
	}
	if err := st.save(ctx, tc); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	m.adopt(st)
	return regionSum(m.regions), nil
}

func (m *Model) setMeta(ctx context.Context, key, value string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errModelClosed
	}
	_, err := m.w.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
	if err != nil {
		return fmt.Errorf("write meta %s: %w", key, err)
	}
	return nil
}

// missingHistory is what Follow logs, at error, when it loads an empty
// model from a stream whose first change is not change 1.
func missingHistory(first uint64) string {
	return fmt.Sprintf("hq model: THE CHANGELOG DOES NOT START AT CHANGE 1: the model is loaded from change %d on, "+
		"and every record whose last change came before it is MISSING from the model (the stream's limits dropped the "+
		"oldest changes, or it was rebuilt after syncd's retention window); a first load from `fieldctl hq export` is "+
		"not built yet: raise -changelog-max-age/-changelog-max-bytes, or rebuild the stream from syncd's database "+
		"(delete it and restart syncd) so that it starts at change 1", first)
}

// checkRegionSubject checks a message's Fieldsync-Region header against its
// subject: a region's stream takes only fieldsync.changes.<region>.> (its
// relay publishes fieldsync.changes.<region>.<town>.<kind>), a syncd
// without a region publishes fieldsync.changes.<town>.<kind> and no header.
func checkRegionSubject(region, subject string) error {
	toks := strings.Split(subject, ".")
	if region == "" {
		if len(toks) == 4 && strings.HasPrefix(subject, domain.SubjectPrefix+".") {
			return nil
		}
		return fmt.Errorf("no %s header, so want a subject %s.<town>.<kind>", domain.HeaderRegion, domain.SubjectPrefix)
	}
	if len(toks) == 5 && strings.HasPrefix(subject, domain.RegionSubjectPrefix(region)+".") {
		return nil
	}
	return fmt.Errorf("%s %q, so want a subject %s.<town>.<kind>", domain.HeaderRegion, region, domain.RegionSubjectPrefix(region))
}
