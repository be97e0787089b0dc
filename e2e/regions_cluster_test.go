package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/internal/natscluster"
	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// The storm's size: members per region (each a phone with two
// households), rounds, and syncs of each phone a round (each after a
// visit); the NATS node dies in the middle of round clusterKillRound and
// comes back in the middle of round clusterRestartRound.
const (
	clusterMembers      = 12
	clusterRounds       = 5
	clusterCycles       = 3
	clusterKillRound    = 2
	clusterRestartRound = 4
)

// regionOrg is region r's small org: one town, two villages with a grid
// each, clusterMembers members with two households each, every id
// starting with "r-".
func regionOrg(r string) *pb.ImportOrgRequest {
	p := domain.RegionIDPrefix(r)
	req := &pb.ImportOrgRequest{
		Units: []*pb.Unit{
			{Id: p + "T01", Kind: pb.UnitKind_UNIT_KIND_TOWN, Name: r + "镇"},
			{Id: p + "V01", Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: p + "T01", Name: "东村"},
			{Id: p + "V02", Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: p + "T01", Name: "西村"},
			{Id: p + "G01", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: p + "V01", Name: "东湾"},
			{Id: p + "G02", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: p + "V02", Name: "西湾"},
		},
	}
	for i := 1; i <= clusterMembers; i++ {
		grid := p + "G0" + strconv.Itoa(1+i%2)
		m := fmt.Sprintf("%sM%02d", p, i)
		req.Users = append(req.Users, &pb.User{Id: m, Name: fmt.Sprintf("网格员%02d", i), Role: pb.Role_ROLE_MEMBER, UnitId: grid})
		for j := 1; j <= 2; j++ {
			h := fmt.Sprintf("%sH%02d%d", p, i, j)
			req.Households = append(req.Households, &pb.Household{Id: h, GridId: grid, Head: fmt.Sprintf("户主%02d%d", i, j),
				Address: fmt.Sprintf("%d号", i*10+j), Members: "3"})
			req.Assignments = append(req.Assignments, &pb.Assignment{HouseholdId: h, MemberId: m})
		}
	}
	return req
}

