package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
)

// photos (issue 15): N devices at once, each attaching a distinct photo
// (a JPEG-looking file of -photo-bytes) to a visit it creates: one Sync
// pushes the visit and its OP_ATTACH, then the device uploads the file by
// AttachmentService.Upload in chunks of domain.ChunkBytes, from the
// server's stored offset. The figures: total time, MB/s of file bytes,
// per-upload latency, the server's CPU and peak RSS (bounded: the server
// must never hold the files, or one per stream, in memory).

// photoConfig is the photos scenario's flags.
type photoConfig struct {
	devices  int    // devices uploading, at most the lightweight ones
	conc     int    // uploads at once (0: all of them)
	size     int    // bytes of each photo
	inflight int    // chunks sent ahead of the server's answers (0: as many as HTTP/2 flow control lets through)
	gzip     bool   // compress the Upload stream as the Sync calls are
	fetch    int    // files fetched back at the end and compared
	cut      int    // chunks after which each upload is cut once (0: none)
	chunk    int    // bytes of a chunk's data
	heap     string // the server's heap profile, written when half the bytes are stored
}

// photoStored counts the file bytes the server said it stored, over all
// uploads (for -photo-heapprofile).
var photoStored atomic.Int64

func photoFlags(fs *flag.FlagSet, c *photoConfig) {
	fs.IntVar(&c.devices, "photo-devices", 1000, "photos: devices each uploading one photo (at most the lightweight devices)")
	fs.IntVar(&c.conc, "photo-concurrency", 0, "photos: devices syncing and uploading at once (0: all of -photo-devices)")
	fs.IntVar(&c.size, "photo-bytes", 1<<20, "photos: bytes of each photo (a JPEG header, then random bytes; at most domain.MaxAttachmentBytes)")
	fs.IntVar(&c.inflight, "photo-inflight", server.MaxChunksInFlight, "photos: chunks a device sends ahead of the server's answers (the protocol's: server.MaxChunksInFlight; 1: stop and wait; 0: no limit but HTTP/2 flow control, the server's 1 MiB stream window: a client breaking the protocol, the hardest for the server's memory)")
	fs.BoolVar(&c.gzip, "photo-gzip", false, "photos: gzip the Upload stream too (the Sync calls always are); off by default since a JPEG does not compress")
	fs.IntVar(&c.cut, "photo-cut", 0, "photos: cut each upload once after this many chunks sent (its stream cancelled, as a dropped link does), then resume it from the server's stored (0: no cut)")
	fs.IntVar(&c.chunk, "photo-chunk", domain.ChunkBytes, "photos: bytes of data in each chunk (1 to domain.ChunkBytes)")
	fs.StringVar(&c.heap, "photo-heapprofile", "", "photos: write the server's live heap to `file` when half the file bytes are stored (go tool pprof -sample_index=inuse_space; -server process only)")
	fs.IntVar(&c.fetch, "photo-fetch", 8, "photos: files fetched back by Fetch at the end (whole, and from the middle) and compared byte for byte")
}

func (c *photoConfig) check() error {
	switch {
	case c.devices < 1:
		return errors.New("-photo-devices: at least 1")
	case c.conc < 0:
		return errors.New("-photo-concurrency: 0 (all) or more")
	case c.size < 64 || c.size > domain.MaxAttachmentBytes:
		return fmt.Errorf("-photo-bytes %d: want 64 to %d (domain.MaxAttachmentBytes)", c.size, domain.MaxAttachmentBytes)
	case c.inflight < 0:
		return errors.New("-photo-inflight: 0 (flow control only) or more")
	case c.fetch < 0:
		return errors.New("-photo-fetch: 0 or more")
	case c.chunk < 1 || c.chunk > domain.ChunkBytes:
		return fmt.Errorf("-photo-chunk %d: want 1 to %d (domain.ChunkBytes)", c.chunk, domain.ChunkBytes)
	case c.cut < 0:
		return errors.New("-photo-cut: 0 (no cut) or more chunks")
	}
	return nil
}

