package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Default limits of the changelog stream (syncd -changelog-max-age,
// -changelog-max-bytes).
//
// Age: none. HQ builds its read models from the changelog, and a consumer
// that reloads from the start (a new lineage, a lost consumer) needs every
// change still there; a city's year is 1.3-2.6 million visits, a few GiB
// (DOMAIN.md), so keeping everything costs little. Bytes: 48 GiB, below
// the embedded JetStream's 64 GiB store (-nats-max-store), so that the
// oldest changes are dropped before the store is full and refuses the
// relay: with DiscardOld a full stream never blocks the relay.
const (
	DefaultChangelogMaxAge   time.Duration = 0
	DefaultChangelogMaxBytes int64         = 48 << 30
)

// StreamLimits are the changelog stream's retention limits. A stream that
// exists keeps the limits it has (an operator may change them with natscli,
// nats stream edit) except those Set: syncd applies those, given on its
// command line, once when it starts. A new stream gets MaxAge and MaxBytes.
type StreamLimits struct {
	MaxAge   time.Duration // 0: no age limit
	MaxBytes int64         // 0: DefaultChangelogMaxBytes; -1: no limit
	// Replicas is how many JetStream servers of a cluster keep the stream
	// (0: 1; at most MaxReplicas).
	Replicas int
	// SetMaxAge, SetMaxBytes, SetReplicas: given explicitly (a flag on
	// the command line): applied to an existing stream too.
	SetMaxAge, SetMaxBytes, SetReplicas bool
}

// MaxReplicas is the most replicas JetStream keeps of a stream.
const MaxReplicas = 5

func (l StreamLimits) replicas() int { return max(l.Replicas, 1) }

func (l StreamLimits) maxAge() time.Duration { return l.MaxAge }

func (l StreamLimits) maxBytes() int64 {
	if l.MaxBytes == 0 {
		return DefaultChangelogMaxBytes
	}
	return l.MaxBytes
}

// enforceStream sets on cfg what the relay's correctness needs, whatever
// an operator set, and says whether it changed anything: the subjects,
// file storage, limits retention (an interest or work-queue stream would
// drop changes HQ has not read), the duplicate window, DiscardOld (a full
// stream drops its oldest changes and never refuses the relay's next one),
// no per-subject limit and no message size limit (either would remove or
// refuse changes in the middle, which the relay takes for damage and
// rebuilds, for ever), and no seal, no rollup, no deny-delete (the relay
// deletes the stream to rebuild it).
func enforceStream(cfg *jetstream.StreamConfig, region string) (changed bool) {
	want := StreamConfigFor(region)
	set := func(ok bool, fix func()) {
		if !ok {
			fix()
			changed = true
		}
	}
	set(len(cfg.Subjects) == 1 && cfg.Subjects[0] == want.Subjects[0], func() { cfg.Subjects = want.Subjects })
	set(cfg.Storage == want.Storage, func() { cfg.Storage = want.Storage })
	set(cfg.Retention == want.Retention, func() { cfg.Retention = want.Retention })
	set(cfg.Duplicates == want.Duplicates, func() { cfg.Duplicates = want.Duplicates })
	set(cfg.Discard == want.Discard, func() { cfg.Discard = want.Discard })
	set(cfg.MaxMsgsPerSubject <= 0, func() { cfg.MaxMsgsPerSubject = -1 })
	set(cfg.MaxMsgSize <= 0, func() { cfg.MaxMsgSize = -1 })
	set(!cfg.Sealed && !cfg.AllowRollup && !cfg.DenyDelete && !cfg.DenyPurge && !cfg.NoAck,
		func() {
			cfg.Sealed, cfg.AllowRollup, cfg.DenyDelete, cfg.DenyPurge, cfg.NoAck = false, false, false, false, false
		})
	return changed
}

// ensureStream creates the changelog stream, or brings the existing one
// to what correctness needs (enforceStream) and, with explicit, to the
// limits given explicitly; the other limits are left as they are. A stream
// the relay creates again after deleting it (a rebuild) gets the limits
// the deleted one had.
func (r *Relay) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	explicit := !r.limitsApplied.Load()
	// A stream made now starts at the database's first change: older
	// ones left the changes table with the retention window (the stream
	// had them; a rebuild cannot).
	first, err := r.store.FirstChange(ctx)
	if err != nil {
		return nil, &dbError{fmt.Errorf("read the first change: %w", err)}
	}
	st, err := ensureStream(ctx, r.js, r.region, r.limits, explicit, r.lastConfig.Load(), first)
	if err != nil {
		return nil, err
	}
	cfg := st.CachedInfo().Config
	r.lastConfig.Store(&cfg)
	r.limitsApplied.Store(true)
	return st, nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, region string, lim StreamLimits, explicit bool, prev *jetstream.StreamConfig, firstSeq uint64) (jetstream.Stream, error) {
	name := domain.RegionStream(region)
	st, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		cfg := StreamConfigFor(region)
		cfg.MaxAge, cfg.MaxBytes, cfg.Replicas = lim.maxAge(), lim.maxBytes(), lim.replicas()
		if firstSeq > 1 {
			cfg.FirstSeq = firstSeq // message n is still change n
		}
		if prev != nil { // recreated: keep what it had
			cfg.MaxAge, cfg.MaxBytes, cfg.MaxMsgs, cfg.Replicas = prev.MaxAge, prev.MaxBytes, prev.MaxMsgs, max(prev.Replicas, 1)
			if explicit && lim.SetMaxAge {
				cfg.MaxAge = lim.maxAge()
			}
			if explicit && lim.SetMaxBytes {
				cfg.MaxBytes = lim.maxBytes()
			}
			if explicit && lim.SetReplicas {
				cfg.Replicas = lim.replicas()
			}
		}
		st, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = js.Stream(ctx, name) // created meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("create stream %s: %w%s", name, err, createHint(err, cfg))
		}
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	cfg := st.CachedInfo().Config
	changed := enforceStream(&cfg, region)
	if explicit && lim.SetMaxAge && cfg.MaxAge != lim.maxAge() {
		cfg.MaxAge, changed = lim.maxAge(), true
	}
	if explicit && lim.SetMaxBytes && cfg.MaxBytes != lim.maxBytes() {
		cfg.MaxBytes, changed = lim.maxBytes(), true
	}
	if explicit && lim.SetReplicas && max(cfg.Replicas, 1) != lim.replicas() {
		cfg.Replicas, changed = lim.replicas(), true
	}
	if !changed {
		return st, nil
	}
	if st, err = js.UpdateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("update stream %s to the settings the relay needs: %w%s (if its storage is not file, delete it: nats stream rm %s -f, and syncd rebuilds it)", name, err, createHint(err, cfg), name)
	}
	return st, nil
}

