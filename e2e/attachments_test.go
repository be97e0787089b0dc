package e2e

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/jpeg"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// agreementPhoto is a real JPEG of noise (it does not compress away): a
// few hundred KB, a dozen chunks.
func agreementPhoto(t testing.TB, seed uint64) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 480, 360))
	r := rand.New(rand.NewPCG(seed, ^seed))
	for i := range img.Pix {
		img.Pix[i] = byte(r.UintN(256))
	}
	var b bytes.Buffer
	ok(t, jpeg.Encode(&b, img, &jpeg.Options{Quality: 92}))
	return b.Bytes()
}

// uploadGate is a client interceptor that fails every Upload call while
// it is shut: a phone whose records go through but whose files do not
// yet (the link dropped after the sync). It counts the Upload calls
// refused, so the test knows the phone did try.
type uploadGate struct {
	shut    atomic.Bool
	refused atomic.Int64
}

func (g *uploadGate) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if method == pb.AttachmentService_Upload_FullMethodName && g.shut.Load() {
		g.refused.Add(1)
		return nil, status.Error(codes.Unavailable, "test: the link dropped before the file")
	}
	return streamer(ctx, desc, cc, method, opts...)
}

// attachmentOf returns the device's view of a record's attachment.
func attachmentOf(t testing.TB, d *syncer.Device, id, sha string) *syncer.Attachment {
	t.Helper()
	for _, a := range must[[]*syncer.Attachment](t)(d.Attachments(id)) {
		if a.SHA256 == sha {
			return a
		}
	}
	t.Fatalf("record %s does not show file %s on the device", id, sha)
	return nil
}

