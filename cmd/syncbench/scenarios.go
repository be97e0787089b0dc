package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// result is one scenario's figures; with --json it is printed as one
// object.
type result struct {
	Scenario           string             `json:"scenario"`
	Devices            int                `json:"devices"`
	Concurrency        int                `json:"concurrency"`
	Syncs              int                `json:"syncs"`
	Calls              int                `json:"calls"`
	Mutations          int                `json:"mutations"`
	Pulled             int                `json:"records_pulled"`
	Records            int                `json:"records"`
	Seconds            float64            `json:"seconds"`
	RecordsPerSec      float64            `json:"records_per_s"`
	MutationsPerSec    float64            `json:"mutations_per_s"`
	SyncsPerSec        float64            `json:"syncs_per_s"`
	P50Ms              float64            `json:"p50_ms"`
	P95Ms              float64            `json:"p95_ms"`
	P99Ms              float64            `json:"p99_ms"`
	MaxMs              float64            `json:"max_ms"`
	ServerCPUSeconds   *float64           `json:"server_cpu_s"`       // nil: not measured (external syncd, pid unknown)
	ServerPeakRSSMB    *float64           `json:"server_peak_rss_mb"` // nil: not measured
	ClientCPUSeconds   float64            `json:"loadgen_cpu_s"`
	WireBytes          int64              `json:"wire_bytes"`
	WireBytesPerRecord float64            `json:"wire_bytes_per_record"`
	ProtoBytesPerRec   float64            `json:"proto_bytes_per_record"`
	WireOverProto      float64            `json:"wire_over_proto"`
	HandshakeBytes     int64              `json:"tls_handshake_bytes"`           // of WireBytes, on the lightweight devices' connections
	WireOverProtoNoHS  float64            `json:"wire_over_proto_no_handshakes"` // (WireBytes - HandshakeBytes) / protobuf
	Errors             int                `json:"errors"`
	Rejected           int                `json:"rejected"`
	Lost               int                `json:"lost"`
	Duplicated         int                `json:"duplicated"`
	Extra              map[string]float64 `json:"extra,omitempty"`
	Notes              []string           `json:"notes,omitempty"`
	FirstError         string             `json:"first_error,omitempty"`
	latencies          []time.Duration
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// bench holds the run's shared state.
type bench struct {
	ctx     context.Context
	ctl     serverCtl
	ep      endpoint
	admin   pb.AdminServiceClient
	actx    context.Context
	exportC pb.ExportServiceClient
	js      jetstream.JetStream
	// stream is the changelog stream the server publishes to (empty:
	// domain.StreamName; a region's: domain.RegionStream).
	stream string
	devs   []device
	lites  []*lite
	log    io.Writer

	mu   sync.Mutex
	acks []ack
	// expectChanges is how many changes the stream must hold: one per
	// imported household, one per applied mutation.
	expectChanges uint64
	// ackScenario names the scenario each ack came from.
	ackScenario []string
	// stormDone, when set, is called when the storm's last device is done.
	stormDone func()
}

func (b *bench) record(scenario string, acks []ack) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, a := range acks {
		b.acks = append(b.acks, a)
		b.ackScenario = append(b.ackScenario, scenario)
		if a.status != pb.MutationStatus_MUTATION_STATUS_REJECTED {
			b.expectChanges++
		}
	}
}

// measure runs fn and fills the common figures of r around it.
func (b *bench) measure(r *result, fn func()) {
	b.ctl.resetPeak()
	cpu0, _ := b.ctl.usage()
	self0 := selfCPU()
	w0, h0 := wireBytes(), handshake.Load()
	c0, j0, busy0, cok := b.ctl.commitStats()
	start := time.Now()
	fn()
	r.Seconds = time.Since(start).Seconds()
	if c1, j1, busy1, ok := b.ctl.commitStats(); ok && cok && c1 > c0 {
		// Group commit: writes per fsync (the writer commits each batch of
		// queued writes in one transaction, one WAL fsync), and how much
		// of the time the single writer was busy.
		r.extra(map[string]float64{"commits": float64(c1 - c0),
			"writes_per_commit": math.Round(float64(j1-j0)/float64(c1-c0)*10) / 10,
			"writer_busy":       math.Round((busy1-busy0).Seconds()/r.Seconds*100) / 100})
	}
	cpu1, rss := b.ctl.usage()
	if b.ctl.measured() {
		cpu, mb := math.Round((cpu1-cpu0)*100)/100, math.Round(float64(rss)/(1<<20)*10)/10
		r.ServerCPUSeconds, r.ServerPeakRSSMB = &cpu, &mb
	}
	r.ClientCPUSeconds = math.Round((selfCPU()-self0)*100) / 100
	r.WireBytes = wireBytes() - w0
	r.HandshakeBytes = handshake.Load() - h0
}

