package fieldsync

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/mobile/fieldsync/schema"
)

// photo is a real JPEG of noise (so it does not compress away): w×h
// pixels, a few hundred KB for 400×300, many chunks.
func photo(t testing.TB, w, h int, seed uint64) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(seed, seed+1))
	for i := range img.Pix {
		img.Pix[i] = byte(r.UintN(256))
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngOf is a small real PNG.
func pngOf(t testing.TB) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	img.Set(1, 1, color.RGBA{R: 200, A: 255})
	var b bytes.Buffer
	ok(t, png.Encode(&b, img))
	return b.Bytes()
}

// attachments returns a record's attachments as the SDK shows them.
func attachments(t testing.TB, c *Client, id string) []schema.Attachment {
	t.Helper()
	return decode[[]schema.Attachment](t, must[string](t)(c.Attachments(id)))
}

// oneAttachment returns the record's only attachment, failing otherwise.
func oneAttachment(t testing.TB, c *Client, id string) schema.Attachment {
	t.Helper()
	as := attachments(t, c, id)
	if len(as) != 1 {
		t.Fatalf("record %s shows %d attachments (%+v), want 1", id, len(as), as)
	}
	return as[0]
}

// A mediator photographs the signed agreement of a dispute offline: the
// dispute shows it at once, pending, and the listener hears of it. The
// sync sends the dispute and then the file; the other mediator's phone
// gets the reference ("remote", no bytes) and, with fetch_only_on_wifi,
// fetches nothing on cellular (retry_later saying why), then fetches on
// Wi-Fi and saves the same bytes to a file.
func TestAttachOfflineUploadAfterSyncFetchOnWifi(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	a := phone(t, e, testenv.Mediator)
	b := phoneWith(t, e, testenv.Mediator2, `{"app_version":"sdk-test/1","connect_timeout_ms":1000,"fetch_only_on_wifi":true}`)
	rec := &recorder{t: t}
	a.SetListener(rec)

	id := must[string](t)(a.Create("dispute", `{"category":"quarrel","title":"宅基地邊界糾紛","parties":"張大山；錢秋菊","mediators":"`+
		testenv.Mediator+`,`+testenv.Mediator2+`"}`))
	pic := photo(t, 400, 300, 1)
	if len(pic) < 4*domain.ChunkBytes {
		t.Fatalf("the photo has %d bytes: want several chunks", len(pic))
	}
	ok(t, a.SetNetwork(NetworkNone))
	sha := must[string](t)(a.AttachBytes(id, "image/jpeg", "人民調解協議書（簽字頁）", pic))
	if len(sha) != 64 {
		t.Fatalf("sha %q", sha)
	}
	at := oneAttachment(t, a, id)
	if at.SHA256 != sha || at.Size != int64(len(pic)) || at.MediaType != "image/jpeg" || at.Caption != "人民調解協議書（簽字頁）" ||
		at.State != "pending" || !at.Local || at.AuthorID != testenv.Mediator {
		t.Fatalf("attached offline: %+v, want pending, local, by %s, caption byte for byte", at, testenv.Mediator)
	}
	changes, _ := rec.snapshot()
	if n := len(changes); n == 0 || changes[n-1].Op != "attach" || changes[n-1].RecordID != id || changes[n-1].Kind != "dispute" {
		t.Fatalf("listener heard %+v, want an attach of %s", changes, id)
	}
	if st := status(t, a); st.FilesPending != 1 || st.FilesRefused != 0 {
		t.Fatalf("status after the attach: %+v, want one file pending", st)
	}
	// The app holds the file back on "none": UploadPending says why.
	up := decode[schema.UploadReport](t, must[string](t)(a.UploadPending(5000)))
	if up.Skipped == "" || up.Uploaded != 0 {
		t.Fatalf("upload with no network: %+v, want skipped", up)
	}

	ok(t, a.SetNetwork(NetworkWifi))
	if rep := syncOnce(t, a); rep.Files == nil || rep.Files.Uploaded != 1 || rep.Files.Bytes != int64(len(pic)) || !rep.Changed {
		t.Fatalf("the sync's report: %+v (files %+v), want the photo uploaded, all its bytes", rep, rep.Files)
	}
	if st := status(t, a); st.FilesPending != 0 {
		t.Fatalf("status after the upload: %+v, want no file pending", st)
	}
	if at := oneAttachment(t, a, id); at.State != "uploaded" || !at.Local {
		t.Fatalf("after the sync: %+v, want uploaded and still local", at)
	}

	syncOnce(t, b)
	bt := oneAttachment(t, b, id)
	if bt.SHA256 != sha || bt.State != "remote" || bt.Local || bt.Size != int64(len(pic)) {
		t.Fatalf("the other mediator sees %+v, want the reference, remote", bt)
	}
	_, err := b.ReadAttachment(sha)
	wantCode(t, "read a remote file", err, CodeNotFound)

	ok(t, b.SetNetwork(NetworkCellular))
	err = b.FetchAttachment(id, sha, 10000)
	wantCode(t, "fetch on cellular with fetch_only_on_wifi", err, CodeRetryLater)
	if !strings.Contains(err.Error(), "fetch_only_on_wifi") || RetryAfterMillis(err.Error()) <= 0 {
		t.Fatalf("fetch on cellular: %v: want the option named and a wait", err)
	}
	ok(t, b.SetNetwork(NetworkWifi))
	ok(t, b.FetchAttachment(id, sha, 20000))
	if bt := oneAttachment(t, b, id); bt.State != "local" || !bt.Local {
		t.Fatalf("after the fetch: %+v, want local", bt)
	}
	if got := must[[]byte](t)(b.ReadAttachment(sha)); !bytes.Equal(got, pic) {
		t.Fatalf("read %d bytes, want the photo's %d", len(got), len(pic))
	}
	path := filepath.Join(t.TempDir(), "agreement.jpg")
	ok(t, os.WriteFile(path, []byte("old"), 0o600))
	ok(t, b.SaveAttachment(sha, path))
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, pic) {
		t.Fatalf("saved file: %d bytes (%v), want the photo", len(got), err)
	}
	// A fetch of a file held returns at once, with no network.
	ok(t, b.SetNetwork(NetworkNone))
	ok(t, b.FetchAttachment(id, sha, 1000))
}