// photo is one device's file, generated again whenever it is read (a
// thousand megabytes are not kept in the load generator's memory): a JPEG
// start of image, a JFIF header and a comment naming the device (so the
// server's sniff sees image/jpeg), random bytes from a seed, an end of
// image.
type photo struct {
	head []byte
	seed [32]byte
	size int64
	sha  string
}

func newPhoto(deviceID string, n int, size int) *photo {
	p := &photo{size: int64(size)}
	com := []byte(fmt.Sprintf("syncbench photo %d of device %s", n, deviceID))
	var h bytes.Buffer
	h.Write([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00})
	h.Write([]byte{0xFF, 0xFE})
	binary.Write(&h, binary.BigEndian, uint16(len(com)+2))
	h.Write(com)
	p.head = h.Bytes()[:min(h.Len(), size-2)]
	p.seed = sha256.Sum256(com)
	return p
}

// reader returns the file's bytes from offset off.
func (p *photo) reader(off int64) io.Reader {
	body := p.size - int64(len(p.head)) - 2
	r := io.MultiReader(bytes.NewReader(p.head), io.LimitReader(rand.NewChaCha8(p.seed), body), bytes.NewReader([]byte{0xFF, 0xD9}))
	io.CopyN(io.Discard, r, off)
	return r
}

func (p *photo) hash() {
	h := sha256.New()
	io.Copy(h, p.reader(0))
	p.sha = hex.EncodeToString(h.Sum(nil))
}

// uploadStat is what one Upload did.
type uploadStat struct {
	started    int64 // the server's stored at the start
	chunks     int   // chunks sent
	bytes      int64 // file bytes sent
	complete   bool
	answers    int
	maxAhead   int // most chunks sent and not yet answered
	firstStore time.Duration
}

// errCut is an upload the benchmark cut on purpose (-photo-cut).
var errCut = errors.New("upload cut by -photo-cut")

