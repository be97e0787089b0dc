package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/store"
)

// AuditStreamConfig is the stream of audit heads: one message per audit
// entry, in order, on subject (the store's AuditHeadSubject, secret with
// the audit key), its body the entry's
// store.AuditHead as JSON. It is the audit log's anchor outside the
// database: a log cut short, or cut and written again, no longer matches
// the last head published (store.AuditReport). Messages cannot be deleted
// one by one; a purge (after restoring the database from a backup, to
// accept the entries lost with it) makes syncd publish every entry again.
func AuditStreamConfig(subject string) jetstream.StreamConfig {
	return auditStreamConfig(domain.AuditStreamName, subject)
}

// AuditStreamFor is the audit stream of region (domain.CheckRegion):
// FIELDSYNC_AUDIT for none, else FIELDSYNC_AUDIT_<REGION>. Regions on one
// JetStream each keep their own: one stream's subjects and expected
// sequences cannot serve two publishers.
func AuditStreamFor(region string) string {
	if region == "" {
		return domain.AuditStreamName
	}
	return domain.AuditStreamName + "_" + strings.ToUpper(region)
}

func auditStreamConfig(name, subject string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Description: "fieldsync audit heads: one message per audit log entry (JSON seq, link, time_ms)",
		Subjects:    []string{subject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		DenyDelete:  true,
	}
}

// LatestAuditHead reads the last audit head published on subject, nil if
// none (no stream, or an empty one).
func LatestAuditHead(ctx context.Context, js jetstream.JetStream, subject string) (*store.AuditHead, error) {
	// The stream that holds the subject: FIELDSYNC_AUDIT, or a region's
	// (AuditStreamFor).
	name, err := js.StreamNameBySubject(ctx, subject)
	if err != nil {
		name = domain.AuditStreamName
	}
	st, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit stream %s: %w", name, err)
	}
	h, _, err := lastAuditHead(ctx, st, subject)
	return h, err
}

// lastAuditHead returns the last head in the stream (nil: none) and the
// stream's last sequence, which the next publish must follow.
func lastAuditHead(ctx context.Context, st jetstream.Stream, subject string) (*store.AuditHead, uint64, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("audit stream %s: %w", st.CachedInfo().Config.Name, err)
	}
	if info.State.Msgs == 0 {
		return nil, info.State.LastSeq, nil
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, info.State.LastSeq, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("audit stream %s: read the last head: %w", st.CachedInfo().Config.Name, err)
	}
	var h store.AuditHead
	if err := json.Unmarshal(m.Data, &h); err != nil || h.Seq == 0 || h.Link == "" {
		return nil, 0, fmt.Errorf("audit stream %s: message %d is not an audit head", st.CachedInfo().Config.Name, m.Sequence)
	}
	return &h, m.Sequence, nil
}

// auditPublisher publishes the audit log's entries to the audit stream
// from SQLite, as the relay does changes: it keeps no state, starts after
// the last head in the stream once that head matches the database's entry
// of the same number, and each publish expects the stream's previous
// sequence, so no entry is skipped or published twice. Entries committed
// while NATS is away are published when it is back.
type auditPublisher struct {
	store     *store.Server
	js        jetstream.JetStream
	log       *slog.Logger
	poke      chan struct{}
	published atomic.Uint64
	subject   string // the store's AuditHeadSubject
	stream    string // AuditStreamFor(the server's region)
}

// errAuditMismatch: the stream's last head is not in the database.
var errAuditMismatch = errors.New("the audit log does not match the head published to NATS")

