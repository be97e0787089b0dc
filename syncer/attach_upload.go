package syncer

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// UploadReport says what one UploadPending did.
type UploadReport struct {
	Uploaded int   // files the server now holds whole (Already included)
	Already  int   // of which the server held whole before a byte was sent
	Refused  int   // files refused (marked, with the reason)
	Left     int   // files left for a later sync (not yet applied, link down, ...)
	Chunks   int   // chunks the server acknowledged
	Bytes    int64 // file bytes the server acknowledged
	Resumed  int   // uploads that began again after a cut link or a damaged chunk
	// Err is why files were left (the last such error), "" if none.
	Err string
}

// uploadAttempts is how many times in a row one file's upload may fail
// without the server storing a byte more before it is left for a later
// sync.
const uploadAttempts = 4

// minChunkBytes is the chunk the device sends after a link cut in the
// middle of an upload (linkTune), so that a link that drops every few tens
// of KB loses little on each cut: 4 KiB keeps a chunk's own overhead (its
// hash, offset and frames, about 60 bytes) near 1.5%.
const minChunkBytes = 4 << 10

// uploadWindow is how many chunks may be on the way unacknowledged: the
// device does not wait for each answer before sending the next (the
// server's MaxChunksInFlight).
const uploadWindow = 4

// linkTune is how an UploadPending sends, learnt from its link: after a
// cut in the middle of an upload, chunks are cut to minChunkBytes and
// sent one at a time, each after the last was answered. On a link that drops every few tens of KB, a cut then loses
// at most the one chunk on the way (the server drops chunks it had not
// committed when the link went), not a window of them.
type linkTune struct{ chunk, window int }

func (l *linkTune) cut() { l.chunk, l.window = minChunkBytes, 1 }

// testCorruptChunk, set by tests, may alter a chunk's data after its
// hash was computed (a chunk damaged on the way).
var testCorruptChunk func(sha string, off int64, data []byte) []byte