// logBuffer keeps a syncd's log lines (warn and above) for the test to
// read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines are the log lines holding s.
func (l *logBuffer) lines(s string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// clusterRegion is one region's syncd and its phones.
type clusterRegion struct {
	name   string
	env    *testenv.Env
	log    *logBuffer
	phones []*clusterPhone
}

// clusterPhone is a member's phone and what the server acknowledged to it:
// record id -> the version it saw synced, and the value it wrote (the
// visit's "met", the household's "phone").
type clusterPhone struct {
	user    string
	dev     *syncer.Device
	houses  []string
	mu      sync.Mutex
	acked   map[string]uint64
	wrote   map[string]string
	made    []string // records written, in order
	visits  int
	retries int // syncs that failed and were tried again
}

// Two regions' syncds publish to one 3-node JetStream cluster (R3 region
// streams, FIELDSYNC_HQ sourcing both, an HQ read model following it)
// while dozens of phones write and sync in both regions; mid-storm the
// node leading the most (the meta group, a region's stream, HQ's stream)
// is killed, and restarted in the middle of a round two rounds later
// (after a check that both relays published everything committed while
// it was down). Afterwards nothing a phone
// saw acknowledged is lost, each region's stream is its database's
// changes 1..N once each in order (message n = change n) and was never
// rebuilt, both relays published while the node was down, FIELDSYNC_HQ
// holds every change of both regions once and in each region's order,
// and the HQ model equals both servers' exports.
func TestRegionsOnAJetStreamClusterSurviveANodeKill(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP in -short: a 3-node JetStream cluster, two syncds and 24 phones for about a minute (CI runs it)")
	}
	t.Cleanup(func() { waitSourceSetups(t) }) // the very last
	cl, err := natscluster.Start(natscluster.Config{Name: "province"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Stop) // after the syncds' and the model's cleanups
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ok(t, cl.WaitReady(ctx))

	regions := []*clusterRegion{{name: "xiaonan"}, {name: "yunmeng"}}
	for _, r := range regions {
		r.log = &logBuffer{}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s: syncd's warnings and errors:\n%s", r.name, r.log.String())
			}
		})
		r.env = testenv.Start(t, testenv.WithSyncdConfig(func(c *syncd.Config) {
			c.NATSURL = cl.URLs()
			c.Region = r.name
			c.StreamReplicas = 3
			c.Logger = slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}))
		admin, actx := r.env.Admin()
		resp, err := admin.ImportOrg(actx, regionOrg(r.name))
		if err != nil {
			t.Fatalf("%s: import: %v", r.name, err)
		}
		if len(resp.GetErrors()) > 0 {
			t.Fatalf("%s: import refused rows: %v", r.name, resp.GetErrors())
		}
		for i := 1; i <= clusterMembers; i++ {
			p := &clusterPhone{user: fmt.Sprintf("%s-M%02d", r.name, i), acked: map[string]uint64{}, wrote: map[string]string{}}
			p.dev = r.env.Device(p.user)
			testenv.Sync(t, p.dev) // its households
			p.houses = []string{fmt.Sprintf("%s-H%02d1", r.name, i), fmt.Sprintf("%s-H%02d2", r.name, i)}
			r.phones = append(r.phones, p)
		}
	}

	// HQ: its stream sourcing both regions' streams, and a read model
	// following it over a connection of its own to the cluster.
	hqNC, err := nats.Connect(cl.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer hqNC.Close()
	hqJS, err := jetstream.New(hqNC)
	ok(t, err)
	names := []string{regions[0].name, regions[1].name}
	if _, err := hq.EnsureHQStream(ctx, hqJS, names, 3); err != nil {
		t.Fatal(err)
	}
	model, err := hq.Open(filepath.Join(t.TempDir(), "model.db"))
	ok(t, err)
	hqLog := &logBuffer{}
	fctx, stopFollow := context.WithCancel(context.Background())
	followDone := make(chan error, 1)
	go func() {
		followDone <- model.Follow(fctx, hqJS, hq.FollowConfig{Durable: "hq-cluster-test", Stream: domain.HQStreamName,
			Log: slog.New(slog.NewTextHandler(hqLog, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	}()
	defer func() {
		stopFollow()
		if err := <-followDone; err != nil {
			t.Errorf("HQ model: Follow: %v", err)
		}
		// Follow's last pull request keeps a goroutine of nats.go for up
		// to 3s after it returns (see BenchmarkHQFreshness): wait it out,
		// for goleak.
		time.Sleep(3200 * time.Millisecond)
		model.Close()
	}()

	// Every stream exists (the relays made theirs at start, with 3
	// replicas): note when each was created, to see later that none was
	// deleted and made again.
	created := map[string]time.Time{}
	for _, s := range append(regionStreams(regions), domain.HQStreamName) {
		info := streamInfo(t, ctx, hqJS, s)
		if info.Config.Replicas != 3 {
			t.Fatalf("stream %s has %d replicas, want 3 (Config.StreamReplicas)", s, info.Config.Replicas)
		}
		created[s] = info.Created
	}

	// The storm. Every phone writes and syncs, all at once, clusterCycles
	// times a round, round after round. In round clusterKillRound, once a
	// third of its syncs are done, the node leading the most is killed
	// while the other syncs (and the relays' publishing) go on; in round
	// clusterRestartRound, once a third of its syncs are done, it starts
	// again and catches up while the storm goes on.
	var phones []*clusterPhone
	for _, r := range regions {
		phones = append(phones, r.phones...)
	}
	var (
		victim   = -1
		killedAt = map[string]uint64{} // each region's last change right after the kill
		killFrom = map[string]uint64{} // and right before it began
	)
	for round := 1; round <= clusterRounds; round++ {
		if round == clusterRestartRound {
			// While the node was down, both relays went on: everything
			// committed so far reaches each region's stream.
			for _, r := range regions {
				last, err := r.env.Store.LastSeq(ctx)
				ok(t, err)
				wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
				if err := r.env.Server.Relay().WaitPublished(wctx, last); err != nil {
					t.Fatalf("%s: with node %s down the relay published up to %d of %d changes: %v",
						r.name, cl.Name(victim), r.env.Server.Relay().Published(), last, err)
				}
				wcancel()
				t.Logf("%s: the relay published changes %d..%d with node %s down", r.name, killedAt[r.name]+1, last, cl.Name(victim))
			}
		}
		var afterSync func() error
		if round == clusterRestartRound {
			var synced atomic.Int64
			third := int64(len(phones) * clusterCycles / 3)
			afterSync = func() error {
				if synced.Add(1) != third {
					return nil
				}
				if err := cl.Restart(victim); err != nil {
					return err
				}
				t.Logf("restarted NATS node %s in the middle of round %d", cl.Name(victim), round)
				return nil
			}
		}
		if round == clusterKillRound {
			var why string
			victim, why = pickVictim(t, ctx, cl, hqJS, append(regionStreams(regions), domain.HQStreamName))
			var synced atomic.Int64
			third := int64(len(phones) * clusterCycles / 3)
			afterSync = func() error {
				if synced.Add(1) != third {
					return nil
				}
				for _, r := range regions {
					last, err := r.env.Store.LastSeq(ctx)
					if err != nil {
						return err
					}
					killFrom[r.name] = last
				}
				t0 := time.Now()
				if err := cl.Kill(victim); err != nil {
					return err
				}
				took := time.Since(t0)
				for _, r := range regions {
					last, err := r.env.Store.LastSeq(ctx)
					if err != nil {
						return err
					}
					killedAt[r.name] = last
				}
				t.Logf("killing NATS node %s (%s) in the middle of round %d at changes %v; it was down %v later, at changes %v", cl.Name(victim), why, round, killFrom, took.Round(time.Millisecond), killedAt)
				return nil
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(phones))
		for _, p := range phones {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := p.work(ctx, round, afterSync); err != nil {
					errs <- fmt.Errorf("%s round %d: %w", p.user, round, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if round == clusterRestartRound && !cl.Running(victim) {
			t.Fatal("the node was never restarted")
		}
		if round == clusterKillRound {
			if cl.Running(victim) {
				t.Fatal("the node was never killed")
			}
			for _, r := range regions {
				last, err := r.env.Store.LastSeq(ctx)
				ok(t, err)
				if last <= killFrom[r.name] {
					t.Fatalf("%s: nothing committed in round %d once the kill began (change %d): the storm is too small to test anything", r.name, round, last)
				}
				t.Logf("%s: changes %d..%d committed in round %d once the kill began", r.name, killFrom[r.name]+1, last, round)
			}
		}
	}
	ok(t, cl.WaitReady(ctx))

	// Every mutation a phone saw acknowledged is on its region's server,
	// at that version or later, with what the phone wrote.
	for _, r := range regions {
		for _, p := range r.phones {
			p.mu.Lock()
			for id, v := range p.acked {
				rec, err := r.env.Store.Record(ctx, id)
				if err != nil {
					t.Fatalf("%s: %s acknowledged to %s (version %d) is not on the server: %v", r.name, id, p.user, v, err)
				}
				if rec.GetVersion() < v {
					t.Errorf("%s: %s is at version %d on the server, %s saw %d acknowledged", r.name, id, rec.GetVersion(), p.user, v)
				}
				field := "met"
				if rec.GetKind() == pb.Kind_KIND_HOUSEHOLD {
					field = "phone"
				}
				if got := rec.GetFields()[field].GetValue(); got != p.wrote[id] {
					t.Errorf("%s: %s's %s is %q on the server, %s wrote %q", r.name, id, field, got, p.user, p.wrote[id])
				}
			}
			if len(p.acked) != p.visits+len(p.houses) {
				t.Errorf("%s: %s saw %d records acknowledged, wrote %d visits and %d households", r.name, p.user, len(p.acked), p.visits, len(p.houses))
			}
			p.mu.Unlock()
		}
	}

	// Each region's stream: changes 1..N once each, in order, as in its
	// database, under its region's subjects and header; not rebuilt.
	lasts := map[string]uint64{}
	for _, r := range regions {
		last, err := r.env.Store.LastSeq(ctx)
		ok(t, err)
		lasts[r.name] = last
		wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
		if err := r.env.Server.Relay().WaitPublished(wctx, last); err != nil {
			t.Fatalf("%s: the relay published up to %d of %d after the restart: %v\n%s", r.name, r.env.Server.Relay().Published(), last, err, r.log.String())
		}
		wcancel()
		if err := retry(ctx, func() error { return testenv.StreamMatchesDB(ctx, hqJS, r.env.Store) }); err != nil {
			t.Errorf("%s: %v", r.name, err)
		}
		if last <= killedAt[r.name] {
			t.Errorf("%s: nothing committed after the kill", r.name)
		}
	}
	for s, at := range created {
		if info := streamInfo(t, ctx, hqJS, s); !info.Created.Equal(at) {
			t.Errorf("stream %s was made again during the storm (created %v, now %v)", s, at, info.Created)
		}
	}

	// What the relays met: publish errors are expected around the kill,
	// a rebuild of the stream is not.
	for _, r := range regions {
		retries := r.log.lines("relay: will retry")
		t.Logf("%s: the relay logged %d failed rounds:\n%s", r.name, len(retries), strings.Join(retries, "\n"))
		if rb := r.log.lines("deleted and recreated"); len(rb) > 0 {
			t.Errorf("%s: the relay rebuilt its stream after a node's kill (it should not need to):\n%s", r.name, strings.Join(rb, "\n"))
		}
		if e := r.log.lines("level=ERROR"); len(e) > 0 {
			t.Errorf("%s: syncd logged errors:\n%s", r.name, strings.Join(e, "\n"))
		}
	}

	retries := 0
	for _, p := range phones {
		retries += p.retries
	}
	t.Logf("%d phones synced %d times each; %d syncs failed and were tried again", len(phones), clusterRounds*clusterCycles, retries)

	// FIELDSYNC_HQ: every change of both regions once, each region's in
	// its order.
	total := lasts[regions[0].name] + lasts[regions[1].name]
	testenv.WaitFor(t, 90*time.Second, "FIELDSYNC_HQ to source every change of both regions", func() bool {
		return streamInfo(t, ctx, hqJS, domain.HQStreamName).State.Msgs >= total
	})
	if err := retry(ctx, func() error { return hqStreamHoldsEachOnce(ctx, hqJS, lasts) }); err != nil {
		t.Error(err)
	}

	// The HQ model: at each region's last change, equal to both exports.
	testenv.WaitFor(t, 90*time.Second, "the HQ model to apply both regions' last changes", func() bool {
		for _, r := range regions {
			if st, ok := model.Region(r.name); !ok || st.LastSeq != lasts[r.name] {
				return false
			}
		}
		return true
	})
	for _, r := range regions {
		st, _ := model.Region(r.name)
		if st.Lineage != r.env.Store.Instance() {
			t.Errorf("HQ model: region %s in lineage %q, its database is in %q", r.name, st.Lineage, r.env.Store.Instance())
		}
	}
	modelMatchesExports(t, model.DB(), regions)
	if w := hqLog.lines("level=WARN"); len(w) > 0 {
		t.Logf("HQ model: %d warnings (a failed round is followed by another):\n%s", len(w), strings.Join(w, "\n"))
	}
	if e := hqLog.lines("level=ERROR"); len(e) > 0 {
		t.Errorf("HQ model logged errors:\n%s", strings.Join(e, "\n"))
	}
	if re := hqLog.lines("reload"); len(re) > 0 {
		t.Errorf("HQ model reloaded (no region was rebuilt):\n%s", strings.Join(re, "\n"))
	}
}

// work is one round of a phone: clusterCycles times a visit to one of
// its households and a sync, the first time with its household's phone
// number changed too; after each sync, what it left synced is noted as
// acknowledged, and afterSync (if any) is called. A sync that fails is
// tried again (the phone's own loop does), up to 5 times.
func (p *clusterPhone) work(ctx context.Context, round int, afterSync func() error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := 0; k < clusterCycles; k++ {
		if k == 0 {
			h := p.houses[round%2]
			phone := fmt.Sprintf("139%04d%04d", round, len(p.made))
			if err := p.dev.Update(h, syncer.NewFields().Set("phone", phone)); err != nil {
				return fmt.Errorf("update %s: %w", h, err)
			}
			p.wrote[h] = phone
		}
		h := p.houses[k%2]
		met := fmt.Sprintf("%s 第%d轮 第%d次", p.user, round, k+1)
		id, err := p.dev.Create("visit", syncer.NewFields().Set("household_id", h).
			Set("visited_on", fmt.Sprintf("2026-11-%02d", round)).Set("met", met).Set("needs", "屋顶漏水"))
		if err != nil {
			return fmt.Errorf("create a visit: %w", err)
		}
		p.wrote[id] = met
		p.made = append(p.made, id)
		p.visits++
		for try := 1; ; try++ {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err = p.dev.Sync(sctx)
			cancel()
			if err == nil {
				break
			}
			if try == 5 {
				return fmt.Errorf("sync (5 tries): %w", err)
			}
			p.retries++
			time.Sleep(200 * time.Millisecond)
		}
		for _, id := range append(append([]string{}, p.made...), p.houses...) {
			it, err := p.dev.Get(id)
			if err != nil {
				return fmt.Errorf("read %s: %w", id, err)
			}
			if it.State == "synced" && it.Version > 0 {
				p.acked[id] = it.Version
			}
		}
		if afterSync != nil {
			if err := afterSync(); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitSourceSetups waits, up to 40 s, for nats-server's goroutines that
// set up a stream source's consumer to end: one waits for the answer up to
// 30 s with nothing to stop it when its server shuts down (nats-server
// 2.15.3, stream.go trySetupSourceConsumer), and would fail the package's
// goroutine leak check. A stopped cluster answers none, so it ends by its
// timer.
func waitSourceSetups(t testing.TB) {
	deadline := time.Now().Add(40 * time.Second)
	buf := make([]byte, 1<<22)
	for {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("trySetupSourceConsumer")) {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("nats-server's source consumer setup still waiting 40s after the cluster stopped")
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// retry calls check until it returns nil, for up to 30 s: a stream's
// leader may still be changing after the restart ("no responders"), and
// a check that finds the stream wrong finds it wrong again. It returns the
// last error.
func retry(ctx context.Context, check func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func regionStreams(rs []*clusterRegion) []string {
	var out []string
	for _, r := range rs {
		out = append(out, domain.RegionStream(r.name))
	}
	return out
}

func streamInfo(t testing.TB, ctx context.Context, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	var last error
	for try := 0; try < 50; try++ {
		st, err := js.Stream(ctx, name)
		if err == nil {
			var info *jetstream.StreamInfo
			if info, err = st.Info(ctx); err == nil {
				return info
			}
		}
		last = err
		time.Sleep(200 * time.Millisecond) // a leader election
	}
	t.Fatalf("stream %s: %v", name, last)
	return nil
}

// pickVictim picks the node to kill: the one leading the most of the
// meta group and the streams, the first stream's leader on a tie.
func pickVictim(t testing.TB, ctx context.Context, cl *natscluster.Cluster, js jetstream.JetStream, streams []string) (int, string) {
	roles := make([][]string, cl.Len())
	if i := cl.MetaLeader(); i >= 0 {
		roles[i] = append(roles[i], "meta leader")
	}
	first := -1
	for _, s := range streams {
		info := streamInfo(t, ctx, js, s)
		i := cl.Index(info.Cluster.Leader)
		if i < 0 {
			t.Fatalf("stream %s: leader %q is none of the cluster's nodes", s, info.Cluster.Leader)
		}
		if first < 0 {
			first = i
		}
		roles[i] = append(roles[i], "leader of "+s)
	}
	best := first
	for i := range roles {
		if len(roles[i]) > len(roles[best]) {
			best = i
		}
	}
	return best, strings.Join(roles[best], ", ")
}

// hqStreamHoldsEachOnce reads FIELDSYNC_HQ whole and says how it differs
// from "every change of each region once, in the region's order": per
// region (header Fieldsync-Region) the change numbers are 1..lasts[r]
// with none missing, none twice, none out of order, and every message id
// (Nats-Msg-Id, the change id) is distinct.
func hqStreamHoldsEachOnce(ctx context.Context, js jetstream.JetStream, lasts map[string]uint64) error {
	st, err := js.Stream(ctx, domain.HQStreamName)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	var total uint64
	for _, n := range lasts {
		total += n
	}
	if info.State.Msgs != total {
		return fmt.Errorf("%s holds %d messages, the regions committed %d changes (%v)", domain.HQStreamName, info.State.Msgs, total, lasts)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	next := map[string]uint64{}
	ids := map[string]bool{}
	var read uint64
	for read < total {
		batch, err := cons.Fetch(int(min(1000, total-read)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			read++
			h := m.Headers()
			r := h.Get(domain.HeaderRegion)
			if _, known := lasts[r]; !known {
				return fmt.Errorf("%s message %d: region %q is none of %v", domain.HQStreamName, read, r, lasts)
			}
			seq, err := strconv.ParseUint(h.Get(domain.HeaderSeq), 10, 64)
			if err != nil {
				return fmt.Errorf("%s message %d: %s %q", domain.HQStreamName, read, domain.HeaderSeq, h.Get(domain.HeaderSeq))
			}
			if seq != next[r]+1 {
				return fmt.Errorf("%s message %d: region %s's change %d follows its change %d", domain.HQStreamName, read, r, seq, next[r])
			}
			next[r] = seq
			id := h.Get(jetstream.MsgIDHeader)
			if ids[id] {
				return fmt.Errorf("%s message %d: change id %q twice", domain.HQStreamName, read, id)
			}
			ids[id] = true
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%s: read %d of %d messages", domain.HQStreamName, read, total)
		}
	}
	for r, n := range lasts {
		if next[r] != n {
			return fmt.Errorf("%s holds region %s's changes 1..%d, it committed 1..%d", domain.HQStreamName, r, next[r], n)
		}
	}
	return nil
}

// modelMatchesExports checks that the HQ model's households and visits
// are both servers' exports: the same records, each at the exported
// version with the exported fields, in its region.
func modelMatchesExports(t *testing.T, db *sql.DB, regions []*clusterRegion) {
	t.Helper()
	tables := map[pb.Kind]string{pb.Kind_KIND_HOUSEHOLD: "households", pb.Kind_KIND_VISIT: "visits"}
	count := map[string]int{}
	for _, r := range regions {
		for _, rec := range export(t, r.env) {
			table, known := tables[rec.GetKind()]
			if !known {
				t.Errorf("%s exports a %v (%s): the storm made only households and visits", r.name, rec.GetKind(), rec.GetId())
				continue
			}
			count[table]++
			cols := []string{"version", "region", "town_id"}
			want := []string{strconv.FormatUint(rec.GetVersion(), 10), r.name, r.name + "-T01"}
			fields := map[pb.Kind][]string{pb.Kind_KIND_HOUSEHOLD: {"grid_id", "head", "address"}, pb.Kind_KIND_VISIT: {"household_id", "visited_on", "met", "needs"}}[rec.GetKind()]
			for _, f := range fields {
				cols = append(cols, f)
				want = append(want, rec.GetFields()[f].GetValue())
			}
			got := make([]string, len(cols))
			ptrs := make([]any, len(cols))
			for i := range got {
				ptrs[i] = &got[i]
			}
			if err := db.QueryRow("SELECT "+strings.Join(cols, ", ")+" FROM "+table+" WHERE id = ?", rec.GetId()).Scan(ptrs...); err != nil {
				t.Errorf("HQ model: %s %s of %s: %v", table, rec.GetId(), r.name, err)
				continue
			}
			for i, c := range cols {
				if got[i] != want[i] {
					t.Errorf("HQ model: %s %s: %s = %q, %s exports %q", table, rec.GetId(), c, got[i], r.name, want[i])
				}
			}
		}
	}
	for _, table := range tables {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != count[table] {
			t.Errorf("HQ model: %d %s, the two exports have %d", n, table, count[table])
		}
	}
	want := 2 * clusterMembers * 2
	if count["households"] != want || count["visits"] != want/2*clusterRounds*clusterCycles {
		t.Errorf("the exports hold %v: want %d households and %d visits", count, want, want/2*clusterRounds*clusterCycles)
	}
}
