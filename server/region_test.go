package server_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
)

// regionOrg is testenv.SampleOrg with every administrator-given id
// prefixed "r-".
func regionOrg(r string) *pb.ImportOrgRequest {
	org := testenv.SampleOrg()
	p := func(id string) string {
		if id == "" {
			return ""
		}
		return domain.RegionIDPrefix(r) + id
	}
	for _, u := range org.Units {
		u.Id, u.ParentId = p(u.Id), p(u.ParentId)
	}
	for _, u := range org.Users {
		u.Id, u.UnitId = p(u.Id), p(u.UnitId)
	}
	for _, h := range org.Households {
		h.Id, h.GridId = p(h.Id), p(h.GridId)
	}
	for _, a := range org.Assignments {
		a.HouseholdId, a.MemberId = p(a.HouseholdId), p(a.MemberId)
	}
	return org
}

func startRegion(t *testing.T, region string, opts ...testenv.Option) *testenv.Env {
	t.Helper()
	return testenv.Start(t, append([]testenv.Option{testenv.WithSyncdConfig(func(c *syncd.Config) { c.Region = region })}, opts...)...)
}

func importOK(t *testing.T, e *testenv.Env, req *pb.ImportOrgRequest) {
	t.Helper()
	admin, ctx := e.Admin()
	resp, err := admin.ImportOrg(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetErrors()) > 0 {
		t.Fatalf("import: %v", resp.GetErrors())
	}
}