// A mediator photographs the signed agreement of a dispute while offline
// (人民調解協議書). Their sync sends the dispute, but the link drops before
// the file: the other mediator's phone gets the dispute first, showing
// the photo as "remote", and cannot fetch it yet (retry later, not an
// error of the record). Once the first phone uploads the file, the other
// fetches it on demand and holds the same bytes. HQ sees the reference
// in the export and in the changelog (the hash, size and type, not the
// bytes) and the bytes in the server's store; a phone of another village
// is refused the file, through its own device and through a raw Fetch.
func TestPhotoAttachedOfflineReachesOtherMediatorThenHQ(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	gate := &uploadGate{}
	gate.shut.Store(true)
	a := e.Device(testenv.Mediator, func(o *syncer.Options) {
		o.DialOptions = append(o.DialOptions, grpc.WithChainStreamInterceptor(gate.intercept))
	})
	b := e.Device(testenv.Mediator2)
	out := e.Device(testenv.Outsider)
	syncAll(t, a, b, out)

	// Offline: a new dispute and its photo, neither sent.
	id := must[string](t)(a.Create("dispute", syncer.NewFields().Set("category", "dispute").
		Set("title", "宅基地邊界糾紛").Set("parties", "張大山；錢秋菊").Set("occurred_on", "2026-12-01").
		Set("mediators", testenv.Mediator+","+testenv.Mediator2)))
	pic := agreementPhoto(t, 15)
	caption := "人民調解協議書（雙方簽字）"
	sha := must[string](t)(a.Attach(id, "image/jpeg", caption, pic))
	if got := attachmentOf(t, a, id, sha); got.State != "pending" {
		t.Fatalf("attached offline: state %q, want pending", got.State)
	}

	// The sync sends the dispute; the file does not get through.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	_, err := a.Sync(ctx)
	cancel()
	if err != nil {
		t.Logf("the first phone's sync with the file held back: %v", err)
	}
	rec := serverRecord(t, e, id)
	if len(rec.GetAttachments()) != 1 || rec.GetAttachments()[0].GetSha256() != sha {
		t.Fatalf("the server's dispute names %v, want the photo %s", rec.GetAttachments(), sha)
	}
	if gate.refused.Load() == 0 {
		t.Fatalf("the first phone never tried to upload the file after its sync")
	}
	if got := attachmentOf(t, a, id, sha); got.State == "uploaded" {
		t.Fatalf("the file shows uploaded though no upload got through")
	}

	if got := serverFile(t, e, sha); got != nil {
		t.Fatalf("the server holds the file whole though no upload got through")
	}

	// The record reaches the other mediator before the file.
	testenv.Sync(t, b)
	if got := attachmentOf(t, b, id, sha); got.State != "remote" || got.Size != int64(len(pic)) || got.MediaType != "image/jpeg" || got.Caption != caption {
		t.Fatalf("the other mediator sees %+v, want the reference, remote", got)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	err = b.FetchAttachment(ctx, id, sha)
	cancel()
	if err == nil {
		t.Fatalf("fetched a file the server does not hold yet")
	}
	t.Logf("fetch before the upload: %v", err)
	if got := attachmentOf(t, b, id, sha); got.State != "remote" || got.Held != 0 {
		t.Fatalf("after a fetch the server could not serve: %+v, want still remote, nothing held", got)
	}
	if _, err := b.ReadAttachment(sha); err == nil {
		t.Fatalf("the other phone reads a file it never fetched")
	}

	// The link is back: the file goes up, and comes down on demand.
	gate.shut.Store(false)
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	_, err = a.UploadPending(ctx)
	cancel()
	ok(t, err)
	if got := attachmentOf(t, a, id, sha); got.State != "uploaded" {
		t.Fatalf("after the upload: state %q, want uploaded", got.State)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	ok(t, b.FetchAttachment(ctx, id, sha))
	cancel()
	if got := must[[]byte](t)(b.ReadAttachment(sha)); !bytes.Equal(got, pic) {
		t.Fatalf("the other mediator holds %d bytes, want the photo's %d, byte for byte", len(got), len(pic))
	}
	if got := attachmentOf(t, b, id, sha); got.State != "local" {
		t.Fatalf("after the fetch: state %q, want local", got.State)
	}

	// HQ: the export and the changelog carry the reference, not the bytes.
	var exported *pb.Record
	for _, r := range export(t, e) {
		if r.GetId() == id {
			exported = r
		}
	}
	if exported == nil {
		t.Fatalf("the export lacks the dispute")
	}
	checkRef(t, "export", exported, sha, int64(len(pic)), caption)
	var logged *pb.Change
	for _, c := range waitStream(t, e) {
		if c.GetRecord().GetId() == id && len(c.GetRecord().GetAttachments()) > 0 {
			logged = c
		}
	}
	if logged == nil {
		t.Fatalf("no change of the changelog carries the dispute with its photo")
	}
	checkRef(t, "changelog", logged.GetRecord(), sha, int64(len(pic)), caption)
	if n := proto.Size(logged); n > 8<<10 {
		t.Fatalf("the changelog's message is %d bytes for a %d-byte photo: it carries more than a reference", n, len(pic))
	}
	if got := serverFile(t, e, sha); !bytes.Equal(got, pic) {
		t.Fatalf("the server's store holds %d bytes, want the photo's %d", len(got), len(pic))
	}

	// A phone of the other village: its device refuses, and so does the
	// server when asked directly.
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	err = out.FetchAttachment(ctx, id, sha)
	cancel()
	if err == nil {
		t.Fatalf("a phone of another village fetched the photo")
	}
	if _, err := out.ReadAttachment(sha); err == nil {
		t.Fatalf("a phone of another village holds the photo")
	}
	token := rawToken(t, e, testenv.Outsider)
	ctx, cancel = context.WithTimeout(metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token), 10*time.Second)
	defer cancel()
	stream, err := pb.NewAttachmentServiceClient(e.Conn()).Fetch(ctx, &pb.FetchRequest{RecordId: id, Sha256: sha})
	if err == nil {
		var got int
		for {
			var resp *pb.FetchResponse
			resp, err = stream.Recv()
			if err != nil {
				break
			}
			got += len(resp.GetChunk().GetData())
		}
		if errors.Is(err, io.EOF) {
			t.Fatalf("the server streamed %d bytes of the photo to a phone of another village", got)
		}
	}
	if c := status.Code(err); c != codes.PermissionDenied && c != codes.NotFound {
		t.Fatalf("an out-of-scope Fetch: %v, want PERMISSION_DENIED or NOT_FOUND", err)
	}
}

// checkRef checks a record carries the photo's reference as attached.
func checkRef(t testing.TB, where string, r *pb.Record, sha string, size int64, caption string) {
	t.Helper()
	if len(r.GetAttachments()) != 1 {
		t.Fatalf("%s: the dispute carries %d attachments, want 1", where, len(r.GetAttachments()))
	}
	a := r.GetAttachments()[0]
	if a.GetSha256() != sha || a.GetSize() != size || a.GetMediaType() != "image/jpeg" || a.GetCaption() != caption ||
		a.GetAuthorId() != testenv.Mediator || a.GetHlc() == "" {
		t.Fatalf("%s: reference %v, want %s, %d bytes, image/jpeg, by %s", where, a, sha, size, testenv.Mediator)
	}
}

// rawToken enrolls a bare credential for userID through the Enroll RPC.
func rawToken(t testing.TB, e *testenv.Env, userID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(ctx, &pb.EnrollRequest{Code: e.Secret(userID), DeviceName: "raw " + userID})
	ok(t, err)
	return resp.GetToken()
}

// serverFile reads a whole file from the server's file store
// (attachments.db), as the HQ page does; nil if the store lacks it whole.
func serverFile(t testing.TB, e *testenv.Env, sha string) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := e.Daemon.Files.CopyFile(t.Context(), sha, 0, &b); err != nil {
		t.Logf("the server's store: file %s: %v", sha, err)
		return nil
	}
	return b.Bytes()
}
