// Package testenv starts a real fieldsync server for tests, in-process: a
// SQLite file under t.TempDir(), an embedded nats-server with JetStream on a
// random port and its own store directory, and gRPC over a loopback
// listener. It also imports a small org with Chinese names and enrolls
// devices through the real Enroll RPC.
package testenv

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/syncd"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// Env is a running server.
type Env struct {
	T          testing.TB
	Dir        string
	Store      *store.Server
	Server     *server.Server
	NATS       *natsserver.Server
	NC         *nats.Conn // syncd's own NATS user
	NATSAuth   *server.NATSAuth
	JS         jetstream.JetStream
	GRPC       *grpc.Server
	Addr       string
	AdminToken string
	// CAFingerprint is the pinned CA of the server's TLS ("" in plain text).
	CAFingerprint string

	// Daemon is the assembled server (internal/syncd), as syncd runs it.
	Daemon *syncd.Daemon

	conn *grpc.ClientConn
}

// Option changes how Start builds the environment.
type Option func(*options)

type options struct {
	config    func(*server.Config)
	plaintext bool
	unary     []grpc.UnaryServerInterceptor
	dir       string
	addr      string
	token     string
	retention time.Duration    // WithRetention
	now       func() time.Time // WithRetention
	syncd     func(*syncd.Config)
}

// WithSyncdConfig changes the assembly's configuration before it starts,
// for what the other options do not cover (e.g. HQListen: the HQ page and
// its read model, which tests do not run unless they ask).
func WithSyncdConfig(f func(*syncd.Config)) Option { return func(o *options) { o.syncd = f } }

// WithRetention turns on the retention pass (syncd -retention) with the
// given window and clock: the test moves the clock on past the window and
// runs the pass through e.Daemon.Compact (it runs at start too, and
// hourly).
func WithRetention(window time.Duration, now func() time.Time) Option {
	return func(o *options) { o.retention, o.now = window, now }
}

// WithAddr listens on addr instead of a random port: a restarted server
// keeps the address its devices enrolled with.
func WithAddr(addr string) Option { return func(o *options) { o.addr = addr } }

