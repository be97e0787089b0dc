package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
)

// A device's repeated calls are served from the auth cache without reading
// the store: shown by changing the store behind the server's back (which no
// RPC does), which the cached caller does not see until its TTL ends.
// Writes still re-check the revocation in their transaction.
func TestAuthCacheSkipsStore(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	resp, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(t.Context(), &pb.EnrollRequest{Code: e.Secret(testenv.Member), DeviceName: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+resp.GetToken())
	client := pb.NewSyncServiceClient(e.Conn())
	stats := func(wantHits, wantMisses uint64) {
		t.Helper()
		if hits, misses, _ := server.AuthCacheStats(e.Server); hits != wantHits || misses != wantMisses {
			t.Fatalf("auth cache: %d hits, %d misses; want %d, %d", hits, misses, wantHits, wantMisses)
		}
	}

	// The first call reads the store (and writes the device's contact, so
	// that the pull-only calls below write nothing); the second does not.
	for range 2 {
		if _, err := client.Sync(ctx, &pb.SyncRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	stats(1, 1)

	// Revoked in the file, not through RevokeDevice: the cache is not told.
	if err := e.Store.Write(context.Background(), func(tx *store.Tx) error { return tx.RevokeDevice(resp.GetDeviceId()) }); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Sync(ctx, &pb.SyncRequest{}); err != nil {
		t.Fatalf("pull-only call within the TTL: %v; want it served from the cache, without reading the store", err)
	}
	stats(2, 1)
	// A push is refused all the same: its transaction reads the device.
	clock := domain.NewClock(resp.GetDeviceId(), domain.HLC{}, 0, nil)
	visit := &pb.Mutation{Seq: 1, RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE, Hlc: clock.Tick().String(),
		Fields: map[string]string{"household_id": "H001", "visited_on": "2026-11-20"}}
	if _, err := client.Sync(ctx, &pb.SyncRequest{Mutations: []*pb.Mutation{visit}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("push by a device revoked in the store: %v, want PermissionDenied", err)
	}
	stats(3, 1)

	// Past the TTL the store is read again.
	server.MoveAuthCacheClock(e.Server, 6*time.Second)
	if _, err := client.Sync(ctx, &pb.SyncRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("pull-only call after the TTL: %v, want PermissionDenied", err)
	}
	stats(3, 2)
	// Refusals are not remembered: every try reads the store.
	if _, err := client.Sync(ctx, &pb.SyncRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("second call after the TTL: %v", err)
	}
	stats(3, 3)
	// Nor are unknown credentials.
	bad := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer not-a-token")
	for range 2 {
		if _, err := client.Sync(bad, &pb.SyncRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("unknown credential: %v", err)
		}
	}
	if hits, misses, n := server.AuthCacheStats(e.Server); hits != 3 || misses != 5 || n != 0 {
		t.Fatalf("auth cache: %d hits, %d misses, %d entries; want 3, 5, 0", hits, misses, n)
	}
}
