package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// AttachmentService carries the bytes of attached files (store.Files,
// attachments.db), apart from the records.
//
// Upload: the device sends an UploadStart naming the file (sha256, size,
// media_type) and a record in its scope whose attachments, as the server
// stores them, name that file with that size and type (an OP_ATTACH the
// server applied: the device uploads after a sync acknowledged it). The
// server answers stored (the bytes it holds from the start; complete if
// it holds and has checked all of them: a file already on the server, for
// any record, is never sent twice). The device then sends Chunks of at
// most domain.ChunkBytes from stored, in order, and keeps at most
// MaxChunksInFlight of them unanswered; the server answers each chunk
// once it is durable (committed with an fsync) with the new stored. A
// dropped link: the next Upload starts at the server's stored, so a chunk
// the server stored is never sent again. After the last byte the server
// reads the file back chunk by chunk, checks its SHA-256, size and type
// (sniffed from its bytes, as domain.SniffType) and answers complete.
//
// What a device does with each refusal (every message starts with the
// field it is about; INVALID_ARGUMENT carries a BadRequest detail too):
//
//	INVALID_ARGUMENT chunk.sha256      a chunk damaged on the way: nothing of it stored; Upload again (resumes at stored)
//	OUT_OF_RANGE chunk.offset          a chunk not at the end of the stored bytes: Upload again (resumes at stored)
//	INVALID_ARGUMENT other fields      the file or its reference is wrong (too large, a type other than claimed,
//	                                   bytes that do not hash to the reference): mark the file refused, with the message
//	PERMISSION_DENIED start.record_id  the record is not in the device's scope: refused
//	FAILED_PRECONDITION start.sha256   the record (as stored) does not name the file: sync first, else refused
//	NOT_FOUND start.record_id          no such record (yet): sync first
//	RESOURCE_EXHAUSTED                 the device's daily file bytes are used up, or it runs too many uploads at once:
//	                                   retry after the RetryInfo's delay; nothing is lost
//	UNAVAILABLE, DEADLINE_EXCEEDED...  retry later; the upload resumes at stored
//
// Fetch streams a complete file named by a record in the caller's scope
// (a phone fetches on demand), from an offset, in chunks of at most
// domain.ChunkBytes (fetchPiece: a little less, not aligned with the
// upload's), each with its offset and SHA-256; the first answer carries
// the size and type. A file not on the server yet is NOT_FOUND (sha256).
type attachmentService struct {
	pb.UnimplementedAttachmentServiceServer
	s *Server
}

// Defaults of the file limits (Config.FileQuota, Config.MaxUploadsPerDevice).
const (
	// DefaultFileQuota is the file bytes one device may upload in a quota
	// day: fifty 4 MB photos, or twenty 10 MiB scans. A phone back from
	// weeks without signal with more than that uploads the rest on the
	// next days; the records go first anyway.
	DefaultFileQuota int64 = 200 << 20
	// DefaultMaxUploadsPerDevice is how many uploads one device may run at
	// once: a phone's link is the bottleneck, so one at a time is best and
	// two cover a new upload of another file while the last one's stream
	// is being torn down. A new upload of the same file by the same device
	// takes the old one's place (its link dropped).
	DefaultMaxUploadsPerDevice = 2
	// MaxChunksInFlight is how many chunks a device may send ahead of the
	// server's answers (128 KiB): enough to keep a slow link busy, small
	// enough that a thousand phones uploading at once do not fill the
	// server's memory with buffered chunks.
	MaxChunksInFlight = 4
	// DefaultMaxUploads is how many uploads the server receives at once
	// (Config.MaxUploads). The two cores are saturated well below it
	// (syncbench photos: 100 at once move as many MB/s as 1,000), and
	// 1,000 at once held 595 MB (BENCHMARKS.md, "Photos").
	DefaultMaxUploads = 64
	// DefaultUploadQueueWait is how long an upload waits for a place among
	// the server's MaxUploads before it is told to retry.
	DefaultUploadQueueWait = 30 * time.Second
	// MaxFetchesPerDevice is how many fetches one device may run at once
	// (a new fetch of the same file by the same device takes the old
	// one's place).
	MaxFetchesPerDevice = 4
	// uploadIdle ends an upload whose device sent nothing for that long.
	uploadIdle = 2 * time.Minute
)