// UploadPending uploads the files this device attached whose attach the
// server applied (the record as the server holds it names the file),
// resuming each from what the server holds. A file the server refuses is
// marked refused with the reason and the others go on; a file whose
// attach the server refused is marked refused with that reason. Sync runs
// it after every sync that got through. A daily quota of file bytes ends
// it with a *RetryError (the files wait); a dead link with the error (the
// files wait too: Report.Left).
func (d *Device) UploadPending(ctx context.Context) (*UploadReport, error) {
	d.uploadMu.Lock()
	defer d.uploadMu.Unlock()
	rep := &UploadReport{}
	if held := d.filesHeld; held != nil && d.opts.Now().Before(d.filesHeldUntil) {
		// The server said when the device's file bytes start again: no
		// call before then.
		wait := *held
		wait.After = d.filesHeldUntil.Sub(d.opts.Now())
		rep.Err = "files wait for the device's daily file quota: " + held.Reason
		if err := d.db.View(ctx, func(tx *store.RTx) error {
			n, err := tx.CountFiles()
			rep.Left = n[store.FilePending] + n[store.FileUploading]
			return err
		}); err != nil {
			return rep, err
		}
		return rep, &wait
	}
	d.filesHeld = nil
	var (
		ident *Identity
		token string
		todo  []*store.FileRow
	)
	var refused []*store.FileRow
	if err := d.db.View(ctx, func(tx *store.RTx) error {
		var err error
		if ident, err = d.identity(tx); err != nil {
			return err
		}
		if token, err = tx.Meta(metaToken); err != nil {
			return err
		}
		files, err := tx.Files()
		if err != nil {
			return err
		}
		for _, f := range files {
			if !f.Mine || (f.State != store.FilePending && f.State != store.FileUploading) || !f.Complete() {
				continue
			}
			ok, reason, err := attachApplied(tx, f)
			if err != nil {
				return err
			}
			switch {
			case ok:
				todo = append(todo, f)
			case reason != "":
				rep.Refused++
				f.State, f.Reason = store.FileRefused, reason
				refused = append(refused, f)
			default:
				rep.Left++ // its attach is not applied yet: after the next sync
			}
		}
		return nil
	}); err != nil {
		return rep, err
	}
	if len(refused) > 0 {
		if err := d.db.Update(ctx, func(tx *store.RTx) error {
			for _, f := range refused {
				if err := tx.PutFile(f); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return rep, err
		}
	}
	if len(todo) == 0 {
		return rep, nil
	}
	d.mu.Lock()
	conn, err := d.dial(ident.Server, ident.CAFingerprint)
	d.mu.Unlock()
	if err != nil {
		return rep, err
	}
	tune := &linkTune{chunk: domain.ChunkBytes, window: uploadWindow}
	for i, f := range todo {
		err := d.uploadFile(ctx, conn, token, f, rep, tune)
		var re *RetryError
		switch {
		case err == nil:
		case errors.As(err, &re), errors.Is(err, ErrRevoked), ctx.Err() != nil:
			rep.Left += len(todo) - i
			rep.Err = err.Error()
			if re != nil {
				if re.Quota {
					d.filesHeld, d.filesHeldUntil = re, d.opts.Now().Add(re.After)
				}
				// Records still sync; only the files wait.
				rep.Err = fmt.Sprintf("the server asked this device to wait %v before uploading files again (%s): the files are kept on the device and upload after that; records still sync", roundWait(re.After), re.Reason)
			}
			return rep, err
		default:
			rep.Left++
			rep.Err = err.Error()
		}
	}
	return rep, nil
}

// attachApplied says whether the server applied the device's attach of f
// (the record as the server holds it names it), or, when it refused it,
// why.
func attachApplied(tx *store.RTx, f *store.FileRow) (bool, string, error) {
	lr, err := tx.Record(f.RecordID)
	gone := errors.Is(err, store.ErrNotFound)
	if err != nil && !gone {
		return false, "", err
	}
	if !gone && domain.HasAttachment(lr.Base, f.SHA256) {
		return true, "", nil
	}
	queued, err := tx.OutboxFor(f.RecordID)
	if err != nil {
		return false, "", err
	}
	for _, q := range queued {
		m := q.Mutation
		if m.GetOp() != pb.Op_OP_ATTACH || m.GetAttachment().GetSha256() != f.SHA256 {
			continue
		}
		switch q.Status {
		case store.OutboxRejected:
			return false, "the server refused the attach: " + q.Field + ": " + q.Reason, nil
		case store.OutboxPending:
			return false, "", nil // not sent yet
		}
	}
	// The record left this device (purged: it left the user's scope,
	// say a household linked to another member) after the server
	// applied the attach: the file, which only this phone holds, is
	// still uploaded (the server lets the attach's author upload it).
	return gone, "", nil
}

// uploadFile uploads one file, starting again from the server's stored
// after a cut link or a damaged chunk while the server keeps storing
// more. It marks the file uploaded or refused; an error leaves it for a
// later sync.
func (d *Device) uploadFile(ctx context.Context, conn *grpc.ClientConn, token string, f *store.FileRow, rep *UploadReport, tune *linkTune) error {
	fails, best := 0, int64(-1)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			rep.Resumed++
			if err := d.ready(ctx, conn); err != nil {
				return err
			}
		}
		stored, complete, sentAny, err := d.uploadOnce(ctx, conn, token, f, rep, *tune)
		if stored > f.Sent || complete {
			d.markFile(f, func(f *store.FileRow) {
				f.Sent = max(f.Sent, stored)
				f.State = store.FileUploading
				if complete {
					f.Sent, f.State = f.Size, store.FileUploaded
				}
			})
		}
		if err == nil && complete {
			rep.Uploaded++
			if !sentAny {
				rep.Already++
			}
			return nil
		}
		if err == nil {
			err = errors.New("the server ended the upload without saying it was complete")
		}
		st, isStatus := status.FromError(err)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case isRevoked(err):
			return d.wipe()
		case isStatus && st.Code() == codes.ResourceExhausted:
			return describe(err)
		case isStatus && later(st):
			return fmt.Errorf("upload of file %s: %w", clipSHA(f.SHA256), describe(err))
		case isStatus && refusal(st):
			rep.Refused++
			reason := codeWords(st.Code()) + ": " + st.Message()
			d.markFile(f, func(f *store.FileRow) { f.State, f.Reason = store.FileRefused, reason })
			return nil
		}
		if isStatus && st.Code() != codes.InvalidArgument && st.Code() != codes.OutOfRange {
			// A link cut in the middle of the upload: lose less on the
			// next cut.
			tune.cut()
		}
		if stored > best {
			best, fails = stored, 0
		} else if fails++; fails >= uploadAttempts {
			return fmt.Errorf("upload of file %s: %w", clipSHA(f.SHA256), describe(err))
		}
	}
}

