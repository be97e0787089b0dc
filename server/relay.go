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
// under the invariant "message n = change n": the message at stream
// sequence n is change n, with Nats-Msg-Id = its change id, Fieldsync-Seq
// = n, Fieldsync-Lineage = the database's lineage, and the changes row's
// body byte for byte.
//
// It keeps no state of its own and trusts only what it can check against
// SQLite (relay_check.go): on start it checks the stream as a whole, and
// after any publish error its tail, and rebuilds it from SQLite on any
// mismatch. Each publish names the stream sequence it must follow, so a
// failed publish in a pipelined batch makes every later one fail too: the
// stream never gets a gap or a change out of order.
type Relay struct {
	store *store.Server
	js    jetstream.JetStream
	log   *slog.Logger
	poke  chan struct{}
	// region is the region this syncd runs as ("" for none): its stream
	// is domain.RegionStream(region), each change is published at
	// domain.RegionSubject(region, its stored subject) with the header
	// domain.HeaderRegion (SetRegion).
	region string
	// published is the highest change number the stream acknowledged.
	published atomic.Uint64
	// checked: a whole-stream check passed (Check, or Run's first round).
	checked atomic.Bool

	// recoverNATS, if set, is called after the relay failed several rounds in
	// a row (SetRecover).
	recoverNATS atomic.Pointer[func(ctx context.Context) error]

	// limits: the stream's limits (stream_limits.go); limitsApplied: the
	// explicit ones were applied once; lastConfig: the stream's settings
	// as last seen, for a rebuild to keep them.
	limits        StreamLimits
	limitsApplied atomic.Bool
	lastConfig    atomic.Pointer[jetstream.StreamConfig]
}

// SetRecover sets what brings the NATS side back without a restart, called
// after the relay failed several rounds in a row: syncd sets it for its
// embedded server (RecoverJetStream: JetStream turns itself off on a full
// disk). The relay stays free of how NATS is hosted.
func (r *Relay) SetRecover(f func(ctx context.Context) error) { r.recoverNATS.Store(&f) }

// NewRelay makes a relay from st to js.
func NewRelay(st *store.Server, js jetstream.JetStream, log *slog.Logger) *Relay {
	return &Relay{store: st, js: js, log: log, poke: make(chan struct{}, 1)}
}

// SetRegion makes the relay publish as region r (domain.CheckRegion; ""
// for none): stream domain.RegionStream(r), subjects under
// domain.RegionSubjectPrefix(r), header domain.HeaderRegion. Call it
// before Check or Run.
func (r *Relay) SetRegion(region string) { r.region = region }

// Region is the region the relay publishes as ("" for none).
func (r *Relay) Region() string { return r.region }

// Stream is the name of the stream the relay publishes to.
func (r *Relay) Stream() string { return domain.RegionStream(r.region) }

// Poke tells the relay that changes were committed.
func (r *Relay) Poke() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// Published returns the highest change number the stream acknowledged.
func (r *Relay) Published() uint64 { return r.published.Load() }

// StreamConfig is the changelog stream of a syncd without a region:
// StreamConfigFor("").
func StreamConfig() jetstream.StreamConfig { return StreamConfigFor("") }

// StreamConfigFor is region's changelog stream (domain.RegionStream):
// file storage, subjects domain.RegionSubjectPrefix(region) + ".>"
// (fieldsync.changes[.<region>].<town>.<kind>), a duplicate window for
// retries.
//
// The window is short: every publish carries the stream's expected last
// sequence, which already refuses a second copy of a change whenever it
// comes, so the window only backs that up for the relay's own retries
// (10 s acknowledgement timeout). JetStream keeps every message id of the
// window in memory: at a storm's 5,000 changes/s, 10 minutes would be
// millions of ids; 30 s is about 150,000.
func StreamConfigFor(region string) jetstream.StreamConfig {
	desc := "fieldsync changelog: one message per committed change (body fieldsync.v1.Change)"
	if region != "" {
		desc = "fieldsync changelog of region " + region + ": one message per committed change (body fieldsync.v1.Change)"
	}
	return jetstream.StreamConfig{
		Name:        domain.RegionStream(region),
		Description: desc,
		Subjects:    []string{domain.RegionSubjectPrefix(region) + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  30 * time.Second,
		Discard:     jetstream.DiscardOld,
	}
}

// EnsureStream creates the changelog stream with the default limits, or
// brings an existing one to what the relay needs, keeping its limits (see
// StreamLimits).
func EnsureStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	return ensureStream(ctx, js, "", StreamLimits{}, false, nil, 0)
}

// EnsureRegionStream is EnsureStream for region's stream
// (domain.RegionStream).
func EnsureRegionStream(ctx context.Context, js jetstream.JetStream, region string) (jetstream.Stream, error) {
	return ensureStream(ctx, js, region, StreamLimits{}, false, nil, 0)
}

