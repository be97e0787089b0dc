package server_test

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// A file of the largest size goes up and comes back through a real syncd
// without the process's heap growing by anything near the file's size
// above what it held before (the client's own copy of the file included):
// the server keeps a chunk at a time, in and out. The live heap is
// sampled every 2 ms (a GC, then its size), so that garbage not yet
// collected does not count (the forced GCs slow both down: the throughput
// logged is not the service's). Measured: 5-6 MiB above the start at the
// peak, the fetch no higher than the upload (before fetchPiece the fetch
// reached 10-11.5 MiB: grpc's 1 MiB buffers).
func TestLargestFileStreamedNotHeld(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads and fetches 10 MiB: skipped with -short")
	}
	e := filesEnv(t)
	med := newRawPhone(t, e, testenv.Mediator)
	d := newDispute(med)
	data := fileOf(t, "image/jpeg", domain.MaxAttachmentBytes)
	med.attach(d, pb.Kind_KIND_DISPUTE, data, "image/jpeg")

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			runtime.GC() // what is live now, not garbage not yet collected
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
		}
	}()
	start := time.Now()
	u, resp, err := med.startUpload(d, data, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	if last := u.rest(resp.GetStored()); !last.GetComplete() {
		t.Fatalf("upload: %v", last)
	}
	up := time.Since(start)
	upPeak := peak.Load()
	// Fetch without keeping the bytes: compare each chunk as it comes.
	// The client's windows are fixed, as a phone's (syncer) are: grpc's
	// default grows them up to 16 MiB by probing the link, and the client
	// then buffers what the server sent ahead of its reads.
	conn, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(credentials.NewTLS(syncer.PinnedTLS(e.Addr, e.CAFingerprint))),
		grpc.WithInitialWindowSize(256<<10), grpc.WithInitialConnWindowSize(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start = time.Now()
	stream, err := pb.NewAttachmentServiceClient(conn).Fetch(med.ctx, &pb.FetchRequest{RecordId: d, Sha256: shaOf(data)})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for {
		m, err := stream.Recv()
		if err != nil {
			break
		}
		c := m.GetChunk()
		if !bytes.Equal(c.GetData(), data[c.GetOffset():c.GetOffset()+int64(len(c.GetData()))]) {
			t.Fatalf("fetched chunk at %d differs", c.GetOffset())
		}
		n += len(c.GetData())
		time.Sleep(200 * time.Microsecond) // a phone reads slower than loopback sends
	}
	fetch := time.Since(start)
	close(stop)
	<-sampled
	if n != len(data) {
		t.Fatalf("fetched %d bytes, want %d", n, len(data))
	}
	mb := float64(len(data)) / 1e6
	t.Logf("10 MiB: upload %v (%.1f MB/s, a chunk after each answer), fetch %v (%.1f MB/s); live heap above the start: %.1f MiB peak during the upload, %.1f MiB during the fetch",
		up.Round(time.Millisecond), mb/up.Seconds(), fetch.Round(time.Millisecond), mb/fetch.Seconds(),
		float64(upPeak-min(base, upPeak))/(1<<20), float64(peak.Load()-min(base, peak.Load()))/(1<<20))
	// A server that held the file whole would add its size to the live
	// heap, on top of the few MiB of buffers measured here (grpc's pooled
	// buffers, the chunk being read, what the GC finds live because it
	// was allocated during its own cycle).
	if grew := peak.Load() - min(base, peak.Load()); grew >= domain.MaxAttachmentBytes {
		t.Errorf("the live heap grew by %d bytes while a %d-byte file went up and down: as if the file were held whole", grew, len(data))
	}
}

// BenchmarkConcurrentUploads: devices (one user's phones, each its own
// dispute) upload a 1 MB photo each at once through a real syncd over
// TLS, keeping MaxChunksInFlight chunks unanswered, as a phone does;
// reports MB/s, the chunks per commit of the file store's writer (group
// commit: one fsync for many devices' chunks) and the time per upload.
//
//	go test ./server -run '^$' -bench BenchmarkConcurrentUploads -benchtime 1x
func BenchmarkConcurrentUploads(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprint(n, "devices"), func(b *testing.B) {
			e := testenv.Start(b)
			e.ImportSample()
			// The phones' own connection, with syncd's codec (as
			// syncbench's), so that the profile shows the server's work.
			conn, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(credentials.NewTLS(syncer.PinnedTLS(e.Addr, e.CAFingerprint))),
				grpc.WithDefaultCallOptions(grpc.ForceCodecV2(server.Codec())))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			phones := make([]benchPhone, n)
			for i := range phones {
				phones[i] = newBenchPhone(b, e, conn)
			}
			b.ResetTimer()
			for range b.N {
				c0, j0 := e.Daemon.Files.CommitStats()
				start := time.Now()
				var wg sync.WaitGroup
				var slowest atomic.Int64
				errs := make(chan error, n)
				for i := range phones {
					wg.Add(1)
					go func() {
						defer wg.Done()
						t0 := time.Now()
						if err := phones[i].uploadNew(1 << 20); err != nil {
							errs <- err
						}
						if d := int64(time.Since(t0)); d > slowest.Load() {
							slowest.Store(d)
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				el := time.Since(start)
				c1, j1 := e.Daemon.Files.CommitStats()
				b.ReportMetric(float64(n)*(1<<20)/1e6/el.Seconds(), "MB/s")
				b.ReportMetric(float64(j1-j0)/float64(max(c1-c0, 1)), "writes/commit")
				b.ReportMetric(float64(slowest.Load())/1e6, "slowest-ms")
			}
		})
	}
}

// benchPhone is an enrolled phone of Mediator with a dispute of its own.
type benchPhone struct {
	ctx    context.Context
	sync   pb.SyncServiceClient
	files  pb.AttachmentServiceClient
	record string
	seq    uint64
	clock  *domain.Clock
}

func newBenchPhone(b *testing.B, e *testenv.Env, conn *grpc.ClientConn) benchPhone {
	resp, err := pb.NewEnrollServiceClient(e.Conn()).Enroll(context.Background(), &pb.EnrollRequest{Code: e.Secret(testenv.Mediator), DeviceName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	p := benchPhone{ctx: metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+resp.GetToken()),
		sync: pb.NewSyncServiceClient(conn), files: pb.NewAttachmentServiceClient(conn), record: newID(),
		clock: domain.NewClock(testenv.Mediator, domain.HLC{}, 0, time.Now)}
	if err := p.push(create(p.record, pb.Kind_KIND_DISPUTE, map[string]string{"village_id": testenv.Village, "category": "quarrel",
		"title": "照片", "mediators": testenv.Mediator})); err != nil {
		b.Fatal(err)
	}
	return p
}

func (p *benchPhone) push(m *pb.Mutation) error {
	p.seq++
	m.Seq, m.Hlc = p.seq, p.clock.Tick().String()
	resp, err := p.sync.Sync(p.ctx, &pb.SyncRequest{Mutations: []*pb.Mutation{m}, PageSize: 1})
	if err != nil {
		return err
	}
	if r := resp.GetResults(); len(r) != 1 || r[0].GetStatus() != pb.MutationStatus_MUTATION_STATUS_APPLIED {
		return fmt.Errorf("push: %v", r)
	}
	return nil
}

// uploadNew attaches a new JPEG of n bytes to the phone's dispute and
// uploads it, MaxChunksInFlight chunks ahead of the answers.
func (p *benchPhone) uploadNew(n int) error {
	data := make([]byte, n)
	crand.Read(data)
	copy(data, "\xFF\xD8\xFF\xE0\x00\x10JFIF\x00")
	s := sha256.Sum256(data)
	sha := hex.EncodeToString(s[:])
	if err := p.push(&pb.Mutation{RecordId: p.record, Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_ATTACH,
		Attachment: &pb.Attachment{Sha256: sha, Size: int64(n), MediaType: "image/jpeg"}}); err != nil {
		return err
	}
	stream, err := p.files.Upload(p.ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Start{Start: &pb.UploadStart{RecordId: p.record, Sha256: sha, Size: int64(n), MediaType: "image/jpeg"}}}); err != nil {
		return err
	}
	resp, err := stream.Recv()
	if err != nil {
		return err
	}
	next, inFlight := resp.GetStored(), 0
	for {
		for inFlight < server.MaxChunksInFlight && next < int64(n) {
			piece := data[next:min(next+domain.ChunkBytes, int64(n))]
			sum := sha256.Sum256(piece)
			if err := stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Chunk{Chunk: &pb.Chunk{Offset: next, Data: piece, Sha256: sum[:]}}}); err != nil {
				return err
			}
			next += int64(len(piece))
			inFlight++
		}
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		inFlight--
		if resp.GetComplete() {
			return stream.CloseSend()
		}
	}
}
