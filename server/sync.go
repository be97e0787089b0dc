package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

type syncService struct {
	pb.UnimplementedSyncServiceServer
	s *Server
}

// errCloned refuses a call from a second copy of a device's database that
// syncs with the same credential (a cloned phone).
type errCloned struct{ got, want string }

func (e errCloned) Error() string {
	return fmt.Sprintf("replica_id: %s, but this device syncs as %s", e.got, e.want)
}

// ClonedReason is the ErrorInfo reason of the refusal of a cloned phone.
const ClonedReason = "DEVICE_CLONED"

// UnknownDeviceReason is the ErrorInfo reason of a device credential the
// server does not know (UNAUTHENTICATED): the phone stops and keeps its
// work until enrolled again (syncer.ErrUnknownDevice).
const UnknownDeviceReason = "DEVICE_UNKNOWN"

var errRevoked = errors.New(ErrRevokedMessage)

// errRevokedStatus is the answer to every call of a revoked device.
func errRevokedStatus() error {
	return status.Error(codes.PermissionDenied, ErrRevokedMessage+": this device was cut off by an administrator; its local data is wiped")
}

// Sync applies the device's mutations, then answers with their results and
// every change in its scope after its cursors, its own writes included.
func (x *syncService) Sync(ctx context.Context, req *pb.SyncRequest) (*pb.SyncResponse, error) {
	s, c := x.s, callerFrom(ctx)
	if err := checkSyncRequest(req); err != nil {
		return nil, err
	}
	pageSize := int(req.GetPageSize())
	if pageSize == 0 {
		pageSize = DefaultPageSize
	}
	var out pushed
	var err error
	// A call that pushes nothing (the pages of a large pull, a poll) writes
	// nothing but the device's last contact: that fsync'd write is made at
	// most once a minute per device, or when the app's version or its
	// pending count is new, or when its numbering or replica disagree with
	// the server's (read first).
	write := len(req.GetMutations()) > 0 || s.newVersion(c.deviceID, req.GetAppVersion()) || s.newPending(c.deviceID, req.GetPendingCount()) || s.touchDue(c.deviceID)
	if !write && req.GetReplicaId() != "" { // an older device says nothing to check
		last, replica, rerr := s.store.DeviceNumbering(ctx, c.deviceID)
		switch {
		case rerr != nil:
			write = true // the writer's read says what is wrong
		case req.GetReplicaId() != replica || req.GetLastAckedSeq() != last:
			write = true
		default:
			out.lastSeq = last
		}
	}
	if write {
		err = s.store.Write(ctx, func(tx *store.Tx) error {
			var err error
			out, err = s.applyPush(tx, c, req)
			return err
		})
		if err == nil && req.GetAppVersion() != "" {
			s.versions.Store(c.deviceID, req.GetAppVersion())
		}
		if err == nil {
			s.pendings.Store(c.deviceID, req.GetPendingCount())
		}
		if err == nil {
			s.logNumbering(c, req, out)
			s.metrics.countMutations(out.results[len(out.results)-out.fresh:])
		}
		if err == nil && out.quota != nil && out.quota.held > 0 {
			s.quotaRefused(c, out.quota)
			if out.quota.applied == 0 && out.numbering == pb.Numbering_NUMBERING_UNSPECIFIED {
				// Nothing fitted: refused like a rate limit, with the wait.
				// (Part of a push that fits is applied and answered; the
				// device's next call, with the rest, ends here.)
				return nil, out.quota.status(s.quota.now())
			}
		}
	}
	var cloned errCloned
	switch {
	case errors.As(err, &cloned):
		s.log.Warn("cloned device refused: a second copy of its database syncs with the same credential",
			"device", c.deviceID, "replica", cloned.got, "current_replica", cloned.want, "last_acked_seq", req.GetLastAckedSeq())
		st, _ := status.New(codes.FailedPrecondition, cloned.Error()+": another copy of this phone's database syncs with the same credential; "+
			"this copy is stopped; its unsent work is kept; re-enroll this phone with a new code to send it").
			WithDetails(&errdetails.ErrorInfo{Reason: ClonedReason, Domain: "fieldsync.v1", Metadata: map[string]string{"device_id": c.deviceID}})
		return nil, st.Err()
	case errors.Is(err, errRevoked):
		return nil, errRevokedStatus()
	case isDiskFull(err):
		return nil, s.diskFull("sync push", diskFullSync, err)
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "store the mutations: %v; nothing was applied, retry", err)
	}
	if f := betweenPushAndPull.Load(); f != nil {
		(*f)()
	}
	scope, err := s.scope(ctx, c)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "compute scope: %v", err)
	}
	s.hub.rescope(c.deviceID, scope)
	echo := newEchoer(req, out.atMs)
	resp, sent, err := s.pull(ctx, scope, req.GetCursors(), pageSize, req.GetChangedCursorsOnly(), req.GetCanRefetch(), req.GetRefetchingBuckets(), echo)
	if err == nil {
		err = s.addOwnWrites(ctx, resp, sent, scope, out.results, echo)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read changes: %v; mutations were applied, retry to pull", err)
	}
	resp.Results = out.results
	resp.LastSeq, resp.Numbering, resp.ReplicaId, resp.Lineage = out.lastSeq, out.numbering, out.replicaID, s.store.Instance()
	resp.ChainHead = out.chainHead
	resp.ServerTimeMs = time.Now().UnixMilli()
	resp.UserId, resp.Role, resp.VillageId = c.userID, c.role, c.villageID
	return resp, nil
}

