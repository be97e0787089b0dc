package server_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
)

// The AttachmentService through a raw gRPC client (no device-side checks):
// a real syncd (internal/testenv: attachments.db beside fieldsync.db), real
// SQLite, real gRPC over TLS.

// fileOf makes n bytes that sniff as media type mt (random after the
// header, so that each file is distinct).
func fileOf(t *testing.T, mt string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	var head []byte
	switch mt {
	case "image/jpeg":
		head = []byte("\xFF\xD8\xFF\xE0\x00\x10JFIF\x00")
	case "image/png":
		head = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	case "application/pdf":
		head = []byte("%PDF-1.7\n")
	case "exe":
		head = []byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00")
	default:
		t.Fatalf("fileOf %s", mt)
	}
	copy(b, head)
	return b
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func refOf(data []byte, mt string) *pb.Attachment {
	return &pb.Attachment{Sha256: shaOf(data), Size: int64(len(data)), MediaType: mt, Caption: "調解協議書"}
}

// attach pushes an OP_ATTACH of data (claimed as mt) to record id.
func (p *rawPhone) attach(id string, k pb.Kind, data []byte, mt string) {
	p.t.Helper()
	p.mustApply("attach", &pb.Mutation{RecordId: id, Kind: k, Op: pb.Op_OP_ATTACH, Attachment: refOf(data, mt)})
}

func (p *rawPhone) files() pb.AttachmentServiceClient {
	return pb.NewAttachmentServiceClient(p.e.Conn())
}

// upload is one Upload call of a raw client.
type upload struct {
	t      *testing.T
	stream pb.AttachmentService_UploadClient
	cancel context.CancelFunc
	data   []byte
	sent   int64 // chunk bytes sent
}

// startUpload opens an Upload and sends its start; it returns the first
// answer (or the error that ended the call).
func (p *rawPhone) startUpload(recordID string, data []byte, mt string) (*upload, *pb.UploadResponse, error) {
	p.t.Helper()
	return p.startUploadAs(&pb.UploadStart{RecordId: recordID, Sha256: shaOf(data), Size: int64(len(data)), MediaType: mt}, data)
}

func (p *rawPhone) startUploadAs(start *pb.UploadStart, data []byte) (*upload, *pb.UploadResponse, error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	p.t.Cleanup(cancel)
	stream, err := p.files().Upload(ctx)
	if err != nil {
		p.t.Fatalf("open upload: %v", err)
	}
	u := &upload{t: p.t, stream: stream, cancel: cancel, data: data}
	if err := stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Start{Start: start}}); err != nil {
		p.t.Fatalf("send start: %v", err)
	}
	resp, err := stream.Recv()
	return u, resp, err
}

// chunk sends the chunk of u's file at off (up to ChunkBytes) with its
// hash, and returns the server's answer.
func (u *upload) chunk(off int64) (*pb.UploadResponse, error) {
	end := min(off+domain.ChunkBytes, int64(len(u.data)))
	return u.raw(&pb.Chunk{Offset: off, Data: u.data[off:end], Sha256: sum(u.data[off:end])})
}

func (u *upload) raw(c *pb.Chunk) (*pb.UploadResponse, error) {
	if err := u.stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Chunk{Chunk: c}}); err != nil {
		_, err = u.stream.Recv() // the server's reason
		return nil, err
	}
	u.sent += int64(len(c.GetData()))
	return u.stream.Recv()
}

// rest sends the file from stored to its end, a chunk at a time after
// each answer, and returns the last answer.
func (u *upload) rest(stored int64) *pb.UploadResponse {
	u.t.Helper()
	for {
		resp, err := u.chunk(stored)
		if err != nil {
			u.t.Fatalf("chunk at %d: %v", stored, err)
		}
		if resp.GetComplete() {
			return resp
		}
		if resp.GetStored() <= stored {
			u.t.Fatalf("chunk at %d answered stored %d", stored, resp.GetStored())
		}
		stored = resp.GetStored()
	}
}

func sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// fetch reads a file from offset through Fetch.
func (p *rawPhone) fetch(recordID, sha string, offset int64) ([]*pb.FetchResponse, []byte, error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	stream, err := p.files().Fetch(ctx, &pb.FetchRequest{RecordId: recordID, Sha256: sha, Offset: offset})
	if err != nil {
		return nil, nil, err
	}
	var msgs []*pb.FetchResponse
	var data []byte
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return msgs, data, nil
		}
		if err != nil {
			return msgs, data, err
		}
		if c := m.GetChunk(); c != nil {
			if !bytes.Equal(c.GetSha256(), sum(c.GetData())) {
				p.t.Fatalf("fetched chunk at %d: its sha256 does not match its data", c.GetOffset())
			}
			if want := offset + int64(len(data)); c.GetOffset() != want {
				p.t.Fatalf("fetched chunk at %d, want %d", c.GetOffset(), want)
			}
			data = append(data, c.GetData()...)
		}
		msgs = append(msgs, m)
	}
}

