package e2e

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

const retentionWindow = 180 * 24 * time.Hour

// fakeClock is the retention pass's clock: real time plus what the test
// moved it on by. Only time is faked: 180 days cannot pass in a test.
type fakeClock struct {
	mu    sync.Mutex
	ahead time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.ahead)
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.ahead += d
	c.mu.Unlock()
}

// openFileDevice opens a device database at path (enrolled already or
// not), encrypted with its key (phoneKey).
func openFileDevice(t *testing.T, path string, opts *syncer.Options) *syncer.Device {
	t.Helper()
	o := *opts
	o.Key = phoneKey(path)
	d, err := syncer.OpenWith(path, &o)
	ok(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func ids(t *testing.T, d *syncer.Device) []string {
	t.Helper()
	var out []string
	for _, it := range must[[]*syncer.Item](t)(d.List("")) {
		out = append(out, it.ID)
	}
	return out
}

// waitPublished waits until the relay published every committed change.
func waitPublished(t *testing.T, e *testenv.Env) uint64 {
	t.Helper()
	last := must[uint64](t)(e.Store.LastSeq(context.Background()))
	testenv.WaitFor(t, 10*time.Second, "the relay publishes every change", func() bool { return e.Server.Relay().Published() >= last })
	return last
}

// A village secretary's phone is offline past the retention window with
// unsent work, while a household (and its visit) leaves the village and
// other work goes on; a member's phone is offline as long with a visit
// made offline. The retention pass then deletes the marks that told
// devices the household left. When the secretary's phone comes back, the
// server reads the village's bucket to it again from the start (in pages,
// and the phone is killed after the first one and reopened); the phone
// drops what was not sent again, so it holds exactly what a new phone of
// the secretary holds, the household that left purged, and its own edit
// applied. The member's visit is applied too. Nothing is lost, and the
// changelog stream still checks against the database.
func TestDeviceOfflinePastRetentionWindowConverges(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{}
	e := testenv.Start(t, testenv.WithRetention(retentionWindow, clock.Now))
	e.ImportSample()
	admin, actx := e.Admin()

	secPath := filepath.Join(t.TempDir(), "secretary.db")
	var crashes atomic.Int32
	crashOnce := func(point string) bool {
		// The phone is killed when it commits the second page of the
		// re-read (armed below).
		return point == "adopt" && crashes.Add(-1) == 0
	}
	crashes.Store(-1 << 20)
	opts := &syncer.Options{ConnectTimeout: time.Second, PageSize: 2, CrashPoint: crashOnce}
	sec := openFileDevice(t, secPath, opts)
	ok(t, sec.Enroll(ctx, e.Code(testenv.Secretary), "secretary's phone"))
	memPath := filepath.Join(t.TempDir(), "member.db")
	mem := openFileDevice(t, memPath, &syncer.Options{ConnectTimeout: time.Second})
	ok(t, mem.Enroll(ctx, e.Code(testenv.Member), "member's phone"))

	leaving := must[string](t)(mem.Create("visit", syncer.NewFields().Set("household_id", "H001").Set("visited_on", "2026-05-10").
		Set("met", "張大山").Set("needs", "屋頂漏水").Set("help", "上報村委")))
	staying := must[string](t)(mem.Create("visit", syncer.NewFields().Set("household_id", "H002").Set("visited_on", "2026-05-10").
		Set("met", "張小河").Set("needs", "無").Set("help", "問候")))
	testenv.Sync(t, mem)
	testenv.Sync(t, sec)
	holds(t, e, sec, "H001", "H002", "H003", leaving, staying)

	// Offline: the secretary edits a household, the member records a visit.
	ok(t, sec.Update("H003", syncer.NewFields().Set("needs", "孫子上學路遠，需要校車")))
	offlineVisit := must[string](t)(mem.Create("visit", syncer.NewFields().Set("household_id", "H002").Set("visited_on", "2026-05-20").
		Set("met", "張小河").Set("needs", "無").Set("help", "問候")))

	// Meanwhile H001 moves to the other village (its visit with it), and
	// the other member's visit to H004 arrives.
	resp, err := admin.ImportOrg(actx, &pb.ImportOrgRequest{Households: []*pb.Household{
		{Id: "H001", GridId: testenv.Grid2, Head: "張大山", Address: "張家塆1號", Phone: "13800000001", Members: "4"}}})
	ok(t, err)
	if len(resp.GetErrors()) > 0 {
		t.Fatalf("import: %v", resp.GetErrors())
	}
	other := e.Device(testenv.Member2)
	newVisit := must[string](t)(other.Create("visit", syncer.NewFields().Set("household_id", "H004").Set("visited_on", "2026-05-21").
		Set("met", "錢秋菊").Set("needs", "看病").Set("help", "聯繫衛生室")))
	testenv.Sync(t, other)

	// Past the window, with every change published: the pass removes the
	// marks of H001 and its visit in the village's bucket, and the
	// published changelog rows.
	last := waitPublished(t, e)
	clock.advance(retentionWindow + time.Hour)
	st, err := e.Daemon.Compact(ctx)
	ok(t, err)
	if st.GoneRows < 2 || st.Changes == 0 || st.Results == 0 {
		t.Fatalf("retention pass: %+v, want the 2 marks of H001 and its visit, changelog rows and kept results gone", st)
	}
	if first := must[uint64](t)(e.Store.FirstChange(ctx)); first != last {
		t.Fatalf("the changelog starts at %d, want only the last change %d kept", first, last)
	}

	// The secretary's phone comes back and is killed after the first page
	// of the village's bucket read again.
	crashes.Store(2)
	if rep, err := sec.Sync(ctx); !errors.Is(err, syncer.ErrCrashed) || rep.Refetched != 1 {
		t.Fatalf("sync with the crash armed: %+v, %v; want the village's bucket read again (1), then ErrCrashed", rep, err)
	}
	sec.Close()
	opts.CrashPoint = nil
	sec = openFileDevice(t, secPath, opts)
	rep := testenv.Sync(t, sec)
	if rep.Refetched != 0 {
		t.Errorf("after the crash the phone was told to start over %d times: it should go on", rep.Refetched)
	}
	testenv.Sync(t, sec) // nothing more

	lacks(t, sec, "H001", leaving)
	holds(t, e, sec, "H002", "H003", "H004", "H005", newVisit, staying)
	if got := serverRecord(t, e, "H003").GetFields()["needs"].GetValue(); got != "孫子上學路遠，需要校車" {
		t.Errorf("the secretary's offline edit: H003 needs %q on the server", got)
	}
	if st := must[*syncer.Status](t)(sec.Status()); st.Pending != 0 || st.Rejected != 0 {
		t.Errorf("secretary's phone: %+v, want nothing pending or rejected", st)
	}
	fresh := e.Device(testenv.Secretary)
	testenv.Sync(t, fresh)
	if got, want := ids(t, sec), ids(t, fresh); !slices.Equal(got, want) {
		t.Errorf("the phone back from offline holds %v, a new phone of the secretary %v", got, want)
	}

	// The member's offline visit is applied.
	testenv.Sync(t, mem)
	holds(t, e, mem, offlineVisit)
	if st := must[*syncer.Status](t)(mem.Status()); st.Pending != 0 || st.Rejected != 0 {
		t.Errorf("member's phone: %+v, want nothing pending or rejected", st)
	}

	// The changelog stream (which keeps its own retention) still checks
	// against the database that no longer holds its head.
	ok(t, e.Server.Relay().Check(ctx))
}

// The retention pass ran to the last change and then someone deleted the
// changelog stream: the relay rebuilds it from the database's first
// change, message n still change n.
func TestChangelogRebuiltAfterRetentionStartsAtTheFirstKeptChange(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{}
	e := testenv.Start(t, testenv.WithRetention(retentionWindow, clock.Now))
	e.ImportSample()
	last := waitPublished(t, e)
	clock.advance(retentionWindow + time.Hour)
	_, err := e.Daemon.Compact(ctx)
	ok(t, err)
	first := must[uint64](t)(e.Store.FirstChange(ctx))
	if first <= 1 {
		t.Fatalf("the changelog starts at %d after the pass", first)
	}
	ok(t, e.JS.DeleteStream(ctx, domain.StreamName))
	e.Server.Relay().Poke()
	var info *jetstream.StreamInfo
	testenv.WaitFor(t, 20*time.Second, "the relay rebuilds the stream", func() bool {
		st, err := e.JS.Stream(ctx, domain.StreamName)
		if err != nil {
			return false
		}
		info, err = st.Info(ctx)
		return err == nil && info.State.LastSeq == last
	})
	if info.State.FirstSeq != first || info.State.Msgs != last-first+1 {
		t.Fatalf("rebuilt stream holds %d messages from %d, want %d from the database's first change %d", info.State.Msgs, info.State.FirstSeq, last-first+1, first)
	}
	st := must[jetstream.Stream](t)(e.JS.Stream(ctx, domain.StreamName))
	msg := must[*jetstream.RawStreamMsg](t)(st.GetMsg(ctx, first))
	if got := msg.Header.Get(domain.HeaderSeq); got != strconv.FormatUint(first, 10) {
		t.Fatalf("message %d carries change %s", first, got)
	}
	ok(t, e.Server.Relay().Check(ctx))
}

// pullPages pulls from cursors page by page (2 records a page) until the
// server says there is no more, and returns every answer. The device
// replaces buckets (can_refetch) or is an older app that cannot.
func pullPages(t *testing.T, r *rawUser, cursors []*pb.Cursor, canRefetch bool) []*pb.SyncResponse {
	t.Helper()
	var out []*pb.SyncResponse
	var refetching []string
	for page := 0; ; page++ {
		if page > 50 {
			t.Fatalf("no end after %d pages: %v", page, out[len(out)-1])
		}
		ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		resp, err := r.client.Sync(ctx, &pb.SyncRequest{Cursors: cursors, PageSize: 2, CanRefetch: canRefetch, RefetchingBuckets: refetching})
		cancel()
		ok(t, err)
		out = append(out, resp)
		cursors = resp.GetCursors()
		for _, b := range resp.GetRefetchBuckets() {
			if !slices.Contains(refetching, b) {
				refetching = append(refetching, b)
			}
		}
		if !resp.GetMore() {
			return out
		}
	}
}

// The protocol of a bucket read again: a device whose cursor in its
// village's bucket is older than the marks the retention pass deleted is
// told once (refetch_buckets) and read from the start, page after page as
// long as it names the bucket in refetching_buckets; an older app, which
// does not say it can, is read from its cursor as before and is never
// told, so it never starts over at every page.
func TestBucketReadAgainPastRetentionWindow(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{}
	e := testenv.Start(t, testenv.WithRetention(retentionWindow, clock.Now))
	e.ImportSample()
	admin, actx := e.Admin()
	sec := newRaw(t, e, testenv.Secretary)
	first := pullPages(t, sec, nil, true)
	cursors := first[len(first)-1].GetCursors()

	// The others change, then H001 leaves the village: the bucket has more
	// than a page after the secretary's cursor, and its deleted mark lies
	// after the first page of the bucket read again.
	org := testenv.SampleOrg()
	var hs []*pb.Household
	for _, h := range append(org.GetHouseholds()[1:5], org.GetHouseholds()[0]) {
		h = proto.Clone(h).(*pb.Household)
		h.Members += "0"
		if h.GetId() == "H001" {
			h.GridId = testenv.Grid2
		}
		hs = append(hs, h)
	}
	resp, err := admin.ImportOrg(actx, &pb.ImportOrgRequest{Households: hs})
	ok(t, err)
	if len(resp.GetErrors()) > 0 {
		t.Fatalf("import: %v", resp.GetErrors())
	}
	waitPublished(t, e)
	clock.advance(retentionWindow + time.Hour)
	_, err = e.Daemon.Compact(ctx)
	ok(t, err)
	village := domain.VillageBucket(testenv.Village)
	if e.Store.BucketFloor(village) == 0 {
		t.Fatalf("no mark of %s was deleted", village)
	}

	told := 0
	pages := pullPages(t, sec, cursors, true)
	for i, p := range pages {
		if len(p.GetRefetchBuckets()) > 0 {
			told++
			if i != 0 || !slices.Equal(p.GetRefetchBuckets(), []string{village}) {
				t.Errorf("page %d: refetch %v, want %s on the first page only", i, p.GetRefetchBuckets(), village)
			}
		}
	}
	if told != 1 || len(pages) < 2 {
		t.Errorf("%d pages, told %d times to read again; want several pages, told once", len(pages), told)
	}
	got := map[string]bool{}
	for _, p := range pages {
		for _, r := range p.GetRecords() {
			got[r.GetId()] = true
		}
	}
	for _, id := range []string{"H002", "H003", "H004", "H005"} {
		if !got[id] {
			t.Errorf("the bucket read again lacks %s", id)
		}
	}
	if got["H001"] {
		t.Errorf("the bucket read again carries H001, which left it")
	}

	for i, p := range pullPages(t, sec, cursors, false) {
		if len(p.GetRefetchBuckets()) > 0 {
			t.Errorf("an older app was told on page %d to read %v again", i, p.GetRefetchBuckets())
		}
	}
}

// syncd runs the retention pass when it starts (and hourly): a server
// started with its clock past the window of a household's move compacts
// the move's marks without being asked.
func TestRetentionPassRunsAtStart(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	admin, actx := e.Admin()
	h := proto.Clone(testenv.SampleOrg().GetHouseholds()[0]).(*pb.Household)
	h.GridId = testenv.Grid2
	resp, err := admin.ImportOrg(actx, &pb.ImportOrgRequest{Households: []*pb.Household{h}})
	ok(t, err)
	if len(resp.GetErrors()) > 0 {
		t.Fatalf("import: %v", resp.GetErrors())
	}
	village := domain.VillageBucket(testenv.Village)
	if e.Store.BucketFloor(village) != 0 {
		t.Fatalf("a mark was deleted without a retention window")
	}
	e.Stop()
	clock := &fakeClock{}
	clock.advance(retentionWindow + time.Hour)
	e = testenv.Start(t, testenv.WithDir(e.Dir), testenv.WithAddr(e.Addr), testenv.WithAdminToken(e.AdminToken),
		testenv.WithRetention(retentionWindow, clock.Now))
	testenv.WaitFor(t, 20*time.Second, "the pass at start deletes the marks of the move", func() bool {
		return e.Store.BucketFloor(village) > 0
	})
}
