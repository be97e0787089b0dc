package server

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// testServer is a Server with only its limits, on a clock the test moves.
func testServer(cfg Config) (*Server, *time.Time) {
	now := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	s := &Server{limits: newLimits(&cfg)}
	s.limits.now = func() time.Time { return now }
	return s, &now
}

func blockOnCtx(ctx context.Context, _ any) (any, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestUnaryDeadline(t *testing.T) {
	s, _ := testServer(Config{CallDeadline: 50 * time.Millisecond, ImportDeadline: 200 * time.Millisecond})
	sync := &grpc.UnaryServerInfo{FullMethod: pb.SyncService_Sync_FullMethodName}

	start := time.Now()
	_, err := s.unaryDeadline(context.Background(), nil, sync, blockOnCtx)
	took := time.Since(start)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("blocked handler: %v, want DeadlineExceeded", err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "/fieldsync.v1.SyncService/Sync did not finish within the server's limit of 50ms") {
		t.Fatalf("message %q does not say which limit", msg)
	}
	if took < 50*time.Millisecond || took > 5*time.Second {
		t.Fatalf("the blocked call ended after %v, want about 50ms", took)
	}

	// A handler that answers in time is untouched, errors included.
	want := status.Error(codes.InvalidArgument, "mutations: bad")
	if _, err := s.unaryDeadline(context.Background(), nil, sync, func(context.Context, any) (any, error) { return nil, want }); !errors.Is(err, want) {
		t.Fatalf("in-time error became %v", err)
	}
	resp, err := s.unaryDeadline(context.Background(), nil, sync, func(context.Context, any) (any, error) { return "ok", nil })
	if err != nil || resp != "ok" {
		t.Fatalf("in-time answer: %v %v", resp, err)
	}

	// ImportOrg has its own, longer bound.
	var left time.Duration
	_, err = s.unaryDeadline(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: pb.AdminService_ImportOrg_FullMethodName},
		func(ctx context.Context, req any) (any, error) {
			dl, _ := ctx.Deadline()
			left = time.Until(dl)
			return blockOnCtx(ctx, req)
		})
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "limit of 200ms") {
		t.Fatalf("import: %v", err)
	}
	if left <= 50*time.Millisecond || left > 200*time.Millisecond {
		t.Fatalf("import had %v left at its start, want up to 200ms", left)
	}

	// A client's earlier deadline stays, and its expiry is the client's
	// own error, not the server's.
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = s.unaryDeadline(cctx, nil, sync, blockOnCtx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("client deadline: %v", err)
	}

	// The defaults, and off.
	d, _ := testServer(Config{})
	if got := d.limits.deadline(pb.SyncService_Sync_FullMethodName); got != DefaultCallDeadline {
		t.Fatalf("default call deadline %v", got)
	}
	if got := d.limits.deadline(pb.AdminService_ImportOrg_FullMethodName); got != DefaultImportDeadline {
		t.Fatalf("default import deadline %v", got)
	}
	off, _ := testServer(Config{CallDeadline: -1})
	_, err = off.unaryDeadline(context.Background(), nil, sync, func(ctx context.Context, _ any) (any, error) {
		if _, has := ctx.Deadline(); has {
			return nil, errors.New("has a deadline")
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// retryDelay returns the RetryInfo delay of a ResourceExhausted error.
func retryDelay(t *testing.T, err error) time.Duration {
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

func deviceCtx(device, user string) context.Context {
	return context.WithValue(context.Background(), callerKey{}, &caller{deviceID: device, userID: user})
}

func TestDeviceAndUserLimits(t *testing.T) {
	s, now := testServer(Config{DeviceLimit: RateLimit{PerSecond: 4, Burst: 3}, UserLimit: RateLimit{PerSecond: 5, Burst: 5}})
	const sync = pb.SyncService_Sync_FullMethodName
	a, b, other := deviceCtx("dA", "U1"), deviceCtx("dB", "U1"), deviceCtx("dC", "U2")

	for i := range 3 {
		if err := s.admit(a, sync); err != nil {
			t.Fatalf("call %d of a burst of 3: %v", i+1, err)
		}
	}
	err := s.admit(a, sync)
	if d := retryDelay(t, err); d != 250*time.Millisecond {
		t.Fatalf("device over its limit told to wait %v, want 250ms (one token at 4/s)", d)
	}
	if msg := status.Convert(err).Message(); msg != "rate limit: this device sent too many requests (at most 4 a second, bursts of 3); its work is kept on it and syncs after the wait; retry in 250ms" {
		t.Fatalf("message %q", msg)
	}
	// Watch is limited the same way.
	if err := s.admit(a, pb.SyncService_Watch_FullMethodName); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("watch over the limit: %v", err)
	}

	// The user's other device has 2 of the user's 5 left, then meets the
	// user's limit; the device tokens it was refused are not spent.
	for i := range 2 {
		if err := s.admit(b, sync); err != nil {
			t.Fatalf("second device, call %d: %v", i+1, err)
		}
	}
	err = s.admit(b, sync)
	if d := retryDelay(t, err); d != 200*time.Millisecond {
		t.Fatalf("user over its limit told to wait %v, want 200ms (one token at 5/s)", d)
	}
	if !strings.Contains(status.Convert(err).Message(), "the devices of user U1 together sent too many requests (at most 5 a second, bursts of 5)") {
		t.Fatalf("message %q", status.Convert(err).Message())
	}
	if got := s.limits.device.m["dB"].TokensAt(*now); got != 1 {
		t.Fatalf("device dB holds %v tokens after a refusal, want 1 (refunded)", got)
	}

	// Another user's device is not affected.
	for i := range 3 {
		if err := s.admit(other, sync); err != nil {
			t.Fatalf("other user, call %d: %v", i+1, err)
		}
	}

	// After the delay the first device goes again.
	*now = now.Add(250 * time.Millisecond)
	if err := s.admit(a, sync); err != nil {
		t.Fatalf("after the delay: %v", err)
	}

	// Admin and Export calls are not limited; nor is a call with no device.
	for range 100 {
		if err := s.admit(context.Background(), pb.AdminService_ImportOrg_FullMethodName); err != nil {
			t.Fatal(err)
		}
	}

	// Unlimited turns a limit off.
	u, _ := testServer(Config{DeviceLimit: Unlimited, UserLimit: Unlimited})
	for range 1000 {
		if err := u.admit(a, sync); err != nil {
			t.Fatalf("unlimited: %v", err)
		}
	}
}

func TestDefaultLimits(t *testing.T) {
	s, _ := testServer(Config{})
	l := s.limits
	if l.deviceLimit != (RateLimit{5, 20}) || l.userLimit != (RateLimit{10, 40}) || l.enrollLimit != (RateLimit{1, 5}) {
		t.Fatalf("defaults: device %v user %v enroll %v", l.deviceLimit, l.userLimit, l.enrollLimit)
	}
	a := deviceCtx("dA", "U1")
	n := 0
	for s.admit(a, pb.SyncService_Sync_FullMethodName) == nil {
		n++
	}
	if n != 20 {
		t.Fatalf("a device's burst was %d calls, want 20", n)
	}
}

func peerCtx(addr string) context.Context {
	ap := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr))
	return peer.NewContext(context.Background(), &peer.Peer{Addr: ap})
}

func TestEnrollLimitCountsFailures(t *testing.T) {
	s, now := testServer(Config{EnrollLimit: RateLimit{PerSecond: 1, Burst: 5}})
	enroll := &grpc.UnaryServerInfo{FullMethod: pb.EnrollService_Enroll_FullMethodName}
	calls := 0
	good := func(context.Context, any) (any, error) { calls++; return &pb.EnrollResponse{}, nil }
	wrong := func(context.Context, any) (any, error) {
		calls++
		return nil, status.Error(codes.NotFound, "code: unknown enrollment code")
	}
	office := peerCtx("192.0.2.7:40000")

	// Successful enrollments cost nothing: a room of phones behind one
	// address enrolls freely.
	for i := range 50 {
		if _, err := s.unaryLimit(office, nil, enroll, good); err != nil {
			t.Fatalf("enrollment %d: %v", i+1, err)
		}
	}
	// Five wrong codes are allowed, the sixth attempt waits a second and
	// never reaches the handler.
	for i := range 5 {
		if _, err := s.unaryLimit(office, nil, enroll, wrong); status.Code(err) != codes.NotFound {
			t.Fatalf("wrong code %d: %v", i+1, err)
		}
	}
	calls = 0
	_, err := s.unaryLimit(peerCtx("192.0.2.7:40001"), nil, enroll, good)
	if d := retryDelay(t, err); d != time.Second {
		t.Fatalf("guesser told to wait %v, want 1s", d)
	}
	if calls != 0 {
		t.Fatal("a refused enrollment reached the handler")
	}
	if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, "rate limit: too many failed enrollment attempts from 192.0.2.7 (at most 1 a second, bursts of 5)") {
		t.Fatalf("message %q", msg)
	}
	// Another address is not affected; an IPv6 /64 counts as one.
	if _, err := s.unaryLimit(peerCtx("198.51.100.1:1"), nil, enroll, good); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.unaryLimit(peerCtx("[2001:db8:1:2::"+string(rune('a'+i))+"]:443"), nil, enroll, wrong); status.Code(err) != codes.NotFound {
			t.Fatalf("v6 wrong code %d: %v", i+1, err)
		}
	}
	if _, err := s.unaryLimit(peerCtx("[2001:db8:1:2:ffff::1]:443"), nil, enroll, good); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("same /64: %v", err)
	}
	if _, err := s.unaryLimit(peerCtx("[2001:db8:1:3::1]:443"), nil, enroll, good); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	*now = now.Add(time.Second)
	if _, err := s.unaryLimit(office, nil, enroll, good); err != nil {
		t.Fatalf("after the wait: %v", err)
	}
}

