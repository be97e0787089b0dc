package syncer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// Attachments on the device: photos and scans attached to records.
//
// Attach (or AttachFile) checks the file here, offline, before anything is
// queued: its size, its type (sniffed from its bytes, and the one
// claimed), that the record is on the device, takes files and that the
// user's role may attach to it. Then, in one local transaction, the
// file's chunks go into the replica (sealed like the rest) and an
// OP_ATTACH mutation into the outbox: the record shows the file at once,
// "pending". A sync sends the record's mutation only; after a sync whose
// answer applied it (the record as the server holds it names the file),
// UploadPending sends the bytes by AttachmentService.Upload, from what the
// server already holds: a dropped link costs at most the chunk in flight.
// Other devices see the reference with the record ("remote") and fetch the
// bytes on demand (FetchAttachment).

// Attachment states, as Attachments shows them.
const (
	FilePending   = "pending"   // attached here, not yet uploaded
	FileUploading = "uploading" // the server holds part of it (Sent)
	FileUploaded  = "uploaded"  // the server holds all of it
	FileRemote    = "remote"    // on the server, not (all) on this device
	FileLocal     = "local"     // fetched: all its bytes are on this device
	FileRefused   = "refused"   // refused (Reason); blocks nothing else
)

// Attachment is a file a record names, with its state on this device.
type Attachment struct {
	SHA256    string
	Size      int64
	MediaType string
	Caption   string
	AuthorID  string
	HLC       string
	State     string // FilePending ... FileRefused
	Reason    string // why refused
	Held      int64  // bytes on this device (Size when all are)
	Sent      int64  // bytes the server holds, as it last said (this device's own files)
}

// Errors of attachments.
var (
	// ErrNoFile is returned for a file the device does not hold (all of):
	// fetch it first (FetchAttachment).
	ErrNoFile = errors.New("this file is not on this device: fetch it first")
)

