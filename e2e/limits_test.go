package e2e

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// limited is a server with the rate limits a test sets, built from the
// same parts as testenv (TLS, real store, real services) but without NATS.
type limited struct {
	t      *testing.T
	addr   string
	fp     string
	conn   *grpc.ClientConn
	admin  pb.AdminServiceClient
	actx   context.Context
	closed bool
}

func startLimited(t *testing.T, cfg server.Config, first ...grpc.UnaryServerInterceptor) *limited {
	t.Helper()
	dir := t.TempDir()
	st := must[*store.Server](t)(store.OpenServer(context.Background(), filepath.Join(dir, "fieldsync.db")))
	token := "admin-" + domain.RandomToken(10)
	cfg.Store, cfg.AdminTokenHash = st, store.HashSecret(token)
	srv := server.New(cfg)
	tlsCfg, fp, err := server.LoadOrCreateTLS(filepath.Join(dir, "tls"), []string{"127.0.0.1"})
	ok(t, err)
	opts := append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(first...)}, srv.GRPCOptions()...)
	g := grpc.NewServer(append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))...)
	srv.Register(g)
	lis := must[net.Listener](t)(net.Listen("tcp", "127.0.0.1:0"))
	served := make(chan struct{})
	go func() { defer close(served); g.Serve(lis) }()
	l := &limited{t: t, addr: lis.Addr().String(), fp: fp}
	l.conn = must[*grpc.ClientConn](t)(grpc.NewClient(l.addr, grpc.WithTransportCredentials(credentials.NewTLS(syncer.PinnedTLS(l.addr, fp)))))
	t.Cleanup(func() {
		srv.Close()
		g.GracefulStop()
		<-served
		l.conn.Close()
		st.Close()
	})
	l.admin = pb.NewAdminServiceClient(l.conn)
	l.actx = metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	resp := must[*pb.ImportOrgResponse](t)(l.admin.ImportOrg(l.actx, testenv.SampleOrg()))
	if len(resp.GetErrors()) > 0 {
		t.Fatalf("import: %v", resp.GetErrors())
	}
	return l
}

func (l *limited) secret(user string) string {
	l.t.Helper()
	return must[*pb.CreateEnrollmentCodeResponse](l.t)(l.admin.CreateEnrollmentCode(l.actx, &pb.CreateEnrollmentCodeRequest{UserId: user})).GetCode()
}

// raw enrolls a credential for user and returns a context carrying it.
func (l *limited) raw(user string) context.Context {
	l.t.Helper()
	resp := must[*pb.EnrollResponse](l.t)(pb.NewEnrollServiceClient(l.conn).Enroll(context.Background(), &pb.EnrollRequest{Code: l.secret(user), DeviceName: "raw"}))
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+resp.GetToken())
}

// device enrolls a syncer device for user.
func (l *limited) device(user string) *syncer.Device {
	l.t.Helper()
	path := filepath.Join(l.t.TempDir(), "phone.db")
	d := must[*syncer.Device](l.t)(syncer.OpenWith(path, &syncer.Options{ConnectTimeout: 5 * time.Second, Key: phoneKey(path)}))
	l.t.Cleanup(func() { d.Close() })
	ok(l.t, d.Enroll(context.Background(), syncer.FormatEnrollment(l.addr, l.secret(user), l.fp), "phone of "+user))
	return d
}

// retryInfo returns the RetryInfo delay of a ResourceExhausted error.
func retryInfo(t *testing.T, err error) time.Duration {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	t.Fatalf("%v carries no RetryInfo", err)
	return 0
}

// waitFor waits d, or fails the test if it ends first.
func waitFor(t *testing.T, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.Context().Done():
		t.Fatal("test ended while waiting")
	}
}