// refusal says whether a status refuses the file for good (the others are
// a cut link, a damaged chunk, a busy server: tried again).
func refusal(st *status.Status) bool {
	switch st.Code() {
	case codes.InvalidArgument:
		// A chunk damaged on the way is sent again; anything else wrong
		// with the file (its size, type, hash) is for good.
		return !strings.Contains(st.Message(), "chunk.sha256")
	case codes.FailedPrecondition, codes.PermissionDenied:
		// Not in the device's scope, or the record as the server holds it
		// does not name the file (the device uploads only after it does).
		return true
	}
	return false
}

// later says whether a status leaves the file for a later sync at once,
// with no retry now: no such record on the server yet, a server that
// keeps no files.
func later(st *status.Status) bool {
	switch st.Code() {
	case codes.NotFound, codes.Unimplemented, codes.Unauthenticated:
		return true
	}
	return false
}

// markFile updates a file's row (best effort: what is lost is the
// display, the server's stored is what counts).
func (d *Device) markFile(f *store.FileRow, change func(*store.FileRow)) {
	d.db.Update(context.Background(), func(tx *store.RTx) error {
		cur, err := tx.File(f.SHA256)
		if err != nil {
			return err
		}
		change(cur)
		*f = *cur
		return tx.PutFile(cur)
	})
}

// uploadOnce runs one Upload call: the start, then the chunks from the
// server's stored, up to tune.window of them unacknowledged. It returns
// the most the server said it stored, whether it said complete, and
// whether a chunk was sent.
func (d *Device) uploadOnce(ctx context.Context, conn *grpc.ClientConn, token string, f *store.FileRow, rep *UploadReport, tune linkTune) (int64, bool, bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Photos and scans are compressed already: gzip would cost the phone
	// CPU for nothing.
	stream, err := pb.NewAttachmentServiceClient(conn).Upload(d.authed(ctx, token), grpc.UseCompressor(encoding.Identity))
	if err != nil {
		return 0, false, false, err
	}
	if err := stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Start{Start: &pb.UploadStart{
		RecordId: f.RecordID, Sha256: f.SHA256, Size: f.Size, MediaType: f.MediaType}}}); err != nil {
		return 0, false, false, recvErr(stream, err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return 0, false, false, err
	}
	stored := resp.GetStored()
	if resp.GetComplete() {
		stream.CloseSend()
		return stored, true, false, nil
	}
	if c := resp.GetChallenge(); len(c) > 0 {
		return d.answerChallenge(ctx, stream, f, c)
	}
	if stored < 0 || stored > f.Size {
		return 0, false, false, fmt.Errorf("the server said it holds %d bytes of a %d-byte file", stored, f.Size)
	}
	// The sender runs beside the answers; window bounds what is on the way.
	// It starts with one chunk on the way and allows one more with each
	// answer, up to tune.window: a link cut at once loses one chunk, not
	// a window of them.
	window := make(chan struct{}, tune.window)
	reserved := tune.window - 1
	for range reserved {
		window <- struct{}{}
	}
	sendErr := make(chan error, 1)
	go func() {
		err := d.sendChunks(ctx, stream, f, stored, tune.chunk, window)
		if errors.Is(err, errLocal) {
			cancel() // the device cannot read its own file: end the call
		}
		sendErr <- err
	}()
	sentAny := stored < f.Size
	for {
		resp, err := stream.Recv()
		if err != nil {
			cancel()
			if serr := <-sendErr; errors.Is(serr, errLocal) {
				return stored, false, sentAny, serr
			}
			return stored, false, sentAny, err
		}
		if resp.GetStored() > stored {
			rep.Chunks++
			rep.Bytes += resp.GetStored() - stored
			stored = resp.GetStored()
			for range 1 + min(reserved, 1) {
				select {
				case <-window:
				default:
				}
			}
			reserved = max(reserved-1, 0)
		}
		if resp.GetComplete() {
			stream.CloseSend()
			cancel()
			<-sendErr
			return stored, true, sentAny, nil
		}
	}
}

