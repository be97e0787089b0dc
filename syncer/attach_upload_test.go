package syncer_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// chunkLog sees, on the server, every upload chunk that reached it whole
// (a stream interceptor below the service), by file and offset.
type chunkLog struct {
	mu   sync.Mutex
	seen map[string]map[int64]int // sha -> offset -> times received
	sha  map[grpc.ServerStream]string
}

func newChunkLog() *chunkLog {
	return &chunkLog{seen: map[string]map[int64]int{}, sha: map[grpc.ServerStream]string{}}
}

type loggedStream struct {
	grpc.ServerStream
	log *chunkLog
	sha string
}

func (s *loggedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if r, ok := m.(*pb.UploadRequest); ok && err == nil {
		s.log.mu.Lock()
		defer s.log.mu.Unlock()
		if st := r.GetStart(); st != nil {
			s.sha = st.GetSha256()
		}
		if c := r.GetChunk(); c != nil {
			if s.log.seen[s.sha] == nil {
				s.log.seen[s.sha] = map[int64]int{}
			}
			s.log.seen[s.sha][c.GetOffset()]++
		}
	}
	return err
}

func (l *chunkLog) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, &loggedStream{ServerStream: ss, log: l})
}

// received is how many chunks of sha reached the server, and how many
// of them at an offset already received.
func (l *chunkLog) received(sha string) (n, again int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.seen[sha] {
		n += c
		again += c - 1
	}
	return n, again
}

func startWithLog(t *testing.T, opts ...testenv.Option) (*testenv.Env, *chunkLog) {
	log := newChunkLog()
	opts = append(opts, testenv.WithSyncdConfig(func(c *syncd.Config) {
		c.GRPCOptions = append(c.GRPCOptions, grpc.ChainStreamInterceptor(log.intercept))
	}))
	e := testenv.Start(t, opts...)
	e.ImportSample()
	return e, log
}

// A file attached offline is pending; the sync that sends its record
// leaves it pending until the server applied the attach, then uploads it
// (records first, files after): uploaded. The other mediator's phone gets
// the record with the file's reference ("remote") and fetches the bytes
// on demand ("local"), equal. The same file attached to another record is
// not sent again.
func TestAttachOfflineThenSyncUploads(t *testing.T) {
	e, log := startWithLog(t)
	medA, medB := e.Device(testenv.Mediator), e.Device(testenv.Mediator2)
	testenv.Sync(t, medA)
	id := newDispute(t, medA, "鄰里糾紛：排水溝")
	data := photo(t, 300_000)
	sha, err := medA.Attach(id, "image/jpeg", "簽字的調解協議書", data)
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, medA, id, sha, syncer.FilePending)
	rep := testenv.Sync(t, medA)
	if rep.Files == nil || rep.Files.Uploaded != 1 || rep.Files.Bytes != int64(len(data)) {
		t.Fatalf("sync's uploads: %+v, want 1 file of %d bytes", rep.Files, len(data))
	}
	wantState(t, medA, id, sha, syncer.FileUploaded)
	if n, again := log.received(sha); again != 0 || n != (len(data)+32<<10-1)/(32<<10) {
		t.Errorf("the server received %d chunks (%d at an offset again), want %d once each", n, again, (len(data)+32<<10-1)/(32<<10))
	}

	testenv.Sync(t, medB)
	a := wantState(t, medB, id, sha, syncer.FileRemote)
	if a.Held != 0 || a.Size != int64(len(data)) || a.Caption != "簽字的調解協議書" {
		t.Errorf("B's reference: %+v", a)
	}
	if _, err := medB.ReadAttachment(sha); !errors.Is(err, syncer.ErrNoFile) {
		t.Errorf("B reads a file it did not fetch: %v, want ErrNoFile", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := medB.FetchAttachment(ctx, id, sha); err != nil {
		t.Fatal(err)
	}
	wantState(t, medB, id, sha, syncer.FileLocal)
	if got, err := medB.ReadAttachment(sha); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("B's fetched file: %d bytes, %v; want A's %d", len(got), err, len(data))
	}

	// A phone whose scope lacks the case cannot fetch its file: it does
	// not hold the record (the server refuses such a fetch too: S1's
	// tests, with a raw client).
	outsider := e.Device(testenv.Outsider)
	testenv.Sync(t, outsider)
	if err := outsider.FetchAttachment(ctx, id, sha); !errors.Is(err, syncer.ErrNotFound) {
		t.Errorf("a fetch out of scope: %v, want ErrNotFound", err)
	}

	// The same photo attached by the other phone to its own case: the
	// server holds it, nothing is sent again.
	id2 := newDispute(t, medB, "另一宗")
	if _, err := medB.Attach(id2, "image/jpeg", "同一張照片", data); err != nil {
		t.Fatal(err)
	}
	rep = testenv.Sync(t, medB)
	if rep.Files.Uploaded != 1 || rep.Files.Already != 1 || rep.Files.Bytes != 0 {
		t.Errorf("a file the server holds: %+v, want uploaded at once with no bytes", rep.Files)
	}
	wantState(t, medB, id2, sha, syncer.FileUploaded)
	if n, _ := log.received(sha); n != (len(data)+32<<10-1)/(32<<10) {
		t.Errorf("the server received %d chunks of the file after the second attach", n)
	}
}