// FileQuotaName is the ErrorInfo metadata "quota" of an upload refused for
// the device's daily file bytes.
const FileQuotaName = "device_files"

// fieldError is a status whose message starts with the field; with
// INVALID_ARGUMENT it carries a BadRequest detail naming the field.
func fieldError(code codes.Code, field, format string, args ...any) error {
	desc := fmt.Sprintf(format, args...)
	st := status.New(code, field+": "+desc)
	if code == codes.InvalidArgument {
		if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: desc}}}); err == nil {
			st = d
		}
	}
	return st.Err()
}

// checkSHA checks a file's hash as a request names it.
func checkSHA(field, sha string) error {
	if b, err := hex.DecodeString(sha); err != nil || len(b) != sha256.Size || strings.ToLower(sha) != sha {
		return fieldError(codes.InvalidArgument, field, "%q: want the 64 lowercase hex digits of the file's SHA-256", clipText(sha))
	}
	return nil
}

func clipText(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func checkRecordID(field, id string) error {
	if n := len(id); n == 0 || n > 80 {
		return fieldError(codes.InvalidArgument, field, "%d bytes: want a record id of 1 to 80 bytes", n)
	}
	return nil
}

// fileRef finds the reference to file sha in record id, if the record is
// in the caller's scope: NOT_FOUND for no such record, PERMISSION_DENIED
// outside the scope, FAILED_PRECONDITION when it does not name the file.
func (s *Server) fileRef(ctx context.Context, c *caller, prefix, id, sha string) (*pb.Attachment, error) {
	rec, err := s.store.Record(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fieldError(codes.NotFound, prefix+"record_id", "no record %s on the server (or not yet: sync first)", id)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read record %s: %v", id, err)
	}
	scope, err := s.scope(ctx, c)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "compute the scope of %s: %v", c.userID, err)
	}
	if !inScope(scope, rec.GetBuckets()) {
		// The attach's author may still upload the file: the record can
		// leave the user's scope (a household linked to another member)
		// after the attach was applied and before the upload, and the
		// phone holds the only copy of the bytes.
		for _, a := range rec.GetAttachments() {
			if prefix == "start." && a.GetSha256() == sha && a.GetAuthorId() == c.userID && c.userID != "" {
				return a, nil
			}
		}
		return nil, fieldError(codes.PermissionDenied, prefix+"record_id", "%s %s is not in your scope: its files are for those who read it", domain.KindName(rec.GetKind()), id)
	}
	for _, a := range rec.GetAttachments() {
		if a.GetSha256() == sha {
			return a, nil
		}
	}
	hint := "attach it (OP_ATTACH) and sync before uploading"
	if prefix == "" {
		hint = "fetch a file through a record that names it"
	}
	return nil, fieldError(codes.FailedPrecondition, prefix+"sha256", "%s %s does not name file %s: %s", domain.KindName(rec.GetKind()), id, sha, hint)
}

func inScope(scope, buckets []string) bool {
	for _, b := range scope {
		if b == domain.AllBucket {
			return true
		}
		for _, r := range buckets {
			if r == b {
				return true
			}
		}
	}
	return false
}

// files answers UNIMPLEMENTED when the server keeps no files.
func (s *Server) fileStore() (*store.Files, error) {
	if s.cfg.Files == nil {
		return nil, status.Error(codes.Unimplemented, "this server keeps no files (no file store configured)")
	}
	return s.cfg.Files, nil
}