func TestLimiterSetEvictsIdleEntries(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	s := newLimiterSet(RateLimit{PerSecond: 1, Burst: 10})
	for i := range 1000 {
		s.reserve("dev"+strconv.Itoa(i), t0)
	}
	if s.size() != 1000 {
		t.Fatalf("size %d", s.size())
	}
	// A minute on, those buckets are full again (1 token of 10 spent, at
	// 1/s): the sweep drops them all; only the key just used is there.
	t1 := t0.Add(sweepEvery)
	s.reserve("busy", t1)
	if s.size() != 1 {
		t.Fatalf("after a sweep %d entries remain, want 1", s.size())
	}
	// A key deep in debt (100 tokens spent: 101 s to refill) outlives the
	// next sweep; a key whose bucket refilled does not.
	for range 100 {
		s.reserve("busy", t1)
	}
	s.reserve("light", t1)
	s.reserve("new", t1.Add(sweepEvery))
	if _, ok := s.m["busy"]; !ok {
		t.Fatal("an entry still in debt was dropped: its debt would be forgiven")
	}
	if _, ok := s.m["light"]; ok {
		t.Fatal("a refilled entry was kept")
	}
	// Sweeps run at most once a minute.
	s.reserve("light", t1.Add(sweepEvery+time.Second))
	s.reserve("x", t1.Add(2*sweepEvery-time.Second))
	if s.size() != 4 {
		t.Fatalf("size %d, want 4 (busy, new, light, x)", s.size())
	}

	// The set never holds more than max keys.
	c := newLimiterSet(RateLimit{PerSecond: 1, Burst: 1})
	c.max = 100
	for i := range 1000 {
		c.reserve(strconv.Itoa(i), t0)
		if c.size() > 100 {
			t.Fatalf("%d keys, max 100", c.size())
		}
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f *fakeStream) Context() context.Context { return f.ctx }

func TestStreamsPerDeviceAreCapped(t *testing.T) {
	s, _ := testServer(Config{MaxStreamsPerDevice: 2, DeviceLimit: Unlimited, UserLimit: Unlimited})
	watch := &grpc.StreamServerInfo{FullMethod: pb.SyncService_Watch_FullMethodName}
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	hold := func(any, grpc.ServerStream) error { started <- struct{}{}; <-release; return nil }
	errs := make(chan error, 10)
	open := func(device string) {
		go func() { errs <- s.streamLimit(nil, &fakeStream{ctx: deviceCtx(device, "U1")}, watch, hold) }()
	}
	open("dA")
	open("dA")
	<-started
	<-started
	err := s.streamLimit(nil, &fakeStream{ctx: deviceCtx("dA", "U1")}, watch, hold)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "already holds 2 open Watch streams") {
		t.Fatalf("third stream: %v", err)
	}
	open("dB") // another device has its own count
	<-started
	close(release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s.limits.streamsMu.Lock()
	n := len(s.limits.streams)
	s.limits.streamsMu.Unlock()
	if n != 0 {
		t.Fatalf("%d devices still counted after their streams ended", n)
	}
	if err := s.streamLimit(nil, &fakeStream{ctx: deviceCtx("dA", "U1")}, watch, func(any, grpc.ServerStream) error { return nil }); err != nil {
		t.Fatalf("after the others closed: %v", err)
	}
}
