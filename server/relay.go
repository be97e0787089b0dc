package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/store"
)

// Relay publishes the changes table to the JetStream changelog, in order,
// each change with Nats-Msg-Id set to its change id and its change number
// in the Fieldsync-Seq header.
//
// It keeps no state of its own: on start, and after any publish error, it
// reads the change number of the stream's last message and publishes
// everything after it. A stream that lost its unsynced tail (JetStream acks
// before fsync by default) so heals itself from SQLite. Each publish also
// names the stream sequence it must follow, so a failed publish in a
// pipelined batch makes every later one fail too: the stream never gets a
// gap or a change out of order, and a repeat is dropped by the duplicate
// window.
type Relay struct {
	store *store.Server
	js    jetstream.JetStream
	log   *slog.Logger
	poke  chan struct{}
	// published is the highest change number the stream acknowledged.
	published atomic.Uint64
}

// NewRelay makes a relay from st to js.
func NewRelay(st *store.Server, js jetstream.JetStream, log *slog.Logger) *Relay {
	return &Relay{store: st, js: js, log: log, poke: make(chan struct{}, 1)}
}

// Poke tells the relay that changes were committed.
func (r *Relay) Poke() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// Published returns the highest change number the stream acknowledged.
func (r *Relay) Published() uint64 { return r.published.Load() }

// StreamConfig is the changelog stream: file storage, subjects
// fieldsync.changes.<region>.<kind>, a duplicate window for retries.
//
// The window is short: every publish carries the stream's expected last
// sequence, which already refuses a second copy of a change whenever it
// comes, so the window only backs that up for the relay's own retries
// (10 s acknowledgement timeout). JetStream keeps every message id of the
// window in memory: at a storm's 5,000 changes/s, 10 minutes would be
// millions of ids; 30 s is about 150,000.
func StreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        domain.StreamName,
		Description: "fieldsync changelog: one message per committed change (body fieldsync.v1.Change)",
		Subjects:    []string{domain.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  30 * time.Second,
	}
}

// EnsureStream creates or updates the changelog stream.
func EnsureStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	st, err := js.CreateOrUpdateStream(ctx, StreamConfig())
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", domain.StreamName, err)
	}
	return st, nil
}

// lastInStream returns the change number of the stream's last message and
// that message's stream sequence.
func (r *Relay) lastInStream(ctx context.Context, st jetstream.Stream) (change, streamSeq uint64, err error) {
	info, err := st.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("stream info: %w", err)
	}
	// The last message may have been deleted (LastSeq still counts it):
	// walk back to the last one that exists.
	for seq := info.State.LastSeq; info.State.Msgs > 0 && seq >= info.State.FirstSeq && seq > 0; seq-- {
		msg, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("read message %d: %w", seq, err)
		}
		change, err = strconv.ParseUint(msg.Header.Get(domain.HeaderSeq), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("message %d of %s has no valid %s header: %w", seq, domain.StreamName, domain.HeaderSeq, err)
		}
		return change, info.State.LastSeq, nil
	}
	return 0, info.State.LastSeq, nil
}

// Run publishes until ctx ends, retrying with backoff while NATS is away.
func (r *Relay) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := r.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("relay: will retry", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (r *Relay) runOnce(ctx context.Context) error {
	st, err := EnsureStream(ctx, r.js)
	if err != nil {
		return err
	}
	last, streamSeq, err := r.lastInStream(ctx, st)
	if err != nil {
		return err
	}
	r.published.Store(last)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		n, err := r.publishAfter(ctx, &last, &streamSeq)
		if err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.poke:
		case <-tick.C:
		}
	}
}

const relayBatch = 1000

// publishAfter publishes one batch of changes after *last, the message
// after stream sequence *streamSeq, and waits for every acknowledgement
// before moving both.
func (r *Relay) publishAfter(ctx context.Context, last, streamSeq *uint64) (int, error) {
	rows, err := r.store.ChangesAfter(ctx, *last, relayBatch)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(rows))
	for i, row := range rows {
		msg := nats.NewMsg(row.Subject)
		msg.Data = row.Body
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", r.store.Instance(), row.Seq))
		msg.Header.Set(domain.HeaderSeq, strconv.FormatUint(row.Seq, 10))
		f, err := r.js.PublishMsgAsync(msg, jetstream.WithExpectLastSequence(*streamSeq+uint64(i)))
		if err != nil {
			return 0, fmt.Errorf("publish change %d: %w", row.Seq, err)
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				// The stream already had this change id (a deleted message
				// still inside the duplicate window): re-read where it is.
				return 0, fmt.Errorf("publish change %d: the stream dropped it as a duplicate", rows[i].Seq)
			}
		case err := <-f.Err():
			return 0, fmt.Errorf("publish change %d: %w", rows[i].Seq, err)
		case <-timeout.C:
			return 0, errors.New("publish: no acknowledgement within 10s")
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	*last = rows[len(rows)-1].Seq
	*streamSeq += uint64(len(rows))
	r.published.Store(*last)
	return len(rows), nil
}

// WaitPublished blocks until the stream holds every change up to seq, or ctx
// ends.
func (r *Relay) WaitPublished(ctx context.Context, seq uint64) error {
	for r.Published() < seq {
		r.Poke()
		select {
		case <-ctx.Done():
			return fmt.Errorf("relay at change %d, waiting for %d: %w", r.Published(), seq, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
