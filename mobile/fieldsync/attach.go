package fieldsync

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/mobile/fieldsync/schema"
	"github.com/fieldsync/fieldsync/syncer"
)

// Attachments: photos and scans (JPEG, PNG, WebP, PDF; at most 10 MiB, 20
// a record) attached to a visit, dispute, need or project. Attaching works
// offline: the file is kept in the device database (encrypted like the
// rest), the record shows it at once as "pending", and after the next
// sync sent the record the file is uploaded in chunks, resuming where a
// dropped link cut it. Other phones see the reference ("remote") and
// fetch the bytes on demand (FetchAttachment), never by themselves.

// The networks SetNetwork takes.
const (
	NetworkWifi     = "wifi"
	NetworkCellular = "cellular"
	NetworkNone     = "none"
)

// SetNetwork tells the client what network the phone is on: "wifi",
// "cellular" or "none" (Android's ConnectivityManager, iOS's
// NWPathMonitor; call it on every change). With fetch_only_on_wifi set,
// FetchAttachment fails with retry_later on "cellular"; with
// upload_only_on_wifi set, files wait for "wifi" (records still sync;
// foreground mode syncs, and so uploads, as soon as Wi-Fi is back).
// Until the app calls it the client assumes any network will do.
func (c *Client) SetNetwork(network string) error {
	if err := c.open(); err != nil {
		return err
	}
	switch network {
	case NetworkWifi, NetworkCellular, NetworkNone:
	default:
		return codef(CodeInvalid, "network %q: want wifi, cellular or none", network)
	}
	c.mu.Lock()
	was := c.network
	c.network = network
	c.mu.Unlock()
	if network == NetworkWifi && was != NetworkWifi && c.opts.UploadOnlyOnWifi {
		c.wakeForeground() // files held on cellular go up now
	}
	return nil
}

// netAllows says whether a transfer may run on the network the app said
// the phone is on: nil, or a retry_later error saying why not.
func (c *Client) netAllows(what string, onlyWifi bool) error {
	c.mu.Lock()
	n := c.network
	c.mu.Unlock()
	switch {
	case n == NetworkNone:
		return retryLater(unreachableWait, errors.New(what+": the app says the phone has no network (SetNetwork)"))
	case n == NetworkCellular && onlyWifi:
		opt := "fetch_only_on_wifi"
		if what == "upload" {
			opt = "upload_only_on_wifi"
		}
		return retryLater(unreachableWait, errors.New(what+": the phone is on a cellular network and "+opt+" is set: it runs on Wi-Fi"))
	}
	return nil
}

// AttachBytes attaches a file held in memory (a photo the camera gave) to
// a record the device holds, with its media type (image/jpeg, image/png,
// image/webp, application/pdf) and a caption ("" for none), and returns
// the file's SHA-256 (hex), its name from then on. The bytes must be of
// the type claimed (they are sniffed), 1 byte to 10 MiB; the record must
// be a visit, dispute, need or project the user may attach to. Errors:
// invalid (naming data, media_type or caption), not_found, not_allowed,
// out_of_space. Attaching the same file to the record again does nothing.
func (c *Client) AttachBytes(recordID, mediaType, caption string, data []byte) (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	if err := checkMediaType(mediaType); err != nil {
		return "", err
	}
	if n := len(data); n < 1 || n > domain.MaxAttachmentBytes {
		return "", codef(CodeInvalid, "data: %d bytes: a file has 1 to %d bytes (%d MiB)", n, domain.MaxAttachmentBytes, domain.MaxAttachmentBytes>>20)
	}
	sha, err := c.dev.Attach(recordID, mediaType, caption, data)
	if err != nil {
		return "", c.classify("write", err)
	}
	c.wrote("attach", recordID, "")
	return sha, nil
}

// AttachFile is AttachBytes for a file on the phone (a path in the app's
// files or cache: a scan the document scanner wrote); it is read in
// chunks, never whole. Errors as AttachBytes's, and invalid naming path
// when it cannot be read.
func (c *Client) AttachFile(recordID, mediaType, caption, path string) (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	if err := checkMediaType(mediaType); err != nil {
		return "", err
	}
	fi, err := os.Stat(path)
	switch {
	case path == "":
		return "", codef(CodeInvalid, "path: empty: want the file's path")
	case err != nil:
		return "", codef(CodeInvalid, "path %q: %v", path, err)
	case !fi.Mode().IsRegular():
		return "", codef(CodeInvalid, "path %q: not a regular file", path)
	case fi.Size() < 1 || fi.Size() > domain.MaxAttachmentBytes:
		return "", codef(CodeInvalid, "path %q: %d bytes: a file has 1 to %d bytes (%d MiB)", path, fi.Size(), domain.MaxAttachmentBytes, domain.MaxAttachmentBytes>>20)
	}
	sha, err := c.dev.AttachFile(recordID, mediaType, caption, path)
	if err != nil {
		return "", c.classify("write", err)
	}
	c.wrote("attach", recordID, "")
	return sha, nil
}

