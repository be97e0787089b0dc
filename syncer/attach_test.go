package syncer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// photo is n bytes that sniff as a JPEG (its magic, then random bytes:
// they do not compress, as a real photo's do not).
func photo(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	copy(b, []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00})
	return b
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newDispute(t testing.TB, d *syncer.Device, title string) string {
	t.Helper()
	id, err := d.Create("dispute", syncer.NewFields().Set("category", "quarrel").Set("title", title).Set("mediators", testenv.Mediator2))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func attachments(t testing.TB, d *syncer.Device, id string) []*syncer.Attachment {
	t.Helper()
	as, err := d.Attachments(id)
	if err != nil {
		t.Fatalf("attachments of %s: %v", id, err)
	}
	return as
}

func wantState(t testing.TB, d *syncer.Device, id, sha, state string) *syncer.Attachment {
	t.Helper()
	for _, a := range attachments(t, d, id) {
		if a.SHA256 == sha {
			if a.State != state {
				t.Fatalf("file %s of %s is %q (%s), want %q", sha[:8], id, a.State, a.Reason, state)
			}
			return a
		}
	}
	t.Fatalf("record %s names no file %s", id, sha[:8])
	return nil
}

// A file too large, of another type than claimed, for a record the device
// does not hold or a kind that takes no files, or with a caption too
// long, is refused on the device before anything is queued, the field
// named; nothing is kept of it.
func TestAttachCheckedBeforeQueuing(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	med := e.Device(testenv.Mediator)
	testenv.Sync(t, med)
	id := newDispute(t, med, "界樁爭議")
	before, err := med.Status()
	if err != nil {
		t.Fatal(err)
	}
	png := append([]byte("\x89PNG\r\n\x1a\n"), photo(t, 1000)[11:]...)
	exe := append([]byte("MZ\x90\x00\x03\x00\x00\x00"), photo(t, 1000)[11:]...)
	for _, c := range []struct {
		name, record, mediaType, caption string
		data                             []byte
		field                            string
	}{
		{"too large", id, "image/jpeg", "", photo(t, domain.MaxAttachmentBytes+1), "attachment.size"},
		{"empty", id, "image/jpeg", "", nil, "attachment.size"},
		{"png claimed as jpeg", id, "image/jpeg", "", png, "attachment.media_type"},
		{"exe claimed as pdf", id, "application/pdf", "", exe, "attachment.media_type"},
		{"a type not allowed", id, "application/x-msdownload", "", exe, "attachment.media_type"},
		{"caption too long", id, "image/jpeg", strings.Repeat("協議書", 100), photo(t, 1000), "attachment.caption"},
	} {
		_, err := med.Attach(c.record, c.mediaType, c.caption, c.data)
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.field)
		}
	}
	member := e.Device(testenv.Member)
	testenv.Sync(t, member)
	if _, err := member.Attach("H001", "image/jpeg", "", photo(t, 1000)); err == nil || !strings.Contains(err.Error(), "mutation.op") {
		t.Errorf("a household: %v, want an error naming mutation.op", err)
	}
	if _, err := med.Attach("no-such-record", "image/jpeg", "", photo(t, 1000)); !errors.Is(err, syncer.ErrNotFound) {
		t.Errorf("a record the device does not hold: %v, want ErrNotFound", err)
	}
	after, err := med.Status()
	if err != nil {
		t.Fatal(err)
	}
	if after.Pending != before.Pending {
		t.Errorf("refused attaches queued %d mutations", after.Pending-before.Pending)
	}
	if as := attachments(t, med, id); len(as) != 0 {
		t.Errorf("the dispute shows %d files after refused attaches", len(as))
	}
	// A refused file blocks nothing: a good one goes in after.
	good := photo(t, 5000)
	sha, err := med.Attach(id, "image/jpeg", "調解協議書", good)
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, med, id, sha, syncer.FilePending)
}

// A file attached offline shows at once, pending, readable from the
// device; AttachFile reads a file from disk the same.
func TestAttachOfflineShowsPending(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	med := e.Device(testenv.Mediator)
	testenv.Sync(t, med)
	e.Stop() // offline from here
	id := newDispute(t, med, "宅基地邊界")
	data := photo(t, 100_000)
	sha, err := med.Attach(id, "image/jpeg", "現場照片", data)
	if err != nil {
		t.Fatal(err)
	}
	if sha != shaOf(data) {
		t.Fatalf("Attach returned %s, want the file's SHA-256 %s", sha, shaOf(data))
	}
	a := wantState(t, med, id, sha, syncer.FilePending)
	if a.Size != int64(len(data)) || a.MediaType != "image/jpeg" || a.Caption != "現場照片" || a.Held != a.Size {
		t.Errorf("attachment %+v", a)
	}
	it, err := med.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(it.Attachments) != 1 || it.Attachments[0].State != syncer.FilePending || it.State != "pending" {
		t.Errorf("Get shows %d attachments (%+v), record %s", len(it.Attachments), it.Attachments, it.State)
	}
	got, err := med.ReadAttachment(sha)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAttachment: %d bytes, %v; want the %d attached", len(got), err, len(data))
	}
	// From a file on disk: a PDF.
	pdf := append([]byte("%PDF-1.4\n"), photo(t, 70_000)[11:]...)
	path := filepath.Join(t.TempDir(), "協議書.pdf")
	if err := os.WriteFile(path, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	psha, err := med.AttachFile(id, "application/pdf", "人民調解協議書", path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := med.CopyAttachment(psha, &buf); err != nil || !bytes.Equal(buf.Bytes(), pdf) {
		t.Fatalf("CopyAttachment: %d bytes, %v", buf.Len(), err)
	}
	if n := len(attachments(t, med, id)); n != 2 {
		t.Errorf("%d attachments, want 2", n)
	}
	if _, err := med.ReadAttachment(shaOf([]byte("nothing"))); !errors.Is(err, syncer.ErrNoFile) {
		t.Errorf("a file the device lacks: %v, want ErrNoFile", err)
	}
	if st, err := med.Status(); err != nil || st.FilesPending != 2 || st.FilesRefused != 0 {
		t.Errorf("status: %+v, %v; want 2 files pending", st, err)
	}
	// Offline, an upload leaves the files for later and refuses none.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, _ := med.UploadPending(ctx)
	if rep == nil || rep.Refused != 0 {
		t.Errorf("UploadPending offline: %+v", rep)
	}
	wantState(t, med, id, sha, syncer.FilePending)
}
