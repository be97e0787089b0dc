// Command syncbench is fieldsync's load generator and benchmark: it builds a
// city, starts a server from syncd's parts (TLS on, rate limits off) or
// reaches a real syncd started separately (-server external), and runs
// named scenarios against it with real gRPC clients, then checks that no
// acknowledged mutation was lost or duplicated, on the server and on the
// JetStream changelog. See BENCHMARKS.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"

	hqreport "github.com/fieldsync/fieldsync/hq/report"
	"github.com/fieldsync/fieldsync/internal/buildinfo"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

func main() {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(childMain(dir))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "syncbench:", err)
		os.Exit(1)
	}
}

type config struct {
	scale                      float64
	households, members, grids int
	scenario                   string
	concurrency, mutations     int
	burstSyncs, singleSyncs    int
	trickleRate                float64
	trickleDur                 time.Duration
	trickleDevices             int
	realDevices                int
	jsonOut                    bool
	cpuprofile                 string
	genprofile                 string
	serverMode                 string
	addr, syncdData            string
	syncdPID                   int
	dir                        string
	keep                       bool
	limitRows                  int
	importBatch                int
	seed                       uint64
	skipLimits                 bool
	version                    bool
	hq, hqYear                 bool
	photos                     photoConfig
	// -scenario regions (issue 16)
	scaleSet  bool
	regions   []string
	natsNodes int
	replicas  int
}

var scenarioNames = []string{"bootstrap", "storm", "burst", "trickle", "single", "photos"}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("syncbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `syncbench: load generator and benchmark for fieldsync.

It builds a city (default the size of Macheng: %d households, %d members
each linked to 5-10 households, %d grids), imports it through
AdminService.ImportOrg, enrolls one device per member, and runs scenarios
against a server made of syncd's parts (SQLite, embedded NATS JetStream,
gRPC with TLS; rate limits off), by default in a child process so that
its CPU and memory are measured apart. Devices are lightweight (real gRPC,
TLS, protobuf, numbering, cursors; in-memory replica) except a sample
running the real syncer.

Wire is counted on the devices' sockets, both directions, per record moved
(mutations pushed + records pulled); wire/proto divides it by the protobuf
size of those mutations and records; "w/o TLS hs" leaves out the bytes of
the lightweight devices' TLS handshakes (a new connection per device in
bootstrap and storm; its post-quantum key shares are about 2.3 KB).

-server external runs against a real syncd started separately, on a fresh
(empty) -data directory, with its rate limits off:
  syncd -data /tmp/bench-data -device-rate off -user-rate off -enroll-rate off -device-quota off -user-quota off
  syncbench -server external -addr 127.0.0.1:7443 -syncd-data /tmp/bench-data -syncd-pid $(pgrep syncd)
syncbench reads syncd's admin.token, tls/ca.pem and nats.url from -syncd-data,
and stops with an error at the first call a rate limit refuses
(ResourceExhausted). Server CPU and peak RSS come from /proc for
-syncd-pid (or the local process listening on -addr); -cpuprofile is not
available there.

