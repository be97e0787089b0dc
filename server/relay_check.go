package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fieldsync/fieldsync/domain"
)

// The relay trusts only what it can check against SQLite. The stream is
// sound when it holds exactly changes 1..L for some L no greater than the
// database's last change, message n being change n (id, headers and body),
// all under the database's current lineage. Anything else (a message
// someone else published, a forged header, a purge, a trim, a deleted
// message, a store damaged while syncd was stopped, a stream of an older
// lineage) is repaired the only way that keeps the invariant: delete the
// stream, create it again, republish every change from SQLite.

// checkSamples is how many messages spread over the stream a whole check
// compares with SQLite, besides the first and the last: a damaged block
// loses a run of messages, which a spread sample meets.
const checkSamples = 32

// Check checks the whole stream against SQLite and repairs it (see
// checkAndRepair). syncd calls it before serving, so that a database that
// went back in time gets its new lineage before any new change is written.
// The republishing after a rebuild is left to Run. Call it before Run,
// not beside it.
func (r *Relay) Check(ctx context.Context) error {
	st, err := r.ensureStream(ctx)
	if err != nil {
		return err
	}
	pos, _, err := r.checkAndRepair(ctx, st, true)
	if err != nil {
		return err
	}
	r.published.Store(pos)
	r.checked.Store(true)
	return nil
}

// refusalError is a stream that does not match SQLite and that the relay
// cannot repair; it names what repairs it.
type refusalError struct{ err error }

func (e *refusalError) Error() string { return e.err.Error() }
func (e *refusalError) Unwrap() error { return e.err }

// dbError is a failure to read the database: nothing that restarting
// NATS would cure.
type dbError struct{ err error }

func (e *dbError) Error() string { return e.err.Error() }
func (e *dbError) Unwrap() error { return e.err }

// mismatch is what the check found wrong with the stream.
type mismatch struct {
	what string
	// wentBack: the stream holds changes of the database's own lineage
	// that the database no longer has (it was restored from an older
	// copy): it needs a new lineage before the stream is rebuilt.
	wentBack bool
}

// checkAndRepair checks the stream (whole: counts and a sample of
// contents; else its counts and tail) and repairs it on any mismatch. It
// returns the last change the stream holds, after which to publish, and
// the lineage the stream is in.
func (r *Relay) checkAndRepair(ctx context.Context, st jetstream.Stream, whole bool) (uint64, string, error) {
	lineage := r.store.Instance()
	last, bad, err := r.check(ctx, st, lineage, whole)
	if err != nil || bad == nil {
		return last, lineage, err
	}
	if r.region != "" {
		if err := r.fence(ctx, st); err != nil {
			return 0, "", err
		}
	}
	if bad.wentBack {
		old := lineage
		l, err := r.store.Rebase(ctx)
		if err != nil {
			return 0, "", fmt.Errorf("the database went back in time (%s), and giving it a new lineage failed: %w", bad.what, err)
		}
		lineage = l.ID
		r.log.Warn("relay: the database went back in time (restored from an older copy?): it continues under a new lineage so that no change id names two contents",
			"found", bad.what, "old_lineage", old, "new_lineage", l.ID, "after_change", l.After)
	}
	if err := r.rebuild(ctx); err != nil {
		return 0, "", err
	}
	dbLast, _ := r.store.LastSeq(ctx)
	r.log.Warn("relay: the changelog stream did not match the database; deleted and recreated it, republishing every change from the database (consumers see a new "+domain.HeaderLineage+" or their consumer gone, and reload)",
		"stream", r.Stream(), "found", bad.what, "lineage", lineage, "changes", dbLast)
	// The stream starts at the database's first change (ensureStream).
	start, err := r.store.FirstChange(ctx)
	if err != nil {
		return 0, "", &dbError{fmt.Errorf("read the first change: %w", err)}
	}
	start -= min(start, 1)
	r.published.Store(start)
	return start, lineage, nil
}

