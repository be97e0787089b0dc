package main

// -scenario regions (issue 16): a province's topology on one machine. A
// NATS JetStream cluster of -nats-nodes nodes in this process, one syncd
// per region (each in its own child process, its own data directory and
// SQLite, -region R, its stream FIELDSYNC_CHANGES_<R> with
// -changelog-replicas replicas on the cluster), each with its own city
// (ids prefixed "<region>-"), FIELDSYNC_HQ sourcing every region's stream,
// and HQ's read model following FIELDSYNC_HQ in this process. Every region
// bootstraps its phones, then all regions' phones storm at once.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// regionsDefaultScale is each region's city, as a fraction of Macheng, when
// -scale and the city's flags are not given: a run of about a minute or two
// on a 2-core machine.
const regionsDefaultScale = 0.05

// headSample is a region's last committed change at a moment.
type headSample struct {
	at   time.Time
	head uint64
}

// regionRun is one region's syncd and phones.
type regionRun struct {
	name    string
	ctl     *procCtl
	b       *bench
	conn    *grpc.ClientConn
	city    *city
	boot    *result
	storm   *result
	samples []headSample
	// stormHead0 is the region's last committed change when the storm
	// started.
	stormHead0 uint64
}

// lagStats are a lag's percentiles in milliseconds.
type lagStats struct {
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

func lagsOf(d []time.Duration) lagStats {
	slices.Sort(d)
	s := lagStats{Samples: len(d)}
	if len(d) > 0 {
		s.P50Ms, s.P99Ms, s.MaxMs = ms(percentile(d, .5)), ms(percentile(d, .99)), ms(d[len(d)-1])
	}
	return s
}

// regionFigures is what a region's run measured.
type regionFigures struct {
	Scenario   string  `json:"scenario"` // "regions"
	Region     string  `json:"region"`
	Stream     string  `json:"stream"`
	Households int     `json:"households"`
	Devices    int     `json:"devices"`
	Storm      *result `json:"storm"`
	Bootstrap  *result `json:"bootstrap"`
	// Changes the region committed during the storm (its change numbers).
	StormChanges uint64 `json:"storm_changes"`
	// RelayLag: a change committed (the region's head, sampled every
	// 10 ms) until the region's stream stored it (JetStream's timestamp).
	RelayLag lagStats `json:"relay_lag"`
	// HQLag: committed until HQ's read model applied it (following
	// FIELDSYNC_HQ, which sources the region's stream).
	HQLag lagStats `json:"hq_lag"`
	// SourceLag: stored in the region's stream until stored in FIELDSYNC_HQ.
	SourceLag lagStats `json:"hq_source_lag"`
	// AckStored, AckHQ: per record the storm created, the phone's
	// acknowledgement until the region's stream stored its change, and
	// until HQ's model applied it (0 when it came first).
	AckStored     lagStats `json:"ack_to_stored"`
	AckHQ         lagStats `json:"ack_to_hq_applied"`
	PeakRSSMB     *float64 `json:"server_peak_rss_mb"` // the region's syncd, over the storm
	ServerCPUSecs *float64 `json:"server_cpu_s"`
	Lost          int      `json:"lost"`
	Duplicated    int      `json:"duplicated"`
	Check         *verdict `json:"check"`
	// HQMessages: the region's messages in FIELDSYNC_HQ, out of order or
	// missing or twice (want 0), and acknowledged records HQ's model lacks.
	HQMessages      int `json:"hq_messages"`
	HQOutOfOrder    int `json:"hq_out_of_order"`
	HQMissing       int `json:"hq_missing"`
	HQTwice         int `json:"hq_twice"`
	HQModelMissing  int `json:"hq_model_missing"`
	RegionStreamMsg int `json:"region_stream_messages"`
	// StreamBytesPerMsg: the region stream's bytes over its messages
	// (JetStream's accounting of one copy: subject, headers, body).
	StreamBytesPerMsg float64 `json:"stream_bytes_per_message"`
}

// regionsHQ is HQ's side of the run.
type regionsHQ struct {
	Scenario           string   `json:"scenario"` // "hq"
	Stream             string   `json:"stream"`
	InitialLoadSec     float64  `json:"initial_load_s"`
	InitialChanges     uint64   `json:"initial_changes"`
	StormChanges       uint64   `json:"storm_changes"`
	AppliedPerSec      float64  `json:"storm_applied_per_s"`
	CatchUpAfterStormS float64  `json:"catch_up_after_storm_s"`
	LagP50             uint64   `json:"storm_lag_p50"` // FIELDSYNC_HQ last seq − applied, changes, every 50 ms
	LagP99             uint64   `json:"storm_lag_p99"`
	LagMax             uint64   `json:"storm_lag_max"`
	Notes              []string `json:"notes,omitempty"`
}

// regionsCheck is the run's verdict.
type regionsCheck struct {
	Scenario  string         `json:"scenario"` // "check"
	OK        bool           `json:"ok"`
	Acked     int            `json:"acked"`
	Problems  []string       `json:"problems,omitempty"`
	Machine   map[string]any `json:"machine"`
	Cluster   string         `json:"cluster"`
	Measured  string         `json:"measured"`
	StormSecs float64        `json:"storm_s"` // from the first region's storm start to the last region's last device
	// The load generator's process: the phones of every region, the NATS
	// cluster and HQ's model.
	GenCPUSecs  float64 `json:"loadgen_cpu_s"`
	GenPeakRSS  float64 `json:"loadgen_peak_rss_mb"`
	LoadAverage string  `json:"load_average"`
	// The cluster alone after the run (unless -skip-limits): JetStream
	// async publish of -limit-rows change bodies (default 20,000) to a
	// scratch stream with the regions' replicas.
	ClusterPublishPerSec float64 `json:"cluster_async_publish_per_s,omitempty"`
	ClusterPublishRows   int     `json:"cluster_async_publish_rows,omitempty"`
}

func runRegions(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	if err := checkRegionsSupported(); err != nil {
		return err
	}
	// The regions' goroutines, the syncds' children (their stderr is
	// copied in) and HQ's follower all write to stderr.
	stderr = &lockedWriter{w: stderr}
	spec := citySpec{Households: cfg.households, Members: cfg.members, Grids: cfg.grids}
	scale := cfg.scale
	if !cfg.scaleSet {
		scale = regionsDefaultScale
	}
	if spec.Households == 0 {
		spec.Households = scaled(machengHouseholds, scale, 5)
	}
	if spec.Members == 0 {
		spec.Members = scaled(machengMembers, scale, 1)
	}
	if spec.Grids == 0 {
		spec.Grids = scaled(machengGrids, scale, 1)
	}
	spec.Grids = min(spec.Grids, spec.Members)
	spec.Villages = max(1, min(spec.Grids, scaled(machengVillages, scale, 1)))
	spec.Towns = max(1, min(spec.Villages, scaled(machengTowns, scale, 1)))

	dir := cfg.dir
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "syncbench-regions-"); err != nil {
			return err
		}
		if !cfg.keep {
			defer os.RemoveAll(dir)
		}
	}
	fmt.Fprintf(stderr, "syncbench: regions %s, each a city of %d households, %d members, %d grids; NATS cluster of %d nodes, streams R%d; files in %s\n",
		strings.Join(cfg.regions, ", "), spec.Households, spec.Members, spec.Grids, cfg.natsNodes, cfg.replicas, dir)

	parent := ctx
	ctx, cancelRun := context.WithCancel(parent)
	defer cancelRun()
	trip := &rateTrip{cancel: cancelRun}

	cl, err := startCluster(filepath.Join(dir, "nats"), cfg.natsNodes)
	if err != nil {
		return fmt.Errorf("nats cluster: %w", err)
	}
	defer cl.Stop()
	urls := cl.URLs()
	fmt.Fprintf(stderr, "syncbench: NATS cluster %s\n", urls)
	nc, err := nats.Connect(urls)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	// The regions' syncds, each in its own process.
	var runs []*regionRun
	defer func() {
		for _, r := range runs {
			if r.b != nil {
				for _, d := range r.b.devs {
					d.close()
				}
			}
			if r.conn != nil {
				r.conn.Close()
			}
			if r.ctl != nil {
				if err := r.ctl.stop(); err != nil {
					fmt.Fprintf(stderr, "syncbench: stop %s: %v\n", r.name, err)
				}
			}
		}
	}()
	for _, name := range cfg.regions {
		ctl, err := startChild(ctx, filepath.Join(dir, name, "server"), stderr, serverOpts{Region: name, NATSURL: urls, Replicas: cfg.replicas})
		if err != nil {
			return fmt.Errorf("start region %s: %w", name, err)
		}
		r := &regionRun{name: name, ctl: ctl}
		runs = append(runs, r)
		ep := ctl.endpoint()
		ep.trip = trip
		conn, err := grpc.NewClient(ep.Addr, append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(syncer.PinnedTLS(ep.Addr, ep.CA))),
			grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name), grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20))},
			trip.dialOptions()...)...)
		if err != nil {
			return err
		}
		r.conn = conn
		r.b = &bench{ctx: ctx, ctl: ctl, ep: ep, admin: pb.NewAdminServiceClient(conn),
			actx: metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+ep.Token), exportC: pb.NewExportServiceClient(conn),
			js: js, stream: domain.RegionStream(name), log: stderr}
		fmt.Fprintf(stderr, "syncbench: region %s: syncd pid %d on %s, stream %s\n", name, ep.PID, ep.Addr, domain.RegionStream(name))
	}
	if err := ensureHQStream(ctx, js, cfg.regions, cfg.replicas); err != nil {
		return fmt.Errorf("%s: %w", domain.HQStreamName, err)
	}

	// Each region: its city, its phones, their first sync; side by side.
	step := func(s string) { fmt.Fprintf(stderr, "syncbench: %s…\n", s) }
	step("importing, enrolling and bootstrapping every region")
	if err := eachRegion(runs, func(i int, r *regionRun) error {
		r.city = makeRegionCity(spec, cfg.seed+uint64(i), domain.RegionIDPrefix(r.name))
		if err := importCity(r.b.actx, r.b.admin, r.city, cfg.importBatch, io.Discard); err != nil {
			return fmt.Errorf("region %s: %w", r.name, err)
		}
		r.b.expectChanges = uint64(len(r.city.hhs))
		if err := r.b.enroll(r.city, cfg, filepath.Join(dir, r.name)); err != nil {
			return fmt.Errorf("region %s: %w", r.name, err)
		}
		r.boot = r.b.bootstrap(min(cfg.concurrency, len(r.b.devs)))[0]
		return r.b.waitStream(r.b.expectChanges, 2*time.Minute)
	}); err != nil {
		return failedRun(trip, err)
	}

	// HQ's model loads what the regions hold so far.
	step("HQ read model: loading " + domain.HQStreamName)
	hf, err := startHQ(ctx, js, filepath.Join(dir, "hq"), domain.HQStreamName, stderr)
	if err != nil {
		return fmt.Errorf("hq model: %w", err)
	}
	defer func() {
		if hf != nil {
			hf.close()
		}
	}()
	hqr := &regionsHQ{Scenario: "hq", Stream: domain.HQStreamName}
	t0 := time.Now()
	last, err := hf.waitQuiet(ctx, time.Second, 5*time.Minute)
	if err == nil {
		err = hf.waitApplied(ctx, last, 10*time.Minute)
	}
	if err != nil {
		return fmt.Errorf("hq model: initial load: %w", err)
	}
	hqr.InitialLoadSec, hqr.InitialChanges = round2(time.Since(t0).Seconds()), hf.applied.Load()

	// The storm: every region's phones at once.
	step("storm in every region at once")
	for _, r := range runs {
		// The head counts record changes only; the org's changes (device
		// health after the bootstrap) follow it: the stream, caught up,
		// holds both.
		h, err := r.head()
		if err != nil {
			return err
		}
		st, err := js.Stream(ctx, r.b.streamName())
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		r.stormHead0 = max(h, info.State.LastSeq)
	}
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	for _, r := range runs {
		sampling.Add(1)
		go func() { defer sampling.Done(); r.sampleHead(ctx, stopSampling) }()
	}
	stopHQSampling := make(chan struct{})
	go hf.sample(ctx, stopHQSampling)
	applied0 := hf.applied.Load()
	gen0 := selfCPU()
	resetPeakRSS(os.Getpid())
	stormStart := time.Now()
	var poolEnd time.Time
	var endMu sync.Mutex
	eachRegion(runs, func(_ int, r *regionRun) error {
		r.b.stormDone = func() {
			endMu.Lock()
			if now := time.Now(); now.After(poolEnd) {
				poolEnd = now
			}
			endMu.Unlock()
		}
		r.storm = r.b.storm(cfg.mutations, min(cfg.concurrency, len(r.b.devs)))
		return nil
	})
	hrep := &hqReport{}
	if err := hqAfterStorm(ctx, hf, hrep, applied0, stormStart, poolEnd); err != nil {
		hqr.Notes = append(hqr.Notes, err.Error())
	}
	close(stopHQSampling)
	close(stopSampling)
	sampling.Wait()
	hf.lagStats(hrep)
	hqr.StormChanges, hqr.AppliedPerSec, hqr.CatchUpAfterStormS = hrep.StormChanges, hrep.AppliedPerSec, hrep.CatchUpAfterStormS
	hqr.LagP50, hqr.LagP99, hqr.LagMax = hrep.LagP50, hrep.LagP99, hrep.LagMax
	check := &regionsCheck{Scenario: "check", Machine: machine(), StormSecs: round2(poolEnd.Sub(stormStart).Seconds()),
		GenCPUSecs: round2(selfCPU() - gen0), GenPeakRSS: math.Round(float64(procPeakRSS(os.Getpid(), 0))/(1<<20)*10) / 10,
		Cluster:  fmt.Sprintf("%d nats-server nodes in syncbench's process (routes on loopback, JetStream file storage), region streams and %s with %d replicas", cfg.natsNodes, domain.HQStreamName, cfg.replicas),
		Measured: "each region's syncd in its own process (syncd's parts, rate limits off): server CPU and peak RSS from /proc over the storm; the load generator's process holds every region's phones, the NATS cluster and HQ's model (loadgen CPU / RSS)"}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		check.LoadAverage = strings.TrimSpace(string(b))
	}
	if ctx.Err() != nil {
		return failedRun(trip, parent.Err())
	}

	// The check: each region's acknowledged mutations on its server and in
	// its stream; FIELDSYNC_HQ holds each region's changes 1..N once, in
	// order; HQ's model holds every acknowledged record.
	step("checking every acknowledged mutation (servers, region streams, " + domain.HQStreamName + ", HQ's model)")
	hqMsgs, err := readHQStream(ctx, js)
	if err != nil {
		return fmt.Errorf("check: %s: %w", domain.HQStreamName, err)
	}
	modelIDs, err := modelRecordIDs(ctx, hf.m.DB())
	if err != nil {
		return fmt.Errorf("check: hq model: %w", err)
	}
	var figs []*regionFigures
	check.OK = true
	for _, r := range runs {
		f, err := r.figures(ctx, hqMsgs[r.name], hf, modelIDs)
		if err != nil {
			return fmt.Errorf("check: region %s: %w", r.name, err)
		}
		figs = append(figs, f)
		check.Acked += f.Check.Acked
		bad := f.Lost + f.Duplicated + f.HQOutOfOrder + f.HQMissing + f.HQTwice + f.HQModelMissing + f.Check.StreamGaps
		if bad > 0 || len(f.Check.Problems) > 0 {
			check.OK = false
			for _, p := range f.Check.Problems {
				check.Problems = append(check.Problems, r.name+": "+p)
			}
			check.Problems = append(check.Problems, fmt.Sprintf("%s: %d lost, %d duplicated, %d stream gaps; %s: %d out of order, %d missing, %d twice; HQ's model lacks %d acknowledged records",
				r.name, f.Lost, f.Duplicated, f.Check.StreamGaps, domain.HQStreamName, f.HQOutOfOrder, f.HQMissing, f.HQTwice, f.HQModelMissing))
		}
	}
	if !check.OK { // what HQ's durable consumer says (redeliveries: messages delivered to the model and not acknowledged)
		if st, err := js.Stream(ctx, domain.HQStreamName); err == nil {
			if c, err := st.Consumer(ctx, "syncbench-hq"); err == nil {
				if ci, err := c.Info(ctx); err == nil {
					check.Problems = append(check.Problems, fmt.Sprintf("HQ's durable consumer: delivered up to message %d, acknowledged up to %d, %d pending acknowledgement, %d redelivered",
						ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumAckPending, ci.NumRedelivered))
				}
			}
		}
	}
	for name := range hqMsgs {
		if !slices.Contains(cfg.regions, name) {
			check.OK = false
			check.Problems = append(check.Problems, fmt.Sprintf("%s holds %d messages of region %q, which this run did not start", domain.HQStreamName, len(hqMsgs[name]), name))
		}
	}
	hf.close()
	hf = nil
	if !cfg.skipLimits && ctx.Err() == nil {
		step(fmt.Sprintf("measuring the cluster alone (JetStream async publish, R%d)", cfg.replicas))
		n := cfg.limitRows
		if n == 0 {
			n = 20000
		}
		var l limits
		if err := measureJetStreamReplicas(ctx, urls, "", n, cfg.replicas, &l); err != nil {
			fmt.Fprintln(stderr, "syncbench: cluster limit:", err)
		} else {
			check.ClusterPublishPerSec, check.ClusterPublishRows = l.JetStreamPerSec, n
		}
	}
	printRegions(stdout, figs, hqr, check, cfg.jsonOut)
	if !check.OK {
		return fmt.Errorf("the check failed: %s", strings.Join(check.Problems, "; "))
	}
	return nil
}

