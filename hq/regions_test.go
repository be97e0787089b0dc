package hq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// downgradeRegions turns a model file back into schema version 3, as a
// model made before regions was: meta lineage and last_seq, no regions
// table, no region columns.
func downgradeRegions(t testing.TB, path, lineage string, last uint64) {
	t.Helper()
	db := openRaw(t, path)
	defer db.Close()
	for _, tb := range regionTables {
		mustExec(t, db, "DROP INDEX "+tb+"_region")
	}
	for _, tb := range regionTables {
		mustExec(t, db, "ALTER TABLE "+tb+" DROP COLUMN region")
	}
	mustExec(t, db, "DROP TABLE regions")
	mustExec(t, db, "INSERT INTO meta (key, value) VALUES ('lineage', ?), ('last_seq', ?)", lineage, strconv.FormatUint(last, 10))
	mustExec(t, db, "PRAGMA user_version = 3")
}

// A model made before regions keeps its rows (region "") and where it
// stood (lineage, last change) as region "".
func TestRegionsMigrationKeepsAModelMadeBefore(t *testing.T) {
	w := sampleWorld(3, 12)
	path := t.TempDir() + "/old.db"
	m := openModel(t, path)
	applyAll(t, m, "L", w.changes)
	m.Close()
	downgradeRegions(t, path, "L", w.seq)
	if cols := dumpWhere(t, openModelRaw(t, path), "pragma_table_info('households')", "name = 'region'"); len(cols) != 0 {
		t.Fatalf("the downgrade left households.region: %v", cols)
	}
	m = openModel(t, path)
	rs, ok := m.Region("")
	if !ok || rs.Lineage != "L" || rs.LastSeq != w.seq {
		t.Fatalf("region \"\" after the migration: %+v (held %v), want lineage L, last change %d", rs, ok, w.seq)
	}
	if m.Lineage() != "L" || m.LastSeq() != w.seq {
		t.Errorf("Lineage %q LastSeq %d, want L %d", m.Lineage(), m.LastSeq(), w.seq)
	}
	if v := meta(t, m, "last_seq"); v != "" {
		t.Errorf("meta last_seq %q kept: the regions table holds it now", v)
	}
	checkWorld(t, m, w)
	// It goes on applying the same stream.
	if err := m.Apply(context.Background(), w.changes[len(w.changes)-1], "L"); err != nil {
		t.Fatal(err)
	}
}

// openModelRaw is the model file's tables through a model-less handle.
func openModelRaw(t testing.TB, path string) *Model {
	return &Model{r: openRaw(t, path)}
}

// twoRegions applies a's and b's changes interleaved, each under its own
// region and lineage; the change numbers of the two overlap (1..n each).
func twoRegions(t testing.TB, m *Model, wa, wb *world) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < max(len(wa.changes), len(wb.changes)); i++ {
		if i < len(wa.changes) {
			if err := m.ApplyRegion(ctx, wa.changes[i], "a", "LA"); err != nil {
				t.Fatalf("region a change %d: %v", wa.changes[i].Seq, err)
			}
		}
		if i < len(wb.changes) {
			if err := m.ApplyRegion(ctx, wb.changes[i], "b", "LB"); err != nil {
				t.Fatalf("region b change %d: %v", wb.changes[i].Seq, err)
			}
		}
	}
}

func TestApplyTwoRegionsInterleaved(t *testing.T) {
	wa, wb := sampleWorldOf(21, 12, "a-"), sampleWorldOf(22, 16, "b-")
	m := openModel(t, "")
	twoRegions(t, m, wa, wb)
	checkWorldIn(t, m, wa, "a")
	checkWorldIn(t, m, wb, "b")
	want := []RegionState{{Region: "a", Lineage: "LA", LastSeq: wa.seq}, {Region: "b", Lineage: "LB", LastSeq: wb.seq}}
	if got := m.Regions(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Regions %+v, want %+v", got, want)
	}
	if m.LastSeq() != wa.seq+wb.seq || m.Lineage() != "" {
		t.Errorf("LastSeq %d Lineage %q, want %d and \"\" (two regions)", m.LastSeq(), m.Lineage(), wa.seq+wb.seq)
	}
	// Applying everything again changes nothing.
	before := map[string][]string{}
	for _, tb := range dataTables {
		before[tb] = dump(t, m, tb)
	}
	twoRegions(t, m, wa, wb)
	for _, tb := range dataTables {
		if got := dump(t, m, tb); strings.Join(got, "\n") != strings.Join(before[tb], "\n") {
			t.Errorf("%s changed by a replay:\n%s", tb, firstDiff(got, before[tb]))
		}
	}
}