// upload sends file p of record recordID over cc, from the server's
// stored offset, with at most inflight chunks unanswered (0: flow control
// only), until the server answers complete; with cut > 0 it cancels the
// stream after sending cut chunks (errCut).
func upload(ctx context.Context, cc grpc.ClientConnInterface, token, recordID string, p *photo, o photoConfig, cut int) (uploadStat, error) {
	inflight, gz, chunk := o.inflight, o.gzip, int64(o.chunk)
	var st uploadStat
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token))
	defer cancel()
	comp := encoding.Identity
	if gz {
		comp = gzip.Name
	}
	start := time.Now()
	// syncd's codec (a 64 KiB buffer tier): a chunk's message is encoded
	// into a 64 KiB buffer, not a cleared 1 MiB one, as a phone does.
	stream, err := pb.NewAttachmentServiceClient(cc).Upload(ctx, grpc.UseCompressor(comp), grpc.ForceCodecV2(server.Codec()))
	if err != nil {
		return st, fmt.Errorf("upload: %w", err)
	}
	if err := stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Start{Start: &pb.UploadStart{
		RecordId: recordID, Sha256: p.sha, Size: p.size, MediaType: "image/jpeg"}}}); err != nil {
		_, rerr := stream.Recv()
		return st, fmt.Errorf("upload start: %w", errors.Join(err, rerr))
	}
	resp, err := stream.Recv()
	if err != nil {
		return st, fmt.Errorf("upload start: %w", err)
	}
	st.started, st.answers = resp.GetStored(), 1
	if resp.GetComplete() {
		st.complete = true
		stream.CloseSend()
		return st, nil
	}
	if st.started < 0 || st.started > p.size {
		return st, fmt.Errorf("upload start: the server holds %d bytes of %d", st.started, p.size)
	}
	// The sender runs apart: the answers come back while chunks go out.
	var credits chan struct{}
	if inflight > 0 {
		credits = make(chan struct{}, inflight)
	}
	var sent, chunks, answered atomic.Int64
	var cutDone atomic.Bool
	sendErr := make(chan error, 1)
	go func() {
		r := p.reader(st.started)
		buf := make([]byte, chunk)
		for off := st.started; off < p.size; {
			n, err := io.ReadFull(r, buf[:min(int64(len(buf)), p.size-off)])
			if err != nil {
				sendErr <- err
				return
			}
			if credits != nil {
				select {
				case credits <- struct{}{}:
				case <-ctx.Done():
					sendErr <- nil
					return
				}
			}
			sum := sha256.Sum256(buf[:n])
			if err := stream.Send(&pb.UploadRequest{Part: &pb.UploadRequest_Chunk{Chunk: &pb.Chunk{Offset: off, Data: buf[:n], Sha256: sum[:]}}}); err != nil {
				sendErr <- nil // the server ended the stream: Recv says why
				return
			}
			sent.Add(int64(n))
			chunks.Add(1)
			off += int64(n)
			if cut > 0 && chunks.Load() >= int64(cut) && off < p.size {
				cutDone.Store(true)
				cancel()
				sendErr <- nil
				return
			}
		}
		// CloseSend only after the server's complete: nothing is lost
		// by waiting. (A half-close right behind the last chunk once
		// raced it in the server's Upload, which took the end of stream
		// before the chunk queued ahead of it; fixed on the server, with
		// a test there.)
		sendErr <- nil
	}()
	want := st.started
	for {
		resp, err := stream.Recv()
		if err != nil {
			cancel()
			<-sendErr
			st.bytes, st.chunks = sent.Load(), int(chunks.Load())
			if cutDone.Load() {
				return st, errCut
			}
			if err == io.EOF {
				return st, fmt.Errorf("upload: the server ended the stream at %d of %d bytes without complete", want, p.size)
			}
			return st, fmt.Errorf("upload at %d of %d bytes: %w", want, p.size, err)
		}
		st.answers++
		ahead := int(math.Ceil(float64(sent.Load()-resp.GetStored()) / float64(chunk)))
		st.maxAhead = max(st.maxAhead, ahead)
		if resp.GetStored() < want {
			cancel()
			<-sendErr
			return st, fmt.Errorf("upload: the server's stored went back from %d to %d", want, resp.GetStored())
		}
		if answered.Load() == 0 {
			st.firstStore = time.Since(start)
		}
		photoStored.Add(max(0, resp.GetStored()-want))
		for ; want < resp.GetStored(); want = min(want+chunk, p.size) {
			answered.Add(1)
			if credits != nil {
				<-credits
			}
		}
		if resp.GetComplete() {
			if err := <-sendErr; err != nil && !errors.Is(err, io.EOF) {
				return st, fmt.Errorf("upload: %w", err)
			}
			stream.CloseSend()
			st.complete = true
			st.bytes, st.chunks = sent.Load(), int(chunks.Load())
			if resp.GetStored() != p.size {
				return st, fmt.Errorf("upload: complete at %d bytes of %d", resp.GetStored(), p.size)
			}
			return st, nil
		}
	}
}

// fetchHash fetches file sha of recordID from offset off and returns the
// SHA-256 of the bytes it got, and how many.
func fetchHash(ctx context.Context, cc grpc.ClientConnInterface, token, recordID, sha string, off int64) (string, int64, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	stream, err := pb.NewAttachmentServiceClient(cc).Fetch(ctx, &pb.FetchRequest{RecordId: recordID, Sha256: sha, Offset: off}, grpc.UseCompressor(encoding.Identity), grpc.ForceCodecV2(server.Codec()))
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	var n int64
	next := off
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), n, nil
		}
		if err != nil {
			return "", n, err
		}
		c := resp.GetChunk()
		if c.GetOffset() != next {
			return "", n, fmt.Errorf("fetch: chunk at %d, want %d", c.GetOffset(), next)
		}
		if sum := sha256.Sum256(c.GetData()); len(c.GetSha256()) > 0 && !bytes.Equal(sum[:], c.GetSha256()) {
			return "", n, fmt.Errorf("fetch: chunk at %d: its sha256 does not match its data", c.GetOffset())
		}
		h.Write(c.GetData())
		n += int64(len(c.GetData()))
		next += int64(len(c.GetData()))
	}
}

