package hq

import (
	"bytes"
	"context"
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
	"github.com/fieldsync/fieldsync/server"
)

// startJS starts a real embedded nats-server with JetStream (as syncd
// does, without authentication) and makes the changelog stream.
func startJS(t testing.TB) jetstream.JetStream {
	t.Helper()
	js := startBareJS(t)
	if _, err := server.EnsureStream(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	return js
}

// startBareJS is startJS without the changelog stream (regions make
// their own, whose subjects overlap it).
func startBareJS(t testing.TB) jetstream.JetStream {
	t.Helper()
	ns, err := server.EmbeddedNATS(t.TempDir(), "127.0.0.1", -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// quick shortens Follow's waits for the test.
func quick(t testing.TB) {
	batch, wait, ackWait, recheck, retry := followBatch, followWait, followAckWait, followRecheck, followMaxRetry
	followBatch, followWait, followAckWait, followRecheck, followMaxRetry = 40, 200*time.Millisecond, time.Second, 300*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() {
		followBatch, followWait, followAckWait, followRecheck, followMaxRetry = batch, wait, ackWait, recheck, retry
		dropAck.Store(nil)
	})
}

func subjectOf(c *pb.Change) string {
	region := c.GetRegion()
	if region == "" {
		region = "none"
	}
	switch {
	case c.GetRecord() != nil:
		return domain.ChangeSubject(region, c.GetRecord().GetKind())
	case c.GetUnit() != nil:
		return domain.SubjectPrefix + "." + region + ".unit"
	case c.GetPerson() != nil:
		return domain.SubjectPrefix + "." + region + ".person"
	case c.GetLink() != nil:
		return domain.SubjectPrefix + "." + region + ".link"
	case c.GetDevice() != nil:
		return domain.SubjectPrefix + "." + region + ".device"
	}
	return domain.SubjectPrefix + "." + region + ".refused"
}

// publish puts changes on the stream as the relay does (headers
// Nats-Msg-Id, Fieldsync-Seq, Fieldsync-Lineage); every dupEvery-th change
// (0: none) is followed by a second copy of an earlier one, a message of
// its own (as a faulty relay or a hand-made republish would leave).
func publish(t testing.TB, js jetstream.JetStream, lineage string, changes []*pb.Change, dupEvery int) {
	t.Helper()
	ctx := context.Background()
	for i, c := range changes {
		body, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg(subjectOf(c))
		msg.Data = body
		msg.Header.Set(jetstream.MsgIDHeader, lineage+"-"+strconv.FormatUint(c.GetSeq(), 10))
		msg.Header.Set(domain.HeaderSeq, strconv.FormatUint(c.GetSeq(), 10))
		msg.Header.Set(domain.HeaderLineage, lineage)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if dupEvery > 0 && i > 0 && i%dupEvery == 0 {
			old := changes[i/2]
			body, _ := proto.Marshal(old)
			dup := nats.NewMsg(subjectOf(old))
			dup.Data = body
			dup.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d-copy-%d", lineage, old.GetSeq(), i))
			dup.Header.Set(domain.HeaderSeq, strconv.FormatUint(old.GetSeq(), 10))
			dup.Header.Set(domain.HeaderLineage, lineage)
			if _, err := js.PublishMsg(ctx, dup); err != nil {
				t.Fatal(err)
			}
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type follower struct {
	cancel context.CancelFunc
	done   chan error
	log    *syncBuf
}

// follow runs m.Follow until stop.
func follow(t testing.TB, m *Model, js jetstream.JetStream, applied func(uint64)) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{cancel: cancel, done: make(chan error, 1), log: &syncBuf{}}
	log := slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { f.done <- m.Follow(ctx, js, FollowConfig{Durable: "hq-test", Log: log, Applied: applied}) }()
	t.Cleanup(func() { f.stop(t) })
	return f
}

func (f *follower) stop(t testing.TB) {
	if f.cancel == nil {
		return
	}
	f.cancel()
	f.cancel = nil
	select {
	case err := <-f.done:
		if err != nil {
			t.Errorf("Follow returned %v, want nil when its context ends", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not return within 10s of its context ending")
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 30*time.Second, what, cond)
}

func waitWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lostAcks loses the first acknowledgement of every 7th message, and
// counts how often each message reached the point of being acknowledged.
type lostAcks struct {
	mu   sync.Mutex
	seen map[uint64]int
}

func (l *lostAcks) hook(stream uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[stream]++
	return stream%7 == 0 && l.seen[stream] == 1
}

// redelivered says whether every message whose ack was lost came again.
func (l *lostAcks) redelivered() (lost, again int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for s, n := range l.seen {
		if s%7 == 0 {
			lost++
			if n >= 2 {
				again++
			}
		}
	}
	return lost, again
}

func meta(t testing.TB, m *Model, key string) string {
	t.Helper()
	var v string
	if err := m.DB().QueryRow("SELECT value FROM meta WHERE key = ?", key).Scan(&v); err != nil {
		return ""
	}
	return v
}

// A recorded stream with duplicate messages and lost acknowledgements
// (real redeliveries by JetStream), followed across a restart with
// downtime, then replayed from the start (the durable deleted), then
// re-based twice (a purge and a new lineage on the same stream; a new
// stream with fewer messages), gives the tables of the final states each
// time.
func TestFollowRedeliveriesRestartReplayAndRebase(t *testing.T) {
	quick(t)
	js := startJS(t)
	ctx := context.Background()
	w := sampleWorld(11, 24)
	half := len(w.changes) / 2
	publish(t, js, "L1", w.changes[:half], 10)

	path := t.TempDir() + "/model.db"
	m, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	acks := &lostAcks{seen: map[uint64]int{}}
	hook := acks.hook
	dropAck.Store(&hook)
	var commits sync.Map
	f := follow(t, m, js, func(seq uint64) { commits.Store(seq, true) })
	waitFor(t, "the first half applied", func() bool { return m.LastSeq() == w.changes[half-1].Seq })
	waitFor(t, "every message whose ack was lost redelivered", func() bool { lost, again := acks.redelivered(); return lost > 0 && lost == again })
	if _, ok := commits.Load(w.changes[half-1].Seq); !ok {
		t.Error("Applied was not called with the last change applied")
	}
	f.stop(t)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// Downtime: the rest of the city's changes come while the model is
	// down; it catches up from its durable consumer.
	publish(t, js, "L1", w.changes[half:], 10)
	acks.mu.Lock()
	acks.seen = map[uint64]int{}
	acks.mu.Unlock()
	m = openModel(t, path)
	if m.LastSeq() != w.changes[half-1].Seq {
		t.Fatalf("reopened at %d, want %d", m.LastSeq(), w.changes[half-1].Seq)
	}
	f = follow(t, m, js, nil)
	waitFor(t, "caught up after the restart", func() bool { return m.LastSeq() == w.seq })
	waitFor(t, "every message whose ack was lost redelivered", func() bool { lost, again := acks.redelivered(); return lost == again })
	checkWorld(t, m, w)
	if lost, _ := acks.redelivered(); lost == 0 {
		t.Error("no ack was lost after the restart: the test does not test redeliveries there")
	}
	if strings.Contains(f.log.String(), "reloading") {
		t.Errorf("a restart reloaded the model:\n%s", f.log.String())
	}
	dropAck.Store(nil)

	// A replay from the start: the durable consumer deleted.
	st, err := js.Stream(ctx, domain.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteConsumer(ctx, "hq-test"); err != nil {
		t.Fatal(err)
	}
	if meta(t, m, "rebuilt_ms") != "" {
		t.Fatal("meta rebuilt_ms set before any reload")
	}
	// The log line comes before the Reset, while the model still holds
	// the last change: wait for the reload's Reset (rebuilt_ms) and then
	// for the model to be back at the stream's end.
	waitFor(t, "reloaded after the durable was deleted", func() bool {
		return strings.Contains(f.log.String(), "durable consumer is gone") && meta(t, m, "rebuilt_ms") != "" && m.LastSeq() == w.seq
	})
	checkWorld(t, m, w)

	// Re-based on the same stream: purged, then a smaller city under a new
	// lineage (the durable survives a purge; the lineage header tells).
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	w2 := sampleWorld(12, 8)
	publish(t, js, "L2", w2.changes, 0)
	waitFor(t, "reloaded under lineage L2", func() bool { return m.Lineage() == "L2" && m.LastSeq() == w2.seq })
	checkWorld(t, m, w2)
	logs := f.log.String()
	if !strings.Contains(logs, `carries lineage \"L2\"`) {
		t.Errorf("the reload does not say the lineage changed:\n%s", logs)
	}
	if strings.Contains(logs, "DOES NOT START AT CHANGE 1") {
		t.Errorf("a stream starting at change 1 (at message 329) said to miss history:\n%s", logs)
	}

	// Re-based as syncd's relay does it: the stream deleted and made again
	// with fewer messages, under a third lineage.
	if err := js.DeleteStream(ctx, domain.StreamName); err != nil {
		t.Fatal(err)
	}
	if _, err := server.EnsureStream(ctx, js); err != nil {
		t.Fatal(err)
	}
	w3 := sampleWorld(13, 5)
	publish(t, js, "L3", w3.changes, 0)
	waitFor(t, "reloaded under lineage L3", func() bool { return m.Lineage() == "L3" && m.LastSeq() == w3.seq })
	checkWorld(t, m, w3)
	if strings.Contains(f.log.String(), "level=ERROR") {
		t.Errorf("errors logged following a whole stream:\n%s", f.log.String())
	}
	if n := strings.Count(f.log.String(), "level=WARN msg=\"hq model: reloading"); n < 3 {
		t.Errorf("%d reloads logged at warn, want 3:\n%s", n, f.log.String())
	}
}

// Reset under a running Follow rebuilds the same tables; a model file
// replaced by an empty one (the durable ahead of it) loads from the start.
func TestFollowRebuildsAfterResetAndAfterTheFileIsReplaced(t *testing.T) {
	quick(t)
	js := startJS(t)
	ctx := context.Background()
	w := sampleWorld(21, 20)
	publish(t, js, "L", w.changes, 0)
	m := openModel(t, "")
	f := follow(t, m, js, nil)
	waitFor(t, "loaded", func() bool { return m.LastSeq() == w.seq })
	before := map[string][]string{}
	for _, table := range dataTables {
		before[table] = dump(t, m, table)
	}
	if err := m.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rebuilt after Reset", func() bool { return m.LastSeq() == w.seq })
	for _, table := range dataTables {
		if got := dump(t, m, table); strings.Join(got, "\n") != strings.Join(before[table], "\n") {
			t.Errorf("%s after Reset: %s", table, firstDiff(got, before[table]))
		}
	}
	checkWorld(t, m, w)
	f.stop(t)

	// Another, empty model on the same durable (the file deleted): the
	// consumer has acknowledged everything, the model holds nothing.
	m2 := openModel(t, "")
	f2 := follow(t, m2, js, nil)
	waitFor(t, "a new model file loaded through the old durable", func() bool { return m2.LastSeq() == w.seq })
	sameTables(t, m2, m)
	if !strings.Contains(f2.log.String(), "making the durable consumer again") {
		t.Errorf("not logged:\n%s", f2.log.String())
	}
}

// Changes published while the model follows are applied at once, not when
// a fetch fills or times out (the freshness benchmark measures how fast).
func TestFollowAppliesALiveChangeBeforeItsFetchEnds(t *testing.T) {
	quick(t)
	followWait = 10 * time.Second // a fetch waits 10s for a full batch
	js := startJS(t)
	w := sampleWorld(31, 4)
	publish(t, js, "L", w.changes[:len(w.changes)-1], 0)
	m := openModel(t, "")
	f := follow(t, m, js, nil)
	waitFor(t, "loaded", func() bool { return m.LastSeq() == w.seq-1 })
	time.Sleep(300 * time.Millisecond) // idle, inside a fetch
	start := time.Now()
	publish(t, js, "L", w.changes[len(w.changes)-1:], 0)
	waitFor(t, "the live change", func() bool { return m.LastSeq() == w.seq })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a live change took %v to be applied: it waited for the fetch to end", d)
	} else {
		t.Logf("a live change applied %v after it was published", d)
	}
	f.stop(t)
	checkWorld(t, m, w)
}

func TestFollowRefusesABadDurableName(t *testing.T) {
	m := openModel(t, "")
	js := startJS(t)
	err := m.Follow(context.Background(), js, FollowConfig{Durable: "hq.model"})
	if err == nil || !strings.Contains(err.Error(), "FollowConfig.Durable") {
		t.Fatalf("durable with a dot: %v", err)
	}
}

// A stream whose oldest changes are gone loads what it has, and says
// loudly that the rest is missing.
func TestFollowSaysLoudlyWhenTheStreamStartsAfterChange1(t *testing.T) {
	quick(t)
	js := startJS(t)
	w := sampleWorld(41, 10)
	const from = 30
	publish(t, js, "L", w.changes[from:], 0)
	m := openModel(t, "")
	f := follow(t, m, js, nil)
	waitFor(t, "loaded", func() bool { return m.LastSeq() == w.seq })
	f.stop(t)
	logs := f.log.String()
	if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "DOES NOT START AT CHANGE 1") ||
		!strings.Contains(logs, "loaded from change 31") || !strings.Contains(logs, "`fieldctl hq export` is not built yet") {
		t.Errorf("not said loudly:\n%s", logs)
	}
	seen := map[string]bool{}
	for _, c := range w.changes[from:] {
		if c.GetRecord().GetKind() == pb.Kind_KIND_HOUSEHOLD {
			seen[c.GetRecord().GetId()] = true
		}
	}
	if n := len(dump(t, m, "households")); n != len(seen) {
		t.Errorf("%d households, want the %d the stream still has", n, len(seen))
	}
}

// Closing the model under a running Follow ends it with an error saying
// so, instead of following into a closed database.
func TestFollowEndsWhenTheModelIsClosed(t *testing.T) {
	quick(t)
	js := startJS(t)
	m, err := Open(t.TempDir() + "/model.db")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Follow(context.Background(), js, FollowConfig{}) }()
	time.Sleep(300 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "closed") {
			t.Fatalf("Follow after Close: %v, want an error saying the model is closed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow still running 10s after the model was closed")
	}
}

// Changes missing in the middle of the stream (dropped by its limits while
// the model was behind) are said at error, with their numbers.
func TestFollowSaysWhichChangesAreMissing(t *testing.T) {
	quick(t)
	js := startJS(t)
	w := sampleWorld(51, 6)
	publish(t, js, "L", w.changes[:20], 0)
	publish(t, js, "L", w.changes[25:], 0)
	m := openModel(t, "")
	f := follow(t, m, js, nil)
	waitFor(t, "loaded", func() bool { return m.LastSeq() == w.seq })
	f.stop(t)
	logs := f.log.String()
	if !strings.Contains(logs, "level=ERROR msg=\"hq model: changes are missing") || !strings.Contains(logs, "missing_from=21 missing_to=25") {
		t.Errorf("the gap is not said:\n%s", logs)
	}
	if strings.Contains(logs, "DOES NOT START") {
		t.Errorf("a stream from change 1 said to start later:\n%s", logs)
	}
}

// A follower that stopped after its commits but before its acks (every
// ack lost) leaves deliveries the consumer would redeliver after newer
// messages: the next Follow makes the consumer again from the message
// after the last one applied, and catches up in order.
func TestFollowAfterCommitsWithoutAcks(t *testing.T) {
	quick(t)
	followAckWait = time.Minute // no redelivery within the test: only the restart mends it
	js := startJS(t)
	w := sampleWorld(61, 12)
	half := len(w.changes) / 2
	publish(t, js, "L", w.changes[:half], 0)
	path := t.TempDir() + "/model.db"
	m := openModel(t, path)
	lose := func(uint64) bool { return true }
	dropAck.Store(&lose)
	f := follow(t, m, js, nil)
	waitFor(t, "the first half applied", func() bool { return m.LastSeq() == w.changes[half-1].Seq })
	f.stop(t)
	dropAck.Store(nil)
	publish(t, js, "L", w.changes[half:], 0)
	f = follow(t, m, js, nil)
	waitFor(t, "caught up", func() bool { return m.LastSeq() == w.seq })
	f.stop(t)
	if logs := f.log.String(); !strings.Contains(logs, "holds unacknowledged deliveries") || strings.Contains(logs, "reloading") {
		t.Errorf("the consumer was not made again from the model's place (or the model reloaded):\n%s", logs)
	}
	checkWorld(t, m, w)
}