// createHint explains a refusal of a stream's settings: more replicas
// than the JetStream servers that can hold them, or more bytes than the
// store has left (each stream reserves its MaxBytes: on one JetStream,
// every region's stream does).
func createHint(err error, cfg jetstream.StreamConfig) string {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return ""
	}
	d := strings.ToLower(apiErr.Description)
	switch {
	case strings.Contains(d, "overlap"):
		return fmt.Sprintf(" (another stream of the account takes subjects overlapping %s, such as %s of a syncd without -region, which takes all of %s.>: a syncd without a region cannot share a JetStream account with regions; give it its own, or run it with -region on a new data directory; an empty %s left from a start before -region was given can go: nats stream rm %s -f)",
			strings.Join(cfg.Subjects, ","), domain.StreamName, domain.SubjectPrefix, domain.StreamName, domain.StreamName)
	case cfg.Replicas > 1 && (strings.Contains(d, "replica") || strings.Contains(d, "peers")):
		return fmt.Sprintf(" (-changelog-replicas %d needs a JetStream cluster of at least %d servers: see syncd nats -h)", cfg.Replicas, cfg.Replicas)
	case strings.Contains(d, "insufficient resources") || strings.Contains(d, "storage") || strings.Contains(d, "exceed"):
		h := fmt.Sprintf(" (the stream reserves its -changelog-max-bytes, %s, of the JetStream store, and so does every region's stream on it: lower -changelog-max-bytes, or raise the store: max_file_store in the nats-server config, -nats-max-store for the embedded one", ByteSize(max(cfg.MaxBytes, 0)))
		if cfg.Replicas > 1 {
			h += fmt.Sprintf("; and -changelog-replicas %d needs %d JetStream servers up", cfg.Replicas, cfg.Replicas)
		}
		return h + ")"
	}
	return ""
}