// listen listens on addr. A fixed address (a restarted server keeps the
// one its devices enrolled with) can be held for a while by another
// process's outgoing connection, which the kernel gave it as an ephemeral
// port once the first server let it go (the simulation met this in CI,
// with other packages' tests running beside it): wait for it, up to a
// minute.
func listen(addr string) (net.Listener, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		lis, err := net.Listen("tcp", addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return lis, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WithAdminToken uses token as the admin credential (to keep it across a
// restart).
func WithAdminToken(token string) Option { return func(o *options) { o.token = token } }

// WithUnaryInterceptor adds an interceptor after the server's own (tests
// use it to inject faults such as a lost reply).
func WithUnaryInterceptor(i grpc.UnaryServerInterceptor) Option {
	return func(o *options) { o.unary = append(o.unary, i) }
}

// WithServerConfig changes the server's configuration before it starts.
// By default tests run with rate limits off, since every test device
// dials from the same loopback address.
func WithServerConfig(f func(*server.Config)) Option { return func(o *options) { o.config = f } }

// WithPlaintext serves gRPC without TLS (as syncd -insecure-plaintext).
func WithPlaintext() Option { return func(o *options) { o.plaintext = true } }

// WithDir keeps the server's files in dir (to restart on the same files).
func WithDir(dir string) Option { return func(o *options) { o.dir = dir } }

// Start starts a server and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	if o.addr == "" {
		o.addr = "127.0.0.1:0"
	}
	if o.token == "" {
		o.token = "admin-" + domain.RandomToken(10)
	}
	e := &Env{T: t, Dir: o.dir, AdminToken: o.token}
	lis, err := listen(o.addr)
	if err != nil {
		t.Fatal(err)
	}
	var gopts []grpc.ServerOption
	if len(o.unary) > 0 {
		gopts = append(gopts, grpc.ChainUnaryInterceptor(o.unary...))
	}
	// The same assembly as syncd, with every rate limit and quota off:
	// every test device dials from the same loopback address, and tests
	// that need a limit or a quota set it.
	cfg := syncd.Config{
		Dir:        o.dir,
		Listener:   lis,
		Plaintext:  o.plaintext,
		AdminToken: o.token,
		Server: func(c *server.Config) {
			c.DeviceLimit, c.UserLimit, c.EnrollLimit = server.Unlimited, server.Unlimited, server.Unlimited
			c.DeviceQuota, c.UserQuota = server.NoQuota, server.NoQuota
			if o.config != nil {
				o.config(c)
			}
		},
		GRPCOptions: gopts,
		Retention:   o.retention,
		Now:         o.now,
	}
	if o.syncd != nil {
		o.syncd(&cfg)
	}
	d, err := syncd.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.Daemon = d
	e.Store, e.Server, e.NATS, e.NC, e.JS, e.GRPC = d.Store, d.Server, d.NATS, d.NC, d.JS, d.GRPC
	e.NATSAuth = d.NATSAuth
	e.Addr, e.CAFingerprint = d.Addr, d.CAFingerprint
	clientCreds := insecure.NewCredentials()
	if !o.plaintext {
		clientCreds = credentials.NewTLS(syncer.PinnedTLS(e.Addr, e.CAFingerprint))
	}
	if e.conn, err = grpc.NewClient(e.Addr, grpc.WithTransportCredentials(clientCreds)); err != nil {
		d.Stop()
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e
}

// Stop stops everything, in the order syncd does; it may be called twice.
func (e *Env) Stop() {
	if e.Daemon == nil {
		return
	}
	e.conn.Close()
	if err := e.Daemon.Stop(); err != nil {
		e.T.Logf("stop the server: %v", err)
	}
	e.Daemon = nil
}

// Admin returns an admin client and a context carrying the admin token.
func (e *Env) Admin() (pb.AdminServiceClient, context.Context) {
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+e.AdminToken)
	return pb.NewAdminServiceClient(e.conn), ctx
}

// Conn is a client connection to the server.
func (e *Env) Conn() *grpc.ClientConn { return e.conn }

// The sample org: one town, two villages, grids, households, people.
const (
	Town      = "T01"
	Village   = "V01"
	Village2  = "V02"
	Grid      = "G01"
	Grid2     = "G02"
	Member    = "U-member1" // links H001-H003
	Member2   = "U-member2" // links H004-H005
	Mediator  = "U-mediator1"
	Mediator2 = "U-mediator2"
	Secretary = "U-sec1"
	HQ        = "U-hq"
	Outsider  = "U-member3" // a member in the other village, links H006
)

// SampleOrg is the org ImportSample imports (names from Macheng).
func SampleOrg() *pb.ImportOrgRequest {
	return &pb.ImportOrgRequest{
		Units: []*pb.Unit{
			{Id: Town, Kind: pb.UnitKind_UNIT_KIND_TOWN, Name: "宋埠鎮"},
			{Id: Village, Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: Town, Name: "彭店村"},
			{Id: Village2, Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: Town, Name: "龜山村"},
			{Id: Grid, Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: Village, Name: "張家塆"},
			{Id: Grid2, Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: Village2, Name: "李家塆"},
		},
		Users: []*pb.User{
			{Id: Member, Name: "張國華", Role: pb.Role_ROLE_MEMBER, UnitId: Grid},
			{Id: Member2, Name: "李秀英", Role: pb.Role_ROLE_MEMBER, UnitId: Grid},
			{Id: Outsider, Name: "王德明", Role: pb.Role_ROLE_MEMBER, UnitId: Grid2},
			{Id: Mediator, Name: "陳調解", Role: pb.Role_ROLE_MEDIATOR, UnitId: Village},
			{Id: Mediator2, Name: "劉和平", Role: pb.Role_ROLE_MEDIATOR, UnitId: Village},
			{Id: Secretary, Name: "周書記", Role: pb.Role_ROLE_SECRETARY, UnitId: Village},
			{Id: HQ, Name: "組織部", Role: pb.Role_ROLE_HQ},
		},
		Households: []*pb.Household{
			{Id: "H001", GridId: Grid, Head: "張大山", Address: "張家塆1號", Phone: "13800000001", Members: "4"},
			{Id: "H002", GridId: Grid, Head: "張小河", Address: "張家塆2號", Members: "3"},
			{Id: "H003", GridId: Grid, Head: "趙春梅", Address: "張家塆3號", Members: "2", Tags: "低保"},
			{Id: "H004", GridId: Grid, Head: "錢秋菊", Address: "張家塆4號", Members: "5"},
			{Id: "H005", GridId: Grid, Head: "孫冬生", Address: "張家塆5號", Members: "1", Tags: "獨居老人"},
			{Id: "H006", GridId: Grid2, Head: "李外村", Address: "李家塆6號", Members: "3"},
		},
		Assignments: []*pb.Assignment{
			{HouseholdId: "H001", MemberId: Member}, {HouseholdId: "H002", MemberId: Member}, {HouseholdId: "H003", MemberId: Member},
			{HouseholdId: "H004", MemberId: Member2}, {HouseholdId: "H005", MemberId: Member2},
			{HouseholdId: "H006", MemberId: Outsider},
		},
	}
}

// ImportSample imports SampleOrg and fails the test on any row error.
func (e *Env) ImportSample() {
	e.T.Helper()
	admin, ctx := e.Admin()
	resp, err := admin.ImportOrg(ctx, SampleOrg())
	if err != nil {
		e.T.Fatalf("import: %v", err)
	}
	if len(resp.GetErrors()) > 0 {
		e.T.Fatalf("import rejected rows: %v", resp.GetErrors())
	}
}

// Code issues an enrollment code for a user, as fieldctl prints it:
// fieldsync://ADDR/CODE?ca=FINGERPRINT.
func (e *Env) Code(userID string) string {
	e.T.Helper()
	return syncer.FormatEnrollment(e.Addr, e.Secret(userID), e.CAFingerprint)
}

// Secret issues a bare one-time enrollment secret for a user (what the
// Enroll RPC takes).
func (e *Env) Secret(userID string) string {
	e.T.Helper()
	admin, ctx := e.Admin()
	resp, err := admin.CreateEnrollmentCode(ctx, &pb.CreateEnrollmentCodeRequest{UserId: userID})
	if err != nil {
		e.T.Fatalf("enrollment code for %s: %v", userID, err)
	}
	return resp.GetCode()
}

// Device opens a device database in the test's temp dir and enrolls it
// for userID. It is encrypted at rest with a random key of its own, as a
// phone's is (an option may set Key to nil for a plain one). The device
// is closed when the test ends.
func (e *Env) Device(userID string, opts ...func(*syncer.Options)) *syncer.Device {
	e.T.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	o := &syncer.Options{ConnectTimeout: time.Second, Key: key}
	for _, f := range opts {
		f(o)
	}
	d, err := syncer.OpenWith(filepath.Join(e.T.TempDir(), "device.db"), o)
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Enroll(ctx, e.Code(userID), "test phone of "+userID); err != nil {
		e.T.Fatalf("enroll %s: %v", userID, err)
	}
	return d
}

// Sync syncs a device and fails the test on error.
func Sync(t testing.TB, d *syncer.Device) *syncer.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := d.Sync(ctx)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return rep
}

// WaitFor polls cond until it holds or the deadline passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// StreamChanges reads the whole changelog stream: change id -> count, and
// the decoded changes in stream order.
func (e *Env) StreamChanges() (map[string]int, []*pb.Change) {
	e.T.Helper()
	return ReadRegionStream(e.T, e.JS, e.Store.Region())
}
