package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Server-side deadlines of unary calls. Streams (Watch, Export) have none:
// they live as long as their client wants them.
const (
	// DefaultCallDeadline bounds every unary call but ImportOrg.
	DefaultCallDeadline = 30 * time.Second
	// DefaultImportDeadline bounds ImportOrg, whose batches may carry
	// thousands of households in one transaction.
	DefaultImportDeadline = 5 * time.Minute
)

// RateLimit is a token bucket: PerSecond requests a second on average,
// with bursts of up to Burst. A zero field takes the default's value; a
// negative PerSecond turns the limit off.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// Unlimited turns a rate limit off.
var Unlimited = RateLimit{PerSecond: -1}

// Default rate limits, sized for field phones: an ordinary sync is one
// call (a first sync a few pages), and a phone on a slow link makes at
// most a few calls a second, so only a broken or hostile client meets them.
var (
	// DefaultDeviceLimit applies to each device's SyncService calls.
	DefaultDeviceLimit = RateLimit{PerSecond: 5, Burst: 20}
	// DefaultUserLimit applies to all the SyncService calls of one user's
	// devices together.
	DefaultUserLimit = RateLimit{PerSecond: 10, Burst: 40}
	// DefaultEnrollLimit applies to the failed Enroll calls (unknown,
	// used or expired codes) from one IP address (an IPv6 /64), to slow the
	// guessing of enrollment codes. Successful enrollments cost nothing, so
	// a room of phones behind one address enrolls at the speed of typing.
	DefaultEnrollLimit = RateLimit{PerSecond: 1, Burst: 5}
)

func (l RateLimit) off() bool { return l.PerSecond < 0 }

func (l RateLimit) orDefault(def RateLimit) RateLimit {
	if l.PerSecond == 0 {
		l.PerSecond = def.PerSecond
	}
	if l.Burst < 1 {
		l.Burst = def.Burst
	}
	return l
}

func (l RateLimit) String() string {
	return fmt.Sprintf("at most %s a second, bursts of %d", strconv.FormatFloat(l.PerSecond, 'f', -1, 64), l.Burst)
}

// Bounds on the limiters' memory.
const (
	// maxLimiterKeys is the most devices, users or addresses one limiter
	// set tracks; past it an arbitrary entry is dropped (which only hands
	// that key a full bucket again).
	maxLimiterKeys = 100_000
	// sweepEvery is how often a limiter set drops entries whose bucket has
	// filled up again: such an entry is the same as a new one, so dropping
	// it changes no answer.
	sweepEvery = time.Minute
)

// limiterSet keeps one token bucket per key (device, user or address).
type limiterSet struct {
	limit     RateLimit
	max       int
	mu        sync.Mutex
	m         map[string]*rate.Limiter
	nextSweep time.Time
	lastSweep time.Time
}

func newLimiterSet(l RateLimit) *limiterSet {
	if l.off() {
		return nil
	}
	return &limiterSet{limit: l, max: maxLimiterKeys, m: map[string]*rate.Limiter{}}
}

// reserve takes a token for key at now. The reservation's delay is how
// long the caller must wait for it; the caller cancels it if it will not
// wait. A nil set reserves nothing.
func (s *limiterSet) reserve(key string, now time.Time) *rate.Reservation {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !now.Before(s.nextSweep) || (len(s.m) >= s.max && now.Sub(s.lastSweep) >= time.Second) {
		s.sweep(now)
	}
	lim := s.m[key]
	if lim == nil {
		if len(s.m) >= s.max {
			for k := range s.m {
				delete(s.m, k)
				break
			}
		}
		lim = rate.NewLimiter(rate.Limit(s.limit.PerSecond), s.limit.Burst)
		s.m[key] = lim
	}
	return lim.ReserveN(now, 1)
}

// wait is how long key must wait for a token at now, without taking one.
func (s *limiterSet) wait(key string, now time.Time) time.Duration {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lim := s.m[key]
	if lim == nil {
		return 0
	}
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / s.limit.PerSecond * float64(time.Second))
}

// charge takes a token from key's bucket at now, going into debt if there
// is none: the debt is paid by waiting.
func (s *limiterSet) charge(key string, now time.Time) { s.reserve(key, now) }

