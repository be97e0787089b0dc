package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// regionOrg is testenv.SampleOrg with every administrator-given id (units,
// people, households) under region r's prefix, as a region's syncd
// requires (domain.RegionOwns).
func regionOrg(r string) *pb.ImportOrgRequest {
	p := domain.RegionIDPrefix(r)
	org := testenv.SampleOrg()
	for _, u := range org.GetUnits() {
		u.Id = p + u.GetId()
		if u.GetParentId() != "" {
			u.ParentId = p + u.GetParentId()
		}
	}
	for _, u := range org.GetUsers() {
		u.Id = p + u.GetId()
		if u.GetUnitId() != "" {
			u.UnitId = p + u.GetUnitId()
		}
	}
	for _, h := range org.GetHouseholds() {
		h.Id, h.GridId = p+h.GetId(), p+h.GetGridId()
	}
	for _, a := range org.GetAssignments() {
		a.HouseholdId, a.MemberId = p+a.GetHouseholdId(), p+a.GetMemberId()
	}
	return org
}

// copySecrets copies what a standby needs of a region's data directory, as
// an operator does once when setting the standby up: the TLS files (the CA
// the phones pinned, its key, the server certificate, the session-ticket
// ring), the admin credential and the audit log's key. The database comes
// from the backup, never from here.
func copySecrets(t *testing.T, from, to string) {
	t.Helper()
	ok(t, os.Chmod(to, 0o700))
	ok(t, os.MkdirAll(filepath.Join(to, "tls"), 0o700))
	entries := must[[]os.DirEntry](t)(os.ReadDir(filepath.Join(from, "tls")))
	if len(entries) == 0 {
		t.Fatalf("%s/tls is empty: nothing to copy", from)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			copyFile(t, filepath.Join(from, "tls", e.Name()), filepath.Join(to, "tls", e.Name()))
		}
	}
	for _, f := range []string{"admin.token", "audit.key"} {
		copyFile(t, filepath.Join(from, f), filepath.Join(to, f))
	}
}

// copyFile copies one file, keeping its mode.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in := must[*os.File](t)(os.Open(from))
	defer in.Close()
	fi := must[os.FileInfo](t)(in.Stat())
	out := must[*os.File](t)(os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm()))
	_, err := io.Copy(out, in)
	ok(t, err)
	ok(t, out.Close())
}