// dropLink is a net.Conn that closes after limit bytes written (or
// read), counting every byte written across all its connections.
type dropLink struct {
	net.Conn
	limit       int64
	dropOnRead  bool
	wrote, read int64
	closed      atomic.Bool
	total       *atomic.Int64
	cuts        *atomic.Int64
}

func (c *dropLink) Write(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if !c.dropOnRead && c.wrote+int64(len(b)) > c.limit {
		n := int(c.limit - c.wrote)
		n, _ = c.Conn.Write(b[:n])
		c.wrote += int64(n)
		c.total.Add(int64(n))
		c.cuts.Add(1)
		c.closed.Store(true)
		c.Conn.Close()
		return n, net.ErrClosed
	}
	n, err := c.Conn.Write(b)
	c.wrote += int64(n)
	c.total.Add(int64(n))
	return n, err
}

func (c *dropLink) Read(b []byte) (int, error) {
	if c.dropOnRead && c.read+int64(len(b)) > c.limit {
		if c.read >= c.limit {
			if !c.closed.Swap(true) {
				c.cuts.Add(1)
			}
			c.Conn.Close()
			return 0, net.ErrClosed
		}
		b = b[:c.limit-c.read]
	}
	n, err := c.Conn.Read(b)
	c.read += int64(n)
	return n, err
}

type link struct {
	total, cuts atomic.Int64
	limit       int64
	onRead      bool
}

func (l *link) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return c, err
	}
	return &dropLink{Conn: c, limit: l.limit, dropOnRead: l.onRead, total: &l.total, cuts: &l.cuts}, nil
}

