package e2e

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// uploadTap watches a phone's Upload streams: it records each chunk's
// offset and size as sent, and can cut the link after a number of chunks
// (the stream's context cancelled, every later Upload refused) until told
// the link is back.
type uploadTap struct {
	mu      sync.Mutex
	offsets []int64
	bytes   int64
	cutAt   int // cut after this many chunks sent (0: never)
	down    atomic.Bool
}

func (u *uploadTap) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if method != pb.AttachmentService_Upload_FullMethodName {
		return streamer(ctx, desc, cc, method, opts...)
	}
	if u.down.Load() {
		return nil, status.Error(codes.Unavailable, "test: the link is down")
	}
	ctx, cancel := context.WithCancel(ctx)
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	return &tappedStream{ClientStream: cs, u: u, cancel: cancel}, nil
}

// reset forgets what was sent and sets where the next cut is.
func (u *uploadTap) reset(cutAt int) {
	u.mu.Lock()
	u.offsets, u.bytes, u.cutAt = nil, 0, cutAt
	u.mu.Unlock()
}

func (u *uploadTap) sent() ([]int64, int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]int64(nil), u.offsets...), u.bytes
}

type tappedStream struct {
	grpc.ClientStream
	u      *uploadTap
	cancel context.CancelFunc
}

func (s *tappedStream) SendMsg(m any) error {
	if req, ok := m.(*pb.UploadRequest); ok && req.GetChunk() != nil {
		s.u.mu.Lock()
		if s.u.cutAt > 0 && len(s.u.offsets) >= s.u.cutAt {
			s.u.mu.Unlock()
			s.u.down.Store(true)
			s.cancel()
			return status.Error(codes.Unavailable, "test: the link dropped")
		}
		s.u.offsets = append(s.u.offsets, req.GetChunk().GetOffset())
		s.u.bytes += int64(len(req.GetChunk().GetData()))
		s.u.mu.Unlock()
	}
	return s.ClientStream.SendMsg(m)
}

func (s *tappedStream) CloseSend() error { return s.ClientStream.CloseSend() }

// An upload cut off in the middle, then syncd restarted (stopped and
// started on the same files, as an operator would): the chunks the server
// acknowledged before the cut survived the restart, the phone resumes
// from the server's stored (it sends no byte below it again) and the file
// completes byte for byte; the other mediator then fetches it.
func TestPhotoUploadResumesAcrossSyncdRestart(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	tap := &uploadTap{}
	a := e.Device(testenv.Mediator, func(o *syncer.Options) {
		o.DialOptions = append(o.DialOptions, grpc.WithChainStreamInterceptor(tap.intercept))
	})
	b := e.Device(testenv.Mediator2)
	syncAll(t, a, b)
	id := must[string](t)(a.Create("dispute", syncer.NewFields().Set("category", "case").
		Set("title", "房屋漏水賠償").Set("parties", "趙春梅；孫冬生").
		Set("mediators", testenv.Mediator+","+testenv.Mediator2)))
	pic := bytes.Repeat(agreementPhoto(t, 7), 4) // a JPEG head, ~700 KB: twenty-odd chunks
	sha := must[string](t)(a.Attach(id, "image/jpeg", "漏水現場", pic))

	tap.reset(8)
	testenv.Sync(t, a) // the dispute goes; the upload is cut after 8 chunks
	if !tap.down.Load() {
		t.Fatalf("the upload was never cut: the test cuts nothing")
	}
	// What the server acknowledged, as the phone heard it.
	acked := attachmentOf(t, a, id, sha)
	if acked.State == "uploaded" || acked.Sent == 0 || acked.Sent >= int64(len(pic)) {
		t.Fatalf("after the cut the phone shows %+v: want part of the file acknowledged", acked)
	}

	e = restart(t, e)
	after, err := e.Daemon.Files.Stat(t.Context(), sha)
	ok(t, err)
	if after.Stored < acked.Sent || after.Complete {
		t.Fatalf("after the restart the server holds %d bytes (complete %v), though it acknowledged %d: acknowledged chunks lost", after.Stored, after.Complete, acked.Sent)
	}

	tap.reset(0)
	tap.down.Store(false)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	rep, err := a.UploadPending(ctx)
	cancel()
	ok(t, err)
	if rep.Uploaded != 1 {
		t.Fatalf("the resumed upload: %+v, want the file uploaded", rep)
	}
	offsets, sent := tap.sent()
	if len(offsets) == 0 || offsets[0] != after.Stored {
		t.Fatalf("the resumed upload started at %v, want at the server's %d", offsets[:min(len(offsets), 1)], after.Stored)
	}
	for _, off := range offsets {
		if off < after.Stored {
			t.Fatalf("the phone sent the chunk at %d again, below the server's %d", off, after.Stored)
		}
	}
	if want := int64(len(pic)) - after.Stored; sent != want {
		t.Fatalf("the resumed upload sent %d bytes, want the %d the server lacked", sent, want)
	}
	t.Logf("a %d-byte file cut with %d bytes acknowledged (%d stored); resumed after syncd's restart with %d bytes in %d chunks", len(pic), acked.Sent, after.Stored, sent, len(offsets))
	if got := serverFile(t, e, sha); !bytes.Equal(got, pic) {
		t.Fatalf("the server holds %d bytes, want the file's %d", len(got), len(pic))
	}
	if got := attachmentOf(t, a, id, sha); got.State != "uploaded" {
		t.Fatalf("the phone shows %q, want uploaded", got.State)
	}
	testenv.Sync(t, b)
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	ok(t, b.FetchAttachment(ctx, id, sha))
	cancel()
	if got := must[[]byte](t)(b.ReadAttachment(sha)); !bytes.Equal(got, pic) {
		t.Fatalf("the other mediator holds %d bytes, want the file's %d", len(got), len(pic))
	}
}
