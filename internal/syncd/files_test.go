package syncd_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/hq/web"
	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// A photo a mediator attaches to a dispute reaches HQ as syncd runs it: the
// changelog and the export carry the record with the file's reference and
// never its bytes; the read model keeps the reference; the HQ page shows the
// record's files with a thumbnail (a JPEG of 160 px, from syncd's own file
// store) and the file itself byte for byte; a town secretary of another
// town is refused both.
func TestHQPageShowsAttachedFiles(t *testing.T) {
	e := testenv.Start(t, testenv.WithSyncdConfig(func(c *syncd.Config) { c.HQListen = "127.0.0.1:0" }))
	e.ImportSample()
	admin, actx := e.Admin()
	// A second town with its own secretary.
	if resp, err := admin.ImportOrg(actx, &pb.ImportOrgRequest{
		Units: []*pb.Unit{{Id: "T99", Kind: pb.UnitKind_UNIT_KIND_TOWN, Name: "白果鎮"}},
		Users: []*pb.User{{Id: "U-sec-t99", Name: "吳書記", Role: pb.Role_ROLE_SECRETARY, UnitId: "T99"},
			{Id: "U-sec-t01", Name: "鎮書記", Role: pb.Role_ROLE_SECRETARY, UnitId: testenv.Town}},
	}); err != nil || len(resp.GetErrors()) > 0 {
		t.Fatalf("import: %v %v", err, resp.GetErrors())
	}
	d := e.Daemon
	if d.HQ == nil {
		t.Fatal("no HQ page")
	}

	med := e.Device(testenv.Mediator)
	testenv.Sync(t, med)
	dispute, err := med.Create("dispute", syncer.NewFields().Set("category", "dispute").Set("title", "宅基地界線").Set("parties", "張家,李家"))
	if err != nil {
		t.Fatal(err)
	}
	img := image.NewRGBA(image.Rect(0, 0, 1200, 900))
	for y := range 900 {
		for x := range 1200 {
			img.SetRGBA(x, y, color.RGBA{uint8(x / 5), uint8(y / 4), 90, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	photo := buf.Bytes()
	sha, err := med.Attach(dispute, "image/jpeg", "人民調解協議書（簽字頁）", photo)
	if err != nil {
		t.Fatal(err)
	}
	// The sync pushes the record, then uploads the file.
	testenv.Sync(t, med)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := med.UploadPending(ctx); err != nil {
		t.Fatal(err)
	}
	if as, err := med.Attachments(dispute); err != nil || len(as) != 1 || as[0].State != syncer.FileUploaded {
		t.Fatalf("the device's file after sync: %+v %v, want uploaded", as, err)
	}

	// The changelog: the record with the reference, no bytes.
	_, changes := e.StreamChanges()
	seen := false
	for _, c := range changes {
		if c.GetRecord().GetId() != dispute {
			continue
		}
		b, _ := proto.Marshal(c)
		if bytes.Contains(b, photo[len(photo)/2:len(photo)/2+64]) || bytes.Contains(b, photo[:64]) || len(b) > 4096 {
			t.Errorf("change %d of the dispute: %d bytes, holds the photo's bytes: the changelog carries references only", c.GetSeq(), len(b))
		}
		if as := c.GetRecord().GetAttachments(); len(as) == 1 {
			a := as[0]
			if a.GetSha256() != sha || a.GetSize() != int64(len(photo)) || a.GetMediaType() != "image/jpeg" || a.GetCaption() != "人民調解協議書（簽字頁）" {
				t.Errorf("the changelog's reference: %v", a)
			}
			seen = true
			t.Logf("the dispute's change with its file: %d bytes on the changelog (the photo: %d)", len(b), len(photo))
		}
	}
	if !seen {
		t.Fatal("no change of the dispute carries the file's reference")
	}
	// The export: the same record, the reference, no bytes.
	found := false
	for _, r := range testenv.Export(t, actx, e.Conn(), &pb.ExportRequest{Kinds: []pb.Kind{pb.Kind_KIND_DISPUTE}}) {
		if r.GetId() != dispute {
			continue
		}
		found = true
		b, _ := proto.Marshal(r)
		if len(r.GetAttachments()) != 1 || r.GetAttachments()[0].GetSha256() != sha || bytes.Contains(b, photo[:64]) || len(b) > 4096 {
			t.Errorf("exported dispute: %d bytes, attachments %v: want the reference only", len(b), r.GetAttachments())
		}
	}
	if !found {
		t.Error("the dispute is not in the export")
	}
	// The read model.
	testenv.WaitFor(t, 20*time.Second, "the reference in the read model", func() bool {
		var n int
		d.HQ.Model.DB().QueryRow(`SELECT count(*) FROM attachments WHERE record_id = ? AND sha256 = ? AND size = ? AND media_type = 'image/jpeg' AND town_id = ?`,
			dispute, sha, len(photo), testenv.Town).Scan(&n)
		return n == 1
	})

	signedIn := func(person string) *http.Client {
		t.Helper()
		code, err := web.IssueCode(context.Background(), filepath.Join(e.Dir, "hq", syncd.HQWebFile), d.HQ.Model.DB(), person, time.Hour, "test")
		if err != nil {
			t.Fatal(err)
		}
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
		if resp, body := signIn(t, c, d.HQ.URL, person, code); resp.StatusCode != http.StatusOK {
			t.Fatalf("sign in %s: %s\n%s", person, resp.Status, body)
		}
		return c
	}
	fetch := func(c *http.Client, path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := c.Get(d.HQ.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for _, person := range []string{testenv.HQ, "U-sec-t01"} {
		c := signedIn(person)
		// The dispute's row counts its files, linked to its files page.
		resp, list := fetch(c, "/p/dispute-list?lang=en")
		if link := `href="/p/files?record=` + dispute + `&amp;lang=en">1</a>`; resp.StatusCode != http.StatusOK || !strings.Contains(string(list), link) {
			t.Errorf("%s: the dispute list lacks %s:\n%s", person, link, list)
		}
		resp, page := fetch(c, "/p/files?record="+dispute)
		thumb := "/f/" + dispute + "/" + sha + "/thumb"
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `src="`+thumb+`"`) || !strings.Contains(string(page), "人民調解協議書（簽字頁）") {
			t.Fatalf("%s: files page %s, want the thumbnail %s and the caption:\n%s", person, resp.Status, thumb, page)
		}
		resp, b := fetch(c, thumb)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: thumbnail %s", person, resp.Status)
		}
		ti, err := jpeg.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("thumbnail: %v", err)
		}
		if r := ti.Bounds(); r.Dx() != 160 || r.Dy() != 120 {
			t.Errorf("thumbnail %d×%d, want 160×120", r.Dx(), r.Dy())
		}
		resp, b = fetch(c, "/f/"+dispute+"/"+sha)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, photo) || resp.Header.Get("Content-Type") != "image/jpeg" {
			t.Errorf("%s: the file: %s %s, %d bytes, equal %v", person, resp.Status, resp.Header.Get("Content-Type"), len(b), bytes.Equal(b, photo))
		}
		if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != sha {
			t.Errorf("the file's hash differs")
		}
	}
	other := signedIn("U-sec-t99")
	for _, p := range []string{"/p/files?record=" + dispute, "/f/" + dispute + "/" + sha, "/f/" + dispute + "/" + sha + "/thumb"} {
		if resp, b := fetch(other, p); resp.StatusCode != http.StatusForbidden || bytes.Contains(b, photo[:64]) {
			t.Errorf("the other town's secretary, %s: %s, want 403", p, resp.Status)
		}
	}
}