// Bad files are refused before anything is queued, each naming what is
// wrong; a file from disk attaches as the same bytes would; a phone
// outside the record's scope cannot fetch its file.
func TestAttachRefusedBeforeQueuingAndOutOfScope(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	a := phone(t, e, testenv.Mediator)
	id := must[string](t)(a.OpenDispute("dispute", "水渠堵塞", "張小河；趙春梅", ""))
	syncOnce(t, a)
	before := status(t, a).Pending

	big := append([]byte{0xff, 0xd8, 0xff, 0xe0}, make([]byte, domain.MaxAttachmentBytes)...)
	exe := append([]byte("MZ\x90\x00\x03\x00\x00\x00"), make([]byte, 2000)...)
	for _, c := range []struct {
		name, mediaType string
		data            []byte
		field           string
	}{
		{"too large", "image/jpeg", big, "data"},
		{"empty", "image/jpeg", nil, "data"},
		{"a PNG claimed as a JPEG", "image/jpeg", pngOf(t), "media_type"},
		{"an EXE claimed as a PDF", "application/pdf", exe, "media_type"},
		{"a GIF type", "image/gif", pngOf(t), "media_type"},
	} {
		_, err := a.AttachBytes(id, c.mediaType, "", c.data)
		wantCode(t, c.name, err, CodeInvalid)
		if !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v: want the field %s named", c.name, err, c.field)
		}
	}
	_, err := a.AttachBytes("no-such-record", "image/png", "", pngOf(t))
	wantCode(t, "attach to a record the device lacks", err, CodeNotFound)
	_, err = a.AttachBytes(id, "image/png", strings.Repeat("長", 100), pngOf(t))
	wantCode(t, "a caption over 200 bytes", err, CodeInvalid)
	if n := len(attachments(t, a, id)); n != 0 || status(t, a).Pending != before {
		t.Fatalf("after the refusals: %d attachments, %d pending (was %d): want nothing queued", n, status(t, a).Pending, before)
	}

	// From a file on disk (as a scanner app writes it).
	pic := photo(t, 200, 150, 2)
	path := filepath.Join(t.TempDir(), "scan.jpg")
	ok(t, os.WriteFile(path, pic, 0o600))
	_, err = a.AttachFile(id, "image/jpeg", "", filepath.Join(t.TempDir(), "missing.jpg"))
	wantCode(t, "a missing file", err, CodeInvalid)
	huge := filepath.Join(t.TempDir(), "huge.jpg")
	ok(t, os.WriteFile(huge, pic[:64], 0o600))
	ok(t, os.Truncate(huge, domain.MaxAttachmentBytes+1))
	_, err = a.AttachFile(id, "image/jpeg", "", huge)
	wantCode(t, "a file over 10 MiB", err, CodeInvalid)
	if !strings.Contains(err.Error(), "10485760") {
		t.Errorf("a file over 10 MiB: %v: want the limit said", err)
	}
	pngPath := filepath.Join(t.TempDir(), "scan.pdf")
	ok(t, os.WriteFile(pngPath, pngOf(t), 0o600))
	_, err = a.AttachFile(id, "application/pdf", "", pngPath)
	wantCode(t, "a PNG file claimed as a PDF", err, CodeInvalid)
	if !strings.Contains(err.Error(), "media_type") {
		t.Errorf("a PNG file claimed as a PDF: %v: want media_type named", err)
	}
	sha := must[string](t)(a.AttachFile(id, "image/jpeg", "現場照片", path))
	syncOnce(t, a)
	if at := oneAttachment(t, a, id); at.SHA256 != sha || at.State != "uploaded" {
		t.Fatalf("attached from a file: %+v, want uploaded", at)
	}

	// The member of the other village has no such record and no right to
	// its file.
	out := phone(t, e, testenv.Outsider)
	syncOnce(t, out)
	err = out.FetchAttachment(id, sha, 10000)
	if code := ErrorCode(errMessage(err)); code != CodeNotFound && code != CodeNotAllowed {
		t.Fatalf("an out-of-scope fetch: %v, want not_found or not_allowed", err)
	}
	_, err = out.ReadAttachment(sha)
	wantCode(t, "an out-of-scope read", err, CodeNotFound)
	err = out.FetchAttachment(id, "ABC", 10000)
	wantCode(t, "a bad sha", err, CodeInvalid)
	wantCode(t, "a bad network", out.SetNetwork("5g"), CodeInvalid)
}