// The ids of one region arriving from another are skipped, naming both.
func TestApplyRefusesAnIDHeldByAnotherRegion(t *testing.T) {
	wa, wb := sampleWorldOf(31, 8, "a-"), sampleWorldOf(32, 8, "b-")
	m := openModel(t, "")
	twoRegions(t, m, wa, wb)
	before := map[string][]string{}
	for _, tb := range dataTables {
		before[tb] = dump(t, m, tb)
	}
	ctx := context.Background()
	// Every kind of change of region a, given as region b's with a later
	// number: each is refused, and nothing changes.
	kinds := map[string]bool{}
	for _, c := range wa.changes {
		c = proto.Clone(c).(*pb.Change)
		c.Seq += 1000
		if c.Record != nil {
			c.Record.Version += 1000
		}
		err := m.ApplyRegion(ctx, c, "b", "LB")
		var bad *badChangeError
		switch {
		case c.Refused != nil && err == nil:
			// A refused event of a device region a holds is refused too,
			// once the device's row is there (it is, in the sample).
			t.Errorf("change %d (refused event of %s) from region b applied", c.Seq, c.Refused.DeviceId)
		case err == nil:
			t.Errorf("change %d (%s) of region a's ids applied as region b's", c.Seq, subjectOf(c))
		case !errors.As(err, &bad) || !strings.Contains(err.Error(), `from region "b"`) || !strings.Contains(err.Error(), `from region "a"`):
			t.Errorf("change %d: %v, want a badChangeError naming both regions", c.Seq, err)
		default:
			kinds[subjectOf(c)[strings.LastIndexByte(subjectOf(c), '.')+1:]] = true
		}
	}
	if len(kinds) < 6 {
		t.Errorf("refused kinds %v: the sample should have units, people, links, devices, refused events and records", kinds)
	}
	for _, tb := range dataTables {
		if got := dump(t, m, tb); strings.Join(got, "\n") != strings.Join(before[tb], "\n") {
			t.Errorf("%s changed by refused changes:\n%s", tb, firstDiff(got, before[tb]))
		}
	}
	checkWorldIn(t, m, wa, "a")
}

