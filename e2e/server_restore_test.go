package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// fieldPhone is a device writing and syncing in a loop, keeping what it
// saw acknowledged: record ids it created and note texts it appended.
// fieldPhones are the five phones the restore tests write with: two
// members' visits, a secretary's events and two mediators' notes on one
// dispute, dated day; idOf gives the org's id of a sample household (a
// region's prefix).
func fieldPhones(m1, m2, sec, med1, med2 *syncer.Device, dispute, day string, idOf func(string) string) []*fieldPhone {
	visitOn := func(d *syncer.Device, who string, households ...string) func(int) (string, string, error) {
		return func(i int) (string, string, error) {
			rid, err := d.Create("visit", syncer.NewFields().Set("household_id", idOf(households[i%len(households)])).
				Set("visited_on", day).Set("needs", fmt.Sprintf("%s 第%d次走訪", who, i)))
			return rid, "", err
		}
	}
	noteOn := func(d *syncer.Device, who string) func(int) (string, string, error) {
		return func(i int) (string, string, error) {
			text := fmt.Sprintf("%s 調解記錄 %d", who, i)
			return "", text, d.Append(dispute, "notes", text)
		}
	}
	return []*fieldPhone{
		{name: "member1", d: m1, write: visitOn(m1, "m1", "H001", "H002", "H003")},
		{name: "member2", d: m2, write: visitOn(m2, "m2", "H004", "H005")},
		{name: "secretary", d: sec, write: func(i int) (string, string, error) {
			rid, err := sec.Create("event", syncer.NewFields().Set("type", "meeting").Set("occurred_on", day).Set("subject", fmt.Sprintf("三會一課 %d", i)))
			return rid, "", err
		}},
		{name: "mediator1", d: med1, write: noteOn(med1, "med1")},
		{name: "mediator2", d: med2, write: noteOn(med2, "med2")},
	}
}

type fieldPhone struct {
	name  string
	d     *syncer.Device
	write func(i int) (id, note string, err error)

	made      []string // record ids created, in order
	notes     []string // note texts appended, in order
	ackedIDs  int      // made[:ackedIDs] were acknowledged
	ackedNote int      // notes[:ackedNote] were acknowledged
	syncs     int      // successful syncs
}

// work writes and syncs until stop is closed. A write is acknowledged when
// a sync that started after it returned nil with nothing pending or
// rejected: the phone's writes and syncs happen one after the other here,
// so everything written before such a sync was answered applied.
func (p *fieldPhone) work(t *testing.T, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		id, note, err := p.write(i)
		if err != nil {
			t.Errorf("%s: local write: %v", p.name, err)
			return
		}
		if id != "" {
			p.made = append(p.made, id)
		}
		if note != "" {
			p.notes = append(p.notes, note)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = p.d.Sync(ctx)
		cancel()
		var re *syncer.RetryError
		switch {
		case errors.As(err, &re): // the rate limit: wait as a phone does
			select {
			case <-stop:
				return
			case <-time.After(re.After):
			}
			continue
		case err != nil:
			t.Errorf("%s: sync while syncd runs: %v", p.name, err)
			return
		}
		st, err := p.d.Status()
		if err != nil {
			t.Errorf("%s: status: %v", p.name, err)
			return
		}
		if st.Pending != 0 || st.Rejected != 0 {
			t.Errorf("%s: after a sync %d pending, %d rejected", p.name, st.Pending, st.Rejected)
			return
		}
		p.ackedIDs, p.ackedNote = len(p.made), len(p.notes)
		p.syncs++
	}
}