// Upload receives one file (see attachmentService).
func (x *attachmentService) Upload(stream grpc.BidiStreamingServer[pb.UploadRequest, pb.UploadResponse]) error {
	s := x.s
	files, err := s.fileStore()
	if err != nil {
		return err
	}
	c := callerFrom(stream.Context())
	if c == nil || c.deviceID == "" {
		return status.Error(codes.Unauthenticated, "uploads are for enrolled devices")
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	// Messages are read by a goroutine of their own, so that the upload
	// can end (idle, or replaced by a new upload of the same file) while
	// a read waits on a dead link; the goroutine ends with the stream.
	// Unbuffered: the reader holds at most one chunk ahead, and it reads
	// the device's half-close (io.EOF) only once every chunk before it was
	// taken, so the select in next never sees the end before a chunk sent
	// ahead of it (TestUploadHalfClosedAfterLastChunk).
	msgs := make(chan *pb.UploadRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	next := func() (*pb.UploadRequest, error) {
		t := time.NewTimer(uploadIdle)
		defer t.Stop()
		select {
		case m := <-msgs:
			return m, nil
		case err := <-recvErr:
			return nil, err
		case <-ctx.Done():
			if cause := context.Cause(ctx); errors.Is(cause, errReplaced) {
				return nil, status.Error(codes.Aborted, "a newer upload of this file by this device took its place")
			}
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-t.C:
			return nil, status.Errorf(codes.DeadlineExceeded, "upload idle for %v: send the next chunk sooner, or Upload again (it resumes at stored)", uploadIdle)
		}
	}

	first, err := next()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	st := first.GetStart()
	if st == nil {
		return fieldError(codes.InvalidArgument, "start", "missing: an upload begins with an UploadStart (record_id, sha256, size, media_type)")
	}
	if err := checkStart(st); err != nil {
		return err
	}
	sha, size, mt := st.GetSha256(), st.GetSize(), st.GetMediaType()
	ref, err := s.fileRef(ctx, c, "start.", st.GetRecordId(), sha)
	if err != nil {
		return err
	}
	if ref.GetSize() != size {
		return fieldError(codes.InvalidArgument, "start.size", "%d: record %s names file %s with %d bytes", size, st.GetRecordId(), sha, ref.GetSize())
	}
	if ref.GetMediaType() != mt {
		return fieldError(codes.InvalidArgument, "start.media_type", "%q: record %s names file %s as %s", mt, st.GetRecordId(), sha, ref.GetMediaType())
	}
	release, ok := s.uploads.acquire(c.deviceID, sha, cancel)
	if !ok {
		s.fileMetrics.refused("concurrency")
		return retryAfter(time.Second, "this device already runs %d uploads, the most allowed at once: upload one file at a time", s.uploads.max)
	}
	defer release()

	// A file the store holds under this claim, or whole, needs no write
	// to begin (a thousand phones offering files the server has cost no
	// commit).
	fi, err := files.Stat(ctx, sha)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !fi.Complete && (fi.Size != size || fi.MediaType != mt)) {
		fi, err = files.Begin(ctx, sha, size, mt)
	}
	if err != nil {
		return storeError("begin upload", err)
	}
	if fi.Complete {
		if fi.Size != size || fi.MediaType != mt {
			return fieldError(codes.InvalidArgument, "start.size", "file %s is on the server with %d bytes of %s, not %d bytes of %s: its reference in record %s is wrong",
				sha, fi.Size, fi.MediaType, size, mt, st.GetRecordId())
		}
		proven, err := files.Proven(ctx, sha, st.GetRecordId())
		if err != nil {
			return storeError("read the file's proofs", err)
		}
		if proven {
			return stream.Send(&pb.UploadResponse{Stored: fi.Size, Complete: true})
		}
		// A challenge reads the whole file: it takes a place among the
		// server's uploads like an upload.
		leave, err := s.enterUpload(ctx)
		if err != nil {
			return err
		}
		defer leave()
		return s.challenge(ctx, stream, next, files, st.GetRecordId(), sha, size)
	}
	if fi.Stored == fi.Size {
		// All in, not checked yet: the server stopped in between, or
		// another device's upload is being checked. Whose bytes they are
		// is not known: they are checked and completed, and this record
		// is proven by a challenge like any other.
		if err := s.checkUpload(ctx, files, "", sha, size, mt); err != nil {
			return err
		}
		leave, err := s.enterUpload(ctx)
		if err != nil {
			return err
		}
		defer leave()
		if ok, err := files.Proven(ctx, sha, st.GetRecordId()); err != nil {
			return storeError("read the file's proofs", err)
		} else if ok {
			return stream.Send(&pb.UploadResponse{Stored: size, Complete: true})
		}
		return s.challenge(ctx, stream, next, files, st.GetRecordId(), sha, size)
	}
	charge := s.fileCharge(c)
	if charge.Limit >= 0 {
		used, _, err := files.FileBytesToday(ctx, c.deviceID, charge.Day)
		if err != nil {
			return storeError("read the file quota", err)
		}
		if used >= charge.Limit {
			return s.fileQuotaRefused(c, used, charge.Limit)
		}
	}
	leave, err := s.enterUpload(ctx)
	if err != nil {
		return err
	}
	defer leave()
	if err := stream.Send(&pb.UploadResponse{Stored: fi.Stored}); err != nil {
		return err
	}
	for {
		m, err := next()
		if err == io.EOF {
			return nil // the device ends the upload; the next one resumes
		}
		if err != nil {
			return err
		}
		ch := m.GetChunk()
		if ch == nil {
			return fieldError(codes.InvalidArgument, "chunk", "missing: after its start an upload sends chunks only")
		}
		if err := s.checkChunk(ch, size, mt); err != nil {
			return err
		}
		res, err := files.PutChunk(ctx, sha, ch.GetOffset(), ch.GetData(), charge)
		var order *store.ChunkOrderError
		switch {
		case errors.As(err, &order):
			s.fileMetrics.refused("order")
			return fieldError(codes.OutOfRange, "chunk.offset", "%d: the server holds %d bytes of file %s; send the chunk at %d (Upload again: it resumes there)",
				ch.GetOffset(), order.Stored, sha, order.Stored)
		case errors.Is(err, store.ErrNotFound):
			return status.Errorf(codes.Aborted, "file %s was dropped on the server meanwhile (its bytes did not check out): Upload again from the start", sha)
		case err != nil:
			return storeError("store a chunk", err)
		case res.OverQuota:
			return s.fileQuotaRefused(c, res.Used, charge.Limit)
		}
		if res.Stored {
			s.fileMetrics.uploaded(len(ch.GetData()))
		}
		if res.File.Complete {
			// Completed meanwhile through another record: this record's
			// reference is proven by a challenge at the next Upload.
			if ok, err := files.Proven(ctx, sha, st.GetRecordId()); err != nil || !ok {
				return status.Errorf(codes.Aborted, "file %s was completed meanwhile through another record: Upload again (the server then asks this device to prove it holds the bytes)", sha)
			}
			return stream.Send(&pb.UploadResponse{Stored: res.File.Size, Complete: true})
		}
		if res.File.Stored == size {
			return s.finishUpload(ctx, stream, files, st.GetRecordId(), sha, size, mt)
		}
		if err := stream.Send(&pb.UploadResponse{Stored: res.File.Stored}); err != nil {
			return err
		}
	}
}

// errReplaced is the cause of an upload's end when the same device began
// a new upload of the same file.
var errReplaced = errors.New("replaced by a newer upload")

func checkStart(st *pb.UploadStart) error {
	if err := checkRecordID("start.record_id", st.GetRecordId()); err != nil {
		return err
	}
	if err := checkSHA("start.sha256", st.GetSha256()); err != nil {
		return err
	}
	if n := st.GetSize(); n < 1 || n > domain.MaxAttachmentBytes {
		return fieldError(codes.InvalidArgument, "start.size", "%d bytes: a file has 1 to %d bytes (%d MiB)", n, domain.MaxAttachmentBytes, domain.MaxAttachmentBytes>>20)
	}
	if !contains(domain.AttachmentTypes, st.GetMediaType()) {
		return fieldError(codes.InvalidArgument, "start.media_type", "%q: want one of %s", clipText(st.GetMediaType()), strings.Join(domain.AttachmentTypes, ", "))
	}
	return nil
}

// checkChunk checks a chunk by itself: its size, its hash, that it lies
// within the file, and for the first one the type its bytes show.
func (s *Server) checkChunk(ch *pb.Chunk, size int64, mt string) error {
	data := ch.GetData()
	if n := len(data); n == 0 || n > domain.ChunkBytes {
		s.fileMetrics.refused("size")
		return fieldError(codes.InvalidArgument, "chunk.data", "%d bytes: a chunk has 1 to %d bytes", n, domain.ChunkBytes)
	}
	sum := sha256.Sum256(data)
	if !bytes.Equal(ch.GetSha256(), sum[:]) {
		s.fileMetrics.refused("hash")
		return fieldError(codes.InvalidArgument, "chunk.sha256", "the %d bytes at %d hash to %x, not %x: the chunk was damaged on the way and is not stored; send it again (Upload again: it resumes at the server's stored)",
			len(data), ch.GetOffset(), sum[:8], clipBytes(ch.GetSha256()))
	}
	if off := ch.GetOffset(); off < 0 || off+int64(len(data)) > size {
		s.fileMetrics.refused("size")
		return fieldError(codes.InvalidArgument, "chunk.data", "%d bytes at %d end past the file's %d bytes (start.size)", len(data), off, size)
	}
	if ch.GetOffset() == 0 && (len(data) >= 512 || int64(len(data)) == size) {
		if got := domain.SniffType(data); got != mt {
			s.fileMetrics.refused("type")
			return fieldError(codes.InvalidArgument, "chunk.data", "the file's bytes are %s, not %s as claimed (start.media_type): a file is one of %s, of the type its reference names",
				typeName(got, data), mt, strings.Join(domain.AttachmentTypes, ", "))
		}
	}
	return nil
}

func clipBytes(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}

// typeName says what bytes are when they are none of the allowed types.
func typeName(sniffed string, head []byte) string {
	if sniffed != "" {
		return sniffed
	}
	if bytes.HasPrefix(head, []byte("MZ")) {
		return "a Windows program (none of the allowed types)"
	}
	return "none of the allowed types"
}

// finishUpload checks a file whose bytes are all in, reading them back
// chunk by chunk, and marks it complete; a file whose bytes do not check
// out is dropped (the next upload starts from nothing).
func (s *Server) finishUpload(ctx context.Context, stream grpc.BidiStreamingServer[pb.UploadRequest, pb.UploadResponse], files *store.Files, recordID, sha string, size int64, mt string) error {
	if err := s.checkUpload(ctx, files, recordID, sha, size, mt); err != nil {
		return err
	}
	return stream.Send(&pb.UploadResponse{Stored: size, Complete: true})
}

// checkUpload checks a file whose bytes are all in, reading them back
// chunk by chunk, and marks it complete, proven for recordID ("" for
// none: whose bytes they are is not known); a file whose bytes do not
// check out is dropped.
func (s *Server) checkUpload(ctx context.Context, files *store.Files, recordID, sha string, size int64, mt string) error {
	sum, n, head, err := files.Verify(ctx, sha)
	if err != nil {
		return storeError("read the file back", err)
	}
	var bad error
	switch got := domain.SniffType(head); {
	case n != size:
		bad = fieldError(codes.InvalidArgument, "start.size", "%d bytes stored, the file has %d: its bytes are dropped; Upload again", n, size)
	case sum != sha:
		bad = fieldError(codes.InvalidArgument, "start.sha256", "the %d bytes received hash to %s, not %s: they are dropped; the device's file does not match its reference", n, sum, sha)
	case got != mt:
		bad = fieldError(codes.InvalidArgument, "start.media_type", "the file's bytes are %s, not %s as claimed: they are dropped", typeName(got, head), mt)
	}
	if bad != nil {
		s.fileMetrics.refused("file")
		if err := files.Drop(ctx, sha); err != nil {
			return storeError("drop a file that did not check out", err)
		}
		return bad
	}
	if err := files.Complete(ctx, sha, recordID); err != nil {
		return storeError("complete the file", err)
	}
	s.fileMetrics.completed()
	return nil
}

// challenge asks the device uploading file sha for recordID, which the
// server holds whole already (uploaded through another record), to prove it
// holds the bytes: a SHA-256 learnt somewhere must not open the file to
// whoever attaches it to a record of their own. The device answers with
// proof = HMAC-SHA256(key = the challenge, the whole file), or (an app
// that does not know challenges) sends the whole file again, which is
// hashed as it comes and never stored. Either proves the record
// (store.Files.Prove), then the upload is complete.
func (s *Server) challenge(ctx context.Context, stream grpc.BidiStreamingServer[pb.UploadRequest, pb.UploadResponse], next func() (*pb.UploadRequest, error), files *store.Files, recordID, sha string, size int64) error {
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return status.Errorf(codes.Internal, "random challenge: %v", err)
	}
	if err := stream.Send(&pb.UploadResponse{Challenge: nonce}); err != nil {
		return err
	}
	h := sha256.New()
	var got int64
	for {
		m, err := next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch part := m.GetPart().(type) {
		case *pb.UploadRequest_Proof:
			mac := hmac.New(sha256.New, nonce)
			if err := files.EachChunk(ctx, sha, 0, func(_ int64, data []byte) error { _, err := mac.Write(data); return err }); err != nil {
				return storeError("read the file", err)
			}
			if !hmac.Equal(mac.Sum(nil), part.Proof) {
				s.fileMetrics.refused("proof")
				return fieldError(codes.PermissionDenied, "proof", "does not match file %s: the device does not hold the file its record %s names (attach the file itself, not its hash)", sha, recordID)
			}
		case *pb.UploadRequest_Chunk:
			ch := part.Chunk
			if ch.GetOffset() != got {
				return fieldError(codes.OutOfRange, "chunk.offset", "%d: answering the challenge, the whole file is sent again from 0 in order; next is %d", ch.GetOffset(), got)
			}
			if sum := sha256.Sum256(ch.GetData()); len(ch.GetData()) == 0 || len(ch.GetData()) > domain.ChunkBytes || !bytes.Equal(sum[:], ch.GetSha256()) || got+int64(len(ch.GetData())) > size {
				return fieldError(codes.InvalidArgument, "chunk", "a damaged or oversized chunk at %d: Upload again", got)
			}
			h.Write(ch.GetData())
			got += int64(len(ch.GetData()))
			if got < size {
				if err := stream.Send(&pb.UploadResponse{Stored: got}); err != nil {
					return err
				}
				continue
			}
			if hex.EncodeToString(h.Sum(nil)) != sha {
				s.fileMetrics.refused("proof")
				return fieldError(codes.PermissionDenied, "chunk", "the %d bytes sent again do not hash to file %s: the device does not hold the file its record %s names", got, sha, recordID)
			}
		default:
			return fieldError(codes.InvalidArgument, "proof", "missing: the server asked for a proof (or the whole file from 0)")
		}
		if err := files.Prove(ctx, sha, recordID); err != nil {
			return storeError("note the proof", err)
		}
		return stream.Send(&pb.UploadResponse{Stored: size, Complete: true})
	}
}