func checkSyncRequest(req *pb.SyncRequest) error {
	if n := len(req.GetMutations()); n > MaxMutationsPerSync {
		return status.Errorf(codes.InvalidArgument, "mutations: %d in one call, at most %d: send the rest in the next call", n, MaxMutationsPerSync)
	}
	if n := len(req.GetCursors()); n > MaxCursors {
		return status.Errorf(codes.InvalidArgument, "cursors: %d, at most %d", n, MaxCursors)
	}
	if p := req.GetPageSize(); p < 0 || p > MaxPageSize {
		return status.Errorf(codes.InvalidArgument, "page_size: %d, want 0 (default %d) to %d", p, DefaultPageSize, MaxPageSize)
	}
	if err := domain.CheckDisplayText("app_version", req.GetAppVersion(), 64); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	for i, m := range req.GetMutations() {
		if m.GetSeq() == 0 {
			return status.Errorf(codes.InvalidArgument, "mutations[%d].seq: 0; a device numbers its mutations from 1", i)
		}
		if i > 0 && m.GetSeq() != req.GetMutations()[i-1].GetSeq()+1 {
			return status.Errorf(codes.InvalidArgument, "mutations[%d].seq: %d follows %d; mutations must be consecutive", i, m.GetSeq(), req.GetMutations()[i-1].GetSeq())
		}
	}
	for i, cur := range req.GetCursors() {
		if len(cur.GetBucket()) > 80 {
			return status.Errorf(codes.InvalidArgument, "cursors[%d].bucket: at most 80 bytes", i)
		}
	}
	// A device sends a hash for each record its mutations write, on the
	// record's last mutation (expect_hash: domain.EchoHash, 16 bytes), or,
	// an older device, beside them (expected: the record id and the whole
	// SHA-256, 32 bytes), at most one per mutation.
	for i, m := range req.GetMutations() {
		if n := len(m.GetExpectHash()); n != 0 && n != domain.EchoHashSize {
			return status.Errorf(codes.InvalidArgument, "mutations[%d].expect_hash: %d bytes, want %d (domain.EchoHash) or none", i, n, domain.EchoHashSize)
		}
	}
	if n := len(req.GetExpected()); n > len(req.GetMutations()) {
		return status.Errorf(codes.InvalidArgument, "expected: %d record hashes for %d mutations; at most one per mutation", n, len(req.GetMutations()))
	}
	for i, e := range req.GetExpected() {
		if n := len(e.GetRecordId()); n == 0 || n > 80 {
			return status.Errorf(codes.InvalidArgument, "expected[%d].record_id: %d bytes, want 1 to 80", i, n)
		}
		if n := len(e.GetHash()); n != sha256.Size {
			return status.Errorf(codes.InvalidArgument, "expected[%d].hash: %d bytes, want %d (SHA-256; the older form of mutations[].expect_hash)", i, n, sha256.Size)
		}
	}
	return nil
}