// One region rebuilt under another lineage: its rows are emptied and
// loaded again, the other region's stay, and the coverage tables stay
// exact.
func TestResetRegionLeavesTheOtherRegions(t *testing.T) {
	wa, wb := sampleWorldOf(41, 16, "a-"), sampleWorldOf(42, 12, "b-")
	m := openModel(t, "")
	twoRegions(t, m, wa, wb)
	build(t, m, coverageMonths...)
	if checkCoverage(t, m, "two regions") == 0 {
		t.Fatal("no coverage rows: the test tests nothing")
	}
	bRows := map[string][]string{}
	for _, tb := range dataTables {
		bRows[tb] = dumpWhere(t, m, tb, "1")
	}
	wa2 := sampleWorldOf(43, 6, "a-")
	ctx := context.Background()
	err := m.ApplyRegion(ctx, wa2.changes[0], "a", "LA2")
	if !errors.Is(err, ErrOtherLineage) || !strings.Contains(err.Error(), `region "a"`) {
		t.Fatalf("region a under another lineage: %v, want ErrOtherLineage naming the region", err)
	}
	if err := m.ResetRegion(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if rs, _ := m.Region("a"); rs.LastSeq != 0 || rs.Lineage != "" || rs.RebuiltMs == 0 {
		t.Errorf("region a after ResetRegion: %+v", rs)
	}
	var left int
	for _, tb := range regionTables {
		var n int
		m.DB().QueryRow("SELECT count(*) FROM " + tb + " WHERE region = 'a'").Scan(&n)
		left += n
	}
	if left != 0 {
		t.Errorf("%d rows of region a left after ResetRegion", left)
	}
	checkCoverage(t, m, "region a emptied")
	checkWorldIn(t, m, wb, "b")
	for _, c := range wa2.changes {
		if err := m.ApplyRegion(ctx, c, "a", "LA2"); err != nil {
			t.Fatal(err)
		}
	}
	checkWorldIn(t, m, wa2, "a")
	checkWorldIn(t, m, wb, "b")
	checkCoverage(t, m, "region a reloaded")
	if rs, _ := m.Region("b"); rs.Lineage != "LB" || rs.LastSeq != wb.seq || rs.RebuiltMs != 0 {
		t.Errorf("region b: %+v, untouched want", rs)
	}
}

// makeRegionStream makes region r's changelog stream as its syncd does.
func makeRegionStream(t testing.TB, js jetstream.JetStream, r string) {
	t.Helper()
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: domain.RegionStream(r),
		Subjects: []string{domain.RegionSubjectPrefix(r) + ".>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
}

// publishRegion puts changes on region r's stream as its relay does.
func publishRegion(t testing.TB, js jetstream.JetStream, r, lineage string, changes []*pb.Change) {
	t.Helper()
	for _, c := range changes {
		body, err := proto.Marshal(c)
		if err != nil {
			t.Error(err)
			return
		}
		msg := nats.NewMsg(domain.RegionSubject(r, subjectOf(c)))
		msg.Data = body
		msg.Header.Set(jetstream.MsgIDHeader, lineage+"-"+strconv.FormatUint(c.GetSeq(), 10))
		msg.Header.Set(domain.HeaderSeq, strconv.FormatUint(c.GetSeq(), 10))
		msg.Header.Set(domain.HeaderLineage, lineage)
		msg.Header.Set(domain.HeaderRegion, r)
		if _, err := js.PublishMsg(context.Background(), msg); err != nil {
			t.Error(err)
			return
		}
	}
}

// numbered makes n changes 1..n (device health: cheap to publish).
func numbered(from, to uint64) []*pb.Change {
	var out []*pb.Change
	for s := from; s <= to; s++ {
		out = append(out, &pb.Change{Seq: s, Region: "none", Device: &pb.DeviceHealth{DeviceId: "d", LastSeq: s}})
	}
	return out
}

// hqMessages reads FIELDSYNC_HQ once it holds want messages: per region,
// the Fieldsync-Seq of its messages in stream order.
func hqMessages(t testing.TB, js jetstream.JetStream, want uint64) map[string][]uint64 {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, domain.HQStreamName)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, fmt.Sprintf("%s holds %d messages", domain.HQStreamName, want), func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs >= want
	})
	time.Sleep(200 * time.Millisecond) // anything more would come now
	info, _ := st.Info(ctx)
	if info.State.Msgs != want {
		t.Errorf("%s holds %d messages, want %d", domain.HQStreamName, info.State.Msgs, want)
	}
	out := map[string][]uint64{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		msg, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		r := msg.Header.Get(domain.HeaderRegion)
		n, _ := strconv.ParseUint(msg.Header.Get(domain.HeaderSeq), 10, 64)
		if !strings.HasPrefix(msg.Subject, domain.RegionSubjectPrefix(r)+".") || msg.Header.Get(domain.HeaderLineage) == "" {
			t.Errorf("message %d: subject %s, headers %v: want the region's subject and headers kept", seq, msg.Subject, msg.Header)
		}
		out[r] = append(out[r], n)
	}
	return out
}