func storeError(what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Unavailable, "%s: %v; retry later (the upload resumes at the server's stored)", what, err)
}

// fileCharge is the caller's file allowance for today.
func (s *Server) fileCharge(c *caller) store.FileCharge {
	day, _ := quotaDay(s.quota.now())
	return store.FileCharge{DeviceID: c.deviceID, UserID: c.userID, Day: day, Limit: s.fileQuota}
}

// fileQuotaRefused is the refusal of an upload over the device's daily
// file bytes: RESOURCE_EXHAUSTED with RetryInfo (until the quota day
// ends) and ErrorInfo (QuotaReason, quota device_files), as a push over
// the records' quota.
func (s *Server) fileQuotaRefused(c *caller, used, limit int64) error {
	s.metrics.QuotaRefused(FileQuotaName)
	s.fileMetrics.refused("quota")
	now := s.quota.now()
	_, ends := quotaDay(now)
	wait := max(ceilMs(ends.Sub(now)), time.Millisecond)
	msg := fmt.Sprintf("daily file quota: this device uploaded %s of files today, the most allowed is %s; "+
		"its files are kept on it and upload after %s China time (the counts start again at midnight); records still sync; retry in %v",
		approxBytes(used), FormatBytes(limit), ends.Format("2006-01-02 15:04"), wait)
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(
		&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)},
		&errdetails.ErrorInfo{Reason: QuotaReason, Domain: "fieldsync.v1", Metadata: map[string]string{
			"quota": FileQuotaName, "resets_at": ends.Format(time.RFC3339), "used_bytes": strconv.FormatInt(used, 10)}})
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	s.logRefusal("quota/files", c.deviceID, "file upload refused: the device's daily file quota is used up", "device", c.deviceID, "user", c.userID,
		"used_bytes", used, "limit", limit, "resets_at", ends.Format(time.RFC3339))
	return st.Err()
}

