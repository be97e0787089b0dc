package syncer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// FetchAttachment brings the bytes of a file that record recordID names
// onto this device (on demand: a sync brings the reference only), from
// the server, resuming from what the device already holds of it. Each
// chunk is checked against its hash and committed as it comes; the whole
// file is checked against its SHA-256, size and type at the end (a file
// that does not match is dropped). A file already here is not fetched
// again.
func (d *Device) FetchAttachment(ctx context.Context, recordID, sha string) error {
	d.fetchMu.Lock()
	defer d.fetchMu.Unlock()
	var (
		ident *Identity
		token string
		f     *store.FileRow
	)
	if err := d.db.Update(ctx, func(tx *store.RTx) error {
		var err error
		if ident, err = d.identity(tx); err != nil {
			return err
		}
		if token, err = tx.Meta(metaToken); err != nil {
			return err
		}
		cur, err := localView(tx, recordID)
		if err != nil {
			return err
		}
		var ref *pb.Attachment
		for _, a := range cur.GetAttachments() {
			if a.GetSha256() == sha {
				ref = a
			}
		}
		if ref == nil {
			return fmt.Errorf("record %s names no file %s: %w", recordID, clipSHA(sha), ErrNotFound)
		}
		f, err = tx.File(sha)
		if errors.Is(err, store.ErrNotFound) {
			f = &store.FileRow{SHA256: sha, Size: ref.GetSize(), MediaType: ref.GetMediaType(), CreatedMs: d.opts.Now().UnixMilli()}
			return tx.PutFile(f)
		}
		return err
	}); err != nil {
		return err
	}
	if f.Complete() {
		return nil
	}
	d.mu.Lock()
	conn, err := d.dial(ident.Server, ident.CAFingerprint)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	fails, best := 0, f.Held
	for attempt := 0; ; attempt++ {
		if err := d.ready(ctx, conn); err != nil {
			return err
		}
		err := d.fetchOnce(ctx, conn, token, recordID, f)
		if err == nil {
			return nil
		}
		st, isStatus := status.FromError(err)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case isRevoked(err):
			return d.wipe()
		case isStatus && st.Code() != codes.Unavailable && st.Code() != codes.Internal && st.Code() != codes.Canceled && st.Code() != codes.Unknown:
			return fmt.Errorf("fetch file %s: %w", clipSHA(sha), describe(err))
		case !isStatus:
			return fmt.Errorf("fetch file %s: %w", clipSHA(sha), err)
		}
		if f.Held > best {
			best, fails = f.Held, 0
		} else if fails++; fails >= uploadAttempts {
			return fmt.Errorf("fetch file %s (%d of %d bytes here, kept: the next fetch goes on from there): %w", clipSHA(sha), f.Held, f.Size, describe(err))
		}
	}
}

// fetchOnce runs one Fetch call from what the device holds, committing
// each chunk; f.Held follows.
func (d *Device) fetchOnce(ctx context.Context, conn *grpc.ClientConn, token, recordID string, f *store.FileRow) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewAttachmentServiceClient(conn).Fetch(d.authed(ctx, token),
		&pb.FetchRequest{RecordId: recordID, Sha256: f.SHA256, Offset: f.Held}, grpc.UseCompressor(encoding.Identity))
	if err != nil {
		return err
	}
	for f.Held < f.Size {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if resp.GetSize() != 0 && (resp.GetSize() != f.Size || (resp.GetMediaType() != "" && resp.GetMediaType() != f.MediaType)) {
			return fmt.Errorf("the server's file %s is %d bytes of %s; the record names %d bytes of %s", clipSHA(f.SHA256), resp.GetSize(), resp.GetMediaType(), f.Size, f.MediaType)
		}
		c := resp.GetChunk()
		if c == nil || len(c.GetData()) == 0 {
			continue
		}
		if c.GetOffset() != f.Held || len(c.GetData()) > domain.ChunkBytes || f.Held+int64(len(c.GetData())) > f.Size {
			return fmt.Errorf("the server sent %d bytes at %d of file %s; expected at most %d at %d", len(c.GetData()), c.GetOffset(), clipSHA(f.SHA256), domain.ChunkBytes, f.Held)
		}
		if sum := sha256.Sum256(c.GetData()); !bytes.Equal(sum[:], c.GetSha256()) {
			return status.Errorf(codes.Unavailable, "chunk at %d of file %s damaged on the way (its sha256 does not match): fetched again", c.GetOffset(), clipSHA(f.SHA256))
		}
		last := f.Held+int64(len(c.GetData())) == f.Size
		if err := d.db.Update(ctx, func(tx *store.RTx) error {
			if err := tx.PutChunk(f.SHA256, f.Held, c.GetData()); err != nil {
				return err
			}
			cur, err := tx.File(f.SHA256)
			if err != nil {
				return err
			}
			cur.Held += int64(len(c.GetData()))
			if last {
				if err := checkWhole(tx, cur); err != nil {
					return &wholeErr{err} // rolled back; dropped below
				}
			}
			*f = *cur
			return tx.PutFile(cur)
		}); err != nil {
			var we *wholeErr
			if errors.As(err, &we) {
				// Not the file the record names: dropped, to be fetched anew.
				d.db.Update(context.Background(), func(tx *store.RTx) error {
					if err := tx.DeleteChunksFrom(f.SHA256, 0); err != nil {
						return err
					}
					f.Held = 0
					return tx.PutFile(f)
				})
				return status.Error(codes.DataLoss, we.err.Error())
			}
			return err
		}
	}
	return nil
}

type wholeErr struct{ err error }

func (e *wholeErr) Error() string { return e.err.Error() }

// checkWhole checks a whole file held against its SHA-256 and type.
func checkWhole(tx *store.RTx, f *store.FileRow) error {
	h := sha256.New()
	var head []byte
	for pos := int64(0); pos < f.Size; {
		off, data, err := tx.ChunkAt(f.SHA256, pos)
		if err != nil {
			return fmt.Errorf("file %s at byte %d: %w", clipSHA(f.SHA256), pos, err)
		}
		data = data[pos-off:]
		if head == nil {
			head = data[:min(len(data), 512)]
		}
		h.Write(data)
		pos += int64(len(data))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		return fmt.Errorf("the fetched file's SHA-256 is %s, not %s as the record names: dropped", clipSHA(got), clipSHA(f.SHA256))
	}
	if t := domain.SniffType(head); t != f.MediaType {
		return fmt.Errorf("the fetched file's bytes are %q, not %s as the record names: dropped", t, f.MediaType)
	}
	return nil
}