// extra adds figures to r.Extra.
func (r *result) extra(m map[string]float64) {
	if r.Extra == nil {
		r.Extra = map[string]float64{}
	}
	maps.Copy(r.Extra, m)
}

// add counts one sync; with keepLatency a successful sync's latency is
// recorded too.
func (r *result) add(st syncStat, err error, keepLatency bool) {
	r.Syncs++
	r.Calls += st.calls
	r.Mutations += st.pushed
	r.Rejected += st.rejected
	r.Pulled += st.pulled
	if err != nil {
		r.Errors++
		if r.FirstError == "" {
			r.FirstError = err.Error()
		}
		return
	}
	if keepLatency {
		r.latencies = append(r.latencies, st.latency)
	}
}

// finish computes rates and percentiles.
func (r *result) finish(protoBytes int64) {
	r.Records = r.Mutations + r.Pulled
	if r.Seconds > 0 {
		r.RecordsPerSec = math.Round(float64(r.Records) / r.Seconds)
		r.MutationsPerSec = math.Round(float64(r.Mutations) / r.Seconds)
		r.SyncsPerSec = math.Round(float64(r.Syncs) / r.Seconds)
	}
	slices.Sort(r.latencies)
	r.P50Ms, r.P95Ms, r.P99Ms = ms(percentile(r.latencies, .50)), ms(percentile(r.latencies, .95)), ms(percentile(r.latencies, .99))
	if len(r.latencies) > 0 {
		r.MaxMs = ms(r.latencies[len(r.latencies)-1])
	}
	if r.Records > 0 {
		r.WireBytesPerRecord = math.Round(float64(r.WireBytes)/float64(r.Records)*10) / 10
		r.ProtoBytesPerRec = math.Round(float64(protoBytes)/float64(r.Records)*10) / 10
	}
	if protoBytes > 0 {
		r.WireOverProto = math.Round(float64(r.WireBytes)/float64(protoBytes)*100) / 100
		r.WireOverProtoNoHS = math.Round(float64(r.WireBytes-r.HandshakeBytes)/float64(protoBytes)*100) / 100
	}
}

// pool syncs each device once with conc at a time; prep (untimed, before
// the clock starts) queues its mutations.
func (b *bench) pool(r *result, scenario string, devs []device, conc int, fresh bool) int64 {
	var protoBytes atomic.Int64
	var mu sync.Mutex
	work := make(chan device)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				st, acks, err := d.sync(b.ctx, fresh)
				b.record(scenario, acks)
				protoBytes.Add(st.protoBytes)
				mu.Lock()
				r.add(st, err, true)
				mu.Unlock()
			}
		}()
	}
	for _, d := range devs {
		work <- d
	}
	close(work)
	wg.Wait()
	return protoBytes.Load()
}

// bootstrap: every device's first full sync, from no cursors, as a fresh
// phone; then HQ exports everything from version 0.
func (b *bench) bootstrap(conc int) []*result {
	r := &result{Scenario: "bootstrap", Devices: len(b.devs), Concurrency: conc}
	var protoBytes int64
	b.measure(r, func() { protoBytes = b.pool(r, "bootstrap", b.devs, conc, true) })
	r.finish(protoBytes)
	r.Notes = append(r.Notes, "first sync of freshly enrolled devices (cursor 0 on every bucket), each on a new TLS connection; latency is per device, dial to last page")
	return []*result{r, b.export()}
}