// checkMediaType checks a media type before the device is asked.
func checkMediaType(t string) error {
	if !slices.Contains(domain.AttachmentTypes, t) {
		return codef(CodeInvalid, "media_type %q: want one of %s", t, strings.Join(domain.AttachmentTypes, ", "))
	}
	return nil
}

// checkSHA checks a file's name as the app gives it.
func checkSHA(sha string) error {
	if b, err := hex.DecodeString(sha); err != nil || len(b) != 32 || strings.ToLower(sha) != sha {
		return codef(CodeInvalid, "sha256 %q: want the 64 lowercase hex digits Attachments gives", clip(sha))
	}
	return nil
}

// clip shortens a bad argument for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Attachments returns the files attached to a record, in the order they
// were attached, each with where its bytes are (state: pending,
// uploading, uploaded, remote, local, refused), as a JSON array of
// schema.Attachment ([] when none). not_found if the device does not hold
// the record.
func (c *Client) Attachments(recordID string) (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	list, err := c.dev.Attachments(recordID)
	if err != nil {
		return "", c.classify("read", err)
	}
	out := make([]schema.Attachment, 0, len(list))
	for _, a := range list {
		out = append(out, toAttachment(a))
	}
	return marshal(out)
}

// FetchAttachment brings a file of a record onto this device, within
// timeoutMillis (0 = 30 s), resuming from the bytes a cut-off fetch left.
// A file already here returns at once. Errors: retry_later (no network,
// cellular with fetch_only_on_wifi, the server unreachable, or the file not
// uploaded yet by the phone that attached it), not_allowed (the record is
// not in this user's scope), not_found (no such record, or the record does
// not name the file), invalid (sha256).
func (c *Client) FetchAttachment(recordID, sha string, timeoutMillis int64) error {
	if err := c.open(); err != nil {
		return err
	}
	if err := checkSHA(sha); err != nil {
		return err
	}
	limit, err := timeout("timeoutMillis", timeoutMillis)
	if err != nil {
		return err
	}
	if _, local := c.named(recordID, sha); local {
		return nil // here already: no network needed
	}
	if err := c.netAllows("fetch", c.opts.FetchOnlyOnWifi); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.life, limit)
	defer cancel()
	if err := c.dev.FetchAttachment(ctx, recordID, sha); err != nil {
		if named, _ := c.named(recordID, sha); named && fileCode(err) == codes.NotFound {
			// The record names the file but the server lacks it: the
			// phone that attached it has not uploaded it yet.
			return retryLater(unreachableWait, err)
		}
		return c.classifyFile("fetch", err)
	}
	return nil
}

// named says whether the record, as this device holds it, names the
// file, and whether all of the file's bytes are on this device.
func (c *Client) named(recordID, sha string) (named, local bool) {
	list, err := c.dev.Attachments(recordID)
	if err != nil {
		return false, false
	}
	for _, a := range list {
		if a.SHA256 == sha {
			return true, a.Size > 0 && a.Held >= a.Size
		}
	}
	return false, false
}

// UploadPending uploads the files attached on this phone that the server
// does not hold yet, within timeoutMillis (0 = 30 s), and returns a
// schema.UploadReport as JSON. SyncOnce and foreground mode do it after
// each sync by themselves; call it to hurry a file (on Wi-Fi after
// upload_only_on_wifi held it, say). A file the server refuses is marked
// refused (Attachments says why) and the others go on.
func (c *Client) UploadPending(timeoutMillis int64) (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	limit, err := timeout("timeoutMillis", timeoutMillis)
	if err != nil {
		return "", err
	}
	if err := c.netAllows("upload", c.opts.UploadOnlyOnWifi); err != nil {
		return marshal(&schema.UploadReport{Skipped: strings.TrimPrefix(err.Error(), CodeRetryLater+": ")})
	}
	ctx, cancel := context.WithTimeout(c.life, limit)
	defer cancel()
	start := time.Now()
	r, err := c.dev.UploadPending(ctx)
	rep := toUploadReport(r)
	rep.DurationMs = time.Since(start).Milliseconds()
	if err != nil {
		return "", c.classifyFile("upload", err)
	}
	return marshal(rep)
}

