package sim

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// Config sizes one simulated history.
type Config struct {
	Seed    uint64
	Devices int // 5-50; 0 draws one from the seed
	Steps   int // actions before the faults stop; 0 draws one
	Log     func(format string, args ...any)
}

// Stats says what a run did.
type Stats struct {
	Devices, Steps, Writes, Syncs, FailedSyncs, Restarts, AppKills, Reassigns, Revokes, MediatorChanges, GridMoves int
	ServerRestores, PhoneCopies, PhoneRestores                                                                     int
	DeviceDays                                                                                                     float64
	// The work of the field (field.go): needs raised, members' reports,
	// projects, status moves, voids, settles and secretaries' relinks
	// queued on the devices.
	Needs, Reports, Projects, Moves, Voids, Settles, Relinks int
}

// World is one simulated history.
type World struct {
	t     testing.TB
	cfg   Config
	rng   *rand.Rand
	env   *testenv.Env
	start time.Time
	now   time.Time // simulated wall time
	devs  []*device
	stats Stats
	// hh lists the households; links maps a household to its member.
	hh      []string
	links   map[string]string
	members []string
	// grids maps each grid to the village it lies in now (grids move);
	// gridOf maps each household to its grid.
	grids  map[string]string
	gridOf map[string]string
	// frozen fields: a deliberate concurrent edit was made; nobody else
	// writes them again, so the conflict must still be there at the end.
	frozen map[string]string // "record/field" -> the two values, "a|b"
	// frozenBy names the devices that made the two values; frozenLost
	// the edits one of whose values went back in time with a restore
	// before it reached the server (not checked).
	frozenBy   map[string][2]*device
	frozenLost map[string]bool
	// snaps are the server's backups, oldest first; snapDir holds them.
	snaps   []serverSnap
	snapDir string
	// settles are the conflicts settled on the devices, checked after the
	// end (check_field.go); lastRestore is the step of the last restore
	// (server or phone): a settle before it is not checked, since the
	// edit that made its conflict may be applied again after it.
	settles     []*settled
	lastRestore int
}

type device struct {
	w        *World
	i        int
	user     string
	role     pb.Role
	village  string
	grid     string // a member's grid
	path     string
	key      []byte // its database's key: every device is encrypted at rest, each with its own
	d        *syncer.Device
	rng      *rand.Rand
	skew     time.Duration
	offUntil time.Time // offline until then
	revoked  bool
	// what the simulation made on this device
	queued  int                 // successful local writes (each is one numbered mutation)
	appends map[string][]string // record -> texts appended
	voids   map[string]string   // record -> the reason of the void this device queued
	created []string
	madeAt  map[string]int // record created -> the step
	moves   []madeMove     // status moves queued
	net     *faultyNet
	crashAt string // "write" or "adopt": the app is killed there next time
	hasCopy bool   // an older copy of its database is kept at path+".copy"
	// restored: put back from its copy and not synced to the end since
	// (it still holds the replica id it gives up at that sync).
	restored bool
}

func (v *device) clock() time.Time { return v.w.now.Add(v.skew) }

// New builds the world for cfg.Seed: a server with an org, and enrolled
// devices.
func New(t testing.TB, cfg Config) *World {
	t.Helper()
	w := &World{t: t, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), links: map[string]string{}, frozen: map[string]string{},
		grids: map[string]string{}, gridOf: map[string]string{}, frozenBy: map[string][2]*device{}, frozenLost: map[string]bool{},
		snapDir: t.TempDir()}
	if w.cfg.Devices == 0 {
		// Mostly small worlds, sometimes up to 50 devices.
		w.cfg.Devices = 5 + w.rng.IntN(11)
		if w.rng.IntN(5) == 0 {
			w.cfg.Devices = 16 + w.rng.IntN(35)
		}
	}
	if w.cfg.Steps == 0 {
		w.cfg.Steps = 4*w.cfg.Devices + 20 + w.rng.IntN(60)
	}
	if w.cfg.Log == nil {
		w.cfg.Log = func(string, ...any) {}
	}
	w.start = time.Now()
	w.now = w.start
	w.env = testenv.Start(t)
	w.importOrg()
	for i := 0; i < w.cfg.Devices; i++ {
		w.addDevice(i)
	}
	return w
}