func (b *bench) export() *result {
	r := &result{Scenario: "export", Devices: 1, Concurrency: 1}
	var protoBytes int64
	var first time.Duration
	b.measure(r, func() {
		start := time.Now()
		stream, err := b.exportC.Export(b.actx, &pb.ExportRequest{})
		if err != nil {
			r.Errors++
			r.FirstError = err.Error()
			return
		}
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				r.Errors++
				r.FirstError = err.Error()
				return
			}
			if first == 0 {
				first = time.Since(start)
			}
			r.Pulled += len(resp.GetRecords())
			protoBytes += int64(proto.Size(resp))
		}
	})
	r.Syncs = 1
	r.latencies = []time.Duration{first}
	r.finish(protoBytes)
	r.Notes = append(r.Notes, "HQ ExportService.Export from version 0 with the admin credential, one stream over pinned TLS with gzip; latency is time to the first batch")
	return r
}

// storm: every device reconnects at once (conc at a time), pushes n
// mutations and pulls what changed in its buckets.
func (b *bench) storm(n, conc int) *result {
	r := &result{Scenario: "storm", Devices: len(b.devs), Concurrency: conc}
	for _, d := range b.devs {
		if err := d.queue(n); err != nil {
			r.Errors++
			r.FirstError = err.Error()
		}
	}
	head0 := b.expectChanges
	streamStart := time.Now()
	var protoBytes int64
	b.measure(r, func() { protoBytes = b.pool(r, "storm", b.devs, conc, true) })
	if b.stormDone != nil {
		b.stormDone()
	}
	r.finish(protoBytes)
	// How long until the changelog stream held every change of the storm.
	if err := b.waitStream(b.expectChanges, 5*time.Minute); err == nil {
		lag := time.Since(streamStart).Seconds()
		r.extra(map[string]float64{"stream_caught_up_s": round2(lag),
			"relay_changes_per_s": math.Round(float64(b.expectChanges-head0) / lag)})
	} else {
		r.Notes = append(r.Notes, "changelog: "+err.Error())
	}
	r.Notes = append(r.Notes, fmt.Sprintf("each device: new TLS connection (session resumed), one Sync with %d mutations (visits, events, one household edit) and its cursors, paged until done, connection closed", n))
	return r
}

// burst: single-mutation syncs from conc devices at once, each on its
// open connection, k syncs each: group commit against the one-fsync-per-
// sync ceiling.
func (b *bench) burst(conc, k int) *result {
	devs := b.lites[:min(conc, len(b.lites))]
	r := &result{Scenario: "burst", Devices: len(devs), Concurrency: len(devs)}
	b.warm(devs)
	var protoBytes atomic.Int64
	var mu sync.Mutex
	b.measure(r, func() {
		var wg sync.WaitGroup
		for _, d := range devs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range k {
					d.queue(0)
					st, acks, err := d.sync(b.ctx, false)
					b.record("burst", acks)
					protoBytes.Add(st.protoBytes)
					mu.Lock()
					r.add(st, err, true)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	})
	r.finish(protoBytes.Load())
	r.Notes = append(r.Notes, fmt.Sprintf("%d devices at once, each %d syncs of one visit back to back on its open connection", len(devs), k))
	return r
}

// warm opens each device's connection with an empty sync.
func (b *bench) warm(devs []*lite) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	for _, d := range devs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d.sync(b.ctx, false)
		}()
	}
	wg.Wait()
}

// single: one device, one visit per sync, on an idle server.
func (b *bench) single(n int) *result {
	d := b.lites[0]
	r := &result{Scenario: "single", Devices: 1, Concurrency: 1}
	b.warm([]*lite{d})
	for range 20 { // warm up
		d.queue(0)
		_, acks, _ := d.sync(b.ctx, false)
		b.record("single", acks)
	}
	var protoBytes int64
	b.measure(r, func() {
		for range n {
			d.queue(0)
			st, acks, err := d.sync(b.ctx, false)
			b.record("single", acks)
			protoBytes += st.protoBytes
			r.add(st, err, true)
		}
	})
	r.finish(protoBytes)
	r.Notes = append(r.Notes, "one device, one visit per sync, sequential, open connection; latency is the Sync call as the device sees it")
	return r
}