// pushed is what applyPush did.
type pushed struct {
	results   []*pb.MutationResult
	lastSeq   uint64       // the device's last answered number, after the push
	numbering pb.Numbering // set when the device's numbering and the server's disagree
	replicaID string       // the device's new replica id (with NUMBERING_DEVICE_BEHIND)
	restored  bool         // the restored copy took its new replica id in this call
	relost    bool         // the server went back and took the device's replica id from it
	mismatch  uint64       // the number that was reused with other content, if any
	chainHead string       // the device's last answered event (with NUMBERING_DEVICE_BEHIND)
	fresh     int          // the last fresh results answer mutations applied in this call (not retries)
	atMs      int64        // the push's time: the at_ms its status changes and voids carry
	quota     *quotaPush   // the push counted against the daily quotas (nil: quotas off)
}

// applyPush applies a device's mutations in order inside the writer's
// transaction. A mutation already answered gets its first result again if
// it is the same mutation (a retry, however late: its content hash
// matches); a number answered for other content means the device's
// numbering went back (it was restored from an older copy): nothing more is
// applied and the device is told so (NUMBERING_DEVICE_BEHIND), to renumber
// its work after the server's last number. A first new number past the next
// one means the server lost numbers it had answered (it was restored from a
// backup): nothing is applied and the device is told to send again what it
// holds past the server's last number (NUMBERING_SERVER_BEHIND).
//
// A device that says which copy of its database it is (replica_id) and what
// it saw acknowledged (last_acked_seq) is also checked when it pushes
// nothing: acknowledged numbers the server has not answered mean the server
// is behind; numbers answered that it never saw mean the device is. A copy
// found behind is offered a new replica id; when it syncs with it, the id
// becomes the device's and the restore is counted. Until then the device
// keeps its id, so a late copy of an old request (which looks behind too)
// changes nothing. Any other replica id is a second copy of the database
// syncing with the same credential (a clone), refused with errCloned.
func (s *Server) applyPush(tx *store.Tx, c *caller, req *pb.SyncRequest) (pushed, error) {
	var out pushed
	st, err := tx.DeviceState(c.deviceID)
	if err != nil {
		return out, fmt.Errorf("device %s: %w", c.deviceID, err)
	}
	if st.RevokedMs != 0 {
		return out, errRevoked
	}
	replica := req.GetReplicaId()
	switch {
	case replica == "" || replica == st.ReplicaID:
	case st.ReplicaID == "":
		if err := tx.SetReplica(c.deviceID, replica); err != nil {
			return out, err
		}
	case replica == st.OfferedReplicaID:
		// The restored copy took the id it was offered: it is the device now.
		if err := tx.MarkRestored(c.deviceID, replica); err != nil {
			return out, err
		}
		out.restored = true
	case req.GetLastAckedSeq() > st.LastSeq:
		// The copy saw numbers acknowledged that this database does not
		// hold: the database went back (restored from a backup) and may
		// have lost the copy's id with them. It is the device.
		if err := tx.SetReplica(c.deviceID, replica); err != nil {
			return out, err
		}
		out.relost = true
	default:
		// A copy gets a new id only from the server (an offer): one this
		// database never knew was offered by a later self of it that was
		// lost (restored from a backup taken before the copy took it,
		// the copy having had nothing acknowledged since). It is the
		// device. An id it knew, no longer the device's, is a clone.
		known, err := tx.KnownReplica(c.deviceID, replica)
		if err != nil {
			return out, err
		}
		if known {
			return out, errCloned{got: replica, want: st.ReplicaID}
		}
		if err := tx.SetReplica(c.deviceID, replica); err != nil {
			return out, err
		}
		out.relost = true
	}
	last := st.LastSeq
	out.atMs = tx.Now().UnixMilli()
	out.results = make([]*pb.MutationResult, 0, len(req.GetMutations()))
	var maxSeq uint64
	out.quota = s.quota.push(c)
	for i, m := range req.GetMutations() {
		m = withoutExpectHash(m)
		maxSeq = m.GetSeq()
		hash, err := store.MutationHash(m)
		if err != nil {
			return out, err
		}
		if m.GetSeq() <= last {
			r, same, err := tx.Result(c.deviceID, m.GetSeq(), m.GetRecordId(), hash)
			if err != nil {
				return out, err
			}
			if !same {
				out.numbering, out.mismatch = pb.Numbering_NUMBERING_DEVICE_BEHIND, m.GetSeq()
				break
			}
			out.results = append(out.results, r)
			continue
		}
		if m.GetSeq() != last+1 {
			// Mutations are consecutive (checkSyncRequest), so this is
			// the first one past last: nothing was applied in this call.
			out.numbering = pb.Numbering_NUMBERING_SERVER_BEHIND
			break
		}
		if fits, err := out.quota.fits(tx, m); err != nil {
			return out, err
		} else if !fits {
			// Over a daily quota: this and the rest stay on the device,
			// unanswered, in order (quota.go).
			out.quota.held = len(req.GetMutations()) - i
			break
		}
		r, err := s.applyOne(tx, c, m, hash)
		if err != nil {
			return out, err
		}
		out.results = append(out.results, r)
		out.fresh++
		last = m.GetSeq()
	}
	if out.numbering == pb.Numbering_NUMBERING_UNSPECIFIED && replica != "" {
		switch {
		case max(maxSeq, req.GetLastAckedSeq()) < last:
			out.numbering = pb.Numbering_NUMBERING_DEVICE_BEHIND
		case req.GetLastAckedSeq() > last:
			out.numbering = pb.Numbering_NUMBERING_SERVER_BEHIND
		}
	}
	out.lastSeq = last
	if out.numbering == pb.Numbering_NUMBERING_DEVICE_BEHIND {
		if out.chainHead, err = tx.ChainHead(c.deviceID); err != nil {
			return out, err
		}
		// One offer at a time: the copy that lost the answer, or a late
		// old request, gets the same one.
		if out.replicaID = st.OfferedReplicaID; out.replicaID == "" || out.restored {
			out.replicaID = domain.RandomToken(12)
			if err := tx.OfferReplica(c.deviceID, out.replicaID); err != nil {
				return out, err
			}
		}
	}
	pending := req.GetPendingCount()
	if out.quota != nil {
		if err := out.quota.save(tx); err != nil {
			return out, err
		}
		pending += uint32(out.quota.held)
	}
	return out, tx.TouchDevice(c.deviceID, last, pending, req.GetAppVersion())
}