// importOrg makes 2 villages, 2 grids each, households, and users: half
// members, some mediators, a secretary per village.
func (w *World) importOrg() {
	req := &pb.ImportOrgRequest{Units: []*pb.Unit{{Id: "T1", Kind: pb.UnitKind_UNIT_KIND_TOWN, Name: "宋埠鎮"}}}
	for v := 1; v <= 2; v++ {
		vid := fmt.Sprintf("V%d", v)
		req.Units = append(req.Units, &pb.Unit{Id: vid, Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: "T1", Name: fmt.Sprintf("彭店%d村", v)})
		for g := 1; g <= 2; g++ {
			gid := fmt.Sprintf("G%d%d", v, g)
			req.Units = append(req.Units, &pb.Unit{Id: gid, Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: vid, Name: gridName(gid)})
			w.grids[gid] = vid
			for h := 1; h <= 4; h++ {
				hid := fmt.Sprintf("H%d%d%d", v, g, h)
				w.hh = append(w.hh, hid)
				w.gridOf[hid] = gid
				req.Households = append(req.Households, &pb.Household{Id: hid, GridId: gid, Head: "戶主" + hid, Members: "3"})
			}
		}
	}
	for i := 0; i < w.cfg.Devices; i++ {
		u := &pb.User{Id: fmt.Sprintf("U%02d", i), Name: fmt.Sprintf("用戶%d", i)}
		village := fmt.Sprintf("V%d", 1+i%2)
		switch {
		case i < 2:
			u.Role, u.UnitId = pb.Role_ROLE_SECRETARY, village
		case i%3 == 0:
			u.Role, u.UnitId = pb.Role_ROLE_MEDIATOR, village
		default:
			u.Role, u.UnitId = pb.Role_ROLE_MEMBER, fmt.Sprintf("G%d1", 1+i%2)
			w.members = append(w.members, u.Id)
		}
		req.Users = append(req.Users, u)
	}
	for i, h := range w.hh {
		if len(w.members) == 0 {
			break
		}
		m := w.members[i%len(w.members)]
		w.links[h] = m
		req.Assignments = append(req.Assignments, &pb.Assignment{HouseholdId: h, MemberId: m})
	}
	admin, ctx := w.env.Admin()
	resp, err := admin.ImportOrg(ctx, req)
	if err != nil || len(resp.GetErrors()) > 0 {
		w.t.Fatalf("seed %d: import: %v %v", w.cfg.Seed, err, resp.GetErrors())
	}
}

func (w *World) addDevice(i int) {
	u := fmt.Sprintf("U%02d", i)
	v := &device{w: w, i: i, user: u, path: filepath.Join(w.t.TempDir(), "device.db"),
		rng: rand.New(rand.NewPCG(w.cfg.Seed, uint64(i)+1)), appends: map[string][]string{}, voids: map[string]string{}, madeAt: map[string]int{}}
	v.key = make([]byte, 32)
	crand.Read(v.key) // not from the seed's generator: the key changes nothing the simulation decides
	v.village = fmt.Sprintf("V%d", 1+i%2)
	switch {
	case i < 2:
		v.role = pb.Role_ROLE_SECRETARY
	case i%3 == 0:
		v.role = pb.Role_ROLE_MEDIATOR
	default:
		v.role = pb.Role_ROLE_MEMBER
		v.grid = fmt.Sprintf("G%d1", 1+i%2)
	}
	v.skew = time.Duration(v.rng.IntN(6*24*60)-3*24*60) * time.Minute // ±3 days
	v.net = &faultyNet{rng: rand.New(rand.NewPCG(w.cfg.Seed, uint64(i)+1000)), w: w, v: v}
	v.open()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v.net.off = true // enrollment goes through unharmed
	if err := v.d.Enroll(ctx, w.env.Code(u), "sim"); err != nil {
		w.t.Fatalf("seed %d: enroll %s: %v", w.cfg.Seed, u, err)
	}
	v.net.off = false
	w.devs = append(w.devs, v)
}