// SaveAttachment writes a file this device holds (attached here, or
// fetched) to path (a file in the app's cache, to open with a viewer or
// share), replacing what is there; the file appears whole or not at all.
// not_found if the device does not hold the file's bytes (FetchAttachment
// first).
func (c *Client) SaveAttachment(sha, path string) (err error) {
	if err := c.open(); err != nil {
		return err
	}
	if err := checkSHA(sha); err != nil {
		return err
	}
	if path == "" {
		return codef(CodeInvalid, "path: empty: want the file to write")
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		if isDiskFull(err) {
			return coded(CodeOutOfSpace, err)
		}
		return codef(CodeInvalid, "path %q: %v", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := c.dev.CopyAttachment(sha, f); err != nil {
		return c.classifyFile("read", err)
	}
	if err := f.Sync(); err != nil {
		return classify("save", err)
	}
	if err := f.Close(); err != nil {
		return classify("save", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return classify("save", err)
	}
	return nil
}

// ReadAttachment returns the bytes of a file this device holds (for a
// thumbnail in memory; SaveAttachment for a large file). not_found if the
// device does not hold them.
func (c *Client) ReadAttachment(sha string) ([]byte, error) {
	if err := c.open(); err != nil {
		return nil, err
	}
	if err := checkSHA(sha); err != nil {
		return nil, err
	}
	b, err := c.dev.ReadAttachment(sha)
	if err != nil {
		return nil, c.classifyFile("read", err)
	}
	return b, nil
}

// classifyFile gives a file transfer's error its code: the server's gRPC
// status when there is one (the file service answers with statuses naming
// the field), else as any other error.
func (c *Client) classifyFile(what string, err error) error {
	var ce *codedError
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, syncer.ErrNoFile) {
		return coded(CodeNotFound, err)
	}
	var (
		retry *syncer.RetryError
		rej   *domain.Rejection
	)
	if errors.Is(err, syncer.ErrRevoked) || errors.Is(err, syncer.ErrNotEnrolled) || errors.Is(err, syncer.ErrCloned) ||
		errors.Is(err, syncer.ErrNotFound) || errors.As(err, &retry) || errors.As(err, &rej) || errors.Is(err, context.DeadlineExceeded) {
		return c.classify(what, err)
	}
	if code := fileCode(err); code != codes.OK && code != codes.Unknown {
		st, _ := grpcstatus.FromError(err)
		switch code {
		case codes.PermissionDenied:
			return coded(CodeNotAllowed, err)
		case codes.NotFound:
			return coded(CodeNotFound, err)
		case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition:
			return coded(CodeInvalid, err)
		case codes.ResourceExhausted, codes.Unavailable, codes.Aborted, codes.DeadlineExceeded, codes.Canceled:
			after := unreachableWait
			for _, d := range st.Details() { // when syncer kept the status
				if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
					after = ri.GetRetryDelay().AsDuration()
				}
			}
			return retryLater(after, err)
		}
	}
	return c.classify(what, err)
}

// toAttachment is an attachment as the SDK shows it.
func toAttachment(a *syncer.Attachment) schema.Attachment {
	return schema.Attachment{
		SHA256: a.SHA256, Size: a.Size, MediaType: a.MediaType, Caption: a.Caption,
		AuthorID: a.AuthorID, HLC: a.HLC, State: a.State, Reason: a.Reason,
		Local: a.Size > 0 && a.Held >= a.Size,
	}
}

// toUploadReport is UploadPending's report as the SDK shows it.
func toUploadReport(r *syncer.UploadReport) *schema.UploadReport {
	if r == nil {
		return &schema.UploadReport{}
	}
	return &schema.UploadReport{Uploaded: r.Uploaded, Already: r.Already, Refused: r.Refused, Left: r.Left,
		Bytes: r.Bytes, Error: r.Err}
}

// holdUploads is syncer's HoldUploads: with upload_only_on_wifi, files
// wait while the app says the phone is on a cellular network or none.
func (c *Client) holdUploads() bool {
	if !c.opts.UploadOnlyOnWifi {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.network == NetworkCellular || c.network == NetworkNone
}

// fileCode is the server's status code behind a file transfer's error:
// the status itself, or the words syncer tells it in ("permission denied:
// ...", syncer's codeWords), or codes.Unknown.
func fileCode(err error) codes.Code {
	if st, ok := grpcstatus.FromError(err); ok && st.Code() != codes.Unknown {
		return st.Code()
	}
	m := err.Error()
	for _, c := range []codes.Code{codes.PermissionDenied, codes.Unauthenticated, codes.NotFound, codes.InvalidArgument,
		codes.OutOfRange, codes.FailedPrecondition, codes.ResourceExhausted, codes.Aborted, codes.DataLoss} {
		if strings.Contains(m, codeWords(c)+": ") {
			return c
		}
	}
	return codes.Unknown
}

// codeWords is a status code as syncer words it: "permission denied".
func codeWords(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
