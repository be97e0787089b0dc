package fieldsync

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/syncer"
)

// The file service's refusals, as syncer passes them on (a status, or
// syncer's words for it: "permission denied: ..."), get the SDK's codes.
// The servers' real answers are driven in attach_test.go; this pins each
// code's mapping, including those a well-behaved phone cannot provoke
// (a raw status kept by syncer, a refusal of scope after a purge).
func TestFileErrorCodes(t *testing.T) {
	c := &Client{dev: &syncer.Device{}}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{grpcstatus.Error(codes.PermissionDenied, "record_id: not in your scope"), CodeNotAllowed},
		{fmt.Errorf("fetch file abc: %w", errors.New("permission denied: record_id: not in your scope")), CodeNotAllowed},
		{fmt.Errorf("fetch file abc: not found: sha256: the record does not name the file"), CodeNotFound},
		{fmt.Errorf("fetch file abc: %w", syncer.ErrNoFile), CodeNotFound},
		{grpcstatus.Error(codes.InvalidArgument, "chunk.sha256: does not match its data"), CodeInvalid},
		{fmt.Errorf("upload: invalid argument: media_type: the bytes are a PNG, not image/jpeg"), CodeInvalid},
		{grpcstatus.Error(codes.Unavailable, "connection reset"), CodeRetryLater},
		{&syncer.RetryError{Reason: "daily file bytes"}, CodeRetryLater},
		{fmt.Errorf("fetch file abc: %w", syncer.ErrRevoked), CodeRevokedWiped},
		{errors.New("a damaged replica"), CodeInternal},
	} {
		got := c.classifyFile("fetch", tc.err)
		if code := ErrorCode(got.Error()); code != tc.want {
			t.Errorf("%v: code %q (%v), want %q", tc.err, code, got, tc.want)
		}
	}
}
