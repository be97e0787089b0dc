package syncer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// pushBatch is how many queued mutations one sync call carries.
const pushBatch = 500

// maxInlineWait is the longest rate-limit wait Sync sits out itself; a
// longer one ends the sync with a *RetryError (Run then waits it out).
const maxInlineWait = 5 * time.Second

// syncTimeout bounds one sync in Run, so that a link that went dead
// without closing cannot hold the loop.
const syncTimeout = 2 * time.Minute

// Report says what one Sync did.
type Report struct {
	Pushed    int // mutations the server answered
	Applied   int // of which applied (conflicts included)
	Conflicts int // of which met a concurrent change
	Rejected  int // of which refused for good (kept on the device)
	Pulled    int // records received (in full or as echoes)
	Echoed    int // of which came back as an echo: the device's own write, not sent in full
	Purged    int // records removed because they left the user's scope
	Refetched int // buckets read again from the start (the server's retention window passed)
	Calls     int // round trips
	// Files is what the uploads after the sync did (UploadPending): nil
	// if the sync failed. Their failures do not fail the sync (the records
	// went): Files.Err says why files were left.
	Files *UploadReport
}

// RetryError is returned when the server is busy or the device has sent
// too much: the server asked it to wait After before its next call. The
// work stays on the device; Run waits at least After before trying again.
type RetryError struct {
	After  time.Duration // how long the server asked the device to wait
	Reason string        // the server's words
	// Quota says the device (or its user) pushed its daily quota: syncs
	// until After only pull, and the work is pushed after it.
	Quota bool
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("server asked this device to wait %v before syncing again (%s): the work is kept on the device and syncs after that", roundWait(e.After), e.Reason)
}

// roundWait is a wait as people read it: whole seconds, or milliseconds
// below a second (not 22h45m8.165305751s).
func roundWait(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// AfterMillis is After in milliseconds, for apps that cannot use a
// time.Duration (gomobile).
func (e *RetryError) AfterMillis() int64 { return e.After.Milliseconds() }

// RetryAfterMillis is how long, in milliseconds, an error from Sync or
// Enroll asks the app to wait before trying again: a *RetryError's After,
// or 0 for any other error.
func RetryAfterMillis(err error) int64 {
	var re *RetryError
	if errors.As(err, &re) {
		return re.AfterMillis()
	}
	return 0
}

// retryInfo returns the delay of a ResourceExhausted status carrying a
// RetryInfo detail.
func retryInfo(st *status.Status) (time.Duration, bool) {
	if st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().IsValid() {
			return max(ri.GetRetryDelay().AsDuration(), 0), true
		}
	}
	return 0, false
}

