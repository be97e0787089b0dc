package syncer_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// A chunk damaged on the way (the device's test hook alters its data
// after its hash was computed, once) is refused by the server; the device
// sends it again and the file completes, the other file too. A file whose
// chunk is damaged every time is left for later, and the other files of
// the same upload go up all the same.
func TestCorruptedChunkResentOthersNotBlocked(t *testing.T) {
	e, log := startWithLog(t)
	medA, medB := e.Device(testenv.Mediator), e.Device(testenv.Mediator2)
	testenv.Sync(t, medA)
	id := newDispute(t, medA, "山林權屬")
	one, two := photo(t, 200_000), photo(t, 100_000)
	sha1 := ok1(medA.Attach(id, "image/jpeg", "一", one))
	sha2 := ok1(medA.Attach(id, "image/jpeg", "二", two))
	var damaged atomic.Int32
	syncer.SetCorruptChunk(func(sha string, off int64, data []byte) []byte {
		if sha == sha1 && off == 32<<10 && damaged.Add(1) == 1 {
			bad := bytes.Clone(data)
			bad[100] ^= 0xFF
			return bad
		}
		return data
	})
	t.Cleanup(func() { syncer.SetCorruptChunk(nil) })
	rep := testenv.Sync(t, medA)
	if rep.Files.Uploaded != 2 || rep.Files.Refused != 0 || rep.Files.Resumed < 1 {
		t.Fatalf("uploads with a chunk damaged once: %+v, want both uploaded after a resend", rep.Files)
	}
	if damaged.Load() < 2 {
		t.Fatalf("the damaged chunk was sent %d times, want again after the refusal", damaged.Load())
	}
	// The damaged chunk reaches the server twice; so may the (up to 3)
	// chunks sent behind it before the refusal came back, which the server
	// read but did not store (it stores in order only).
	if _, again := log.received(sha1); again < 1 || again > 4 {
		t.Errorf("%d chunks reached the server twice, want the damaged one and at most the 3 on the way behind it", again)
	}
	wantState(t, medA, id, sha1, syncer.FileUploaded)
	wantState(t, medA, id, sha2, syncer.FileUploaded)
	testenv.Sync(t, medB)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := medB.FetchAttachment(ctx, id, sha1); err != nil {
		t.Fatal(err)
	}
	if got := ok1(medB.ReadAttachment(sha1)); !bytes.Equal(got, one) {
		t.Fatal("the file fetched after a damaged chunk differs from the one attached")
	}

	// Damaged every time: left for later, not refused; the other goes.
	three, four := photo(t, 50_000), photo(t, 50_000)
	sha3 := ok1(medA.Attach(id, "image/jpeg", "三", three))
	sha4 := ok1(medA.Attach(id, "image/jpeg", "四", four))
	syncer.SetCorruptChunk(func(sha string, off int64, data []byte) []byte {
		if sha == sha3 {
			bad := bytes.Clone(data)
			bad[0] ^= 0xFF
			return bad
		}
		return data
	})
	rep = testenv.Sync(t, medA)
	if rep.Files.Uploaded != 1 || rep.Files.Left != 1 || rep.Files.Refused != 0 || rep.Files.Err == "" {
		t.Fatalf("one file damaged every time: %+v, want the other uploaded and this one left with why", rep.Files)
	}
	t.Logf("left: %s", rep.Files.Err)
	wantState(t, medA, id, sha4, syncer.FileUploaded)
	wantState(t, medA, id, sha3, syncer.FilePending)
	syncer.SetCorruptChunk(nil)
	rep = testenv.Sync(t, medA)
	if rep.Files.Uploaded != 1 {
		t.Fatalf("after the link mends: %+v", rep.Files)
	}
	wantState(t, medA, id, sha3, syncer.FileUploaded)
}