// A device hammering Sync is told to wait, with a RetryInfo delay; a
// device of another user is not affected; after the delay it goes again.
func TestRateLimitedDeviceWaits(t *testing.T) {
	l := startLimited(t, server.Config{DeviceLimit: server.RateLimit{PerSecond: 2, Burst: 4}, UserLimit: server.Unlimited})
	sync := pb.NewSyncServiceClient(l.conn)
	hammer := l.raw(testenv.Member)
	other := l.raw(testenv.Mediator)

	var limitErr error
	calls := 0
	for deadline := time.Now().Add(10 * time.Second); limitErr == nil; calls++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls in a row were all served", calls)
		}
		_, limitErr = sync.Sync(hammer, &pb.SyncRequest{})
	}
	if calls < 5 {
		t.Fatalf("refused at call %d, want the burst of 4 served first", calls)
	}
	after := retryInfo(t, limitErr)
	if after <= 0 || after > 500*time.Millisecond {
		t.Fatalf("told to wait %v, want more than 0 and at most 500ms (one token at 2/s)", after)
	}
	if msg := status.Convert(limitErr).Message(); !strings.HasPrefix(msg, "rate limit: this device sent too many requests (at most 2 a second, bursts of 4)") {
		t.Fatalf("message %q", msg)
	}
	// Another user's device is served meanwhile, its whole burst.
	for i := range 4 {
		if _, err := sync.Sync(other, &pb.SyncRequest{}); err != nil {
			t.Fatalf("another user's device, call %d: %v", i+1, err)
		}
	}
	// After the delay, the hammering device is served again.
	waitFor(t, after)
	resp, err := sync.Sync(hammer, &pb.SyncRequest{})
	if err != nil {
		t.Fatalf("after waiting %v: %v", after, err)
	}
	if resp.GetUserId() != testenv.Member {
		t.Fatalf("answer for %q", resp.GetUserId())
	}
}