// logNumbering logs a device whose numbering disagreed with the server's.
func (s *Server) logNumbering(c *caller, req *pb.SyncRequest, out pushed) {
	var first uint64
	if len(req.GetMutations()) > 0 {
		first = req.GetMutations()[0].GetSeq()
	}
	if out.restored {
		s.log.Warn("restored device took its new replica id: counted as restored", "device", c.deviceID, "replica", req.GetReplicaId())
	}
	if out.relost {
		s.log.Warn("device syncs with a replica id this database lost (it went back in time): taken as the device's",
			"device", c.deviceID, "replica", req.GetReplicaId(), "device_last_acked_seq", req.GetLastAckedSeq())
	}
	switch out.numbering {
	case pb.Numbering_NUMBERING_DEVICE_BEHIND:
		s.log.Warn("device numbering went back (its database was restored from an older copy): it renumbers its unsent work after the server's last number",
			"device", c.deviceID, "server_last_seq", out.lastSeq, "device_last_acked_seq", req.GetLastAckedSeq(),
			"first_seq_sent", first, "reused_seq", out.mismatch, "offered_replica", out.replicaID)
	case pb.Numbering_NUMBERING_SERVER_BEHIND:
		s.log.Warn("server lost mutation numbers it had answered (restored from a backup?): the device sends its work again",
			"device", c.deviceID, "server_last_seq", out.lastSeq, "device_last_acked_seq", req.GetLastAckedSeq(), "first_seq_sent", first)
	}
}

// scope lists the buckets a caller may read, sorted: the read side of the
// permission table (domain/permissions.go), from the org as it is now.
func (s *Server) scope(ctx context.Context, c *caller) ([]string, error) {
	r := domain.Reader{Role: c.role, UserID: c.userID, VillageID: c.villageID, TownID: c.townID}
	var err error
	switch c.role {
	case pb.Role_ROLE_MEMBER:
		r.Linked, err = s.store.LinkedHouseholds(ctx, c.userID)
	case pb.Role_ROLE_MEDIATOR:
		r.Mediates, err = s.store.MediatedDisputes(ctx, c.userID)
	}
	if err != nil {
		return nil, err
	}
	return domain.ScopeBuckets(r), nil
}

