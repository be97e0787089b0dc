package e2e

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/jpeg"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/hq/web"
	"github.com/fieldsync/fieldsync/internal/syncd"
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
// fetches it on demand and holds the same bytes. HQ's page lists the
// photo as soon as the record is in, serves no bytes until the upload,
// then the photo byte for byte and a 160 px thumbnail; the export and the
// changelog carry the reference (hash, size, type), not the bytes. A
// phone of another village is refused the file, through its own device
// and through a raw Fetch.
func TestPhotoAttachedOfflineReachesOtherMediatorThenHQ(t *testing.T) {
	var applied atomic.Uint64
	e := testenv.Start(t, testenv.WithSyncdConfig(func(c *syncd.Config) {
		c.HQListen = "127.0.0.1:0"
		c.HQApplied = func(seq uint64) { applied.Store(seq) }
	}))
	defer func() {
		// syncd's follower's last pull keeps a goroutine of nats.go for up
		// to 3s after it stops (as BenchmarkHQFreshnessPage): stop now and
		// wait it out, so that goleak finds nothing.
		e.Stop()
		time.Sleep(3200 * time.Millisecond)
	}()
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

	// HQ's page lists the photo (the reference came with the record) but
	// has no bytes to show yet.
	hq := signInHQ(t, e, &applied)
	if body := hq.get("/p/files?record="+id+"&lang=en", http.StatusOK); !strings.Contains(body, caption) || !strings.Contains(body, "/f/"+id+"/"+sha) {
		t.Fatalf("HQ's files page for the dispute lacks the photo:\n%s", body)
	}
	hq.get("/f/"+id+"/"+sha, http.StatusNotFound)

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
	t.Logf("a %d-byte photo: the changelog's message %d bytes, the exported record %d bytes", len(pic), proto.Size(logged), proto.Size(exported))
	if got := serverFile(t, e, sha); !bytes.Equal(got, pic) {
		t.Fatalf("the server's store holds %d bytes, want the photo's %d", len(got), len(pic))
	}
	// HQ's page: the photo itself, byte for byte, and its thumbnail.
	if got := hq.get("/f/"+id+"/"+sha, http.StatusOK); got != string(pic) {
		t.Fatalf("HQ's page serves %d bytes, want the photo's %d", len(got), len(pic))
	}
	thumb, err := jpeg.Decode(strings.NewReader(hq.get("/f/"+id+"/"+sha+"/thumb", http.StatusOK)))
	if err != nil {
		t.Fatalf("HQ's thumbnail is no JPEG: %v", err)
	}
	if b := thumb.Bounds(); b.Dx() != 160 || b.Dy() != 120 {
		t.Fatalf("HQ's thumbnail is %d×%d, want 160×120 (the 480×360 photo scaled down)", b.Dx(), b.Dy())
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

// hqPage is a signed-in session of HQ's web page.
type hqPage struct {
	t      testing.TB
	base   string
	client *http.Client
}

// signInHQ signs testenv.HQ in to syncd's HQ page with a one-time code,
// once the page's read model caught up with the server.
func signInHQ(t testing.TB, e *testenv.Env, applied *atomic.Uint64) *hqPage {
	t.Helper()
	h := e.Daemon.HQ
	if h == nil {
		t.Fatal("testenv with HQListen: no HQ page")
	}
	last, err := e.Store.LastSeq(t.Context())
	ok(t, err)
	testenv.WaitFor(t, 30*time.Second, "syncd's HQ model to apply every change", func() bool { return applied.Load() >= last })
	code, err := web.IssueCode(t.Context(), filepath.Join(e.Dir, "hq", syncd.HQWebFile), h.Model.DB(), testenv.HQ, time.Hour, "attachments e2e")
	ok(t, err)
	jar, _ := cookiejar.New(nil)
	p := &hqPage{t: t, base: h.URL, client: &http.Client{Jar: jar, Timeout: 20 * time.Second}}
	t.Cleanup(p.client.CloseIdleConnections)
	form := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(p.get("/signin", http.StatusOK))
	if form == nil {
		t.Fatal("the sign-in form has no csrf field")
	}
	resp, err := p.client.PostForm(h.URL+"/signin", url.Values{"csrf": {form[1]}, "person": {testenv.HQ}, "code": {code}})
	ok(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/p/coverage" {
		t.Fatalf("sign-in ended at %s with %s, want /p/coverage", resp.Request.URL, resp.Status)
	}
	return p
}

// get GETs path and checks the status; it returns the body.
func (p *hqPage) get(path string, want int) string {
	p.t.Helper()
	resp, err := p.client.Get(p.base + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		p.t.Fatalf("GET %s: %s, want %d\n%.500s", path, resp.Status, want, body)
	}
	return string(body)
}
