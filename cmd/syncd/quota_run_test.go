package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// TestRunDeviceQuota runs syncd with -device-quota and pushes three visits
// in one call, then one more: at 2/day the first call applies two and the
// next is refused with a retry delay until midnight China time; with off
// all four land.
func TestRunDeviceQuota(t *testing.T) {
	for _, tt := range []struct {
		quota   string
		applied int
	}{
		{quota: "2/day,1MiB", applied: 2},
		{quota: "off", applied: 4},
	} {
		t.Run(tt.quota, func(t *testing.T) {
			addr, data, b := runSyncd(t, "-log-level", "error", "-device-quota", tt.quota)
			conn := dial(t, addr, data)
			admin, actx := pb.NewAdminServiceClient(conn), withToken(strings.TrimSpace(string(b)))
			if resp, err := admin.ImportOrg(actx, testenv.SampleOrg()); err != nil || len(resp.GetErrors()) > 0 {
				t.Fatalf("ImportOrg: %v, %v", resp.GetErrors(), err)
			}
			code, err := admin.CreateEnrollmentCode(actx, &pb.CreateEnrollmentCodeRequest{UserId: testenv.Member})
			if err != nil {
				t.Fatalf("CreateEnrollmentCode: %v", err)
			}
			enrolled, err := pb.NewEnrollServiceClient(conn).Enroll(context.Background(), &pb.EnrollRequest{Code: code.GetCode(), DeviceName: "phone"})
			if err != nil {
				t.Fatalf("Enroll: %v", err)
			}
			device := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+enrolled.GetToken())
			clock := domain.NewClock(enrolled.GetDeviceId(), domain.HLC{}, 0, nil)
			visit := func(seq uint64) *pb.Mutation {
				return &pb.Mutation{Seq: seq, RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE, Hlc: clock.Tick().String(),
					Fields: map[string]string{"household_id": "H001", "visited_on": "2026-12-07"}}
			}
			sync := pb.NewSyncServiceClient(conn)
			resp, err := sync.Sync(device, &pb.SyncRequest{Mutations: []*pb.Mutation{visit(1), visit(2), visit(3)}})
			if err != nil {
				t.Fatalf("Sync of 3 visits at -device-quota %s: %v", tt.quota, err)
			}
			applied := len(resp.GetResults())
			next := uint64(applied + 1)
			var muts []*pb.Mutation
			for s := next; s <= 4; s++ {
				muts = append(muts, visit(s))
			}
			resp, err = sync.Sync(device, &pb.SyncRequest{Mutations: muts})
			if tt.applied < 4 {
				if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "daily quota") {
					t.Fatalf("Sync past -device-quota %s: %v, want ResourceExhausted naming the daily quota", tt.quota, err)
				}
				if wait := retryDelay(err); wait <= 0 || wait > 24*time.Hour {
					t.Fatalf("RetryInfo delay %v, want until midnight China time", wait)
				}
			} else if err != nil {
				t.Fatalf("Sync at -device-quota off: %v", err)
			} else {
				applied += len(resp.GetResults())
			}
			if applied != tt.applied {
				t.Fatalf("-device-quota %s: %d visits applied, want %d", tt.quota, applied, tt.applied)
			}
		})
	}
}