// pull answers with up to pageSize records changed after the cursors, each
// once, and the new cursor of every bucket in scope. It returns the ids of
// the records it put in the answer.
//
// Records go into the answer as they are stored, without a decode and
// re-encode: their bytes are appended to the message's unknown fields
// under the records field's number, which is what the encoding of the
// records field would be, so clients parse them as records (fields' order
// on the wire does not matter to protobuf). Only a record that left a
// bucket is decoded, to see whether it is still in scope.
//
// With changedOnly the answer lists only the cursors that moved or are new
// to the device, and names the device's buckets that left its scope
// (SyncRequest.changed_cursors_only).
//
// A cursor below its bucket's retention floor (the retention pass deleted
// gone marks after it) is read from the start, and the bucket named in
// refetch_buckets so that the device replaces its copy, unless the device
// says it is already doing so (refetching). A device that cannot
// (canRefetch false: an older app) is read from its cursor as before: it
// may keep a record that left, but never starts over at every page.
//
// A record the device expects (echo) and holds as the server does goes
// into echoes instead: its id, version and buckets.
func (s *Server) pull(ctx context.Context, scope []string, cursors []*pb.Cursor, pageSize int, changedOnly, canRefetch bool, refetching []string, echo *echoer) (*pb.SyncResponse, map[string]bool, error) {
	have := make(map[string]uint64, len(cursors))
	sentCur := make(map[string]uint64, len(cursors)) // as the device sent them
	lastChange, known := s.store.LastChange()
	for _, c := range cursors {
		seq := c.GetSeq()
		sentCur[c.GetBucket()] = seq
		if known && seq > lastChange {
			// A cursor past the last change was given by an earlier self
			// of this database (restored from a backup without a new
			// lineage): the device reads the bucket again from the start.
			seq = 0
		}
		have[c.GetBucket()] = seq
	}
	var refetch []string
	for b, seq := range have {
		if canRefetch && seq > 0 && seq < s.store.BucketFloor(b) && !slices.Contains(refetching, b) {
			have[b] = 0
			refetch = append(refetch, b)
		}
	}
	want := make([]store.Cursor, len(scope))
	inScope := make(map[string]bool, len(scope))
	for i, b := range scope {
		want[i] = store.Cursor{Bucket: b, After: have[b]}
		inScope[b] = true
	}
	// Each bucket's rows up to a page and one: one more than fits says
	// there is more.
	got, err := s.store.PullBuckets(ctx, want, pageSize+1)
	if err != nil {
		return nil, nil, err
	}
	resp := &pb.SyncResponse{Cursors: make([]*pb.Cursor, 0, len(scope))}
	for _, b := range refetch {
		if inScope[b] {
			resp.RefetchBuckets = append(resp.RefetchBuckets, b)
		}
	}
	slices.Sort(resp.RefetchBuckets)
	seen := map[string]bool{}
	n := 0
	for _, rows := range got {
		for _, row := range rows {
			n += len(row.Body) + 8 // tag and length
		}
	}
	raw := make([]byte, 0, min(n, pageSize<<10))
	left := pageSize
	for i, b := range scope {
		at := want[i].After
		from := at
		for _, row := range got[i] {
			if left == 0 {
				resp.More = true
				break
			}
			if seen[row.RecordID] {
				at = row.Seq
				continue
			}
			if !row.Gone && echo.wants(row.RecordID) {
				r := &pb.Record{}
				if err := proto.Unmarshal(row.Body, r); err != nil {
					return nil, nil, fmt.Errorf("decode record in %s: %w", b, err)
				}
				if e := echo.of(r); e != nil {
					resp.Echoes = append(resp.Echoes, e)
					seen[row.RecordID] = true
					left--
					at = row.Seq
					continue
				}
			}
			if !row.Gone {
				raw = protowire.AppendTag(raw, recordsField, protowire.BytesType)
				raw = protowire.AppendBytes(raw, row.Body)
				seen[row.RecordID] = true
				left--
				at = row.Seq
				continue
			}
			r := &pb.Record{}
			if err := proto.Unmarshal(row.Body, r); err != nil {
				return nil, nil, fmt.Errorf("decode record in %s: %w", b, err)
			}
			if !anyIn(r.GetBuckets(), inScope) {
				// It left this bucket and the caller's scope: a stub
				// with its buckets tells the device to purge it, and
				// carries none of its data.
				if from == 0 { // a device new to the bucket never had it
					at = row.Seq
					continue
				}
				r = &pb.Record{Id: r.GetId(), Kind: r.GetKind(), Version: r.GetVersion(), Buckets: r.GetBuckets()}
			}
			seen[row.RecordID] = true
			if e := echo.of(r); e != nil {
				resp.Echoes = append(resp.Echoes, e)
			} else {
				resp.Records = append(resp.Records, r)
			}
			left--
			at = row.Seq
		}
		if len(got[i]) > pageSize {
			// The read stopped at its limit: rows that took no room in
			// the page (gone rows a new device skips, records already
			// sent) may have used up what was read, not the bucket.
			resp.More = true
		}
		if had, ok := sentCur[b]; changedOnly && ok && had == at {
			continue // the device has it
		}
		resp.Cursors = append(resp.Cursors, &pb.Cursor{Bucket: b, Seq: at})
	}
	if changedOnly {
		resp.ChangedCursorsOnly = true
		for b := range have { // a device may send up to MaxCursors
			if !inScope[b] {
				resp.LeftBuckets = append(resp.LeftBuckets, b)
			}
		}
		slices.Sort(resp.LeftBuckets)
	}
	resp.ProtoReflect().SetUnknown(raw)
	return resp, seen, nil
}