// failedRun prefers a rate limit's error to what it caused.
func failedRun(trip *rateTrip, err error) error {
	if t := trip.tripped(); t != nil {
		return t
	}
	return err
}

// eachRegion runs fn for every region at once and returns the first error.
func eachRegion(runs []*regionRun, fn func(i int, r *regionRun) error) error {
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn(i, r) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// head is the region's last committed change.
func (r *regionRun) head() (uint64, error) {
	out, err := r.ctl.command("head")
	if err != nil {
		return 0, fmt.Errorf("region %s: head: %w", r.name, err)
	}
	return strconv.ParseUint(out, 10, 64)
}

// sampleHead records the region's head every 10 ms until stop.
func (r *regionRun) sampleHead(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h, err := r.head()
		if err == nil {
			r.samples = append(r.samples, headSample{at: time.Now(), head: h})
		}
	}
}

// hqMsg is one message of FIELDSYNC_HQ.
type hqMsg struct {
	hqSeq  uint64    // its number in FIELDSYNC_HQ
	change uint64    // its region's change number (Fieldsync-Seq)
	stored time.Time // when FIELDSYNC_HQ stored it
}

// readHQStream reads FIELDSYNC_HQ's headers, by region.
func readHQStream(ctx context.Context, js jetstream.JetStream) (map[string][]hqMsg, error) {
	out := map[string][]hqMsg{}
	err := readStream(ctx, js, domain.HQStreamName, true, func() { clear(out) }, func(m jetstream.Msg, md *jetstream.MsgMetadata) {
		n, _ := strconv.ParseUint(m.Headers().Get(domain.HeaderSeq), 10, 64)
		reg := m.Headers().Get(domain.HeaderRegion)
		out[reg] = append(out[reg], hqMsg{hqSeq: md.Sequence.Stream, change: n, stored: md.Timestamp})
	})
	return out, err
}