// TestRegionImportRefusesIdsOfOtherRegions: region xiaonan's syncd takes
// an org whose ids all start with "xiaonan-"; one row naming another
// region's id (in any of the id fields) refuses the whole call: nothing is
// stored, and every such row is listed with its table, index and field.
// Single-user calls naming another region's id are refused too.
func TestRegionImportRefusesIdsOfOtherRegions(t *testing.T) {
	e := startRegion(t, "xiaonan")
	if e.Store.Region() != "xiaonan" {
		t.Fatalf("store region %q", e.Store.Region())
	}
	importOK(t, e, regionOrg("xiaonan"))

	ctx := t.Context()
	before, err := e.Store.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &pb.ImportOrgRequest{
		Units: []*pb.Unit{
			{Id: "xiaonan-G09", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "xiaonan-V01", Name: "good grid"}, // 0: fine
			{Id: "yunmeng-T01", Kind: pb.UnitKind_UNIT_KIND_TOWN, Name: "other town"},                         // 1: id
			{Id: "xiaonan-G10", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V01", Name: "no prefix parent"},  // 2: parent_id
		},
		Users: []*pb.User{
			{Id: "xiaonan-U-new", Name: "good", Role: pb.Role_ROLE_MEMBER, UnitId: "xiaonan-G01"}, // 0: fine
			{Id: "U-new", Name: "no prefix", Role: pb.Role_ROLE_MEMBER, UnitId: "xiaonan-G01"},    // 1: id
			{Id: "xiaonan-U-x", Name: "x", Role: pb.Role_ROLE_MEMBER, UnitId: "yunmeng-G01"},      // 2: unit_id
		},
		Households: []*pb.Household{
			{Id: "xiaonan-H900", GridId: "xiaonan-G01", Head: "good"},  // 0: fine
			{Id: "xiaonan-H901", GridId: "yunmeng-G01", Head: "other"}, // 1: grid_id
			{Id: "xiaonan-", GridId: "xiaonan-G01", Head: "bare"},      // 2: id (the prefix alone)
		},
		Assignments: []*pb.Assignment{
			{HouseholdId: "xiaonan-H001", MemberId: "xiaonan-U-member1"}, // 0: fine
			{HouseholdId: "H001", MemberId: "xiaonan-U-member1"},         // 1: household_id
			{HouseholdId: "xiaonan-H001", MemberId: "yunmeng-U-member1"}, // 2: member_id
		},
	}
	admin, actx := e.Admin()
	resp, err := admin.ImportOrg(actx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"units 1 id", "units 2 parent_id", "users 1 id", "users 2 unit_id", "households 1 grid_id", "households 2 id", "assignments 1 household_id", "assignments 2 member_id"}
	var got []string
	for _, re := range resp.GetErrors() {
		got = append(got, re.GetTable()+" "+itoa(re.GetIndex())+" "+re.GetField())
		if !strings.Contains(re.GetMessage(), `this server is region "xiaonan"`) || !strings.Contains(re.GetMessage(), `"xiaonan-"`) {
			t.Errorf("row error %v: want the region's rule", re)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("refused rows:\n got %v\nwant %v", got, want)
	}
	if resp.GetUnits()+resp.GetUsers()+resp.GetHouseholds()+resp.GetAssignments() != 0 {
		t.Fatalf("a refused import stored rows: %v", resp)
	}
	after, _ := e.Store.LastSeq(ctx)
	if after != before {
		t.Fatalf("a refused import committed changes %d..%d", before+1, after)
	}
	if _, err := e.Store.User(ctx, "xiaonan-U-new"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the good user of a refused import: %v, want not stored", err)
	}
	if _, err := e.Store.Record(ctx, "xiaonan-H900"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the good household of a refused import: %v, want not stored", err)
	}

	// A whole file of another region: at most 20 rows listed, the last
	// one counting the rest.
	many := &pb.ImportOrgRequest{}
	for i := range 30 {
		many.Households = append(many.Households, &pb.Household{Id: "yunmeng-H" + itoa(int32(i)), GridId: "yunmeng-G01", Head: "x"})
	}
	resp, err = admin.ImportOrg(actx, many)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetErrors()); n != 20 || !strings.Contains(resp.GetErrors()[19].GetMessage(), "and 10 more rows") {
		t.Fatalf("30 rows of another region: %d errors, last %v", n, resp.GetErrors()[n-1])
	}

	// Single-user calls.
	_, err = admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "yunmeng-H001", MemberId: "xiaonan-U-member1"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "household_id") || !strings.Contains(err.Error(), `region "xiaonan"`) {
		t.Fatalf("assign another region's household: %v", err)
	}
	_, err = admin.CreateEnrollmentCode(actx, &pb.CreateEnrollmentCodeRequest{UserId: "yunmeng-U-member1"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "user_id") {
		t.Fatalf("enroll-code for another region's user: %v", err)
	}
	if _, err := admin.CreateEnrollmentCode(actx, &pb.CreateEnrollmentCodeRequest{UserId: "xiaonan-U-member1"}); err != nil {
		t.Fatalf("enroll-code for the region's own user: %v", err)
	}
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }

// TestRegionRelayPublishesToTheRegionsStream: region xiaonan's relay
// publishes stream FIELDSYNC_CHANGES_XIAONAN on subjects
// fieldsync.changes.xiaonan.>, message n being change n at the mapped
// subject with the Fieldsync-Region header; there is no FIELDSYNC_CHANGES.
// After someone else's message in the stream, the rebuild keeps the
// region's stream, subjects and header. The HQ users of its embedded NATS
// may read the region's stream.
func TestRegionRelayPublishesToTheRegionsStream(t *testing.T) {
	e := startRegion(t, "xiaonan")
	importOK(t, e, regionOrg("xiaonan"))
	waitRegionStream(t, e.JS, e.Store, "xiaonan")
	if _, err := e.JS.Stream(t.Context(), domain.StreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream %s: %v, want none on a region's syncd", domain.StreamName, err)
	}
	st, err := e.JS.Stream(t.Context(), "FIELDSYNC_CHANGES_XIAONAN")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := st.CachedInfo().Config; len(cfg.Subjects) != 1 || cfg.Subjects[0] != "fieldsync.changes.xiaonan.>" || cfg.Replicas != 1 {
		t.Fatalf("stream config: subjects %v replicas %d", cfg.Subjects, cfg.Replicas)
	}
	if got := server.DescribeStream(e.Server.Relay().StreamSettings()); !strings.Contains(got, "stream FIELDSYNC_CHANGES_XIAONAN: subjects fieldsync.changes.xiaonan.>, file storage, limits") {
		t.Fatalf("DescribeStream: %s", got)
	}
	lineage := e.Store.Instance()

	// Junk on the region's subjects: the relay rebuilds the region's stream.
	if _, err := e.JS.Publish(t.Context(), "fieldsync.changes.xiaonan.T01.junk", []byte("junk")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the relay to rebuild the region's stream", func() bool {
		info, err := st.Info(t.Context())
		last, _ := e.Store.LastSeq(t.Context())
		return err == nil && info.State.Msgs == last && info.State.LastSeq == last && e.Server.Relay().Published() == last
	})
	waitRegionStream(t, e.JS, e.Store, "xiaonan")
	if e.Store.Instance() != lineage {
		t.Fatalf("junk in the stream rebased the database")
	}
	// testenv's checks read the region's stream too.
	if err := testenv.StreamMatchesDB(t.Context(), e.JS, e.Store); err != nil {
		t.Fatalf("StreamMatchesDB: %v", err)
	}
	counts, changes := e.StreamChanges()
	if last, _ := e.Store.LastSeq(t.Context()); uint64(len(changes)) != last || len(counts) != int(last) {
		t.Fatalf("StreamChanges: %d changes, %d ids; the database has %d", len(changes), len(counts), last)
	}

	// An HQ credential of the embedded NATS reads the region's stream.
	hqNC := e.HQNATS(t)
	hqJS, err := jetstream.New(hqNC)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := hqJS.Stream(t.Context(), "FIELDSYNC_CHANGES_XIAONAN")
	if err != nil {
		t.Fatalf("HQ user: stream info of the region's stream: %v", err)
	}
	oc, err := hs.OrderedConsumer(t.Context(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("HQ user: consumer on the region's stream: %v", err)
	}
	m, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil || m.Headers().Get(domain.HeaderRegion) != "xiaonan" {
		t.Fatalf("HQ user: read the region's stream: %v", err)
	}
}

// waitRegionStream waits until region's stream holds every change of the
// database, then checks each message against its change: the same id,
// sequence = change number, subject = the stored subject mapped into the
// region, header Fieldsync-Region = region.
func waitRegionStream(t *testing.T, js jetstream.JetStream, st *store.Server, region string) {
	t.Helper()
	ctx := t.Context()
	last, err := st.LastSeq(ctx)
	if err != nil || last == 0 {
		t.Fatalf("last change %d: %v", last, err)
	}
	var s jetstream.Stream
	testenv.WaitFor(t, 30*time.Second, "the region's stream to hold every change", func() bool {
		s, err = js.Stream(ctx, domain.RegionStream(region))
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == last && info.State.LastSeq == last
	})
	rows, err := st.ChangesAfter(ctx, 0, int(last))
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		m, err := s.GetMsg(ctx, row.Seq)
		if err != nil {
			t.Fatalf("message %d: %v", row.Seq, err)
		}
		var c pb.Change
		if err := proto.Unmarshal(m.Data, &c); err != nil {
			t.Fatal(err)
		}
		want := domain.RegionSubject(region, row.Subject)
		if !strings.HasPrefix(want, "fieldsync.changes."+region+".") {
			t.Fatalf("change %d stored at %q maps to %q", row.Seq, row.Subject, want)
		}
		if m.Subject != want || m.Header.Get(domain.HeaderRegion) != region || m.Header.Get(jetstream.MsgIDHeader) != c.GetChangeId() ||
			m.Header.Get(domain.HeaderSeq) != strconv.FormatUint(row.Seq, 10) {
			t.Fatalf("message %d: subject %q region %q id %q seq %q; want %q %q %q %d", row.Seq, m.Subject, m.Header.Get(domain.HeaderRegion),
				m.Header.Get(jetstream.MsgIDHeader), m.Header.Get(domain.HeaderSeq), want, region, c.GetChangeId(), row.Seq)
		}
	}
}