Scenarios (-scenario, comma-separated or all):
  bootstrap  fresh devices' first full sync; then HQ exports everything from 0
  storm      every device reconnects at once and pushes -mutations mutations
  photos     -photo-devices devices at once each sync a visit with a photo
             attached, then upload the photo (-photo-bytes) by
             AttachmentService.Upload in chunks (issue 15)
  burst      single-mutation syncs from -concurrency devices at once
  trickle    steady single-visit syncs; ack-to-HQ-consumer latency
  single     one device, one mutation per sync, idle server: latency floor
  link       (alone) one phone running the real syncer over an emulated 2G
             link (250 ms each way, 12.5 KB/s each way): round trips and
             bytes each way of a first sync of 50 records, a day's sync
             (10 visits up, 10 down) and a no-op sync, each on a cold
             connection (a new process) and a warm one; its own server in
             this process and a village of 10 households (-scale ignored)
  regions    (alone) a province on one machine (issue 16): a NATS JetStream
             cluster of -nats-nodes nodes in this process; one syncd per
             region of -regions, each in its own process with -region R,
             its own data directory and SQLite, its stream
             FIELDSYNC_CHANGES_<R> with -changelog-replicas replicas on the
             cluster, and its own city of -scale (default %v of Macheng
             each; ids prefixed "R-"); FIELDSYNC_HQ sourcing every region's
             stream and HQ's read model following it in this process. Every
             region imports, enrolls and bootstraps; then every region's
             phones storm at once (-concurrency at a time per region,
             -mutations each). Per region: syncs/s, p50/p99 sync latency,
             relay lag (a change committed → stored in the region's stream),
             HQ lag (committed → applied by HQ's model), the same from
             each phone's acknowledgement per record, the syncd's CPU and
             peak RSS; at the end every acknowledged mutation is checked on
             its server, in its region's stream, in FIELDSYNC_HQ (each
             region's changes 1..N once, in order) and in HQ's model (the
             run fails otherwise); then the cluster alone (JetStream async
             publish with the same replicas; -skip-limits skips it). One
             region (-regions xiaonan) is the same topology without a
             neighbour. About a minute on 2 cores at the default size.
The bootstrap sync always runs (devices need their cursors); it is
reported only when selected.

At the end it checks every acknowledged mutation against the server
(Export, ListDevices) and the changelog stream (lost, duplicated: must be
0), and measures the parts alone (SQLite batched insert, JetStream async
publish) for the ratios.

Flags:
`, machengHouseholds, machengMembers, machengGrids, regionsDefaultScale)
		fs.PrintDefaults()
	}
	fs.Float64Var(&c.scale, "scale", 1, "city size as a fraction of Macheng (e.g. 0.01)")
	fs.IntVar(&c.households, "households", 0, "households (0: Macheng x -scale)")
	fs.IntVar(&c.members, "members", 0, "members, one device each (0: Macheng x -scale)")
	fs.IntVar(&c.grids, "grids", 0, "grids (0: Macheng x -scale)")
	fs.StringVar(&c.scenario, "scenario", "all", "scenarios to run: bootstrap, storm, burst, trickle, single, photos, or all; or link or regions alone")
	fs.IntVar(&c.concurrency, "concurrency", 500, "devices syncing at once (storm, bootstrap, burst)")
	fs.IntVar(&c.mutations, "mutations", 10, "mutations each device pushes in the storm (7 visits, 2 events, 1 household edit at 10)")
	fs.IntVar(&c.burstSyncs, "burst-syncs", 20, "single-mutation syncs per device in burst")
	fs.IntVar(&c.singleSyncs, "single-syncs", 500, "syncs in single")
	fs.Float64Var(&c.trickleRate, "trickle-rate", 200, "syncs per second in trickle")
	fs.DurationVar(&c.trickleDur, "trickle-duration", 5*time.Second, "how long trickle runs")
	fs.IntVar(&c.trickleDevices, "trickle-devices", 200, "devices taking turns in trickle")
	fs.IntVar(&c.realDevices, "real", 8, "devices running the real syncer (own SQLite file each), among the members")
	fs.BoolVar(&c.jsonOut, "json", false, "print one JSON object per scenario (and one for limits and the check) instead of tables")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write the server's CPU profile over the scenarios to `file`, and its live heap after them to file.heap (go tool pprof)")
	fs.StringVar(&c.genprofile, "gen-cpuprofile", "", "write the load generator's own CPU profile over the scenarios to `file` (what the devices' side costs)")
	fs.StringVar(&c.serverMode, "server", "process", "where the server runs: process (syncd's parts in a child process, measured apart), inproc (in this process), or external (a syncd started separately: -addr, -syncd-data, -syncd-pid)")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:7443", "with -server external: syncd's gRPC `address` (its -listen)")
	fs.StringVar(&c.syncdData, "syncd-data", "", "with -server external: syncd's -data `directory`, for admin.token, tls/ca.pem and nats.url; syncd must have started on it empty, with -device-rate off -user-rate off -enroll-rate off -device-quota off -user-quota off")
	fs.IntVar(&c.syncdPID, "syncd-pid", 0, "with -server external: syncd's `pid`, to measure its CPU and peak RSS from /proc (0: the local process listening on -addr's port, if any; else not measured)")
	fs.StringVar(&c.dir, "dir", "", "working directory for the server's files and the real devices (default a temporary one, removed)")
	fs.BoolVar(&c.keep, "keep", false, "keep the working directory")
	fs.IntVar(&c.limitRows, "limit-rows", 0, "rows for the SQLite and JetStream limits (0: the storm's mutations, 20,000 to 220,420)")
	fs.IntVar(&c.importBatch, "import-batch", 5000, "rows per ImportOrg call")
	fs.Uint64Var(&c.seed, "seed", 1, "random seed for the city")
	fs.BoolVar(&c.skipLimits, "skip-limits", false, "do not measure the parts' limits")
	fs.BoolVar(&c.hq, "hq", true, "with the storm: follow the changelog with HQ's read model (hq.Follow, in this process) and report its lag behind the stream, then time the coverage page on it")
	fs.BoolVar(&c.hqYear, "hq-year", true, "with -hq: also time the coverage page on a city of the same size with a year of visits (hq/hqtest, built once into the user's cache directory)")
	photoFlags(fs, &c.photos)
	regionsFlag := fs.String("regions", "xiaonan,yunmeng", "with -scenario regions: the regions, comma-separated (names of a-z and 0-9, starting with a letter)")
	fs.IntVar(&c.natsNodes, "nats-nodes", 3, "with -scenario regions: nodes of the NATS JetStream cluster (1-5)")
	fs.IntVar(&c.replicas, "changelog-replicas", 3, "with -scenario regions: replicas of each region's stream and of FIELDSYNC_HQ (1 to -nats-nodes)")
	fs.BoolVar(&c.version, "version", false, "print syncbench's version (module, VCS revision and time, Go) and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q (see -h)", fs.Args())
	}
	if c.scale <= 0 {
		return nil, errors.New("-scale: must be more than 0")
	}
	if err := c.photos.check(); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.scaleSet = set["scale"]
	if c.scenario == "regions" {
		return c, c.checkRegions(*regionsFlag)
	}
	for _, f := range []string{"regions", "nats-nodes", "changelog-replicas"} {
		if set[f] {
			return nil, fmt.Errorf("-%s: only with -scenario regions", f)
		}
	}
	switch c.serverMode {
	case "process", "inproc":
		for _, f := range []string{"addr", "syncd-data", "syncd-pid"} {
			if set[f] {
				return nil, fmt.Errorf("-%s: only with -server external", f)
			}
		}
		if c.serverMode == "inproc" && c.cpuprofile != "" && c.genprofile != "" {
			return nil, errors.New("-cpuprofile and -gen-cpuprofile: with -server inproc there is one process and one profile; use -cpuprofile alone, or -server process")
		}
	case "external":
		if c.syncdData == "" {
			return nil, errors.New("-server external: -syncd-data is required (syncd's -data directory: admin.token, tls/ca.pem, nats.url)")
		}
		if c.cpuprofile != "" {
			return nil, errors.New("-cpuprofile: not available with -server external (syncd has no profiling endpoint); use -server process for the server's profile")
		}
		if c.syncdPID < 0 {
			return nil, errors.New("-syncd-pid: want a process id, or 0 to look it up")
		}
	default:
		return nil, fmt.Errorf("-server %q: want process, inproc or external", c.serverMode)
	}
	if c.concurrency < 1 || c.mutations < 1 {
		return nil, errors.New("-concurrency and -mutations: at least 1")
	}
	if c.scenario == "link" {
		if c.serverMode == "external" || set["scale"] || set["households"] || set["members"] || set["grids"] {
			return nil, errLinkAlone
		}
		return c, nil
	}
	for _, s := range strings.Split(c.scenario, ",") {
		if s == "link" {
			return nil, errLinkAlone
		}
		if s == "regions" {
			return nil, errors.New("-scenario regions: runs alone (its own servers, cluster and cities)")
		}
		if s != "all" && !contains(scenarioNames, s) {
			return nil, fmt.Errorf("-scenario %q: want %s, all, or link alone", s, strings.Join(scenarioNames, ", "))
		}
	}
	return c, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func (c *config) wants(s string) bool {
	for _, x := range strings.Split(c.scenario, ",") {
		if x == "all" || x == s {
			return true
		}
	}
	return false
}

// report is everything a run found.
type report struct {
	Machine  map[string]any `json:"machine"`
	City     citySpec       `json:"city"`
	Results  []*result      `json:"results"`
	Limits   *limits        `json:"limits,omitempty"`
	Ratios   map[string]float64
	Verdict  *verdict  `json:"check"`
	Measured string    `json:"server_measurement"`
	Devices  string    `json:"devices"`
	HQ       *hqReport `json:"hq,omitempty"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.version {
		fmt.Fprintln(stdout, buildinfo.Line("syncbench"))
		return nil
	}
	if cfg.scenario == "link" {
		return runLink(ctx, cfg, stdout, stderr)
	}
	if cfg.scenario == "regions" {
		return runRegions(ctx, cfg, stdout, stderr)
	}
	spec := citySpec{
		Households: cfg.households, Members: cfg.members, Grids: cfg.grids,
	}
	if spec.Households == 0 {
		spec.Households = scaled(machengHouseholds, cfg.scale, 5)
	}
	if spec.Members == 0 {
		spec.Members = scaled(machengMembers, cfg.scale, 1)
	}
	if spec.Grids == 0 {
		spec.Grids = scaled(machengGrids, cfg.scale, 1)
	}
	spec.Grids = min(spec.Grids, spec.Members)
	spec.Villages = max(1, min(spec.Grids, scaled(machengVillages, cfg.scale, 1)))
	spec.Towns = max(1, min(spec.Villages, scaled(machengTowns, cfg.scale, 1)))

	dir := cfg.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "syncbench-"); err != nil {
			return err
		}
		if !cfg.keep {
			defer os.RemoveAll(dir)
		}
	}
	fmt.Fprintf(stderr, "syncbench: city %d households, %d members, %d grids, %d villages, %d towns; files in %s\n",
		spec.Households, spec.Members, spec.Grids, spec.Villages, spec.Towns, dir)

	// The first call a server rate limit refuses cancels the run.
	parent := ctx
	ctx, cancelRun := context.WithCancel(parent)
	defer cancelRun()
	trip := &rateTrip{cancel: cancelRun}
	// failed prefers the rate limit's error to what it caused.
	failed := func(err error) error {
		if t := trip.tripped(); t != nil {
			return t
		}
		return err
	}

	var ctl serverCtl
	switch cfg.serverMode {
	case "process":
		ctl, err = startChild(ctx, filepath.Join(dir, "server"), stderr, serverOpts{})
	case "inproc":
		var bs *benchServer
		if bs, err = startServer(ctx, filepath.Join(dir, "server"), stderr, serverOpts{}); err == nil {
			ctl = &inprocCtl{b: bs}
		}
	case "external":
		var ec *externalCtl
		if ec, err = connectExternal(cfg.addr, cfg.syncdData, cfg.syncdPID, stderr); err == nil {
			ctl = ec
		}
	}
	if err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	defer func() {
		if ctl != nil {
			ctl.stop()
		}
	}()
	ep := ctl.endpoint()
	ep.trip = trip
	fmt.Fprintf(stderr, "syncbench: server on %s (TLS, CA %s…), NATS %s\n", ep.Addr, ep.CA[:12], ep.NATSURL)
	if cfg.serverMode == "external" {
		fmt.Fprintf(stderr, "syncbench: %s\n", ctl.what())
	}

	// The admin/HQ connection: pinned TLS, gzip.
	adminConn, err := grpc.NewClient(ep.Addr, append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(syncer.PinnedTLS(ep.Addr, ep.CA))),
		grpc.WithContextDialer(countingDialer), // counted only inside a scenario's window (the export)
		grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name), grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20))},
		trip.dialOptions()...)...)
	if err != nil {
		return err
	}
	defer adminConn.Close()
	nc, err := connectNATS(ep.NATSURL, ep.NATSKey)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	b := &bench{ctx: ctx, ctl: ctl, ep: ep, admin: pb.NewAdminServiceClient(adminConn),
		actx: metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+ep.Token), exportC: pb.NewExportServiceClient(adminConn),
		js: js, log: stderr}
	if cfg.serverMode == "external" {
		if err := b.checkEmpty(); err != nil {
			return err
		}
	}

	// The city.
	c := makeCity(spec, cfg.seed)
	t0 := time.Now()
	if err := importCity(b.actx, b.admin, c, cfg.importBatch, stderr); err != nil {
		return failed(err)
	}
	fmt.Fprintf(stderr, "syncbench: city imported in %.1fs\n", time.Since(t0).Seconds())
	b.expectChanges = uint64(len(c.hhs))

	// Devices: one per member; the last -real run the real syncer.
	if err := b.enroll(c, cfg, dir); err != nil {
		return failed(err)
	}
	defer func() {
		for _, d := range b.devs {
			d.close()
		}
	}()

	rep := &report{City: spec, Machine: machine(), Measured: ctl.what(),
		Devices: fmt.Sprintf("%d lightweight devices (real gRPC client, pinned TLS with session resumption, gzip, real protobuf mutations numbered per device, per-bucket cursors, in-memory replica) and %d real syncer devices (own SQLite file each)", len(b.lites), len(b.devs)-len(b.lites))}
	var genProf *os.File
	// The profiles cover the selected scenarios: the bootstrap sync is in
	// them only when bootstrap is selected.
	startProfiles := func() error {
		if cfg.cpuprofile != "" {
			p, _ := filepath.Abs(cfg.cpuprofile)
			if err := ctl.startProfile(p); err != nil {
				return fmt.Errorf("cpuprofile: %w", err)
			}
		}
		if cfg.genprofile != "" {
			f, err := os.Create(cfg.genprofile)
			if err != nil {
				return fmt.Errorf("gen-cpuprofile: %w", err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return fmt.Errorf("gen-cpuprofile: %w", err)
			}
			genProf = f
		}
		return nil
	}
	step := func(name string) { fmt.Fprintf(stderr, "syncbench: %s…\n", name) }
	if cfg.wants("bootstrap") {
		if err := startProfiles(); err != nil {
			return err
		}
	}
	step("bootstrap (first sync of every device)")
	boot := b.bootstrap(min(cfg.concurrency, len(b.devs)))
	if !cfg.wants("bootstrap") {
		if err := startProfiles(); err != nil {
			return err
		}
	}
	if cfg.wants("bootstrap") {
		rep.Results = append(rep.Results, boot...)
	}
	if err := b.waitStream(b.expectChanges, time.Minute); err != nil {
		fmt.Fprintln(stderr, "syncbench: warning:", err)
	}
	var hf *hqFollower
	if cfg.hq && cfg.wants("storm") && ctx.Err() == nil {
		step("HQ read model: loading the changelog")
		if hf, err = startHQ(ctx, js, filepath.Join(dir, "hq"), "", stderr); err != nil {
			return fmt.Errorf("hq model: %w", err)
		}
		defer func() {
			if hf != nil {
				hf.close()
			}
		}()
		rep.HQ = &hqReport{}
		t0 := time.Now()
		last, err := hf.waitQuiet(ctx, time.Second, 5*time.Minute)
		if err == nil {
			err = hf.waitApplied(ctx, last, 10*time.Minute)
		}
		if err != nil {
			return fmt.Errorf("hq model: initial load: %w", err)
		}
		rep.HQ.InitialLoadSec, rep.HQ.InitialChanges = round2(time.Since(t0).Seconds()), hf.applied.Load()
	}
	if cfg.wants("storm") && ctx.Err() == nil {
		step("storm")
		var stopSampling chan struct{}
		var applied0 uint64
		var stormStart, poolEnd time.Time
		if hf != nil {
			stopSampling, applied0, stormStart = make(chan struct{}), hf.applied.Load(), time.Now()
			go hf.sample(ctx, stopSampling)
			b.stormDone = func() { poolEnd = time.Now() }
		}
		rep.Results = append(rep.Results, b.storm(cfg.mutations, min(cfg.concurrency, len(b.devs))))
		if hf != nil {
			if err := hqAfterStorm(ctx, hf, rep.HQ, applied0, stormStart, poolEnd); err != nil {
				fmt.Fprintln(stderr, "syncbench: hq model:", err)
				rep.HQ.Notes = append(rep.HQ.Notes, err.Error())
			}
			close(stopSampling)
			hf.lagStats(rep.HQ)
			if pt, err := pageTimes(ctx, hf.m.DB(), hqreport.Query{Lang: "zh"}, 3, nil); err != nil {
				rep.HQ.Notes = append(rep.HQ.Notes, err.Error())
			} else {
				rep.HQ.PageFollowedMs = pt
			}
			hf.close()
			hf = nil
		}
		b.waitStream(b.expectChanges, time.Minute)
	}
	if cfg.wants("burst") && ctx.Err() == nil && len(b.lites) > 0 {
		step("burst")
		rep.Results = append(rep.Results, b.burst(cfg.concurrency, cfg.burstSyncs))
		b.waitStream(b.expectChanges, time.Minute)
	}
	if cfg.wants("trickle") && ctx.Err() == nil && len(b.lites) > 0 {
		step("trickle")
		rep.Results = append(rep.Results, b.trickle(cfg.trickleRate, cfg.trickleDur, cfg.trickleDevices))
		b.waitStream(b.expectChanges, time.Minute)
	}
	if cfg.wants("single") && ctx.Err() == nil && len(b.lites) > 0 {
		step("single")
		time.Sleep(500 * time.Millisecond) // let the relay and GC settle: an idle server
		rep.Results = append(rep.Results, b.single(cfg.singleSyncs))
	}
	if cfg.wants("photos") && ctx.Err() == nil && len(b.lites) > 0 {
		step("photos")
		rep.Results = append(rep.Results, b.photos(cfg.photos))
		b.waitStream(b.expectChanges, time.Minute)
	}
	if genProf != nil {
		pprof.StopCPUProfile()
		if err := genProf.Close(); err != nil {
			fmt.Fprintln(stderr, "syncbench: gen-cpuprofile:", err)
		} else {
			fmt.Fprintf(stderr, "syncbench: load generator CPU profile in %s\n", cfg.genprofile)
		}
	}
	if cfg.cpuprofile != "" {
		if err := ctl.stopProfile(); err != nil {
			fmt.Fprintln(stderr, "syncbench: cpuprofile:", err)
		} else {
			fmt.Fprintf(stderr, "syncbench: server CPU profile in %s (go tool pprof -top %s)\n", cfg.cpuprofile, cfg.cpuprofile)
		}
	}
	if ctx.Err() != nil {
		return failed(parent.Err())
	}
	step("checking every acknowledged mutation against the server and the stream")
	v, err := b.verify()
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	rep.Verdict = v
	for _, r := range rep.Results {
		n := v.byScenario[r.Scenario]
		r.Lost, r.Duplicated = n[0], n[1]
	}
	if !cfg.skipLimits {
		step("measuring the parts alone (SQLite, JetStream)")
		n := cfg.limitRows
		if n == 0 {
			n = max(20000, min(220420, spec.Members*cfg.mutations))
		}
		l := &limits{Rows: n, Notes: []string{
			"sqlite_rows_per_s: INSERTs of visit records (UUIDv7 keys, the server's records schema and bodies) in transactions of 500, synchronous=FULL, WAL, the server writer's DSN (store.ServerWriterDSN)",
			"sqlite_server_writes_per_s: the same, with the server's whole write set per mutation (record + its bucket rows but all + change row)",
			"sqlite_single_commits_per_s: one row per transaction: the one-fsync-per-sync ceiling",
			"jetstream_async_publish_per_s: PublishMsgAsync of the same Change bodies with Nats-Msg-Id to a file-storage stream of its own (deleted after) on the server's NATS, every ack awaited",
		}}
		if err := measureSQLite(ctx, dir, n, l); err != nil {
			fmt.Fprintln(stderr, "syncbench: sqlite limit:", err)
		}
		if err := measureJetStream(ctx, ep.NATSURL, ep.NATSKey, n, l); err != nil {
			fmt.Fprintln(stderr, "syncbench: jetstream limit:", err)
		}
		rep.Limits = l
		rep.Ratios = ratios(rep)
	}
	rep.Measured = ctl.what() // now that it knows whether the peak could be reset
	err = ctl.stop()
	ctl = nil
	if err != nil {
		fmt.Fprintln(stderr, "syncbench: stop server:", err)
	}
	if rep.HQ != nil && cfg.hqYear && ctx.Err() == nil {
		step("HQ: the coverage page on a city with a year of visits")
		if err := yearCityPage(ctx, spec, cfg.seed, rep.HQ, stderr); err != nil {
			fmt.Fprintln(stderr, "syncbench: hq year city:", err)
			rep.HQ.Notes = append(rep.HQ.Notes, "year city: "+err.Error())
		}
	}
	printReport(stdout, rep, cfg.jsonOut)
	if v.Lost > 0 || v.Duplicated > 0 {
		return fmt.Errorf("%d lost, %d duplicated mutations (see the check)", v.Lost, v.Duplicated)
	}
	return nil
}