// fence refuses to rebuild a region's stream that another live server of
// the same region publishes to: its last message carries this region and a
// lineage that is neither the database's nor the one it came from (a
// restore's new lineage follows the stream's: a standby rebuilds the
// stream of the server it replaces). Two syncds of one region (the old
// machine back after a failover) would otherwise delete and rebuild the
// stream in turn, every second, and HQ reload the region each time. The
// relay then publishes nothing and says, at every retry, what to do. An
// empty database (a standby started before its restore) is told to
// restore; a foreign tail published more than fenceFresh ago (a server
// that published once and stopped) is rebuilt as before.
func (r *Relay) fence(ctx context.Context, st jetstream.Stream) error {
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	if info.State.LastSeq == 0 || info.State.Msgs == 0 {
		return nil
	}
	msg, err := st.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		if cantTell(err) {
			return fmt.Errorf("read message %d: %w", info.State.LastSeq, err)
		}
		return nil
	}
	theirs := msg.Header.Get(domain.HeaderLineage)
	if msg.Header.Get(domain.HeaderRegion) != r.region || theirs == "" {
		return nil
	}
	l, err := r.store.Lineage(ctx)
	if err != nil {
		return &dbError{err}
	}
	if theirs == l.ID || theirs == l.Prev {
		return nil
	}
	name := r.Stream()
	dbLast, err := r.store.LastSeq(ctx)
	if err != nil {
		return &dbError{err}
	}
	if dbLast == 0 && l.Prev == "" {
		// A data directory with nothing in it, on a region whose stream
		// holds changes: a standby started before its restore.
		return &refusalError{fmt.Errorf("this database is empty, and stream %s holds region %s's changes (%d, lineage %q): "+
			"a region's server starts from the region's data: restore it first (syncd restore -backup LOCATION -data DIR, README \"When a region's server is lost\"), "+
			"and never delete the region's stream for an empty database", name, r.region, info.State.LastSeq, theirs)}
	}
	if age := time.Since(msg.Time); age > fenceFresh {
		// Nobody published for a while: a stale tail (a server that
		// published once and stopped), rebuilt as before.
		r.log.Warn("relay: the region's stream ends with another lineage's message, published long ago; rebuilding it from this database",
			"stream", name, "their_lineage", theirs, "published_ago", age.Round(time.Second))
		return nil
	}
	return &refusalError{fmt.Errorf("stream %s is published by another server of region %s: its last message (change %s) is of lineage %q, "+
		"and this database is of lineage %q (before it %q): two syncds run as region %s (the old machine back after a failover?); "+
		"this syncd publishes nothing to it until that is settled: stop the syncd that is not the region's server; "+
		"if this one is the region's server and the stream is stale, delete it (nats stream rm %s -f) and this syncd rebuilds it from its database",
		name, r.region, msg.Header.Get(domain.HeaderSeq), theirs, l.ID, l.Prev, r.region, name)}
}

// fenceFresh: a region's stream whose last message, of another server of
// the region, is younger than this has that server alive (fence).
const fenceFresh = 10 * time.Minute

// rebuild deletes the stream and creates it empty.
func (r *Relay) rebuild(ctx context.Context) error {
	name := r.Stream()
	if err := r.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		if errors.Is(err, context.DeadlineExceeded) {
			// NATS answers a request its permissions deny with silence.
			err = fmt.Errorf("%w (no answer: is it denied to syncd's NATS user?)", err)
		}
		return &refusalError{fmt.Errorf("cannot delete stream %s to rebuild it from the database: %w; give syncd's NATS user the right to delete it, or delete it yourself (nats stream rm %s -f) and syncd rebuilds it", name, err, name)}
	}
	if _, err := r.ensureStream(ctx); err != nil {
		return &refusalError{fmt.Errorf("deleted stream %s to rebuild it but cannot create it again: %w; create it yourself or check the NATS account's JetStream limits", name, err)}
	}
	return nil
}