// answerChallenge proves to the server that the device holds file f's
// bytes (the server holds the file whole already, uploaded through another
// record): HMAC-SHA256 keyed by the challenge over the whole file, read
// from the replica chunk by chunk.
func (d *Device) answerChallenge(ctx context.Context, stream grpc.BidiStreamingClient[pb.UploadRequest, pb.UploadResponse], f *store.FileRow, challenge []byte) (int64, bool, bool, error) {
	mac := hmac.New(sha256.New, challenge)
	for pos := int64(0); pos < f.Size; {
		if err := d.db.View(ctx, func(tx *store.RTx) error {
			off, held, err := tx.ChunkAt(f.SHA256, pos)
			if err != nil {
				return fmt.Errorf("%w: file %s at byte %d: %w", errLocal, clipSHA(f.SHA256), pos, err)
			}
			held = held[pos-off:]
			mac.Write(held)
			pos += int64(len(held))
			return nil
		}); err != nil {
			return 0, false, false, err
		}
	}
	if err := stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Proof{Proof: mac.Sum(nil)}}); err != nil {
		return 0, false, false, recvErr(stream, err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return 0, false, false, err
	}
	stream.CloseSend()
	return resp.GetStored(), resp.GetComplete(), false, nil
}

// sendChunks sends the file's bytes from pos in chunks of size (at most
// domain.ChunkBytes), read from the replica one at a time.
func (d *Device) sendChunks(ctx context.Context, stream grpc.BidiStreamingClient[pb.UploadRequest, pb.UploadResponse], f *store.FileRow, pos int64, size int, window chan struct{}) error {
	for pos < f.Size {
		var data []byte
		if err := d.db.View(ctx, func(tx *store.RTx) error {
			off, held, err := tx.ChunkAt(f.SHA256, pos)
			if err != nil {
				return fmt.Errorf("%w: file %s at byte %d: %w", errLocal, clipSHA(f.SHA256), pos, err)
			}
			held = held[pos-off:]
			data = held[:min(len(held), size)]
			return nil
		}); err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		if testCorruptChunk != nil {
			data = testCorruptChunk(f.SHA256, pos, data)
		}
		select {
		case window <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Chunk{Chunk: &pb.Chunk{Offset: pos, Data: data, Sha256: sum[:]}}}); err != nil {
			return err // the answers' side reads why
		}
		pos += int64(len(data))
	}
	return nil
}

// errLocal marks an upload that failed on the device itself (its copy
// of the file cannot be read: wiped or purged meanwhile).
var errLocal = errors.New("this device's copy of the file")

// recvErr is the status behind a failed Send (io.EOF: the server ended
// the stream; Recv says why).
func recvErr(stream grpc.BidiStreamingClient[pb.UploadRequest, pb.UploadResponse], err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := stream.Recv(); rerr != nil {
			return rerr
		}
	}
	return err
}