func checkOneToN(t testing.TB, got map[string][]uint64, want map[string]uint64) {
	t.Helper()
	for r, n := range want {
		seqs := got[r]
		ok := uint64(len(seqs)) == n
		for i, s := range seqs {
			ok = ok && s == uint64(i+1)
		}
		if !ok {
			t.Errorf("region %s: changes %v in %s, want 1..%d each once in order", r, seqs, domain.HQStreamName, n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("regions %d in %s, want %d", len(got), domain.HQStreamName, len(want))
	}
}

func TestEnsureHQStreamSourcesEachRegionOnceInOrder(t *testing.T) {
	js := startBareJS(t)
	ctx := context.Background()
	makeRegionStream(t, js, "a")
	makeRegionStream(t, js, "b")
	info, err := EnsureHQStream(ctx, js, []string{"a", "b"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Config.Subjects) != 0 || len(info.Config.Sources) != 2 || info.Config.Sources[0].Name != "FIELDSYNC_CHANGES_A" || info.Config.Sources[1].Name != "FIELDSYNC_CHANGES_B" {
		t.Fatalf("the HQ stream's config: subjects %v, sources %+v", info.Config.Subjects, info.Config.Sources)
	}
	// Both regions publish at once.
	const n = 150
	var wg sync.WaitGroup
	for _, r := range []string{"a", "b"} {
		wg.Add(1)
		go func() { defer wg.Done(); publishRegion(t, js, r, "L"+r, numbered(1, n)) }()
	}
	wg.Wait()
	checkOneToN(t, hqMessages(t, js, 2*n), map[string]uint64{"a": n, "b": n})

	// Run again, same regions: nothing changes.
	again, err := EnsureHQStream(ctx, js, []string{"b", "a"}, 0)
	if err != nil || len(again.Config.Sources) != 2 || again.State.Msgs != 2*n {
		t.Fatalf("again: %v, sources %d, messages %d", err, len(again.Config.Sources), again.State.Msgs)
	}

	// A third region later: the first two keep their positions (nothing
	// sourced twice), the third comes from its start.
	makeRegionStream(t, js, "c")
	publishRegion(t, js, "c", "Lc", numbered(1, 20))
	info, err = EnsureHQStream(ctx, js, []string{"a", "b", "c"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Config.Sources) != 3 {
		t.Fatalf("sources %+v, want a, b and c", info.Config.Sources)
	}
	publishRegion(t, js, "a", "La", numbered(n+1, n+10))
	checkOneToN(t, hqMessages(t, js, 2*n+30), map[string]uint64{"a": n + 10, "b": n, "c": 20})

	// A region in another JetStream domain is sourced through its API
	// prefix; its source is kept as it is.
	info, err = EnsureHQStream(ctx, js, []string{"a", "d@leafd"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	d := info.Config.Sources[indexSource(info.Config.Sources, "FIELDSYNC_CHANGES_D")]
	if d.External == nil || d.External.APIPrefix != "$JS.leafd.API" {
		t.Errorf("region d@leafd's source %+v, want External.APIPrefix $JS.leafd.API", d)
	}
	if _, err := EnsureHQStream(ctx, js, []string{"d"}, 0); err == nil || !strings.Contains(err.Error(), "$JS.leafd.API") {
		t.Errorf("d without its domain: %v, want refused naming the prefix it has", err)
	}
}

func TestEnsureHQStreamSaysWhatIsWrong(t *testing.T) {
	js := startJS(t)
	for _, c := range []struct {
		regions  []string
		replicas int
		want     string
	}{
		{nil, 1, "no regions given"},
		{[]string{"Xiaonan"}, 1, "lower-case letters"},
		{[]string{"a", ""}, 1, "the name is empty"},
		{[]string{"a@"}, 1, "domain after @ is empty"},
		{[]string{"a@x.y"}, 1, `has '.'`},
		{[]string{"a@x/y"}, 1, `has '/'`},
		{[]string{"a@域"}, 1, `has '域'`},
		{[]string{"a", "a@d"}, 1, "given twice"},
		{[]string{"a"}, 7, "replicas 7: want 1 to 5"},
	} {
		_, err := EnsureHQStream(context.Background(), js, c.regions, c.replicas)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q replicas %d: %v, want it to say %q", c.regions, c.replicas, err, c.want)
		}
	}
	if _, err := js.Stream(context.Background(), domain.HQStreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("a refused call made the stream: %v", err)
	}
}

// followStream runs m.Follow on stream until the test ends.
func followStream(t testing.TB, m *Model, js jetstream.JetStream, stream string) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{cancel: cancel, done: make(chan error, 1), log: &syncBuf{}}
	log := slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { f.done <- m.Follow(ctx, js, FollowConfig{Durable: "hq-test", Stream: stream, Log: log}) }()
	t.Cleanup(func() { f.stop(t) })
	return f
}

// The follower on FIELDSYNC_HQ: two regions publishing at once, an id of
// one region arriving from the other (skipped, at error), then one region
// rebuilt under a new lineage (its stream deleted and made again, as its
// relay does after a failover): only its rows are reloaded.
func TestFollowHQStreamOfTwoRegions(t *testing.T) {
	quick(t)
	js := startBareJS(t)
	ctx := context.Background()
	makeRegionStream(t, js, "a")
	makeRegionStream(t, js, "b")
	if _, err := EnsureHQStream(ctx, js, []string{"a", "b"}, 1); err != nil {
		t.Fatal(err)
	}
	wa, wb := sampleWorldOf(51, 16, "a-"), sampleWorldOf(52, 12, "b-")
	m := openModel(t, "")
	f := followStream(t, m, js, domain.HQStreamName)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); publishRegion(t, js, "a", "LA", wa.changes) }()
	go func() { defer wg.Done(); publishRegion(t, js, "b", "LB", wb.changes) }()
	wg.Wait()
	caughtUp := func(r string, lineage string, last uint64) func() bool {
		return func() bool { rs, _ := m.Region(r); return rs.Lineage == lineage && rs.LastSeq == last }
	}
	waitFor(t, "both regions applied", func() bool { return caughtUp("a", "LA", wa.seq)() && caughtUp("b", "LB", wb.seq)() })
	checkWorldIn(t, m, wa, "a")
	checkWorldIn(t, m, wb, "b")

	// Region b publishes a unit of region a's (two regions given the same
	// org file): logged at error, skipped, counted.
	bad := proto.Clone(wa.units["a-T01"]).(*pb.Change)
	bad.Seq, bad.Unit.Unit.Name = wb.seq+1, "冒名"
	publishRegion(t, js, "b", "LB", []*pb.Change{bad})
	waitFor(t, "region b's next change counted", caughtUp("b", "LB", wb.seq+1))
	wb.seq++ // counted as applied, its row left as it was
	if logs := f.log.String(); !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, `unit \"a-T01\" arrived from region \"b\"`) {
		t.Errorf("the collision is not logged at error:\n%s", logs)
	}
	checkWorldIn(t, m, wa, "a")

	// A message in region b's stream claiming to be region a's, under a
	// new lineage: believed, it would empty region a's rows. Its subject
	// (which b's stream enforces) says b: skipped, logged, region a kept.
	forged := proto.Clone(wa.units["a-T01"]).(*pb.Change)
	forged.Seq, forged.Unit.Unit.Name = wa.seq+1, "冒名"
	body, err := proto.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	fm := nats.NewMsg(domain.RegionSubject("b", subjectOf(forged)))
	fm.Data = body
	fm.Header.Set(domain.HeaderSeq, strconv.FormatUint(forged.GetSeq(), 10))
	fm.Header.Set(domain.HeaderLineage, "FORGED")
	fm.Header.Set(domain.HeaderRegion, "a")
	if _, err := js.PublishMsg(ctx, fm); err != nil {
		t.Fatal(err)
	}
	again := proto.Clone(wb.units["b-T01"]).(*pb.Change) // behind it: b's own unit again, unchanged
	again.Seq = wb.seq + 1
	publishRegion(t, js, "b", "LB", []*pb.Change{again})
	wb.units["b-T01"] = again
	waitFor(t, "region b's change after the forged one", caughtUp("b", "LB", wb.seq+1))
	wb.seq++
	if logs := f.log.String(); !strings.Contains(logs, "skipped a message whose region and subject disagree") {
		t.Errorf("the forged region is not logged:\n%s", logs)
	}
	if !caughtUp("a", "LA", wa.seq)() {
		rs, _ := m.Region("a")
		t.Fatalf("region a after a forged message: %+v, want lineage LA at %d", rs, wa.seq)
	}
	checkWorldIn(t, m, wa, "a")

	// Region a rebuilt under a new lineage with a smaller history.
	if err := js.DeleteStream(ctx, domain.RegionStream("a")); err != nil {
		t.Fatal(err)
	}
	makeRegionStream(t, js, "a")
	wa2 := sampleWorldOf(53, 6, "a-")
	publishRegion(t, js, "a", "LA2", wa2.changes)
	rebuilt := time.Now()
	// nats-server retries a source whose stream went away every few
	// seconds, backing off: about 20 s here.
	waitWithin(t, 2*time.Minute, "region a reloaded under LA2", caughtUp("a", "LA2", wa2.seq))
	t.Logf("region a reloaded %v after its new stream was written", time.Since(rebuilt))
	checkWorldIn(t, m, wa2, "a")
	checkWorldIn(t, m, wb, "b")
	logs := f.log.String()
	if !strings.Contains(logs, `reloading region \"a\"`) || strings.Contains(logs, "reloading from the stream's first message") {
		t.Errorf("want region a reloaded alone, not the whole model:\n%s", logs)
	}
	if rs, _ := m.Region("b"); rs.RebuiltMs != 0 {
		t.Errorf("region b reloaded too: %+v", rs)
	}
	if n := strings.Count(logs, "level=ERROR"); n != 2 {
		t.Errorf("%d errors logged, want 2 (the collision, the forged region):\n%s", n, logs)
	}

	// A whole reload reads region a's old lineage first, then its new
	// one: it ends where it was (no reload loop).
	if err := m.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reloaded from the first message", func() bool {
		return caughtUp("a", "LA2", wa2.seq)() && caughtUp("b", "LB", wb.seq)() && m.StreamSeq() == uint64(len(wa.changes)+len(wb.changes)+1+2+len(wa2.changes))
	})
	checkWorldIn(t, m, wa2, "a")
	checkWorldIn(t, m, wb, "b")
}