// TestTwoRegionsOnOneJetStream: two regions' syncds publish side by side
// to one JetStream (an external nats-server): each to its own stream, on
// its own subjects, with its own audit stream; neither's relay or audit
// publisher disturbs the other's.
func TestTwoRegionsOnOneJetStream(t *testing.T) {
	ns := startSharedJetStream(t)
	start := func(region string) *testenv.Env {
		return testenv.Start(t, testenv.WithSyncdConfig(func(c *syncd.Config) { c.Region, c.NATSURL = region, ns.ClientURL() }))
	}
	a, b := start("xiaonan"), start("yunmeng")
	importOK(t, a, regionOrg("xiaonan"))
	importOK(t, b, regionOrg("yunmeng"))
	// More changes on one side, interleaved with the other's.
	more := &pb.ImportOrgRequest{Households: []*pb.Household{{Id: "xiaonan-H100", GridId: "xiaonan-G01", Head: "x"}}}
	importOK(t, a, more)
	waitRegionStream(t, a.JS, a.Store, "xiaonan")
	waitRegionStream(t, b.JS, b.Store, "yunmeng")
	la, _ := a.Store.LastSeq(t.Context())
	lb, _ := b.Store.LastSeq(t.Context())
	if la == lb {
		t.Fatalf("both regions have %d changes: the test wants different counts", la)
	}
	// Each region's audit heads in its own stream, every entry published.
	for _, e := range []*testenv.Env{a, b} {
		region := e.Store.Region()
		testenv.WaitFor(t, 30*time.Second, "region "+region+"'s audit heads", func() bool {
			h, err := server.LatestAuditHead(context.Background(), e.JS, e.Store.AuditHeadSubject())
			entries, lerr := e.Store.AuditLog(context.Background(), 0, 1000)
			return err == nil && lerr == nil && h != nil && len(entries) > 0 && h.Seq == entries[len(entries)-1].Seq
		})
		st, err := e.JS.Stream(t.Context(), server.AuditStreamFor(region))
		if err != nil {
			t.Fatalf("audit stream of %s: %v", region, err)
		}
		if subj := st.CachedInfo().Config.Subjects; len(subj) != 1 || subj[0] != e.Store.AuditHeadSubject() {
			t.Fatalf("audit stream of %s: subjects %v", region, subj)
		}
	}
	if _, err := a.JS.Stream(t.Context(), domain.AuditStreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream %s: %v, want none with regions", domain.AuditStreamName, err)
	}
}