// Fetch sends a file (see attachmentService).
func (x *attachmentService) Fetch(req *pb.FetchRequest, stream grpc.ServerStreamingServer[pb.FetchResponse]) error {
	s := x.s
	files, err := s.fileStore()
	if err != nil {
		return err
	}
	ctx := stream.Context()
	c := callerFrom(ctx)
	if c == nil || c.deviceID == "" {
		return status.Error(codes.Unauthenticated, "fetches are for enrolled devices")
	}
	if err := checkRecordID("record_id", req.GetRecordId()); err != nil {
		return err
	}
	sha := req.GetSha256()
	if err := checkSHA("sha256", sha); err != nil {
		return err
	}
	if req.GetOffset() < 0 {
		return fieldError(codes.InvalidArgument, "offset", "%d: want 0 or more", req.GetOffset())
	}
	if _, err := s.fileRef(ctx, c, "", req.GetRecordId(), sha); err != nil {
		return err
	}
	// Proven: the file was uploaded through this record, or the device
	// that uploads for it proved it holds the bytes (challenge). A record
	// naming a hash is not enough.
	if ok, err := files.Proven(ctx, sha, req.GetRecordId()); err != nil {
		return storeError("read the file's proofs", err)
	} else if !ok {
		return fieldError(codes.NotFound, "sha256", "file %s is not on the server for record %s yet: the device that attached it uploads it after its next sync; fetch again later", sha, req.GetRecordId())
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	release, ok := s.fetches.acquire(c.deviceID, sha, cancel)
	if !ok {
		s.fileMetrics.refused("concurrency")
		return retryAfter(time.Second, "this device already runs %d fetches, the most allowed at once: fetch one file at a time", s.fetches.max)
	}
	defer release()
	fi, err := files.Stat(ctx, sha)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !fi.Complete) {
		return fieldError(codes.NotFound, "sha256", "file %s is not on the server yet (%d bytes of it stored): the device that attached it uploads it after its next sync; fetch again later", sha, fi.Stored)
	}
	if err != nil {
		return storeError("read the file", err)
	}
	if req.GetOffset() > fi.Size {
		return fieldError(codes.OutOfRange, "offset", "%d: past the end of the file's %d bytes", req.GetOffset(), fi.Size)
	}
	first := true
	if req.GetOffset() == fi.Size {
		return stream.Send(&pb.FetchResponse{Size: fi.Size, MediaType: fi.MediaType})
	}
	err = files.EachChunk(ctx, sha, req.GetOffset(), func(off int64, data []byte) error {
		for len(data) > 0 {
			piece := data[:min(len(data), fetchPiece)]
			sum := sha256.Sum256(piece)
			m := &pb.FetchResponse{Chunk: &pb.Chunk{Offset: off, Data: piece, Sha256: sum[:]}}
			if first {
				m.Size, m.MediaType, first = fi.Size, fi.MediaType, false
			}
			if err := stream.Send(m); err != nil {
				return err
			}
			s.fileMetrics.fetched(len(piece))
			data, off = data[len(piece):], off+int64(len(piece))
		}
		return nil
	})
	if errors.Is(context.Cause(ctx), errReplaced) {
		return status.Error(codes.Aborted, "a newer fetch of this file by this device took its place")
	}
	if err != nil && status.Code(err) == codes.Unknown {
		return storeError("read the file", err)
	}
	return err
}