// sweep drops the entries whose bucket is full again.
func (s *limiterSet) sweep(now time.Time) {
	for k, lim := range s.m {
		if lim.TokensAt(now) >= float64(s.limit.Burst) {
			delete(s.m, k)
		}
	}
	s.lastSweep, s.nextSweep = now, now.Add(sweepEvery)
}

// size is how many keys the set tracks.
func (s *limiterSet) size() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// limits are the server's deadlines and rate limiters, from Config.
type limits struct {
	callDeadline   time.Duration
	importDeadline time.Duration
	device         *limiterSet
	user           *limiterSet
	enroll         *limiterSet
	deviceLimit    RateLimit
	userLimit      RateLimit
	enrollLimit    RateLimit
	now            func() time.Time

	maxStreams int            // open SyncService streams per device; 0: no cap
	streamsMu  sync.Mutex     // guards streams
	streams    map[string]int // device id -> open streams (no zero entries)
}

func newLimits(cfg *Config) *limits {
	l := &limits{callDeadline: cfg.CallDeadline, importDeadline: cfg.ImportDeadline, now: time.Now,
		deviceLimit: cfg.DeviceLimit.orDefault(DefaultDeviceLimit),
		userLimit:   cfg.UserLimit.orDefault(DefaultUserLimit),
		enrollLimit: cfg.EnrollLimit.orDefault(DefaultEnrollLimit)}
	if l.callDeadline == 0 {
		l.callDeadline = DefaultCallDeadline
	}
	if l.importDeadline == 0 {
		l.importDeadline = DefaultImportDeadline
	}
	switch l.maxStreams = cfg.MaxStreamsPerDevice; {
	case l.maxStreams == 0:
		l.maxStreams = DefaultMaxStreamsPerDevice
	case l.maxStreams < 0:
		l.maxStreams = 0
	}
	l.streams = map[string]int{}
	l.device, l.user, l.enroll = newLimiterSet(l.deviceLimit), newLimiterSet(l.userLimit), newLimiterSet(l.enrollLimit)
	return l
}

// deadline is the server's bound on a unary method; 0 for none.
func (l *limits) deadline(method string) time.Duration {
	d := l.callDeadline
	if method == pb.AdminService_ImportOrg_FullMethodName {
		d = l.importDeadline
	}
	return max(d, 0)
}

// unaryDeadline bounds a unary call's context by the server's deadline
// for its method (a client's earlier deadline stays). A handler that gives
// up because of it answers DeadlineExceeded, saying which bound it met.
func (s *Server) unaryDeadline(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	d := s.limits.deadline(info.FullMethod)
	if d == 0 {
		return handler(ctx, req)
	}
	cctx, cancel := context.WithTimeoutCause(ctx, d, errServerDeadline)
	defer cancel()
	resp, err := handler(cctx, req)
	if err != nil && errors.Is(context.Cause(cctx), errServerDeadline) && ctx.Err() == nil {
		if _, isStatus := status.FromError(err); !isStatus || status.Code(err) == codes.DeadlineExceeded {
			hint := "retry"
			if isSyncService(info.FullMethod) {
				hint = "retry: a sync resumes where it stopped"
			}
			return nil, status.Errorf(codes.DeadlineExceeded, "%s did not finish within the server's limit of %v and was stopped; %s", info.FullMethod, d, hint)
		}
	}
	return resp, err
}

var errServerDeadline = errors.New("server deadline")

// retryAfter is a ResourceExhausted status whose RetryInfo detail says how
// long to wait.
func retryAfter(wait time.Duration, format string, args ...any) error {
	wait = max(ceilMs(wait), time.Millisecond)
	msg := fmt.Sprintf(format, args...)
	st, err := status.New(codes.ResourceExhausted, fmt.Sprintf("%s; retry in %v", msg, wait)).
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
	if err != nil { // cannot happen: RetryInfo always marshals
		return status.Errorf(codes.ResourceExhausted, "%s; retry in %v", msg, wait)
	}
	return st.Err()
}