// Past a user's limit, all of that user's devices wait, whatever their
// own buckets hold; other users' devices do not.
func TestRateLimitPerUser(t *testing.T) {
	// Refills are slow (one token per 4 s), so that the counts below do
	// not depend on how fast the test runs.
	l := startLimited(t, server.Config{DeviceLimit: server.RateLimit{PerSecond: 0.25, Burst: 2}, UserLimit: server.RateLimit{PerSecond: 0.25, Burst: 3}})
	sync := pb.NewSyncServiceClient(l.conn)
	a, b, other := l.raw(testenv.Member), l.raw(testenv.Member), l.raw(testenv.Member2)
	for _, ctx := range []context.Context{a, a, b} {
		if _, err := sync.Sync(ctx, &pb.SyncRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	// b has a token of its own left, but the user has none.
	_, err := sync.Sync(b, &pb.SyncRequest{})
	if d := retryInfo(t, err); d <= 3*time.Second || d > 4*time.Second {
		t.Fatalf("user limit: wait %v, want about 4s (one token at 0.25/s)", d)
	}
	if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, "rate limit: the devices of user U-member1 together sent too many requests (at most 0.25 a second, bursts of 3)") {
		t.Fatalf("message %q", msg)
	}
	// a is over its own limit too; the longer wait is named.
	_, err = sync.Sync(a, &pb.SyncRequest{})
	if d := retryInfo(t, err); d <= 3*time.Second || d > 4*time.Second {
		t.Fatalf("device and user limit: wait %v", d)
	}
	for range 2 {
		if _, err := sync.Sync(other, &pb.SyncRequest{}); err != nil {
			t.Fatalf("another user's device: %v", err)
		}
	}
}

// The syncer turns the server's RetryInfo into a *RetryError with the
// delay, and Run waits at least that long before its next try.
func TestSyncerHonoursRetryDelay(t *testing.T) {
	type call struct {
		at    time.Time
		wait  time.Duration // RetryInfo delay, 0 if served
		isErr bool
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	record := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		at := time.Now()
		resp, err := h(ctx, req)
		if info.FullMethod == pb.SyncService_Sync_FullMethodName {
			c := call{at: at, isErr: err != nil}
			if st := status.Convert(err); st.Code() == codes.ResourceExhausted {
				for _, d := range st.Details() {
					if ri, ok := d.(*errdetails.RetryInfo); ok {
						c.wait = ri.GetRetryDelay().AsDuration()
					}
				}
			}
			mu.Lock()
			calls = append(calls, c)
			mu.Unlock()
		}
		return resp, err
	}
	l := startLimited(t, server.Config{DeviceLimit: server.RateLimit{PerSecond: 2, Burst: 2}, UserLimit: server.Unlimited}, record)

	// Sync returns a *RetryError carrying the delay.
	d := l.device(testenv.Secretary)
	var err error
	for deadline := time.Now().Add(10 * time.Second); err == nil; {
		if time.Now().After(deadline) {
			t.Fatal("never limited")
		}
		_, err = d.Sync(t.Context())
	}
	var re *syncer.RetryError
	if !errors.As(err, &re) {
		t.Fatalf("Sync over the limit: %T %v, want *syncer.RetryError", err, err)
	}
	if re.After <= 0 || re.After > 500*time.Millisecond || syncer.RetryAfterMillis(err) != re.After.Milliseconds() {
		t.Fatalf("RetryError.After %v (%d ms)", re.After, syncer.RetryAfterMillis(err))
	}
	if !strings.Contains(err.Error(), "server asked this device to wait") || !strings.Contains(err.Error(), "the work is kept on the device") {
		t.Fatalf("error text %q", err)
	}
	if syncer.RetryAfterMillis(errors.New("other")) != 0 {
		t.Fatal("RetryAfterMillis of another error")
	}

	// Run, told to sync every millisecond, waits out every delay the
	// server gives.
	mu.Lock()
	calls = nil
	mu.Unlock()
	d2 := l.device(testenv.Mediator)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d2.Run(ctx, time.Millisecond) }()
	testenv.WaitFor(t, 20*time.Second, "three refusals, each followed by a call", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for i, c := range calls {
			if c.wait > 0 && i+1 < len(calls) {
				n++
			}
		}
		return n >= 3
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	served, refused := 0, 0
	for i, c := range calls {
		if !c.isErr {
			served++
			continue
		}
		if c.wait == 0 {
			t.Fatalf("call %d failed without a retry delay", i)
		}
		refused++
		if i+1 < len(calls) {
			gap := calls[i+1].at.Sub(c.at)
			if gap < c.wait {
				t.Fatalf("call %d came %v after a refusal that asked for %v", i+1, gap, c.wait)
			}
			// Not the exponential backoff either: about the delay (plus
			// up to a tenth of jitter and scheduling).
			if gap > c.wait+c.wait/10+300*time.Millisecond {
				t.Fatalf("call %d came %v after a refusal that asked for %v: not the server's delay", i+1, gap, c.wait)
			}
		}
	}
	// Without honouring the delay, a 1ms interval would make hundreds of
	// calls; with it, about two a second (the device's rate).
	if refused > served+1 {
		t.Fatalf("%d calls refused, %d served: Run kept knocking", refused, served)
	}
	t.Logf("Run: %d calls served, %d refused", served, refused)
}

// Enrollment codes guessed from one address are slowed down; the right
// code still enrolls once the wait is over.
func TestEnrollGuessingIsSlowed(t *testing.T) {
	l := startLimited(t, server.Config{EnrollLimit: server.RateLimit{PerSecond: 2, Burst: 3}})
	enroll := pb.NewEnrollServiceClient(l.conn)
	// Successful enrollments are free: more than the burst in a row.
	for range 5 {
		l.raw(testenv.Member)
	}
	var err error
	wrong := 0
	for ; wrong < 10; wrong++ {
		_, err = enroll.Enroll(context.Background(), &pb.EnrollRequest{Code: "aaaabbbbccccdddd"})
		if status.Code(err) != codes.NotFound {
			break
		}
	}
	if wrong != 3 {
		t.Fatalf("%d wrong codes answered before the limit, want 3", wrong)
	}
	after := retryInfo(t, err)
	if after <= 0 || after > 500*time.Millisecond {
		t.Fatalf("wait %v", after)
	}
	secret := l.secret(testenv.Member2)
	if _, err := enroll.Enroll(context.Background(), &pb.EnrollRequest{Code: secret}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("enroll while limited: %v", err)
	}
	// A device enrolling now is told to wait, and the code is not spent.
	path := filepath.Join(t.TempDir(), "phone.db")
	d := must[*syncer.Device](t)(syncer.OpenWith(path, &syncer.Options{ConnectTimeout: 5 * time.Second, Key: phoneKey(path)}))
	defer d.Close()
	err = d.Enroll(context.Background(), syncer.FormatEnrollment(l.addr, secret, l.fp), "phone")
	var re *syncer.RetryError
	if !errors.As(err, &re) || re.After <= 0 {
		t.Fatalf("syncer enroll while limited: %v, want a *RetryError", err)
	}
	waitFor(t, re.After)
	ok(t, d.Enroll(context.Background(), syncer.FormatEnrollment(l.addr, secret, l.fp), "phone"))
}
