package server

import (
	"fmt"
	"log/slog"
	"strings"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// LogNATSRefusals sends the embedded nats-server's errors and warnings to
// log at warn, with component=nats: a connection refused for its
// credential ("authentication error") and a denied publish or subscribe
// ("Permissions Violation") are how someone probing the changelog shows,
// and without this they leave no trace (the server runs with NoLog). Like
// the gRPC refusals, at most one line a minute per kind and client
// address, with the count of those left out. Notices, debug and trace
// lines are dropped.
func LogNATSRefusals(ns *natsserver.Server, log *slog.Logger) {
	if ns == nil || log == nil {
		return
	}
	ns.SetLoggerV2(&natsLog{log: log.With("component", "nats")}, false, false, false)
}

// natsLog is a natsserver.Logger over slog.
type natsLog struct {
	log      *slog.Logger
	refusals refusalLog
}

func (l *natsLog) Noticef(string, ...any) {}
func (l *natsLog) Debugf(string, ...any)  {}
func (l *natsLog) Tracef(string, ...any)  {}
func (l *natsLog) Warnf(format string, v ...any) {
	l.line(fmt.Sprintf(format, v...))
}
func (l *natsLog) Errorf(format string, v ...any) {
	l.line(fmt.Sprintf(format, v...))
}
func (l *natsLog) Fatalf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...))
}

// line logs one nats-server line, rate-limited by kind and client: a
// client's lines start "IP:PORT - cid:N - ".
func (l *natsLog) line(msg string) {
	source := "server"
	if addr, _, ok := strings.Cut(msg, " - "); ok && strings.Contains(addr, ":") && !strings.Contains(addr, " ") {
		source = addr
		if i := strings.LastIndex(addr, ":"); i > 0 {
			source = addr[:i] // the address, not each new port
		}
	}
	kind := "other"
	switch {
	case strings.Contains(msg, "authentication error"), strings.Contains(msg, "Authorization Violation"):
		kind = "auth"
	case strings.Contains(msg, "Violation"):
		kind = "permission"
	}
	ok, n := l.refusals.allow("nats/"+kind, source)
	if !ok {
		return
	}
	args := []any{"kind", kind}
	if n > 0 {
		args = append(args, "suppressed_since_last_line", n)
	}
	l.log.Warn("nats: "+msg, args...)
}