// An operator restores syncd from its continuous backup to a moment while
// devices were writing and syncing, so that the devices hold acknowledged
// work the restored database lacks. With real processes: syncd backing up
// to <data>/backup every 100 ms while five phones write visits, events and
// notes on a shared dispute and sync; the moment noted; the phones go on
// until as much again is acknowledged; syncd stopped (SIGTERM); `syncd
// restore -force -timestamp <moment>`; syncd started again. Then one round
// of syncs, each phone's Sync called once in turn (a Sync makes as many
// calls as it needs: the first learns the new lineage and what the server
// lost, then the phone sends it again), must leave on the server every
// mutation any phone saw acknowledged, exactly once, with no phone told to
// re-enroll or stopped as a clone; and the changelog must equal SQLite
// change by change under the new lineage.
func TestServerRestoredFromContinuousBackupKeepsEverythingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs syncd processes: skipped with -short (CI runs it)")
	}
	bin := testenv.BuildSyncd(t)
	dir, addr, natsAddr := t.TempDir(), freeAddr(t), freeAddr(t)
	syncdArgs := []string{"-data", dir, "-listen", addr, "-nats-listen", natsAddr, "-log-level", "warn", "-backup-interval", "100ms"}
	proc := testenv.StartSyncd(t, bin, syncdArgs...)
	if !strings.Contains(proc.Output(), "backup to "+filepath.Join(dir, "backup")) {
		t.Fatalf("syncd does not say it backs up to <data>/backup:\n%s", proc.Output())
	}
	token := strings.TrimSpace(string(must[[]byte](t)(os.ReadFile(filepath.Join(dir, "admin.token")))))
	fp := must[string](t)(syncer.CAFingerprintFile(filepath.Join(dir, "tls", server.CAFile)))
	conn := must[*grpc.ClientConn](t)(grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(syncer.PinnedTLS(addr, fp)))))
	defer conn.Close()
	adminCtx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	admin := pb.NewAdminServiceClient(conn)
	imp := must[*pb.ImportOrgResponse](t)(admin.ImportOrg(adminCtx, testenv.SampleOrg()))
	if len(imp.GetErrors()) > 0 {
		t.Fatal(imp.GetErrors())
	}

	enroll := func(user string) *syncer.Device {
		code := must[*pb.CreateEnrollmentCodeResponse](t)(admin.CreateEnrollmentCode(adminCtx, &pb.CreateEnrollmentCodeRequest{UserId: user})).GetCode()
		path := filepath.Join(t.TempDir(), "phone.db")
		d := must[*syncer.Device](t)(syncer.OpenWith(path, &syncer.Options{ConnectTimeout: time.Second, Key: phoneKey(path)}))
		t.Cleanup(func() { d.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ok(t, d.Enroll(ctx, syncer.FormatEnrollment(addr, code, fp), "phone of "+user))
		return d
	}
	m1, m2, sec := enroll(testenv.Member), enroll(testenv.Member2), enroll(testenv.Secretary)
	med1, med2 := enroll(testenv.Mediator), enroll(testenv.Mediator2)
	dispute := must[string](t)(med1.Create("dispute", syncer.NewFields().Set("category", "quarrel").
		Set("title", "宅基地邊界爭吵").Set("parties", "張大山；趙春梅").Set("mediators", testenv.Mediator2)))
	testenv.Sync(t, med1)
	testenv.Sync(t, med2)
	if _, err := med2.Get(dispute); err != nil {
		t.Fatalf("the co-mediator did not get the dispute: %v", err)
	}

	phones := fieldPhones(m1, m2, sec, med1, med2, dispute, "2026-12-06", func(id string) string { return id })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range phones {
		wg.Add(1)
		go func() { defer wg.Done(); p.work(t, stop) }()
	}
	stopped := false
	stopPhones := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopPhones()

	// The moment to restore to: once the server has a few hundred changes.
	nc := must[*nats.Conn](t)(nats.Connect("nats://"+natsAddr, testenv.SyncdNATS(t, dir)))
	defer nc.Close()
	published := func() int { // cheaper to poll than an export; the relay follows closely
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		js, err := jetstream.New(nc)
		if err != nil {
			return 0
		}
		s, err := js.Stream(ctx, domain.StreamName)
		if err != nil {
			return 0
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 0
		}
		return int(info.State.LastSeq)
	}
	testenv.WaitFor(t, 2*time.Minute, "200 changes on the server", func() bool { return t.Failed() || published() >= 200 })
	if t.Failed() {
		t.FailNow()
	}
	mark := time.Now()
	atMark := countChanges(t, adminCtx, conn)
	// After it, as much again acknowledged: work the restored server will
	// lack, held only by the phones.
	testenv.WaitFor(t, 2*time.Minute, "200 changes more after the moment", func() bool {
		return t.Failed() || published() >= atMark+200
	})
	stopPhones()
	nc.Close()
	if t.Failed() {
		t.FailNow()
	}
	before := countChanges(t, adminCtx, conn)
	oldLineage := streamLineage(t, natsAddr, dir)

	proc.Stop(t, syscall.SIGTERM)
	if !strings.Contains(proc.Output(), "stopped cleanly") {
		t.Fatalf("syncd did not stop cleanly:\n%s", proc.Output())
	}
	restoreStart := time.Now()
	out, err := exec.Command(bin, "restore", "-data", dir, "-force", "-timestamp", mark.UTC().Format(time.RFC3339Nano)).CombinedOutput()
	if err != nil {
		t.Fatalf("syncd restore: %v\n%s", err, out)
	}
	restoreTook := time.Since(restoreStart)
	// "restored <db> to the point of <t>: change N, B bytes, S s; new lineage L after change N (was O)"
	fig := regexp.MustCompile(`restored \S+ to the point of (\S+): change (\d+), (\d+) bytes, ([\d.]+) s; new lineage (\S+) after change (\d+) \(was (\S+)\)`).FindSubmatch(out)
	if fig == nil {
		t.Fatalf("syncd restore did not print its figures (point, change, bytes, seconds, lineage):\n%s", out)
	}
	var restoredLast int
	fmt.Sscan(string(fig[2]), &restoredLast)
	newLineage, was := string(fig[5]), string(fig[7])
	t.Logf("restore (%v): %s", restoreTook.Round(time.Millisecond), strings.TrimSpace(string(out)))
	if was != oldLineage || newLineage == oldLineage {
		t.Fatalf("restore says new lineage %s (was %s); the stream carried %s", newLineage, was, oldLineage)
	}
	if restoredLast < 1 || restoredLast > atMark || restoredLast >= before {
		t.Fatalf("restored to change %d; the moment had at most %d, the server %d before the restore: not restored to the moment", restoredLast, atMark, before)
	}
	if at, err := time.Parse(time.RFC3339, string(fig[1])); err != nil || at.After(mark) {
		t.Fatalf("restored to the point of %s, after the moment asked for %s (%v)", fig[1], mark.UTC().Format(time.RFC3339Nano), err)
	}

	proc = testenv.StartSyncd(t, bin, syncdArgs...)
	// What the restored server lacks of what the phones saw acknowledged:
	// if nothing, the test proved nothing.
	onServer := exportIDs(t, adminCtx, conn)
	lostIDs := 0
	for _, p := range phones {
		for _, id := range p.made[:p.ackedIDs] {
			if onServer[id] == 0 {
				lostIDs++
			}
		}
	}
	lostNotes := len(ackedNotes(phones)) - len(countNotes(t, exportRecord(t, adminCtx, conn, dispute)))
	if lostIDs == 0 || lostNotes <= 0 {
		t.Fatalf("the restored server lacks %d acknowledged records and %d notes: want some of each, to test their return", lostIDs, lostNotes)
	}

	// One round: each phone's Sync once, in turn.
	for _, p := range phones {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := p.d.Sync(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: first sync after the restore: %v (no phone may be told to re-enroll)", p.name, err)
		}
	}
	onServer = exportIDs(t, adminCtx, conn)
	nAcked := 0
	for _, p := range phones {
		for _, id := range p.made[:p.ackedIDs] {
			nAcked++
			if onServer[id] != 1 {
				t.Errorf("%s: acknowledged record %s is on the server %d times after the round, want 1", p.name, id, onServer[id])
			}
		}
	}
	made := 0
	for _, p := range phones {
		made += len(p.made)
	}
	visitsAndEvents := 0
	events := map[string][]*pb.Record{} // by origin device
	for _, r := range exportAll(t, adminCtx, conn) {
		if k := r.GetKind(); k == pb.Kind_KIND_VISIT || k == pb.Kind_KIND_EVENT {
			visitsAndEvents++
		}
		if r.GetKind() == pb.Kind_KIND_EVENT {
			events[r.GetOriginDeviceId()] = append(events[r.GetOriginDeviceId()], r)
		}
	}
	if visitsAndEvents != made {
		t.Errorf("server holds %d visits and events, the phones made %d", visitsAndEvents, made)
	}
	// Every note once: those acknowledged before, and those written last
	// that had not been sent yet when the phones stopped.
	notes := countNotes(t, exportRecord(t, adminCtx, conn, dispute))
	acked := ackedNotes(phones)
	allNotes := 0
	for _, p := range phones {
		allNotes += len(p.notes)
		for i, text := range p.notes {
			if notes[text] != 1 {
				t.Errorf("%s: note %q (acknowledged before the restore: %v) is on the server %d times, want 1", p.name, text, i < p.ackedNote, notes[text])
			}
		}
	}
	if len(notes) != allNotes {
		t.Errorf("the dispute holds %d distinct notes, the phones wrote %d", len(notes), allNotes)
	}
	for _, p := range phones {
		st := must[*syncer.Status](t)(p.d.Status())
		if st.Pending != 0 || st.Rejected != 0 || st.Stopped != "" || st.LastError != "" {
			t.Errorf("%s after the round: %d pending, %d rejected, stopped %q, last error %q", p.name, st.Pending, st.Rejected, st.Stopped, st.LastError)
		}
		t.Logf("%s: %d records and %d notes acknowledged in %d syncs; notice %q", p.name, p.ackedIDs, p.ackedNote, p.syncs, st.Notice)
	}
	devs := must[*pb.ListDevicesResponse](t)(admin.ListDevices(adminCtx, &pb.ListDevicesRequest{PageSize: 1000}))
	for _, d := range devs.GetDevices() {
		if d.GetRestores() != 0 || d.GetRevokedMs() != 0 {
			t.Errorf("device %s on the server: %d restores, revoked at %d: a server restore is no phone restore", d.GetId(), d.GetRestores(), d.GetRevokedMs())
		}
	}
	t.Logf("%d records and %d notes acknowledged; the restored server lacked %d records and %d notes; changes: %d at the moment, %d before the restore, %d restored",
		nAcked, len(acked), lostIDs, lostNotes, atMark, before, restoredLast)

	// The changelog, once syncd has stopped (it publishes every committed
	// change before it exits): message n is change n, byte for byte, under
	// the new lineage. The embedded NATS is started again on syncd's store
	// to read it.
	proc.Stop(t, syscall.SIGTERM)
	st := must[*store.Server](t)(store.OpenServer(context.Background(), filepath.Join(dir, "fieldsync.db")))
	defer st.Close()
	if st.Instance() != newLineage {
		t.Fatalf("database lineage %s, the restore said %s", st.Instance(), newLineage)
	}
	ns := must[*natsserver.Server](t)(server.EmbeddedNATS(filepath.Join(dir, "nats"), "127.0.0.1", -1))
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc2 := must[*nats.Conn](t)(nats.Connect("", nats.InProcessServer(ns)))
	defer nc2.Close()
	js := must[jetstream.JetStream](t)(jetstream.New(nc2))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := testenv.StreamMatchesDB(ctx, js, st); err != nil {
		t.Fatalf("changelog after the restore: %v", err)
	}
	// The backup goes on after the restore: restored elsewhere (as onto a
	// new machine), it holds every change the restored syncd committed.
	last := must[uint64](t)(st.LastSeq(ctx))
	again := t.TempDir()
	out, err = exec.Command(bin, "restore", "-data", again, "-backup", filepath.Join(dir, "backup")).CombinedOutput()
	if err != nil {
		t.Fatalf("second restore, from the backup made after the first: %v\n%s", err, out)
	}
	if want := fmt.Sprintf(": change %d,", last); !strings.Contains(string(out), want) || !strings.Contains(string(out), "(was "+newLineage+")") {
		t.Fatalf("second restore: want the backup to reach change %d of lineage %s, the last the restored syncd committed:\n%s", last, newLineage, out)
	}

	// The secretary's events, sent again after the restore, still form
	// one chain on the server.
	links := must[map[string][]domain.ChainLink](t)(st.RefusedLinks(ctx))
	for dev, evs := range events {
		if err := domain.VerifyChain(evs, links[dev]...); err != nil {
			t.Errorf("event chain of device %s (%d events): %v", dev, len(evs), err)
		}
	}
}

// exportAll reads every record through the Export RPC.
func exportAll(t *testing.T, ctx context.Context, conn *grpc.ClientConn) []*pb.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return testenv.Export(t, ctx, conn, &pb.ExportRequest{})
}