func (v *device) open() {
	d, err := syncer.OpenWith(v.path, &syncer.Options{
		Key:            v.key,
		Now:            v.clock,
		PageSize:       1 + v.rng.IntN(20), // small pages: syncs cross page boundaries
		ConnectTimeout: 2 * time.Second,
		CrashPoint: func(point string) bool {
			if v.crashAt == point {
				v.crashAt = ""
				return true
			}
			return false
		},
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(v.net.intercept)},
	})
	if err != nil {
		v.w.t.Fatalf("seed %d: open device %d: %v", v.w.cfg.Seed, v.i, err)
	}
	v.d = d
}

// faultyNet is a device's link: it drops requests, drops replies after the
// server committed, duplicates requests, and delivers old requests late.
type faultyNet struct {
	rng  *rand.Rand
	w    *World
	v    *device
	off  bool // faults disabled (enrollment, final sync)
	late []any
}

func (n *faultyNet) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if n.off {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	if n.v.w.now.Before(n.v.offUntil) {
		return status.Error(codes.Unavailable, "sim: no signal")
	}
	// A request held back earlier arrives now, late; its reply is lost.
	if len(n.late) > 0 && n.rng.IntN(2) == 0 {
		old := n.late[0]
		n.late = n.late[1:]
		_ = invoker(ctx, method, old, proto.Clone(reply.(proto.Message)), cc, opts...)
	}
	switch r := n.rng.IntN(100); {
	case r < 8:
		return status.Error(codes.Unavailable, "sim: request lost")
	case r < 16:
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "sim: reply lost after the server committed")
	case r < 22:
		if err := invoker(ctx, method, req, proto.Clone(reply.(proto.Message)), cc, opts...); err != nil {
			return err
		}
		return invoker(ctx, method, req, reply, cc, opts...) // duplicated
	case r < 28:
		n.late = append(n.late, proto.Clone(req.(proto.Message)))
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// Run plays the history, then stops the faults and syncs everyone to the
// end.
func (w *World) Run() Stats {
	for step := 0; step < w.cfg.Steps; step++ {
		w.now = w.now.Add(time.Duration(w.rng.IntN(6*60)) * time.Minute) // minutes to hours
		w.stats.Steps++
		if w.rng.IntN(6) == 0 {
			w.snapshotServer() // a backup, kept with its step
		}
		switch r := w.rng.IntN(100); {
		case r < 2:
			w.restartServer()
		case r < 4:
			w.appKill(w.pick())
		case r < 6:
			w.reassign()
		case r < 7 && w.stats.Revokes == 0 && step > w.cfg.Steps/2:
			w.revoke(w.pick())
		case r == 7:
			w.moveGrid()
		case r < 15:
			v := w.pick()
			v.offUntil = w.now.Add(time.Duration(w.rng.IntN(3*24*60)) * time.Minute) // up to days
		case r < 20:
			w.concurrentEdit()
		case r < 25:
			v := w.pick()
			v.skew -= time.Duration(w.rng.IntN(24*60)) * time.Minute // the phone's clock jumps back
		case r < 60:
			w.work(w.pick())
		case r < 62:
			w.restoreServer()
		case r < 64:
			w.restorePhone()
		case r < 67:
			w.copyPhone(w.pick())
		default:
			w.sync(w.pick())
		}
	}
	w.settle()
	return w.stats
}

func (w *World) pick() *device {
	for {
		v := w.devs[w.rng.IntN(len(w.devs))]
		if !v.revoked {
			return v
		}
	}
}

func (w *World) sync(v *device) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w.stats.Syncs++
	_, err := v.d.Sync(ctx)
	if errors.Is(err, syncer.ErrCrashed) {
		w.reopen(v)
	}
	if err != nil {
		w.stats.FailedSyncs++
		w.cfg.Log("step %d: %s sync: %v", w.stats.Steps, v.user, err)
	} else {
		v.restored = false
	}
	return err
}

func (w *World) restartServer() {
	w.stats.Restarts++
	w.cfg.Log("step %d: server restart", w.stats.Steps)
	e := w.env
	e.Stop()
	w.env = testenv.Start(w.t, testenv.WithDir(e.Dir), testenv.WithAddr(e.Addr), testenv.WithAdminToken(e.AdminToken))
}

// appKill kills the app: now, between two transactions, or armed to
// happen inside the next local write or the next sync answer's commit.
func (w *World) appKill(v *device) {
	switch w.rng.IntN(3) {
	case 0:
		v.crashAt = "write"
		return
	case 1:
		v.crashAt = "adopt"
		return
	}
	w.reopen(v)
}

