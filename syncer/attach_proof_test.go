package syncer_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// The same photo attached on two phones to two records: the first upload
// stores it, the second phone's upload is challenged (the server holds
// the file whole, through another record) and the phone answers from its
// own copy, without sending the bytes again; then the file is fetchable
// through the second record too.
func TestSamePhotoOnTwoRecordsProvenByTheSecondPhone(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	med, med2, sec := e.Device(testenv.Mediator), e.Device(testenv.Mediator2), e.Device(testenv.Secretary)
	for _, d := range []*syncer.Device{med, med2, sec} {
		testenv.Sync(t, d)
	}
	data := photo(t, 90_000)
	d1 := newDispute(t, med, "水渠糾紛")
	d2 := newDispute(t, med2, "水渠糾紛（二）")
	sha, err := med.Attach(d1, "image/jpeg", "", data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := med2.Attach(d2, "image/jpeg", "", data); err != nil {
		t.Fatal(err)
	}
	testenv.Sync(t, med)
	wantState(t, med, d1, sha, syncer.FileUploaded)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sr, err := med2.Sync(ctx) // pushes d2 and its attach, then uploads
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, med2, d2, sha, syncer.FileUploaded)
	if rep := sr.Files; rep == nil || rep.Uploaded != 1 || rep.Already != 1 || rep.Bytes != 0 || rep.Refused != 0 {
		t.Errorf("the second phone's uploads: %+v; want the file proven, not sent (Uploaded 1, Already 1, Bytes 0)", rep)
	}
	testenv.Sync(t, sec)
	if err := sec.FetchAttachment(ctx, d2, sha); err != nil {
		t.Fatalf("fetch through the second record: %v", err)
	}
	got, err := sec.ReadAttachment(sha)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetched %d bytes, %v", len(got), err)
	}
}