// wantStatus fails unless err is a status with code whose message starts
// with field; for INVALID_ARGUMENT its BadRequest detail names the field.
func wantStatus(t *testing.T, what string, err error, code codes.Code, field string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || !strings.HasPrefix(st.Message(), field+": ") {
		t.Fatalf("%s: %v, want %v starting with %q", what, err, code, field+": ")
	}
	if code == codes.InvalidArgument {
		found := false
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 && br.GetFieldViolations()[0].GetField() == field {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no BadRequest detail naming %s in %v", what, field, st.Details())
		}
	}
	t.Logf("%s: %v", what, err)
}

// newDispute makes a dispute mediated by Mediator and Mediator2.
func newDispute(p *rawPhone) string {
	id := newID()
	p.mustApply("dispute", create(id, pb.Kind_KIND_DISPUTE, map[string]string{"village_id": testenv.Village, "category": "quarrel",
		"title": "宅基地邊界糾紛", "mediators": testenv.Mediator + "," + testenv.Mediator2}))
	return id
}

func filesEnv(t *testing.T, opts ...testenv.Option) *testenv.Env {
	e := testenv.Start(t, opts...)
	e.ImportSample()
	return e
}

// An upload cut off after three chunks resumes at the fourth: each chunk
// is stored once, the bytes sent add up to the file's size, the device's
// daily count is the file's size; the file then fetches whole and from an
// offset.
func TestUploadResumesAfterCut(t *testing.T) {
	e := filesEnv(t)
	med := newRawPhone(t, e, testenv.Mediator)
	d := newDispute(med)
	data := fileOf(t, "image/jpeg", 7*domain.ChunkBytes+1234)
	med.attach(d, pb.Kind_KIND_DISPUTE, data, "image/jpeg")

	u, first, err := med.startUpload(d, data, "image/jpeg")
	if err != nil || first.GetStored() != 0 || first.GetComplete() {
		t.Fatalf("start: %v %v, want stored 0", first, err)
	}
	var stored int64
	for range 3 {
		resp, err := u.chunk(stored)
		if err != nil {
			t.Fatal(err)
		}
		stored = resp.GetStored()
	}
	u.cancel() // the link drops
	sent := u.sent

	u2, resp, err := med.startUpload(d, data, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStored() != 3*domain.ChunkBytes || resp.GetComplete() {
		t.Fatalf("resumed start answered %v, want stored %d", resp, 3*domain.ChunkBytes)
	}
	if last := u2.rest(resp.GetStored()); last.GetStored() != int64(len(data)) {
		t.Fatalf("last answer %v, want stored %d", last, len(data))
	}
	if total := sent + u2.sent; total != int64(len(data)) {
		t.Errorf("sent %d bytes over two uploads, want exactly the file's %d (each chunk once)", total, len(data))
	}
	fi, err := e.Daemon.Files.Stat(t.Context(), shaOf(data))
	if err != nil || !fi.Complete || fi.Stored != int64(len(data)) || fi.MediaType != "image/jpeg" {
		t.Fatalf("stored file %+v %v", fi, err)
	}
	used, _, err := e.Daemon.Files.FileBytesToday(t.Context(), deviceIDOf(t, e, testenv.Mediator), e.Server.QuotaDay())
	if err != nil || used != int64(len(data)) {
		t.Errorf("device's file bytes today %d (%v), want %d: each chunk counted once", used, err, len(data))
	}

	msgs, got, err := med.fetch(d, shaOf(data), 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch: %d bytes, %v; want the file", len(got), err)
	}
	if msgs[0].GetSize() != int64(len(data)) || msgs[0].GetMediaType() != "image/jpeg" {
		t.Errorf("first fetch answer says size %d type %q", msgs[0].GetSize(), msgs[0].GetMediaType())
	}
	const from = 100_001 // inside the fourth chunk
	msgs, got, err = med.fetch(d, shaOf(data), from)
	if err != nil || !bytes.Equal(got, data[from:]) {
		t.Fatalf("fetch from %d: %d bytes, %v; want the file's last %d", from, len(got), err, len(data)-from)
	}
	if msgs[0].GetChunk().GetOffset() != from || msgs[0].GetSize() != int64(len(data)) {
		t.Errorf("first answer from %d: offset %d size %d", from, msgs[0].GetChunk().GetOffset(), msgs[0].GetSize())
	}
	_, _, err = med.fetch(d, shaOf(data), int64(len(data))+1)
	wantStatus(t, "fetch past the end", err, codes.OutOfRange, "offset")
}

// deviceIDOf finds the device a user enrolled (each test user has one).
func deviceIDOf(t *testing.T, e *testenv.Env, user string) string {
	t.Helper()
	admin, ctx := e.Admin()
	resp, err := admin.ListDevices(ctx, &pb.ListDevicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.GetDevices() {
		if d.GetUserId() == user {
			return d.GetId()
		}
	}
	t.Fatalf("no device of %s", user)
	return ""
}

// A file complete on the server answers complete at once through a record
// it was proven for, whichever device asks: it is never sent twice there.
// Through another record the device must prove it holds the bytes: a
// SHA-256 learnt somewhere (a log, a shared photo's hash) attached to a
// record of one's own must not open the file. The proof is an HMAC keyed
// by the server's challenge, or (an older app) the whole file sent again,
// hashed and never stored.
func TestUploadOfFileOnServerAnswersCompleteAtOnce(t *testing.T) {
	e := filesEnv(t)
	med, med2 := newRawPhone(t, e, testenv.Mediator), newRawPhone(t, e, testenv.Mediator2)
	d1, d2, d3 := newDispute(med), newDispute(med2), newDispute(med2)
	data := fileOf(t, "application/pdf", 3*domain.ChunkBytes)
	sha := shaOf(data)
	med.attach(d1, pb.Kind_KIND_DISPUTE, data, "application/pdf")
	med2.attach(d2, pb.Kind_KIND_DISPUTE, data, "application/pdf")
	med2.attach(d3, pb.Kind_KIND_DISPUTE, data, "application/pdf")
	u, resp, err := med.startUpload(d1, data, "application/pdf")
	if err != nil {
		t.Fatal(err)
	}
	u.rest(resp.GetStored())
	for _, c := range []struct {
		p  *rawPhone
		id string
	}{{med, d1}, {med2, d1}} {
		u, resp, err := c.p.startUpload(c.id, data, "application/pdf")
		if err != nil || !resp.GetComplete() || resp.GetStored() != int64(len(data)) || len(resp.GetChallenge()) != 0 {
			t.Fatalf("start for %s: %v %v, want complete at once", c.id, resp, err)
		}
		if _, err := u.stream.Recv(); err != io.EOF {
			t.Errorf("after complete the server ends the upload; got %v", err)
		}
	}

	// d2 names the file by its hash only: not fetchable, and its upload
	// is challenged.
	if _, _, err := med2.fetch(d2, sha, 0); status.Code(err) != codes.NotFound {
		t.Fatalf("fetch through a record whose reference is not proven: %v, want NotFound", err)
	}
	u2, resp, err := med2.startUpload(d2, data, "application/pdf")
	if err != nil || resp.GetComplete() || len(resp.GetChallenge()) != 32 {
		t.Fatalf("start for an unproven record: %v %v, want a 32-byte challenge", resp, err)
	}
	wrong := hmac.New(sha256.New, resp.GetChallenge())
	wrong.Write([]byte(sha)) // what one who knows only the hash can compute
	if err := u2.stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Proof{Proof: wrong.Sum(nil)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := u2.stream.Recv(); status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "proof") {
		t.Fatalf("a wrong proof: %v, want PermissionDenied naming proof", err)
	}
	if _, _, err := med2.fetch(d2, sha, 0); status.Code(err) != codes.NotFound {
		t.Fatalf("fetch after a wrong proof: %v, want NotFound", err)
	}
	// A proof made with an old challenge does not answer a new one.
	old := resp.GetChallenge()
	u2, resp, err = med2.startUpload(d2, data, "application/pdf")
	if err != nil || len(resp.GetChallenge()) != 32 || bytes.Equal(resp.GetChallenge(), old) {
		t.Fatalf("second start: %v %v, want a new challenge", resp, err)
	}
	mac := hmac.New(sha256.New, resp.GetChallenge())
	mac.Write(data)
	if err := u2.stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Proof{Proof: mac.Sum(nil)}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := u2.stream.Recv(); err != nil || !resp.GetComplete() {
		t.Fatalf("the right proof: %v %v, want complete", resp, err)
	}
	if _, got, err := med2.fetch(d2, sha, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch after the proof: %d bytes, %v", len(got), err)
	}
	// Proven for good: the next start is complete at once.
	if _, resp, err := med2.startUpload(d2, data, "application/pdf"); err != nil || !resp.GetComplete() {
		t.Fatalf("start after the proof: %v %v, want complete at once", resp, err)
	}

	// An app that does not know challenges sends the whole file again:
	// hashed as it comes, that proves d3; other bytes do not.
	u3, resp, err := med2.startUpload(d3, data, "application/pdf")
	if err != nil || len(resp.GetChallenge()) == 0 {
		t.Fatalf("start for d3: %v %v, want a challenge", resp, err)
	}
	forged := append([]byte(nil), data...)
	forged[len(forged)-1] ^= 1
	u3.data = forged
	var last *pb.UploadResponse
	for off := int64(0); off < int64(len(forged)); off += domain.ChunkBytes {
		if last, err = u3.chunk(off); err != nil {
			break
		}
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("other bytes sent again: %v %v, want PermissionDenied", last, err)
	}
	u3, _, _ = med2.startUpload(d3, data, "application/pdf")
	if last := u3.rest(0); !last.GetComplete() {
		t.Fatalf("the whole file sent again: %v, want complete", last)
	}
	if _, got, err := med2.fetch(d3, sha, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch through d3 after the file was sent again: %d bytes, %v", len(got), err)
	}
}

// A damaged chunk is refused naming chunk.sha256 and not stored; the
// upload resumes after it and completes.
func TestCorruptedChunkRefusedAndResumable(t *testing.T) {
	e := filesEnv(t)
	med := newRawPhone(t, e, testenv.Mediator)
	d := newDispute(med)
	data := fileOf(t, "image/png", 4*domain.ChunkBytes)
	med.attach(d, pb.Kind_KIND_DISPUTE, data, "image/png")
	u, _, err := med.startUpload(d, data, "image/png")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.chunk(0); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(data[domain.ChunkBytes : 2*domain.ChunkBytes])
	bad[100] ^= 0xFF
	_, err = u.raw(&pb.Chunk{Offset: domain.ChunkBytes, Data: bad, Sha256: sum(data[domain.ChunkBytes : 2*domain.ChunkBytes])})
	wantStatus(t, "damaged chunk", err, codes.InvalidArgument, "chunk.sha256")

	u2, resp, err := med.startUpload(d, data, "image/png")
	if err != nil || resp.GetStored() != domain.ChunkBytes {
		t.Fatalf("resume: %v %v, want stored %d (the damaged chunk not stored)", resp, err, domain.ChunkBytes)
	}
	u2.rest(resp.GetStored())
	_, got, err := med.fetch(d, shaOf(data), 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch after the resumed upload: %v", err)
	}
}

// Too large, a chunk past the file's end, a type other than claimed (a
// PNG claimed as a PDF, a program claimed as a photo, caught at the first
// chunk or, when the first chunk is too small to tell, at the end) are
// refused naming the field; a file that did not check out is dropped.
func TestUploadRefusesBadFiles(t *testing.T) {
	e := filesEnv(t)
	med := newRawPhone(t, e, testenv.Mediator)
	d := newDispute(med)

	// Too large: the reference is refused at the push, the start too.
	big := &pb.Attachment{Sha256: strings.Repeat("ab", 32), Size: domain.MaxAttachmentBytes + 1, MediaType: "image/jpeg"}
	med.mustRefuse("attach too large", &pb.Mutation{RecordId: d, Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_ATTACH, Attachment: big}, domain.CodeInvalidField, "attachment.size")
	_, _, err := med.startUploadAs(&pb.UploadStart{RecordId: d, Sha256: big.Sha256, Size: big.Size, MediaType: "image/jpeg"}, nil)
	wantStatus(t, "start too large", err, codes.InvalidArgument, "start.size")

	// A start that claims another size than the record's reference.
	small := fileOf(t, "image/jpeg", 1000)
	med.attach(d, pb.Kind_KIND_DISPUTE, small, "image/jpeg")
	_, _, err = med.startUploadAs(&pb.UploadStart{RecordId: d, Sha256: shaOf(small), Size: 999, MediaType: "image/jpeg"}, nil)
	wantStatus(t, "start with another size than the reference", err, codes.InvalidArgument, "start.size")

	// More bytes than the file has.
	u, _, err := med.startUpload(d, small, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	long := append(bytes.Clone(small), 1, 2, 3)
	_, err = u.raw(&pb.Chunk{Offset: 0, Data: long, Sha256: sum(long)})
	wantStatus(t, "chunk past the end", err, codes.InvalidArgument, "chunk.data")

	// A PNG's bytes claimed as a PDF: refused at the first chunk.
	png := fileOf(t, "image/png", 2*domain.ChunkBytes)
	med.attach(d, pb.Kind_KIND_DISPUTE, png, "application/pdf")
	u, _, err = med.startUpload(d, png, "application/pdf")
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.chunk(0)
	wantStatus(t, "PNG claimed as PDF", err, codes.InvalidArgument, "chunk.data")
	if !strings.Contains(err.Error(), "image/png, not application/pdf") {
		t.Errorf("message does not say what the bytes are: %v", err)
	}

	// A program claimed as a photo.
	exe := fileOf(t, "exe", 5000)
	med.attach(d, pb.Kind_KIND_DISPUTE, exe, "image/jpeg")
	u, _, err = med.startUpload(d, exe, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.chunk(0)
	wantStatus(t, "program claimed as JPEG", err, codes.InvalidArgument, "chunk.data")
	if !strings.Contains(err.Error(), "Windows program") {
		t.Errorf("message does not say what the bytes are: %v", err)
	}

	// Sent in chunks too small to tell at the first: caught at the end,
	// and the bytes are dropped.
	png2 := fileOf(t, "image/png", 1000)
	med.attach(d, pb.Kind_KIND_DISPUTE, png2, "image/jpeg")
	u, _, err = med.startUpload(d, png2, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	var resp *pb.UploadResponse
	for off := 0; off < len(png2); off += 100 {
		if resp, err = u.raw(&pb.Chunk{Offset: int64(off), Data: png2[off : off+100], Sha256: sum(png2[off : off+100])}); err != nil {
			break
		}
	}
	wantStatus(t, "PNG claimed as JPEG in small chunks", err, codes.InvalidArgument, "start.media_type")
	_ = resp
	if _, err := e.Daemon.Files.Stat(t.Context(), shaOf(png2)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a file that did not check out is kept: %v", err)
	}
	// None of them blocks the next file.
	ok := fileOf(t, "image/jpeg", 2*domain.ChunkBytes)
	med.attach(d, pb.Kind_KIND_DISPUTE, ok, "image/jpeg")
	u, resp, err = med.startUpload(d, ok, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	if last := u.rest(resp.GetStored()); !last.GetComplete() {
		t.Fatalf("good file after the bad ones: %v", last)
	}
}

// Scope: a record outside the caller's scope, a record that does not
// name the file, and an unknown record are refused, for Upload and Fetch;
// a chunk out of order is refused.
func TestUploadAndFetchScope(t *testing.T) {
	e := filesEnv(t)
	med, member, outsider := newRawPhone(t, e, testenv.Mediator), newRawPhone(t, e, testenv.Member), newRawPhone(t, e, testenv.Outsider)
	d := newDispute(med)
	data := fileOf(t, "image/jpeg", 3*domain.ChunkBytes)
	med.attach(d, pb.Kind_KIND_DISPUTE, data, "image/jpeg")

	_, _, err := member.startUpload(d, data, "image/jpeg")
	wantStatus(t, "member uploads to a dispute", err, codes.PermissionDenied, "start.record_id")
	other := fileOf(t, "image/jpeg", 2000)
	_, _, err = med.startUpload(d, other, "image/jpeg")
	wantStatus(t, "file the record does not name", err, codes.FailedPrecondition, "start.sha256")
	_, _, err = med.startUpload(newID(), data, "image/jpeg")
	wantStatus(t, "unknown record", err, codes.NotFound, "start.record_id")

	u, _, err := med.startUpload(d, data, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.chunk(domain.ChunkBytes)
	wantStatus(t, "chunk out of order", err, codes.OutOfRange, "chunk.offset")

	_, _, err = med.fetch(d, shaOf(data), 0)
	wantStatus(t, "fetch before the upload", err, codes.NotFound, "sha256")
	u, resp, err := med.startUpload(d, data, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	u.rest(resp.GetStored())

	_, _, err = member.fetch(d, shaOf(data), 0)
	wantStatus(t, "member fetches a dispute's file", err, codes.PermissionDenied, "record_id")
	_, _, err = outsider.fetch(d, shaOf(data), 0)
	wantStatus(t, "outsider fetches", err, codes.PermissionDenied, "record_id")
	// A record of the member's own that does not name the file does not
	// open it either.
	visit := newID()
	member.mustApply("visit", create(visit, pb.Kind_KIND_VISIT, map[string]string{"household_id": "H001", "visited_on": "2026-12-01"}))
	_, _, err = member.fetch(visit, shaOf(data), 0)
	wantStatus(t, "fetch through a record not naming the file", err, codes.FailedPrecondition, "sha256")
	// The other mediator of the case fetches it; so does HQ.
	med2 := newRawPhone(t, e, testenv.Mediator2)
	if _, got, err := med2.fetch(d, shaOf(data), 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("co-mediator's fetch: %v", err)
	}
	hq := newRawPhone(t, e, testenv.HQ)
	if _, got, err := hq.fetch(d, shaOf(data), 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("HQ's fetch: %v", err)
	}
}

// OP_ATTACH's scope on the server: as for a note on the record.
func TestAttachScope(t *testing.T) {
	e := filesEnv(t)
	member, member2, sec, med := newRawPhone(t, e, testenv.Member), newRawPhone(t, e, testenv.Member2), newRawPhone(t, e, testenv.Secretary), newRawPhone(t, e, testenv.Mediator)
	photo := refOf(fileOf(t, "image/jpeg", 100), "image/jpeg")
	at := func(id string, k pb.Kind) *pb.Mutation {
		return &pb.Mutation{RecordId: id, Kind: k, Op: pb.Op_OP_ATTACH, Attachment: photo}
	}
	need := newID()
	sec.mustApply("secretary's need of H001", create(need, pb.Kind_KIND_NEED, map[string]string{"village_id": testenv.Village, "category": "housing", "summary": "漏雨", "household_id": "H001"}))
	member.mustApply("member linked to H001 attaches a photo to its need", at(need, pb.Kind_KIND_NEED))
	member2.mustRefuse("member not linked to H001", at(need, pb.Kind_KIND_NEED), domain.CodePermissionDenied, "need")
	sec.mustApply("secretary attaches", at(need, pb.Kind_KIND_NEED))
	d := newDispute(med)
	member.mustRefuse("member attaches to a dispute", at(d, pb.Kind_KIND_DISPUTE), domain.CodePermissionDenied, "dispute.attachments")
	visit := newID()
	member.mustApply("visit", create(visit, pb.Kind_KIND_VISIT, map[string]string{"household_id": "H001", "visited_on": "2026-12-01"}))
	member2.mustRefuse("member2 attaches to member's visit", at(visit, pb.Kind_KIND_VISIT), domain.CodePermissionDenied, "visit")
	member.mustApply("author attaches to the visit", at(visit, pb.Kind_KIND_VISIT))
	if got := stored(t, e, visit).GetAttachments(); len(got) != 1 || got[0].GetSha256() != photo.GetSha256() || got[0].GetCaption() != "調解協議書" {
		t.Fatalf("visit's attachments %v", got)
	}
}

// The daily file quota: the chunk that reaches it is stored, the next is
// refused with ResourceExhausted, RetryInfo and ErrorInfo; uploads per
// device are bounded, and a new upload of the same file takes the old
// one's place.
func TestFileQuotaAndUploadSlots(t *testing.T) {
	e := filesEnv(t, testenv.WithServerConfig(func(c *server.Config) { c.FileQuota = 2 * domain.ChunkBytes }))
	med := newRawPhone(t, e, testenv.Mediator)
	d := newDispute(med)
	data := fileOf(t, "image/jpeg", 4*domain.ChunkBytes)
	med.attach(d, pb.Kind_KIND_DISPUTE, data, "image/jpeg")
	u, _, err := med.startUpload(d, data, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < 2*domain.ChunkBytes; off += domain.ChunkBytes {
		if _, err := u.chunk(off); err != nil {
			t.Fatal(err)
		}
	}
	_, err = u.chunk(2 * domain.ChunkBytes)
	st := status.Convert(err)
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
	if st.Code() != codes.ResourceExhausted || retry == nil || retry.GetRetryDelay().AsDuration() <= 0 || info.GetReason() != server.QuotaReason || info.GetMetadata()["quota"] != server.FileQuotaName {
		t.Fatalf("over the file quota: %v (details %v)", err, st.Details())
	}
	t.Logf("over the quota: %v", err)
	_, _, err = med.startUpload(d, data, "image/jpeg")
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("start over the quota: %v", err)
	}

	// Slots: quota off for this part.
	e2 := filesEnv(t, testenv.WithServerConfig(func(c *server.Config) { c.FileQuota = -1 }))
	med = newRawPhone(t, e2, testenv.Mediator)
	d = newDispute(med)
	var fs [3][]byte
	for i := range fs {
		fs[i] = fileOf(t, "image/jpeg", 2*domain.ChunkBytes)
		med.attach(d, pb.Kind_KIND_DISPUTE, fs[i], "image/jpeg")
	}
	u0, _, err := med.startUpload(d, fs[0], "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := med.startUpload(d, fs[1], "image/jpeg"); err != nil {
		t.Fatal(err)
	}
	_, _, err = med.startUpload(d, fs[2], "image/jpeg")
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third upload at once: %v, want ResourceExhausted", err)
	}
	// The same file again (its link dropped, the device began anew): the
	// old upload ends, the new one goes on.
	u0b, resp, err := med.startUpload(d, fs[0], "image/jpeg")
	if err != nil {
		t.Fatalf("same file again: %v", err)
	}
	if _, err := u0.chunk(0); status.Code(err) != codes.Aborted {
		t.Errorf("the replaced upload: %v, want Aborted", err)
	}
	if last := u0b.rest(resp.GetStored()); !last.GetComplete() {
		t.Fatalf("replacing upload: %v", last)
	}
}

// What an upload stored survives a restart of syncd: the upload resumes
// where it stopped. A file whose bytes were all in when the server
// stopped, before its check, is checked and completed at the next start
// of an upload.
func TestUploadResumesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e := filesEnv(t, testenv.WithDir(dir))
	med := newRawPhone(t, e, testenv.Mediator)
	d := newDispute(med)
	data := append([]byte("RIFF\x00\x00\x00\x00WEBPVP8 "), fileOf(t, "image/jpeg", 5*domain.ChunkBytes)[16:]...)
	if domain.SniffType(data) != "image/webp" {
		t.Fatalf("test file sniffs as %q", domain.SniffType(data))
	}
	med.attach(d, pb.Kind_KIND_DISPUTE, data, "image/webp")
	u, _, err := med.startUpload(d, data, "image/webp")
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < 2*domain.ChunkBytes; off += domain.ChunkBytes {
		if _, err := u.chunk(off); err != nil {
			t.Fatal(err)
		}
	}
	// All of a second file's bytes stored, the check not done.
	other := fileOf(t, "image/jpeg", domain.ChunkBytes+7)
	med.attach(d, pb.Kind_KIND_DISPUTE, other, "image/jpeg")
	files := e.Daemon.Files
	if _, err := files.Begin(t.Context(), shaOf(other), int64(len(other)), "image/jpeg"); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(other); off += domain.ChunkBytes {
		if _, err := files.PutChunk(t.Context(), shaOf(other), int64(off), other[off:min(off+domain.ChunkBytes, len(other))], store.FileCharge{Limit: -1}); err != nil {
			t.Fatal(err)
		}
	}
	u.cancel()
	addr, token := e.Addr, e.AdminToken
	e.Stop()

	e2 := testenv.Start(t, testenv.WithDir(dir), testenv.WithAddr(addr), testenv.WithAdminToken(token))
	med2 := *med
	med2.e = e2
	u2, resp, err := med2.startUpload(d, data, "image/webp")
	if err != nil || resp.GetStored() != 2*domain.ChunkBytes {
		t.Fatalf("after the restart: %v %v, want stored %d", resp, err, 2*domain.ChunkBytes)
	}
	u2.rest(resp.GetStored())
	if _, got, err := med2.fetch(d, shaOf(data), 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch after the restart: %v", err)
	}
	// Its bytes are checked and completed at once; whose they were is
	// not known (a server stopped before its check, or another device's
	// upload being checked), so this record is proven by a challenge.
	u3, resp, err := med2.startUpload(d, other, "image/jpeg")
	if err != nil || resp.GetComplete() || len(resp.GetChallenge()) != 32 {
		t.Fatalf("a file all in but unchecked: %v %v, want it checked and this record challenged", resp, err)
	}
	mac := hmac.New(sha256.New, resp.GetChallenge())
	mac.Write(other)
	if err := u3.stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Proof{Proof: mac.Sum(nil)}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := u3.stream.Recv(); err != nil || !resp.GetComplete() {
		t.Fatalf("the proof of a file all in but unchecked: %v %v, want complete", resp, err)
	}
	if fi, err := e2.Daemon.Files.Stat(t.Context(), shaOf(other)); err != nil || !fi.Complete {
		t.Fatalf("stored: %+v %v", fi, err)
	}
}

// Two devices uploading the same file at once (two mediators attached the
// same scan): the bytes are stored once, each device's chunks the other
// already stored are answered without being stored again, and both end
// complete.
func TestSameFileUploadedByTwoDevicesAtOnce(t *testing.T) {
	e := filesEnv(t)
	med, med2 := newRawPhone(t, e, testenv.Mediator), newRawPhone(t, e, testenv.Mediator2)
	d := newDispute(med)
	data := fileOf(t, "application/pdf", 6*domain.ChunkBytes+99)
	med.attach(d, pb.Kind_KIND_DISPUTE, data, "application/pdf")
	med2.attach(d, pb.Kind_KIND_DISPUTE, data, "application/pdf")
	ua, ra, err := med.startUpload(d, data, "application/pdf")
	if err != nil {
		t.Fatal(err)
	}
	ub, rb, err := med2.startUpload(d, data, "application/pdf")
	if err != nil {
		t.Fatal(err)
	}
	// Interleaved: each sends from the stored its last answer gave.
	sa, sb := ra.GetStored(), rb.GetStored()
	var doneA, doneB bool
	for !doneA || !doneB {
		for _, c := range []struct {
			u    *upload
			s    *int64
			done *bool
		}{{ua, &sa, &doneA}, {ub, &sb, &doneB}} {
			if *c.done {
				continue
			}
			resp, err := c.u.chunk(*c.s)
			if err != nil {
				t.Fatalf("chunk at %d: %v", *c.s, err)
			}
			*c.s, *c.done = resp.GetStored(), resp.GetComplete()
		}
	}
	used := func(user string) int64 {
		n, _, err := e.Daemon.Files.FileBytesToday(t.Context(), deviceIDOf(t, e, user), e.Server.QuotaDay())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if a, b := used(testenv.Mediator), used(testenv.Mediator2); a+b != int64(len(data)) {
		t.Errorf("bytes stored for the two devices: %d + %d, want the file's %d once", a, b, len(data))
	}
	if _, got, err := med2.fetch(d, shaOf(data), 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch: %v", err)
	}
}

// A device may send all its chunks and half-close before reading the
// answers: every chunk sent before the half-close is stored, and the
// upload completes (the half-close is taken only after them).
func TestUploadHalfClosedAfterLastChunk(t *testing.T) {
	e := filesEnv(t)
	med := newRawPhone(t, e, testenv.Mediator)
	d := newDispute(med)
	for i := range 5 {
		data := fileOf(t, "image/jpeg", 4*domain.ChunkBytes+i)
		med.attach(d, pb.Kind_KIND_DISPUTE, data, "image/jpeg")
		u, resp, err := med.startUpload(d, data, "image/jpeg")
		if err != nil || resp.GetStored() != 0 {
			t.Fatalf("start: %v %v", resp, err)
		}
		for off := 0; off < len(data); off += domain.ChunkBytes {
			piece := data[off:min(off+domain.ChunkBytes, len(data))]
			if err := u.stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Chunk{Chunk: &pb.Chunk{Offset: int64(off), Data: piece, Sha256: sum(piece)}}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := u.stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		var last *pb.UploadResponse
		for {
			r, err := u.stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("file %d: %v", i, err)
			}
			last = r
		}
		if !last.GetComplete() || last.GetStored() != int64(len(data)) {
			t.Fatalf("file %d: last answer %v, want complete", i, last)
		}
	}
}

// The metrics count the bytes stored (a chunk held already not again),
// the bytes fetched, the refusals by reason and the files completed.
func TestAttachmentMetrics(t *testing.T) {
	opt, url := withMetrics(t, nil)
	e := testenv.Start(t, opt)
	e.ImportSample()
	med := newRawPhone(t, e, testenv.Mediator)
	d := newDispute(med)
	data := fileOf(t, "image/jpeg", 2*domain.ChunkBytes+5)
	med.attach(d, pb.Kind_KIND_DISPUTE, data, "image/jpeg")
	u, _, err := med.startUpload(d, data, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.chunk(0); err != nil {
		t.Fatal(err)
	}
	if _, err := u.chunk(0); err != nil { // held already: answered, not stored
		t.Fatal(err)
	}
	_, err = u.raw(&pb.Chunk{Offset: domain.ChunkBytes, Data: data[domain.ChunkBytes : 2*domain.ChunkBytes], Sha256: sum(data[:10])})
	wantStatus(t, "damaged chunk", err, codes.InvalidArgument, "chunk.sha256")
	u, resp, err := med.startUpload(d, data, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	u.rest(resp.GetStored())
	if _, _, err := med.fetch(d, shaOf(data), 1000); err != nil {
		t.Fatal(err)
	}
	m := scrape(t, url)
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"fieldsync_attachment_bytes_total", "direction", "upload", float64(len(data))},
		{"fieldsync_attachment_bytes_total", "direction", "fetch", float64(len(data) - 1000)},
		{"fieldsync_attachment_refusals_total", "reason", "hash", 1},
		{"fieldsync_attachment_refusals_total", "reason", "order", 0},
	} {
		if got := value(m, c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%s} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
	if got := value(m, "fieldsync_attachment_files_completed_total"); got != 1 {
		t.Errorf("files completed %v, want 1", got)
	}
}

// A revoked device neither uploads nor fetches: the credential check
// refuses it as for a sync (the device wipes its files when told).
func TestRevokedDeviceNeitherUploadsNorFetches(t *testing.T) {
	e := filesEnv(t)
	med := newRawPhone(t, e, testenv.Mediator)
	d := newDispute(med)
	data := fileOf(t, "image/jpeg", domain.ChunkBytes+1)
	med.attach(d, pb.Kind_KIND_DISPUTE, data, "image/jpeg")
	u, resp, err := med.startUpload(d, data, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	u.rest(resp.GetStored())
	admin, ctx := e.Admin()
	if _, err := admin.RevokeDevice(ctx, &pb.RevokeDeviceRequest{DeviceId: deviceIDOf(t, e, testenv.Mediator)}); err != nil {
		t.Fatal(err)
	}
	_, _, err = med.startUpload(d, data, "image/jpeg")
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.HasPrefix(st.Message(), server.ErrRevokedMessage) {
		t.Fatalf("upload by a revoked device: %v", err)
	}
	_, _, err = med.fetch(d, shaOf(data), 0)
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.HasPrefix(st.Message(), server.ErrRevokedMessage) {
		t.Fatalf("fetch by a revoked device: %v", err)
	}
}

// The server receives at most Config.MaxUploads files at once: an upload
// past them waits for a place (no answer to its start), goes on when one
// ends, and is told to retry (ResourceExhausted with RetryInfo) when none
// comes in Config.UploadQueueWait.
func TestUploadsAtOnceAreCappedServerWide(t *testing.T) {
	e := filesEnv(t, testenv.WithServerConfig(func(c *server.Config) {
		c.MaxUploads, c.UploadQueueWait, c.FileQuota = 1, 2*time.Second, -1
	}))
	med, med2 := newRawPhone(t, e, testenv.Mediator), newRawPhone(t, e, testenv.Mediator2)
	d := newDispute(med)
	a, b := fileOf(t, "image/jpeg", 3*domain.ChunkBytes), fileOf(t, "image/png", 2*domain.ChunkBytes)
	med.attach(d, pb.Kind_KIND_DISPUTE, a, "image/jpeg")
	med2.attach(d, pb.Kind_KIND_DISPUTE, b, "image/png")
	ua, ra, err := med.startUpload(d, a, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		u    *upload
		resp *pb.UploadResponse
		err  error
	}
	second := make(chan answer, 1)
	go func() {
		u, resp, err := med2.startUpload(d, b, "image/png")
		second <- answer{u, resp, err}
	}()
	select {
	case got := <-second:
		t.Fatalf("second upload answered while the only place was taken: %v, %v", got.resp, got.err)
	case <-time.After(300 * time.Millisecond):
	}
	if last := ua.rest(ra.GetStored()); !last.GetComplete() {
		t.Fatalf("first upload: %v", last)
	}
	got := <-second
	if got.err != nil {
		t.Fatalf("second upload after the first ended: %v", got.err)
	}
	if last := got.u.rest(got.resp.GetStored()); !last.GetComplete() {
		t.Fatalf("second upload: %v", last)
	}

	// A place held past the wait: the next upload is told to retry.
	c := fileOf(t, "application/pdf", 2*domain.ChunkBytes)
	d2 := newDispute(med)
	med.attach(d2, pb.Kind_KIND_DISPUTE, c, "application/pdf")
	med2.attach(d2, pb.Kind_KIND_DISPUTE, a, "image/jpeg") // complete on the server, not through d2: its challenge reads the file, so it needs a place
	uc, rc, err := med.startUpload(d2, c, "application/pdf")
	if err != nil {
		t.Fatal(err)
	}
	if _, resp, err := med.startUpload(d, a, "image/jpeg"); err != nil || !resp.GetComplete() {
		t.Fatalf("a file the server holds through this record, while no place is free: %v, %v; want complete at once", resp, err)
	}
	if _, resp, err := med2.startUpload(d2, a, "image/jpeg"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a file the server holds through another record, while no place is free: %v, %v; want to be told to retry (its challenge takes a place)", resp, err)
	}
	d3 := newDispute(med2)
	med2.attach(d3, pb.Kind_KIND_DISPUTE, b, "image/png")
	b2 := fileOf(t, "image/png", domain.ChunkBytes)
	med2.attach(d3, pb.Kind_KIND_DISPUTE, b2, "image/png")
	_, _, err = med2.startUpload(d3, b2, "image/png")
	st := status.Convert(err)
	var retry *errdetails.RetryInfo
	for _, det := range st.Details() {
		if r, ok := det.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if st.Code() != codes.ResourceExhausted || retry == nil {
		t.Fatalf("upload with no place for the whole wait: %v, want ResourceExhausted with RetryInfo", err)
	}
	t.Logf("no place: %v", err)
	if last := uc.rest(rc.GetStored()); !last.GetComplete() {
		t.Fatalf("the upload holding the place: %v", last)
	}
}