// photoDev is one device's part in the scenario.
type photoDev struct {
	d      *lite
	visit  string
	p      *photo
	up     uploadStat
	upTime time.Duration
	ok     bool
}

// photos runs the scenario.
func (b *bench) photos(cfg photoConfig) *result {
	n := min(cfg.devices, len(b.lites))
	conc := n
	if cfg.conc > 0 {
		conc = min(cfg.conc, n)
	}
	r := &result{Scenario: "photos", Devices: n, Concurrency: conc}
	devs := make([]*photoDev, n)
	// Untimed, as a phone does it offline: the photo is taken (its hash
	// computed), the visit and its attach queued.
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				p := newPhoto(b.lites[i].id, i, cfg.size)
				p.hash()
				devs[i] = &photoDev{d: b.lites[i], p: p}
			}
		}()
	}
	wg.Wait()
	for _, pd := range devs {
		pd.d.visit()
		pd.visit = pd.d.pending[len(pd.d.pending)-1].GetRecordId()
		m := pd.d.mutation(pb.Kind_KIND_VISIT, pb.Op_OP_ATTACH, pd.visit, nil)
		m.Attachment = &pb.Attachment{Sha256: pd.p.sha, Size: pd.p.size, MediaType: "image/jpeg", Caption: "屋頂漏水處（走訪時拍攝）"}
	}
	rssBefore := b.serverRSS()
	photoStored.Store(0)
	heapDone, uploadsDone := make(chan struct{}), make(chan struct{})
	if pc, ok := b.ctl.(*procCtl); ok && cfg.heap != "" {
		path, _ := filepath.Abs(cfg.heap)
		half := int64(n) * int64(cfg.size) / 2
		go func() {
			defer close(heapDone)
			for photoStored.Load() < half {
				select {
				case <-uploadsDone:
					fmt.Fprintln(b.log, "syncbench: photo heap profile: not written, the uploads ended before half their bytes were stored")
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			if _, err := pc.command("heap " + path); err != nil {
				fmt.Fprintln(b.log, "syncbench: photo heap profile:", err)
			} else {
				fmt.Fprintf(b.log, "syncbench: the server's heap with half the photos' bytes stored in %s\n", path)
			}
		}()
	} else {
		if cfg.heap != "" {
			fmt.Fprintln(b.log, "syncbench: -photo-heapprofile: only with -server process")
		}
		close(heapDone)
	}

	var mu sync.Mutex
	var syncLat, upLat, firstLat []time.Duration
	var protoBytes atomic.Int64
	var fileBytes, sentBytes, chunks, resumed, maxAhead int64
	b.measure(r, func() {
		work := make(chan *photoDev)
		var wg sync.WaitGroup
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for pd := range work {
					err := b.photoOne(pd, cfg, &protoBytes, func(st syncStat, err error) {
						mu.Lock()
						r.add(st, err, false)
						if err == nil {
							syncLat = append(syncLat, st.latency)
						}
						mu.Unlock()
					})
					mu.Lock()
					if err != nil {
						r.Errors++
						if r.FirstError == "" {
							r.FirstError = err.Error()
						}
					} else {
						upLat = append(upLat, pd.upTime)
						firstLat = append(firstLat, pd.up.firstStore)
						fileBytes += pd.p.size
					}
					sentBytes += pd.up.bytes
					chunks += int64(pd.up.chunks)
					maxAhead = max(maxAhead, int64(pd.up.maxAhead))
					if pd.up.started > 0 {
						resumed++ // an Upload that started where the server's stored said, after a cut
					}
					mu.Unlock()
				}
			}()
		}
		for _, pd := range devs {
			work <- pd
		}
		close(work)
		wg.Wait()
	})
	close(uploadsDone)
	<-heapDone
	// The table's latency columns are the uploads'.
	r.latencies = upLat
	r.finish(protoBytes.Load())
	slices.Sort(syncLat)
	slices.Sort(firstLat)
	wantChunks := int64(0)
	for _, pd := range devs {
		if pd.ok {
			wantChunks += (pd.p.size + int64(cfg.chunk) - 1) / int64(cfg.chunk)
		}
	}
	x := map[string]float64{
		"files": float64(len(upLat)), "file_mb": round2(float64(fileBytes) / 1e6),
		"sync_p50_ms": ms(percentile(syncLat, .5)), "sync_p99_ms": ms(percentile(syncLat, .99)),
		"first_stored_p50_ms": ms(percentile(firstLat, .5)),
		"chunks_sent":         float64(chunks), "chunks_needed": float64(wantChunks),
		"resumed_uploads": float64(resumed), "most_chunks_unanswered": float64(maxAhead),
	}
	if r.Seconds > 0 {
		x["file_mb_per_s"] = round2(float64(fileBytes) / 1e6 / r.Seconds)
	}
	if fileBytes > 0 {
		x["wire_over_file"] = round3(float64(r.WireBytes) / float64(fileBytes))
	}
	if rssBefore > 0 {
		x["server_rss_before_mb"] = math.Round(float64(rssBefore)/(1<<20)*10) / 10
	}
	r.extra(x)
	b.photosAfter(r, devs, cfg)
	inflight := "no limit but HTTP/2 flow control (the server's 1 MiB stream window)"
	if cfg.inflight > 0 {
		inflight = fmt.Sprintf("at most %d unanswered", cfg.inflight)
	}
	comp := "uncompressed"
	if cfg.gzip {
		comp = "gzip"
	}
	r.Notes = append(r.Notes, fmt.Sprintf("each device: new TLS connection, one Sync (a visit and its OP_ATTACH), then AttachmentService.Upload of its own %d-byte JPEG-looking photo (%s) in %d-byte chunks each with its SHA-256, chunks %s, from the server's stored offset until complete; %d at once", cfg.size, comp, cfg.chunk, inflight, conc))
	if cfg.cut > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("each upload cut once after %d chunks sent (the client cancels the stream, as a dropped link ends it), then a new Upload from the server's stored: chunks_sent - chunks_needed were sent but not stored before the cut", cfg.cut))
	}
	r.Notes = append(r.Notes, "p50/p95/p99/max ms are per Upload (the stream's start to complete: all chunks stored, the file's SHA-256, size and type checked); syncs/s, records, mutations count the Syncs; file_mb_per_s is file bytes over the whole scenario (Sync and Upload); server peak RSS over the scenario, server_rss_before_mb at its start")
	return r
}

