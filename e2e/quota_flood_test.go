package e2e

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
)

// The red team's flood: one member phone pushing 8,000 legal visits of
// the largest size, as fast as the server takes them. With the default
// quotas (syncd's) the server applies the device's day's worth and then
// refuses with RESOURCE_EXHAUSTED, a RetryInfo until midnight China time
// and ErrorInfo QUOTA_EXCEEDED; the database grows by that day's worth
// only.
func TestDefaultQuotaStopsAFloodOfLegalVisits(t *testing.T) {
	e := testenv.Start(t, testenv.WithServerConfig(func(c *server.Config) {
		c.DeviceQuota, c.UserQuota = server.Quota{}, server.Quota{} // the defaults
	}))
	e.ImportSample()
	enr, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(t.Context(), &pb.EnrollRequest{Code: e.Secret(testenv.Member), DeviceName: "flood"})
	ok(t, err)
	ctx := withToken(t, enr.GetToken())
	client := pb.NewSyncServiceClient(e.Conn())
	clock := domain.NewClock(enr.GetDeviceId(), domain.HLC{}, 0, nil)
	text := strings.Repeat("屋頂漏水需要修繕", 4000/24) // 3,984 bytes: near the field's 4,000
	before := dirSize(t, e.Dir)
	start := time.Now()
	var seq uint64 = 1
	applied, calls := 0, 0
	var refusal error
	for seq <= 8000 && refusal == nil {
		req := &pb.SyncRequest{PageSize: 1}
		for range 500 {
			req.Mutations = append(req.Mutations, &pb.Mutation{Seq: seq, RecordId: domain.NewRecordID(), Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE,
				Hlc: clock.Tick().String(), Fields: map[string]string{"household_id": "H001", "visited_on": "2026-12-07", "met": "戶主",
					"needs": text, "help": text, "follow_up": text}})
			seq++
		}
		seq = req.Mutations[0].GetSeq() // the next call starts after what was answered
		resp, err := client.Sync(ctx, req, grpc.MaxCallRecvMsgSize(server.MaxMessageBytes))
		calls++
		if err != nil {
			refusal = err
			break
		}
		for _, r := range resp.GetResults() {
			if r.GetStatus() != pb.MutationStatus_MUTATION_STATUS_APPLIED {
				t.Fatalf("mutation %d: %v", r.GetSeq(), r)
			}
			applied++
		}
		seq += uint64(len(resp.GetResults()))
	}
	took := time.Since(start)
	if refusal == nil {
		t.Fatalf("8,000 visits of %d bytes each were all applied: no quota", 3*len(text))
	}
	st := status.Convert(refusal)
	var retry *errdetails.RetryInfo
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			retry = d
		case *errdetails.ErrorInfo:
			info = d
		}
	}
	if st.Code() != codes.ResourceExhausted || retry == nil || info.GetReason() != server.QuotaReason || info.GetMetadata()["quota"] != "device" {
		t.Fatalf("refusal: %v, details %v; want RESOURCE_EXHAUSTED with RetryInfo and ErrorInfo %s (device)", refusal, st.Details(), server.QuotaReason)
	}
	if wait := retry.GetRetryDelay().AsDuration(); wait <= 0 || wait > 24*time.Hour {
		t.Fatalf("retry delay %v, want until midnight China time (within a day)", wait)
	}
	if applied != server.DefaultDeviceQuota.Records {
		t.Fatalf("%d visits applied, want the device quota of %d", applied, server.DefaultDeviceQuota.Records)
	}
	// Pulls still work for the refused phone.
	if _, err := client.Sync(ctx, &pb.SyncRequest{PageSize: 1}); err != nil {
		t.Fatalf("a pull of the phone over its quota: %v", err)
	}
	t.Logf("flood: %d of 8000 visits applied in %d calls in %v, then refused (%s); data directory grew by %.1f MiB",
		applied, calls, took.Round(time.Millisecond), st.Message(), float64(dirSize(t, e.Dir)-before)/(1<<20))
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		if fi, err := d.Info(); err == nil {
			n += fi.Size()
		}
		return nil
	})
	ok(t, err)
	return n
}