// exportRecord reads one record through the Export RPC.
func exportRecord(t *testing.T, ctx context.Context, conn *grpc.ClientConn, id string) *pb.Record {
	t.Helper()
	for _, r := range exportAll(t, ctx, conn) {
		if r.GetId() == id {
			return r
		}
	}
	t.Fatalf("record %s not in the export", id)
	return nil
}

// countNotes counts each note text of a dispute.
func countNotes(t *testing.T, r *pb.Record) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, e := range r.GetEntries() {
		if e.GetField() == "notes" {
			n[e.GetText()]++
		}
	}
	return n
}

// ackedNotes lists the note texts the phones saw acknowledged.
func ackedNotes(phones []*fieldPhone) []string {
	var out []string
	for _, p := range phones {
		out = append(out, p.notes[:p.ackedNote]...)
	}
	return out
}

// streamLineage reads the Fieldsync-Lineage of the changelog's last
// message on the NATS at addr of the syncd of data directory dir.
func streamLineage(t *testing.T, addr, dir string) string {
	t.Helper()
	nc := must[*nats.Conn](t)(nats.Connect("nats://"+addr, testenv.SyncdNATS(t, dir)))
	defer nc.Close()
	js := must[jetstream.JetStream](t)(jetstream.New(nc))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := must[jetstream.Stream](t)(js.Stream(ctx, domain.StreamName))
	info := must[*jetstream.StreamInfo](t)(s.Info(ctx))
	m := must[*jetstream.RawStreamMsg](t)(s.GetMsg(ctx, info.State.LastSeq))
	l := m.Header.Get(domain.HeaderLineage)
	if l == "" {
		t.Fatalf("the changelog's last message (%d) carries no %s", info.State.LastSeq, domain.HeaderLineage)
	}
	return l
}