// check returns the last change the stream holds when the stream is
// sound, or what is wrong with it; err only when it cannot tell (NATS or
// the database not answering).
func (r *Relay) check(ctx context.Context, st jetstream.Stream, lineage string, whole bool) (uint64, *mismatch, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("stream info: %w", err)
	}
	dbLast, err := r.store.LastSeq(ctx)
	if err != nil {
		return 0, nil, &dbError{fmt.Errorf("read the last change: %w", err)}
	}
	dbFirst, err := r.store.FirstChange(ctx)
	if err != nil {
		return 0, nil, &dbError{fmt.Errorf("read the first change: %w", err)}
	}
	s := info.State
	// first: where the stream may start. Past 1 only when its own limits
	// can have trimmed its head (DiscardOld), or when the database's
	// retention window removed the changes before it (the stream had
	// them, or was rebuilt from the database's first): the relay goes on
	// after the last message, and message n is still change n.
	first := uint64(1)
	if dbFirst > 1 && s.LastSeq+1 < dbFirst {
		// Changes between the stream's end and the database's first are
		// in neither: only a rebuild from the database's first (and a
		// reload by consumers) makes message n change n again.
		return 0, &mismatch{what: fmt.Sprintf("the stream ends at %d, and the database's changelog starts at %d (older changes left it with the retention window)", s.LastSeq, dbFirst)}, nil
	}
	if s.FirstSeq > 1 && s.LastSeq <= dbLast && dbFirst > 1 && s.FirstSeq <= dbFirst {
		first = s.FirstSeq
	} else if s.FirstSeq > 1 && s.LastSeq <= dbLast {
		trimmed, err := r.trimmedByLimits(ctx, info, s.FirstSeq-1)
		if err != nil {
			return 0, nil, err
		}
		if trimmed {
			first = s.FirstSeq
		}
	}
	switch {
	case s.LastSeq == 0 && s.Msgs == 0:
		// A new stream, or one whose store lost everything (a block
		// zeroed from its start recovers as an empty stream).
		if dbLast > 0 && whole {
			r.log.Warn("relay: the changelog stream is empty; publishing every change from the database", "stream", r.Stream(), "changes", dbLast)
		}
		return 0, nil, nil
	case s.Msgs == 0 && first > 1:
		// Every message aged out: the relay goes on after the last.
		return s.LastSeq, nil, nil
	case s.Msgs == 0:
		return 0, &mismatch{what: fmt.Sprintf("the stream is empty after sequence %d (purged)", s.LastSeq)}, nil
	case s.FirstSeq != first && s.LastSeq <= dbLast:
		// Not trimmed by the stream's limits: a person did it.
		return 0, &mismatch{what: fmt.Sprintf("the stream starts at sequence %d, not %d (purged or trimmed beyond its limits)", s.FirstSeq, first)}, nil
	case s.NumDeleted > 0 || s.Msgs != s.LastSeq-s.FirstSeq+1:
		return 0, &mismatch{what: fmt.Sprintf("the stream holds %d messages in sequences %d..%d (%d deleted)", s.Msgs, s.FirstSeq, s.LastSeq, s.NumDeleted)}, nil
	case s.LastSeq > dbLast:
		// Whose changes are beyond the database's last one?
		msg, err := st.GetMsg(ctx, dbLast+1)
		if err != nil {
			if cantTell(err) {
				return 0, nil, fmt.Errorf("read message %d: %w", dbLast+1, err)
			}
			// Trimmed away (the stream's limits), it cannot tell whose it
			// was: a new lineage costs consumers a reload, a change id
			// naming two contents costs them data.
			return 0, &mismatch{what: fmt.Sprintf("the stream ends at %d, past the database's last change %d, and message %d cannot be read: %v", s.LastSeq, dbLast, dbLast+1, err),
				wentBack: dbLast+1 < s.FirstSeq}, nil
		}
		id := msg.Header.Get(jetstream.MsgIDHeader)
		// Only the database's own next change id there says it went back
		// (message n = change n); another id of its lineage is junk.
		return 0, &mismatch{
			what:     fmt.Sprintf("the stream ends at %d, past the database's last change %d (message %d has id %q)", s.LastSeq, dbLast, dbLast+1, id),
			wentBack: id == lineage+"-"+strconv.FormatUint(dbLast+1, 10),
		}, nil
	}
	seqs := []uint64{s.LastSeq}
	if whole {
		seqs = sampleSeqs(first, s.LastSeq, checkSamples)
	}
	for _, seq := range seqs {
		bad, err := r.compare(ctx, st, seq, lineage)
		if err != nil || bad != nil {
			return 0, bad, err
		}
	}
	return s.LastSeq, nil, nil
}

