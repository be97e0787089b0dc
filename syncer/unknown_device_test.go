package syncer_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// A phone told that the server does not know it (the region's address
// served, for a while, a database without the phone: a standby started
// before its restore) stops and keeps its work; once the server knows it
// again, the phone's next sync goes on by itself, its work sent, no new
// enrollment needed. The refusal is the server's own answer to an unknown
// credential; a server that does not know a device it knew cannot be made
// on demand, so an interceptor gives that answer while forgetting is set.
func TestPhoneUnknownForAWhileGoesOnWhenKnownAgain(t *testing.T) {
	var forgetting atomic.Bool
	unknown := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if forgetting.Load() && info.FullMethod == "/fieldsync.v1.SyncService/Sync" {
			st, _ := status.New(codes.Unauthenticated, "device credential unknown: enroll the device again with a new code").
				WithDetails(&errdetails.ErrorInfo{Reason: server.UnknownDeviceReason, Domain: "fieldsync.v1"})
			return nil, st.Err()
		}
		return handler(ctx, req)
	}
	e := testenv.Start(t, testenv.WithSyncdConfig(func(c *syncd.Config) {
		c.GRPCOptions = append(c.GRPCOptions, grpc.ChainUnaryInterceptor(unknown))
	}))
	e.ImportSample()
	mem := e.Device(testenv.Member)
	testenv.Sync(t, mem)

	forgetting.Store(true)
	visit, err := mem.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-12-01").
		Set("met", "張大山").Set("needs", "無").Set("help", "問候"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 { // the refusal, then the probe while still unknown
		if _, err := mem.Sync(ctx); !errors.Is(err, syncer.ErrUnknownDevice) {
			t.Fatalf("sync while the server does not know the phone: %v, want ErrUnknownDevice", err)
		}
	}
	if st, err := mem.Status(); err != nil || st.Stopped != "unknown" || st.Pending != 1 {
		t.Fatalf("status while unknown: %+v, %v; want stopped \"unknown\", the visit pending", st, err)
	}

	forgetting.Store(false)
	if _, err := mem.Sync(ctx); err != nil {
		t.Fatalf("sync once the server knows the phone again: %v", err)
	}
	st, err := mem.Status()
	if err != nil || st.Stopped != "" || st.Pending != 0 {
		t.Fatalf("status after: %+v, %v; want not stopped, nothing pending", st, err)
	}
	if it, err := mem.Get(visit); err != nil || it.State != "synced" {
		t.Fatalf("the visit: %+v, %v; want synced", it, err)
	}
}