// fetchPiece is the most file bytes one FetchResponse carries: a stored
// chunk of domain.ChunkBytes goes out in two, so that each message's
// encoding (data, offset, hash, size, type) stays within 32 KiB. grpc
// encodes a message into a buffer from its pool's tiers, 32 KiB then 1
// MiB: a message of 32 KiB of data and its few dozen bytes more took a
// 1 MiB buffer, held until the message is on the wire, so a slow phone's
// fetch pinned a few MiB of the server's memory
// (TestLargestFileStreamedNotHeld: the live heap during a 10 MiB fetch).
const fetchPiece = domain.ChunkBytes - 256

// enterUpload waits, up to Config.UploadQueueWait, for a place among the
// uploads the server receives at once (Config.MaxUploads); leave gives it
// back. An upload that finds none in time is told to retry.
func (s *Server) enterUpload(ctx context.Context) (leave func(), err error) {
	if s.uploadPlaces == nil {
		return func() {}, nil
	}
	select {
	case s.uploadPlaces <- struct{}{}: // a place at once: no timer
		return func() { <-s.uploadPlaces }, nil
	default:
	}
	wait := s.cfg.UploadQueueWait
	if wait <= 0 {
		wait = DefaultUploadQueueWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s.uploadPlaces <- struct{}{}:
		return func() { <-s.uploadPlaces }, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-t.C:
		s.fileMetrics.refused("server_busy")
		return nil, retryAfter(10*time.Second, "the server is receiving %d files at once, the most it takes: the file waits on the phone and is sent later", cap(s.uploadPlaces))
	}
}