func ok1[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// plainDevice enrolls a device with a plain (unsealed) replica at a path
// the test knows, so that the test can search its files for a photo's
// bytes.
func plainDevice(t *testing.T, e *testenv.Env, user string) (*syncer.Device, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plain.db")
	d, err := syncer.OpenWith(path, &syncer.Options{ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Enroll(ctx, e.Code(user), "plain phone"); err != nil {
		t.Fatal(err)
	}
	return d, path
}

// inFiles says whether probe is in the replica's file or its log.
func inFiles(t *testing.T, path string, probe []byte) bool {
	t.Helper()
	for _, p := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, probe) {
			return true
		}
	}
	return false
}

// A record purged from the device (its household left the member's
// scope) takes its files: gone from the replica's files, bytes and all;
// a file another record still names stays.
func TestPurgedRecordTakesItsFiles(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	m, path := plainDevice(t, e, testenv.Member)
	testenv.Sync(t, m)
	v1 := ok1(m.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-12-06").Set("needs", "屋頂漏水")))
	v2 := ok1(m.Create("visit", syncer.NewFields().Set("household_id", "H002").Set("visited_on", "2026-12-06").Set("needs", "缺衣物")))
	only, shared := photo(t, 80_000), photo(t, 80_000)
	shaOnly := ok1(m.Attach(v1, "image/jpeg", "漏水的屋頂", only))
	shaShared := ok1(m.Attach(v1, "image/jpeg", "", shared))
	ok1(m.Attach(v2, "image/jpeg", "", shared))
	rep := testenv.Sync(t, m)
	if rep.Files.Uploaded != 2 {
		t.Fatalf("uploads: %+v", rep.Files)
	}
	probe := only[40_000:40_064]
	if !inFiles(t, path, probe) {
		t.Fatal("the photo's bytes are not in the plain replica: the search finds nothing")
	}
	admin, actx := e.Admin()
	if _, err := admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "H001", MemberId: testenv.Member2}); err != nil {
		t.Fatal(err)
	}
	testenv.Sync(t, m)
	testenv.Sync(t, m)
	if _, err := m.Get(v1); !errors.Is(err, syncer.ErrNotFound) {
		t.Fatalf("the visit of H001 after it left the member's scope: %v, want purged", err)
	}
	if _, err := m.ReadAttachment(shaOnly); !errors.Is(err, syncer.ErrNoFile) {
		t.Errorf("the purged visit's photo: %v, want ErrNoFile", err)
	}
	if inFiles(t, path, probe) {
		t.Error("the purged visit's photo is still in the replica's files")
	}
	if got, err := m.ReadAttachment(shaShared); err != nil || !bytes.Equal(got, shared) {
		t.Errorf("a photo the remaining visit names: %d bytes, %v; want kept", len(got), err)
	}
}