// describe turns a gRPC error into one a field officer's IT support can
// act on.
func describe(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if after, ok := retryInfo(st); ok {
		return &RetryError{After: after, Reason: st.Message(), Quota: isQuota(st)}
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("server unreachable (%s): the work is kept on the device and syncs later", st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("server did not answer in time: the work is kept on the device and syncs later")
	}
	return fmt.Errorf("%s: %s", codeWords(st.Code()), st.Message())
}

// codeWords names a status code in words: "failed precondition".
func codeWords(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

func (d *Device) authed(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// Sync pushes every pending mutation and pulls every change in scope,
// page by page, until the server has nothing more. Each page is committed
// locally before the next is asked for, so an interrupted sync resumes
// where it stopped.
//
// Local writes go on during a sync: only syncs exclude each other.
func (d *Device) Sync(ctx context.Context) (*Report, error) {
	rep, err := d.syncRecords(ctx)
	if err == nil && (d.opts.HoldUploads == nil || !d.opts.HoldUploads()) {
		// Records first, files after: the files whose attach this sync
		// (or an earlier one) got applied go up now.
		var ferr error
		rep.Files, ferr = d.UploadPending(ctx)
		if errors.Is(ferr, ErrRevoked) {
			return rep, ferr // wiped meanwhile
		}
	}
	return rep, err
}

// syncRecords is Sync without the uploads.
func (d *Device) syncRecords(ctx context.Context) (*Report, error) {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	rep := &Report{}
	err := d.sync(ctx, rep)
	if errors.Is(err, errKnownAgain) {
		err = d.sync(ctx, rep)
	}
	if err == nil {
		// Acknowledged mutations are kept for a while (numbering.go); what
		// is past that goes. Best effort: the next sync trims again.
		d.db.Update(context.Background(), func(tx *store.RTx) error {
			_, err := tx.TrimAcked(d.opts.Now().Add(-ackedRetention).UnixMilli(), ackedKeep)
			return err
		})
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if !errors.Is(err, ErrRevoked) {
		d.db.Update(context.Background(), func(tx *store.RTx) error { return tx.SetMeta(metaLastErr, msg) })
	}
	return rep, err
}

func (d *Device) sync(ctx context.Context, rep *Report) error {
	var (
		ident   *Identity
		token   string
		queued  []store.OutboxRow
		cursors []*pb.Cursor
		pending int
		acked   uint64
		replica string
		stopped string
		refetch []string
		expect  map[string]*pb.Record
	)
	waits, served, renumbers := 0, 0, 0
	pullOnly := d.quotaHeld != nil && d.opts.Now().Before(d.quotaUntil)
	if err := d.db.Update(ctx, func(tx *store.RTx) error {
		// A database from before replica ids gets one.
		if replica, err := tx.Meta(metaReplica); err != nil || replica != "" {
			return err
		}
		return tx.SetMeta(metaReplica, newReplicaID())
	}); err != nil {
		return err
	}
	for page := 0; ; page++ {
		if err := d.db.View(ctx, func(tx *store.RTx) error {
			var err error
			if ident, err = d.identity(tx); err != nil {
				return err
			}
			if token, err = tx.Meta(metaToken); err != nil {
				return err
			}
			if stopped, err = tx.Meta(metaStopped); err != nil || stopped != "" {
				return err
			}
			if replica, err = tx.Meta(metaReplica); err != nil {
				return err
			}
			next, err := tx.MetaInt(metaNextSeq)
			if err != nil {
				return err
			}
			if acked, err = tx.LastAcked(uint64(next)); err != nil {
				return err
			}
			if queued, err = tx.Outbox(store.OutboxPending, pushBatch); err != nil {
				return err
			}
			if pending, err = tx.CountOutbox(store.OutboxPending); err != nil {
				return err
			}
			if refetch, err = tx.Refetching(); err != nil {
				return err
			}
			if cursors, err = tx.Cursors(); err != nil {
				return err
			}
			expect = nil
			if !pullOnly {
				expect, err = expected(tx, ident, queued)
			}
			return err
		}); err != nil {
			return err
		}
		d.mu.Lock()
		conn, err := d.dial(ident.Server, ident.CAFingerprint)
		d.mu.Unlock()
		if err != nil {
			return err
		}
		if err := d.ready(ctx, conn); err != nil {
			return err
		}
		if stopped != "" {
			return d.probeStopped(ctx, conn, token, stopped)
		}
		if pullOnly {
			queued = nil // over a daily quota: the work waits on the device
		}
		// The app's version once per connection (the server keeps it), and
		// back only the cursors that moved: what a one-visit sync repeats.
		appVersion := d.opts.AppVersion
		if d.versionSentOn == conn {
			appVersion = ""
		}
		req := &pb.SyncRequest{Cursors: cursors, PageSize: int32(d.opts.PageSize), AppVersion: appVersion,
			PendingCount: uint32(pending - len(queued)), ChangedCursorsOnly: true, LastAckedSeq: acked, ReplicaId: replica,
			RefetchingBuckets: refetch, CanRefetch: true}
		for _, q := range queued {
			req.Mutations = append(req.Mutations, q.Mutation)
		}
		if len(expect) > 0 {
			// Each expected record's hash rides on its last mutation
			// (clones: the outbox's stay as they are).
			req.Mutations = domain.WithExpectHashes(req.Mutations, expect)
		}
		sent := d.opts.Now()
		resp, err := pb.NewSyncServiceClient(conn).Sync(d.authed(ctx, token), req)
		rep.Calls++
		if err != nil {
			if isRevoked(err) {
				return d.wipe()
			}
			if isCloned(err) {
				if serr := d.db.Update(context.Background(), func(tx *store.RTx) error { return stopCloned(tx, err, d.opts.Now()) }); serr != nil {
					return fmt.Errorf("%w; and marking it stopped failed: %v", ErrCloned, serr)
				}
				return ErrCloned
			}
			if isUnknownDevice(err) {
				if serr := d.db.Update(context.Background(), func(tx *store.RTx) error { return stopUnknown(tx, err, d.opts.Now()) }); serr != nil {
					return fmt.Errorf("%w; and marking it stopped failed: %v", ErrUnknownDevice, serr)
				}
				return ErrUnknownDevice
			}
			err = describe(err)
			var qe *RetryError
			if errors.As(err, &qe) && qe.Quota && !pullOnly {
				// Over a daily quota: the push waits on the device until
				// the quota day ends; pull now what the others wrote.
				d.quotaHeld, d.quotaUntil, pullOnly = qe, d.opts.Now().Add(qe.After), true
				continue
			}
			// A short wait the server asks for in the middle of a sync
			// that is getting through (a large first sync meets the rate
			// limit) is waited out here; a refusal of the first call is
			// the caller's to wait out.
			var re *RetryError
			if errors.As(err, &re) && served > 0 && re.After <= maxInlineWait && waits < 100 {
				waits++
				select {
				case <-ctx.Done():
					return err
				case <-time.After(re.After):
				}
				continue
			}
			return err
		}
		d.versionSentOn = conn
		if resp.GetChangedCursorsOnly() { // an older server lists the whole scope
			resp.Cursors, resp.LeftBuckets = wholeScope(cursors, resp), nil
		}
		purged := rep.Purged
		again := false
		if err := d.db.Update(ctx, func(tx *store.RTx) error {
			var err error
			if again, err = d.adopt(tx, ident, resp, sent, rep, expect); err != nil {
				return err
			}
			if d.crash("adopt") {
				return ErrCrashed
			}
			return nil
		}); err != nil {
			if errors.Is(err, ErrCrashed) {
				return err
			}
			return fmt.Errorf("store sync result: %w", err)
		}
		served++
		if rep.Purged > purged {
			// Purged records are zeroed in the file (secure_delete); fold
			// the log in too, so no copy stays in the -wal file. Best
			// effort: a busy reader leaves it to the next sync.
			d.db.Checkpoint(ctx)
		}
		if again {
			// The numbering was set right, or the cursors reset: send the
			// renumbered work and read again in the next call.
			if renumbers++; renumbers > maxRenumbers {
				return fmt.Errorf("the server said %d times in one sync that this device's numbering disagrees with its own (last %d): the work is kept on the device; report this to IT support", renumbers, resp.GetLastSeq())
			}
			continue
		}
		// A server answers fewer mutations than were sent when the rest is
		// over a daily quota: the next call sends the rest, and learns
		// how long it waits.
		short := len(resp.GetResults()) > 0 && len(resp.GetResults()) < len(queued)
		if !resp.GetMore() && (pullOnly || (len(queued) == pending && !short)) {
			if pullOnly && pending > 0 {
				return d.quotaWait()
			}
			return nil
		}
		if page > 100000 {
			return errors.New("sync did not finish after 100000 pages")
		}
	}
}

// isRevoked reports whether a call was refused because the device is
// revoked.
func isRevoked(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.PermissionDenied && strings.HasPrefix(st.Message(), "device revoked")
}

// wipe removes everything from a revoked device and returns ErrRevoked.
func (d *Device) wipe() error {
	if werr := d.db.Update(context.Background(), func(tx *store.RTx) error { return tx.Wipe() }); werr != nil {
		return fmt.Errorf("revoked, and wiping failed: %w", werr)
	}
	// Out of the write-ahead log too, not only the main file.
	d.db.Checkpoint(context.Background())
	return ErrRevoked
}

// probeStopped is the only call a copy stopped as a clone still makes: it
// sends nothing and says nothing of its numbering or replica id (so it
// changes nothing on the server, even one restored from before replica
// ids) and reads at most one record, which it drops. It is there so that a
// revoked device's stopped copy (a phone sold or stolen) is wiped at its
// next contact like any other copy. The copy stays stopped: ErrCloned.
// A device stopped as unknown to the server stays stopped too:
// ErrUnknownDevice.
func (d *Device) probeStopped(ctx context.Context, conn *grpc.ClientConn, token, stopped string) error {
	_, err := pb.NewSyncServiceClient(conn).Sync(d.authed(ctx, token), &pb.SyncRequest{PageSize: 1, ChangedCursorsOnly: true})
	if isRevoked(err) {
		return d.wipe()
	}
	if stopped == stoppedUnknown {
		if err == nil {
			// The server knows the device again (it was a database that
			// did not know it for a while: a standby started before its
			// restore, a wrong restore point put right): go on as before.
			if uerr := d.db.Update(context.Background(), func(tx *store.RTx) error {
				if err := tx.SetMeta(metaStopped, ""); err != nil {
					return err
				}
				return tx.SetMeta(metaNotice, "")
			}); uerr != nil {
				return uerr
			}
			return errKnownAgain
		}
		return ErrUnknownDevice
	}
	return ErrCloned
}

// errKnownAgain: a device stopped as unknown to the server found it knows
// it again; Sync starts over at once.
var errKnownAgain = errors.New("syncer: the server knows this device again")

// wholeScope turns the cursors of an answer to a changed_cursors_only
// request into the device's whole scope: the cursors it sent, less the
// buckets that left, with the answer's moved and new ones, by bucket.
func wholeScope(sent []*pb.Cursor, resp *pb.SyncResponse) []*pb.Cursor {
	by := make(map[string]*pb.Cursor, len(sent)+len(resp.GetCursors()))
	for _, c := range sent {
		by[c.GetBucket()] = c
	}
	for _, b := range resp.GetLeftBuckets() {
		delete(by, b)
	}
	for _, c := range resp.GetCursors() {
		by[c.GetBucket()] = c
	}
	out := make([]*pb.Cursor, 0, len(by))
	for _, b := range slices.Sorted(maps.Keys(by)) {
		out = append(out, by[b])
	}
	return out
}

// expected computes, for each record the queued mutations write, the
// record as the server will hold it after them when nothing else changed
// it (domain.Expect, from the device's bases). The sync sends their
// hashes, each on the record's last mutation (Mutation.expect_hash,
// domain.WithExpectHashes); an answer that echoes one makes it the base
// (adopt).
func expected(tx *store.RTx, ident *Identity, queued []store.OutboxRow) (map[string]*pb.Record, error) {
	if len(queued) == 0 {
		return nil, nil
	}
	role, _ := domain.ParseRole(ident.Role)
	muts := make([]*pb.Mutation, len(queued))
	for i, q := range queued {
		muts[i] = q.Mutation
	}
	return domain.Expect(muts, func(id string) (*pb.Record, error) {
		lr, err := tx.Record(id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return lr.Base, nil
	}, domain.Actor{UserID: ident.UserID, DeviceID: ident.DeviceID, Role: role})
}

// adopt commits one sync answer: results, numbering, records, echoes,
// cursors, purges and the clock offset, in one local transaction. It
// reports whether the device must call again at once: its work was
// renumbered (its numbering or the server's went back) or its cursors
// reset (the server's lineage changed). expect holds the records the
// request sent a hash for (expected): an echo of one makes it the base,
// at the echo's version, in its buckets, stamped with its time.
func (d *Device) adopt(tx *store.RTx, ident *Identity, resp *pb.SyncResponse, sent time.Time, rep *Report, expect map[string]*pb.Record) (bool, error) {
	touched := map[string]bool{}
	nowMs := d.opts.Now().UnixMilli()
	purgedBefore := rep.Purged
	for _, r := range resp.GetResults() {
		rep.Pushed++
		touched[r.GetRecordId()] = true
		switch r.GetStatus() {
		case pb.MutationStatus_MUTATION_STATUS_REJECTED:
			rep.Rejected++
			if err := tx.RejectOutbox(r.GetSeq(), r.GetCode(), r.GetField(), r.GetReason()); err != nil {
				return false, err
			}
		default:
			rep.Applied++
			if r.GetStatus() == pb.MutationStatus_MUTATION_STATUS_CONFLICT {
				rep.Conflicts++
			}
			if err := tx.AckOutbox(r.GetSeq(), nowMs); err != nil {
				return false, err
			}
		}
	}
	renumbered, reset, err := adoptNumbering(tx, resp, d.opts.Now(), touched)
	if err != nil {
		return false, err
	}
	relined, err := adoptLineage(tx, resp)
	if err != nil {
		return false, err
	}
	if relined {
		// The server was restored from a backup: it may lack files this
		// device uploaded; each is offered again (the upload's start says
		// what the server holds).
		if _, err := tx.ReofferFiles(); err != nil {
			return false, err
		}
	}
	// A bucket the server reads again from the start (this device's
	// cursor was older than its retention window): what the device holds
	// there is stale until sent again; what is still stale at the end
	// (more = false) left the bucket.
	for _, b := range resp.GetRefetchBuckets() {
		rep.Refetched++
		if err := tx.BeginRefetch(b); err != nil {
			return false, err
		}
	}
	records := resp.GetRecords()
	for _, e := range resp.GetEchoes() {
		c := expect[e.GetRecordId()]
		if c == nil || c.GetKind() != e.GetKind() {
			// The server echoed a record this call did not expect: the
			// answer cannot be taken (nothing of it is kept), the next
			// sync asks again.
			return false, fmt.Errorf("the server echoed record %s (%s), which this sync did not send a hash for: answer not taken, sync again", e.GetRecordId(), domain.KindName(e.GetKind()))
		}
		rec := proto.Clone(c).(*pb.Record)
		rec.Version, rec.Buckets = e.GetVersion(), e.GetBuckets()
		domain.Restamp(rec, e.GetAtMs())
		records = append(records, rec)
		rep.Echoed++
	}
	var newest domain.HLC
	for _, rec := range records {
		rep.Pulled++
		if err := tx.Freshen(rec.GetId()); err != nil {
			return false, err
		}
		lr, err := tx.Record(rec.GetId())
		if errors.Is(err, store.ErrNotFound) {
			lr, err = &store.LocalRecord{}, nil
		}
		if err != nil {
			return false, err
		}
		lr.Base, lr.Local = rec, rec
		if err := tx.PutRecord(lr); err != nil {
			return false, err
		}
		touched[rec.GetId()] = true
		for _, f := range rec.GetFields() {
			if h, err := domain.ParseHLC(f.GetHlc()); err == nil && h.Compare(newest) > 0 {
				newest = h
			}
		}
	}
	if !resp.GetMore() {
		if _, err := tx.EndRefetch(); err != nil {
			return false, err
		}
	}
	gone, err := tx.SetCursors(resp.GetCursors())
	if err != nil {
		return false, err
	}
	if reset || relined {
		if err := tx.ResetCursors(); err != nil {
			return false, err
		}
	}
	for _, id := range gone {
		// Its acknowledged mutations carry the record's data: they leave
		// with it, even where the user's unsent work on it stays.
		if err := tx.DeleteAckedFor(id); err != nil {
			return false, err
		}
		queued, err := tx.OutboxFor(id)
		if err != nil {
			return false, err
		}
		if len(queued) > 0 { // keep the user's own unsent work; drop the server's copy
			lr, err := tx.Record(id)
			if err != nil {
				return false, err
			}
			lr.Base = nil
			if err := tx.PutRecord(lr); err != nil {
				return false, err
			}
			touched[id] = true
			continue
		}
		rep.Purged++
		delete(touched, id)
		if err := tx.DeleteRecord(id); err != nil {
			return false, err
		}
	}
	if rep.Purged > purgedBefore {
		// The purged records' files go with them, unless another record
		// here names them.
		if _, err := sweepFiles(tx); err != nil {
			return false, err
		}
	}
	if !reset && !relined && !resp.GetMore() {
		if err := endReread(tx); err != nil {
			return false, err
		}
	}
	for id := range touched {
		if err := d.recompute(tx, ident, id); err != nil {
			return false, err
		}
	}
	// The phone's clock may be hours or days off: keep the offset to the
	// server's, measured at the middle of the round trip.
	now := d.opts.Now()
	mid := sent.Add(now.Sub(sent) / 2)
	offset := time.UnixMilli(resp.GetServerTimeMs()).Sub(mid)
	d.clock.SetOffset(offset)
	// A clock that ran ahead comes back to the server's time (within
	// domain.MaxFutureSkew), but only with nothing of its own unacknowledged:
	// see domain.Clock.Resync.
	if n, err := tx.CountOutbox(store.OutboxPending); err != nil {
		return false, err
	} else if n == 0 && resp.GetServerTimeMs() > 0 {
		d.clock.Resync(time.UnixMilli(resp.GetServerTimeMs()))
	}
	if !newest.IsZero() {
		d.clock.Observe(newest)
	}
	meta := map[string]string{metaOffset: itoa(offset.Milliseconds()), metaLastSync: itoa(now.UnixMilli()),
		metaRole: domain.RoleName(resp.GetRole()), metaVillage: resp.GetVillageId()}
	if last := d.clock.Last(); !last.IsZero() { // a clock that has read nothing yet has nothing to keep
		meta[metaHLC] = last.String()
	}
	for k, v := range meta {
		if err := tx.SetMeta(k, v); err != nil {
			return false, err
		}
	}
	return renumbered || reset || relined, nil
}

// Run syncs in the background until ctx ends: at once, after every local
// write, when the server pokes, and every interval otherwise; after a
// failure it backs off exponentially (with jitter) up to maxBackoff. When
// the server asks the device to wait (a *RetryError), it waits at least
// that long, local writes and pokes notwithstanding. It returns ErrRevoked
// if the device is cut off, ErrCloned if this copy of its database was
// stopped as a clone, otherwise nil when ctx ends.
func (d *Device) Run(ctx context.Context, interval time.Duration) error {
	const maxBackoff = 5 * time.Minute
	backoff := time.Second
	pokes := make(chan struct{}, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go d.watch(watchCtx, pokes)
	for {
		sctx, cancel := context.WithTimeout(ctx, syncTimeout)
		_, err := d.Sync(sctx)
		cancel()
		wait := interval
		var retry *RetryError
		switch {
		case errors.Is(err, ErrRevoked) || errors.Is(err, ErrNotEnrolled) || errors.Is(err, ErrCloned) || errors.Is(err, ErrUnknownDevice):
			return err
		case errors.As(err, &retry) && retry.Quota:
			// Over a daily quota: syncs go on as usual but only pull (sync
			// holds the push back until the quota day ends).
			wait = min(interval, max(retry.After, minRetryWait))
			backoff, retry = time.Second, nil
		case errors.As(err, &retry):
			// The server is there and said when: wait that long, plus up to
			// a tenth more so that a user's devices do not come back
			// together, instead of the usual backoff.
			wait = max(retry.After, minRetryWait)
			wait += rand.N(wait/10 + 1)
			backoff = time.Second
		case err != nil:
			wait = backoff/2 + rand.N(backoff/2+1)
			backoff = min(backoff*2, maxBackoff)
		default:
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		if retry != nil {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			// The sync that follows covers the writes and pokes that came
			// during the wait.
			drain(d.wake)
			drain(pokes)
			continue
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-d.wake:
			t.Stop()
		case <-pokes:
			t.Stop()
		}
	}
}

// minRetryWait is the least Run waits when the server asks it to wait.
const minRetryWait = 50 * time.Millisecond

// drain empties a one-slot signal channel.
func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// watch keeps a poke stream open while connected, reconnecting with
// backoff.
func (d *Device) watch(ctx context.Context, pokes chan<- struct{}) {
	backoff := time.Second
	for ctx.Err() == nil {
		id, err := d.Identity()
		if err != nil {
			return
		}
		var token string
		d.db.View(ctx, func(tx *store.RTx) error { token, err = tx.Meta(metaToken); return err })
		d.mu.Lock()
		conn, err := d.dial(id.Server, id.CAFingerprint)
		d.mu.Unlock()
		if err == nil {
			var stream grpc.ServerStreamingClient[pb.WatchResponse]
			stream, err = pb.NewSyncServiceClient(conn).Watch(d.authed(ctx, token), &pb.WatchRequest{})
			for err == nil {
				if _, err = stream.Recv(); err == nil {
					backoff = time.Second
					select {
					case pokes <- struct{}{}:
					default:
					}
				}
			}
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if st, ok := status.FromError(err); ok {
			if after, ok := retryInfo(st); ok {
				wait = max(wait, after)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Minute)
	}
}