// photoOne is one device: the Sync, then the Upload on the same
// connection, then the connection closed.
func (b *bench) photoOne(pd *photoDev, cfg photoConfig, protoBytes *atomic.Int64, synced func(syncStat, error)) error {
	d := pd.d
	defer d.close()
	st, acks, err := d.sync(b.ctx, false)
	b.record("photos", acks)
	protoBytes.Add(st.protoBytes)
	synced(st, err)
	if err != nil {
		return err
	}
	for _, a := range acks {
		if a.status == pb.MutationStatus_MUTATION_STATUS_REJECTED {
			return fmt.Errorf("device %s: mutation %d (%s on %s) rejected", d.id, a.seq, a.op, a.recordID)
		}
	}
	cc, err := d.dial()
	if err != nil {
		return err
	}
	start := time.Now()
	cut := cfg.cut
	for attempt := 1; ; attempt++ {
		st, err := upload(b.ctx, cc, d.tok, pd.visit, pd.p, cfg, cut)
		pd.up.chunks += st.chunks
		pd.up.bytes += st.bytes
		pd.up.maxAhead = max(pd.up.maxAhead, st.maxAhead)
		if attempt == 1 {
			pd.up.firstStore = st.firstStore
		} else {
			pd.up.started = max(pd.up.started, st.started)
		}
		if errors.Is(err, errCut) && attempt == 1 {
			cut = 0 // once: the next Upload starts at the server's stored
			continue
		}
		if err != nil {
			pd.upTime = time.Since(start)
			return fmt.Errorf("device %s: %w", d.id, err)
		}
		pd.up.complete = st.complete
		break
	}
	pd.upTime = time.Since(start)
	pd.ok = true
	return nil
}