// A link that drops the connection every 64 KB still delivers a 3 MB
// file: each chunk reaches the server once, and all the bytes written on
// the wire (TLS, HTTP/2, gRPC, the sync before and the cut chunks
// included) stay under the file's size plus 10%. The other phone fetches
// it over a link that drops every 64 KB it reads, and gets it whole.
func TestUploadOverLinkDroppingEvery64KB(t *testing.T) {
	var opts []testenv.Option
	if os.Getenv("D1_PLAIN") != "" {
		opts = append(opts, testenv.WithPlaintext())
	}
	e, log := startWithLog(t, opts...)
	up := &link{limit: 64 << 10}
	medA := e.Device(testenv.Mediator, func(o *syncer.Options) { o.DialOptions = append(o.DialOptions, grpc.WithContextDialer(up.dial)) })
	syncThrough(t, medA)
	id := newDispute(t, medA, "承包地糾紛")
	data := photo(t, 3<<20)
	sha, err := medA.Attach(id, "image/jpeg", "", data)
	if err != nil {
		t.Fatal(err)
	}
	up.total.Store(0)
	cutsBefore := up.cuts.Load()
	syncThrough(t, medA)
	for i := 0; i < 20 && stateOf(t, medA, id, sha) != syncer.FileUploaded; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		rep, err := medA.UploadPending(ctx)
		cancel()
		t.Logf("UploadPending: %+v, %v", rep, err)
	}
	wantState(t, medA, id, sha, syncer.FileUploaded)
	total, cuts := up.total.Load(), up.cuts.Load()-cutsBefore
	n, again := log.received(sha)
	t.Logf("3 MiB over a link cut every 64 KiB: %d cuts, %d bytes written (%.1f%% over the file), %d chunks received, %d again",
		cuts, total, 100*float64(total-int64(len(data)))/float64(len(data)), n, again)
	// Before the first cut the device sends 4 chunks ahead of the
	// answers; the server drops chunks it had not committed when the link
	// went (they reach it again). After a cut the device sends one at a
	// time: nothing more reaches the server twice.
	if again > 4 {
		t.Errorf("%d chunks reached the server at an offset it had received already; want at most the 4 in flight at the first cut", again)
	}
	if cuts < 40 {
		t.Errorf("only %d cuts: the link did not drop every 64 KiB", cuts)
	}
	if limit := int64(len(data)) * 11 / 10; total >= limit {
		t.Errorf("%d bytes written for a %d-byte file: want under %d (size + 10%%)", total, len(data), limit)
	}

	down := &link{limit: 64 << 10, onRead: true}
	medB := e.Device(testenv.Mediator2, func(o *syncer.Options) { o.DialOptions = append(o.DialOptions, grpc.WithContextDialer(down.dial)) })
	syncThrough(t, medB)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < 10; i++ {
		if err = medB.FetchAttachment(ctx, id, sha); err == nil {
			break
		}
		t.Logf("fetch: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got, err := medB.ReadAttachment(sha); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("B's file over the cut link: %d bytes, %v", len(got), err)
	}
	if c := down.cuts.Load(); c < 40 {
		t.Errorf("the fetch saw %d cuts, want one every 64 KiB", c)
	}
}

// syncThrough syncs until a sync gets through (the link may cut one).
func syncThrough(t *testing.T, d *syncer.Device) {
	t.Helper()
	var err error
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = d.Sync(ctx)
		cancel()
		if err == nil {
			return
		}
	}
	t.Fatalf("sync over the cut link: %v", err)
}

func stateOf(t *testing.T, d *syncer.Device, id, sha string) string {
	for _, a := range attachments(t, d, id) {
		if a.SHA256 == sha {
			return a.State
		}
	}
	return ""
}

// A file of the largest size allowed (10 MiB) goes up whole and comes
// back equal; the log says how fast on loopback with TLS.
func TestLargestFileUploadsAndFetches(t *testing.T) {
	e, log := startWithLog(t)
	medA, medB := e.Device(testenv.Mediator), e.Device(testenv.Mediator2)
	testenv.Sync(t, medA)
	id := newDispute(t, medA, "十兆")
	data := photo(t, 10<<20)
	sha, err := medA.Attach(id, "image/jpeg", "", data)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep := testenv.Sync(t, medA)
	up := time.Since(start)
	if rep.Files.Uploaded != 1 || rep.Files.Bytes != int64(len(data)) {
		t.Fatalf("%+v", rep.Files)
	}
	if _, again := log.received(sha); again != 0 {
		t.Errorf("%d chunks reached the server twice on a whole link", again)
	}
	testenv.Sync(t, medB)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start = time.Now()
	if err := medB.FetchAttachment(ctx, id, sha); err != nil {
		t.Fatal(err)
	}
	down := time.Since(start)
	var buf bytes.Buffer
	if err := medB.CopyAttachment(sha, &buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("fetched 10 MiB: %d bytes, %v", buf.Len(), err)
	}
	t.Logf("10 MiB: sync+upload %v (%.1f MB/s), fetch %v (%.1f MB/s)", up.Round(time.Millisecond), 10.48576/up.Seconds(), down.Round(time.Millisecond), 10.48576/down.Seconds())
}