// A revoked device's files are wiped with the rest: not a byte of the
// photo stays in the replica's files.
func TestRevokedDeviceFilesWiped(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	med, path := plainDevice(t, e, testenv.Mediator)
	testenv.Sync(t, med)
	id := newDispute(t, med, "宅基地")
	data := photo(t, 150_000)
	sha := ok1(med.Attach(id, "image/jpeg", "", data))
	testenv.Sync(t, med)
	probe := data[100_000:100_064]
	if !inFiles(t, path, probe) {
		t.Fatal("the photo's bytes are not in the plain replica: the search finds nothing")
	}
	ident := ok1(med.Identity())
	admin, actx := e.Admin()
	if _, err := admin.RevokeDevice(actx, &pb.RevokeDeviceRequest{DeviceId: ident.DeviceID}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := med.Sync(ctx); !errors.Is(err, syncer.ErrRevoked) {
		t.Fatalf("sync after revoke: %v, want ErrRevoked", err)
	}
	if inFiles(t, path, probe) {
		t.Error("the revoked device's photo is still in its replica's files")
	}
	if _, err := med.ReadAttachment(sha); !errors.Is(err, syncer.ErrNoFile) {
		t.Errorf("reading the photo after the wipe: %v, want ErrNoFile", err)
	}
}

// A server restored from a backup that lacks a file (a new lineage, its
// attachments.db older than the upload): the device offers every file it
// attached again; the upload's start says what the server lacks, and the
// other phone can fetch the file after.
func TestNewLineageOffersFilesAgain(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	medA := e.Device(testenv.Mediator)
	testenv.Sync(t, medA)
	id := newDispute(t, medA, "恢復後")
	data := photo(t, 120_000)
	sha := ok1(medA.Attach(id, "image/jpeg", "", data))
	if rep := testenv.Sync(t, medA); rep.Files.Uploaded != 1 {
		t.Fatalf("%+v", rep.Files)
	}
	e.Stop()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(e.Dir, "attachments.db"+suffix)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	st := ok1(store.OpenServer(context.Background(), filepath.Join(e.Dir, "fieldsync.db")))
	ok1(st.Rebase(context.Background()))
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	e = testenv.Start(t, testenv.WithDir(e.Dir), testenv.WithAddr(e.Addr), testenv.WithAdminToken(e.AdminToken),
		testenv.WithSyncdConfig(func(*syncd.Config) {}))
	var rep *syncer.Report
	for i := 0; i < 3; i++ { // the first may meet the restarting server
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var err error
		rep, err = medA.Sync(ctx)
		cancel()
		if err == nil && rep.Files != nil && rep.Files.Uploaded == 1 {
			break
		}
		t.Logf("sync after the restore: %+v, %v", rep, err)
	}
	if rep.Files == nil || rep.Files.Uploaded != 1 || rep.Files.Bytes != int64(len(data)) {
		t.Fatalf("after the restore: %+v, want the file offered and uploaded again", rep.Files)
	}
	wantState(t, medA, id, sha, syncer.FileUploaded)
	medB := e.Device(testenv.Mediator2)
	testenv.Sync(t, medB)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := medB.FetchAttachment(ctx, id, sha); err != nil {
		t.Fatal(err)
	}
	if got := ok1(medB.ReadAttachment(sha)); !bytes.Equal(got, data) {
		t.Fatal("fetched after the restore: differs")
	}
}

// An attach the server refuses (the case reached its 20 files through the
// other mediator's phone meanwhile) marks that file refused with the
// server's reason; the files whose attach it applied upload all the same.
func TestRefusedAttachMarksFileRefused(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	medA, medB := e.Device(testenv.Mediator), e.Device(testenv.Mediator2)
	testenv.Sync(t, medA)
	id := newDispute(t, medA, "二十張照片")
	testenv.Sync(t, medA)
	testenv.Sync(t, medB)
	for i := 0; i < 11; i++ {
		ok1(medA.Attach(id, "image/jpeg", "", photo(t, 1000)))
	}
	var shas []string
	for i := 0; i < 10; i++ {
		shas = append(shas, ok1(medB.Attach(id, "image/jpeg", "", photo(t, 1000))))
	}
	if rep := testenv.Sync(t, medA); rep.Files.Uploaded != 11 {
		t.Fatalf("A's uploads: %+v", rep.Files)
	}
	rep := testenv.Sync(t, medB)
	if rep.Files.Uploaded != 9 || rep.Files.Refused != 1 {
		t.Fatalf("B's uploads: %+v, want 9 uploaded and 1 refused (the case's 21st file)", rep.Files)
	}
	refused := 0
	for _, a := range attachments(t, medB, id) {
		if a.State == syncer.FileRefused {
			refused++
			t.Logf("refused: %s", a.Reason)
			if !strings.Contains(a.Reason, "20") {
				t.Errorf("the refused file's reason %q does not say why (at most 20 files)", a.Reason)
			}
		}
	}
	if refused != 1 {
		t.Errorf("B shows %d refused files, want 1", refused)
	}
	if n := len(attachments(t, medB, id)); n != 21 {
		t.Errorf("B shows %d files on the case, want the server's 20 and its refused one", n)
	}
	uploaded := 0
	for _, sha := range shas {
		for _, a := range attachments(t, medB, id) {
			if a.SHA256 == sha && a.State == syncer.FileUploaded {
				uploaded++
			}
		}
	}
	if uploaded != 9 {
		t.Errorf("%d of B's files show uploaded, want 9", uploaded)
	}
}

// A device over its daily file bytes: the sync's records go, the files
// that fit go, the rest wait on the device (not refused), the upload
// saying how long.
func TestFileQuotaLeavesFilesWaiting(t *testing.T) {
	e := testenv.Start(t, testenv.WithServerConfig(func(c *server.Config) { c.FileQuota = 150_000 }))
	e.ImportSample()
	med := e.Device(testenv.Mediator)
	testenv.Sync(t, med)
	id := newDispute(t, med, "配額")
	ok1(med.Attach(id, "image/jpeg", "", photo(t, 100_000)))
	ok1(med.Attach(id, "image/jpeg", "", photo(t, 100_000)))
	rep := testenv.Sync(t, med) // the records went: no error
	if rep.Files.Uploaded != 1 || rep.Files.Left != 1 || rep.Files.Refused != 0 {
		t.Fatalf("uploads over the file quota: %+v, want 1 uploaded, 1 left", rep.Files)
	}
	t.Logf("left: %s", rep.Files.Err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := med.UploadPending(ctx)
	var re *syncer.RetryError
	if !errors.As(err, &re) || !re.Quota || re.After <= 0 {
		t.Fatalf("UploadPending over the quota: %v, want a quota *RetryError with a wait", err)
	}
	if rep := testenv.Sync(t, med); rep.Files.Left != 1 || rep.Files.Bytes != 0 {
		t.Errorf("a sync while the quota holds: %+v, want the file left, nothing sent", rep.Files)
	}
	if st := ok1(med.Status()); st.FilesPending != 1 || st.FilesRefused != 0 {
		t.Errorf("status: %d files pending, %d refused; want 1 waiting", st.FilesPending, st.FilesRefused)
	}
}

// A photo attached here whose record leaves the user's scope before the
// upload (the household linked to another member while the file waited:
// Wi-Fi only, a quota) is not swept with the record: this phone holds the
// only copy. It uploads afterwards (the server lets the attach's author
// upload it), and another phone in the record's scope fetches it.
func TestPendingPhotoOutlivesItsRecordLeavingScope(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	var hold atomic.Bool
	hold.Store(true)
	m := e.Device(testenv.Member, func(o *syncer.Options) { o.HoldUploads = hold.Load })
	testenv.Sync(t, m)
	v := ok1(m.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-12-06").Set("needs", "屋頂漏水")))
	data := photo(t, 120_000)
	sha := ok1(m.Attach(v, "image/jpeg", "漏水的屋頂", data))
	testenv.Sync(t, m) // the visit and its attach applied; the file held
	if _, err := e.Daemon.Files.Stat(t.Context(), sha); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the server holds the file before its upload: %v", err)
	}
	admin, actx := e.Admin()
	if _, err := admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "H001", MemberId: testenv.Member2}); err != nil {
		t.Fatal(err)
	}
	testenv.Sync(t, m)
	testenv.Sync(t, m)
	if _, err := m.Get(v); !errors.Is(err, syncer.ErrNotFound) {
		t.Fatalf("the visit after H001 left the member's scope: %v, want purged", err)
	}
	if got, err := m.ReadAttachment(sha); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the photo waiting for its upload after its record left: %d bytes, %v; want kept", len(got), err)
	}
	hold.Store(false)
	rep := testenv.Sync(t, m)
	if rep.Files == nil || rep.Files.Uploaded != 1 {
		t.Fatalf("upload after the record left the scope: %+v", rep.Files)
	}
	fi, err := e.Daemon.Files.Stat(t.Context(), sha)
	if err != nil || !fi.Complete {
		t.Fatalf("the server's file: %+v, %v; want complete", fi, err)
	}
	m2 := e.Device(testenv.Member2)
	testenv.Sync(t, m2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m2.FetchAttachment(ctx, v, sha); err != nil {
		t.Fatalf("the household's new member fetches the photo: %v", err)
	}
	if got, err := m2.ReadAttachment(sha); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetched: %d bytes, %v", len(got), err)
	}
}