// reopen closes and reopens a device's database, as a restarted app does.
func (w *World) reopen(v *device) {
	w.stats.AppKills++
	if err := v.d.Close(); err != nil {
		w.t.Fatalf("seed %d: close device: %v", w.cfg.Seed, err)
	}
	v.open()
}

func (w *World) reassign() {
	if len(w.members) < 2 {
		return
	}
	h := w.hh[w.rng.IntN(len(w.hh))]
	to := w.members[w.rng.IntN(len(w.members))]
	admin, ctx := w.env.Admin()
	if _, err := admin.AssignHousehold(ctx, &pb.AssignHouseholdRequest{HouseholdId: h, MemberId: to}); err != nil {
		w.t.Fatalf("seed %d: reassign: %v", w.cfg.Seed, err)
	}
	w.links[h] = to
	w.stats.Reassigns++
	w.dropSnaps()
}

func gridName(id string) string { return "張家塆" + id }

// moveGrid moves a grid to the other village by importing the unit alone:
// its households and their visits, and its members, go along.
func (w *World) moveGrid() {
	gids := slices.Sorted(maps.Keys(w.grids))
	g := gids[w.rng.IntN(len(gids))]
	to := "V1"
	if w.grids[g] == "V1" {
		to = "V2"
	}
	admin, ctx := w.env.Admin()
	resp, err := admin.ImportOrg(ctx, &pb.ImportOrgRequest{Units: []*pb.Unit{{Id: g, Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: to, Name: gridName(g)}}})
	if err != nil || len(resp.GetErrors()) > 0 {
		w.t.Fatalf("seed %d: move grid %s to %s: %v %v", w.cfg.Seed, g, to, err, resp.GetErrors())
	}
	if resp.GetRecordsMoved() < 4 {
		w.t.Fatalf("seed %d: moving grid %s to %s moved %d records; it holds 4 households", w.cfg.Seed, g, to, resp.GetRecordsMoved())
	}
	w.cfg.Log("step %d: grid %s moves to %s (%d records)", w.stats.Steps, g, to, resp.GetRecordsMoved())
	w.grids[g] = to
	for _, v := range w.devs {
		if v.grid == g {
			v.village = to
		}
	}
	w.stats.GridMoves++
	w.dropSnaps()
}

func (w *World) revoke(v *device) {
	id, err := v.d.Identity()
	if err != nil {
		return
	}
	admin, ctx := w.env.Admin()
	if _, err := admin.RevokeDevice(ctx, &pb.RevokeDeviceRequest{DeviceId: id.DeviceID}); err != nil {
		w.t.Fatalf("seed %d: revoke: %v", w.cfg.Seed, err)
	}
	v.revoked = true
	w.stats.Revokes++
	w.dropSnaps()
	// Its next contact wipes it; its unsent work goes with it, by design.
	v.net.off = true
	if err := w.sync(v); err == nil || !strings.Contains(err.Error(), "revoked") {
		w.t.Fatalf("seed %d: a revoked device synced: %v", w.cfg.Seed, err)
	}
	if items, _ := v.d.List(""); len(items) != 0 {
		w.t.Fatalf("seed %d: a revoked device kept %d records", w.cfg.Seed, len(items))
	}
}

// settle stops the faults and syncs every device until nothing is pending
// and every device has seen every other's last change.
func (w *World) settle() {
	if w.rng.IntN(2) == 0 {
		w.restartServer() // the relay restarts too, healing the stream from SQLite
	}
	for _, v := range w.devs {
		v.net.off, v.offUntil, v.crashAt = true, time.Time{}, ""
	}
	for round := 0; round < 3; round++ {
		for _, v := range w.devs {
			if v.revoked {
				continue
			}
			if err := w.sync(v); err != nil {
				w.t.Fatalf("seed %d: final sync of %s: %v", w.cfg.Seed, v.user, err)
			}
		}
	}
	days := 0.0
	for range w.devs {
		days += w.now.Sub(w.start).Hours() / 24
	}
	w.stats.Devices, w.stats.DeviceDays = len(w.devs), days
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
