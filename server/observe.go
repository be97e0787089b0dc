package server

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// callInfo is what the outermost interceptor learns of a call from the
// inner ones: who called, once the credential is checked.
type callInfo struct {
	caller *caller
}

type callInfoKey struct{}

// noteCaller tells the outermost interceptor who calls.
func noteCaller(ctx context.Context, c *caller) {
	if ci, _ := ctx.Value(callInfoKey{}).(*callInfo); ci != nil {
		ci.caller = c
	}
}

// serverSide says whether a status code means the server failed (rather
// than the caller): such an answer is logged at warn with its error.
func serverSide(c codes.Code) bool {
	switch c {
	case codes.Internal, codes.Unavailable, codes.Unknown, codes.DataLoss:
		return true
	}
	return false
}

// unaryObserve is the outermost unary interceptor: it times the call,
// counts it in the metrics and logs it (debug; warn for a server-side
// failure).
func (s *Server) unaryObserve(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	ci := &callInfo{}
	resp, err := handler(context.WithValue(ctx, callInfoKey{}, ci), req)
	s.observe(ctx, info.FullMethod, false, ci, err, time.Since(start))
	return resp, err
}

// streamObserve is the outermost stream interceptor: unaryObserve for
// streams (not timed in the histogram), and the open streams gauge.
func (s *Server) streamObserve(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ci := &callInfo{}
	s.metrics.streamOpen(info.FullMethod, 1)
	err := handler(srv, &authStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callInfoKey{}, ci)})
	s.metrics.streamOpen(info.FullMethod, -1)
	s.observe(ss.Context(), info.FullMethod, true, ci, err, time.Since(start))
	return err
}

func (s *Server) observe(ctx context.Context, method string, stream bool, ci *callInfo, err error, d time.Duration) {
	code := status.Code(err)
	s.metrics.call(method, stream, code, d)
	who := ""
	if c := ci.caller; c != nil {
		who = c.deviceID
		if c.admin {
			who = c.actor() // the person, as the audit names them
		}
	}
	// A call the client gave up on (a phone losing signal) fails with
	// whatever the server was doing, usually Unavailable: not a server
	// failure; nor are the Watch streams a stop ends.
	if serverSide(code) && ctx.Err() == nil && !(stream && s.stopping()) {
		s.log.Warn("request failed on the server", "method", method, "peer", peerAddr(ctx), "caller", who,
			"code", code.String(), "duration", d, "err", status.Convert(err).Message())
	} else if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("rpc", "method", method, "peer", peerAddr(ctx), "caller", who, "code", code.String(), "duration", d)
	}
	if ci.caller != nil && code == codes.PermissionDenied && strings.HasPrefix(status.Convert(err).Message(), ErrRevokedMessage) {
		// Revoked after its credential passed (a Sync, a Watch): the
		// credential check did not see it.
		s.credentialRefused(ctx, method, err)
	}
	if c := ci.caller; c != nil && c.admin && code == codes.PermissionDenied {
		// An administrator acting outside its scope: a mistake, or a
		// town's credential probing the city.
		s.logRefusal("admin/scope", c.actor(), "administrator refused outside its scope", "method", method, "peer", peerAddr(ctx),
			"caller", c.actor(), "err", status.Convert(err).Message())
	}
	if method == pb.EnrollService_Enroll_FullMethodName && failedEnrollment(err) {
		s.logRefusal("enroll", peerKey(ctx), "enrollment failed", "peer", peerAddr(ctx), "err", status.Convert(err).Message())
	}
}

// stopping says whether Close was called: the Watch streams it ends answer
// Unavailable, which is no failure to warn about, once per phone.
func (s *Server) stopping() bool {
	if s.hub == nil {
		return false
	}
	select {
	case <-s.hub.closed:
		return true
	default:
		return false
	}
}

// peerAddr is the caller's address as seen by the server.
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "unknown"
}

// credentialRefused counts and logs a call refused for its credential.
func (s *Server) credentialRefused(ctx context.Context, method string, err error) {
	msg := status.Convert(err).Message()
	reason := "other"
	switch {
	case status.Code(err) == codes.Unimplemented:
		return // an unknown service, not a credential
	case strings.HasPrefix(msg, ErrRevokedMessage):
		reason = "revoked"
	case strings.HasPrefix(msg, "device credential missing"):
		reason = "missing"
	case strings.HasPrefix(msg, "device credential unknown"):
		reason = "unknown"
	case strings.HasPrefix(msg, "admin credential"):
		reason = "admin"
	case strings.HasPrefix(msg, "administrator account"): // disabled (adminCaller)
		reason = "admin_disabled"
	case strings.HasPrefix(msg, "export is for HQ"):
		reason = "not_hq"
	case serverSide(status.Code(err)):
		return // the store failed, not the caller: observe logs it
	}
	s.metrics.credentialRefused(reason)
	s.logRefusal("credential/"+reason, peerKey(ctx), "credential refused", "reason", reason, "method", method, "peer", peerAddr(ctx), "err", msg)
}

// rateLimited counts and logs a call refused by a rate limit; who is the
// device, user or address the limit applies to.
func (s *Server) rateLimited(ctx context.Context, limit, who, method string) {
	s.metrics.rateLimit(limit)
	s.logRefusal("rate/"+limit, who, "rate limit refused a call", "limit", limit, "key", who, "method", method, "peer", peerAddr(ctx))
}

// refusalLogEvery is how often one kind of refusal from one source is
// logged: a broken or hostile client repeats its call many times a second,
// and one line a minute with a count says as much.
const refusalLogEvery = time.Minute

// maxRefusalKeys bounds the sources the refusal log remembers.
const maxRefusalKeys = 10_000

// refusalLog rate-limits the log of refusals: at most one line per kind
// and source per refusalLogEvery, counting the ones not logged.
type refusalLog struct {
	mu        sync.Mutex
	m         map[string]*refusalEntry
	lastSweep time.Time
	now       func() time.Time
}

type refusalEntry struct {
	last       time.Time
	suppressed int
}

// allow says whether to log a refusal of kind from source now, and how
// many were not logged since the last line.
func (l *refusalLog) allow(kind, source string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.now != nil {
		now = l.now()
	}
	if l.m == nil {
		l.m = map[string]*refusalEntry{}
	}
	key := kind + "\x00" + source
	e := l.m[key]
	if e != nil && now.Sub(e.last) < refusalLogEvery {
		e.suppressed++
		return false, 0
	}
	if e == nil {
		if len(l.m) >= maxRefusalKeys && now.Sub(l.lastSweep) >= time.Second {
			for k, e := range l.m {
				if now.Sub(e.last) >= refusalLogEvery {
					delete(l.m, k)
				}
			}
			l.lastSweep = now
		}
		if len(l.m) >= maxRefusalKeys {
			// Too many sources at once (a scan from many addresses): the
			// counters still count each; the log keeps what it has.
			return false, 0
		}
		e = &refusalEntry{}
		l.m[key] = e
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}

// logRefusal logs a refusal at warn, at most once a minute per kind and
// source, with the count of the ones not logged in between.
func (s *Server) logRefusal(kind, source, msg string, args ...any) {
	ok, n := s.refusals.allow(kind, source)
	if !ok || s.log == nil { // a bare Server of the package's own tests has no logger
		return
	}
	if n > 0 {
		args = append(args, "suppressed_since_last_line", n)
	}
	s.log.Warn(msg, args...)
}