// A phone keeps acknowledged mutations for 30 days only. When the server is
// restored from a backup older than what the phone still keeps, the phone
// cannot send everything again: its notice says how many acknowledged
// changes it no longer had, instead of "nothing was lost".
func TestServerRestoreNoticeCountsWhatThePhoneNoLongerKept(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	var skew atomic.Int64 // how far the phone's clock is moved on
	d := e.Device(testenv.Member, func(o *syncer.Options) {
		o.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	visits(t, d, "H001", "before the backup", 2)
	testenv.Sync(t, d)
	e.Stop()
	db := filepath.Join(e.Dir, "fieldsync.db")
	backup := filepath.Join(t.TempDir(), "backup.db")
	copyDB(t, db, backup)
	e = restart(t, e)
	visits(t, d, "H002", "after the backup", 3)
	testenv.Sync(t, d)
	// 31 days on, a sync trims what was acknowledged more than 30 days ago.
	skew.Store(int64(31 * 24 * time.Hour))
	testenv.Sync(t, d)
	if st := must[*syncer.Status](t)(d.Status()); st.Acked != 0 {
		t.Fatalf("after 31 days the phone still keeps %d acknowledged mutations", st.Acked)
	}

	e.Stop()
	copyDB(t, backup, db)
	e = restart(t, e)
	testenv.Sync(t, d)
	st := must[*syncer.Status](t)(d.Status())
	if strings.Contains(st.Notice, "nothing was lost") || !strings.Contains(st.Notice, "3 more it had acknowledged were no longer kept on this phone") {
		t.Fatalf("notice %q: want it to say that 3 acknowledged changes were no longer kept, not that nothing was lost", st.Notice)
	}
}