// uploadSlots bounds the uploads each device runs at once.
type uploadSlots struct {
	mu   sync.Mutex
	max  int // 0: no bound
	runs map[string][]*uploadSlot
}

type uploadSlot struct {
	sha    string
	cancel context.CancelCauseFunc
}

func newUploadSlots(max int) *uploadSlots {
	switch {
	case max == 0:
		max = DefaultMaxUploadsPerDevice
	case max < 0:
		max = 0
	}
	return &uploadSlots{max: max, runs: map[string][]*uploadSlot{}}
}

// acquire takes a slot for device's upload of sha: an upload of the same
// file by the same device already running is ended (its link dropped and
// the device began again). false: the device runs the most allowed.
func (u *uploadSlots) acquire(device, sha string, cancel context.CancelCauseFunc) (release func(), ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	runs := u.runs[device]
	for i, r := range runs {
		if r.sha == sha {
			r.cancel(errReplaced)
			runs = append(runs[:i:i], runs[i+1:]...)
			break
		}
	}
	if u.max > 0 && len(runs) >= u.max {
		u.runs[device] = runs
		return nil, false
	}
	me := &uploadSlot{sha: sha, cancel: cancel}
	u.runs[device] = append(runs, me)
	return func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		runs := u.runs[device]
		for i, r := range runs {
			if r == me {
				runs = append(runs[:i:i], runs[i+1:]...)
				break
			}
		}
		if len(runs) == 0 {
			delete(u.runs, device)
		} else {
			u.runs[device] = runs
		}
	}, true
}