// StreamSettings is the changelog stream's configuration as last created,
// updated or read by the relay (nil before its first round).
func (r *Relay) StreamSettings() *jetstream.StreamConfig { return r.lastConfig.Load() }

// DescribeStream says in one line what an operator needs to know of the
// changelog stream's settings.
func DescribeStream(cfg *jetstream.StreamConfig) string {
	if cfg == nil {
		return "stream: not reached yet"
	}
	age := "no age limit"
	if cfg.MaxAge > 0 {
		age = "max age " + cfg.MaxAge.String()
	}
	size := "no size limit"
	if cfg.MaxBytes > 0 {
		size = "max " + ByteSize(cfg.MaxBytes).String()
		if ByteSize(cfg.MaxBytes).String() == "" {
			size = fmt.Sprintf("max %d bytes", cfg.MaxBytes)
		}
	}
	msgs := ""
	if cfg.MaxMsgs > 0 {
		msgs = fmt.Sprintf(", max %d messages", cfg.MaxMsgs)
	}
	discard := "old"
	if cfg.Discard == jetstream.DiscardNew {
		discard = "new"
	}
	replicas := "" // one copy: said only when more
	if cfg.Replicas > 1 {
		replicas = fmt.Sprintf(", %d replicas", cfg.Replicas)
	}
	return fmt.Sprintf("stream %s: subjects %s, %s storage%s, %s retention, %s, %s%s, discard %s, duplicate window %s",
		cfg.Name, strings.Join(cfg.Subjects, ","), strings.ToLower(cfg.Storage.String()), replicas, strings.ToLower(cfg.Retention.String()), age, size, msgs, discard, cfg.Duplicates)
}

// trimmedByLimits says whether the stream's head up to message seq (gone)
// can have been removed by the stream's own limits rather than by a
// person: the stream is at its size or count limit, or change seq was
// committed longer ago than the age limit.
func (r *Relay) trimmedByLimits(ctx context.Context, info *jetstream.StreamInfo, seq uint64) (bool, error) {
	cfg, s := info.Config, info.State
	if cfg.MaxMsgs > 0 && s.Msgs >= uint64(cfg.MaxMsgs) {
		return true, nil
	}
	if cfg.MaxBytes > 0 {
		// A trim keeps the stream just under its limit: within a message
		// (at most 1 MiB, the NATS payload limit, and its headers).
		slack := min(uint64(cfg.MaxBytes)/2, 1<<20+4096)
		if s.Bytes+slack >= uint64(cfg.MaxBytes) {
			return true, nil
		}
	}
	if cfg.MaxAge > 0 && seq > 0 {
		rows, err := r.store.ChangesAfter(ctx, seq-1, 1)
		if err != nil {
			return false, &dbError{fmt.Errorf("read change %d: %w", seq, err)}
		}
		if len(rows) == 0 || rows[0].Seq != seq {
			return false, nil
		}
		var c pb.Change
		if err := proto.Unmarshal(rows[0].Body, &c); err != nil {
			return false, fmt.Errorf("change %d: %w", seq, err)
		}
		if time.Since(time.UnixMilli(c.GetCommittedMs())) > cfg.MaxAge {
			return true, nil
		}
	}
	return false, nil
}