func invalid(field, format string, args ...any) error {
	return &domain.Rejection{Code: domain.CodeInvalidField, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Attach attaches data, a file of mediaType (one of domain.AttachmentTypes),
// to the record, with a caption (may be ""), and returns the file's
// SHA-256. It works offline; see the package's notes above.
func (d *Device) Attach(recordID, mediaType, caption string, data []byte) (string, error) {
	return d.attach(recordID, mediaType, caption, bytes.NewReader(data), int64(len(data)))
}

// AttachFile is Attach for the file at path, read a chunk at a time (never
// whole into memory): once to check and hash it, once to store it. A file
// that changes between the two reads is refused.
func (d *Device) AttachFile(recordID, mediaType, caption, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("attach %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("attach %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("attach %s: not a regular file", path)
	}
	return d.attach(recordID, mediaType, caption, f, st.Size())
}

// checkAttachable checks, before a byte is read, that the record is on
// the device, takes files and that the user may attach to it.
func (d *Device) checkAttachable(recordID string) error {
	return d.db.View(context.Background(), func(tx *store.RTx) error {
		ident, err := d.identity(tx)
		if err != nil {
			return err
		}
		cur, err := localView(tx, recordID)
		if err != nil {
			return err
		}
		m := &pb.Mutation{RecordId: recordID, Kind: cur.GetKind(), Op: pb.Op_OP_ATTACH}
		if !domain.Attachable(cur.GetKind()) {
			return &domain.Rejection{Code: domain.CodeInvalidField, Field: "mutation.op",
				Reason: fmt.Sprintf("files cannot be attached to a %s: only to a visit, dispute, need or project", domain.KindName(cur.GetKind()))}
		}
		if r := domain.CheckWrite(roleOf(ident), m); r != nil {
			return r
		}
		return nil
	})
}

// hashFile reads src in chunks: its SHA-256 and the type its first bytes
// show.
func hashFile(src io.ReaderAt, size int64) (string, string, error) {
	h := sha256.New()
	buf := make([]byte, domain.ChunkBytes)
	sniffed := ""
	for off := int64(0); off < size; {
		n, err := src.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if n == 0 && err != nil {
			return "", "", fmt.Errorf("read the file at byte %d: %w", off, err)
		}
		if off == 0 {
			sniffed = domain.SniffType(buf[:min(n, 512)])
		}
		h.Write(buf[:n])
		off += int64(n)
	}
	return hex.EncodeToString(h.Sum(nil)), sniffed, nil
}

func (d *Device) attach(recordID, mediaType, caption string, src io.ReaderAt, size int64) (string, error) {
	if !slices.Contains(domain.AttachmentTypes, mediaType) {
		return "", invalid("attachment.media_type", "%q: want one of %s", mediaType, strings.Join(domain.AttachmentTypes, ", "))
	}
	if size < 1 || size > domain.MaxAttachmentBytes {
		return "", invalid("attachment.size", "%d bytes: a file has 1 to %d bytes (%d MiB)", size, domain.MaxAttachmentBytes, domain.MaxAttachmentBytes>>20)
	}
	if err := domain.CheckDisplayText("attachment.caption", caption, domain.MaxCaptionBytes); err != nil {
		return "", err
	}
	if err := d.checkAttachable(recordID); err != nil {
		return "", err
	}
	sha, sniffed, err := hashFile(src, size)
	if err != nil {
		return "", err
	}
	if sniffed != mediaType {
		shows := "none of " + strings.Join(domain.AttachmentTypes, ", ")
		if sniffed != "" {
			shows = sniffed
		}
		return "", invalid("attachment.media_type", "claimed %s, but the file's bytes are %s", mediaType, shows)
	}
	err = d.write(func(tx *store.RTx, _ *Identity, m *pb.Mutation) error {
		cur, err := localView(tx, recordID)
		if err != nil {
			return err
		}
		m.RecordId, m.Kind, m.Op = recordID, cur.GetKind(), pb.Op_OP_ATTACH
		m.Attachment = &pb.Attachment{Sha256: sha, Size: size, MediaType: mediaType, Caption: caption}
		return d.keepFile(tx, recordID, sha, mediaType, src, size)
	})
	if err != nil {
		return "", err
	}
	return sha, nil
}

// keepFile stores the file's chunks (unless the device holds it all
// already) and marks it this device's, to upload.
func (d *Device) keepFile(tx *store.RTx, recordID, sha, mediaType string, src io.ReaderAt, size int64) error {
	f, err := tx.File(sha)
	if errors.Is(err, store.ErrNotFound) {
		f, err = &store.FileRow{SHA256: sha, Size: size, MediaType: mediaType}, nil
	}
	if err != nil {
		return err
	}
	if !f.Complete() || f.Size != size {
		if err := tx.DeleteChunksFrom(sha, 0); err != nil {
			return err
		}
		h := sha256.New()
		buf := make([]byte, domain.ChunkBytes)
		for off := int64(0); off < size; {
			n, err := io.ReadFull(io.NewSectionReader(src, off, min(int64(len(buf)), size-off)), buf[:min(int64(len(buf)), size-off)])
			if err != nil {
				return fmt.Errorf("read the file at byte %d: %w", off, err)
			}
			h.Write(buf[:n])
			if err := tx.PutChunk(sha, off, buf[:n]); err != nil {
				return fmt.Errorf("keep the file: %w", err)
			}
			off += int64(n)
		}
		if hex.EncodeToString(h.Sum(nil)) != sha {
			return errors.New("attach: the file changed while it was being read: attach it again")
		}
		f.Size, f.Held, f.MediaType = size, size, mediaType
	}
	if !f.Mine || f.State == store.FileRefused || f.State == store.FileLocal {
		f.Mine, f.State, f.RecordID, f.Reason, f.Sent = true, store.FilePending, recordID, "", 0
	}
	if f.CreatedMs == 0 {
		f.CreatedMs = d.opts.Now().UnixMilli()
	}
	return tx.PutFile(f)
}

// Attachments lists the files a record names, with their state on this
// device.
func (d *Device) Attachments(recordID string) ([]*Attachment, error) {
	var out []*Attachment
	err := d.db.View(context.Background(), func(tx *store.RTx) error {
		cur, err := localView(tx, recordID)
		if err != nil {
			return err
		}
		out, err = attachmentsOf(tx, cur)
		return err
	})
	return out, err
}

// attachmentsOf is the files rec names with their local states.
func attachmentsOf(tx *store.RTx, rec *pb.Record) ([]*Attachment, error) {
	var out []*Attachment
	for _, a := range rec.GetAttachments() {
		at := &Attachment{SHA256: a.GetSha256(), Size: a.GetSize(), MediaType: a.GetMediaType(), Caption: a.GetCaption(),
			AuthorID: a.GetAuthorId(), HLC: a.GetHlc(), State: FileRemote}
		f, err := tx.File(a.GetSha256())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if f != nil {
			at.Held, at.Sent, at.Reason = f.Held, f.Sent, f.Reason
			switch {
			case f.Mine && f.State == store.FilePending:
				at.State = FilePending
			case f.Mine && f.State == store.FileUploading:
				at.State = FileUploading
			case f.Mine && f.State == store.FileUploaded:
				at.State = FileUploaded
			case f.State == store.FileRefused:
				at.State = FileRefused
			case f.Complete():
				at.State = FileLocal
			}
		}
		out = append(out, at)
	}
	// A file this device attached whose attach the server refused is no
	// part of the record: shown, refused, with the reason.
	mine, err := refusedFor(tx, rec)
	if err != nil {
		return nil, err
	}
	return append(out, mine...), nil
}

// refusedFor lists the files this device attached to rec that the server
// refused and rec does not name.
func refusedFor(tx *store.RTx, rec *pb.Record) ([]*Attachment, error) {
	queued, err := tx.OutboxFor(rec.GetId())
	if err != nil {
		return nil, err
	}
	var out []*Attachment
	for _, q := range queued {
		a := q.Mutation.GetAttachment()
		if q.Status != store.OutboxRejected || q.Mutation.GetOp() != pb.Op_OP_ATTACH || domain.HasAttachment(rec, a.GetSha256()) {
			continue
		}
		at := &Attachment{SHA256: a.GetSha256(), Size: a.GetSize(), MediaType: a.GetMediaType(), Caption: a.GetCaption(),
			HLC: q.Mutation.GetHlc(), State: FileRefused, Reason: "the server refused the attach: " + q.Field + ": " + q.Reason}
		if f, err := tx.File(a.GetSha256()); err == nil {
			at.Held = f.Held
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		out = append(out, at)
	}
	return out, nil
}

// ReadAttachment returns a file's bytes, all on this device (ErrNoFile if
// not: FetchAttachment first). For a large file CopyAttachment streams.
func (d *Device) ReadAttachment(sha string) ([]byte, error) {
	var buf bytes.Buffer
	if err := d.CopyAttachment(sha, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// CopyAttachment writes a file's bytes to w, a chunk at a time, checking
// them against its SHA-256 (ErrNoFile if they are not all on this device).
func (d *Device) CopyAttachment(sha string, w io.Writer) error {
	return d.db.View(context.Background(), func(tx *store.RTx) error {
		f, err := tx.File(sha)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !f.Complete()) {
			return fmt.Errorf("file %s: %w", clipSHA(sha), ErrNoFile)
		}
		if err != nil {
			return err
		}
		h := sha256.New()
		for pos := int64(0); pos < f.Size; {
			off, data, err := tx.ChunkAt(sha, pos)
			if err != nil {
				return fmt.Errorf("file %s at byte %d: %w", clipSHA(sha), pos, err)
			}
			data = data[pos-off:]
			h.Write(data)
			if _, err := w.Write(data); err != nil {
				return err
			}
			pos += int64(len(data))
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != sha {
			return fmt.Errorf("file %s: the bytes held do not match its SHA-256 (%s)", clipSHA(sha), clipSHA(got))
		}
		return nil
	})
}

func clipSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// sweepFiles removes the files no record on the device names any more
// (after a purge): their rows and chunks, zeroed (secure_delete). It
// returns how many went.
func sweepFiles(tx *store.RTx) (int, error) {
	files, err := tx.Files()
	if err != nil || len(files) == 0 {
		return 0, err
	}
	named := map[string]bool{}
	recs, err := tx.Records(pb.Kind_KIND_UNSPECIFIED)
	if err != nil {
		return 0, err
	}
	for _, lr := range recs {
		for _, r := range []*pb.Record{lr.Base, lr.Local} {
			for _, a := range r.GetAttachments() {
				named[a.GetSha256()] = true
			}
		}
	}
	// A file whose attach waits in the outbox is named by the record's
	// local view, which stays while the outbox holds it.
	n := 0
	for _, f := range files {
		if named[f.SHA256] {
			continue
		}
		if f.Mine && (f.State == store.FilePending || f.State == store.FileUploading) {
			// Attached here and not uploaded yet: this phone holds the
			// only copy, so it stays until the upload (the server lets
			// the attach's author upload it though the record left the
			// user's scope).
			continue
		}
		if err := tx.DeleteFile(f.SHA256); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