// trickle: a steady rate of single-visit syncs; the time from the device's
// acknowledgement to the change reaching an HQ JetStream consumer.
func (b *bench) trickle(rate float64, dur time.Duration, ndev int) *result {
	devs := b.lites[:min(ndev, len(b.lites))]
	r := &result{Scenario: "trickle", Devices: len(devs), Concurrency: len(devs)}
	b.warm(devs)
	// HQ: an ordered consumer of new messages on the whole changelog.
	var arrivals sync.Map // record id -> arrival time
	var commitLat []time.Duration
	var clMu sync.Mutex
	st, err := b.js.Stream(b.ctx, domain.StreamName)
	if err != nil {
		r.Errors++
		r.FirstError = err.Error()
		return r
	}
	cons, err := st.OrderedConsumer(b.ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		r.Errors++
		r.FirstError = err.Error()
		return r
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		c := &pb.Change{}
		if proto.Unmarshal(m.Data(), c) == nil {
			arrivals.Store(c.GetRecord().GetId(), now)
			clMu.Lock()
			commitLat = append(commitLat, now.Sub(time.UnixMilli(c.GetCommittedMs())))
			clMu.Unlock()
		}
	})
	if err != nil {
		r.Errors++
		r.FirstError = err.Error()
		return r
	}
	defer cc.Stop()
	var acked []ack
	var mu sync.Mutex
	var protoBytes atomic.Int64
	skipped := 0
	busy := make([]sync.Mutex, len(devs))
	b.measure(r, func() {
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		end := time.Now().Add(dur)
		var wg sync.WaitGroup
		for i := 0; time.Now().Before(end); i++ {
			<-tick.C
			j := i % len(devs)
			if !busy[j].TryLock() {
				skipped++
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer busy[j].Unlock()
				d := devs[j]
				d.queue(0)
				s, acks, err := d.sync(b.ctx, false)
				b.record("trickle", acks)
				protoBytes.Add(s.protoBytes)
				mu.Lock()
				defer mu.Unlock()
				acked = append(acked, acks...)
				r.add(s, err, false) // trickle's latency is measured at HQ
			}()
		}
		wg.Wait()
	})
	// Wait for the last changes to arrive, then match.
	deadline := time.Now().Add(30 * time.Second)
	missing := 0
	for {
		missing = 0
		for _, a := range acked {
			if _, ok := arrivals.Load(a.recordID); !ok {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) || b.ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := 0
	for _, a := range acked {
		v, ok := arrivals.Load(a.recordID)
		if !ok {
			continue
		}
		d := v.(time.Time).Sub(a.at)
		if d < 0 {
			before++
			d = 0
		}
		r.latencies = append(r.latencies, d)
	}
	cc.Stop()
	r.finish(protoBytes.Load())
	clMu.Lock()
	defer clMu.Unlock()
	slices.Sort(commitLat)
	r.extra(map[string]float64{"rate_per_s": rate, "skipped_busy": float64(skipped), "not_seen_by_hq": float64(missing),
		"seen_before_ack":     float64(before),
		"commit_to_hq_p50_ms": ms(percentile(commitLat, .5)), "commit_to_hq_p99_ms": ms(percentile(commitLat, .99))})
	r.Notes = append(r.Notes, "latency = arrival at an HQ ordered JetStream consumer minus the device's receipt of the acknowledgement (0 when HQ saw it first); commit_to_hq uses the change's committed_ms (ms resolution)")
	return r
}

// waitStream waits until the changelog stream holds n messages.
func (b *bench) waitStream(n uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := b.ctx.Err(); err != nil {
			return err // the run was stopped (a signal, or a rate limit)
		}
		st, err := b.js.Stream(b.ctx, b.streamName())
		if err == nil {
			info, err := st.Info(b.ctx)
			if err == nil && info.State.Msgs >= n {
				return nil
			}
			if time.Now().After(deadline) {
				if err != nil {
					return err
				}
				return fmt.Errorf("stream holds %d messages after %v, want %d", info.State.Msgs, timeout, n)
			}
		} else if time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// streamName is the changelog stream the server publishes to.
func (b *bench) streamName() string {
	if b.stream != "" {
		return b.stream
	}
	return domain.StreamName
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// selfCPU is this process's CPU seconds (the load generator's, plus the
// server's with -server inproc).
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