// sampleSeqs is first, last and n sequences spread evenly between them.
func sampleSeqs(first, last uint64, n int) []uint64 {
	out := []uint64{first}
	for i := 1; i <= n; i++ {
		seq := first + (last-first)*uint64(i)/uint64(n+1)
		if seq > out[len(out)-1] && seq < last {
			out = append(out, seq)
		}
	}
	if last > first {
		out = append(out, last)
	}
	return out
}

// compare checks that message seq is change seq.
func (r *Relay) compare(ctx context.Context, st jetstream.Stream, seq uint64, lineage string) (*mismatch, error) {
	rows, err := r.store.ChangesAfter(ctx, seq-1, 1)
	if err != nil {
		return nil, &dbError{fmt.Errorf("read change %d: %w", seq, err)}
	}
	if len(rows) == 0 || rows[0].Seq != seq {
		if dbFirst, err := r.store.FirstChange(ctx); err == nil && seq < dbFirst {
			return nil, nil // left the changes table with the retention window: nothing to compare with
		}
		return nil, fmt.Errorf("the database has no change %d below its last one: change numbers must have no gap", seq)
	}
	row := rows[0]
	msg, err := st.GetMsg(ctx, seq)
	if err != nil {
		if cantTell(err) {
			return nil, fmt.Errorf("read message %d: %w", seq, err)
		}
		return &mismatch{what: fmt.Sprintf("message %d cannot be read: %v", seq, err)}, nil
	}
	id, err := changeID(row.Body)
	if err != nil {
		return nil, fmt.Errorf("change %d: %w", seq, err)
	}
	gotID := msg.Header.Get(jetstream.MsgIDHeader)
	var what string
	switch {
	case gotID != id:
		what = fmt.Sprintf("message %d has id %q, change %d is %q", seq, gotID, seq, id)
	case msg.Header.Get(domain.HeaderSeq) != strconv.FormatUint(seq, 10):
		what = fmt.Sprintf("message %d has %s %q", seq, domain.HeaderSeq, msg.Header.Get(domain.HeaderSeq))
	case msg.Subject != domain.RegionSubject(r.region, row.Subject) || !bytes.Equal(msg.Data, row.Body):
		// Same change id, other content: the database numbered a change
		// again that its earlier self had published.
		return &mismatch{what: fmt.Sprintf("message %d (%s) differs from change %d in subject or body", seq, id, seq), wentBack: strings.HasPrefix(id, lineage+"-")}, nil
	case msg.Header.Get(domain.HeaderLineage) != lineage:
		what = fmt.Sprintf("message %d is of lineage %q, the database is in %q", seq, msg.Header.Get(domain.HeaderLineage), lineage)
	case msg.Header.Get(domain.HeaderRegion) != r.region:
		what = fmt.Sprintf("message %d has %s %q, the relay publishes as region %q", seq, domain.HeaderRegion, msg.Header.Get(domain.HeaderRegion), r.region)
	default:
		return nil, nil
	}
	return &mismatch{what: what}, nil
}

// cantTell is an error that says nothing about the stream's content: NATS
// or JetStream not answering, or ctx over.
func cantTell(err error) bool {
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false
	}
	var apiErr *jetstream.APIError
	return !errors.As(err, &apiErr)
}

// changeID reads a change's id (fieldsync.v1.Change field 2) from its
// body without decoding the rest.
func changeID(body []byte) (string, error) {
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return "", fmt.Errorf("change body: %w", protowire.ParseError(n))
		}
		body = body[n:]
		if num == 2 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(body)
			if n < 0 {
				return "", fmt.Errorf("change body: %w", protowire.ParseError(n))
			}
			return string(v), nil
		}
		n = protowire.ConsumeFieldValue(num, typ, body)
		if n < 0 {
			return "", fmt.Errorf("change body: %w", protowire.ParseError(n))
		}
		body = body[n:]
	}
	return "", errors.New("change body has no change id")
}
