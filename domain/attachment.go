package domain

import (
	"encoding/hex"
	"net/http"
	"slices"
	"sort"
	"strings"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Attachments: files (photos, scans of a signed agreement) attached to a
// record by an OP_ATTACH mutation. The record carries a reference
// (pb.Attachment: SHA-256, size, type, caption); the bytes travel apart,
// after the records, in chunks of ChunkBytes (AttachmentService). The
// limits below are checked on the device before a file is queued and again
// on the server, from the reference and from the bytes themselves.
const (
	// MaxAttachmentBytes is the largest file: a phone's photo (3-5 MB) or
	// a multi-page scan as a PDF.
	MaxAttachmentBytes = 10 << 20
	// ChunkBytes is the size of an upload's or a fetch's chunk: small
	// enough that a 2G link that drops every few tens of KB still moves a
	// chunk at a time (12.5 KB/s: 2.6 s a chunk), large enough that the
	// per-chunk overhead (a hash, a frame, an answer) stays under 1%.
	ChunkBytes = 32 << 10
	// MaxAttachments is how many files one record may carry.
	MaxAttachments = 20
	// MaxCaptionBytes bounds an attachment's caption.
	MaxCaptionBytes = 200
)

// AttachmentTypes are the media types a file may have.
var AttachmentTypes = []string{"image/jpeg", "image/png", "image/webp", "application/pdf"}

// attachable are the kinds a file may be attached to.
var attachable = []pb.Kind{pb.Kind_KIND_VISIT, pb.Kind_KIND_DISPUTE, pb.Kind_KIND_NEED, pb.Kind_KIND_PROJECT}

// Attachable says whether files may be attached to records of kind k.
func Attachable(k pb.Kind) bool { return slices.Contains(attachable, k) }

// CheckAttachment checks an attachment reference as a device gives it: its
// hash, size, type and caption.
func CheckAttachment(a *pb.Attachment) *Rejection {
	if a == nil {
		return reject(CodeInvalidField, "mutation.attachment", "missing: an attach names the file (sha256, size, media_type)")
	}
	if b, err := hex.DecodeString(a.GetSha256()); err != nil || len(b) != 32 || strings.ToLower(a.GetSha256()) != a.GetSha256() {
		return reject(CodeInvalidField, "attachment.sha256", "%q: want the 64 lowercase hex digits of the file's SHA-256", clip(a.GetSha256()))
	}
	if a.GetSize() < 1 || a.GetSize() > MaxAttachmentBytes {
		return reject(CodeInvalidField, "attachment.size", "%d bytes: a file has 1 to %d bytes (%d MiB)", a.GetSize(), MaxAttachmentBytes, MaxAttachmentBytes>>20)
	}
	if !slices.Contains(AttachmentTypes, a.GetMediaType()) {
		return reject(CodeInvalidField, "attachment.media_type", "%q: want one of %s", clip(a.GetMediaType()), strings.Join(AttachmentTypes, ", "))
	}
	if err := CheckDisplayText("attachment.caption", a.GetCaption(), MaxCaptionBytes); err != nil {
		return reject(CodeInvalidField, "attachment.caption", "%v", err)
	}
	return nil
}

// SniffType returns the media type the first bytes of a file show (up to
// 512 are read), as AttachmentTypes names them, or "" for none of them:
// a file is refused when its bytes are not of the type it claims.
func SniffType(head []byte) string {
	t := http.DetectContentType(head)
	if i := strings.IndexByte(t, ';'); i >= 0 {
		t = t[:i]
	}
	if slices.Contains(AttachmentTypes, t) {
		return t
	}
	return ""
}

// validateAttach is ValidateMutation for OP_ATTACH.
func validateAttach(s *Spec, m *pb.Mutation) *Rejection {
	if !Attachable(m.GetKind()) {
		names := make([]string, len(attachable))
		for i, k := range attachable {
			names[i] = KindName(k)
		}
		return reject(CodeInvalidField, "mutation.op", "files cannot be attached to a %s: only to %s", s.Name, strings.Join(names, ", "))
	}
	if len(m.GetFields()) != 0 {
		return reject(CodeInvalidField, "mutation.fields", "an attach carries no fields, only the attachment")
	}
	return CheckAttachment(m.GetAttachment())
}

// attach is Apply for OP_ATTACH: the file joins the record's attachments
// (once: the same file attached again is one attachment), in clock order.
func attach(next *pb.Record, m *pb.Mutation, a Actor) *Rejection {
	ref := m.GetAttachment()
	for _, have := range next.GetAttachments() {
		if have.GetSha256() == ref.GetSha256() {
			return nil
		}
	}
	if len(next.GetAttachments()) >= MaxAttachments {
		return reject(CodeInvalidField, "attachment", "this %s already has %d files: at most %d", KindName(next.GetKind()), len(next.GetAttachments()), MaxAttachments)
	}
	next.Attachments = append(next.Attachments, &pb.Attachment{
		Sha256: ref.GetSha256(), Size: ref.GetSize(), MediaType: ref.GetMediaType(), Caption: ref.GetCaption(),
		Hlc: m.GetHlc(), AuthorId: a.UserID,
	})
	sort.SliceStable(next.Attachments, func(i, j int) bool {
		x, y := next.Attachments[i], next.Attachments[j]
		if x.GetHlc() != y.GetHlc() {
			return x.GetHlc() < y.GetHlc()
		}
		return x.GetSha256() < y.GetSha256()
	})
	return nil
}

// HasAttachment says whether record r names the file with hash sha.
func HasAttachment(r *pb.Record, sha string) bool {
	for _, a := range r.GetAttachments() {
		if a.GetSha256() == sha {
			return true
		}
	}
	return false
}