// Run publishes until ctx ends, retrying with backoff while NATS is away.
// Every failed round is logged (a refusal to repair at error level, with
// the command that repairs it), and the next round checks the stream's
// tail against SQLite before it publishes again.
func (r *Relay) Run(ctx context.Context) error {
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	fails := 0
	for {
		progressed, err := r.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			backoff, fails = minBackoff, 0
		}
		fails++
		var refused *refusalError
		if errors.As(err, &refused) {
			r.log.Error("relay: the changelog stream does not match the database and cannot be repaired; HQ gets nothing until it is", "err", err, "retry_in", backoff)
		} else {
			r.log.Warn("relay: will retry", "err", err, "failures_in_a_row", fails, "in", backoff)
		}
		var dbErr *dbError
		if rec := r.recoverNATS.Load(); rec != nil && *rec != nil && fails%recoverAfter == 0 && refused == nil && !errors.As(err, &dbErr) {
			r.log.Warn("relay: still failing; recovering NATS", "failures_in_a_row", fails)
			if err := (*rec)(ctx); err != nil {
				r.log.Error("relay: recovering NATS failed", "err", err)
			} else {
				r.log.Info("relay: NATS recovered; checking the stream again")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// recoverAfter is how many failed rounds in a row call the recover hook
// (and every as many after): a stuck stream fails a round per 10 s
// acknowledgement timeout, so about 20 s.
const recoverAfter = 2

// runOnce checks the stream and publishes until an error, which it
// returns, with whether it published anything.
func (r *Relay) runOnce(ctx context.Context) (progressed bool, err error) {
	st, err := r.ensureStream(ctx)
	if err != nil {
		return false, err
	}
	pos, lineage, err := r.checkAndRepair(ctx, st, !r.checked.Load())
	if err != nil {
		return false, err
	}
	r.checked.Store(true)
	r.published.Store(pos)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		n, err := r.publishAfter(ctx, &pos, lineage)
		if err != nil {
			return progressed, err
		}
		if n > 0 {
			progressed = true
			continue
		}
		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case <-r.poke:
		case <-tick.C:
			// Idle: a purge, a trim, a deleted message or someone else's
			// publish makes no publish of ours fail; the stream's counts
			// and its last message show them (two requests a second).
			if err := r.tailMatches(ctx, st, pos, lineage); err != nil {
				return progressed, err
			}
		}
	}
}

// tailMatches checks that the stream still holds exactly changes 1..pos,
// its last message checked against SQLite, under the database's lineage.
func (r *Relay) tailMatches(ctx context.Context, st jetstream.Stream, pos uint64, lineage string) error {
	if cur := r.store.Instance(); cur != lineage {
		return fmt.Errorf("the database's lineage changed from %s to %s", lineage, cur)
	}
	last, bad, err := r.check(ctx, st, lineage, false)
	switch {
	case err != nil:
		return err
	case bad != nil:
		return fmt.Errorf("the stream changed under the relay: %s", bad.what)
	case last != pos:
		return fmt.Errorf("the stream changed under the relay: it ends at %d, the relay published up to %d", last, pos)
	}
	return nil
}

const relayBatch = 1000

// publishAfter publishes one batch of changes after *pos (change *pos is
// stream message *pos) and waits for every acknowledgement before moving
// it. A rebuild of millions of changes goes through here too, a batch at
// a time.
func (r *Relay) publishAfter(ctx context.Context, pos *uint64, lineage string) (int, error) {
	if cur := r.store.Instance(); cur != lineage {
		// Rebased while running: the stream must be rebuilt under the new
		// lineage, which the next round's check does.
		return 0, fmt.Errorf("the database's lineage changed from %s to %s", lineage, cur)
	}
	rows, err := r.store.ChangesAfter(ctx, *pos, relayBatch)
	if err != nil {
		return 0, &dbError{err}
	}
	if len(rows) == 0 {
		return 0, nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(rows))
	for i, row := range rows {
		if want := *pos + uint64(i) + 1; row.Seq != want {
			return 0, &dbError{fmt.Errorf("changes table has change %d where %d was expected: change numbers must have no gap (message n = change n)", row.Seq, want)}
		}
		id, err := changeID(row.Body)
		if err != nil {
			return 0, &dbError{fmt.Errorf("change %d: %w", row.Seq, err)}
		}
		msg := nats.NewMsg(domain.RegionSubject(r.region, row.Subject))
		msg.Data = row.Body
		msg.Header.Set(jetstream.MsgIDHeader, id)
		msg.Header.Set(domain.HeaderSeq, strconv.FormatUint(row.Seq, 10))
		msg.Header.Set(domain.HeaderLineage, lineage)
		if r.region != "" {
			msg.Header.Set(domain.HeaderRegion, r.region)
		}
		f, err := r.js.PublishMsgAsync(msg, jetstream.WithExpectLastSequence(row.Seq-1))
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
			return 0, fmt.Errorf("publish change %d: no acknowledgement within 10s (is JetStream out of space or down?)", rows[i].Seq)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	*pos = rows[len(rows)-1].Seq
	r.published.Store(*pos)
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