// ceilMs rounds a delay up to whole milliseconds, so that a client waiting
// that long finds a token.
func ceilMs(d time.Duration) time.Duration {
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// admit takes a token for the call from each limiter that applies to it,
// or none and answers ResourceExhausted with how long to wait.
func (s *Server) admit(ctx context.Context, method string) error {
	l := s.limits
	now := l.now()
	switch {
	case isSyncService(method):
		c := callerFrom(ctx)
		if c == nil || c.deviceID == "" {
			return nil
		}
		rd := l.device.reserve(c.deviceID, now)
		ru := l.user.reserve(c.userID, now)
		dd, du := delay(rd, now), delay(ru, now)
		if dd == 0 && du == 0 {
			return nil
		}
		cancelAt(rd, now)
		cancelAt(ru, now)
		if dd >= du {
			s.rateLimited(ctx, "device", c.deviceID, method)
			return retryAfter(dd, "rate limit: this device sent too many requests (%v); its work is kept on it and syncs after the wait", l.deviceLimit)
		}
		s.rateLimited(ctx, "user", c.userID, method)
		return retryAfter(du, "rate limit: the devices of user %s together sent too many requests (%v); the work is kept on the device and syncs after the wait", c.userID, l.userLimit)
	case method == pb.EnrollService_Enroll_FullMethodName:
		addr := peerKey(ctx)
		if d := l.enroll.wait(addr, now); d > 0 {
			s.rateLimited(ctx, "enroll", addr, method)
			return retryAfter(d, "rate limit: too many failed enrollment attempts from %s (%v); check the code against the one the administrator issued, then try again", addr, l.enrollLimit)
		}
	}
	return nil
}

// failedEnrollment says whether an Enroll answer is a code that did not
// work: unknown, used, expired or malformed.
func failedEnrollment(err error) bool {
	switch status.Code(err) {
	case codes.NotFound, codes.FailedPrecondition, codes.InvalidArgument:
		return true
	}
	return false
}

func isSyncService(method string) bool {
	return strings.HasPrefix(method, "/fieldsync.v1.SyncService/")
}

// delay is how long a reservation makes its caller wait; a reservation
// that can never be met (burst too small) waits a minute.
func delay(r *rate.Reservation, now time.Time) time.Duration {
	switch {
	case r == nil:
		return 0
	case !r.OK():
		return time.Minute
	}
	return r.DelayFrom(now)
}

func cancelAt(r *rate.Reservation, now time.Time) {
	if r != nil {
		r.CancelAt(now)
	}
}

// peerKey is the caller's IP address, IPv6 addresses cut to their /64 (one
// subscriber's network), or the whole peer address if it is not IP.
func peerKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if ta, ok := p.Addr.(*net.TCPAddr); ok {
		if v4 := ta.IP.To4(); v4 != nil {
			return v4.String()
		}
		return (&net.IPNet{IP: ta.IP.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
	}
	return p.Addr.String()
}

// unaryLimit applies the rate limits to unary calls; it runs after the
// credential interceptor, which says who calls.
func (s *Server) unaryLimit(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.admit(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	resp, err := handler(ctx, req)
	if info.FullMethod == pb.EnrollService_Enroll_FullMethodName && failedEnrollment(err) {
		s.limits.enroll.charge(peerKey(ctx), s.limits.now())
	}
	return resp, err
}

// DefaultMaxStreamsPerDevice is how many Watch streams one device may hold
// open at once: a phone needs one; a few more cover reconnects whose old
// stream the server has not noticed gone yet.
const DefaultMaxStreamsPerDevice = 4

// streamLimit applies the rate limits to opening a stream (Watch), and
// caps how many one device holds open: each costs the server a goroutine
// until the device hangs up.
func (s *Server) streamLimit(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.admit(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	c := callerFrom(ss.Context())
	if c == nil || c.deviceID == "" || !isSyncService(info.FullMethod) {
		return handler(srv, ss)
	}
	if !s.limits.openStream(c.deviceID) {
		s.rateLimited(ss.Context(), "streams", c.deviceID, info.FullMethod)
		return status.Errorf(codes.ResourceExhausted, "this device already holds %d open Watch streams, the most allowed: close one before opening another", s.limits.maxStreams)
	}
	defer s.limits.closeStream(c.deviceID)
	return handler(srv, ss)
}

func (l *limits) openStream(device string) bool {
	l.streamsMu.Lock()
	defer l.streamsMu.Unlock()
	if l.maxStreams > 0 && l.streams[device] >= l.maxStreams {
		return false
	}
	l.streams[device]++
	return true
}

func (l *limits) closeStream(device string) {
	l.streamsMu.Lock()
	defer l.streamsMu.Unlock()
	if l.streams[device]--; l.streams[device] <= 0 {
		delete(l.streams, device)
	}
}
