package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

type syncService struct {
	pb.UnimplementedSyncServiceServer
	s *Server
}

// errSeqGap is a push whose first new mutation is not the next number.
type errSeqGap struct{ got, want uint64 }

func (e errSeqGap) Error() string {
	return fmt.Sprintf("mutations[].seq: got %d, the next expected for this device is %d", e.got, e.want)
}

var errRevoked = errors.New(ErrRevokedMessage)

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
	var results []*pb.MutationResult
	err := s.store.Write(ctx, func(tx *store.Tx) error {
		var err error
		results, err = s.applyPush(tx, c, req)
		return err
	})
	var gap errSeqGap
	switch {
	case errors.As(err, &gap):
		return nil, status.Error(codes.FailedPrecondition, gap.Error()+": the device lost mutations it had numbered; re-enroll it")
	case errors.Is(err, errRevoked):
		return nil, status.Error(codes.PermissionDenied, ErrRevokedMessage+": this device was cut off by an administrator; its local data is wiped")
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "store the mutations: %v; nothing was applied, retry", err)
	}
	scope, err := s.scope(ctx, c)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "compute scope: %v", err)
	}
	s.hub.rescope(c.deviceID, scope)
	resp, err := s.pull(ctx, scope, req.GetCursors(), pageSize)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read changes: %v; mutations were applied, retry to pull", err)
	}
	resp.Results = results
	resp.ServerTimeMs = time.Now().UnixMilli()
	resp.UserId, resp.Role = c.userID, c.role
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
	if len(req.GetAppVersion()) > 64 {
		return status.Error(codes.InvalidArgument, "app_version: at most 64 bytes")
	}
	for i, m := range req.GetMutations() {
		if i > 0 && m.GetSeq() != req.GetMutations()[i-1].GetSeq()+1 {
			return status.Errorf(codes.InvalidArgument, "mutations[%d].seq: %d follows %d; mutations must be consecutive", i, m.GetSeq(), req.GetMutations()[i-1].GetSeq())
		}
	}
	for i, cur := range req.GetCursors() {
		if len(cur.GetBucket()) > 80 {
			return status.Errorf(codes.InvalidArgument, "cursors[%d].bucket: at most 80 bytes", i)
		}
	}
	return nil
}

// applyPush applies a device's mutations in order inside the writer's
// transaction. A mutation already applied (a retry) gets its first result
// again; the next new one must be the device's next number.
func (s *Server) applyPush(tx *store.Tx, c *caller, req *pb.SyncRequest) ([]*pb.MutationResult, error) {
	st, err := tx.DeviceState(c.deviceID)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", c.deviceID, err)
	}
	if st.RevokedMs != 0 {
		return nil, errRevoked
	}
	last := st.LastSeq
	results := make([]*pb.MutationResult, 0, len(req.GetMutations()))
	for _, m := range req.GetMutations() {
		if m.GetSeq() <= last {
			r, err := tx.Result(c.deviceID, m.GetSeq(), m.GetRecordId())
			if err != nil {
				return nil, err
			}
			results = append(results, r)
			continue
		}
		if m.GetSeq() != last+1 {
			return nil, errSeqGap{got: m.GetSeq(), want: last + 1}
		}
		r, err := s.applyOne(tx, c, m)
		if err != nil {
			return nil, err
		}
		results = append(results, r)
		last = m.GetSeq()
	}
	return results, tx.TouchDevice(c.deviceID, last, req.GetPendingCount(), req.GetAppVersion())
}

// scope lists the buckets a caller may read, sorted.
func (s *Server) scope(ctx context.Context, c *caller) ([]string, error) {
	var out []string
	switch c.role {
	case pb.Role_ROLE_HQ:
		return []string{domain.AllBucket}, nil
	case pb.Role_ROLE_MEMBER:
		hh, err := s.store.LinkedHouseholds(ctx, c.userID)
		if err != nil {
			return nil, err
		}
		for _, h := range hh {
			out = append(out, domain.HouseholdBucket(h))
		}
	case pb.Role_ROLE_MEDIATOR:
		ds, err := s.store.MediatedDisputes(ctx, c.userID)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			out = append(out, domain.DisputeBucket(d))
		}
	case pb.Role_ROLE_SECRETARY:
		out = append(out, domain.VillageBucket(c.villageID))
	}
	out = append(out, domain.UserBucket(c.userID))
	sort.Strings(out)
	return out, nil
}

// pull answers with up to pageSize records changed after the cursors, each
// once, and the new cursor of every bucket in scope.
func (s *Server) pull(ctx context.Context, scope []string, cursors []*pb.Cursor, pageSize int) (*pb.SyncResponse, error) {
	have := make(map[string]uint64, len(cursors))
	for _, c := range cursors {
		have[c.GetBucket()] = c.GetSeq()
	}
	resp := &pb.SyncResponse{Cursors: make([]*pb.Cursor, 0, len(scope))}
	seen := map[string]bool{}
	left := pageSize
	for _, b := range scope {
		at := have[b]
		if left > 0 {
			rows, err := s.store.Pull(ctx, b, at, left+1)
			if err != nil {
				return nil, err
			}
			if len(rows) > left {
				rows, resp.More = rows[:left], true
			}
			for _, row := range rows {
				r := &pb.Record{}
				if err := proto.Unmarshal(row.Body, r); err != nil {
					return nil, fmt.Errorf("decode record in %s: %w", b, err)
				}
				if !seen[r.GetId()] {
					seen[r.GetId()] = true
					resp.Records = append(resp.Records, r)
					left--
				}
				at = row.Seq
			}
		} else if head, err := s.store.BucketHead(ctx, b); err != nil {
			return nil, err
		} else if head > at {
			resp.More = true
		}
		resp.Cursors = append(resp.Cursors, &pb.Cursor{Bucket: b, Seq: at})
	}
	return resp, nil
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
	for {
		select {
		case buckets := <-w.ch:
			if err := stream.Send(&pb.WatchResponse{Buckets: buckets}); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		case <-w.gone:
			return status.Error(codes.PermissionDenied, ErrRevokedMessage+": this device was cut off by an administrator; its local data is wiped")
		case <-s.hub.closed:
			return status.Error(codes.Unavailable, "server shutting down: reconnect later")
		}
	}
}