// With upload_only_on_wifi, a sync on cellular sends the records but
// keeps the file; on Wi-Fi UploadPending sends it.
func TestUploadOnlyOnWifi(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	a := phoneWith(t, e, testenv.Mediator, `{"app_version":"sdk-test/1","connect_timeout_ms":1000,"upload_only_on_wifi":true}`)
	b := phone(t, e, testenv.Mediator2)
	id := must[string](t)(a.Create("dispute", `{"category":"problem","title":"路燈損壞","parties":"村民","mediators":"`+
		testenv.Mediator+`,`+testenv.Mediator2+`"}`))
	pic := photo(t, 200, 150, 3)
	sha := must[string](t)(a.AttachBytes(id, "image/jpeg", "", pic))
	ok(t, a.SetNetwork(NetworkCellular))
	if rep := syncOnce(t, a); rep.Files != nil {
		t.Fatalf("a sync on cellular with upload_only_on_wifi: %+v, want no uploads", rep.Files)
	}
	if got := get(t, a, id); got.State != "synced" {
		t.Fatalf("the dispute after a sync on cellular: %s, want synced (records go on any network)", got.State)
	}
	if at := oneAttachment(t, a, id); at.State != "pending" {
		t.Fatalf("the file after a sync on cellular: %+v, want still pending", at)
	}
	// The other mediator has the dispute, not yet the file: a fetch says
	// to retry later (the record is fine).
	syncOnce(t, b)
	if bt := oneAttachment(t, b, id); bt.State != "remote" {
		t.Fatalf("the other mediator sees %+v, want remote", bt)
	}
	wantCode(t, "fetch before the upload", b.FetchAttachment(id, sha, 10000), CodeRetryLater)
	up := decode[schema.UploadReport](t, must[string](t)(a.UploadPending(5000)))
	if !strings.Contains(up.Skipped, "upload_only_on_wifi") {
		t.Fatalf("UploadPending on cellular: %+v, want skipped naming upload_only_on_wifi", up)
	}
	ok(t, a.SetNetwork(NetworkWifi))
	up = decode[schema.UploadReport](t, must[string](t)(a.UploadPending(20000)))
	if up.Uploaded != 1 || up.Left != 0 || up.Skipped != "" {
		t.Fatalf("UploadPending on Wi-Fi: %+v, want the file uploaded", up)
	}
	if at := oneAttachment(t, a, id); at.SHA256 != sha || at.State != "uploaded" {
		t.Fatalf("after UploadPending: %+v, want uploaded", at)
	}
	ok(t, b.FetchAttachment(id, sha, 20000))
	if got := must[[]byte](t)(b.ReadAttachment(sha)); !bytes.Equal(got, pic) {
		t.Fatalf("the other mediator read %d bytes, want the photo's %d", len(got), len(pic))
	}
}

