package server_test

import (
	"bytes"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
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
