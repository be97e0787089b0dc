package e2e

import (
	"bytes"
	"context"
	"database/sql"
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

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// regionSampleOrg is testenv.SampleOrg with every administrator-given id (units,
// people, households) under region r's prefix, as a region's syncd
// requires (domain.RegionOwns).
func regionSampleOrg(r string) *pb.ImportOrgRequest {
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