// A file the server refuses shows "refused" with the server's reason and
// holds up nothing: the case reached its 20 files through the other
// mediator's phone meanwhile, so this phone's 10th attach is refused; its
// other nine upload, and a note written after it reaches the other phone;
// the sync's report, the listener and Rejections say so.
func TestRefusedFileShowsWhyAndBlocksNothing(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	a := phone(t, e, testenv.Mediator)
	b := phone(t, e, testenv.Mediator2)
	id := must[string](t)(a.Create("dispute", `{"category":"case","title":"二十張照片","parties":"張大山；錢秋菊","mediators":"`+
		testenv.Mediator+`,`+testenv.Mediator2+`"}`))
	syncOnce(t, a)
	syncOnce(t, b)
	for i := range 11 {
		must[string](t)(a.AttachBytes(id, "image/jpeg", "", photo(t, 16, 16, uint64(100+i))))
	}
	var mine []string
	for i := range 10 {
		mine = append(mine, must[string](t)(b.AttachBytes(id, "image/jpeg", "", photo(t, 16, 16, uint64(200+i)))))
	}
	if rep := syncOnce(t, a); rep.Files == nil || rep.Files.Uploaded != 11 {
		t.Fatalf("A's sync: files %+v, want 11 uploaded", rep.Files)
	}
	ok(t, b.AddNote(id, "雙方同意下週再談"))
	rec := &recorder{t: t}
	b.SetListener(rec)
	rep := syncOnce(t, b)
	if rep.Files == nil || rep.Files.Uploaded != 9 || rep.Files.Refused != 1 || !rep.Changed {
		t.Fatalf("B's sync: %+v, files %+v: want 9 uploaded and 1 refused", rep, rep.Files)
	}
	if ch, _ := rec.snapshot(); len(ch) == 0 || ch[len(ch)-1].Report == nil || ch[len(ch)-1].Report.Files == nil {
		t.Fatalf("B's listener heard %+v, want the sync with its files", ch)
	}
	states := map[string]string{}
	for _, at := range attachments(t, b, id) {
		states[at.SHA256] = at.State
		if at.State == "refused" && (!strings.Contains(at.Reason, "20") || !at.Local) {
			t.Errorf("the refused file: %+v, want the limit of 20 said and the file kept on the phone", at)
		}
	}
	refused, uploaded := 0, 0
	for _, sha := range mine {
		switch states[sha] {
		case "refused":
			refused++
		case "uploaded":
			uploaded++
		}
	}
	if refused != 1 || uploaded != 9 {
		t.Fatalf("B's own files: %d refused, %d uploaded (%v), want 1 and 9", refused, uploaded, states)
	}
	if st := status(t, b); st.FilesRefused != 1 || st.FilesPending != 0 {
		t.Fatalf("B's status: %+v, want one file refused, none pending", st)
	}
	// The refused attach is B's one rejected write, kept for the user;
	// the note written after it went through.
	rej := decode[[]schema.Rejection](t, must[string](t)(b.Rejections()))
	if len(rej) != 1 || rej[0].Op != "attach" || rej[0].RecordID != id {
		t.Fatalf("B's rejections: %+v, want the one attach", rej)
	}
	syncOnce(t, a)
	noted := false
	for _, en := range get(t, a, id).Entries {
		noted = noted || en.Text == "雙方同意下週再談"
	}
	if !noted {
		t.Fatalf("B's note, written after the refused attach, did not reach A: a refused file held it up")
	}
}

// In foreground mode with upload_only_on_wifi, an attach on cellular
// sends the record by itself and keeps the file; the file goes up by
// itself as soon as the app says Wi-Fi is back (no SyncOnce, and the
// interval is an hour).
func TestForegroundUploadsWhenWifiComesBack(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	a := phoneWith(t, e, testenv.Mediator, `{"foreground_interval_ms":3600000,"connect_timeout_ms":1000,"upload_only_on_wifi":true}`)
	ok(t, a.SetNetwork(NetworkCellular))
	ok(t, a.StartForeground())
	id := must[string](t)(a.OpenDispute("problem", "水井污染", "村民", ""))
	sha := must[string](t)(a.AttachBytes(id, "image/jpeg", "井口照片", photo(t, 120, 90, 9)))
	waitFor(t, 15*time.Second, "the dispute and its attach synced in foreground mode", func() bool {
		return get(t, a, id).State == "synced" && status(t, a).Pending == 0
	})
	// Held: a moment more does not send it.
	time.Sleep(300 * time.Millisecond)
	if at := oneAttachment(t, a, id); at.State != "pending" {
		t.Fatalf("on cellular the file shows %+v, want pending", at)
	}
	ok(t, a.SetNetwork(NetworkWifi))
	waitFor(t, 15*time.Second, "the file uploaded once Wi-Fi is back", func() bool {
		at := oneAttachment(t, a, id)
		return at.SHA256 == sha && at.State == "uploaded"
	})
	a.StopForeground()
}