// readStream reads every message of a stream (headers only), in order.
// On a loaded cluster a request may find no responder for a moment (a
// stream's leader moving): the read starts over (reset first), up to 5
// times.
func readStream(ctx context.Context, js jetstream.JetStream, name string, headersOnly bool, reset func(), fn func(jetstream.Msg, *jetstream.MsgMetadata)) error {
	var err error
	for try := range 5 {
		if try > 0 {
			reset()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(try) * time.Second):
			}
		}
		if err = readStreamOnce(ctx, js, name, headersOnly, fn); err == nil {
			return nil
		}
	}
	return fmt.Errorf("reading %s (5 tries): %w", name, err)
}

func readStreamOnce(ctx context.Context, js jetstream.JetStream, name string, headersOnly bool, fn func(jetstream.Msg, *jetstream.MsgMetadata)) error {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: headersOnly})
	if err != nil {
		return err
	}
	var read uint64
	for read < info.State.Msgs {
		batch, err := cons.Fetch(int(min(5000, info.State.Msgs-read)), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			fn(m, md)
			n++
			read++
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%s says %d messages, read %d", name, info.State.Msgs, read)
		}
	}
	return nil
}

// modelRecordIDs are the ids of the records HQ's model holds.
func modelRecordIDs(ctx context.Context, db *sql.DB) (map[string]bool, error) {
	ids := map[string]bool{}
	for _, t := range []string{"households", "visits", "events", "disputes", "needs", "projects"} {
		rows, err := db.QueryContext(ctx, "SELECT id FROM "+t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t, err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			ids[id] = true
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// figures checks the region and computes its lags.
func (r *regionRun) figures(ctx context.Context, hqMsgs []hqMsg, hf *hqFollower, modelIDs map[string]bool) (*regionFigures, error) {
	f := &regionFigures{Scenario: "regions", Region: r.name, Stream: r.b.streamName(), Households: len(r.city.hhs), Devices: len(r.b.devs),
		Storm: r.storm, Bootstrap: r.boot}
	var v *verdict
	var err error
	for try := range 5 { // a loaded cluster: see readStream
		if v, err = r.b.verify(); err == nil {
			break
		}
		fmt.Fprintf(r.b.log, "syncbench: region %s: check (try %d): %v\n", r.name, try+1, err)
		time.Sleep(time.Duration(try+1) * time.Second)
	}
	if err != nil {
		return nil, err
	}
	f.Check = v
	f.Lost, f.Duplicated = v.Lost, v.Duplicated
	r.storm.Lost, r.storm.Duplicated = v.byScenario["storm"][0], v.byScenario["storm"][1]
	f.PeakRSSMB, f.ServerCPUSecs = r.storm.ServerPeakRSSMB, r.storm.ServerCPUSeconds

	// The region's stream: when each change was stored.
	stored := map[uint64]time.Time{}
	firstChange := map[string]uint64{} // a record's first change in the stream
	reset := func() { clear(stored); clear(firstChange); f.RegionStreamMsg = 0 }
	if err := readStream(ctx, r.b.js, r.b.streamName(), false, reset, func(m jetstream.Msg, md *jetstream.MsgMetadata) {
		n, _ := strconv.ParseUint(m.Headers().Get(domain.HeaderSeq), 10, 64)
		stored[n] = md.Timestamp
		f.RegionStreamMsg++
		c := &pb.Change{}
		if proto.Unmarshal(m.Data(), c) == nil && c.GetRecord() != nil {
			if _, seen := firstChange[c.GetRecord().GetId()]; !seen {
				firstChange[c.GetRecord().GetId()] = n
			}
		}
	}); err != nil {
		return nil, err
	}
	if st, err := r.b.js.Stream(ctx, r.b.streamName()); err == nil {
		if info, err := st.Info(ctx); err == nil && info.State.Msgs > 0 {
			f.StreamBytesPerMsg = math.Round(float64(info.State.Bytes)/float64(info.State.Msgs)*10) / 10
		}
	}
	// FIELDSYNC_HQ: the region's changes 1..N, each once, in order.
	f.HQMessages = len(hqMsgs)
	inHQ := map[uint64]hqMsg{}
	want := uint64(1)
	for _, m := range hqMsgs {
		if _, dup := inHQ[m.change]; dup {
			f.HQTwice++
			continue
		}
		inHQ[m.change] = m
		if m.change != want {
			f.HQOutOfOrder++
		}
		want = m.change + 1
	}
	for n := range stored {
		if _, ok := inHQ[n]; !ok {
			f.HQMissing++
		}
	}
	// HQ's model: every acknowledged record.
	for _, a := range r.b.acks {
		if a.status != pb.MutationStatus_MUTATION_STATUS_REJECTED && !modelIDs[a.recordID] {
			f.HQModelMissing++
		}
	}

	// Lags: each 10 ms sample where the head moved names a change
	// committed since the previous sample; when did the stream store it,
	// FIELDSYNC_HQ store it, the model apply it.
	var relay, hqLag, source []time.Duration
	prev := r.stormHead0
	for _, s := range r.samples {
		if s.head <= prev {
			continue
		}
		prev = s.head
		if t, ok := stored[s.head]; ok {
			relay = append(relay, max(0, t.Sub(s.at)))
			if m, ok := inHQ[s.head]; ok {
				source = append(source, max(0, m.stored.Sub(t)))
			}
		}
		if m, ok := inHQ[s.head]; ok {
			if at := hf.appliedAt(m.hqSeq); !at.IsZero() {
				hqLag = append(hqLag, max(0, at.Sub(s.at)))
			}
		}
	}
	f.StormChanges = prev - r.stormHead0
	// Per acknowledged record the storm created: the phone's
	// acknowledgement (after the commit) until its change was stored in
	// the region's stream, and until HQ's model applied it.
	var ackStored, ackHQ []time.Duration
	for i, a := range r.b.acks {
		if r.b.ackScenario[i] != "storm" || a.op != pb.Op_OP_CREATE || a.status == pb.MutationStatus_MUTATION_STATUS_REJECTED {
			continue
		}
		n, ok := firstChange[a.recordID]
		if !ok {
			continue
		}
		if t, ok := stored[n]; ok {
			ackStored = append(ackStored, max(0, t.Sub(a.at)))
		}
		if m, ok := inHQ[n]; ok {
			if at := hf.appliedAt(m.hqSeq); !at.IsZero() {
				ackHQ = append(ackHQ, max(0, at.Sub(a.at)))
			}
		}
	}
	f.AckStored, f.AckHQ = lagsOf(ackStored), lagsOf(ackHQ)
	f.RelayLag, f.HQLag, f.SourceLag = lagsOf(relay), lagsOf(hqLag), lagsOf(source)
	return f, nil
}

func printRegions(w io.Writer, figs []*regionFigures, h *regionsHQ, c *regionsCheck, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, f := range figs {
			enc.Encode(f)
		}
		enc.Encode(h)
		enc.Encode(c)
		return
	}
	fmt.Fprintf(w, "machine: %v (load average at the end: %s)\n", c.Machine, c.LoadAverage)
	fmt.Fprintf(w, "cluster: %s\n", c.Cluster)
	fmt.Fprintf(w, "measured: %s\n\n", c.Measured)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "region\thouseholds\tdevices\tstorm s\tsyncs\tsyncs/s\tmutations/s\tp50 ms\tp99 ms\tchanges (commits)\trelay lag p50/p99/max ms\tHQ lag p50/p99/max ms\tsource lag p50/p99 ms\tsrv CPU s\tsrv RSS MB\tlost\tdup\t")
	for _, f := range figs {
		s := f.Storm
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%d\t%.0f\t%.0f\t%.1f\t%.1f\t%d (%d)\t%.1f / %.1f / %.1f\t%.1f / %.1f / %.1f\t%.1f / %.1f\t%s\t%s\t%d\t%d\t\n",
			f.Region, f.Households, f.Devices, s.Seconds, s.Syncs, s.SyncsPerSec, s.MutationsPerSec, s.P50Ms, s.P99Ms, f.StormChanges, f.RelayLag.Samples,
			f.RelayLag.P50Ms, f.RelayLag.P99Ms, f.RelayLag.MaxMs, f.HQLag.P50Ms, f.HQLag.P99Ms, f.HQLag.MaxMs, f.SourceLag.P50Ms, f.SourceLag.P99Ms,
			orDash(f.ServerCPUSecs, 2), orDash(f.PeakRSSMB, 1), f.Lost, f.Duplicated)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nlags: the last change of each commit the sampler saw (the region's head, asked every 10 ms; a commit holds up to a few hundred syncs' changes) committed → stored in the region's stream (relay lag) → applied by HQ's model following %s (HQ lag); source lag: region stream → %s\n", h.Stream, h.Stream)
	fmt.Fprintf(w, "storms together: %.2f s; load generator (phones, NATS cluster, HQ model): %.2f CPU s, peak RSS %.1f MB\n", c.StormSecs, c.GenCPUSecs, c.GenPeakRSS)
	for _, f := range figs {
		fmt.Fprintf(w, "%s: per record the storm created (%d), the phone's acknowledgement → stored in %s p50 %.1f, p99 %.1f, max %.1f ms; → applied by HQ's model p50 %.1f, p99 %.1f, max %.1f ms\n",
			f.Region, f.AckStored.Samples, f.Stream, f.AckStored.P50Ms, f.AckStored.P99Ms, f.AckStored.MaxMs, f.AckHQ.P50Ms, f.AckHQ.P99Ms, f.AckHQ.MaxMs)
	}
	for _, f := range figs {
		fmt.Fprintf(w, "%s: %s %.1f bytes a message (one copy)\n", f.Region, f.Stream, f.StreamBytesPerMsg)
	}
	if c.ClusterPublishPerSec > 0 {
		fmt.Fprintf(w, "the cluster alone after the run: JetStream async publish of %d change bodies to a replicated scratch stream: %.0f msgs/s\n", c.ClusterPublishRows, c.ClusterPublishPerSec)
	}
	fmt.Fprintf(w, "HQ model on %s: initial load %d changes in %.2f s; storm %d changes at %.0f/s, caught up %.2f s after the last device; lag (changes) p50 %d, p99 %d, max %d\n",
		h.Stream, h.InitialChanges, h.InitialLoadSec, h.StormChanges, h.AppliedPerSec, h.CatchUpAfterStormS, h.LagP50, h.LagP99, h.LagMax)
	for _, n := range h.Notes {
		fmt.Fprintln(w, "  note:", n)
	}
	fmt.Fprintf(w, "\ncheck: %d acknowledged mutations", c.Acked)
	for _, f := range figs {
		fmt.Fprintf(w, "; %s: %d lost, %d duplicated, stream %d messages (%d out of order), %s %d messages (%d out of order, %d missing, %d twice), model lacks %d",
			f.Region, f.Lost, f.Duplicated, f.RegionStreamMsg, f.Check.StreamGaps, domain.HQStreamName, f.HQMessages, f.HQOutOfOrder, f.HQMissing, f.HQTwice, f.HQModelMissing)
	}
	if c.OK {
		fmt.Fprintln(w, ": OK")
	} else {
		fmt.Fprintln(w, ": FAILED")
	}
	for _, p := range c.Problems {
		fmt.Fprintln(w, "  problem:", p)
	}
}

// checkRegions checks -scenario regions' flags.
func (c *config) checkRegions(list string) error {
	if c.serverMode != "process" {
		return errors.New("-server: -scenario regions runs each region's syncd in its own process (the default, process)")
	}
	seen := map[string]bool{}
	for _, r := range strings.Split(list, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			return fmt.Errorf("-regions %q: want region names, comma-separated (e.g. xiaonan,yunmeng)", list)
		}
		if err := domain.CheckRegion(r); err != nil {
			return fmt.Errorf("-regions: %w", err)
		}
		if seen[r] {
			return fmt.Errorf("-regions: %q twice", r)
		}
		seen[r] = true
		c.regions = append(c.regions, r)
	}
	if c.natsNodes < 1 || c.natsNodes > 5 {
		return fmt.Errorf("-nats-nodes %d: want 1 to 5", c.natsNodes)
	}
	if c.replicas < 1 || c.replicas > c.natsNodes {
		return fmt.Errorf("-changelog-replicas %d: want 1 to -nats-nodes (%d)", c.replicas, c.natsNodes)
	}
	if c.concurrency < 1 || c.mutations < 1 {
		return errors.New("-concurrency and -mutations: at least 1")
	}
	if c.scale <= 0 {
		return errors.New("-scale: must be more than 0")
	}
	return nil
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