// regionStreamMatchesDB says how region r's changelog stream differs from
// the database's changes table, or nil when message n is change n for every
// change: subject domain.RegionSubject(r, stored subject), body byte for
// byte, Nats-Msg-Id the change id, Fieldsync-Seq n, Fieldsync-Lineage the
// database's lineage, Fieldsync-Region r (absent for no region), and
// nothing else in the stream. counts gets how often each change id occurs.
func regionStreamMatchesDB(ctx context.Context, js jetstream.JetStream, r string, db *store.Server, counts map[string]int) error {
	st, err := js.Stream(ctx, domain.RegionStream(r))
	if err != nil {
		return fmt.Errorf("stream %s: %w", domain.RegionStream(r), err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	last, err := db.LastSeq(ctx)
	if err != nil {
		return err
	}
	s := info.State
	if s.Msgs != last || s.LastSeq != last || s.NumDeleted != 0 || (last > 0 && s.FirstSeq != 1) {
		return fmt.Errorf("stream %s holds %d messages in %d..%d (%d deleted); the database has changes 1..%d", domain.RegionStream(r), s.Msgs, s.FirstSeq, s.LastSeq, s.NumDeleted, last)
	}
	if last == 0 {
		return nil
	}
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy,
		MemoryStorage: true, InactiveThreshold: time.Minute})
	if err != nil {
		return err
	}
	defer st.DeleteConsumer(context.WithoutCancel(ctx), cons.CachedInfo().Name)
	lineage := db.Instance()
	var seq uint64
	for seq < last {
		batch, err := cons.Fetch(int(min(1000, last-seq)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		rows, err := db.ChangesAfter(ctx, seq, 1000)
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			seq++
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			if n >= len(rows) {
				return fmt.Errorf("message %d: the database has no change %d", meta.Sequence.Stream, seq)
			}
			row := rows[n]
			n++
			c := &pb.Change{}
			if err := proto.Unmarshal(row.Body, c); err != nil {
				return fmt.Errorf("change %d: %w", row.Seq, err)
			}
			h := m.Headers()
			counts[h.Get(jetstream.MsgIDHeader)]++
			switch {
			case meta.Sequence.Stream != seq || row.Seq != seq:
				return fmt.Errorf("message %d read where %d expected, change %d", meta.Sequence.Stream, seq, row.Seq)
			case m.Subject() != domain.RegionSubject(r, row.Subject):
				return fmt.Errorf("message %d on subject %q, change %d was stored with %q (want %q)", seq, m.Subject(), row.Seq, row.Subject, domain.RegionSubject(r, row.Subject))
			case !bytes.Equal(m.Data(), row.Body):
				return fmt.Errorf("message %d differs from change %d in its body", seq, row.Seq)
			case h.Get(jetstream.MsgIDHeader) != c.GetChangeId():
				return fmt.Errorf("message %d has id %q, change %d is %q", seq, h.Get(jetstream.MsgIDHeader), row.Seq, c.GetChangeId())
			case h.Get(domain.HeaderSeq) != strconv.FormatUint(seq, 10):
				return fmt.Errorf("message %d has %s %q", seq, domain.HeaderSeq, h.Get(domain.HeaderSeq))
			case h.Get(domain.HeaderLineage) != lineage:
				return fmt.Errorf("message %d has %s %q, the database is in %q", seq, domain.HeaderLineage, h.Get(domain.HeaderLineage), lineage)
			case h.Get(domain.HeaderRegion) != r:
				return fmt.Errorf("message %d has %s %q, want %q", seq, domain.HeaderRegion, h.Get(domain.HeaderRegion), r)
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("stream says %d messages, read %d", last, seq)
		}
	}
	return nil
}

// streamState is a stream's last sequence and the lineage its last
// message carries ("" when empty or missing).
func streamState(ctx context.Context, js jetstream.JetStream, name string) (last uint64, lineage string, err error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, "", err
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.LastSeq == 0 {
		return 0, "", err
	}
	m, err := s.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		return 0, "", err
	}
	return info.State.LastSeq, m.Header.Get(domain.HeaderLineage), nil
}

// sqlRows is *sql.Rows, for must.
type sqlRows = sql.Rows

// must2 fails the test on err, else returns the two values.
func must2[A, B any](t testing.TB) func(a A, b B, err error) (A, B) {
	return func(a A, b B, err error) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

// splitAddr splits host:port.
func splitAddr(t testing.TB, addr string) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	ok(t, err)
	return host, must[int](t)(strconv.Atoi(port))
}

// syncBuffer is a bytes.Buffer safe for a logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFetchesEnded waits (up to 10 s) until no JetStream pull fetch is
// still waiting out its expiry: a follower stopped mid-fetch leaves one for
// a few seconds (nats.go ends it only at MaxWait + 1 s), which the
// package's leak check would report.
func waitFetchesEnded(t testing.TB) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("jetstream.(*pullConsumer).fetch.func1")) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("a JetStream fetch still waits 10 s after its consumer stopped:\n%s", buf[:n])
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// followedModel is an HQ read model following a stream until the test
// ends.
type followedModel struct {
	*hq.Model
	stream string
	log    *syncBuffer
}

// followModel opens a model in a temporary file and follows stream with
// the durable consumer durable; the test's end stops it and waits until
// its last fetch has ended.
func followModel(t *testing.T, js jetstream.JetStream, stream, durable string) *followedModel {
	t.Helper()
	m := &followedModel{Model: must[*hq.Model](t)(hq.Open(filepath.Join(t.TempDir(), "model.db"))), stream: stream, log: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Follow(ctx, js, hq.FollowConfig{Durable: durable, Stream: stream,
			Log: slog.New(slog.NewTextHandler(m.log, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hq Follow %s: %v", stream, err)
		}
		m.Close()
		waitFetchesEnded(t)
	})
	return m
}