// photosAfter checks what the server holds, untimed: every file offered
// again is complete at once (never sent twice), and a sample fetched back
// (whole, and from the middle) is byte for byte the device's.
func (b *bench) photosAfter(r *result, devs []*photoDev, cfg photoConfig) {
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		r.Errors++
		if r.FirstError == "" {
			r.FirstError = err.Error()
		}
	}
	var okDevs []*photoDev
	for _, pd := range devs {
		if pd.ok {
			okDevs = append(okDevs, pd)
		}
	}
	var again, fetched, fetchedMid atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for i, pd := range okDevs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer pd.d.close()
			cc, err := pd.d.dial()
			if err != nil {
				fail(err)
				return
			}
			st, err := upload(b.ctx, cc, pd.d.tok, pd.visit, pd.p, cfg, 0)
			switch {
			case err != nil:
				fail(fmt.Errorf("offered again: device %s: %w", pd.d.id, err))
			case !st.complete || st.chunks > 0 || st.started != pd.p.size:
				fail(fmt.Errorf("offered again: device %s: the server held %d of %d bytes, complete %v, %d chunks sent: want complete at once", pd.d.id, st.started, pd.p.size, st.complete, st.chunks))
			default:
				again.Add(1)
			}
			if i >= cfg.fetch {
				return
			}
			sum, n, err := fetchHash(b.ctx, cc, pd.d.tok, pd.visit, pd.p.sha, 0)
			switch {
			case err != nil:
				fail(fmt.Errorf("fetch: device %s: %w", pd.d.id, err))
				return
			case sum != pd.p.sha || n != pd.p.size:
				fail(fmt.Errorf("fetch: device %s: got %d bytes hashing %s, want %d hashing %s", pd.d.id, n, sum, pd.p.size, pd.p.sha))
				return
			}
			fetched.Add(1)
			mid := pd.p.size / 2
			midSum, midN, err := fetchHash(b.ctx, cc, pd.d.tok, pd.visit, pd.p.sha, mid)
			h := sha256.New()
			io.Copy(h, pd.p.reader(mid))
			switch want := hex.EncodeToString(h.Sum(nil)); {
			case err != nil:
				fail(fmt.Errorf("fetch from %d: device %s: %w", mid, pd.d.id, err))
			case midSum != want || midN != pd.p.size-mid:
				fail(fmt.Errorf("fetch from %d: device %s: got %d bytes hashing %s, want %d hashing %s", mid, pd.d.id, midN, midSum, pd.p.size-mid, want))
			default:
				fetchedMid.Add(1)
			}
		}()
	}
	wg.Wait()
	r.extra(map[string]float64{"offered_again_complete_at_once": float64(again.Load()),
		"fetched_equal": float64(fetched.Load()), "fetched_from_middle_equal": float64(fetchedMid.Load())})
}

// serverRSS is the server's resident set now (VmRSS), or 0 where it
// cannot be read.
func (b *bench) serverRSS() int64 {
	if !b.ctl.measured() || b.ep.PID == 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.ep.PID))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}