// enroll makes one device per member, concurrently.
func (b *bench) enroll(c *city, cfg *config, dir string) error {
	start := time.Now()
	conn, err := grpc.NewClient(b.ep.Addr, deviceDialOptions(b.ep, nil)...)
	if err != nil {
		return err
	}
	defer conn.Close()
	nreal := min(cfg.realDevices, len(c.members))
	devs := make([]device, len(c.members))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, min(cfg.concurrency, 200))
	done := 0
	if nreal > 0 { // before the real devices' goroutines open their files in it
		if err := os.MkdirAll(filepath.Join(dir, "devices"), 0o700); err != nil {
			return err
		}
	}
	for i, m := range c.members {
		if len(c.linked[m.Id]) == 0 {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var d device
			var err error
			if i >= len(c.members)-nreal {
				d, err = enrollReal(b.ctx, b.ep, b.admin, b.actx, filepath.Join(dir, "devices"), m.Id, c.linked[m.Id])
			} else {
				d, err = enrollLite(b.ctx, b.ep, b.admin, b.actx, conn, m.Id, c.linked[m.Id])
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			devs[i] = d
			done++
			if done%1000 == 0 {
				fmt.Fprintf(b.log, "\rsyncbench: enrolled %d/%d devices", done, len(c.members))
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	for _, d := range devs {
		if d == nil {
			continue
		}
		b.devs = append(b.devs, d)
		if l, ok := d.(*lite); ok {
			b.lites = append(b.lites, l)
		}
	}
	fmt.Fprintf(b.log, "\rsyncbench: enrolled %d devices (%d real syncer) in %.1fs\n", len(b.devs), len(b.devs)-len(b.lites), time.Since(start).Seconds())
	return nil
}

func machine() map[string]any {
	m := map[string]any{"goos": runtime.GOOS, "goarch": runtime.GOARCH, "nproc": runtime.NumCPU(), "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				m["mem"] = strings.TrimSpace(v)
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return m
}

func find(rep *report, name string) *result {
	for _, r := range rep.Results {
		if r.Scenario == name {
			return r
		}
	}
	return nil
}

// ratios relate the scenarios to the parts' limits.
func ratios(rep *report) map[string]float64 {
	out := map[string]float64{}
	l := rep.Limits
	if s := find(rep, "storm"); s != nil && l.SQLiteRowsPerSec > 0 {
		out["storm_mutations_over_sqlite_rows"] = round3(s.MutationsPerSec / l.SQLiteRowsPerSec)
		if l.SQLiteServerPerSec > 0 {
			out["storm_mutations_over_sqlite_server_writes"] = round3(s.MutationsPerSec / l.SQLiteServerPerSec)
		}
		if rc := s.Extra["relay_changes_per_s"]; rc > 0 && l.JetStreamPerSec > 0 {
			out["storm_relay_over_jetstream"] = round3(rc / l.JetStreamPerSec)
		}
	}
	if s := find(rep, "burst"); s != nil && l.FsyncCommitsPerSec > 0 {
		out["burst_syncs_over_single_commits"] = round3(s.SyncsPerSec / l.FsyncCommitsPerSec)
	}
	if s := find(rep, "export"); s != nil && l.SQLiteRowsPerSec > 0 {
		out["export_over_sqlite_rows"] = round3(s.RecordsPerSec / l.SQLiteRowsPerSec)
	}
	return out
}

// orDash formats a figure that may be unknown.
func orDash(f *float64, prec int) string {
	if f == nil {
		return "–"
	}
	return strconv.FormatFloat(*f, 'f', prec, 64)
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func printReport(w io.Writer, rep *report, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range rep.Results {
			enc.Encode(r)
		}
		enc.Encode(map[string]any{"scenario": "limits", "limits": rep.Limits, "ratios": rep.Ratios})
		if rep.HQ != nil {
			enc.Encode(map[string]any{"scenario": "hq", "hq": rep.HQ})
		}
		enc.Encode(map[string]any{"scenario": "check", "check": rep.Verdict, "machine": rep.Machine, "city": rep.City,
			"server_measurement": rep.Measured, "devices": rep.Devices})
		return
	}
	fmt.Fprintf(w, "machine: %v\n", rep.Machine)
	fmt.Fprintf(w, "city: %d households, %d members (devices), %d grids, %d villages, %d towns\n",
		rep.City.Households, rep.City.Members, rep.City.Grids, rep.City.Villages, rep.City.Towns)
	fmt.Fprintf(w, "devices: %s\n", rep.Devices)
	fmt.Fprintf(w, "server: %s\n\n", rep.Measured)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tdevices\tconc\tsyncs\tmutations\tpulled\tseconds\trecords/s\tmutations/s\tsyncs/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\tsrv CPU s\tgen CPU s\tsrv RSS MB\twire B/rec\tproto B/rec\twire/proto\tw/o TLS hs\terrors\tlost\tdup\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%.2f\t%s\t%.1f\t%.1f\t%.2f\t%.2f\t%d\t%d\t%d\t\n",
			r.Scenario, r.Devices, r.Concurrency, r.Syncs, r.Mutations, r.Pulled, r.Seconds, r.RecordsPerSec, r.MutationsPerSec, r.SyncsPerSec,
			r.P50Ms, r.P95Ms, r.P99Ms, r.MaxMs, orDash(r.ServerCPUSeconds, 2), r.ClientCPUSeconds, orDash(r.ServerPeakRSSMB, 1), r.WireBytesPerRecord, r.ProtoBytesPerRec, r.WireOverProto, r.WireOverProtoNoHS,
			r.Errors, r.Lost, r.Duplicated)
	}
	tw.Flush()
	for _, r := range rep.Results {
		if len(r.Extra) > 0 {
			fmt.Fprintf(w, "%s: %v\n", r.Scenario, r.Extra)
		}
		if r.FirstError != "" {
			fmt.Fprintf(w, "%s: first error: %s\n", r.Scenario, r.FirstError)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "%s: %s\n", r.Scenario, n)
		}
	}
	if l := rep.Limits; l != nil {
		fmt.Fprintf(w, "\nlimits (same machine, same run, %d rows, record body %d B):\n", l.Rows, l.BodyBytes)
		fmt.Fprintf(w, "  sqlite batched insert (500/tx, FULL, WAL, UUIDv7)  %10.0f rows/s\n", l.SQLiteRowsPerSec)
		fmt.Fprintf(w, "  sqlite server write set (record+3 buckets+change)  %10.0f mutations/s\n", l.SQLiteServerPerSec)
		fmt.Fprintf(w, "  sqlite one row per commit (fsync ceiling)          %10.0f commits/s\n", l.FsyncCommitsPerSec)
		fmt.Fprintf(w, "  jetstream async publish (file storage)             %10.0f msgs/s\n", l.JetStreamPerSec)
		fmt.Fprintf(w, "ratios: %v\n", rep.Ratios)
	}
	printHQ(w, rep.HQ)
	if v := rep.Verdict; v != nil {
		fmt.Fprintf(w, "\ncheck: %d acknowledged mutations; %d lost, %d duplicated; server %d records; stream %d messages, %d out of order; %d device numbering mismatches\n",
			v.Acked, v.Lost, v.Duplicated, v.ServerRecords, v.StreamMessages, v.StreamGaps, v.DeviceSeqMismtch)
		for _, p := range v.Problems {
			fmt.Fprintln(w, "  problem:", p)
		}
	}
}