// TestRegionBesideANoRegionStreamIsRefusedWithAReason: a region's stream
// cannot be made where FIELDSYNC_CHANGES (a syncd without a region) takes
// every changelog subject; the relay's error says so.
func TestRegionBesideANoRegionStreamIsRefusedWithAReason(t *testing.T) {
	ns := startSharedJetStream(t)
	city := testenv.Start(t, testenv.WithSyncdConfig(func(c *syncd.Config) { c.NATSURL = ns.ClientURL() }))
	if _, err := city.JS.Stream(t.Context(), domain.StreamName); err != nil {
		t.Fatal(err)
	}
	_, err := server.EnsureRegionStream(t.Context(), city.JS, "xiaonan")
	if err == nil || !strings.Contains(err.Error(), "cannot share a JetStream account with regions") {
		t.Fatalf("a region's stream beside FIELDSYNC_CHANGES: %v", err)
	}
}

// TestTwoServersOfOneRegionDoNotFightOverItsStream: a second syncd of the
// same region (the old machine back after a failover: another database,
// another lineage, the same region) finds the region's stream published
// under a lineage neither its own nor the one it came from. It refuses to
// rebuild it, naming what to do, instead of deleting the first server's
// stream (which would then rebuild it in turn, and so on); the first
// server's stream stays whole and goes on.
func TestTwoServersOfOneRegionDoNotFightOverItsStream(t *testing.T) {
	ns := startSharedJetStream(t)
	start := func() *testenv.Env {
		return testenv.Start(t, testenv.WithSyncdConfig(func(c *syncd.Config) { c.Region, c.NATSURL = "xiaonan", ns.ClientURL() }))
	}
	a := start()
	importOK(t, a, regionOrg("xiaonan"))
	waitRegionStream(t, a.JS, a.Store, "xiaonan")

	empty := start() // a standby started before its restore
	if err := empty.Daemon.Server.Relay().Check(t.Context()); err == nil || !strings.Contains(err.Error(), "this database is empty") ||
		!strings.Contains(err.Error(), "syncd restore") {
		t.Fatalf("an empty database's relay check: %v, want told to restore first", err)
	}
	b := start() // another database of region xiaonan
	importOK(t, b, regionOrg("xiaonan"))
	err := b.Daemon.Server.Relay().Check(t.Context())
	if err == nil || !strings.Contains(err.Error(), "another server of region xiaonan") || !strings.Contains(err.Error(), "nats stream rm FIELDSYNC_CHANGES_XIAONAN -f") {
		t.Fatalf("the second server's relay check: %v, want a refusal naming the other server and the command", err)
	}
	// The first server's stream goes on, whole, in its lineage.
	importOK(t, a, &pb.ImportOrgRequest{Households: []*pb.Household{{Id: "xiaonan-H100", GridId: "xiaonan-G01", Head: "x"}}})
	waitRegionStream(t, a.JS, a.Store, "xiaonan")
	time.Sleep(2 * time.Second) // the second relay's loop retries meanwhile (once a second)
	waitRegionStream(t, a.JS, a.Store, "xiaonan")
	st, err := a.JS.Stream(t.Context(), "FIELDSYNC_CHANGES_XIAONAN")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetMsg(t.Context(), st.CachedInfo().State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get(domain.HeaderLineage); got != a.Store.Instance() {
		t.Fatalf("the stream's lineage is %q, want the first server's %q", got, a.Store.Instance())
	}
}

// startSharedJetStream starts a nats-server with JetStream for several
// syncds (an external NATS, as a province's cluster is): each region's
// stream reserves its -changelog-max-bytes (48 GiB by default) of the
// store, so two need more than one syncd's 64 GiB.
func startSharedJetStream(t *testing.T) *natsserver.Server {
	t.Helper()
	opts := &natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		JetStreamMaxStore: 2 * server.DefaultNATSMaxStore}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}