func (p *auditPublisher) run(ctx context.Context) {
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	for {
		progressed, err := p.round(ctx)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			backoff = minBackoff
		}
		if errors.Is(err, errAuditMismatch) {
			p.log.Error("audit: not publishing audit heads", "err", err, "check", "fieldctl admin audit -verify", "retry_in", backoff)
		} else {
			p.log.Warn("audit: publishing audit heads; will retry", "err", err, "in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// round checks the stream's last head against the database, then
// publishes each entry committed after it, waiting for a poke when there
// is none, until an error. A poke costs one indexed read of SQLite.
func (p *auditPublisher) round(ctx context.Context) (progressed bool, err error) {
	st, err := p.js.Stream(ctx, p.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = p.js.CreateStream(ctx, auditStreamConfig(p.stream, p.subject))
	} else if err == nil && !slices.Equal(st.CachedInfo().Config.Subjects, []string{p.subject}) {
		// Made by an older syncd on the well-known subject (or the key
		// changed): heads go to the secret one from now on, and the log is
		// published there again from its first entry.
		st, err = p.js.UpdateStream(ctx, auditStreamConfig(p.stream, p.subject))
	}
	if err != nil {
		return false, fmt.Errorf("audit stream %s: %w", p.stream, err)
	}
	head, last, err := lastAuditHead(ctx, st, p.subject)
	if err != nil {
		return false, err
	}
	var pos uint64
	if head != nil {
		pos = head.Seq
	}
	p.published.Store(pos)
	for {
		// The entry last published must still be in the database as it
		// was: new entries are published only onto an unbroken log.
		if head != nil {
			if err := p.matches(ctx, head); err != nil {
				return progressed, err
			}
		}
		es, err := p.store.AuditLog(ctx, pos, 500)
		if err != nil {
			return progressed, err
		}
		if len(es) == 0 {
			select {
			case <-ctx.Done():
				return progressed, ctx.Err()
			case <-p.poke:
			}
			continue
		}
		if head != nil && es[0].PrevHash == "" {
			return progressed, fmt.Errorf("%w: entry %d starts a new log after entry %d was published", errAuditMismatch, es[0].Seq, head.Seq)
		}
		if err := p.publish(ctx, es, last); err != nil {
			return progressed, err
		}
		progressed = true
		last += uint64(len(es))
		e := es[len(es)-1]
		pos, head = e.Seq, &store.AuditHead{Seq: e.Seq, Link: e.Link(), TimeMs: e.TimeMs}
		p.published.Store(pos)
	}
}

// matches checks that the database still holds the published head's entry
// as published.
func (p *auditPublisher) matches(ctx context.Context, head *store.AuditHead) error {
	es, err := p.store.AuditLog(ctx, head.Seq-1, 1)
	if err != nil {
		return err
	}
	if len(es) == 0 || es[0].Seq != head.Seq {
		return fmt.Errorf("%w: entry %d was published, and the database has no such entry (entries removed, or the database restored from an older backup: to accept the loss of entries after a restore, purge stream %s and syncd publishes the log again)",
			errAuditMismatch, head.Seq, p.stream)
	}
	if es[0].Link() != head.Link {
		return fmt.Errorf("%w: entry %d differs from the one published (the log was cut back and written again, or rewritten)", errAuditMismatch, head.Seq)
	}
	return nil
}

// publish publishes es after stream sequence last and waits for every
// acknowledgement; each expects the one before, so a failure fails the
// rest and nothing lands out of order.
func (p *auditPublisher) publish(ctx context.Context, es []store.AuditEntry, last uint64) error {
	futures := make([]jetstream.PubAckFuture, 0, len(es))
	for i, e := range es {
		body, err := json.Marshal(store.AuditHead{Seq: e.Seq, Link: e.Link(), TimeMs: e.TimeMs})
		if err != nil {
			return err
		}
		msg := nats.NewMsg(p.subject)
		msg.Data = body
		msg.Header.Set(domain.HeaderSeq, strconv.FormatUint(e.Seq, 10))
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithExpectLastSequence(last+uint64(i)))
		if err != nil {
			return fmt.Errorf("publish audit entry %d: %w", e.Seq, err)
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish audit entry %d: %w", es[i].Seq, err)
		case <-timeout.C:
			return fmt.Errorf("publish audit entry %d: no acknowledgement within 10s", es[i].Seq)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// AuditPublished is the last audit entry the audit stream acknowledged
// (0 without JetStream, or before the first round).
func (s *Server) AuditPublished() uint64 {
	if s.audit == nil {
		return 0
	}
	return s.audit.published.Load()
}

// CheckAudit verifies the audit log as fieldctl admin audit -verify does,
// with the server's audit key and the last head in the audit stream.
func (s *Server) CheckAudit(ctx context.Context) (store.AuditReport, error) {
	var head *store.AuditHead
	if s.cfg.JetStream != nil {
		var err error
		if head, err = LatestAuditHead(ctx, s.cfg.JetStream, s.store.AuditHeadSubject()); err != nil {
			return store.AuditReport{}, err
		}
	}
	return s.store.CheckAudit(ctx, head)
}