// betweenPushAndPull, when set (by a test: BetweenPushAndPull), runs in
// every Sync after its push commits and before its answer is read.
var betweenPushAndPull atomic.Pointer[func()]

// recordsField is SyncResponse.records' field number.
var recordsField = (&pb.SyncResponse{}).ProtoReflect().Descriptor().Fields().ByName("records").Number()

// addOwnWrites adds to an answer the records its push changed, as they are
// now, where the answer does not carry them yet (a paged answer may not
// have reached their bucket): the device sees the canonical result of its
// writes in the answer that acknowledges them, and never rebuilds its view
// of an acknowledged write from a stale base. Only records still in the
// caller's scope are added: a mediator who took themselves off a case gets
// no more of it. One the device holds as the server does goes in as an
// echo.
func (s *Server) addOwnWrites(ctx context.Context, resp *pb.SyncResponse, have map[string]bool, scope []string, results []*pb.MutationResult, echo *echoer) error {
	in := set(scope)
	for _, res := range results {
		id := res.GetRecordId()
		if res.GetStatus() == pb.MutationStatus_MUTATION_STATUS_REJECTED || have[id] {
			continue
		}
		have[id] = true
		rec, err := s.store.Record(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		for _, b := range rec.GetBuckets() {
			if !in[b] {
				continue
			}
			if e := echo.of(rec); e != nil {
				resp.Echoes = append(resp.Echoes, e)
			} else {
				resp.Records = append(resp.Records, rec)
			}
			break
		}
	}
	return nil
}

// withoutExpectHash returns m without its expect_hash, which is no part
// of its content: a retry of the same mutation may carry another hash, or
// none (the device added a later mutation of the record, or its base
// changed), and must still be told a retry by its content hash
// (store.MutationHash), not other content under the same number; nor do
// the quotas count it. m is not changed: it is cloned when it has one.
func withoutExpectHash(m *pb.Mutation) *pb.Mutation {
	if len(m.GetExpectHash()) == 0 {
		return m
	}
	c := proto.Clone(m).(*pb.Mutation)
	c.ExpectHash = nil
	return c
}

// echoer tells which records of an answer the device already holds as the
// server does: their hash (Mutation.expect_hash, or the older
// SyncRequest.expected) of the record as the device computed it after its
// push matches the server's record with the push's stamps unstamped
// (domain.Unstamp, domain.EchoMatches). A nil echoer (a device that
// expects nothing: an older one, a pull) echoes nothing.
type echoer struct {
	want map[string][]byte // record id → its hash: 16 bytes, or 32 (older form)
	atMs int64             // the push's time (pushed.atMs)
}

// newEchoer reads the request's hashes: the older form (expected) first,
// then each mutation's expect_hash in order, so that a record's hash is
// the one on its last mutation that has one. A hash on an earlier
// mutation of a record the request changes again does not match the
// record after the later ones: it goes in full.
func newEchoer(req *pb.SyncRequest, atMs int64) *echoer {
	if atMs == 0 {
		return nil
	}
	var want map[string][]byte
	put := func(id string, h []byte) {
		if len(h) == 0 {
			return
		}
		if want == nil {
			want = map[string][]byte{}
		}
		want[id] = h
	}
	for _, h := range req.GetExpected() {
		put(h.GetRecordId(), h.GetHash())
	}
	for _, m := range req.GetMutations() {
		put(m.GetRecordId(), m.GetExpectHash())
	}
	if want == nil {
		return nil
	}
	return &echoer{want: want, atMs: atMs}
}

// wants reports whether the device sent a hash for the record id.
func (e *echoer) wants(id string) bool {
	return e != nil && e.want[id] != nil
}

// of returns the echo that stands for r in the answer, or nil when r must
// go in full: not expected, or not as the device computed it (a concurrent
// change, a rejection, a server-side fill the device cannot compute).
func (e *echoer) of(r *pb.Record) *pb.Echo {
	if !e.wants(r.GetId()) {
		return nil
	}
	u, ok := domain.Unstamp(r, e.atMs)
	if !ok || !domain.EchoMatches(u, e.want[r.GetId()]) {
		return nil
	}
	echo := &pb.Echo{RecordId: r.GetId(), Kind: r.GetKind(), Version: r.GetVersion(), Buckets: r.GetBuckets()}
	if !proto.Equal(u, r) { // some stamp is the push's: the device needs it
		echo.AtMs = e.atMs
	}
	return echo
}

// Watch pokes the device whenever a bucket of its scope changes, until the
// device hangs up or the server stops.
func (x *syncService) Watch(_ *pb.WatchRequest, stream pb.SyncService_WatchServer) error {
	s, c := x.s, callerFrom(stream.Context())
	scope, err := s.scope(stream.Context(), c)
	if err != nil {
		return status.Errorf(codes.Unavailable, "compute scope: %v", err)
	}
	w := s.hub.add(c.deviceID, scope)
	defer s.hub.remove(w)
	// A revocation committed between this call's authentication and the
	// line above dropped the device's watchers before this one was added:
	// read the database again now that a later drop would reach it.
	if revoked, err := s.store.DeviceRevoked(stream.Context(), c.deviceID); err != nil {
		return status.Errorf(codes.Unavailable, "read device: %v", err)
	} else if revoked {
		return errRevokedStatus()
	}
	for {
		select {
		case buckets := <-w.ch:
			if err := stream.Send(&pb.WatchResponse{Buckets: buckets}); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		case <-w.gone:
			return errRevokedStatus()
		case <-s.hub.closed:
			return status.Error(codes.Unavailable, "server shutting down: reconnect later")
		}
	}
}

func anyIn(buckets []string, set map[string]bool) bool {
	for _, b := range buckets {
		if set[b] {
			return true
		}
	}
	return false
}

// touchInterval is how often a device that only pulls has its last contact
// written.
const touchInterval = time.Minute

// newVersion reports whether a call carries an app version other than the
// one last written for the device (since syncd started).
func (s *Server) newVersion(deviceID, version string) bool {
	if version == "" {
		return false
	}
	last, ok := s.versions.Load(deviceID)
	return !ok || last.(string) != version
}

// newPending reports whether a device's pending count differs from the
// one last written for it (unknown since syncd started: written by
// touchDue's first contact anyway).
func (s *Server) newPending(deviceID string, pending uint32) bool {
	last, ok := s.pendings.Load(deviceID)
	return ok && last.(uint32) != pending
}

// touchDue reports whether a pull-only call should write the device's last
// contact, and if so notes that it was written now.
func (s *Server) touchDue(deviceID string) bool {
	now := time.Now()
	if last, ok := s.touched.Load(deviceID); ok && now.Sub(last.(time.Time)) < touchInterval {
		return false
	}
	s.touched.Store(deviceID, now)
	return true
}
